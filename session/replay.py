"""The replay timeline: a position in a recording, play/pause, speed, seek, marks, idle skipping.

Pure (no textual): the replay screen ticks it and shows what it says. Marks are the moments worth
stepping to: actions, outcomes, verdict changes, journal entries, lock changes, errors, damage.
What it hands the screen is display-ready: damaged lines become notes saying so, and every recorded
string has its control characters made visible (session.printable), never sent to the terminal raw.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from plans.plan import Plan
from probes.snapshot import FleetSnapshot, snapshot_from_json, snapshot_to_json
from session.printable import has_unsafe, printable, printable_json
from session.recording.format import EventKind, RecordType
from session.recording.index import DAMAGED, Entry
from session.recording.reader import Recording
from session.recording.records import Lock
from session.view import FleetView, build_view

SPEEDS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
MARK_KINDS: Final = frozenset(
    {RecordType.ACTION, RecordType.OUTCOME, RecordType.VERDICT, RecordType.JOURNAL, RecordType.LOCK, DAMAGED}
)
LOG_KINDS: Final = frozenset(
    {
        RecordType.ACTION,
        RecordType.OUTCOME,
        RecordType.VERDICT,
        RecordType.JOURNAL,
        RecordType.LOCK,
        RecordType.EVENT,
        RecordType.NOTE,
        DAMAGED,
    }
)
IDLE_GAP: Final = 15.0  # seconds of timeline without a log record count as idle
IDLE_LEAD: Final = 2.0  # skipping idle lands this long before the next activity


def damage_text(line: int, why: str) -> str:
    return f"line {line} of the recording is damaged and was skipped: {printable(why, newlines=False)}"


def damage_summary(rec: Recording, *, limit: int = 12) -> str:
    """ "3 damaged lines skipped (lines 12, 40, 41)", or "" when there are none."""
    if not rec.damaged:
        return ""
    lines = sorted(rec.damaged)
    shown = ", ".join(str(n) for n in lines[:limit]) + (
        f", … ({len(lines) - limit} more)" if len(lines) > limit else ""
    )
    n = len(lines)
    return f"{n} damaged line{'s' if n != 1 else ''} skipped (line{'s' if n != 1 else ''} {shown})"


def printable_snapshot(snap: FleetSnapshot) -> FleetSnapshot:
    """`snap` with control characters in its strings made visible (the same snapshot when it has none)."""
    js = snapshot_to_json(snap)
    if not has_unsafe(json.dumps(js, ensure_ascii=False, default=str)):
        return snap
    return snapshot_from_json(printable_json(js))


class Timeline:
    """A position on a recording's timeline and the controls that move it."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.start = rec.start
        self.end = max(rec.end, self.start)
        self.pos = self.start
        self.playing = False
        self.speed = 1.0
        self.skip_idle = False
        self.log_entries: list[Entry] = [e for e in rec.entries if e.kind in LOG_KINDS]
        self.log_times = [e.ts for e in self.log_entries]
        self.marks = [
            e.ts
            for e in rec.entries
            if e.kind in MARK_KINDS or (e.kind == RecordType.EVENT and e.sub == EventKind.ERROR)
        ]
        self.lock_entries = [e for e in rec.entries if e.kind == RecordType.LOCK]
        self.lock_times = [e.ts for e in self.lock_entries]
        self.skipped = 0.0  # idle time skipped by the last tick
        self._views: dict[int, FleetView | None] = {}

    # -- moving ------------------------------------------------------------------------------------
    def seek(self, ts: float) -> float:
        self.pos = min(max(ts, self.start), self.end)
        return self.pos

    def step(self, delta: float) -> float:
        return self.seek(self.pos + delta)

    def rewind(self) -> float:
        self.playing = False
        return self.seek(self.start)

    def to_end(self) -> float:
        self.playing = False
        return self.seek(self.end)

    def next_mark(self) -> bool:
        i = bisect.bisect_right(self.marks, self.pos + 1e-6)
        if i >= len(self.marks):
            return False
        self.seek(self.marks[i])
        return True

    def prev_mark(self) -> bool:
        i = bisect.bisect_left(self.marks, self.pos - 1e-6) - 1
        if i < 0:
            return False
        self.seek(self.marks[i])
        return True

    def faster(self) -> float:
        i = bisect.bisect_right(SPEEDS, self.speed)
        self.speed = SPEEDS[min(i, len(SPEEDS) - 1)]
        return self.speed

    def slower(self) -> float:
        i = bisect.bisect_left(SPEEDS, self.speed) - 1
        self.speed = SPEEDS[max(i, 0)]
        return self.speed

    def toggle(self) -> bool:
        if not self.playing and self.pos >= self.end:
            self.seek(self.start)
        self.playing = not self.playing
        return self.playing

    def tick(self, dt: float) -> bool:
        """Advance a playing timeline by `dt` seconds of wall time; True when the position moved."""
        self.skipped = 0.0
        if not self.playing:
            return False
        new = self.pos + dt * self.speed
        if self.skip_idle:
            i = bisect.bisect_right(self.log_times, self.pos + 1e-6)
            nxt = self.log_times[i] if i < len(self.log_times) else self.end
            if nxt - self.pos > IDLE_GAP and new < nxt - IDLE_LEAD:
                self.skipped = nxt - IDLE_LEAD - new
                new = nxt - IDLE_LEAD
        if new >= self.end:
            new = self.end
            self.playing = False
        moved = new != self.pos
        self.pos = new
        return moved

    # -- what is at the position --------------------------------------------------------------------
    def snapshot(self) -> tuple[int, FleetSnapshot | None]:
        """The last readable snapshot at or before the position (damaged ones are skipped)."""
        return self.rec.snapshot_at(self.pos)

    def snapshot_time(self, index: int) -> float:
        return self.rec.snaps[index].ts if 0 <= index < len(self.rec.snaps) else self.pos

    def view(self, index: int, plan: Plan, services: Sequence[str]) -> FleetView | None:
        """The screen's view of snapshot `index` (printable), or None when it cannot be shown: a snapshot
        the screens cannot read is damage like any other (its line is added to `damaged`)."""
        snap = self.rec.snapshot(index)
        if snap is None:
            return None
        try:
            return build_view(plan, printable_snapshot(snap), services, now=self.snapshot_time(index))
        except Exception as exc:  # a snapshot whose values are not of their types: damage, not a crash
            self.rec.damaged.setdefault(
                self.rec.snaps[index].line, f"a snapshot the screens cannot show ({type(exc).__name__}: {exc})"[:300]
            )
            return None

    def view_at(self, plan: Plan, services: Sequence[str], *, limit: int = 200) -> tuple[int, FleetView | None]:
        """The view of the last snapshot at or before the position that can be shown: (index, view), or
        (-1, None) when there is none (before the first snapshot, or all before it are damaged)."""
        i = self.rec.snap_index_at(self.pos)
        for _ in range(limit):
            i, snap = self.rec.last_good(i)
            if snap is None:
                return -1, None
            if i not in self._views:
                if len(self._views) > 16:
                    self._views.clear()
                self._views[i] = self.view(i, plan, services)
            v = self._views[i]
            if v is not None:
                return i, v
            i -= 1
        return -1, None

    def shown(self, e: Entry) -> dict[str, Any] | None:
        """The display form of log line `e`: its record (printable), a note for a damaged line, or None."""
        rec = self.rec.load(e)
        if rec is not None:
            out: dict[str, Any] = printable_json(rec.to_json())
            return out
        why = self.rec.damaged.get(e.line)
        if why is None:
            return None  # a record type this cockpit does not know
        return {"t": "note", "ts": e.ts, "text": damage_text(e.line, why), "level": "warn"}

    def _shown(self, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        return [r for r in map(self.shown, entries) if r is not None]

    def records_between(self, after: float, upto: float) -> list[dict[str, Any]]:
        """Log records with after < ts <= upto, in order (display form)."""
        i = bisect.bisect_right(self.log_times, after)
        j = bisect.bisect_right(self.log_times, upto)
        return self._shown(self.log_entries[i:j])

    def records_tail(self, upto: float, n: int = 300) -> list[dict[str, Any]]:
        j = bisect.bisect_right(self.log_times, upto)
        return self._shown(self.log_entries[max(0, j - n) : j])

    def lock_at(self, ts: float) -> tuple[dict[str, Any] | None, bool]:
        """(holder, known) as last readably recorded at or before `ts` (display form)."""
        i = bisect.bisect_right(self.lock_times, ts) - 1
        while i >= 0:
            rec = self.rec.load(self.lock_entries[i])
            if isinstance(rec, Lock):
                holder = printable_json(rec.holder.to_json()) if rec.holder else None
                return holder, rec.known
            i -= 1
        return None, False

    def damage(self) -> str:
        """The damage found so far, in one line ("" when none)."""
        return damage_summary(self.rec)

    def marks_between(self, a: float, b: float) -> Sequence[float]:
        i = bisect.bisect_left(self.marks, a)
        j = bisect.bisect_right(self.marks, b)
        return self.marks[i:j]


_TIME = re.compile(r"(?:(\d{1,2}):)?(\d{1,2}):(\d{2})\Z")
_REL = re.compile(r"([+-])\s*(\d+(?:\.\d+)?)\s*([smh]?)\Z")


def parse_time(text: str, *, start: float, pos: float) -> float:
    """A time to jump to: "+90s", "-5m", "+1h" (relative to `pos`); "10:15" or "10:15:30" (UTC, on the
    recording's first day; the next day when earlier than the start); "@300" (seconds from the start)."""
    s = text.strip()
    if not s:
        raise ValueError("enter a time: 10:15:30 (UTC), +90s, -5m, or @300 (seconds from the start)")
    if s.startswith("@"):
        try:
            secs = float(s[1:])
        except ValueError:
            raise ValueError(f"cannot read {s!r}: @ takes seconds from the start, e.g. @300") from None
        if not math.isfinite(secs) or abs(secs) > 1e9:
            raise ValueError(f"cannot read {s!r}: @ takes seconds from the start, e.g. @300")
        return start + secs
    m = _REL.match(s)
    if m:
        n = float(m.group(2)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(3)]
        return pos + n if m.group(1) == "+" else pos - n
    m = _TIME.match(s)
    if m:
        h, mi, sec = (
            (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            if m.group(1) is not None
            else (int(m.group(2)), int(m.group(3)), 0)
        )
        if h > 23 or mi > 59 or sec > 59:
            raise ValueError(f"not a time of day: {s}")
        day = datetime.fromtimestamp(start, UTC).replace(hour=h, minute=mi, second=sec, microsecond=0)
        t = day.timestamp()
        return t + 86400 if t < start - 1 else t
    raise ValueError(f"cannot read {s!r}: use 10:15:30 (UTC), +90s, -5m, +1h or @300")
