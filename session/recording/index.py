"""Indexing a recording file: every line's type, time, offset and line number, read from its prefix.

`open_regular` refuses anything but a regular file before it is opened for reading (a FIFO would
block); `LineIndex` streams the file in bounded reads and counts a line that is not what the format
says as damaged, never raises. `is_recording` tells this tool's recordings from other files. The
reader (`session.recording.reader.Recording`) builds on the index. No textual here.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from session.recording.format import FORMAT, MAX_TIME, RecordType

MAX_LINE: Final = 16 << 20  # a longer line is damaged (and never held in memory whole)
CHUNK: Final = 1 << 20
_HEAD: Final = 200  # bytes at the start of a line its prefix and kind are read from


_PREFIX = re.compile(rb'\{"t":"([a-z-]{1,32})","ts":([^,}]{1,40})(?:,"seq":(-?[0-9]{1,18}))?')
_KIND = re.compile(rb'"kind":"([a-z-]{1,32})"')
DAMAGED: Final = "damaged"  # the Entry kind of a line the index could not read


class RecordingError(Exception):
    """The file is not a recording this cockpit reads; the message says why (one line)."""


class RecordingIncomplete(RecordingError):
    """The file is empty or its header line is not complete yet (a session that is just starting)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a recording: its type, time, place in the file and line number.

    `kind` is a record type (session.recording.format.RecordType), a type this reader does not know, or DAMAGED;
    `sub` is the line's own "kind" field when it has one (action and event records)."""

    kind: str
    ts: float
    offset: int
    length: int
    seq: int = 0
    line: int = 0
    sub: str = ""


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words (None: a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, refusing anything but a regular file with one clear line
    (a FIFO is never opened for reading: that would block until a writer came)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    what = _file_kind(st.st_mode)
    if what is not None:
        raise RecordingError(
            f"{path} is {what}, not a recording file: pass a .jsonl file written by `cockpit drive` or `cockpit watch`"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    what = _file_kind(os.fstat(fd).st_mode)
    if what is not None:  # replaced between the stat and the open
        os.close(fd)
        raise RecordingError(f"{path} is {what}, not a recording file")
    return fd


def _bad_json(raw: bytes) -> str | None:
    """Why `raw` is not a JSON object (None: it is one)."""
    try:
        obj = json.loads(raw)
    except RecursionError:
        return "not JSON (nested too deep)"
    except ValueError as exc:
        return f"not JSON ({str(exc).split(':')[0]})"
    return None if isinstance(obj, dict) else "not a JSON object"


def is_recording(path: Path) -> bool:
    """True only for a regular file (not a link, FIFO or device) whose first line is this tool's header.

    Reads at most 64 KiB; never blocks (a FIFO is refused before it is opened)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, 64 << 10, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    first = head.split(b"\n", 1)[0]
    try:
        header = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(header, dict) and header.get("t") == "header" and header.get("format") == FORMAT


class LineIndex:
    """Every line of a recording after its header, indexed from its prefix: type, time, offset, line number.

    The file is streamed (at most `max_line` bytes of one line held at a time); damage is recorded,
    never raised, in `damaged` (line number -> why): a line that is not a record, a bad time, a second
    header, a diff with no base. Times that go backwards are kept in file order at the previous line's
    time (`out_of_order`). `refresh()` indexes lines appended since (watch --follow)."""

    def __init__(self, fd: int, pos: int, start_ts: float, *, max_line: int) -> None:
        self.entries: list[Entry] = []  # every line but the header, in file order (damaged ones included)
        self.snaps: list[Entry] = []  # frames and diffs whose place in a chain is sound, in order
        self.frame_at: list[int] = []  # for each snaps[i], the index in snaps of the full frame it builds on
        self.times: list[float] = []  # snaps[i].ts, for bisecting
        self.damaged: dict[int, str] = {}  # line number -> why it was skipped
        self.out_of_order: list[int] = []  # lines whose time went backwards
        self.cut_short: int | None = None  # the last line, cut short by a crash (ignored, not damage)
        self.max_line = max_line
        self._fd: int | None = fd
        self._pos = pos  # where the next unindexed line starts
        self._line = 2  # its line number
        self._last_ts = start_ts
        self._chain_seq: int | None = None  # seq of the last snapshot of the current chain (None: no usable chain)
        self._chain_ok = False

    def refresh(self) -> int:
        """Index the complete lines appended since the last call; returns how many were indexed."""
        before = len(self.entries)
        self._index(final=False)
        return len(self.entries) - before

    @property
    def size_read(self) -> int:
        """Bytes of the file indexed so far (the start of the first line not yet complete)."""
        return self._pos

    def _index(self, *, final: bool) -> None:
        fd = self._fd
        if fd is None:
            return
        buf = bytearray()
        start = self._pos  # file offset of buf[0]
        read = self._pos
        scan = 0  # buf is free of newlines before this
        skipping = False  # inside a line longer than max_line: its bytes are dropped
        while True:
            chunk = os.pread(fd, CHUNK, read)
            if not chunk:
                break
            read += len(chunk)
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                self._damage(
                    self._line, start, read - len(chunk) + nl - start, f"longer than {self.max_line >> 20} MiB"
                )
                self._line += 1
                skipping = False
                start = read - len(chunk) + nl + 1
                buf = bytearray(chunk[nl + 1 :])
                scan = 0
            else:
                buf += chunk
            cut = 0
            while (nl := buf.find(b"\n", scan)) >= 0:
                self._line_at(buf, cut, nl, start + cut)
                cut = scan = nl + 1
            if cut:
                del buf[:cut]
                start += cut
                scan = 0
            scan = len(buf)
            if len(buf) > self.max_line:
                skipping = True
                buf = bytearray()
                scan = 0
        if skipping:
            if final:
                self._damage(self._line, start, read - start, f"longer than {self.max_line >> 20} MiB (and cut short)")
                self._line += 1
                start = read
            # following: the long line may still end; it is read again (and dropped again) next time
        elif buf and final:
            raw = bytes(buf)
            if _bad_json(raw) is None:
                self._line_at(buf, 0, len(buf), start)  # whole: only its newline is missing
            elif raw.strip():
                self.cut_short = self._line
                self._line += 1
            start += len(raw)
        self._pos = start

    def _damage(self, line: int, offset: int, length: int, why: str) -> None:
        self.damaged[line] = why
        self.entries.append(Entry(DAMAGED, self._last_ts, offset, length, 0, line))

    def _line_at(self, buf: bytearray, start: int, end: int, offset: int) -> None:
        """Index the line buf[start:end] from its first bytes (copied whole only to say why it is damaged)."""
        line = self._line
        self._line += 1
        length = end - start
        m = _PREFIX.match(buf, start, min(end, start + _HEAD))
        if m is None:
            whole = bytes(buf[start:end])
            if not whole.strip():
                return  # a blank line
            bad = _bad_json(whole)
            self._damage(line, offset, length, bad or 'not a recording line (no {"t":…,"ts":…} prefix)')
            return
        kind = m.group(1).decode()
        try:
            ts = float(m.group(2))
        except ValueError:
            shown = m.group(2)[:20].decode(errors="replace")
            self._damage(line, offset, length, f"its time is not a number ({shown})")
            return
        if not math.isfinite(ts) or ts < 0 or ts > MAX_TIME:
            self._damage(line, offset, length, f"its time is not a time ({ts!r})")
            return
        if kind == RecordType.HEADER:
            self._damage(line, offset, length, "a second header (two recordings in one file?)")
            return
        if ts < self._last_ts:
            self.out_of_order.append(line)
            ts = self._last_ts
        self._last_ts = ts
        seq = int(m.group(3)) if m.group(3) else 0
        sub = ""
        if kind in (RecordType.ACTION, RecordType.EVENT):
            k = _KIND.search(buf, start, min(end, start + _HEAD))
            sub = k.group(1).decode() if k else ""
        e = Entry(kind, ts, offset, length, seq, line, sub)
        if not self._chained(kind, seq, m.group(3) is not None, line, offset, length):
            return
        self.entries.append(e)
        if kind in (RecordType.FRAME, RecordType.DIFF):
            self.snaps.append(e)
            self.times.append(ts)

    def _chained(self, kind: str, seq: int, has_seq: bool, line: int, offset: int, length: int) -> bool:
        """Whether a line continues the chain of snapshots soundly (True for a line that is not a snapshot);
        a frame starts a chain, a diff must follow the snapshot before it. False: it is damaged, and said."""
        if kind == RecordType.FRAME:
            if not has_seq:
                self._damage(line, offset, length, "a frame without its seq")
                self._chain_seq, self._chain_ok = None, False
                return False
            self._chain_seq, self._chain_ok = seq, True
            self.frame_at.append(len(self.snaps))
        elif kind == RecordType.DIFF:
            why = None
            if not has_seq:
                why = "a diff without its seq"
            elif self._chain_seq is None:
                why = "a diff with no full frame before it"
            elif not self._chain_ok:
                why = "a diff after a damaged snapshot line (skipped up to the next full frame)"
            elif seq != self._chain_seq + 1:
                why = f"a diff against snapshot {seq - 1}, which is not in the file before it"
            if why is not None:
                self._chain_ok = False
                self._damage(line, offset, length, why)
                return False
            self._chain_seq = seq
            self.frame_at.append(self.frame_at[-1])
        return True
