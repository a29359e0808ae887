"""Writing a recording: `Recorder` (one session's file), where a new one goes, and retention.

Every record goes through `session.redact.Redactor` before it is written; snapshots are written as a
full frame every `full_every` seconds and as diffs in between (docs/recording.md). No textual here.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final, cast

from probes.snapshot import FleetSnapshot
from session.recording.convert import SnapshotConverter
from session.recording.format import Mode, RecordError
from session.recording.index import is_recording
from session.recording.keyed import Json, diff
from session.recording.records import Diff, End, Frame, Header, Note, Record, record_of
from session.redact import Redactor

DEFAULT_FULL_EVERY: Final = 300.0  # seconds between full frames
DEFAULT_MAX_FILES: Final = 200
DEFAULT_MAX_AGE_DAYS: Final = 90.0


def recording_path(directory: Path, env: str, started: float) -> Path:
    """A new recording's file in `directory`: `<env>-<UTC start>.jsonl` (a number added when it exists)."""
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", env) or "env"
    path = directory / f"{safe}-{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{safe}-{stamp}-{n}.jsonl"
    return path


def prune(
    directory: Path,
    *,
    max_files: int | None = DEFAULT_MAX_FILES,
    max_age_days: float | None = DEFAULT_MAX_AGE_DAYS,
    now: float | None = None,
    keep: Sequence[Path] = (),
) -> list[Path]:
    """Delete this tool's recordings beyond `max_files` (oldest first) or older than `max_age_days`;
    returns them. Only files that `is_recording` proves are recordings count or go: any other
    *.jsonl (another tool's log, a link, a FIFO) is never touched."""
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    found: list[tuple[float, Path]] = []
    for p in directory.glob("*.jsonl"):
        if p in keep or not is_recording(p):
            continue
        with contextlib.suppress(OSError):
            found.append((os.lstat(p).st_mtime, p))
    found.sort(key=lambda x: x[0], reverse=True)
    doomed: list[Path] = []
    for i, (mtime, p) in enumerate(found):
        too_many = max_files is not None and i >= max(0, max_files - len(keep))
        too_old = max_age_days is not None and now - mtime > max_age_days * 86400
        if too_many or too_old:
            doomed.append(p)
    for p in doomed:
        with contextlib.suppress(OSError):
            p.unlink()
    return doomed


def _dumps(obj: Json) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


class Recorder:
    """Writes one session's recording. `path=None` records nothing (but still redacts and returns
    each record, which the app shows in its event log, so the screen shows what a replay would)."""

    def __init__(
        self,
        path: Path | None,
        *,
        env: str,
        mode: str,
        protected: bool = False,
        plan: str = "",
        services: Sequence[str] = (),
        full_every: float = DEFAULT_FULL_EVERY,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
        who: str | None = None,
        extra: Mapping[str, Json] | None = None,
    ) -> None:
        if mode not in ("drive", "watch", "replay"):
            raise ValueError(f"a recording's mode is drive or watch, not {mode!r}")
        self.path = path
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.redactor.add_public(services)
        self.full_every = full_every
        self.seq = 0
        self._state: dict[str, Json] | None = None
        self._conv = SnapshotConverter(self.redactor)
        self._last_full = float("-inf")
        self._fh: IO[str] | None = None
        self.bytes_written = 0
        self.closed = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = os.fdopen(fd, "w", encoding="utf-8")
        m = cast(Mode, mode)
        self.info = Header(
            ts=self.clock(),
            env=env,
            mode=m,
            protected=protected,
            plan=plan,
            services=tuple(services),
            who=who or os.environ.get("COCKPIT_OPERATOR") or getpass.getuser(),
            where=socket.gethostname(),
            pid=os.getpid(),
            full_every=full_every,
            extra=dict(extra) if extra else {},
        )
        self.header = self.write(self.info)

    def write(self, record: Record) -> dict[str, Json]:
        """Write one typed record (redacted; snapshots are redacted as they are converted); returns the
        line's JSON as written."""
        data = record.to_json()
        if not isinstance(record, Frame | Diff):
            data = self.redactor.value(data)
        if self._fh is not None and not self.closed:
            line = _dumps(data) + "\n"
            self._fh.write(line)
            self._fh.flush()
            self.bytes_written += len(line.encode("utf-8"))
        return data

    # -- snapshots --------------------------------------------------------------------------------
    def snapshot(self, snap: FleetSnapshot, *, ts: float | None = None) -> dict[str, Json]:
        """Record `snap`: a full frame when one is due, else a diff against the previous one."""
        ts = self.clock() if ts is None else ts
        self.seq += 1
        full = self._state is None or ts - self._last_full >= self.full_every
        state = self._conv.convert(snap, fresh=full)
        if full:
            self._state = state
            self._last_full = ts
            return self.write(Frame(ts=ts, seq=self.seq, snapshot=state))
        ops = diff(self._state, state)
        self._state = state
        return self.write(Diff(ts=ts, seq=self.seq, ops=tuple(ops)))

    # -- everything else ----------------------------------------------------------------------------
    def record(self, t: str, /, **fields: Json) -> dict[str, Json]:
        """Write one record of type `t` ("verdict", "lock", "journal", "action", "event", "outcome", "note")
        from its fields, through its typed class (session.recording.records). Fields the class refuses are a bug of the
        caller: the session goes on, and the recording gets an error note saying what was refused."""
        ts = fields.pop("ts", None)
        now = self.clock() if ts is None else ts
        try:
            rec = record_of(t, {"ts": now, **fields})
        except RecordError as exc:
            return self.write(Note(ts=self.clock(), text=f"a {t!r} record could not be written: {exc}", level="error"))
        return self.write(rec)

    def close(self) -> None:
        if self.closed:
            return
        self.write(End(ts=self.clock(), snapshots=self.seq))
        self.closed = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None
