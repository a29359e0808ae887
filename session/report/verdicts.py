"""Verdict changes in the report: folded per roll, and bursts outside a roll folded too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from session.recording.format import Direction
from session.recording.parts import VerdictChange
from session.recording.records import Verdicts
from session.report.attempts import Attempt
from session.report.markdown import duration, md

QUIET_FOLD: Final = 3  # outside a roll, more verdict changes than this within FOLD_GAP fold into one line
FOLD_GAP: Final = 60.0
Row = tuple[float, str, str, str]  # a timeline row: time, who, what, detail


def _flow(changes: Sequence[VerdictChange]) -> str:
    """ "check tls.postgres db:5432: ok → fail → ok; step pg-3:api: configured → live" (first 4 marks)."""
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


def verdict_rows(rows: list[Row], verdicts: Sequence[Verdicts], attempts: Sequence[Attempt]) -> None:
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
            rows.append(
                (
                    span[0] + 1e-6,
                    "",
                    "verdicts",
                    f"{n} verdict change{'s' if n != 1 else ''} while {md(a.target)} {verb} ({_flow(changes)})",
                )
            )
    burst: list[tuple[float, VerdictChange]] = []

    def flush() -> None:
        if len(burst) > QUIET_FOLD:
            rows.append(
                (
                    burst[0][0],
                    "",
                    "verdicts",
                    f"{len(burst)} verdict changes in "
                    f"{duration(burst[-1][0] - burst[0][0])} ({_flow([c for _, c in burst])})",
                )
            )
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
