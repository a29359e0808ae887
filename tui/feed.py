"""Where the screens' data comes from, and the engine contract the drive screen calls.

`LiveFeed` reads a snapshot source (the Collector in watch, the Engine in drive), the fleet
journal and the fleet lock: reads only. Watch mode is handed `ReadOnlyJournal` / `ReadOnlyLock`
wrappers, so nothing it holds has a write method. No textual here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from plans.gates import GateResult
from probes.snapshot import FleetSnapshot

# --------------------------------------------------------------------------------------------
# the engine contract (plans/engine.py), as the UI uses it


Direction = Literal["advance", "rollback", "restart"]
# outcome stages where nothing was written: the engine said no before it began
REFUSED_STAGES: Final = frozenset({"refused", "preflight"})


class RestartLike(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def pre_restart(self) -> str: ...


class BlockerLike(Protocol):
    """plans.hazards.Blocker: why a rollback is unsafe ("block") or worth knowing ("warn")."""

    @property
    def id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def blocks(self) -> bool: ...


class PreviewLike(Protocol):
    @property
    def env(self) -> str: ...
    @property
    def protected(self) -> bool: ...
    @property
    def step(self) -> str: ...
    @property
    def service(self) -> str | None: ...
    @property
    def direction(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def change_lines(self) -> tuple[str, ...]: ...
    @property
    def restarts(self) -> tuple[RestartLike, ...]: ...
    @property
    def gates(self) -> tuple[GateResult, ...]: ...
    @property
    def blockers(self) -> tuple[BlockerLike, ...]: ...
    @property
    def open(self) -> bool: ...
    @property
    def closed(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def recreates(self) -> tuple[str, ...]: ...
    @property
    def estimate_s(self) -> float | None: ...
    @property
    def notes(self) -> tuple[str, ...]: ...
    def summary(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


class EventLike(Protocol):
    @property
    def kind(self) -> str: ...  # plans.engine.EventKind: "restart", "instance-done", "paused", "stopping", ...
    @property
    def host(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def ts(self) -> float: ...


class OutcomeLike(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def stage(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def changed(self) -> tuple[str, ...]: ...
    @property
    def journal_errors(self) -> tuple[str, ...]: ...
    @property
    def rolled_back(self) -> Any: ...  # an OutcomeLike, or None
    def to_json(self) -> dict[str, Any]: ...


class ControlLike(Protocol):
    """plans.engine.RollControl: pause, resume or stop a roll between instances."""

    @property
    def paused(self) -> bool: ...
    @property
    def stop_requested(self) -> bool: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...


@runtime_checkable
class EngineLike(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...
    def services_in_order(self) -> list[str]: ...
    async def acquire_lock(self, step_id: str) -> Any: ...
    async def release_lock(self) -> None: ...
    async def preview(self, step_id: str, service: str | None = None, *, direction: Any = "advance") -> Any: ...
    async def preview_restart(self, service: str, hosts: Sequence[str] = ()) -> Any: ...
    async def apply(self, preview: Any, *, reason: str, overrides: Any = (), dry_run: bool = False,
                    on_event: Callable[[Any], None] | None = None, control: Any = None) -> Any: ...


# --------------------------------------------------------------------------------------------
# reads


class SnapshotSource(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...


class JournalSource(Protocol):
    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]: ...


class LockSource(Protocol):
    async def current(self) -> Any: ...


class ReadOnlyJournal:
    """The fleet journal, read side only."""

    def __init__(self, journal: JournalSource) -> None:
        self.__journal = journal

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]:
        return await self.__journal.read_fleet(limit)


class ReadOnlyLock:
    """The fleet lock, read side only: who holds it."""

    def __init__(self, lock: LockSource) -> None:
        self.__lock = lock

    async def current(self) -> Any:
        return await self.__lock.current()


def lock_holder(info: Any) -> dict[str, Any] | None:
    """A LockInfo (or a mapping, or None) as a plain dict for the header and the recording."""
    if info is None:
        return None
    if isinstance(info, Mapping):
        return dict(info)
    if dataclasses.is_dataclass(info) and not isinstance(info, type):
        return dataclasses.asdict(info)
    return {"who": str(getattr(info, "who", "?")), "where": str(getattr(info, "where", "?")),
            "step": str(getattr(info, "step", "?")), "since": getattr(info, "since", 0.0),
            "token": str(getattr(info, "token", ""))}


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll round: a snapshot (or why not), the lock, the journal (None: not read this round)."""

    snapshot: FleetSnapshot | None
    error: str | None = None
    lock: dict[str, Any] | None = None
    lock_known: bool = False
    lock_error: str | None = None
    journal: tuple[dict[str, Any], ...] | None = None


class Feed(Protocol):
    async def observe(self) -> Observation: ...


class LiveFeed:
    """Snapshots from `snapshots`, plus the lock and the fleet journal (every `journal_every` seconds)."""

    def __init__(self, snapshots: SnapshotSource, *, journal: JournalSource | None = None,
                 lock: LockSource | None = None, journal_every: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshots = snapshots
        self._journal = journal
        self._lock = lock
        self._journal_every = journal_every
        self._clock = clock
        self._journal_at = float("-inf")

    async def _lock_read(self) -> tuple[dict[str, Any] | None, bool, str | None]:
        if self._lock is None:
            return None, False, None
        try:
            return lock_holder(await self._lock.current()), True, None
        except Exception as exc:
            return None, False, f"{type(exc).__name__}: {exc}"

    async def _journal_read(self) -> tuple[dict[str, Any], ...] | None:
        if self._journal is None or self._clock() - self._journal_at < self._journal_every:
            return None
        self._journal_at = self._clock()
        try:
            return tuple(await self._journal.read_fleet())
        except Exception:
            return None

    async def observe(self) -> Observation:
        async def snap() -> tuple[FleetSnapshot | None, str | None]:
            try:
                return await self._snapshots.snapshot(), None
            except Exception as exc:
                return None, f"{type(exc).__name__}: {exc}"

        (s, err), (holder, known, lock_err), journal = await asyncio.gather(
            snap(), self._lock_read(), self._journal_read())
        return Observation(s, err, holder, known, lock_err, journal)
