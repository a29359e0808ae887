"""`cockpit replay FILE --report`: a recording as a Markdown account of the change window — each action
with its preview, reason, gates and result; refusals; errors; rollbacks; verdict changes, folded per
roll; and the final state as last observed. No textual here.

The counts are of what happened, not of records: one rollback is one rollback although it left a
preview, a confirmation, an outcome and journal entries behind. A drive session's own journal
entries (its engine writes them, the session reads them back) fold into its actions; entries from
anyone else (another cockpit, the CLI) are actions of their own. Every recorded string is escaped
for Markdown with its control characters made visible.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from plans.plan import Plan
from probes.model import Verdict
from probes.snapshot import FleetSnapshot
from tui.printable import printable
from tui.recording import Recording
from tui.records import (
    Action,
    ActionKind,
    Direction,
    End,
    Event,
    EventKind,
    Journal,
    JournalEntry,
    Lock,
    Note,
    Outcome,
    OutcomeSummary,
    PreviewSummary,
    RecordType,
    VerdictChange,
    Verdicts,
)
from tui.replay import damage_summary, printable_snapshot
from tui.view import FleetView, build_view, clock_text

OWN_SLACK: Final = 30.0  # seconds after an own action's end its journal entries may still arrive
QUIET_FOLD: Final = 3  # outside a roll, more verdict changes than this within FOLD_GAP fold into one line
FOLD_GAP: Final = 60.0
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>#+!|~&$])")


def md(text: object) -> str:
    """Recorded text as inert Markdown: control characters made visible, newlines as ⏎, every character
    Markdown could read as formatting escaped."""
    s = printable(str(text), newlines=False).replace("\\n", " ⏎ ")
    return _MD_SPECIAL.sub(r"\\\1", s).strip()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _target(step: str, service: str | None) -> str:
    return f"{step} {service}".strip() if service else step


# --------------------------------------------------------------------------------------------
# actions: what one operator tried on one target, from its records


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
        return _target(self.step, self.service)

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
        return (self.direction is Direction.ADVANCE and self.outcome is not None and self.outcome.ok
                and self.outcome.stage != "dry-run")

    @property
    def rolled_back(self) -> bool:
        """A rollback that ran (whatever its result): once, however many records it left."""
        return self.direction is Direction.ROLLBACK and (self.outcome is not None or self.error is not None or
                                                         (self.confirmed is not None and self.refused is None))

    @property
    def stopped(self) -> bool:
        """Stopped between instances at the operator's request (the engine's stage "stopped")."""
        return self.outcome is not None and not self.outcome.ok and self.outcome.stage == "stopped"

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.outcome is not None and not self.outcome.ok
                                          and self.outcome.stage not in ("refused", "stopped"))

    def result(self) -> str:
        if self.refused is not None:
            return f"REFUSED: {md(self.refused)}"
        if self.error is not None:
            return f"STOPPED by an error: {md(self.error)}"
        o = self.outcome
        if o is not None:
            text = "done" if o.ok else (f"STOPPED: {md(o.reason)}" if self.stopped else
                                        f"FAILED at {md(o.stage or '?')}: {md(o.reason)}")
            if o.rolled_back is not None:
                rb = o.rolled_back
                text += ("; rolled back automatically" if rb.ok else
                         f"; the automatic rollback FAILED at {md(rb.stage or '?')}: {md(rb.reason)}")
            return text
        if self.cancelled:
            return "cancelled at the confirmation"
        if self.confirmed is not None:
            return "no result recorded (the session ended or crashed during the apply)"
        return "previewed only"


def _preview_lines(p: PreviewSummary) -> list[str]:
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
        out.append("gates closed: " + "; ".join(f"{md(g.gate)} ({md(g.status)}: {md(g.reason)})" for g in closed)
                   + f"; {len(p.gates) - len(closed)} open")
    else:
        out.append(f"gates: all {len(p.gates)} open ({', '.join(md(g.gate) for g in p.gates)})")
    if p.blockers:
        out.append("blockers: " + "; ".join(md(b.text) for b in p.blockers))
    return out


class _Actions:
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
            a.refused = r.error or r.reason or ("the fleet lock is held" if r.kind is ActionKind.LOCK_REFUSED
                                                else "refused")
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


# --------------------------------------------------------------------------------------------
# verdict changes: folded per roll


def _flow(changes: Sequence[VerdictChange]) -> str:
    """"check tls.postgres db:5432: ok → fail → ok; step pg-3:api: configured → live" (first 4 marks)."""
    seq: dict[str, list[str]] = {}
    for c in changes:
        vals = seq.setdefault(c.what, [str(c.before)])
        vals.append(str(c.after))
    def values(vals: list[str]) -> str:
        if len(vals) <= 3:
            return " → ".join(md(v) for v in vals)
        return f"{md(vals[0])} → {md(vals[1])} … {md(vals[-1])} ({len(vals) - 1} changes)"

    parts = [f"{md(w)}: {values(vals)}" for w, vals in list(seq.items())[:4]]
    if len(seq) > 4:
        parts.append(f"… {len(seq) - 4} more")
    return "; ".join(parts)


def _interesting(c: VerdictChange) -> bool:
    if c.is_step or c.is_fleet:
        return True
    return bool({str(c.before), str(c.after)} & {"fail", "error", "failed"})


def _change_text(c: VerdictChange) -> str:
    if c.is_step:
        return f"{md(c.text.split(':')[0] or c.what)}: {md(c.before)} → {md(c.after)}"
    if c.is_fleet:
        return f"fleet verdict: {md(c.before)} → {md(c.after)}"
    return f"{md(c.before)} → {md(c.after)}: {md(c.text or c.what)}"


# --------------------------------------------------------------------------------------------
# the final state


def _states(view: FleetView | None) -> str:
    if view is None:
        return "(no snapshot)"
    groups: dict[str, list[str]] = {}
    for r in view.rows:
        label = f"{r.step} {r.target}" if r.service else r.step
        groups.setdefault(r.state, []).append(md(label))
    order = ("verified", "live", "configured", "pending", "failed", "unknown")
    return "; ".join(f"**{s}**: {', '.join(groups[s])}" for s in order if s in groups) or "(no steps)"


def _unmeasured(snap: FleetSnapshot) -> str:
    """Why the snapshot does not show the fleet (most checks could not measure), or ""."""
    checks = snap.checks
    errors = [c for c in checks if c.verdict is Verdict.ERROR]
    if not checks or len(errors) * 2 < len(checks):
        return ""
    example = md(f"{errors[0].check} {errors[0].target}: {errors[0].summary}")[:200]
    return (f"the fleet could not be measured: {len(errors)} of {len(checks)} checks could not measure "
            f"(e.g. {example}) — the states above are what could be read, not the fleet")


def _view(plan: Plan, rec: Recording, i: int, services: Sequence[str]) -> FleetView | None:
    snap = rec.snapshot(i)
    if snap is None:
        return None
    try:
        return build_view(plan, printable_snapshot(snap), services, now=rec.snaps[i].ts)
    except Exception as exc:  # a snapshot whose values are not of their types: damage, not a crash
        rec.damaged.setdefault(rec.snaps[i].line, f"a snapshot the screens cannot show ({type(exc).__name__})")
        return None


def _good_view(plan: Plan, rec: Recording, i: int, services: Sequence[str], *, backwards: bool
               ) -> tuple[int, FleetView | None]:
    """The first (forwards) or last (backwards) snapshot from `i` that can be shown."""
    tries = 0
    while 0 <= i < len(rec.snaps) and tries < 200:
        if backwards:
            i, snap = rec.last_good(i)
            if snap is None:
                return -1, None
        v = _view(plan, rec, i, services)
        if v is not None:
            return i, v
        i = i - 1 if backwards else i + 1
        tries += 1
    return -1, None


def _typical_gap(rec: Recording) -> float:
    times = rec.times[-200:]
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if gaps else 1.0


# --------------------------------------------------------------------------------------------


def report(rec: Recording, plan: Plan, services: Sequence[str] | None = None) -> str:
    """The Markdown account of `rec` (step states read with `plan`)."""
    rec.check_all()  # every damaged line is counted, not only the ones the report happens to read
    h = rec.info
    services = list(services if services is not None else h.services)
    start, end = rec.start, rec.end
    acts = _Actions(h.who, h.where, h.mode)
    rows: list[tuple[float, str, str, str]] = []
    verdicts: list[Verdicts] = []
    errors: list[tuple[float, str]] = []
    notes_after: list[Note] = []
    journal_rows: list[Journal] = []
    ended: End | None = None
    for r in rec.records([t.value for t in (RecordType.ACTION, RecordType.OUTCOME, RecordType.VERDICT,
                                            RecordType.JOURNAL, RecordType.LOCK, RecordType.EVENT,
                                            RecordType.NOTE, RecordType.END)]):
        if isinstance(r, Action):
            acts.action(r)
            _action_row(rows, r, h.who)
        elif isinstance(r, Outcome):
            acts.outcome(r)
            o = r.outcome
            what = f"{r.direction.value} {_target(r.step, r.service)}"
            rows.append((r.ts, md(r.who or h.who), f"**{'done' if o.ok else 'FAILED'}: {md(what)}**",
                         "" if o.ok else f"at {md(o.stage or '?')}: {md(o.reason)}"))
            if o.rolled_back is not None:
                rb = o.rolled_back
                rows.append((r.ts, md(r.who or h.who), f"**automatic rollback {md(_target(r.step, r.service))}**",
                             "done" if rb.ok else f"FAILED at {md(rb.stage or '?')}: {md(rb.reason)}"))
        elif isinstance(r, Event):
            acts.event(r)
            if r.kind == EventKind.ERROR:
                rows.append((r.ts, "", "error", f"{md(r.host or '')} {md(r.text)}".strip()))
        elif isinstance(r, Verdicts):
            verdicts.append(r)
        elif isinstance(r, Journal):
            if not r.backlog:
                journal_rows.append(r)
        elif isinstance(r, Lock):
            holder = r.holder
            text = ("the fleet lock could not be read" + (f": {md(r.error)}" if r.error else "")) if not r.known \
                else (f"held by {md(holder.who)} on {md(holder.where)} (step {md(holder.step)})" if holder
                      else "the fleet lock is free")
            rows.append((r.ts, "", "lock", text))
        elif isinstance(r, Note):
            rows.append((r.ts, "", "error" if r.level == "error" else "note", md(r.text)))
            if r.level == "error":
                errors.append((r.ts, r.text))
            notes_after.append(r)
        elif isinstance(r, End):
            ended = r
            rows.append((r.ts, "", "session ended", f"{r.snapshots} snapshots"))
    # journal entries: the session's own fold into its actions; anyone else's are actions of their own
    for r in journal_rows:
        e = r.entry
        ts = e.ts if e.ts is not None else r.ts
        if acts.is_own(e, r.ts):
            continue
        acts.journal(r)
        parts = [md(e.event)] + [md(x) for x in (e.step, e.service or "", e.direction or "") if x]
        if e.refused:
            parts.append("REFUSED")
        elif e.ok is not None:
            parts.append("ok" if e.ok else f"FAILED at {md(e.stage or '?')}")
        detail = f"— {md(e.reason)}" if e.reason else ""
        rows.append((ts, md(e.who), "journal: " + " ".join(parts), detail))
    attempts = sorted(acts.own + acts.external, key=lambda a: a.start)
    _verdict_rows(rows, verdicts, attempts)
    if rec.damaged:
        at = {e.line: e.ts for e in rec.entries if e.line in rec.damaged}
        for line, why in sorted(rec.damaged.items()):
            rows.append((at.get(line, start), "", "damaged line", f"line {line}: {md(why)} — skipped"))

    out = [f"# Change window: {md(h.env)} — {_when(start)} → {_when(end)} ({_duration(end - start)})", ""]
    out.append(f"Recorded by **{md(h.who)}** on {md(h.where)} in **{h.mode.upper()}** mode; plan "
               f"{md(h.plan or plan.name)}; environment {'**protected**' if h.protected else 'not protected'}; "
               f"{len(rec.snaps)} snapshots; recording format {h.version}"
               + ("" if ended is not None else "; **no end record: the session crashed or is still running**")
               + ".")
    out += ["", "## Summary", ""]
    out += _summary(attempts, errors)
    out += _final_state(rec, plan, services, notes_after)
    damage = _damage_lines(rec)
    if damage:
        out += ["", "## The recording itself", "", *damage]
    out += ["", "## Actions", ""]
    if not attempts:
        out += ["No action was taken or journaled during the window.", ""]
    for n, a in enumerate(attempts, 1):
        out += [*_attempt_lines(n, a), ""]
    out += ["## Timeline", "", "| time (UTC) | who | what | detail |", "|---|---|---|---|"]
    out.append(f"| {clock_text(start)} | {md(h.who)} | session started | {h.mode} mode |")
    for ts, who, what, detail in sorted(rows, key=lambda x: x[0]):
        out.append(f"| {clock_text(ts)} | {who} | {what} | {detail} |")
    out.append("")
    return "\n".join(out)


def _action_row(rows: list[tuple[float, str, str, str]], r: Action, who_default: str) -> None:
    who = md(r.who or who_default)
    what = md(f"{r.direction.value} {_target(r.step, r.service)}")
    k = r.kind
    if k is ActionKind.PREVIEW and r.preview is not None:
        rows.append((r.ts, who, f"preview {what}", "; ".join(_preview_lines(r.preview))))
    elif k is ActionKind.CONFIRM:
        rows.append((r.ts, who, f"**confirmed {what}**", f"reason: {md(r.reason or '')}"))
    elif k is ActionKind.CANCEL:
        rows.append((r.ts, who, f"cancelled {what}", ""))
    elif k in (ActionKind.LOCK_REFUSED, ActionKind.REFUSED):
        rows.append((r.ts, who, f"**refused {what}**", md(r.error or r.reason or "")))
    elif k is ActionKind.ERROR:
        rows.append((r.ts, who, f"**error: {what}**", md(r.error or "")))
    elif k is ActionKind.LOCK:
        rows.append((r.ts, who, "lock taken", md(_target(r.step, r.service))))
    elif k is ActionKind.UNLOCK:
        rows.append((r.ts, who, "lock released", md(_target(r.step, r.service))))


def _verdict_rows(rows: list[tuple[float, str, str, str]], verdicts: Sequence[Verdicts],
                  attempts: Sequence[Attempt]) -> None:
    """Verdict changes during a roll fold into one line per roll; elsewhere, bursts fold too."""
    rolls = [(a, a.roll) for a in attempts if a.roll is not None]
    during: dict[int, list[VerdictChange]] = {}
    quiet: list[tuple[float, VerdictChange]] = []
    for v in verdicts:
        hit = next((i for i, (_, span) in enumerate(rolls) if span and span[0] <= v.ts <= span[1]), None)
        if hit is not None:
            during.setdefault(hit, []).extend(v.changes)
        else:
            quiet += [(v.ts, c) for c in v.changes if _interesting(c)]
    for i, changes in during.items():
        a, span = rolls[i]
        assert span is not None
        if changes:
            n = len(changes)
            verb = "rolled back" if a.direction is Direction.ROLLBACK else "rolled"
            rows.append((span[0] + 1e-6, "", "verdicts",
                         f"{n} verdict change{'s' if n != 1 else ''} while {md(a.target)} {verb} ({_flow(changes)})"))
    burst: list[tuple[float, VerdictChange]] = []

    def flush() -> None:
        if len(burst) > QUIET_FOLD:
            rows.append((burst[0][0], "", "verdicts", f"{len(burst)} verdict changes in "
                         f"{_duration(burst[-1][0] - burst[0][0])} ({_flow([c for _, c in burst])})"))
        else:
            rows.extend((ts, "", "verdict", _change_text(c)) for ts, c in burst)
        burst.clear()

    for ts, c in quiet:
        if c.is_step:  # a step's state is told on its own line, always
            rows.append((ts, "", "verdict", _change_text(c)))
            continue
        if burst and ts - burst[-1][0] > FOLD_GAP:
            flush()
        burst.append((ts, c))
    flush()


def _grouped(errors: Sequence[tuple[float, str]]) -> list[str]:
    """Errors noted, the same text counted once with its times: "3 × snapshot failed: … (08:01:02–08:01:42)"."""
    groups: dict[str, list[float]] = {}
    for ts, text in errors:
        groups.setdefault(text, []).append(ts)
    out = []
    for text, times in sorted(groups.items(), key=lambda g: g[1][0]):
        when = clock_text(times[0]) + (f"–{clock_text(times[-1])}" if len(times) > 1 else "")
        out.append(f"{len(times)} × {md(text)} ({when})" if len(times) > 1 else f"{_when(times[0])} {md(text)}")
    return out


def _summary(attempts: Sequence[Attempt], errors: Sequence[tuple[float, str]]) -> list[str]:
    def listed(title: str, items: Iterable[str]) -> str:
        items = list(items)
        return f"- {title}: {len(items)}" + "".join(f"\n  - {x}" for x in items)

    def line(a: Attempt, extra: str = "") -> str:
        by = f" by {md(a.who)}" + (" (journal)" if a.source == "journal" else "")
        reason = f" (reason: {md(a.reason)})" if a.reason else ""
        return f"{_when(a.finished or a.confirmed or a.start)} {md(a.title)}{by}{reason}{extra}"

    applied = [line(a) for a in attempts if a.applied]
    rollbacks = [line(a, "" if a.outcome is None or a.outcome.ok else " — FAILED") for a in attempts if a.rolled_back]
    rollbacks += [line(a, " — automatic, " + ("done" if a.outcome.rolled_back.ok else "FAILED"))
                  for a in attempts if a.outcome is not None and a.outcome.rolled_back is not None]
    refused = [f"{_when(a.end or a.start)} {md(a.title)} by {md(a.who)}"
               f"{' (journal)' if a.source == 'journal' else ''}: {md(a.refused)}"
               for a in attempts if a.refused is not None]
    failures = [line(a, f" — {a.result()}") for a in attempts if a.failed]
    stopped = [line(a, f" — {a.result()}") for a in attempts if a.stopped]
    cancelled = [line(a) for a in attempts if a.cancelled and a.outcome is None]
    return [listed("Applied", applied), listed("Rollbacks", rollbacks), listed("Refused", refused),
            listed("Failures", failures), listed("Stopped by the operator", stopped), listed("Cancelled", cancelled),
            f"- Errors noted (failed snapshots, crashed tasks): {len(errors)}"
            + "".join(f"\n  - {x}" for x in _grouped(errors))]


def _final_state(rec: Recording, plan: Plan, services: Sequence[str], notes: Sequence[Note]) -> list[str]:
    if not rec.snaps:
        return ["- No snapshot was recorded."]
    fi, first = _good_view(plan, rec, 0, services, backwards=False)
    li, last = _good_view(plan, rec, len(rec.snaps) - 1, services, backwards=True)
    if first is None or last is None:
        return ["- No snapshot in the recording can be read (see below)."]
    out = [f"- Fleet verdict: {first.snapshot.verdict.value} at the start, {last.snapshot.verdict.value} "
           "when last observed"]
    out.append(f"- At the start ({clock_text(rec.snaps[fi].ts)}): {_states(first)}")
    seen = rec.snaps[li].ts
    gap = rec.end - seen
    stale = gap > max(30.0, 5 * _typical_gap(rec))
    if stale:
        out.append(f"- **Last observed at {clock_text(seen)}, {_duration(gap)} before the recording ended**: "
                   f"{_states(last)}")
    else:
        out.append(f"- At the end ({clock_text(seen)}): {_states(last)}")
    failed_after = [n for n in notes if n.ts > seen and n.level == "error"]
    if failed_after:
        out.append(f"  - after it, {len(failed_after)} error(s) and no readable snapshot; the last: "
                   f"{md(failed_after[-1].text)}")
    elif stale:
        out.append("  - nothing was observed after it: the states are as they were then, not at the end")
    unmeasured = _unmeasured(last.snapshot)
    if unmeasured:
        out.append(f"  - **{unmeasured}**")
    if last.next_text and not stale and not unmeasured:
        out.append(f"- {md(last.next_text[0].upper() + last.next_text[1:])}")
    return out


def _damage_lines(rec: Recording) -> list[str]:
    out = []
    summary = damage_summary(rec, limit=50)
    if summary:
        out.append(f"- {summary}:")
        for line, why in sorted(rec.damaged.items())[:50]:
            out.append(f"  - line {line}: {md(why)}")
        lost = rec.lost_snapshots()
        if lost:
            out.append(f"- {lost} snapshot(s) could not be rebuilt because a line they build on is damaged")
    if rec.cut_short is not None:
        out.append(f"- The last line (line {rec.cut_short}) was cut short (the session crashed while writing it); "
                   "it is ignored")
    if rec.out_of_order:
        out.append(f"- {len(rec.out_of_order)} line(s) have times earlier than the line before them (a clock "
                   f"step?); they are kept in file order: lines {', '.join(map(str, rec.out_of_order[:20]))}")
    return out


def _attempt_lines(n: int, a: Attempt) -> list[str]:
    when = _when(a.confirmed or a.start)
    src = f"{md(a.who)}" + (", from the journal" if a.source == "journal" else "")
    out = [f"### {n}. {md(a.title)} — {a.result().split(':')[0]}", "",
           f"- When: {when} ({src})"]
    if a.reason:
        out.append(f"- Reason: {md(a.reason)}")
    if a.preview is not None:
        out += [f"- Preview: {x}" for x in _preview_lines(a.preview)]
    if a.forced:
        out.append("- **Forced past closed gates**")
    errs = [e for e in a.events if e.kind == EventKind.ERROR]
    for e in errs[:5]:
        out.append(f"- Error on {md(e.host or 'the fleet')}: {md(e.text)}")
    out.append(f"- Result: {a.result()}")
    return out
