"""The engine's world in memory, for the fast tier: a fleet model (what the config store holds, what each
host runs since its last restart) that yields `FleetSnapshot`s built by `tests.snapshots_factory`, a fake
config store with compare-and-swap, fake host commands (recorded; a host can be told to fail, hang, or
restart without taking the new values), an in-memory fleet lock and fleet-journal files.

No server, no socket, no sleep beyond what a test asks for: an engine run takes milliseconds."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inventory.load import parse_inventory
from inventory.model import Environment
from plans.engine import Engine
from plans.journal import Journal
from plans.lock import LockError, LockInfo, LockMarker
from plans.model import Plan
from plans.plan import default_plan
from plans.store import Change, StoreError
from probes.model import CheckResult, Verdict
from probes.snapshot import FleetSnapshot
from probes.ssh.results import CommandResult, SshError, SshErrorKind
from tests.snapshots_factory import APP_DEFAULTS, DATABASE_DEFAULTS, DB_HOST, INSTANCES, fleet, settings

SERVICES_OF: dict[str, str] = {DB_HOST: "database", **{h: s for s, hs in INSTANCES.items() for h in hs}}

INVENTORY = """
version = 1
default_env = "staging"

[environments.staging]
namespace = "voiceai/staging"
region = "eu-west-1"

[environments.staging.ssh]
connect_timeout = 0.5
command_timeout = 0.2

[environments.staging.database]
host = "staging-database-01"
dns_name = "staging-database-01.voiceai.internal"

[environments.staging.services.database]
role = "database"
[environments.staging.services.api]
role = "app"
[environments.staging.services.web]
role = "app"
[environments.staging.services.voice]
role = "app"
[environments.staging.services.ops]
role = "app"
[environments.staging.services.telpro]
role = "app"
""" + "".join(
    f'\n[[environments.staging.hosts]]\nname = "{host}"\naddress = "127.0.9.{n}"\nservice = "{svc}"\n'
    for n, (host, svc) in enumerate(SERVICES_OF.items(), start=10)
)


def environment() -> Environment:
    """The fast tier's staging: the hosts of `tests.snapshots_factory` (loopback addresses, never dialled)."""
    return parse_inventory(INVENTORY, "fast-tier inventory", base_dir=Path.cwd()).env()


def _defaults(service: str) -> dict[str, str]:
    return DATABASE_DEFAULTS if service == "database" else APP_DEFAULTS


class FakeFleet:
    """What the config store holds (`store`: service -> VAR -> value) and what each host runs (`running`:
    host -> VAR -> value, None = unset), as of its last restart. `certs`: as `snapshots_factory.fleet`."""

    def __init__(self, pg: int = 1, redis: int = 0, *, certs: str = "ok") -> None:
        self.store: dict[str, dict[str, str | None]] = settings(pg, redis)
        self.certs = certs
        self.running: dict[str, dict[str, str | None]] = {}
        for host in SERVICES_OF:
            self.restart(host)
        self.snapshots = 0

    def restart(self, host: str) -> None:
        """The host reads its service's configuration now (update.sh --restart-only)."""
        service = SERVICES_OF[host]
        values = self.store.get(service, {})
        self.running[host] = {var: values.get(var) for var in {*_defaults(service), *values}}

    def snapshot(self) -> FleetSnapshot:
        self.snapshots += 1
        return fleet(1, 0, config=self.store, running=self.running, certs=self.certs, taken_at=time.time())


class CannedCollector:
    """A `FleetReader`: the fake fleet's snapshot, as of now."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.invalidated = 0
        self.closed = False

    async def snapshot(self) -> FleetSnapshot:
        return self.fleet.snapshot()

    def invalidate(self) -> None:
        self.invalidated += 1

    async def aclose(self) -> None:
        self.closed = True


class FakeStore:
    """A `ConfigStore` on the fake fleet's `store`: compare-and-swap, then every write (as SsmStore)."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.writes: list[Change] = []
        self.unwritable = ""  # a reason: check_writable fails with it

    async def read(self, service: str, var: str) -> str | None:
        return self.fleet.store.get(service, {}).get(var)

    async def read_hosts(self, service: str, vars: Sequence[str]) -> dict[str, dict[str, str | None]]:
        values = {v: await self.read(service, v) for v in vars}
        return {h: dict(values) for h, s in SERVICES_OF.items() if s == service}

    async def check_writable(self, service: str) -> None:
        if self.unwritable:
            raise StoreError(self.unwritable)

    async def write_all(self, changes: Sequence[Change], *, progress: Any = None) -> list[str]:
        for c in changes:
            if await self.read(c.service, c.var) != c.old:
                raise StoreError(f"{c.service} {c.var} refused: changed since the preview (nothing was written)")
        for c in changes:
            self.fleet.store.setdefault(c.service, {})[c.var] = c.new
            self.writes.append(c)
        return [f"{c.service}/{c.var} written" for c in changes]

    async def write(self, change: Change) -> str:
        return (await self.write_all([change]))[0]


class FakeHosts:
    """`HostCommands` and the fleet journal's files, in memory. Every command is recorded as (host,
    command, timeout). An update command restarts the host in the fake fleet, unless the host was told to
    `fail` (exit 1), `hang` (no answer: the command's timeout ends it, as SshPool's does) or be `stuck`
    (exit 0, but it comes back running what it ran before)."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.commands: list[tuple[str, str, float | None]] = []
        self.failing: set[str] = set()
        self.hanging: set[str] = set()
        self.stuck: set[str] = set()
        self.unreachable: set[str] = set()
        self.files: dict[tuple[str, str], bytes] = {}

    def restarted(self) -> list[str]:
        return [h for h, c, _ in self.commands if "update.sh" in c]

    async def run(self, host_name: str, command: str, *, timeout: float | None = None) -> CommandResult:  # noqa: ASYNC109
        self.commands.append((host_name, command, timeout))
        if host_name in self.hanging:
            await asyncio.sleep(timeout or 0)
            return CommandResult(
                host_name,
                command,
                None,
                "",
                "",
                (timeout or 0) * 1000,
                error=f"{host_name}: the command timed out after {timeout:g} s",
                error_kind=SshErrorKind.TIMEOUT,
            )
        if host_name in self.failing:
            return CommandResult(host_name, command, 1, "", "init.sh: container failed to start", 1.0)
        if "update.sh" in command and host_name not in self.stuck:
            self.fleet.restart(host_name)
        return CommandResult(host_name, command, 0, "restarted", "", 1.0)

    async def reachable(self, host_name: str) -> CheckResult:
        if host_name in self.unreachable:
            return CheckResult("ssh.reachable", host_name, Verdict.FAIL, f"{host_name}: connection refused")
        return CheckResult("ssh.reachable", host_name, Verdict.OK, f"{host_name} answers")

    async def append_file(self, host_name: str, path: str, data: bytes) -> SshError | None:
        self.files[(host_name, path)] = self.files.get((host_name, path), b"") + data
        return None

    async def read_file(self, host_name: str, path: str, max_bytes: int) -> bytes | SshError:
        data = self.files.get((host_name, path))
        if data is None:
            return SshError(host_name, SshErrorKind.NO_SUCH_FILE, f"{path}: no such file")
        return data[-max_bytes:]


class FakeLock:
    """The fleet lock in memory (`LockHolder`); `other` is someone else holding it."""

    def __init__(self) -> None:
        self.held: LockInfo | None = None
        self.other: LockInfo | None = None

    async def acquire(self, step: str) -> LockInfo:
        if self.held is not None or self.other is not None:
            raise LockError(f"the fleet lock is held by {(self.held or self.other).describe()}")  # type: ignore[union-attr]
        self.held = LockInfo("tester", "here", 1, step, time.time(), "token-1", 1)
        return self.held

    async def release(self) -> LockMarker | None:
        self.held = None
        return None

    async def break_lock(self, reason: str = "") -> LockInfo | None:
        old, self.held, self.other = self.held or self.other, None, None
        return old

    async def current(self) -> LockInfo | None:
        return self.held or self.other


@dataclasses.dataclass
class World:
    """One engine on one fake fleet, with every fake at hand."""

    fleet: FakeFleet
    collector: CannedCollector
    store: FakeStore
    hosts: FakeHosts
    lock: FakeLock
    journal: Journal
    engine: Engine

    def journal_entries(self) -> list[dict[str, Any]]:
        return self.journal.read_local(10_000)

    def fleet_journal(self) -> bytes:
        return b"".join(v for (h, _), v in self.hosts.files.items() if h == DB_HOST)


def world(tmp: Path, pg: int = 1, redis: int = 0, *, certs: str = "ok", plan: Plan | None = None) -> World:
    """An engine on a fresh fake fleet after Postgres steps 1..pg and Redis steps 1..redis."""
    env = environment()
    f = FakeFleet(pg, redis, certs=certs)
    collector, store, hosts, lock = CannedCollector(f), FakeStore(f), FakeHosts(f), FakeLock()
    journal = Journal(env, hosts, local_dir=tmp)
    engine = Engine(
        env,
        plan or default_plan(),
        collector,
        store=store,
        journal=journal,
        lock=lock,
        hosts=hosts,
        poll_interval=0.005,
    )
    return World(f, collector, store, hosts, lock, journal, engine)


def with_deadlines(plan: Plan, seconds: float) -> Plan:
    """The plan with every step's deadline shortened (for a test of what happens when one passes)."""
    return dataclasses.replace(plan, steps=tuple(dataclasses.replace(s, deadline=seconds) for s in plan.steps))
