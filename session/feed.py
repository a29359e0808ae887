"""Where the screens' data comes from: reads only.

`LiveFeed` reads a snapshot source (the Collector in watch, the Engine in drive), the fleet
journal and the fleet lock. Watch mode is handed `ReadOnlyJournal` / `ReadOnlyLock` wrappers and
`FleetJournalReader`, so nothing it holds has a write method. No textual here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from probes.snapshot import FleetSnapshot


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
    return {
        "who": str(getattr(info, "who", "?")),
        "where": str(getattr(info, "where", "?")),
        "step": str(getattr(info, "step", "?")),
        "since": getattr(info, "since", 0.0),
        "token": str(getattr(info, "token", "")),
    }


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

    def __init__(
        self,
        snapshots: SnapshotSource,
        *,
        journal: JournalSource | None = None,
        lock: LockSource | None = None,
        journal_every: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
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
            snap(), self._lock_read(), self._journal_read()
        )
        return Observation(s, err, holder, known, lock_err, journal)


class FleetJournalReader:
    """Reads the fleet journal on the database host (never writes; watch mode's journal)."""

    def __init__(self, env: Any, pool: Any) -> None:
        self._env = env
        self._pool = pool

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]:
        from plans.journal import FLEET_PATH  # here, not at the top: `watch --follow` never loads the journal code

        if self._env.managed_database:
            return []
        db = self._env.database_host
        data = await self._pool.read_file(db.name, self._env.host_path(db, FLEET_PATH), 16 << 20)
        if not isinstance(data, bytes):
            return []
        out: list[dict[str, Any]] = []
        for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out
