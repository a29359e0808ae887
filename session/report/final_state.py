"""The report's final state: the fleet at the start and as last observed, and the recording's own damage."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from plans.plan import Plan
from probes.model import Verdict
from probes.snapshot import FleetSnapshot
from session.recording.reader import Recording
from session.recording.records import Note
from session.replay import damage_summary, printable_snapshot
from session.report.markdown import duration, md
from session.view import FleetView, build_view, clock_text


def _states(view: FleetView | None) -> str:
    """Each state with the targets in it: "**verified**: pg-2, pg-3; **pending**: pg-4"."""
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
    return (
        f"the fleet could not be measured: {len(errors)} of {len(checks)} checks could not measure "
        f"(e.g. {example}) — the states above are what could be read, not the fleet"
    )


def _view(plan: Plan, rec: Recording, i: int, services: Sequence[str]) -> FleetView | None:
    """The view of snapshot `i`; None (and the line counted as damaged) when it cannot be shown."""
    snap = rec.snapshot(i)
    if snap is None:
        return None
    try:
        return build_view(plan, printable_snapshot(snap), services, now=rec.snaps[i].ts)
    except Exception as exc:  # a snapshot whose values are not of their types: damage, not a crash
        rec.damaged.setdefault(rec.snaps[i].line, f"a snapshot the screens cannot show ({type(exc).__name__})")
        return None


def _good_view(
    plan: Plan, rec: Recording, i: int, services: Sequence[str], *, backwards: bool
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
    """The median seconds between the last snapshots (how often the session looked)."""
    times = rec.times[-200:]
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if gaps else 1.0


def final_state(rec: Recording, plan: Plan, services: Sequence[str], notes: Sequence[Note]) -> list[str]:
    """The summary's lines on the fleet: verdicts and step states at the start and as last observed."""
    if not rec.snaps:
        return ["- No snapshot was recorded."]
    fi, first = _good_view(plan, rec, 0, services, backwards=False)
    li, last = _good_view(plan, rec, len(rec.snaps) - 1, services, backwards=True)
    if first is None or last is None:
        return ["- No snapshot in the recording can be read (see below)."]
    out = [
        f"- Fleet verdict: {first.snapshot.verdict.value} at the start, {last.snapshot.verdict.value} "
        "when last observed"
    ]
    out.append(f"- At the start ({clock_text(rec.snaps[fi].ts)}): {_states(first)}")
    seen = rec.snaps[li].ts
    gap = rec.end - seen
    stale = gap > max(30.0, 5 * _typical_gap(rec))
    if stale:
        out.append(
            f"- **Last observed at {clock_text(seen)}, {duration(gap)} before the recording ended**: {_states(last)}"
        )
    else:
        out.append(f"- At the end ({clock_text(seen)}): {_states(last)}")
    failed_after = [n for n in notes if n.ts > seen and n.level == "error"]
    if failed_after:
        out.append(
            f"  - after it, {len(failed_after)} error(s) and no readable snapshot; the last: "
            f"{md(failed_after[-1].text)}"
        )
    elif stale:
        out.append("  - nothing was observed after it: the states are as they were then, not at the end")
    unmeasured = _unmeasured(last.snapshot)
    if unmeasured:
        out.append(f"  - **{unmeasured}**")
    if last.next_text and not stale and not unmeasured:
        out.append(f"- {md(last.next_text[0].upper() + last.next_text[1:])}")
    return out


def damage_lines(rec: Recording) -> list[str]:
    """The recording's own damage: lines skipped, snapshots lost, a last line cut short, times out of order."""
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
        out.append(
            f"- The last line (line {rec.cut_short}) was cut short (the session crashed while writing it); "
            "it is ignored"
        )
    if rec.out_of_order:
        out.append(
            f"- {len(rec.out_of_order)} line(s) have times earlier than the line before them (a clock "
            f"step?); they are kept in file order: lines {', '.join(map(str, rec.out_of_order[:20]))}"
        )
    return out
