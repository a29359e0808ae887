"""Recordings: a session's snapshots, actions, output and outcomes as versioned JSON lines.

`Recorder` writes one (drive and watch sessions); `Recording.open` reads one back for replay,
indexing every line by byte offset so seeking costs one full frame plus the diffs after it.
The format is documented in docs/recording.md (format version `FORMAT_VERSION`). Every record
goes through `tui.redact.Redactor` before it is written. No textual here.
"""

from __future__ import annotations

import bisect
import contextlib
import getpass
import json
import mmap
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from probes.model import CheckResult
from probes.snapshot import DatabaseState, FleetSnapshot, snapshot_from_json, to_json_value
from tui.redact import Redactor

FORMAT: Final = "rollout-cockpit-recording"
FORMAT_VERSION: Final = 1
DEFAULT_FULL_EVERY: Final = 300.0  # seconds between full frames
DEFAULT_MAX_FILES: Final = 200
DEFAULT_MAX_AGE_DAYS: Final = 90.0

# Lists of objects diffed by identity, not position: path (with "*" for any key) -> identity fields.
KEYED_LISTS: Final[Mapping[tuple[str, ...], tuple[str, ...]]] = {
    ("instances",): ("host",),
    ("instances", "*", "checks"): ("check", "target"),
    ("checks",): ("check", "target"),
    ("certs",): ("check", "target"),
    ("database", "checks"): ("check", "target"),
    ("database", "connections"): ("leg", "addr"),
}
# Fields a diff ignores (timings that change every round): carried by full frames only.
VOLATILE: Final = frozenset({"duration_ms"})

Json = Any


# --------------------------------------------------------------------------------------------
# where recordings live, and retention


def recordings_dir() -> Path:
    """`$XDG_STATE_HOME/rollout-cockpit/recordings` (default `~/.local/state/...`)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rollout-cockpit" / "recordings"


def recording_path(directory: Path, env: str, started: float) -> Path:
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", env) or "env"
    path = directory / f"{safe}-{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{safe}-{stamp}-{n}.jsonl"
    return path


def prune(directory: Path, *, max_files: int | None = DEFAULT_MAX_FILES, max_age_days: float | None =
          DEFAULT_MAX_AGE_DAYS, now: float | None = None, keep: Sequence[Path] = ()) -> list[Path]:
    """Delete recordings beyond `max_files` (oldest first) or older than `max_age_days`; returns them."""
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    files = sorted((p for p in directory.glob("*.jsonl") if p.is_file() and p not in keep),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    doomed: list[Path] = []
    for i, p in enumerate(files):
        too_many = max_files is not None and i >= max(0, max_files - len(keep))
        too_old = max_age_days is not None and now - p.stat().st_mtime > max_age_days * 86400
        if too_many or too_old:
            doomed.append(p)
    for p in doomed:
        with contextlib.suppress(OSError):
            p.unlink()
    return doomed


# --------------------------------------------------------------------------------------------
# keyed form and diffs


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unesc(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def pointer(path: Sequence[str]) -> str:
    """["database", "checks", "tls.x a:/b"] -> "/database/checks/tls.x a:~1b" (RFC 6901)."""
    return "".join("/" + _esc(p) for p in path)


def parse_pointer(p: str) -> list[str]:
    if p == "":
        return []
    if not p.startswith("/"):
        raise ValueError(f"bad pointer {p!r}")
    return [_unesc(x) for x in p[1:].split("/")]


def _keyed_list(items: Sequence[Json], fields: tuple[str, ...], path: tuple[str, ...]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for item in items:
        base = " ".join(str(item.get(f, "")) for f in fields)
        key = base
        n = 1
        while key in out:
            n += 1
            key = f"{base} #{n}"
        out[key] = _keyed(item, (*path, "*"))
    return out


def _keyed(obj: Json, path: tuple[str, ...]) -> Json:
    if isinstance(obj, dict):
        out: dict[str, Json] = {}
        for k, v in obj.items():
            p = (*path, k)
            fields = KEYED_LISTS.get(_generic(p))
            if fields is not None and isinstance(v, list):
                out[k] = _keyed_list(v, fields, p)
            else:
                out[k] = _keyed(v, p)
        return out
    return obj


def _generic(path: tuple[str, ...]) -> tuple[str, ...]:
    # ("instances", "staging-api-01", "checks") -> ("instances", "*", "checks")
    if len(path) == 3 and path[0] == "instances":
        return ("instances", "*", path[2])
    return path


def keyed(snapshot_json: Mapping[str, Json]) -> dict[str, Json]:
    """The snapshot JSON (docs/snapshot.md) with its identity lists turned into objects (KEYED_LISTS)."""
    out = _keyed(dict(snapshot_json), ())
    assert isinstance(out, dict)
    return out


def _unkeyed(obj: Json, path: tuple[str, ...]) -> Json:
    if isinstance(obj, dict):
        out: dict[str, Json] = {}
        for k, v in obj.items():
            p = (*path, k)
            if _generic(p) in KEYED_LISTS and isinstance(v, dict):
                out[k] = [_unkeyed(x, (*p, "*")) for x in v.values()]
            else:
                out[k] = _unkeyed(v, p)
        return out
    return obj


def unkeyed(state: Mapping[str, Json]) -> dict[str, Json]:
    """Inverse of `keyed`: back to the snapshot JSON."""
    out = _unkeyed(dict(state), ())
    assert isinstance(out, dict)
    return out


def diff(old: Json, new: Json, path: list[str] | None = None, ops: list[dict[str, Json]] | None = None
         ) -> list[dict[str, Json]]:
    """JSON-patch-like ops turning `old` into `new` (keyed forms): add, remove, replace, order.

    Fields named in VOLATILE are ignored inside check results (they change every round).
    """
    path = [] if path is None else path
    ops = [] if ops is None else ops
    if isinstance(old, dict) and isinstance(new, dict):
        in_check = "checks" in path or "certs" in path
        removed = [k for k in old if k not in new]
        for k in removed:
            ops.append({"op": "remove", "path": pointer([*path, k])})
        added: list[str] = []
        for k, v in new.items():
            if k not in old:
                ops.append({"op": "add", "path": pointer([*path, k]), "value": v})
                added.append(k)
            else:
                ov = old[k]
                if ov is v or ov == v:
                    continue
                if in_check and k in VOLATILE:
                    continue
                diff(ov, v, [*path, k], ops)
        if removed or added:
            expect = [k for k in old if k in new] + added
            order = list(new)
            if expect != order:
                ops.append({"op": "order", "path": pointer(path), "keys": order})
        return ops
    if old != new or type(old) is not type(new):
        ops.append({"op": "replace", "path": pointer(path), "value": new})
    return ops


def apply_ops(state: Json, ops: Sequence[Mapping[str, Json]]) -> Json:
    """`state` with `ops` applied. Containers on each op's path are copied, never mutated, so a
    snapshot built from an earlier state stays as it was."""
    for op in ops:
        parts = parse_pointer(op["path"])
        kind = op["op"]
        if not parts:
            if kind == "replace":
                state = op["value"]
            elif kind == "order":
                state = {k: state[k] for k in op["keys"]}
            continue
        root = dict(state)
        node = root
        for part in parts[:-1]:
            child = dict(node[part])
            node[part] = child
            node = child
        last = parts[-1]
        if kind in ("add", "replace"):
            node[last] = op["value"]
        elif kind == "remove":
            node.pop(last, None)
        elif kind == "order":
            target = node[last]
            node[last] = {k: target[k] for k in op["keys"]}
        else:
            raise ValueError(f"unknown op {kind!r}")
        state = root
    return state


# --------------------------------------------------------------------------------------------
# incremental conversion: only what changed since the previous snapshot is turned into JSON and
# redacted again (a 50-host snapshot changes a few timings per round, not its 300 checks)


def _same_check(a: CheckResult, b: CheckResult) -> bool:
    """Equal but for the volatile timing."""
    return (a.check == b.check and a.target == b.target and a.verdict is b.verdict and a.summary == b.summary
            and a.evidence == b.evidence)


class _Converter:
    """Snapshot -> redacted keyed state, reusing the entries of the previous snapshot that did not change.

    A reused check keeps its previous timing; diffs ignore timings anyway (VOLATILE) and every full
    frame is converted from scratch (`fresh=True`).
    """

    def __init__(self, redactor: Redactor) -> None:
        self.r = redactor
        self.prev: FleetSnapshot | None = None
        self.state: dict[str, Json] | None = None
        self._checks: dict[tuple[str, ...], dict[str, tuple[CheckResult, Json]]] = {}

    def _checks_keyed(self, where: tuple[str, ...], checks: Sequence[CheckResult], fresh: bool) -> dict[str, Json]:
        old = {} if fresh else self._checks.get(where, {})
        out: dict[str, Json] = {}
        mine: dict[str, tuple[CheckResult, Json]] = {}
        for c in checks:
            base = f"{c.check} {c.target}"
            key = base
            n = 1
            while key in out:
                n += 1
                key = f"{base} #{n}"
            hit = old.get(key)
            entry = hit[1] if hit is not None and (hit[0] is c or _same_check(hit[0], c)) else self.r.value(c.to_json())
            out[key] = entry
            mine[key] = (c, entry)
        self._checks[where] = mine
        return out

    def convert(self, s: FleetSnapshot, *, fresh: bool) -> dict[str, Json]:
        prev = None if fresh else self.prev
        ps = None if fresh else self.state
        r = self.r
        out: dict[str, Json] = {}
        for name in ("env", "taken_at", "duration_ms", "managed_database"):
            out[name] = r.value(getattr(s, name))
        if ps is not None and prev is not None and prev.configured == s.configured:
            out["configured"] = ps["configured"]
        else:
            out["configured"] = r.value({svc: {var: cv.to_json() for var, cv in vs.items()}
                                         for svc, vs in s.configured.items()})
        db = s.database
        if not isinstance(db, DatabaseState):
            out["database"] = r.value(to_json_value(db))
        else:
            dbo: dict[str, Json] = {}
            for f_ in db.__dataclass_fields__:
                if f_ == "checks":
                    dbo[f_] = self._checks_keyed(("database",), db.checks, fresh)
                else:
                    dbo[f_] = r.value(to_json_value(getattr(db, f_)), f_)
            out["database"] = dbo
        pinst = {i.host: i for i in prev.instances} if prev is not None else {}
        insts: dict[str, Json] = {}
        for inst in s.instances:
            key = inst.host
            n = 1
            while key in insts:
                n += 1
                key = f"{inst.host} #{n}"
            old = pinst.get(inst.host)
            checks = self._checks_keyed(("instances", key), inst.checks, fresh)
            if (old is not None and ps is not None and key in ps["instances"]
                    and all(getattr(old, f_) == getattr(inst, f_) for f_ in inst.__dataclass_fields__
                            if f_ != "checks")
                    and ps["instances"][key]["checks"] == checks):
                insts[key] = ps["instances"][key]
                continue
            io: dict[str, Json] = {}
            for f_ in inst.__dataclass_fields__:
                v = getattr(inst, f_)
                if f_ == "checks":
                    io[f_] = checks
                elif f_ == "configured":
                    io[f_] = r.value({var: cv.to_json() for var, cv in v.items()})
                elif f_ == "drift":
                    io[f_] = r.value(list(v))
                else:
                    io[f_] = r.value(to_json_value(v), f_)
            insts[key] = io
        out["instances"] = insts
        out["certs"] = self._checks_keyed(("certs",), s.certs, fresh)
        out["checks"] = self._checks_keyed(("checks",), s.checks, fresh)
        out["causes"] = r.value(to_json_value(s.causes))
        out["schema"] = s.schema
        out["verdict"] = s.verdict.value
        self.prev = s
        self.state = out
        return out


# --------------------------------------------------------------------------------------------
# writing


def _dumps(obj: Json) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


class Recorder:
    """Writes one session's recording. `path=None` records nothing (but still redacts and returns
    each record, which the app shows in its event log, so the screen shows what a replay would)."""

    def __init__(self, path: Path | None, *, env: str, mode: str, protected: bool = False, plan: str = "",
                 services: Sequence[str] = (), full_every: float = DEFAULT_FULL_EVERY,
                 redactor: Redactor | None = None, clock: Callable[[], float] = time.time,
                 who: str | None = None, extra: Mapping[str, Json] | None = None) -> None:
        self.path = path
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.full_every = full_every
        self.seq = 0
        self._state: dict[str, Json] | None = None
        self._conv = _Converter(self.redactor)
        self._last_full = float("-inf")
        self._fh: IO[str] | None = None
        self.bytes_written = 0
        self.closed = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.header = self._write({
            "t": "header", "ts": self.clock(), "format": FORMAT, "version": FORMAT_VERSION, "env": env,
            "mode": mode, "protected": protected, "plan": plan, "services": list(services),
            "who": who or os.environ.get("COCKPIT_OPERATOR") or getpass.getuser(),
            "where": socket.gethostname(), "pid": os.getpid(), "full_every": full_every,
            **(dict(extra) if extra else {})})

    def _write(self, record: dict[str, Json], *, redact: bool = True) -> dict[str, Json]:
        rec = self.redactor.value(record) if redact else record
        if self._fh is not None and not self.closed:
            line = _dumps(rec) + "\n"
            self._fh.write(line)
            self._fh.flush()
            self.bytes_written += len(line.encode("utf-8"))
        return rec

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
            return self._write({"t": "frame", "ts": ts, "seq": self.seq, "snapshot": state}, redact=False)
        ops = diff(self._state, state)
        self._state = state
        return self._write({"t": "diff", "ts": ts, "seq": self.seq, "ops": ops}, redact=False)

    # -- everything else ----------------------------------------------------------------------------
    def record(self, t: str, /, **fields: Json) -> dict[str, Json]:
        """Write one record of type `t` ("verdict", "lock", "journal", "action", "event", "outcome", "note")."""
        ts = fields.pop("ts", None)
        return self._write({"t": t, "ts": self.clock() if ts is None else ts, **fields})

    def close(self) -> None:
        if self.closed:
            return
        self._write({"t": "end", "ts": self.clock(), "snapshots": self.seq})
        self.closed = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------------------------
# reading


_PREFIX = re.compile(rb'\{"t":"([a-z-]+)","ts":(-?[0-9.eE+-]+)(?:,"seq":([0-9]+))?')


class RecordingError(Exception):
    """The file is not a recording this cockpit reads; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a recording: its kind, time and place in the file."""

    kind: str
    ts: float
    offset: int
    length: int
    seq: int = 0


@dataclass
class Recording:
    """An opened recording: the header, an index of every line, and random access to snapshots."""

    path: Path
    header: dict[str, Json]
    entries: list[Entry]  # every record but the header, in file order
    snaps: list[Entry]  # frames and diffs, in order
    frame_at: list[int]  # for each snaps[i], the index in snaps of the full frame it builds on
    times: list[float]  # snaps[i].ts, for bisecting
    _mm: mmap.mmap | bytes
    _cache: tuple[int, dict[str, Json]] | None = field(default=None, repr=False)
    _snap_cache: dict[int, FleetSnapshot] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: Path | str) -> Recording:
        """Read the header and index every line (offsets, kinds, times); snapshots load on demand."""
        p = Path(path)
        with p.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise RecordingError(f"{p}: empty file, not a recording")
            mm: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        nl = mm.find(b"\n")
        first = mm[: nl if nl >= 0 else size]
        try:
            header = json.loads(first)
        except ValueError as exc:
            raise RecordingError(f"{p}: the first line is not JSON ({exc}); not a recording") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise RecordingError(f"{p}: not a Rollout Cockpit recording (no {FORMAT!r} header)")
        if header.get("version") != FORMAT_VERSION:
            raise RecordingError(f"{p}: recording format version {header.get('version')!r}; this cockpit reads "
                                 f"version {FORMAT_VERSION}")
        entries: list[Entry] = []
        snaps: list[Entry] = []
        frame_at: list[int] = []
        last_frame = -1
        pos = nl + 1 if nl >= 0 else size
        find = mm.find
        match = _PREFIX.match
        while pos < size:
            end = find(b"\n", pos)
            if end < 0:
                end = size  # a last line cut short by a crash: indexed only if its prefix parses
            m = match(mm[pos: pos + 96])
            if m is not None:
                kind = m.group(1).decode()
                e = Entry(kind, float(m.group(2)), pos, end - pos, int(m.group(3) or 0))
                entries.append(e)
                if kind == "frame":
                    last_frame = len(snaps)
                    snaps.append(e)
                    frame_at.append(last_frame)
                elif kind == "diff" and last_frame >= 0:
                    snaps.append(e)
                    frame_at.append(last_frame)
            pos = end + 1
        return cls(p, header, entries, snaps, frame_at, [e.ts for e in snaps], mm)

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()

    # -- lines ---------------------------------------------------------------------------------------
    def load(self, e: Entry) -> dict[str, Json]:
        raw = self._mm[e.offset: e.offset + e.length]
        try:
            out = json.loads(raw)
        except ValueError:
            return {"t": "note", "ts": e.ts, "text": "(a damaged line: not JSON)"}
        assert isinstance(out, dict)
        return out

    def records(self, kinds: Sequence[str] | None = None, start: float = float("-inf"),
                end: float = float("inf")) -> Iterator[dict[str, Json]]:
        """Records of `kinds` (all but snapshots when None) with start <= ts <= end, in file order."""
        for e in self.entries:
            if e.kind in ("frame", "diff") and kinds is None:
                continue
            if kinds is not None and e.kind not in kinds:
                continue
            if start <= e.ts <= end:
                yield self.load(e)

    # -- time ------------------------------------------------------------------------------------------
    @property
    def start(self) -> float:
        return float(self.header.get("ts", self.entries[0].ts if self.entries else 0.0))

    @property
    def end(self) -> float:
        return max(self.entries[-1].ts, self.start) if self.entries else self.start

    def snap_index_at(self, ts: float) -> int:
        """Index in `snaps` of the last snapshot recorded at or before `ts` (-1: none yet)."""
        return bisect.bisect_right(self.times, ts) - 1

    def state(self, i: int) -> dict[str, Json]:
        """The keyed state of snapshot `i`: its full frame plus the diffs after it (cached forward)."""
        if not 0 <= i < len(self.snaps):
            raise IndexError(i)
        f = self.frame_at[i]
        if self._cache is not None and f <= self._cache[0] <= i:
            j, st = self._cache
        else:
            rec = self.load(self.snaps[f])
            j, st = f, rec["snapshot"]
        while j < i:
            j += 1
            rec = self.load(self.snaps[j])
            st = apply_ops(st, rec.get("ops", ()))
        self._cache = (i, st)
        return st

    def snapshot(self, i: int) -> FleetSnapshot:
        snap = self._snap_cache.get(i)
        if snap is None:
            snap = snapshot_from_json(unkeyed(self.state(i)))
            if len(self._snap_cache) > 8:
                self._snap_cache.clear()
            self._snap_cache[i] = snap
        return snap

    def snapshot_at(self, ts: float) -> tuple[int, FleetSnapshot | None]:
        i = self.snap_index_at(ts)
        return i, (self.snapshot(i) if i >= 0 else None)


def read_all_snapshots(path: Path | str) -> list[FleetSnapshot]:
    """Every snapshot in a recording, in order (tests and tools; replay seeks instead)."""
    rec = Recording.open(path)
    try:
        return [rec.snapshot(i) for i in range(len(rec.snaps))]
    finally:
        rec.close()
