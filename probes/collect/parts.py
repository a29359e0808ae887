"""The parts a round runs side by side, each bounded by the round's deadline (`InFlight`): a host's SSH
reachability, a service's configuration (read on whichever of its hosts answers first), an app host's own
reads, and AWS (probe credentials, cert material). A part that does not finish in time is unknown for its
own host or service while its work goes on in the background; nothing here raises."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from inventory.model import Environment, Host
from probes.collect.fleetconfig import FleetConfig, Material, ProbeCredentials
from probes.collect.inflight import InFlight
from probes.collect.instance import HostReads, InstanceProbe, ca_paths_of
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Configured
from probes.ssh.reach import check_reachable
from probes.ssh.readonly import ReadOnlyHosts

HostSide = tuple[bool | Unknown, Mapping[str, Configured], HostReads | Unknown]
AwsSide = tuple[ProbeCredentials | None, Material, list[CheckResult]]


def reachable_of(r: CheckResult) -> bool | Unknown:
    """An ssh.reachable result as a fact: reachable, not (a measured failure), or could not measure."""
    if r.verdict is Verdict.OK:
        return True
    if r.verdict is Verdict.ERROR:
        return r.as_unknown()
    return False


class RoundParts:
    """The bounded parts of a round, sharing one `InFlight` (work carried over between rounds)."""

    def __init__(
        self,
        env: Environment,
        hosts: ReadOnlyHosts,
        config: FleetConfig,
        instances: InstanceProbe,
        *,
        ca_paths: Sequence[str],
        ca_variables: Sequence[str],
    ) -> None:
        self.env = env
        self.hosts = hosts
        self.config = config
        self.instances = instances
        self.ca_paths = tuple(ca_paths)
        self.ca_variables = tuple(ca_variables)
        self.work: InFlight[Any] = InFlight()

    async def reach(self, host: Host, deadline: float) -> CheckResult:
        async def go() -> CheckResult:
            return await check_reachable(self.hosts, host.name, round_trip=False)

        r = await self.work.run(("reach", host.name), go, deadline, f"{host.name} over SSH")
        if isinstance(r, Unknown):
            return error_result("ssh.reachable", host.name, r.why, f"{host.name}: {r.detail}")
        return r  # type: ignore[no-any-return]

    async def service_config(
        self, service: str, reach: Mapping[str, asyncio.Future[CheckResult]], deadline: float
    ) -> dict[str, Configured]:
        async def go() -> dict[str, Configured]:
            return await self.config.service_config(service, await self._first_reachable(service, reach))

        got = await self.work.run(("config", service), go, deadline, f"{service}'s configuration")
        if isinstance(got, Unknown):
            return {v: got for v in self.config.variables_for(service)}
        return got  # type: ignore[no-any-return]

    async def _first_reachable(self, service: str, reach: Mapping[str, asyncio.Future[CheckResult]]) -> Host | Unknown:
        """The service's host that answers first (not inventory order: a stalled first host must not stand
        between the cockpit and the service's configuration)."""
        hosts = self.env.hosts_for(service)
        last: CheckResult | None = None
        for fut in asyncio.as_completed([reach[h.name] for h in hosts]):
            r = await fut
            if r.verdict is Verdict.OK:
                return self.env.host(r.target)
            last = r
        if last is None:
            return Unknown(Why.NOT_CHECKED, f"the inventory has no host for {service}")
        return Unknown(last.unknown.why if last.unknown is not None else Why.UNREACHABLE, last.summary)

    async def host_side(
        self,
        host: Host,
        reach: asyncio.Future[CheckResult],
        service_cfg: asyncio.Future[dict[str, Configured]],
        deadline: float,
    ) -> HostSide:
        """An app host's own reads (bounded), once its connection and its service's configuration are known."""
        r = await reach
        reachable = reachable_of(r)
        cfg: Mapping[str, Configured] = await service_cfg

        async def go() -> tuple[Mapping[str, Configured], HostReads]:
            host_cfg = cfg
            if self.env.config_store.kind == "envfile":  # every host holds its own values: read each
                host_cfg = await self.config.host_config(host.service, host)
            paths = list(dict.fromkeys([*self.ca_paths, *ca_paths_of(host_cfg, self.ca_variables)]))
            return host_cfg, await self.instances.reads(host, paths)

        if reachable is not True:
            return reachable, cfg, reachable if isinstance(reachable, Unknown) else Unknown(Why.UNREACHABLE, r.summary)
        got = await self.work.run(("host", host.name), go, deadline, f"{host.name}'s reads")
        if isinstance(got, Unknown):
            if got.why is Why.TIMEOUT:  # connected, but it does not answer: stalled
                reachable = Unknown(Why.TIMEOUT, f"{host.name} does not answer (stalled?): {got.detail}")
            return reachable, cfg, got
        return reachable, got[0], got[1]

    async def aws_side(self, setup_failed: bool, deadline: float) -> AwsSide:
        """The probe credentials and the cert material, with what went wrong reading them."""
        if setup_failed:
            return None, {}, []

        async def read() -> tuple[tuple[ProbeCredentials | None, CheckResult], tuple[Material, list[CheckResult]]]:
            return await asyncio.gather(self.config.credentials(), self.config.material())

        got = await self.work.run("aws", read, deadline, "AWS (probe credentials, cert material)")
        if isinstance(got, Unknown):
            return None, {}, [error_result("aws.read", self.env.name, got.why, got.detail)]
        (creds, cred_check), (material, mat_errors) = got
        return creds, material, [cred_check, *mat_errors]
