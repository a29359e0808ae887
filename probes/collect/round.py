"""The collector: one `FleetSnapshot` of an environment per round, from the config store, the servers
and the connections. Sessions (SSH, DB admin connections) are kept between rounds, so a warm round
costs queries, not connects. Nothing here raises: every failure is a check result or an `Unknown`.

Each host's work is bounded by the round's budget (`host_budget`): a stalled host is unknown for
itself within one round while the others are measured, and its work goes on in the background
(`InFlight`) rather than being started again every round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from probes.aws import Aws, AwsError
from probes.collect.causes import root_causes
from probes.collect.database import DatabaseProbe
from probes.collect.fleetconfig import FleetConfig, Material, ProbeCredentials, decode_pem
from probes.collect.hostfiles import HostFiles
from probes.collect.inflight import InFlight
from probes.collect.instance import DEFAULT_CA, HostReads, InstanceProbe, _ca_paths_of
from probes.inventory import Environment, Host
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Configured, DatabaseState, FleetSnapshot
from probes.ssh import SshPool, check_reachable

CA_VARIABLES = ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")


class Collector:
    """Collects snapshots of one environment; keep one per cockpit session and `aclose()` it.

    `variables`: role ("database" / "app") → the rollout variables to resolve (the plan's; the
    runbook's when None). `ca_paths`: extra container paths of the internal CA to check on app
    hosts (the paths a plan step will set). `read_only`: watch mode — only host commands the
    inventory marks read-only run."""

    def __init__(
        self,
        env: Environment,
        *,
        pool: SshPool | None = None,
        aws: Aws | None = None,
        timeout: float = 3.0,
        config_ttl: float = 3.0,
        variables: Mapping[str, Sequence[str]] | None = None,
        ca_variables: Sequence[str] = CA_VARIABLES,
        ca_paths: Sequence[str] = (),
        read_only: bool = False,
        host_budget: float | None = None,
    ) -> None:
        self.env = env
        self.pool = pool or SshPool(env)
        self._aws = aws
        self.timeout = timeout
        self.ca_variables = tuple(ca_variables)
        self.ca_paths = tuple(dict.fromkeys([DEFAULT_CA, *ca_paths]))
        self.host_budget = host_budget if host_budget is not None else max(5.0, timeout + 2.0)
        self.files = HostFiles(self.pool, bound_ttl=config_ttl)
        self.config = FleetConfig(env, lambda: self.aws, self.files, variables=variables, config_ttl=config_ttl)
        self.database = DatabaseProbe(env, self.pool, self.files, timeout=timeout, probe_ttl=3.0)
        self.instances = InstanceProbe(env, self.pool, self.files, timeout=timeout, read_only=read_only)
        self._work: InFlight[Any] = InFlight()
        self._round_lock = asyncio.Lock()

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.env)
        return self._aws

    @property
    def probe_ttl(self) -> float:
        return self.database.probe_ttl

    @probe_ttl.setter
    def probe_ttl(self, value: float) -> None:
        self.database.probe_ttl = value

    async def aclose(self) -> None:
        self._work.cancel()
        self.instances.close()
        await self.database.aclose()
        try:
            await self.pool.aclose()
        except Exception:  # closing is best effort: the process is usually about to end
            pass

    def invalidate(self) -> None:
        """Forget cached configuration, listeners, host files, host checks and healthy probe results
        (the engine calls this right after it writes the config store and after each restart)."""
        self.config.invalidate()
        self.files.invalidate()
        self.database.invalidate()
        self.instances.invalidate()

    async def snapshot(self) -> FleetSnapshot:
        """One round; concurrent callers (a UI poll during an apply's verification) take turns."""
        async with self._round_lock:
            return await self._snapshot()

    # -------------------------------------------------------------------------------- the round
    async def _snapshot(self) -> FleetSnapshot:
        t0, taken, env = time.monotonic(), time.time(), self.env
        if env.managed_database:
            c = CheckResult(
                "runbook.applies",
                env.name,
                Verdict.WARN,
                "managed database (RDS/ElastiCache): no self-hosted Postgres, PgBouncer or Redis — "
                "the runbook does not apply",
            )
            return FleetSnapshot(
                env.name, taken, 0.0, True, {}, Unknown(Why.NOT_CHECKED, "managed database"), (), (), (c,)
            )
        # Every part of the round starts now and runs side by side under one deadline: a stalled host holds
        # up nothing but its own part (and its service's configuration when it is that service's only
        # answer) — never the database side or another host.
        deadline = asyncio.get_running_loop().time() + self.host_budget
        errors: list[CheckResult] = []
        self.config.new_round(t0)
        aws_error: AwsError | None = None
        try:
            self.aws  # noqa: B018 - builds the clients, may raise AwsError
            self.config.start()  # AWS needs nothing from SSH: its reads start now, alongside the connects
        except AwsError as exc:
            aws_error = exc
            errors.append(error_result("aws.setup", env.name, exc.why, str(exc)))
        hosts = list(env.hosts)
        db = env.database_host
        reach = {h.name: asyncio.ensure_future(self._reach(h, deadline)) for h in hosts}
        configs = {s: asyncio.ensure_future(self._service_config(s, reach, deadline)) for s in env.service_names}
        aws_task = asyncio.ensure_future(self._aws_side(aws_error, deadline))
        addr_map = {h.address: h for h in hosts}

        async def db_side() -> DatabaseState | Unknown:
            (creds, material, _), cfg, r = await asyncio.gather(aws_task, configs[db.service], reach[db.name])
            ca, cert, key = material.get(db.service, (None, None, None))

            async def observe() -> DatabaseState:
                return await self.database.observe(
                    creds, (decode_pem(ca), decode_pem(cert), decode_pem(key)), _reachable(r), cfg, addr_map
                )

            got: DatabaseState | Unknown = await self._work.run(
                "database", observe, deadline, f"{db.name} (database side)"
            )
            return got

        db_task = asyncio.ensure_future(db_side())
        app_hosts = [h for h in hosts if env.service(h.service).role != "database"]
        host_tasks = [
            asyncio.ensure_future(self._host_side(h, reach[h.name], configs[h.service], deadline)) for h in app_hosts
        ]
        database = await db_task
        creds, material, aws_errors = await aws_task
        errors += aws_errors
        if isinstance(database, Unknown):
            errors.append(error_result("db.collect", db.name, database.why, database.detail))
        configured = {s: await f for s, f in configs.items()}
        errors += _unread_config(configured)
        cert_checks = self.config.cert_checks(material) if material else []
        db_ca = decode_pem(material.get(db.service, (None,))[0])
        instances = []
        for h, task in zip(app_hosts, host_tasks, strict=True):
            reachable, cfg, reads = await task
            ca_pem = decode_pem(material.get(h.service, (None,))[0]) or db_ca
            instances.append(self.instances.state(h, reachable, reads, cfg, ca_pem, database, self.ca_variables))
        reach_results = [await reach[h.name] for h in hosts]
        all_checks = [
            *reach_results,
            *errors,
            *cert_checks,
            *(database.checks if isinstance(database, DatabaseState) else ()),
            *(c for i in instances for c in i.checks),
        ]
        return FleetSnapshot(
            env=env.name,
            taken_at=taken,
            duration_ms=(time.monotonic() - t0) * 1000,
            managed_database=False,
            configured=configured,
            database=database,
            instances=tuple(instances),
            certs=tuple(cert_checks),
            checks=tuple(all_checks),
            causes=root_causes(env, reach_results, aws_error or self.config.aws_failure, creds, database),
        )

    async def _aws_side(
        self, aws_error: AwsError | None, deadline: float
    ) -> tuple[ProbeCredentials | None, Material, list[CheckResult]]:
        """The probe credentials and the cert material, with what went wrong reading them."""
        if aws_error is not None:
            return None, {}, []

        async def read() -> tuple[tuple[ProbeCredentials | None, CheckResult], tuple[Material, list[CheckResult]]]:
            return await asyncio.gather(self.config.credentials(), self.config.material())

        got = await self._work.run("aws", read, deadline, "AWS (probe credentials, cert material)")
        if isinstance(got, Unknown):
            return None, {}, [error_result("aws.read", self.env.name, got.why, got.detail)]
        (creds, cred_check), (material, mat_errors) = got
        return creds, material, [cred_check, *mat_errors]

    async def _host_side(
        self,
        host: Host,
        reach: asyncio.Future[CheckResult],
        service_cfg: asyncio.Future[dict[str, Configured]],
        deadline: float,
    ) -> tuple[bool | Unknown, Mapping[str, Configured], HostReads | Unknown]:
        """An app host's own reads (bounded), once its connection and its service's configuration are known."""
        r = await reach
        reachable = _reachable(r)
        cfg: Mapping[str, Configured] = await service_cfg

        async def go() -> tuple[Mapping[str, Configured], HostReads]:
            host_cfg = cfg
            if self.env.config_store.kind == "envfile":  # every host holds its own values: read each
                host_cfg = await self.config.host_config(host.service, host)
            paths = list(dict.fromkeys([*self.ca_paths, *_ca_paths_of(host_cfg, self.ca_variables)]))
            return host_cfg, await self.instances.reads(host, paths)

        if reachable is not True:
            return reachable, cfg, reachable if isinstance(reachable, Unknown) else Unknown(Why.UNREACHABLE, r.summary)
        got = await self._work.run(("host", host.name), go, deadline, f"{host.name}'s reads")
        if isinstance(got, Unknown):
            if got.why is Why.TIMEOUT:  # connected, but it does not answer: stalled
                reachable = Unknown(Why.TIMEOUT, f"{host.name} does not answer (stalled?): {got.detail}")
            return reachable, cfg, got
        return reachable, got[0], got[1]

    async def _reach(self, host: Host, deadline: float) -> CheckResult:
        async def go() -> CheckResult:
            return await check_reachable(self.pool, host.name, round_trip=False)

        r = await self._work.run(("reach", host.name), go, deadline, f"{host.name} over SSH")
        if isinstance(r, Unknown):
            return error_result("ssh.reachable", host.name, r.why, f"{host.name}: {r.detail}")
        return r  # type: ignore[no-any-return]

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

    async def _service_config(
        self, service: str, reach: Mapping[str, asyncio.Future[CheckResult]], deadline: float
    ) -> dict[str, Configured]:
        async def go() -> dict[str, Configured]:
            return await self.config.service_config(service, await self._first_reachable(service, reach))

        got = await self._work.run(("config", service), go, deadline, f"{service}'s configuration")
        if isinstance(got, Unknown):
            return {v: got for v in self.config.variables_for(service)}
        return got  # type: ignore[no-any-return]


def _unread_config(configured: Mapping[str, Mapping[str, Configured]]) -> list[CheckResult]:
    """A configuration that could not be read (AWS refused, vars.yaml missing or malformed, the env file
    unreadable) is a check with its reason — once per service and reason, not a silent field of unknowns."""
    out: list[CheckResult] = []
    for service, values in configured.items():
        seen: dict[str, Unknown] = {}
        for v in values.values():
            if isinstance(v, Unknown):
                seen.setdefault(v.detail, v)
        for detail, u in seen.items():
            out.append(error_result("config.read", service, u.why, f"{service}'s configuration could not be read: "
                                                                   f"{detail}"))
    return out


def _reachable(r: CheckResult) -> bool | Unknown:
    if r.verdict is Verdict.OK:
        return True
    if r.verdict is Verdict.ERROR:
        return r.as_unknown()
    return False
