"""Recordings: a session's snapshots, actions, output and outcomes as versioned JSON lines.

`Recorder` writes one (drive and watch sessions) through the typed records of `tui.records`;
`Recording.open` reads one back for replay, the report and `watch --follow`, indexing every line
by byte offset so seeking costs one full frame plus the diffs after it. The format is documented
in docs/recording.md (format version `FORMAT_VERSION`). Every record goes through
`tui.redact.Redactor` before it is written.

Reading survives any file: special files are refused before they are opened for reading, lines are
streamed with a bounded length (`MAX_LINE`), and a line that is not what the format says is
counted as damaged (`Recording.damaged`, by line number) and skipped, never raised. No textual here.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import getpass
import json
import math
import os
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, cast

from probes.model import CheckResult
from probes.snapshot import DatabaseState, FleetSnapshot, LegView, snapshot_from_json, to_json_value
from tui.records import (
    FORMAT,
    FORMAT_VERSION,
    MAX_TIME,
    Diff,
    DiffOp,
    End,
    Frame,
    Header,
    Mode,
    Note,
    Record,
    RecordError,
    RecordType,
    parse_record,
    record_of,
)
from tui.redact import Redactor

__all__ = ["FORMAT", "FORMAT_VERSION", "Recorder", "Recording", "RecordingError"]

DEFAULT_FULL_EVERY: Final = 300.0  # seconds between full frames
DEFAULT_MAX_FILES: Final = 200
DEFAULT_MAX_AGE_DAYS: Final = 90.0
MAX_LINE: Final = 16 << 20  # a longer line is damaged (and never held in memory whole)
_CHUNK: Final = 1 << 20
_HEAD: Final = 200  # bytes at the start of a line its prefix and kind are read from

# Lists of objects diffed by identity, not position: path (with "*" for any key) -> identity fields.
KEYED_LISTS: Final[Mapping[tuple[str, ...], tuple[str, ...]]] = {
    ("instances",): ("host",),
    ("instances", "*", "checks"): ("check", "target"),
    ("checks",): ("check", "target"),
    ("certs",): ("check", "target"),
    ("database", "checks"): ("check", "target"),
    ("database", "connections"): ("leg", "addr"),  # schema 1
    ("database", "legs", "*", "connections"): ("leg", "addr"),  # schema 2
}
# Fields a diff ignores inside check results (timings that change every round): carried by full frames only.
VOLATILE: Final = frozenset({"duration_ms"})
# Clocks inside a check's evidence (a probe's "now", connection ages, round-trip times; any "*_ms"):
# carried by full frames only, like VOLATILE.
VOLATILE_EVIDENCE: Final = frozenset({"now", "age", "idle", "age_s", "idle_s"})

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


def prune(directory: Path, *, max_files: int | None = DEFAULT_MAX_FILES, max_age_days: float | None =
          DEFAULT_MAX_AGE_DAYS, now: float | None = None, keep: Sequence[Path] = ()) -> list[Path]:
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
    # ("instances", "staging-api-01", "checks") -> ("instances", "*", "checks");
    # ("database", "legs", "leg1", "connections") -> ("database", "legs", "*", "connections")
    if len(path) == 3 and path[0] == "instances":
        return ("instances", "*", path[2])
    if len(path) == 4 and path[:2] == ("database", "legs"):
        return ("database", "legs", "*", path[3])
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


# -- normalisation: what a recording stores is the snapshot with its volatile order removed ------------


def _unordered(value: Json) -> bool:
    """A list of observed connections (objects with an `addr`), in whatever order the server listed them."""
    return isinstance(value, list) and len(value) > 1 and all(isinstance(x, dict) and "addr" in x for x in value)


def _sort_key(item: Json) -> str:
    return repr(sorted(item.items())) if isinstance(item, dict) else repr(item)


def normal_check(check_json: Mapping[str, Json]) -> dict[str, Json]:
    """A check result's JSON with the lists of observed connections in its evidence sorted."""
    out = dict(check_json)
    ev = out.get("evidence")
    if isinstance(ev, Mapping) and any(_unordered(v) for v in ev.values()):
        out["evidence"] = {k: sorted(v, key=_sort_key) if _unordered(v) else v for k, v in ev.items()}
    return out


def _sorted_keyed(d: dict[str, Json]) -> dict[str, Json]:
    return dict(sorted(d.items()))


def normalised(snapshot_json: Mapping[str, Json]) -> dict[str, Json]:
    """The snapshot JSON as a recording stores it (and a replay gives it back): observed connections
    sorted by their identity, connection lists inside check evidence sorted. Nothing else changes."""
    state = keyed(snapshot_json)

    def checks(d: Json) -> Json:
        return {k: normal_check(v) if isinstance(v, Mapping) else v for k, v in d.items()} \
            if isinstance(d, dict) else d

    for name in ("checks", "certs"):
        state[name] = checks(state.get(name))
    db = state.get("database")
    if isinstance(db, dict):
        db = dict(db)
        db["checks"] = checks(db.get("checks"))
        if isinstance(db.get("connections"), dict):  # schema 1
            db["connections"] = _sorted_keyed(db["connections"])
        if isinstance(db.get("legs"), dict):
            db["legs"] = {leg: {**v, "connections": _sorted_keyed(v["connections"])}
                          if isinstance(v, dict) and isinstance(v.get("connections"), dict) else v
                          for leg, v in db["legs"].items()}
        state["database"] = db
    insts = state.get("instances")
    if isinstance(insts, dict):
        state["instances"] = {h: {**i, "checks": checks(i.get("checks"))} if isinstance(i, dict) else i
                              for h, i in insts.items()}
    return unkeyed(state)


def _volatile(key: str, in_check: bool, in_evidence: bool) -> bool:
    if in_check and key in VOLATILE:
        return True
    return in_evidence and (key in VOLATILE_EVIDENCE or key.endswith("_ms"))


def diff(old: Json, new: Json, path: list[str] | None = None, ops: list[DiffOp] | None = None) -> list[DiffOp]:
    """Operations turning `old` into `new` (keyed forms): add, remove, replace, order.

    Inside check results, the timings (VOLATILE) and the clocks in evidence (VOLATILE_EVIDENCE, any
    "*_ms") are ignored: they change every round and are carried by full frames only.
    """
    path = [] if path is None else path
    ops = [] if ops is None else ops
    if isinstance(old, dict) and isinstance(new, dict):
        in_check = "checks" in path or "certs" in path
        in_evidence = in_check and "evidence" in path
        removed = [k for k in old if k not in new and not _volatile(k, in_check, in_evidence)]
        for k in removed:
            ops.append(DiffOp("remove", pointer([*path, k])))
        added: list[str] = []
        for k, v in new.items():
            if _volatile(k, in_check, in_evidence):
                continue
            if k not in old:
                ops.append(DiffOp("add", pointer([*path, k]), v))
                added.append(k)
            else:
                ov = old[k]
                if ov is v or (ov == v and type(ov) is type(v)):
                    continue
                diff(ov, v, [*path, k], ops)
        if removed or added:
            expect = [k for k in old if k in new and not _volatile(k, in_check, in_evidence)] + added
            order = [k for k in new if not _volatile(k, in_check, in_evidence)]
            if expect != order:
                ops.append(DiffOp("order", pointer(path), keys=tuple(order)))
        return ops
    if old != new or type(old) is not type(new):
        ops.append(DiffOp("replace", pointer(path), new))
    return ops


def shape_error(state: Json, paths: Sequence[str]) -> str | None:
    """Why `state` is not a keyed snapshot where `paths` (JSON Pointers a diff touched) changed it, or None:
    a keyed list, one of its entries, or the database must stay an object. (Leaf values are left to the
    snapshot reader.)"""
    if not isinstance(state, dict):
        return f"the snapshot is {type(state).__name__}, not an object"
    for p in paths:
        try:
            parts = parse_pointer(p)
        except ValueError:
            return f"bad pointer {p!r}"
        node: Json = state
        walked: list[str] = []
        for part in parts[:3]:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            walked.append(part)
            g = _generic(tuple(walked))
            entry = len(walked) > 1 and _generic(tuple(walked[:-1])) in KEYED_LISTS
            if (g in KEYED_LISTS or entry) and not isinstance(node, dict):
                return f"{pointer(walked)} is {type(node).__name__}, not an object"
            if walked == ["database"] and node is not None and not isinstance(node, dict):
                return f"/database is {type(node).__name__}, not an object or null"
    return None


def _ordered(target: Json, keys: Sequence[str]) -> dict[str, Json]:
    """`target`'s entries in the order of `keys`; entries `keys` does not name stay, at the end."""
    if not isinstance(target, dict):
        raise TypeError(f"order applied to {type(target).__name__}, not an object")
    out = {k: target[k] for k in keys if k in target}
    out.update((k, v) for k, v in target.items() if k not in out)
    return out


def apply_ops(state: Json, ops: Sequence[DiffOp | Mapping[str, Json]]) -> Json:
    """`state` with `ops` applied. Containers on each op's path are copied, never mutated, so a
    snapshot built from an earlier state stays as it was. Raises KeyError/TypeError/ValueError
    for an op whose path is not in `state` (the reader counts that diff as damaged)."""
    for raw in ops:
        op = raw if isinstance(raw, DiffOp) else DiffOp.from_json(raw, "op")
        parts = parse_pointer(op.path)
        if not parts:
            if op.op == "replace":
                state = op.value
            elif op.op == "order":
                state = _ordered(state, op.keys)
            continue
        if not isinstance(state, dict):
            raise TypeError(f"{op.path}: the snapshot is {type(state).__name__}, not an object")
        root = dict(state)
        node = root
        for part in parts[:-1]:
            child = node[part]
            if not isinstance(child, dict):
                raise TypeError(f"{op.path}: {part!r} is {type(child).__name__}, not an object")
            child = dict(child)
            node[part] = child
            node = child
        last = parts[-1]
        if op.op in ("add", "replace"):
            node[last] = op.value
        elif op.op == "remove":
            node.pop(last, None)
        else:
            node[last] = _ordered(node[last], op.keys)
        state = root
    return state


# --------------------------------------------------------------------------------------------
# incremental conversion: only what changed since the previous snapshot is turned into JSON and
# redacted again (a 50-host snapshot changes a few timings per round, not its 300 checks)


def _steady(evidence: Mapping[str, Json]) -> dict[str, Json]:
    """Evidence without its clocks and with its connection lists sorted: what a diff would see of it."""
    return {k: sorted(v, key=_sort_key) if _unordered(v) else v for k, v in evidence.items()
            if not _volatile(k, True, True)}


def _same_check(a: CheckResult, b: CheckResult) -> bool:
    """Equal but for what a diff ignores (timings, clocks in evidence, the order of connection lists)."""
    return (a.check == b.check and a.target == b.target and a.verdict is b.verdict and a.summary == b.summary
            and (a.evidence == b.evidence or _steady(a.evidence) == _steady(b.evidence)))


def _same_legs(a: DatabaseState, b: DatabaseState) -> bool:
    """The same connections on every leg, in whatever order the servers listed them."""
    if a.legs == b.legs:
        return True
    if a.legs.keys() != b.legs.keys():
        return False
    for leg, va in a.legs.items():
        vb = b.legs[leg]
        if isinstance(va, LegView) and isinstance(vb, LegView):
            if va.own != vb.own or len(va.connections) != len(vb.connections) or \
                    set(va.connections) != set(vb.connections):
                return False
        elif va != vb:
            return False
    return True


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
            same = hit is not None and (hit[0] is c or _same_check(hit[0], c))
            entry = hit[1] if hit is not None and same else self.r.value(normal_check(c.to_json()))
            out[key] = entry
            mine[key] = (c, entry)
        self._checks[where] = mine
        return out

    def _legs(self, db: DatabaseState) -> dict[str, Json]:
        """The legs, each one's observed connections keyed by identity and sorted (the server's order is
        not a fact: SHOW CLIENTS and CLIENT LIST list them differently every round)."""
        out: dict[str, Json] = {}
        for leg, view in db.legs.items():
            js = self.r.value(to_json_value(view))
            if isinstance(js, dict) and isinstance(js.get("connections"), list):
                js["connections"] = _sorted_keyed(_keyed_list(js["connections"], ("leg", "addr"),
                                                              ("database", "legs", str(leg), "connections")))
            out[str(leg)] = js
        return out

    def convert(self, s: FleetSnapshot, *, fresh: bool) -> dict[str, Json]:
        prev = None if fresh else self.prev
        ps = None if fresh else self.state
        r = self.r
        # the names of who holds what are not secrets (tui.redact: "redact values only")
        r.add_public([*s.configured, *(i.host for i in s.instances), *(i.service for i in s.instances)])
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
            pdb = prev.database if prev is not None and isinstance(prev.database, DatabaseState) else None
            dbo: dict[str, Json] = {}
            for f_ in db.__dataclass_fields__:
                if f_ == "legs":
                    same = (pdb is not None and ps is not None and isinstance(ps.get("database"), dict)
                            and "legs" in ps["database"] and _same_legs(pdb, db))
                    dbo[f_] = ps["database"]["legs"] if same and ps is not None else self._legs(db)
                elif f_ == "checks":
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
        if mode not in ("drive", "watch", "replay"):
            raise ValueError(f"a recording's mode is drive or watch, not {mode!r}")
        self.path = path
        self.clock = clock
        self.redactor = redactor or Redactor()
        self.redactor.add_public(services)
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
        m = cast(Mode, mode)
        self.info = Header(ts=self.clock(), env=env, mode=m, protected=protected, plan=plan, services=tuple(services),
                           who=who or os.environ.get("COCKPIT_OPERATOR") or getpass.getuser(),
                           where=socket.gethostname(), pid=os.getpid(), full_every=full_every,
                           extra=dict(extra) if extra else {})
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
        from its fields, through its typed class (tui.records). Fields the class refuses are a bug of the
        caller: the session goes on, and the recording gets an error note saying what was refused."""
        ts = fields.pop("ts", None)
        now = self.clock() if ts is None else ts
        try:
            rec = record_of(t, {"ts": now, **fields})
        except RecordError as exc:
            return self.write(Note(ts=self.clock(), text=f"a {t!r} record could not be written: {exc}",
                                   level="error"))
        return self.write(rec)

    def close(self) -> None:
        if self.closed:
            return
        self.write(End(ts=self.clock(), snapshots=self.seq))
        self.closed = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------------------------
# reading


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

    `kind` is a record type (tui.records.RecordType), a type this reader does not know, or DAMAGED;
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
        raise RecordingError(f"{path} is {what}, not a recording file: pass a .jsonl file written by "
                             "`cockpit drive` or `cockpit watch`")
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


class Recording:
    """An opened recording: the header, an index of every line, and random access to snapshots.

    Opening streams the file once (bounded memory: at most `max_line` bytes of one line at a time)
    and indexes each line's type, time, offset and line number from its prefix; lines are parsed
    when used. Damage is recorded, never raised, in `damaged` (line number -> why), found when
    indexing (a line that is not a record, a bad time, a diff with no base) or when a line is used
    (a field of the wrong type, a diff that does not apply, a snapshot that does not read).
    Times that go backwards are kept in file order at the previous line's time (`out_of_order`).
    `refresh()` indexes lines appended since (watch --follow)."""

    def __init__(self, path: Path, fd: int, info: Header, pos: int, *, max_line: int) -> None:
        self.path = path
        self.info = info
        self.header: dict[str, Json] = info.to_json()
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
        self._last_ts = info.ts
        self._chain_seq: int | None = None  # seq of the last snapshot of the current chain (None: no usable chain)
        self._chain_ok = False
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
            chunk = os.pread(fd, min(_CHUNK, max_line + 1 - len(buf)), pos)
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
            raise RecordingError(f"{p}: the first line is not JSON ({str(exc).split(':')[0]}); "
                                 "not a recording") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("t") != "header":
            raise RecordingError(f"{p}: not a Rollout Cockpit recording (no {FORMAT!r} header)")
        if header.get("version") != FORMAT_VERSION:
            raise RecordingError(f"{p}: recording format version {header.get('version')!r}; this cockpit reads "
                                 f"version {FORMAT_VERSION}")
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

    # -- indexing ---------------------------------------------------------------------------------------
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
            chunk = os.pread(fd, _CHUNK, read)
            if not chunk:
                break
            read += len(chunk)
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                self._damage(self._line, start, read - len(chunk) + nl - start,
                             f"longer than {self.max_line >> 20} MiB")
                self._line += 1
                skipping = False
                start = read - len(chunk) + nl + 1
                buf = bytearray(chunk[nl + 1:])
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
            self._damage(line, offset, length, bad or "not a recording line (no {\"t\":…,\"ts\":…} prefix)")
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
        if kind == RecordType.FRAME:
            if not m.group(3):
                self._damage(line, offset, length, "a frame without its seq")
                self._chain_seq, self._chain_ok = None, False
                return
            self._chain_seq, self._chain_ok = seq, True
            self.frame_at.append(len(self.snaps))
        elif kind == RecordType.DIFF:
            why = None
            if not m.group(3):
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
                return
            self._chain_seq = seq
            self.frame_at.append(self.frame_at[-1])
        self.entries.append(e)
        if kind in (RecordType.FRAME, RecordType.DIFF):
            self.snaps.append(e)
            self.times.append(ts)

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
        return None

    def records(self, kinds: Sequence[str] | None = None, start: float = float("-inf"),
                end: float = float("inf")) -> Iterator[Record]:
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
            bad = shape_error(rec.snapshot, ["/" + _esc(k) for k in rec.snapshot])
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
                self._late_damage(self.snaps[j], f"the diff does not apply to the snapshot before it "
                                                 f"({type(exc).__name__}: {exc})"[:300])
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
                raise RecordingError(f"{path}: snapshot {i} cannot be read: "
                                     f"{'; '.join(f'line {n}: {w}' for n, w in sorted(rec.damaged.items()))}")
            out.append(snap)
        return out
