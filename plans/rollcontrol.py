"""Pause, resume or stop a rolling restart between instances: the UI's keys, the CLI's Ctrl-C."""

from __future__ import annotations

import asyncio

from plans.outcome import Emit

__all__ = ["RollControl"]


class RollControl:
    """Pause, resume or stop a rolling restart between instances (the UI's keys, the CLI's Ctrl-C)."""

    def __init__(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self.stop_requested = False

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.stop_requested = True
        self._running.set()

    async def checkpoint(self, emit: Emit) -> bool:
        """Wait while paused; False when a stop was asked for (the roll ends here)."""
        if self.paused and not self.stop_requested:
            emit("paused", None, "paused after the current instance — resume to go on, or stop")
            await self._running.wait()
            if not self.stop_requested:
                emit("resumed", None, "resumed")
        return not self.stop_requested
