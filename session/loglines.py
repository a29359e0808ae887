"""Event-log lines from recording records: the same words in drive, watch and replay (and `watch --follow`).

Pure (no textual): the app turns each record it writes into lines, the replay timeline each record it
reads back, so a live session and its replay say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Level = Literal["info", "ok", "warn", "error", "action"]


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float
    kind: str
    text: str
    level: Level = "info"


_BAD = {"fail", "failed", "error", "unknown"}


def _change_level(change: Mapping[str, Any]) -> Level:
    to = str(change.get("to"))
    if to in ("fail", "failed"):
        return "error"
    if to in ("warn", "error", "unknown"):
        return "warn"
    if to in ("ok", "verified"):
        return "ok"
    return "info"


def said(v: object, missing: str = "?") -> str:
    """A recorded value as words: never Python's None, True or False on screen."""
    if v is None or v == "":
        return missing
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _what(rec: Mapping[str, Any]) -> str:
    """ "pg-5 api", "restart api (staging-api-01)", "pg-2"."""
    step = said(rec.get("step"), "")
    service = said(rec.get("service"), "")
    hosts = rec.get("hosts") or ()
    if rec.get("direction") == "restart" or step == "restart":
        return f"{service}" + (f" ({', '.join(str(h) for h in hosts)})" if hosts else "")
    return f"{step}{' ' + service if service else ''}"


ACTION_LEVEL: Final[Mapping[str, Level]] = {"lock-refused": "error", "error": "error", "refused": "error"}


def _verdict_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    out = []
    for c in rec.get("changes", ()):
        what = str(c.get("what", ""))
        frm = said(c.get("from"), "none")
        to = said(c.get("to"), "gone")
        if what.startswith("step "):
            text = f"{str(c.get('text', '')).split(':')[0]}: {frm} → {to}"
        elif what == "fleet":
            text = f"fleet verdict: {frm} → {to}"
        else:
            text = f"{frm} → {to}: {said(c.get('text'), '')}"
        out.append(LogLine(ts, "verdict", text, _change_level(c)))
    return out


def _journal_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    e = rec.get("entry", {})
    parts = [said(e.get("who")), said(e.get("event"))]
    for k in ("step", "service", "direction"):
        if e.get(k):
            parts.append(str(e[k]))
    if e.get("ok") is not None:
        parts.append("ok" if e.get("ok") else "FAILED")
    if e.get("reason"):
        parts.append(f"— {e['reason']}")
    level: Level = "error" if e.get("ok") is False else "info"
    return [LogLine(float(e.get("ts", ts) or ts), "journal", " ".join(parts), level)]


def _lock_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    h = rec.get("holder")
    if not h:
        if rec.get("error"):
            return [LogLine(ts, "lock", f"the fleet lock could not be read: {rec['error']}", "warn")]
        return [LogLine(ts, "lock", "the fleet lock is free")]
    return [
        LogLine(
            ts,
            "lock",
            f"lock held by {said(h.get('who'))} on {said(h.get('where'))} (step {said(h.get('step'))})",
            "warn",
        )
    ]


def _action_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    kind = said(rec.get("kind"))
    what = _what(rec)
    direction = said(rec.get("direction"), "advance")
    error = said(rec.get("error"), "")
    texts = {
        "lock": f"lock taken for {'restart ' if direction == 'restart' else ''}{what}",
        "lock-refused": f"lock refused: {error}",
        "preview": f"preview {direction} {what}",
        "confirm": f"{said(rec.get('who'))} confirmed {direction} {what} — {said(rec.get('reason'), '')}",
        "cancel": f"cancelled {direction} {what}",
        "unlock": "lock released",
        "error": f"{direction} {what} stopped: {error}" if what.strip() else f"error: {error}",
        "refused": f"{direction} {what} refused, nothing changed: {said(rec.get('reason') or error)}",
    }
    lvl = ACTION_LEVEL.get(kind, "action")
    return [LogLine(ts, "action", texts.get(kind, f"{kind} {direction} {what}"), lvl)]


def _event_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    kind = said(rec.get("kind"), "")
    host = rec.get("host")
    text = f"{host}: {said(rec.get('text'), '')}" if host else said(rec.get("text"), "")
    lv: Level = (
        "error"
        if kind == "error"
        else (
            "ok"
            if kind in ("instance-done", "done")
            else ("warn" if kind in ("paused", "stopping", "journal", "rollback", "diagnostics") else "info")
        )
    )
    return [LogLine(ts, kind or "event", text, lv)]


def _outcome_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    o = rec.get("outcome", {})
    ok = bool(o.get("ok"))
    what = _what(rec)
    stage = said(o.get("stage"))
    if ok:
        result = "done"
    elif stage == "stopped":
        result = f"stopped: {said(o.get('reason'), '')}"
    else:
        result = f"FAILED at {stage}: {said(o.get('reason'), '')}"
    text = f"{said(rec.get('direction'), 'advance')} {what}: {result}"
    return [LogLine(ts, "outcome", text, "ok" if ok else ("warn" if stage == "stopped" else "error"))]


def _note_lines(rec: Mapping[str, Any], ts: float) -> list[LogLine]:
    return [LogLine(ts, "note", said(rec.get("text"), ""), rec.get("level", "warn"))]


_LINES: Final[Mapping[str, Callable[[Mapping[str, Any], float], list[LogLine]]]] = {
    "verdict": _verdict_lines,
    "journal": _journal_lines,
    "lock": _lock_lines,
    "action": _action_lines,
    "event": _event_lines,
    "outcome": _outcome_lines,
    "note": _note_lines,
}


def log_lines(rec: Mapping[str, Any]) -> list[LogLine]:
    """Event-log lines for one recording record (the same in drive, watch and replay)."""
    ts = float(rec.get("ts", 0.0) or 0.0)
    lines = _LINES.get(str(rec.get("t")))
    return lines(rec, ts) if lines is not None else []
