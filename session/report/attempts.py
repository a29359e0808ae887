"""What each operator tried on each target, folded from a recording's action, outcome, event and journal
records: `Attempt` (one cycle: lock, preview, confirmation, progress, result) and `Actions` (the fold).

The counts are of what happened, not of records: one rollback is one rollback although it left a
preview, a confirmation, an outcome and journal entries behind. A drive session's own journal entries
(its engine writes them, the session reads them back) fold into its actions (`Actions.is_own`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from session.recording.format import ActionKind, Direction
from session.recording.parts import JournalEntry, OutcomeSummary, PreviewSummary
from session.recording.records import Action, Event, Journal, Outcome
from session.report.markdown import md, target_text

OWN_SLACK: Final = 30.0  # seconds after an own action's end its journal entries may still arrive


@dataclass
class Attempt:
    """One cycle on one target: lock, preview, confirmation (or not), progress, result."""

    start: float
    step: str
    service: str | None
    direction: Direction
    who: str
    source: str = "this session"  # or "journal" (another cockpit or the CLI)
    end: float | None = None
    preview: PreviewSummary | None = None
    reason: str = ""
    confirmed: float | None = None
    cancelled: bool = False
    refused: str | None = None  # why it was refused (lock, gates, the engine)
    error: str | None = None  # the apply stopped on an exception
    outcome: OutcomeSummary | None = None
    finished: float | None = None
    forced: bool = False
    events: list[Event] = field(default_factory=list)

    @property
    def target(self) -> str:
        return target_text(self.step, self.service)

    @property
    def title(self) -> str:
        return f"{self.direction.value} {self.target}"

    def same(self, step: str, service: str | None, direction: Direction) -> bool:
        return (self.step, self.service, self.direction) == (step, service, direction)

    @property
    def roll(self) -> tuple[float, float] | None:
        """When the fleet was being changed by it (confirmation to result)."""
        if self.confirmed is None:
            return None
        return self.confirmed, self.finished if self.finished is not None else (self.end or self.confirmed)

    @property
    def applied(self) -> bool:
        return (
            self.direction is Direction.ADVANCE
            and self.outcome is not None
            and self.outcome.ok
            and self.outcome.stage != "dry-run"
        )

    @property
    def rolled_back(self) -> bool:
        """A rollback that ran (whatever its result): once, however many records it left."""
        return self.direction is Direction.ROLLBACK and (
            self.outcome is not None or self.error is not None or (self.confirmed is not None and self.refused is None)
        )

    @property
    def stopped(self) -> bool:
        """Stopped between instances at the operator's request (the engine's stage "stopped")."""
        return self.outcome is not None and not self.outcome.ok and self.outcome.stage == "stopped"

    @property
    def failed(self) -> bool:
        return self.error is not None or (
            self.outcome is not None and not self.outcome.ok and self.outcome.stage not in ("refused", "stopped")
        )

    def result(self) -> str:
        if self.refused is not None:
            return f"REFUSED: {md(self.refused)}"
        if self.error is not None:
            return f"STOPPED by an error: {md(self.error)}"
        o = self.outcome
        if o is not None:
            text = (
                "done"
                if o.ok
                else (f"STOPPED: {md(o.reason)}" if self.stopped else f"FAILED at {md(o.stage or '?')}: {md(o.reason)}")
            )
            if o.rolled_back is not None:
                rb = o.rolled_back
                text += (
                    "; rolled back automatically"
                    if rb.ok
                    else f"; the automatic rollback FAILED at {md(rb.stage or '?')}: {md(rb.reason)}"
                )
            return text
        if self.cancelled:
            return "cancelled at the confirmation"
        if self.confirmed is not None:
            return "no result recorded (the session ended or crashed during the apply)"
        return "previewed only"


def preview_lines(p: PreviewSummary) -> list[str]:
    """A preview in a few phrases: changes, restarts, gates, blockers."""
    out = []
    if p.changes:
        out.append(f"{len(p.changes)} change(s): " + "; ".join(md(c) for c in p.changes))
    else:
        out.append("no change (already configured)")
    if p.restarts:
        out.append(f"{len(p.restarts)} restart(s): " + ", ".join(md(r.host) for r in p.restarts))
    else:
        out.append("no restart")
    closed = p.closed_gates
    if not p.gates:
        out.append("no gates")
    elif closed:
        out.append(
            "gates closed: "
            + "; ".join(f"{md(g.gate)} ({md(g.status)}: {md(g.reason)})" for g in closed)
            + f"; {len(p.gates) - len(closed)} open"
        )
    else:
        out.append(f"gates: all {len(p.gates)} open ({', '.join(md(g.gate) for g in p.gates)})")
    if p.blockers:
        out.append("blockers: " + "; ".join(md(b.text) for b in p.blockers))
    return out


class Actions:
    """Folds action, outcome, event and journal records into Attempts, in order."""

    def __init__(self, who: str, where: str, mode: str) -> None:
        self.who, self.where, self.mode = who, where, mode
        self.own: list[Attempt] = []
        self.external: list[Attempt] = []
        self._open: Attempt | None = None
        self._ext_open: dict[tuple[str, str, str | None], Attempt] = {}

    def _current(self, ts: float, step: str, service: str | None, direction: Direction, who: str) -> Attempt:
        a = self._open
        if a is None or a.end is not None or not a.same(step, service, direction):
            a = Attempt(ts, step, service, direction, who or self.who)
            self.own.append(a)
            self._open = a
        return a

    def action(self, r: Action) -> None:
        a = self._current(r.ts, r.step, r.service, r.direction, r.who)
        if r.kind is ActionKind.PREVIEW:
            a.preview = r.preview
        elif r.kind is ActionKind.CONFIRM:
            a.confirmed, a.reason = r.ts, r.reason or ""
        elif r.kind is ActionKind.CANCEL:
            a.cancelled = True
        elif r.kind in (ActionKind.LOCK_REFUSED, ActionKind.REFUSED):
            a.refused = (
                r.error or r.reason or ("the fleet lock is held" if r.kind is ActionKind.LOCK_REFUSED else "refused")
            )
            a.end = r.ts
        elif r.kind is ActionKind.ERROR:
            a.error = r.error or "an error"
            a.finished = r.ts
        elif r.kind is ActionKind.UNLOCK:
            a.end = r.ts

    def outcome(self, r: Outcome) -> None:
        a = self._current(r.ts, r.step, r.service, r.direction, r.who)
        a.outcome, a.finished = r.outcome, r.ts
        a.reason = a.reason or r.reason
        if r.outcome.stage == "refused" and not r.outcome.ok:
            a.refused = r.outcome.reason
        if a.confirmed is None:
            a.confirmed = r.outcome.started if r.outcome.started is not None else r.ts

    def event(self, r: Event) -> None:
        if self._open is not None and self._open.end is None:
            self._open.events.append(r)

    def is_own(self, e: JournalEntry, ts: float) -> bool:
        """Whether a journal entry was written by this session's own engine (then it is one of its actions)."""
        if self.mode != "drive" or e.who != self.who or (e.where and e.where != self.where):
            return False
        t = e.ts if e.ts is not None else ts
        return any(a.start - 5.0 <= t <= (a.end or a.finished or a.start) + OWN_SLACK for a in self.own)

    def journal(self, r: Journal) -> Attempt | None:
        """Fold a journal entry from someone else into their attempt; returns the attempt it touched."""
        e = r.entry
        ts = e.ts if e.ts is not None else r.ts
        key = (e.who, e.step, e.service)
        if e.event == "apply-start":
            a = Attempt(ts, e.step, e.service, e.direction or Direction.ADVANCE, e.who, source="journal")
            a.confirmed, a.reason = ts, e.reason
            if isinstance(e.raw.get("preview"), dict):
                try:
                    a.preview = PreviewSummary.from_json(e.raw["preview"])
                except ValueError:
                    a.preview = None
            a.forced = bool(e.raw.get("force"))
            self.external.append(a)
            self._ext_open[key] = a
            return a
        if e.refused:
            a = Attempt(ts, e.step, e.service, e.direction or Direction.ADVANCE, e.who, source="journal")
            a.refused, a.end = e.reason or "refused", ts
            self.external.append(a)
            return a
        if e.event == "apply-done":
            done = self._ext_open.pop(key, None)
            if done is None:
                done = Attempt(ts, e.step, e.service, e.direction or Direction.ADVANCE, e.who, source="journal")
                done.confirmed = ts
                self.external.append(done)
            a = done
            a.outcome = OutcomeSummary(ok=bool(e.ok), stage=e.stage, reason=e.reason)
            a.finished = a.end = ts
            return a
        if e.event == "override":
            forced = self._ext_open.get(key)
            if forced is not None:
                forced.forced = True
            return forced
        return None
