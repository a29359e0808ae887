"""What the engine needs from the world, as Protocols: a fleet reader, commands on hosts, the fleet lock and
the journals. `Engine` is built from the real ones (the collector, `SshHosts` over the SSH pool,
`FleetLock`, `Journal`) by default; a test gives it in-memory ones and runs in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from plans.lock import LockInfo, LockMarker
from probes.aws import Aws
from probes.model import CheckResult
from probes.snapshot import FleetSnapshot
from probes.ssh.pool import SshPool
from probes.ssh.reach import check_reachable
from probes.ssh.results import CommandResult

__all__ = ["Containers", "EngineJournal", "FleetReader", "HostCommands", "LiveFleet", "LockHolder", "SshHosts"]


class FleetReader(Protocol):
    """The fleet as observed: the collector (`probes.collect.Collector`), or a test's canned one."""

    async def snapshot(self) -> FleetSnapshot: ...

    def invalidate(self) -> None:
        """Forget cached readings: the engine has just written the store or restarted something."""

    async def aclose(self) -> None: ...


class Containers(Protocol):
    def containers(self, service: str) -> Sequence[str]:
        """What a restart of the service recreates on each host (from its vars.yaml); empty when unknown."""


@runtime_checkable
class LiveFleet(FleetReader, Protocol):
    """A fleet reader that holds the sessions the engine's real dependencies are built from: the collector's
    SSH pool and AWS clients, and its configuration reader."""

    @property
    def pool(self) -> SshPool: ...

    @property
    def aws(self) -> Aws: ...

    @property
    def config(self) -> Containers: ...


class HostCommands(Protocol):
    """Commands on the fleet's hosts (restarts, pre-restart hooks, log tails), and whether a host can be
    reached right now. `run` never raises: a failure is in the result."""

    async def run(
        self,
        host_name: str,
        command: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the command's own limit, as SshPool.run
    ) -> CommandResult: ...

    async def reachable(self, host_name: str) -> CheckResult: ...


class SshHosts:
    """`HostCommands` over the SSH pool: one connection per host, host keys verified."""

    def __init__(self, pool: SshPool) -> None:
        self.pool = pool

    async def run(
        self,
        host_name: str,
        command: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - SshPool.run turns it into a deadline
    ) -> CommandResult:
        return await self.pool.run(host_name, command, timeout=timeout)

    async def reachable(self, host_name: str) -> CheckResult:
        """ssh.reachable with a round trip: a held connection must still answer."""
        return await check_reachable(self.pool, host_name, round_trip=True)


class LockHolder(Protocol):
    """The fleet lock (`plans.lock.FleetLock`): who holds it, taken and given back by this cockpit."""

    @property
    def held(self) -> LockInfo | None: ...

    async def acquire(self, step: str) -> LockInfo: ...

    async def release(self) -> LockMarker | None: ...

    async def break_lock(self, reason: str = "") -> LockInfo | None: ...

    async def current(self) -> LockInfo | None: ...


class EngineJournal(Protocol):
    """The journals (`plans.journal.Journal`): an entry for everything done or refused."""

    async def write(self, event: str, **fields: Any) -> dict[str, Any]: ...

    async def check_writable(self) -> None: ...

    def read_local(self, limit: int = 500) -> list[dict[str, Any]]: ...

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]: ...
