"""Reading a recording: `Recording.open` for replay, the report and `watch --follow`.

Every line is indexed by byte offset (`session.recording.index.LineIndex`), so seeking costs one full
frame plus the diffs after it. Reading survives any file: special files are refused before they are
opened for reading, lines are read with a bounded length (`MAX_LINE`), and a line that is not what the
format says (docs/recording.md) is counted as damaged (`Recording.damaged`, by line number) and
skipped, never raised. No textual here.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from probes.snapshot import FleetSnapshot, snapshot_from_json
from session.recording.format import FORMAT, FORMAT_VERSION, RecordError, RecordType
from session.recording.index import (
    CHUNK,
    DAMAGED,
    MAX_LINE,
    Entry,
    LineIndex,
    RecordingError,
    RecordingIncomplete,
    open_regular,
)
from session.recording.keyed import Json, apply_ops, escape_token, shape_error, unkeyed
from session.recording.records import Diff, Frame, Header, Record, parse_record


class Recording(LineIndex):
    """An opened recording: the header, an index of every line, and random access to snapshots.

    Opening streams the file once (bounded memory: at most `max_line` bytes of one line at a time)
    and indexes each line's type, time, offset and line number from its prefix; lines are parsed
    when used. Damage is recorded, never raised, in `damaged` (line number -> why), found when
    indexing (a line that is not a record, a bad time, a diff with no base) or when a line is used
    (a field of the wrong type, a diff that does not apply, a snapshot that does not read).
    Times that go backwards are kept in file order at the previous line's time (`out_of_order`).
    `refresh()` indexes lines appended since (watch --follow)."""

    def __init__(self, path: Path, fd: int, info: Header, pos: int, *, max_line: int) -> None:
        super().__init__(fd, pos, info.ts, max_line=max_line)
        self.path = path
        self.info = info
        self.header: dict[str, Json] = info.to_json()
        self._cache: tuple[int, dict[str, Json]] | None = None
        self._snap_cache: dict[int, FleetSnapshot] = {}
        self._broken: dict[int, int] = {}  # frame index -> first snapshot index of its chain that does not load
        self._bad_snaps: set[int] = set()

    # -- opening --------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, final: bool = True, max_line: int = MAX_LINE) -> Recording:
        """Open and index `path`. `final`: the file is complete, so a last line without its newline is a
        line cut short by a crash (ignored) unless it is whole; otherwise (following a live session) it
        is left for `refresh()`."""
        p = Path(path)
        fd = open_regular(p)
        try:
            first, end, complete = cls._first_line(fd, max_line)
            if not first and not complete:
                raise (RecordingError if final else RecordingIncomplete)(f"{p}: empty file, not a recording")
            if not complete and not final:
                raise RecordingIncomplete(f"{p}: the header line is not complete yet")
            info = cls._header(p, first)
            rec = cls(p, fd, info, end, max_line=max_line)
        except BaseException:
            os.close(fd)
            raise
        rec._index(final=final)
        return rec

    @staticmethod
    def _first_line(fd: int, max_line: int) -> tuple[bytes, int, bool]:
        """(the first line, where the next starts, whether it ended with a newline), reading at most
        `max_line` bytes."""
        buf = bytearray()
        pos = 0
        while len(buf) <= max_line:
            chunk = os.pread(fd, min(CHUNK, max_line + 1 - len(buf)), pos)
            if not chunk:
                return bytes(buf), pos, False
            nl = chunk.find(b"\n")
            if nl >= 0:
                buf += chunk[:nl]
                return bytes(buf), pos + nl + 1, True
            buf += chunk
            pos += len(chunk)
        raise RecordingError(f"the first line is longer than {max_line >> 20} MiB: not a recording")

    @staticmethod
    def _header(p: Path, first: bytes) -> Header:
        try:
            header = json.loads(first)
        except (ValueError, RecursionError) as exc:
            raise RecordingError(
                f"{p}: the first line is not JSON ({str(exc).split(':')[0]}); not a recording"
            ) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("t") != "header":
            raise RecordingError(f"{p}: not a Rollout Cockpit recording (no {FORMAT!r} header)")
        if header.get("version") != FORMAT_VERSION:
            raise RecordingError(
                f"{p}: recording format version {header.get('version')!r}; this cockpit reads version {FORMAT_VERSION}"
            )
        try:
            return Header.from_json(header)
        except RecordError as exc:
            raise RecordingError(f"{p}: line 1, the header: {exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def identity(self) -> tuple[int, int]:
        """(device, inode) of the open file: another file at the same path has another identity."""
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lines ---------------------------------------------------------------------------------------
    def raw(self, e: Entry) -> bytes:
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        return os.pread(self._fd, e.length, e.offset)

    def load(self, e: Entry) -> Record | None:
        """The typed record of line `e`; None when it is damaged (then in `damaged`) or of a type this
        reader does not know."""
        if e.kind == DAMAGED or e.line in self.damaged:
            return None
        try:
            obj = json.loads(self.raw(e))
        except RecursionError:
            self._late_damage(e, "not JSON (nested too deep)")
            return None
        except ValueError as exc:
            self._late_damage(e, f"not JSON ({str(exc).split(':')[0]})")
            return None
        try:
            rec = parse_record(obj)
        except RecordError as exc:
            self._late_damage(e, str(exc))
            return None
        if rec is None:
            return None
        if rec.TYPE.value != e.kind:
            self._late_damage(e, f"its prefix says {e.kind!r} but it is a {rec.TYPE.value!r} record")
            return None
        if rec.ts != e.ts:
            rec = dataclasses.replace(rec, ts=e.ts)  # a time that went backwards, kept in file order
        return rec

    def _late_damage(self, e: Entry, why: str) -> None:
        self.damaged.setdefault(e.line, why)

    def records(
        self, kinds: Sequence[str] | None = None, start: float = float("-inf"), end: float = float("inf")
    ) -> Iterator[Record]:
        """Typed records of `kinds` (all but snapshots when None) with start <= ts <= end, in file order;
        damaged lines are skipped (and counted in `damaged`)."""
        for e in self.entries:
            if e.kind in (RecordType.FRAME, RecordType.DIFF) and kinds is None:
                continue
            if kinds is not None and e.kind not in kinds:
                continue
            if start <= e.ts <= end:
                rec = self.load(e)
                if rec is not None:
                    yield rec

    # -- time ------------------------------------------------------------------------------------------
    @property
    def start(self) -> float:
        return self.info.ts

    @property
    def end(self) -> float:
        return max(self.entries[-1].ts, self.start) if self.entries else self.start

    def snap_index_at(self, ts: float) -> int:
        """Index in `snaps` of the last snapshot recorded at or before `ts` (-1: none yet)."""
        return bisect.bisect_right(self.times, ts) - 1

    def state(self, i: int) -> dict[str, Json] | None:
        """The keyed state of snapshot `i`: its full frame plus the diffs after it (cached forward);
        None when a line it is built from is damaged."""
        if not 0 <= i < len(self.snaps):
            raise IndexError(i)
        f = self.frame_at[i]
        broken = self._broken.get(f)
        if broken is not None and i >= broken:
            return None
        st: Json
        if self._cache is not None and self.frame_at[self._cache[0]] == f and f <= self._cache[0] <= i:
            j, st = self._cache
        else:
            rec = self.load(self.snaps[f])
            if not isinstance(rec, Frame):
                self._broken[f] = f
                self._late_damage(self.snaps[f], "not a readable frame")
                return None
            bad = shape_error(rec.snapshot, ["/" + escape_token(k) for k in rec.snapshot])
            if bad is not None:
                self._broken[f] = f
                self._late_damage(self.snaps[f], f"the frame is not a snapshot's shape: {bad}")
                return None
            j, st = f, dict(rec.snapshot)
        while j < i:
            j += 1
            d = self.load(self.snaps[j])
            if not isinstance(d, Diff):
                self._broken[f] = j
                self._late_damage(self.snaps[j], "not a readable diff")
                return None
            try:
                st = apply_ops(st, d.ops)
            except (KeyError, TypeError, ValueError, IndexError, RecursionError) as exc:
                self._broken[f] = j
                self._late_damage(
                    self.snaps[j],
                    f"the diff does not apply to the snapshot before it ({type(exc).__name__}: {exc})"[:300],
                )
                return None
            bad = shape_error(st, [o.path for o in d.ops])
            if bad is not None:
                self._broken[f] = j
                self._late_damage(self.snaps[j], f"the diff breaks the snapshot's shape: {bad}")
                return None
        self._cache = (i, st)
        out: dict[str, Json] = st
        return out

    def snapshot(self, i: int) -> FleetSnapshot | None:
        """Snapshot `i`, or None when it cannot be read (its lines are then in `damaged`)."""
        snap = self._snap_cache.get(i)
        if snap is not None:
            return snap
        if i in self._bad_snaps:
            return None
        st = self.state(i)
        if st is None:
            return None
        try:
            snap = snapshot_from_json(unkeyed(st))
        except Exception as exc:  # foreign data through another module's reader: any failure is damage
            self._bad_snaps.add(i)
            self._late_damage(self.snaps[i], f"does not make a snapshot ({type(exc).__name__}: {exc})"[:300])
            return None
        if len(self._snap_cache) > 8:
            self._snap_cache.clear()
        self._snap_cache[i] = snap
        return snap

    def last_good(self, i: int, *, limit: int = 5000) -> tuple[int, FleetSnapshot | None]:
        """The last snapshot at or before index `i` that can be read: (its index, it), or (-1, None)."""
        tries = 0
        while i >= 0 and tries < limit:
            snap = self.snapshot(i)
            if snap is not None:
                return i, snap
            f = self.frame_at[i]
            broken = self._broken.get(f)
            i = (broken - 1 if broken > f else f - 1) if broken is not None and i >= broken else i - 1
            tries += 1
        return -1, None

    def snapshot_at(self, ts: float) -> tuple[int, FleetSnapshot | None]:
        """The last readable snapshot recorded at or before `ts`: (its index, it), or (-1, None)."""
        return self.last_good(self.snap_index_at(ts))

    def check_all(self) -> None:
        """Read every line and build every snapshot's state, so that `damaged` lists all the damage
        (the report does this; replay finds damage as it goes)."""
        for e in self.entries:
            if e.kind not in (RecordType.FRAME, RecordType.DIFF):
                self.load(e)
        self._cache = None
        for i in range(len(self.snaps)):
            self.state(i)
        self._cache = None

    def lost_snapshots(self) -> int:
        """Snapshots that cannot be read because a line they are built from is damaged."""
        lost = len(self._bad_snaps)
        for f, b in self._broken.items():
            n = f + 1
            while n < len(self.frame_at) and self.frame_at[n] == f:
                n += 1
            lost += n - b
        return lost


def read_all_snapshots(path: Path | str) -> list[FleetSnapshot]:
    """Every snapshot in a recording, in order (tests and tools; replay seeks instead). Raises
    RecordingError when one cannot be read."""
    with Recording.open(path) as rec:
        out: list[FleetSnapshot] = []
        for i in range(len(rec.snaps)):
            snap = rec.snapshot(i)
            if snap is None:
                raise RecordingError(
                    f"{path}: snapshot {i} cannot be read: "
                    f"{'; '.join(f'line {n}: {w}' for n, w in sorted(rec.damaged.items()))}"
                )
            out.append(snap)
        return out
