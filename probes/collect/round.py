"""The collector: one `FleetSnapshot` of an environment per round, from the config store, the servers
and the connections. Sessions (SSH, DB admin connections) are kept between rounds, so a warm round
costs queries, not connects. Nothing here raises: every failure is a check result or an `Unknown`.

Each host's work is bounded by the round's budget (`host_budget`): a stalled host is unknown for
itself within one round while the others are measured, and its work goes on in the background
(`InFlight`, through `probes.collect.parts`) rather than being started again every round.

The collector reaches hosts only through `ReadOnlyHosts`: it can read, never write. It reports raw facts;
what the configuration allows at this point of the rollout is judged by the plan (`plans.judge`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inventory.model import Environment
from probes.aws import Aws, AwsError
from probes.collect.causes import root_causes
from probes.collect.database import DatabaseProbe
from probes.collect.fleetconfig import FleetConfig, decode_pem
from probes.collect.hostfiles import HostFiles
from probes.collect.instance import DEFAULT_CA, InstanceProbe
from probes.collect.parts import AwsSide, HostSide, RoundParts, reachable_of
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Configured, DatabaseState, FleetSnapshot, InstanceState
from probes.ssh.readonly import ReadOnlyHosts

CA_VARIABLES = ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")


class Collector:
    """Collects snapshots of one environment; keep one per cockpit session and `aclose()` it.

    `variables`: role ("database" / "app") → the rollout variables to resolve (the plan's; without them
    only the platform variables the cockpit itself reads). `ca_paths`: extra container paths of the
    internal CA to check on app hosts (the paths a plan step will set). `read_only`: watch mode — only
    host commands the inventory marks read-only run. `hosts`: how hosts are read — read-only by type; the
    pool behind it belongs to whoever built the collector (`plans.collecting`)."""

    def __init__(
        self,
        env: Environment,
        *,
        hosts: ReadOnlyHosts,
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
        self.hosts = hosts
        self._aws = aws
        self.timeout = timeout
        self.ca_variables = tuple(ca_variables)
        self.ca_paths = tuple(dict.fromkeys([DEFAULT_CA, *ca_paths]))
        self.host_budget = host_budget if host_budget is not None else max(5.0, timeout + 2.0)
        self.files = HostFiles(self.hosts, bound_ttl=config_ttl)
        self.config = FleetConfig(env, lambda: self.aws, self.files, variables=variables, config_ttl=config_ttl)
        self.database = DatabaseProbe(env, self.hosts, self.files, timeout=timeout, probe_ttl=3.0)
        self.instances = InstanceProbe(env, self.hosts, self.files, timeout=timeout, read_only=read_only)
        self.parts = RoundParts(
            env, self.hosts, self.config, self.instances, ca_paths=self.ca_paths, ca_variables=self.ca_variables
        )
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
        self.parts.work.cancel()
        self.instances.close()
        await self.database.aclose()
        try:
            await self.hosts.aclose()
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
            return _managed(env.name, taken)
        # Every part of the round starts now and runs side by side under one deadline: a stalled host holds
        # up nothing but its own part (and its service's configuration when it is that service's only
        # answer) — never the database side or another host.
        deadline = asyncio.get_running_loop().time() + self.host_budget
        self.config.new_round(t0)
        aws_error: AwsError | None = None
        try:
            self.aws  # noqa: B018 - builds the clients, may raise AwsError
            self.config.start()  # AWS needs nothing from SSH: its reads start now, alongside the connects
        except AwsError as exc:
            aws_error = exc
        p = self.parts
        reach = {h.name: asyncio.ensure_future(p.reach(h, deadline)) for h in env.hosts}
        configs = {s: asyncio.ensure_future(p.service_config(s, reach, deadline)) for s in env.service_names}
        aws_task = asyncio.ensure_future(p.aws_side(aws_error is not None, deadline))
        db_task = asyncio.ensure_future(self._db_side(aws_task, configs, reach, deadline))
        app_hosts = [h for h in env.hosts if env.service(h.service).role != "database"]
        host_tasks = [
            asyncio.ensure_future(p.host_side(h, reach[h.name], configs[h.service], deadline)) for h in app_hosts
        ]
        database = await db_task
        aws = await aws_task
        configured = {s: await f for s, f in configs.items()}
        sides = [await task for task in host_tasks]
        reach_results = [await reach[h.name] for h in env.hosts]
        round_ = _Round(reach_results, aws_error, aws, configured, database, sides)
        return self._assemble(round_, t0, taken)

    async def _db_side(
        self,
        aws_task: asyncio.Future[AwsSide],
        configs: Mapping[str, asyncio.Future[dict[str, Configured]]],
        reach: Mapping[str, asyncio.Future[CheckResult]],
        deadline: float,
    ) -> DatabaseState | Unknown:
        """The database host's part, once AWS, its service's configuration and its connection are known."""
        db = self.env.database_host
        (creds, material, _), cfg, r = await asyncio.gather(aws_task, configs[db.service], reach[db.name])
        ca, cert, key = material.get(db.service, (None, None, None))
        addr_map = {h.address: h for h in self.env.hosts}

        async def observe() -> DatabaseState:
            return await self.database.observe(
                creds, (decode_pem(ca), decode_pem(cert), decode_pem(key)), reachable_of(r), cfg, addr_map
            )

        got: DatabaseState | Unknown = await self.parts.work.run(
            "database", observe, deadline, f"{db.name} (database side)"
        )
        return got

    def _assemble(self, r: _Round, t0: float, taken: float) -> FleetSnapshot:
        env, db = self.env, self.env.database_host
        creds, material, aws_errors = r.aws
        errors = [error_result("aws.setup", env.name, r.aws_error.why, str(r.aws_error))] if r.aws_error else []
        errors += aws_errors
        if isinstance(r.database, Unknown):
            errors.append(error_result("db.collect", db.name, r.database.why, r.database.detail))
        errors += _unread_config(r.configured)
        cert_checks = self.config.cert_checks(material) if material else []
        db_ca = decode_pem(material.get(db.service, (None,))[0])
        app_hosts = [h for h in env.hosts if env.service(h.service).role != "database"]
        instances: list[InstanceState] = []
        for h, (reachable, cfg, reads) in zip(app_hosts, r.sides, strict=True):
            ca_pem = decode_pem(material.get(h.service, (None,))[0]) or db_ca
            instances.append(self.instances.state(h, reachable, reads, cfg, ca_pem, r.database, self.ca_variables))
        all_checks = [
            *r.reach,
            *errors,
            *cert_checks,
            *(r.database.checks if isinstance(r.database, DatabaseState) else ()),
            *(c for i in instances for c in i.checks),
        ]
        return FleetSnapshot(
            env=env.name,
            taken_at=taken,
            duration_ms=(time.monotonic() - t0) * 1000,
            managed_database=False,
            configured=r.configured,
            database=r.database,
            instances=tuple(instances),
            certs=tuple(cert_checks),
            checks=tuple(all_checks),
            causes=root_causes(env, r.reach, r.aws_error or self.config.aws_failure, creds, r.database),
        )


@dataclass(frozen=True)
class _Round:
    """What the parts of one round returned."""

    reach: list[CheckResult]
    aws_error: AwsError | None  # the AWS clients could not even be built
    aws: AwsSide
    configured: dict[str, dict[str, Configured]]
    database: DatabaseState | Unknown
    sides: list[HostSide]  # per app host, in inventory order


def _managed(env: str, taken: float) -> FleetSnapshot:
    c = CheckResult(
        "runbook.applies",
        env,
        Verdict.WARN,
        "managed database (RDS/ElastiCache): no self-hosted Postgres, PgBouncer or Redis — the runbook does not apply",
    )
    return FleetSnapshot(env, taken, 0.0, True, {}, Unknown(Why.NOT_CHECKED, "managed database"), (), (), (c,))


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
            out.append(
                error_result("config.read", service, u.why, f"{service}'s configuration could not be read: {detail}")
            )
    return out
