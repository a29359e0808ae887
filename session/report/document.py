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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plans.plan import Plan
from session.recording.format import ActionKind, EventKind, RecordType
from session.recording.reader import Recording
from session.recording.records import Action, End, Event, Header, Journal, Lock, Note, Outcome, Verdicts
from session.report.attempts import Actions, Attempt, preview_lines
from session.report.final_state import damage_lines, final_state
from session.report.markdown import duration, md, target_text, when
from session.report.verdicts import Row, verdict_rows
from session.view import clock_text


@dataclass
class _Window:
    """What the report reads from a recording's records, in one pass, before it writes anything."""

    header: Header
    acts: Actions
    rows: list[Row] = field(default_factory=list)
    verdicts: list[Verdicts] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    journal: list[Journal] = field(default_factory=list)
    ended: End | None = None


_READ: tuple[RecordType, ...] = (
    RecordType.ACTION,
    RecordType.OUTCOME,
    RecordType.VERDICT,
    RecordType.JOURNAL,
    RecordType.LOCK,
    RecordType.EVENT,
    RecordType.NOTE,
    RecordType.END,
)


def report(rec: Recording, plan: Plan, services: Sequence[str] | None = None) -> str:
    """The Markdown account of `rec` (step states read with `plan`)."""
    rec.check_all()  # every damaged line is counted, not only the ones the report happens to read
    h = rec.info
    services = list(services if services is not None else h.services)
    w = _read(rec)
    _journal_rows(w)
    attempts = sorted(w.acts.own + w.acts.external, key=lambda a: a.start)
    verdict_rows(w.rows, w.verdicts, attempts)
    if rec.damaged:
        at = {e.line: e.ts for e in rec.entries if e.line in rec.damaged}
        for line, why in sorted(rec.damaged.items()):
            w.rows.append((at.get(line, rec.start), "", "damaged line", f"line {line}: {md(why)} — skipped"))
    out = _heading(rec, plan, w.ended)
    out += ["", "## Summary", ""]
    out += _summary(attempts, w.errors)
    out += final_state(rec, plan, services, w.notes)
    damage = damage_lines(rec)
    if damage:
        out += ["", "## The recording itself", "", *damage]
    out += ["", "## Actions", ""]
    if not attempts:
        out += ["No action was taken or journaled during the window.", ""]
    for n, a in enumerate(attempts, 1):
        out += [*_attempt_lines(n, a), ""]
    out += ["## Timeline", "", "| time (UTC) | who | what | detail |", "|---|---|---|---|"]
    out.append(f"| {clock_text(rec.start)} | {md(h.who)} | session started | {h.mode} mode |")
    for ts, who, what, detail in sorted(w.rows, key=lambda x: x[0]):
        out.append(f"| {clock_text(ts)} | {who} | {what} | {detail} |")
    out.append("")
    return "\n".join(out)


def _heading(rec: Recording, plan: Plan, ended: End | None) -> list[str]:
    """The title (environment, window, length) and who recorded it, how."""
    h = rec.info
    start, end = rec.start, rec.end
    out = [f"# Change window: {md(h.env)} — {when(start)} → {when(end)} ({duration(end - start)})", ""]
    out.append(
        f"Recorded by **{md(h.who)}** on {md(h.where)} in **{h.mode.upper()}** mode; plan "
        f"{md(h.plan or plan.name)}; environment {'**protected**' if h.protected else 'not protected'}; "
        f"{len(rec.snaps)} snapshots; recording format {h.version}"
        + ("" if ended is not None else "; **no end record: the session crashed or is still running**")
        + "."
    )
    return out


def _read(rec: Recording) -> _Window:
    """Fold the records into attempts and timeline rows; keep verdicts, errors, notes and journal entries."""
    h = rec.info
    w = _Window(h, Actions(h.who, h.where, h.mode))
    for r in rec.records([t.value for t in _READ]):
        if isinstance(r, Action):
            w.acts.action(r)
            _action_row(w.rows, r, h.who)
        elif isinstance(r, Outcome):
            w.acts.outcome(r)
            _outcome_rows(w.rows, r, h.who)
        elif isinstance(r, Event):
            w.acts.event(r)
            if r.kind == EventKind.ERROR:
                w.rows.append((r.ts, "", "error", f"{md(r.host or '')} {md(r.text)}".strip()))
        elif isinstance(r, Verdicts):
            w.verdicts.append(r)
        elif isinstance(r, Journal):
            if not r.backlog:
                w.journal.append(r)
        elif isinstance(r, Lock):
            w.rows.append((r.ts, "", "lock", _lock_text(r)))
        elif isinstance(r, Note):
            w.rows.append((r.ts, "", "error" if r.level == "error" else "note", md(r.text)))
            if r.level == "error":
                w.errors.append((r.ts, r.text))
            w.notes.append(r)
        elif isinstance(r, End):
            w.ended = r
            w.rows.append((r.ts, "", "session ended", f"{r.snapshots} snapshots"))
    return w


def _journal_rows(w: _Window) -> None:
    """Journal entries: the session's own fold into its actions; anyone else's are actions of their own."""
    for r in w.journal:
        e = r.entry
        ts = e.ts if e.ts is not None else r.ts
        if w.acts.is_own(e, r.ts):
            continue
        w.acts.journal(r)
        parts = [md(e.event)] + [md(x) for x in (e.step, e.service or "", e.direction or "") if x]
        if e.refused:
            parts.append("REFUSED")
        elif e.ok is not None:
            parts.append("ok" if e.ok else f"FAILED at {md(e.stage or '?')}")
        detail = f"— {md(e.reason)}" if e.reason else ""
        w.rows.append((ts, md(e.who), "journal: " + " ".join(parts), detail))


def _outcome_rows(rows: list[Row], r: Outcome, who_default: str) -> None:
    """An apply's result, and the automatic rollback it made, as timeline rows."""
    o = r.outcome
    what = f"{r.direction.value} {target_text(r.step, r.service)}"
    rows.append(
        (
            r.ts,
            md(r.who or who_default),
            f"**{'done' if o.ok else 'FAILED'}: {md(what)}**",
            "" if o.ok else f"at {md(o.stage or '?')}: {md(o.reason)}",
        )
    )
    if o.rolled_back is not None:
        rb = o.rolled_back
        rows.append(
            (
                r.ts,
                md(r.who or who_default),
                f"**automatic rollback {md(target_text(r.step, r.service))}**",
                "done" if rb.ok else f"FAILED at {md(rb.stage or '?')}: {md(rb.reason)}",
            )
        )


def _lock_text(r: Lock) -> str:
    """The lock's change in words: unreadable, held by whom, or free."""
    holder = r.holder
    if not r.known:
        return "the fleet lock could not be read" + (f": {md(r.error)}" if r.error else "")
    if holder:
        return f"held by {md(holder.who)} on {md(holder.where)} (step {md(holder.step)})"
    return "the fleet lock is free"


def _action_row(rows: list[Row], r: Action, who_default: str) -> None:
    """One action of the driving session as a timeline row."""
    who = md(r.who or who_default)
    what = md(f"{r.direction.value} {target_text(r.step, r.service)}")
    k = r.kind
    if k is ActionKind.PREVIEW and r.preview is not None:
        rows.append((r.ts, who, f"preview {what}", "; ".join(preview_lines(r.preview))))
    elif k is ActionKind.CONFIRM:
        rows.append((r.ts, who, f"**confirmed {what}**", f"reason: {md(r.reason or '')}"))
    elif k is ActionKind.CANCEL:
        rows.append((r.ts, who, f"cancelled {what}", ""))
    elif k in (ActionKind.LOCK_REFUSED, ActionKind.REFUSED):
        rows.append((r.ts, who, f"**refused {what}**", md(r.error or r.reason or "")))
    elif k is ActionKind.ERROR:
        rows.append((r.ts, who, f"**error: {what}**", md(r.error or "")))
    elif k is ActionKind.LOCK:
        rows.append((r.ts, who, "lock taken", md(target_text(r.step, r.service))))
    elif k is ActionKind.UNLOCK:
        rows.append((r.ts, who, "lock released", md(target_text(r.step, r.service))))


def _grouped(errors: Sequence[tuple[float, str]]) -> list[str]:
    """Errors noted, the same text counted once with its times: "3 × snapshot failed: … (08:01:02–08:01:42)"."""
    groups: dict[str, list[float]] = {}
    for ts, text in errors:
        groups.setdefault(text, []).append(ts)
    out = []
    for text, times in sorted(groups.items(), key=lambda g: g[1][0]):
        span = clock_text(times[0]) + (f"–{clock_text(times[-1])}" if len(times) > 1 else "")
        out.append(f"{len(times)} × {md(text)} ({span})" if len(times) > 1 else f"{when(times[0])} {md(text)}")
    return out


def _summary(attempts: Sequence[Attempt], errors: Sequence[tuple[float, str]]) -> list[str]:
    def listed(title: str, items: Iterable[str]) -> str:
        items = list(items)
        return f"- {title}: {len(items)}" + "".join(f"\n  - {x}" for x in items)

    def line(a: Attempt, extra: str = "") -> str:
        by = f" by {md(a.who)}" + (" (journal)" if a.source == "journal" else "")
        reason = f" (reason: {md(a.reason)})" if a.reason else ""
        return f"{when(a.finished or a.confirmed or a.start)} {md(a.title)}{by}{reason}{extra}"

    applied = [line(a) for a in attempts if a.applied]
    rollbacks = [line(a, "" if a.outcome is None or a.outcome.ok else " — FAILED") for a in attempts if a.rolled_back]
    rollbacks += [
        line(a, " — automatic, " + ("done" if a.outcome.rolled_back.ok else "FAILED"))
        for a in attempts
        if a.outcome is not None and a.outcome.rolled_back is not None
    ]
    refused = [
        f"{when(a.end or a.start)} {md(a.title)} by {md(a.who)}"
        f"{' (journal)' if a.source == 'journal' else ''}: {md(a.refused)}"
        for a in attempts
        if a.refused is not None
    ]
    failures = [line(a, f" — {a.result()}") for a in attempts if a.failed]
    stopped = [line(a, f" — {a.result()}") for a in attempts if a.stopped]
    cancelled = [line(a) for a in attempts if a.cancelled and a.outcome is None]
    return [
        listed("Applied", applied),
        listed("Rollbacks", rollbacks),
        listed("Refused", refused),
        listed("Failures", failures),
        listed("Stopped by the operator", stopped),
        listed("Cancelled", cancelled),
        f"- Errors noted (failed snapshots, crashed tasks): {len(errors)}"
        + "".join(f"\n  - {x}" for x in _grouped(errors)),
    ]


def _attempt_lines(n: int, a: Attempt) -> list[str]:
    at = when(a.confirmed or a.start)
    src = f"{md(a.who)}" + (", from the journal" if a.source == "journal" else "")
    out = [f"### {n}. {md(a.title)} — {a.result().split(':')[0]}", "", f"- When: {at} ({src})"]
    if a.reason:
        out.append(f"- Reason: {md(a.reason)}")
    if a.preview is not None:
        out += [f"- Preview: {x}" for x in preview_lines(a.preview)]
    if a.forced:
        out.append("- **Forced past closed gates**")
    errs = [e for e in a.events if e.kind == EventKind.ERROR]
    for e in errs[:5]:
        out.append(f"- Error on {md(e.host or 'the fleet')}: {md(e.text)}")
    out.append(f"- Result: {a.result()}")
    return out
