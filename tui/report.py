"""`cockpit replay FILE --report`: a recording as a Markdown timeline of the change window —
steps, who, when, reasons, verdicts, failures, rollbacks. No textual here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from plans.plan import Plan
from tui.recording import Recording
from tui.view import FleetView, build_view, clock_text, log_lines


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _target(rec: dict[str, Any]) -> str:
    return f"{rec.get('step', '')}{' ' + str(rec['service']) if rec.get('service') else ''}".strip()


def _states(view: FleetView | None) -> str:
    if view is None:
        return "(no snapshot)"
    groups: dict[str, list[str]] = {}
    for r in view.rows:
        label = f"{r.step} {r.target}" if r.service else r.step
        groups.setdefault(r.state, []).append(label)
    order = ("verified", "live", "configured", "pending", "failed", "unknown")
    return "; ".join(f"**{s}**: {', '.join(groups[s])}" for s in order if s in groups)


def _interesting(change: dict[str, Any]) -> bool:
    what = str(change.get("what", ""))
    if what.startswith(("step ", "fleet")):
        return True
    return "fail" in (str(change.get("from")), str(change.get("to"))) or "error" in (
        str(change.get("from")), str(change.get("to")))


def report(rec: Recording, plan: Plan, services: Sequence[str] | None = None) -> str:
    """The Markdown timeline of `rec` (step states read with `plan`)."""
    h = rec.header
    services = list(services if services is not None else h.get("services", ()))
    start, end = rec.start, rec.end
    first = last = None
    if rec.snaps:
        first = build_view(plan, rec.snapshot(0), services, now=rec.snaps[0].ts)
        last = build_view(plan, rec.snapshot(len(rec.snaps) - 1), services, now=rec.snaps[-1].ts)
    rows: list[tuple[float, str, str, str]] = []
    applied: list[str] = []
    failures: list[str] = []
    rollbacks: list[str] = []
    reasons: dict[str, str] = {}
    who_default = str(h.get("who", "?"))
    for r in rec.records(["action", "outcome", "verdict", "journal", "lock", "event", "note", "end"]):
        t = r.get("t")
        ts = float(r.get("ts", 0.0))
        if t == "action":
            kind = r.get("kind")
            who = str(r.get("who", who_default))
            direction = str(r.get("direction", "advance"))
            tgt = _target(r)
            if kind == "preview":
                p = r.get("preview", {}) or {}
                changes = p.get("change_lines") or r.get("change_lines") or []
                restarts = p.get("restarts") or r.get("restarts") or []
                gates = p.get("gates") or r.get("gates") or []
                shut = [g.get("gate", "?") for g in gates if isinstance(g, dict) and g.get("status") != "open"]
                detail = f"{len(changes)} change(s): {'; '.join(map(str, changes))}" if changes else "no change"
                detail += f"; {len(restarts)} restart(s)"
                detail += f"; gates closed: {', '.join(shut)}" if shut else "; gates open"
                rows.append((ts, who, f"preview {direction} {tgt}", detail))
            elif kind == "confirm":
                reasons[f"{direction} {tgt}"] = str(r.get("reason", ""))
                rows.append((ts, who, f"**confirmed {direction} {tgt}**", f"reason: {r.get('reason', '')}"))
            elif kind == "cancel":
                rows.append((ts, who, f"cancelled {direction} {tgt}", ""))
            elif kind in ("lock-refused", "error"):
                rows.append((ts, who, f"{kind} {tgt}", str(r.get("error", ""))))
                if kind == "error":
                    failures.append(f"{_when(ts)} {direction} {tgt}: {r.get('error', '')}")
            elif kind in ("lock", "unlock"):
                rows.append((ts, who, "lock taken" if kind == "lock" else "lock released", tgt))
        elif t == "outcome":
            o = r.get("outcome", {}) or {}
            direction = str(r.get("direction", "advance"))
            tgt = _target(r)
            ok = bool(o.get("ok"))
            line = f"{_when(ts)} {direction} {tgt}" + (f" (reason: {reasons.get(f'{direction} {tgt}')})"
                                                          if reasons.get(f"{direction} {tgt}") else "")
            if direction == "rollback":
                rollbacks.append(line + ("" if ok else f" — FAILED at {o.get('stage', '?')}: {o.get('reason', '')}"))
            elif ok:
                applied.append(line)
            if not ok:
                failures.append(f"{_when(ts)} {direction} {tgt} failed at {o.get('stage', '?')}: {o.get('reason', '')}")
            rows.append((ts, str(r.get("who", who_default)),
                         f"**{'done' if ok else 'FAILED'}: {direction} {tgt}**",
                         "" if ok else f"at {o.get('stage', '?')}: {o.get('reason', '')}"))
        elif t == "verdict":
            changes = [c for c in r.get("changes", ()) if _interesting(c)]
            for ll in log_lines({**r, "changes": changes}):
                rows.append((ts, "", "verdict", ll.text))
        elif t == "journal":
            e = r.get("entry", {}) or {}
            if r.get("backlog"):
                continue
            for ll in log_lines(r):
                rows.append((float(e.get("ts", ts)), str(e.get("who", "?")), "journal", ll.text))
            if e.get("direction") == "rollback" or e.get("event") == "rollback":
                rollbacks.append(f"{_when(float(e.get('ts', ts)))} {e.get('step', '')} {e.get('service', '') or ''} "
                                 f"by {e.get('who', '?')} (journal)")
        elif t == "lock":
            for ll in log_lines(r):
                rows.append((ts, "", "lock", ll.text))
        elif t == "event" and r.get("kind") == "error":
            rows.append((ts, "", "error", f"{r.get('host') or ''} {r.get('text', '')}".strip()))
        elif t == "note":
            rows.append((ts, "", "note", str(r.get("text", ""))))
        elif t == "end":
            rows.append((ts, "", "session ended", f"{r.get('snapshots', 0)} snapshots"))
    out = [f"# Change window: {h.get('env', '?')} — {_when(start)} → {_when(end)} ({_duration(end - start)})", ""]
    out.append(f"Recorded by **{who_default}** on {h.get('where', '?')} in **{str(h.get('mode', '?')).upper()}** "
               f"mode; plan `{h.get('plan') or plan.name}`; environment "
               f"{'**protected**' if h.get('protected') else 'not protected'}; "
               f"{len(rec.snaps)} snapshots; recording format {h.get('format')} v{h.get('version')}.")
    out += ["", "## Summary", ""]
    out.append(f"- Applied: {len(applied)}" + ("".join(f"\n  - {a}" for a in applied)))
    out.append(f"- Rollbacks: {len(rollbacks)}" + ("".join(f"\n  - {a}" for a in rollbacks)))
    out.append(f"- Failures: {len(failures)}" + ("".join(f"\n  - {a}" for a in failures)))
    if first is not None and last is not None:
        out.append(f"- Fleet verdict: {first.snapshot.verdict.value} at the start, {last.snapshot.verdict.value} "
                   "at the end")
        out.append(f"- At the start: {_states(first)}")
        out.append(f"- At the end: {_states(last)}")
        if last.next_text:
            out.append(f"- {last.next_text[0].upper()}{last.next_text[1:]}")
    out += ["", "## Timeline", "", "| time (UTC) | who | what | detail |", "|---|---|---|---|"]
    out.append(f"| {clock_text(start)} | {_cell(who_default)} | session started | {h.get('mode', '')} mode |")
    for ts, who, what, detail in sorted(rows, key=lambda x: x[0]):
        out.append(f"| {clock_text(ts)} | {_cell(who)} | {_cell(what)} | {_cell(detail)} |")
    out.append("")
    return "\n".join(out)
