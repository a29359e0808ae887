"""The replay timeline: a position in a recording, play/pause, speed, seek, marks, idle skipping.

Pure (no textual): the replay screen ticks it and shows what it says. Marks are the moments worth
stepping to: actions, outcomes, verdict changes, journal entries, lock changes, errors.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from probes.snapshot import FleetSnapshot
from tui.recording import Entry, Recording

SPEEDS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
MARK_KINDS: Final = frozenset({"action", "outcome", "verdict", "journal", "lock"})
LOG_KINDS: Final = frozenset({"action", "outcome", "verdict", "journal", "lock", "event", "note"})
IDLE_GAP: Final = 15.0  # seconds of timeline without a log record count as idle
IDLE_LEAD: Final = 2.0  # skipping idle lands this long before the next activity


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
        self.marks = [e.ts for e in rec.entries if e.kind in MARK_KINDS or
                      (e.kind == "event" and b'"kind":"error"' in rec._mm[e.offset: e.offset + min(e.length, 200)])]
        self.lock_entries = [e for e in rec.entries if e.kind == "lock"]
        self.lock_times = [e.ts for e in self.lock_entries]
        self.skipped = 0.0  # idle time skipped by the last tick

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
        return self.rec.snapshot_at(self.pos)

    def snapshot_time(self, index: int) -> float:
        return self.rec.snaps[index].ts if 0 <= index < len(self.rec.snaps) else self.pos

    def records_between(self, after: float, upto: float) -> list[dict[str, Any]]:
        """Log records with after < ts <= upto, in order."""
        i = bisect.bisect_right(self.log_times, after)
        j = bisect.bisect_right(self.log_times, upto)
        return [self.rec.load(e) for e in self.log_entries[i:j]]

    def records_tail(self, upto: float, n: int = 300) -> list[dict[str, Any]]:
        j = bisect.bisect_right(self.log_times, upto)
        return [self.rec.load(e) for e in self.log_entries[max(0, j - n): j]]

    def lock_at(self, ts: float) -> tuple[dict[str, Any] | None, bool]:
        """(holder, known) as last recorded at or before `ts`."""
        i = bisect.bisect_right(self.lock_times, ts) - 1
        if i < 0:
            return None, False
        rec = self.rec.load(self.lock_entries[i])
        holder = rec.get("holder")
        return (holder if isinstance(holder, dict) else None), bool(rec.get("known", True))

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
        return start + float(s[1:])
    m = _REL.match(s)
    if m:
        n = float(m.group(2)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(3)]
        return pos + n if m.group(1) == "+" else pos - n
    m = _TIME.match(s)
    if m:
        h, mi, sec = (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m.group(1) is not None else \
            (int(m.group(2)), int(m.group(3)), 0)
        if h > 23 or mi > 59 or sec > 59:
            raise ValueError(f"not a time of day: {s}")
        day = datetime.fromtimestamp(start, UTC).replace(hour=h, minute=mi, second=sec, microsecond=0)
        t = day.timestamp()
        return t + 86400 if t < start - 1 else t
    raise ValueError(f"cannot read {s!r}: use 10:15:30 (UTC), +90s, -5m, +1h or @300")
