"""A per-host budget for a round: work that does not finish in time is reported as unknown for its
own host, and keeps running so a later round can use its answer.

A stalled host (its sshd stopped, a dead route) must not freeze the fleet's view: the round waits for
each piece of work at most until the round's deadline, and a piece still running from an earlier
round is not waited for at all — the rest of the fleet, and the lock, keep being refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from probes.model import Unknown, Why

T = TypeVar("T")


class InFlight(Generic[T]):
    """Work by key, bounded by a deadline; what outlives its round is carried over, not restarted."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Future[T]] = {}
        self.carried: set[Hashable] = set()  # keys whose work was still running when a round ended

    async def run(self, key: Hashable, start: Callable[[], Awaitable[T]], deadline: float, what: str) -> T | Unknown:
        """The result of `start()` for `key` if it finishes by `deadline` (loop time); else an
        `Unknown` (TIMEOUT) while the work goes on. Work carried over from an earlier round is
        not waited for. An exception inside the work is a bug: `Unknown(BUG)`."""
        task = self._tasks.get(key)
        carried = task is not None
        if task is None:
            task = asyncio.ensure_future(start())
            self._tasks[key] = task
        if not task.done():
            wait = 0.0 if carried else max(0.0, deadline - asyncio.get_running_loop().time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), wait) if wait > 0 else None
        if not task.done():
            self.carried.add(key)
            return Unknown(Why.TIMEOUT, f"{what}: no answer yet (still trying in the background)")
        del self._tasks[key]
        self.carried.discard(key)
        exc = task.exception()
        if exc is not None:
            return Unknown(Why.BUG, f"{what}: internal error (a bug in the cockpit): {type(exc).__name__}: {exc}")
        return task.result()

    def cancel(self) -> None:
        for t in self._tasks.values():
            t.cancel()
        self._tasks.clear()
        self.carried.clear()

    def drop(self, key: Hashable) -> None:
        t = self._tasks.pop(key, None)
        if t is not None:
            t.cancel()
        self.carried.discard(key)
