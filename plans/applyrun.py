"""One apply as it is told and recorded: events to the caller, entries to the journals, and its outcome.

Every decision is journaled where everyone reads it (refusals included). Once an apply has started, a
journal that cannot be written is said (an event, and `Outcome.journal_errors`), never fatal: the fleet is
mid-change and the roll must be able to finish or roll back. Before the first write to the config store
an intent records what is about to change, so a write that stops half-way is never silent
(`plans.intent`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from inventory.model import Environment
from plans.capabilities import EngineJournal
from plans.intent import Intent, IntentChange
from plans.journal import JournalError
from plans.outcome import EngineEvent, EventKind, InstanceOutcome, Outcome, Stage
from plans.preview import Preview
from plans.store import ConfigStore, StoreError

__all__ = ["ApplyRecord"]


class ApplyRecord:
    """The record of one apply of `preview`: `emit` tells the caller, `note` journals, `done` is the outcome."""

    def __init__(
        self, journal: EngineJournal, preview: Preview, on_event: Callable[[EngineEvent], None] | None
    ) -> None:
        self.journal = journal
        self.preview = preview
        self.on_event = on_event
        self.started = time.time()
        self.journal_errors: list[str] = []

    def emit(self, kind: EventKind, host: str | None, text: str) -> None:
        if self.on_event is not None:
            self.on_event(EngineEvent(kind, host, text))

    def done(
        self,
        ok: bool,
        stage: Stage,
        why: str,
        inst: Sequence[InstanceOutcome] = (),
        changed: Sequence[str] = (),
        rolled: Outcome | None = None,
    ) -> Outcome:
        self.emit("done" if ok else "error", None, why)
        return Outcome(
            ok, stage, why, tuple(inst), self.started, time.time(), rolled, tuple(changed), tuple(self.journal_errors)
        )

    async def note(self, event: str, **fields: Any) -> None:
        """A journal entry; a journal that cannot be written is said, not raised."""
        try:
            entry = await self.journal.write(event, **fields)
        except JournalError as exc:
            self.journal_errors.append(str(exc))
            self.emit("journal", None, f"journal: {exc}")
            return
        if entry.get("fleet_journal_error"):
            text = (
                f"the fleet journal could not be written ({entry['fleet_journal_error']}); kept locally and "
                "uploaded with the next entry that reaches it"
            )
            self.journal_errors.append(text)
            self.emit("journal", None, text)

    async def finished(self, ok: bool, stage: Stage, why: str, **fields: Any) -> None:
        """The "apply-done" entry of this apply."""
        await self.note(
            "apply-done", step=self.preview.step, service=self.preview.service, ok=ok, stage=stage, reason=why, **fields
        )

    async def refuse(self, stage: Stage, why: str) -> Outcome:
        """A refusal is an outcome, said where everyone reads (the journals), not only here."""
        await self.finished(False, stage, why, direction=self.preview.direction)
        return self.done(False, stage, why)

    async def write_changes(
        self, env: Environment, store: ConfigStore, invalidate: Callable[[], None]
    ) -> Outcome | None:
        """The preview's changes into the config store, under an intent; None when written (or nothing to
        write), else the outcome of a write that failed (undone, or said exactly what holds what)."""
        p = self.preview
        if not p.changes:
            return None
        token = os.urandom(8).hex()
        intent = Intent(
            token,
            p.step,
            p.service or "",
            p.direction,
            tuple(IntentChange(c.var, c.old, c.new) for c in p.changes),
            "",
            "",
            time.time(),
        )
        await self.note("intent", **intent.to_json())
        try:
            receipts = await store.write_all(p.changes)
        except StoreError as exc:
            invalidate()
            if not exc.partial:  # undone: the store holds what it held before; else the intent stays open
                await self.note("intent-done", token=token, ok=False, reason=str(exc), step=p.step, service=p.service)
            await self.finished(False, "write", str(exc))
            return self.done(False, "write", f"{exc}")
        await self.note("intent-done", token=token, ok=True, step=p.step, service=p.service)
        for c, receipt in zip(p.changes, receipts, strict=False):
            self.emit("write", None, f"{c.describe(env)}  [{receipt}]")
        return None
