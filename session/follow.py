"""`cockpit watch --follow RECORDING`: the driving session's screens, live, from its recording.

Watch without fleet access: no SSH, no AWS, no Collector — the observer reads the file the driver's
cockpit is writing (on a shared disk, or copied along), and the same watch screen shows it. The
file is tailed: its size is polled every `FOLLOW_POLL` seconds and only the complete lines added
since are read (a line still being written waits for its newline). When the file is replaced —
the path now names another file (a new session's, or a rotated copy), or it shrank — the new one
is read from its start. Given a directory, the newest recording in it is followed, and a newer one
that appears is switched to.

`RecordingTail` does the reading (no textual, no asyncio); `FollowFeed` turns each poll into the
`Observation` the watch app absorbs, plus event-log lines for the driver's actions, engine events,
outcomes and notes. Everything shown is printable (session.printable).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from probes.snapshot import FleetSnapshot
from session.feed import Observation
from session.loglines import LogLine, log_lines
from session.printable import printable, printable_json
from session.recording.format import RecordType
from session.recording.index import MAX_LINE, RecordingError, RecordingIncomplete, is_recording
from session.recording.reader import Recording
from session.recording.records import Header, Journal, Lock, Record, Verdicts
from session.replay import damage_text, printable_snapshot

FOLLOW_POLL: Final = 0.2  # seconds between two looks at the file's size
JOURNAL_KEEP: Final = 500  # journal entries handed to the screen (it keeps what it has not seen)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one poll found: the records appended (snapshots excepted), the newest snapshot, and news
    about the file itself (a new recording opened, why nothing can be read yet, damaged lines)."""

    records: tuple[Record, ...] = ()
    snapshot: FleetSnapshot | None = None
    opened: Header | None = None  # a recording was opened (the first, or one that replaced it)
    path: Path | None = None
    waiting: str | None = None  # why there is nothing to read (yet)
    damaged: tuple[tuple[int, str], ...] = ()


class RecordingTail:
    """A recording read as it grows. `path` is a recording, or a directory of recordings (the newest
    is followed)."""

    def __init__(self, path: Path, *, max_line: int = MAX_LINE) -> None:
        self.path = path
        self.max_line = max_line
        self.rec: Recording | None = None
        self.polls = 0
        self.switches = 0  # recordings opened after the first
        self._ident: tuple[int, int] | None = None
        self._done = 0  # entries of `rec` already handed out
        self._damage_seen: set[int] = set()
        self._last_snap = -1
        self._fresh = False  # a recording was opened and not yet announced by a poll

    def start(self) -> Header:
        """Open the recording to follow now (its header is needed to build the screen); the next poll
        hands out everything in it. Raises RecordingError when there is none to follow."""
        target = self._target()
        if target is None:
            raise RecordingError(f"{self.path}: no recording in this directory to follow")
        try:
            rec = Recording.open(target, final=False, max_line=self.max_line)
        except RecordingIncomplete as exc:
            raise RecordingError(f"{exc} (a session that is starting: try again in a moment)") from None
        self._use(rec)
        self._fresh = True
        return rec.info

    @property
    def header(self) -> Header | None:
        """The header of the recording being followed (None before one is open)."""
        return self.rec.info if self.rec is not None else None

    def close(self) -> None:
        if self.rec is not None:
            self.rec.close()
            self.rec = None

    def _target(self) -> Path | None:
        if not self.path.is_dir():
            return self.path
        newest: tuple[float, Path] | None = None
        for p in self.path.glob("*.jsonl"):
            with contextlib.suppress(OSError):
                m = os.stat(p).st_mtime
                if (newest is None or m > newest[0]) and is_recording(p):
                    newest = (m, p)
        return newest[1] if newest else None

    def _replaced(self, target: Path) -> bool:
        """Whether `target` is no longer the file being read (another file at the path, or it shrank)."""
        if self.rec is None:
            return True
        if target != self.rec.path:
            return True
        try:
            st = os.stat(target)
        except OSError:
            return False  # gone for now: keep what was read
        return (st.st_dev, st.st_ino) != self._ident or st.st_size < self.rec.size_read

    def _open(self, target: Path) -> Batch | None:
        """Open `target` from its start; a Batch saying why not, or None when it is open."""
        try:
            rec = Recording.open(target, final=False, max_line=self.max_line)
        except RecordingError as exc:  # incomplete (a session starting), or not a recording (yet)
            return Batch(waiting=str(exc), path=target)
        if self.rec is not None:
            self.switches += 1
        self._use(rec)
        return None

    def _use(self, rec: Recording) -> None:
        self.close()
        self.rec = rec
        self._ident = rec.identity()
        self._done = 0
        self._damage_seen = set()
        self._last_snap = -1

    def poll(self) -> Batch:
        """Read what was appended since the last poll (everything, the first time)."""
        self.polls += 1
        target = self._target()
        if target is None:
            return Batch(waiting=f"no recording in {self.path} yet")
        opened: Header | None = None
        if self._fresh and self.rec is not None:
            opened = self.rec.info
            self._fresh = False
            target = self.rec.path
        elif self._replaced(target):
            why = self._open(target)
            if why is not None:
                return why
            assert self.rec is not None
            opened = self.rec.info
        rec = self.rec
        assert rec is not None
        rec.refresh()
        new = rec.entries[self._done :]
        self._done = len(rec.entries)
        records: list[Record] = []
        for e in new:
            if e.kind in (RecordType.FRAME, RecordType.DIFF):
                continue
            r = rec.load(e)
            if r is not None:
                records.append(r)
        snap: FleetSnapshot | None = None
        if len(rec.snaps) - 1 > self._last_snap:
            self._last_snap = len(rec.snaps) - 1
            _, snap = rec.last_good(self._last_snap, limit=50)
        damaged = tuple((n, w) for n, w in sorted(rec.damaged.items()) if n not in self._damage_seen)
        self._damage_seen.update(n for n, _ in damaged)
        return Batch(tuple(records), snap, opened, target, None, damaged)


class FollowFeed:
    """The watch app's feed from a `RecordingTail`: snapshots, the lock and the journal as observations;
    the driver's actions, events, outcomes and notes as event-log lines (`on_lines`)."""

    def __init__(self, tail: RecordingTail, *, on_lines: Callable[[Sequence[LogLine]], None] | None = None) -> None:
        self.tail = tail
        self.on_lines = on_lines
        self._journal: list[dict[str, Any]] = []
        self._waiting: str | None = None
        self.lines_sent = 0

    def _send(self, lines: Sequence[LogLine]) -> None:
        if lines and self.on_lines is not None:
            self.on_lines(lines)
            self.lines_sent += len(lines)

    async def observe(self) -> Observation:
        batch = await asyncio.to_thread(self.tail.poll)
        lines: list[LogLine] = []
        now = time.time()
        if batch.waiting is not None:
            if batch.waiting != self._waiting:
                lines.append(LogLine(now, "note", f"following: {printable(batch.waiting)}", "warn"))
            self._waiting = batch.waiting
        else:
            self._waiting = None
        if batch.opened is not None:
            h = batch.opened
            again = "now following a new recording" if self.tail.switches else "following"
            lines.append(
                LogLine(
                    h.ts,
                    "note",
                    printable(
                        f"{again} {batch.path} — {h.mode} session of {h.who} on {h.where} (pid {h.pid}), env {h.env}; "
                        "read-only: no SSH, no AWS"
                    ),
                    "info",
                )
            )
            self._journal = []
        holder: dict[str, Any] | None = None
        lock_known = False
        lock_error: str | None = None
        journal_new = False
        for r in batch.records:
            if isinstance(r, Lock):
                holder = printable_json(r.holder.to_json()) if r.holder else None
                lock_known, lock_error = r.known, (r.error or (None if r.known else "unknown"))
            elif isinstance(r, Journal):
                self._journal.append(printable_json(dict(r.entry.raw)))
                journal_new = True
            elif isinstance(r, Verdicts):
                continue  # the screen works out its own from the snapshots
            else:
                lines += log_lines(printable_json(r.to_json()))
        for n, why in batch.damaged:
            lines.append(LogLine(now, "note", damage_text(n, why), "warn"))
        self._send(lines)
        if len(self._journal) > JOURNAL_KEEP:
            self._journal = self._journal[-JOURNAL_KEEP:]
        snap = printable_snapshot(batch.snapshot) if batch.snapshot is not None else None
        return Observation(
            snap,
            None,
            holder,
            lock_known,
            lock_error,
            tuple(self._journal) if journal_new or batch.opened is not None else None,
        )
