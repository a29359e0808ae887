"""The records of a recording (docs/recording.md) as frozen dataclasses, one per line type.

The Recorder builds each line through these classes (`to_json`) and every reader — `Recording`,
the replay timeline, the report, `watch --follow` — parses lines back through the same classes
(`parse_record`), so writer and readers cannot drift apart: a field one writes under one name
and another reads under another is a type error here, not a silent "no change" in a report.

Parsing is strict about types and lenient about absence: a missing optional field takes its
default (older and newer writers), a field of the wrong type, a time that is not a finite
non-negative number, or a word outside a vocabulary raises `RecordError` naming the field, and
the reader counts that line as damaged. No textual here.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypeVar, cast, get_args

from plans.gates import GateStatus

FORMAT: Final = "rollout-cockpit-recording"
FORMAT_VERSION: Final = 1
MAX_TIME: Final = 253402300799.0  # 9999-12-31T23:59:59Z: a later "time" is damage, not a time

Json: TypeAlias = Any


class RecordError(ValueError):
    """A line of a known type whose fields are not what the format says; the message names the field."""


class RecordType(enum.StrEnum):
    HEADER = "header"
    FRAME = "frame"
    DIFF = "diff"
    VERDICT = "verdict"
    LOCK = "lock"
    JOURNAL = "journal"
    ACTION = "action"
    EVENT = "event"
    OUTCOME = "outcome"
    NOTE = "note"
    END = "end"


class ActionKind(enum.StrEnum):
    """What the driving session did (drive mode), one record each."""

    LOCK = "lock"
    LOCK_REFUSED = "lock-refused"
    PREVIEW = "preview"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    ERROR = "error"
    UNLOCK = "unlock"
    REFUSED = "refused"


class Direction(enum.StrEnum):
    ADVANCE = "advance"
    ROLLBACK = "rollback"
    RESTART = "restart"  # a restart-only action (plans.engine preview_restart): step "restart"


class EventKind(enum.StrEnum):
    """The engine's progress events; a kind this reader does not know is kept as its text."""

    PREFLIGHT = "preflight"
    WRITE = "write"
    RESTART = "restart"
    OUTPUT = "output"
    INSTANCE_DONE = "instance-done"
    VERIFY = "verify"
    DONE = "done"
    ERROR = "error"
    PAUSED = "paused"
    RESUMED = "resumed"
    STOPPING = "stopping"
    JOURNAL = "journal"
    DIAGNOSTICS = "diagnostics"
    ROLLBACK = "rollback"


_EVENT_KINDS: Final = frozenset(k.value for k in EventKind)

Mode = Literal["drive", "watch", "replay"]  # "replay": the null recorder of a replaying app (writes nothing)
NoteLevel = Literal["info", "warn", "error"]
DiffOpKind = Literal["add", "remove", "replace", "order"]


# --------------------------------------------------------------------------------------------
# field readers: each names the field it refuses


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _get(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise RecordError(f"{where}: missing field {key!r}")
    return d[key]


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: expected text, got {type(value).__name__}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _text(d: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    """An optional text field: absent or null -> `default`."""
    v = d.get(key)
    return default if v is None else _str(v, f"{where}.{key}")


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{where}: expected true/false, got {type(value).__name__}")
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where}: expected a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise RecordError(f"{where}: not a finite number ({value!r})")
    return f


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{where}: expected a whole number, got {type(value).__name__}")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _time(value: Any, where: str) -> float:
    """Epoch seconds: a finite number, not before 1970."""
    t = _num(value, where)
    if t < 0:
        raise RecordError(f"{where}: a time before 1970 ({value!r})")
    if t > MAX_TIME:
        raise RecordError(f"{where}: a time after the year 9999 ({value!r})")
    return t


def _opt_time(value: Any, where: str) -> float | None:
    return None if value is None else _time(value, where)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _strs(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


_E = TypeVar("_E", bound=enum.StrEnum)


def _enum(cls: type[_E], value: Any, where: str) -> _E:
    s = _str(value, where)
    try:
        return cls(s)
    except ValueError:
        raise RecordError(f"{where}: {s!r} is not one of {', '.join(m.value for m in cls)}") from None


def _literal(allowed: Any, value: Any, where: str) -> str:
    s = _str(value, where)
    options = get_args(allowed)
    if s not in options:
        raise RecordError(f"{where}: {s!r} is not one of {', '.join(options)}")
    return s


def _drop_none(d: dict[str, Json]) -> dict[str, Json]:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------------
# pieces inside records


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds the fleet lock (plans.lock.LockInfo as recorded; the token is redacted on write)."""

    who: str
    where: str = ""
    step: str = ""
    since: float | None = None
    pid: int | None = None
    token: str = ""

    def to_json(self) -> dict[str, Json]:
        return {"who": self.who, "where": self.where, "pid": self.pid, "step": self.step, "since": self.since,
                "token": self.token}

    @classmethod
    def from_json(cls, value: Any, where: str = "holder") -> LockHolder:
        d = _obj(value, where)
        return cls(who=_text(d, "who", where, "?"), where=_text(d, "where", where), step=_text(d, "step", where),
                   since=_opt_time(d.get("since"), f"{where}.since"), pid=_opt_int(d.get("pid"), f"{where}.pid"),
                   token=_text(d, "token", where))


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """One mark that changed with a snapshot: a step state, a check verdict or the fleet verdict."""

    what: str  # "step pg-5:api", "check tls.postgres db:5432", "fleet"
    before: str | None
    after: str | None
    text: str = ""

    def to_json(self) -> dict[str, Json]:
        return {"what": self.what, "from": self.before, "to": self.after, "text": self.text}

    @classmethod
    def from_json(cls, value: Any, where: str) -> VerdictChange:
        d = _obj(value, where)
        return cls(what=_str(_get(d, "what", where), f"{where}.what"),
                   before=_opt_str(d.get("from"), f"{where}.from"), after=_opt_str(d.get("to"), f"{where}.to"),
                   text=_text(d, "text", where))

    @property
    def is_step(self) -> bool:
        return self.what.startswith("step ")

    @property
    def is_fleet(self) -> bool:
        return self.what == "fleet"


@dataclass(frozen=True, slots=True)
class Restart:
    host: str
    command: str = ""
    pre_restart: str = ""

    def to_json(self) -> dict[str, Json]:
        return {"host": self.host, "command": self.command, "pre_restart": self.pre_restart}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Restart:
        d = _obj(value, where)
        return cls(host=_str(_get(d, "host", where), f"{where}.host"), command=_text(d, "command", where),
                   pre_restart=_text(d, "pre_restart", where))


@dataclass(frozen=True, slots=True)
class Gate:
    gate: str
    status: GateStatus
    reason: str = ""
    service: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {"gate": self.gate, "status": self.status, "reason": self.reason, "service": self.service}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Gate:
        d = _obj(value, where)
        return cls(gate=_str(_get(d, "gate", where), f"{where}.gate"),
                   status=cast(GateStatus, _literal(GateStatus, _get(d, "status", where), f"{where}.status")),
                   reason=_text(d, "reason", where), service=_opt_str(d.get("service"), f"{where}.service"))

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why an action may not run; the engine writes text, or {"id", "text", "kind"} objects (hazards)."""

    text: str
    id: str = ""
    kind: str = ""

    def to_json(self) -> Json:
        if not self.id:
            return self.text
        return {"id": self.id, "text": self.text, **({"kind": self.kind} if self.kind else {})}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Blocker:
        if isinstance(value, str):
            return cls(value)
        d = _obj(value, where)
        return cls(text=_text(d, "text", where), id=_text(d, "id", where), kind=_text(d, "kind", where))


@dataclass(frozen=True, slots=True)
class PreviewSummary:
    """The engine's preview as recorded (`Preview.to_json()`): what would change, restart and be gated."""

    step: str
    service: str | None
    direction: Direction
    title: str = ""
    env: str = ""
    protected: bool = False
    changes: tuple[str, ...] = ()  # the change lines, e.g. "/ns/api/DATABASE_SSL_MODE: (unset → verify-full)"
    restarts: tuple[Restart, ...] = ()
    gates: tuple[Gate, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    open: bool = True
    state: str = ""
    snapshot_at: float | None = None
    extra: Mapping[str, Json] = field(default_factory=dict, compare=False)  # what a newer engine adds, kept

    _KNOWN: ClassVar[frozenset[str]] = frozenset({
        "env", "protected", "step", "service", "direction", "title", "changes", "restarts", "gates", "blockers",
        "open", "state", "snapshot_at"})

    def to_json(self) -> dict[str, Json]:
        return {"env": self.env, "protected": self.protected, "step": self.step, "service": self.service,
                "direction": self.direction.value, "title": self.title, "changes": list(self.changes),
                "restarts": [r.to_json() for r in self.restarts], "gates": [g.to_json() for g in self.gates],
                "blockers": [b.to_json() for b in self.blockers], "open": self.open, "state": self.state,
                "snapshot_at": self.snapshot_at, **self.extra}

    @classmethod
    def from_json(cls, value: Any, where: str = "preview") -> PreviewSummary:
        d = _obj(value, where)
        return cls(
            step=_text(d, "step", where), service=_opt_str(d.get("service"), f"{where}.service"),
            direction=_enum(Direction, d.get("direction", "advance"), f"{where}.direction"),
            title=_text(d, "title", where), env=_text(d, "env", where),
            protected=_bool(d.get("protected", False), f"{where}.protected"),
            changes=_strs(d.get("changes", ()), f"{where}.changes"),
            restarts=tuple(Restart.from_json(r, f"{where}.restarts[{i}]")
                           for i, r in enumerate(_list(d.get("restarts", ()), f"{where}.restarts"))),
            gates=tuple(Gate.from_json(g, f"{where}.gates[{i}]")
                        for i, g in enumerate(_list(d.get("gates", ()), f"{where}.gates"))),
            blockers=tuple(Blocker.from_json(b, f"{where}.blockers[{i}]")
                           for i, b in enumerate(_list(d.get("blockers", ()), f"{where}.blockers"))),
            open=_bool(d.get("open", True), f"{where}.open"), state=_text(d, "state", where),
            snapshot_at=_opt_time(d.get("snapshot_at"), f"{where}.snapshot_at"),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN})

    @property
    def closed_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if not g.open)


@dataclass(frozen=True, slots=True)
class InstanceResult:
    host: str
    ok: bool
    reason: str = ""
    exit_status: int | None = None
    output: str = ""
    update_ms: float = 0.0
    verify_ms: float = 0.0

    def to_json(self) -> dict[str, Json]:
        return {"host": self.host, "ok": self.ok, "exit_status": self.exit_status, "output": self.output,
                "update_ms": self.update_ms, "verify_ms": self.verify_ms, "reason": self.reason}

    @classmethod
    def from_json(cls, value: Any, where: str) -> InstanceResult:
        d = _obj(value, where)
        return cls(host=_text(d, "host", where, "?"), ok=_bool(_get(d, "ok", where), f"{where}.ok"),
                   reason=_text(d, "reason", where), exit_status=_opt_int(d.get("exit_status"), f"{where}.exit_status"),
                   output=_text(d, "output", where), update_ms=_num(d.get("update_ms", 0.0), f"{where}.update_ms"),
                   verify_ms=_num(d.get("verify_ms", 0.0), f"{where}.verify_ms"))


@dataclass(frozen=True, slots=True)
class OutcomeSummary:
    """The engine's result of an apply (`Outcome.to_json()`); `stage` is the engine's word, kept as is
    ("refused", "write", "restart", "verify", "done", "dry-run", and newer ones such as "stopped")."""

    ok: bool
    stage: str = ""
    reason: str = ""
    instances: tuple[InstanceResult, ...] = ()
    started: float | None = None
    finished: float | None = None
    rolled_back: OutcomeSummary | None = None
    extra: Mapping[str, Json] = field(default_factory=dict, compare=False)  # what a newer engine adds, kept

    _KNOWN: ClassVar[frozenset[str]] = frozenset({"ok", "stage", "reason", "instances", "started", "finished",
                                                  "rolled_back"})

    def to_json(self) -> dict[str, Json]:
        return {"ok": self.ok, "stage": self.stage, "reason": self.reason,
                "instances": [i.to_json() for i in self.instances], "started": self.started,
                "finished": self.finished, "rolled_back": self.rolled_back.to_json() if self.rolled_back else None,
                **self.extra}

    @classmethod
    def from_json(cls, value: Any, where: str = "outcome", depth: int = 0) -> OutcomeSummary:
        d = _obj(value, where)
        rb = d.get("rolled_back")
        if rb is not None and depth > 4:
            raise RecordError(f"{where}.rolled_back: nested too deep")
        return cls(ok=_bool(_get(d, "ok", where), f"{where}.ok"), stage=_text(d, "stage", where),
                   reason=_text(d, "reason", where),
                   instances=tuple(InstanceResult.from_json(x, f"{where}.instances[{i}]")
                                   for i, x in enumerate(_list(d.get("instances", ()), f"{where}.instances"))),
                   started=_opt_time(d.get("started"), f"{where}.started"),
                   finished=_opt_time(d.get("finished"), f"{where}.finished"),
                   rolled_back=None if rb is None else cls.from_json(rb, f"{where}.rolled_back", depth + 1),
                   extra={k: v for k, v in d.items() if k not in cls._KNOWN})


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A fleet journal entry (plans/journal.py) as recorded: the fields the readers use, and the entry."""

    event: str
    who: str
    ts: float | None
    step: str = ""
    service: str | None = None
    direction: Direction | None = None
    ok: bool | None = None
    stage: str = ""
    reason: str = ""
    where: str = ""
    raw: Mapping[str, Json] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, value: Any, where: str = "entry") -> JournalEntry:
        d = _obj(value, where)
        direction = d.get("direction")
        ok = d.get("ok")
        return cls(event=_text(d, "event", where, "?"), who=_text(d, "who", where, "?"),
                   ts=_opt_time(d.get("ts"), f"{where}.ts"), step=_text(d, "step", where),
                   service=_opt_str(d.get("service"), f"{where}.service"),
                   direction=None if direction is None else _enum(Direction, direction, f"{where}.direction"),
                   ok=None if ok is None else _bool(ok, f"{where}.ok"), stage=_text(d, "stage", where),
                   reason=_text(d, "reason", where), where=_text(d, "where", where), raw=dict(d))

    @property
    def refused(self) -> bool:
        """A refusal that reached the journal (a CLI `advance` the engine refused, or a refusal event)."""
        return self.event in ("refused", "apply-refused") or (self.ok is False and self.stage == "refused")


# --------------------------------------------------------------------------------------------
# the records


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    TYPE: ClassVar[RecordType]
    ts: float

    def _head(self) -> dict[str, Json]:
        return {"t": self.TYPE.value, "ts": self.ts}


@dataclass(frozen=True, slots=True, kw_only=True)
class Header(_Record):
    TYPE: ClassVar[RecordType] = RecordType.HEADER
    env: str
    mode: Mode
    protected: bool = False
    plan: str = ""
    services: tuple[str, ...] = ()
    who: str = "?"
    where: str = "?"
    pid: int | None = None
    full_every: float = 300.0
    version: int = FORMAT_VERSION
    extra: Mapping[str, Json] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "format": FORMAT, "version": self.version, "env": self.env, "mode": self.mode,
                "protected": self.protected, "plan": self.plan, "services": list(self.services), "who": self.who,
                "where": self.where, "pid": self.pid, "full_every": self.full_every, **self.extra}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Header:
        w = "header"
        known = {"t", "ts", "format", "version", "env", "mode", "protected", "plan", "services", "who", "where",
                 "pid", "full_every"}
        full_every = _num(d.get("full_every", 300.0), f"{w}.full_every")
        if full_every <= 0:
            raise RecordError(f"{w}.full_every: must be positive ({full_every!r})")
        return cls(ts=_time(_get(d, "ts", w), f"{w}.ts"), env=_text(d, "env", w, "?"),
                   mode=cast(Mode, _literal(Mode, d.get("mode", "watch"), f"{w}.mode")),
                   protected=_bool(d.get("protected", False), f"{w}.protected"), plan=_text(d, "plan", w),
                   services=_strs(d.get("services", ()), f"{w}.services"), who=_text(d, "who", w, "?"),
                   where=_text(d, "where", w, "?"), pid=_opt_int(d.get("pid"), f"{w}.pid"), full_every=full_every,
                   version=_int(_get(d, "version", w), f"{w}.version"),
                   extra={k: v for k, v in d.items() if k not in known})


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame(_Record):
    """A full snapshot, in keyed form (tui.recording.keyed)."""

    TYPE: ClassVar[RecordType] = RecordType.FRAME
    seq: int
    snapshot: Mapping[str, Json]

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "seq": self.seq, "snapshot": self.snapshot}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Frame:
        return cls(ts=_time(_get(d, "ts", "frame"), "frame.ts"), seq=_int(_get(d, "seq", "frame"), "frame.seq"),
                   snapshot=dict(_obj(_get(d, "snapshot", "frame"), "frame.snapshot")))


@dataclass(frozen=True, slots=True)
class DiffOp:
    """One change of a keyed snapshot (paths are JSON Pointers)."""

    op: DiffOpKind
    path: str
    value: Json = None
    keys: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Json]:
        if self.op == "remove":
            return {"op": self.op, "path": self.path}
        if self.op == "order":
            return {"op": self.op, "path": self.path, "keys": list(self.keys)}
        return {"op": self.op, "path": self.path, "value": self.value}

    @classmethod
    def from_json(cls, value: Any, where: str) -> DiffOp:
        d = _obj(value, where)
        op = cast(DiffOpKind, _literal(DiffOpKind, _get(d, "op", where), f"{where}.op"))
        path = _str(_get(d, "path", where), f"{where}.path")
        if path and not path.startswith("/"):
            raise RecordError(f"{where}.path: not a JSON Pointer ({path!r})")
        if op == "order":
            return cls(op, path, keys=_strs(_get(d, "keys", where), f"{where}.keys"))
        if op in ("add", "replace"):
            return cls(op, path, _get(d, "value", where))
        return cls(op, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Diff(_Record):
    """The changes since the previous snapshot (seq - 1)."""

    TYPE: ClassVar[RecordType] = RecordType.DIFF
    seq: int
    ops: tuple[DiffOp, ...]

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "seq": self.seq, "ops": [o.to_json() for o in self.ops]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Diff:
        return cls(ts=_time(_get(d, "ts", "diff"), "diff.ts"), seq=_int(_get(d, "seq", "diff"), "diff.seq"),
                   ops=tuple(DiffOp.from_json(o, f"diff.ops[{i}]")
                             for i, o in enumerate(_list(_get(d, "ops", "diff"), "diff.ops"))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdicts(_Record):
    """What changed with snapshot `seq`."""

    TYPE: ClassVar[RecordType] = RecordType.VERDICT
    seq: int | None = None
    changes: tuple[VerdictChange, ...] = ()

    def to_json(self) -> dict[str, Json]:
        head = self._head()
        if self.seq is not None:
            head["seq"] = self.seq
        return {**head, "changes": [c.to_json() for c in self.changes]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Verdicts:
        return cls(ts=_time(_get(d, "ts", "verdict"), "verdict.ts"), seq=_opt_int(d.get("seq"), "verdict.seq"),
                   changes=tuple(VerdictChange.from_json(c, f"verdict.changes[{i}]")
                                 for i, c in enumerate(_list(d.get("changes", ()), "verdict.changes"))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock(_Record):
    """The fleet lock changed hands, or could not be read (`known` false, `error` why)."""

    TYPE: ClassVar[RecordType] = RecordType.LOCK
    holder: LockHolder | None = None
    known: bool = True
    error: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "holder": self.holder.to_json() if self.holder else None, "known": self.known,
                "error": self.error}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Lock:
        h = d.get("holder")
        return cls(ts=_time(_get(d, "ts", "lock"), "lock.ts"),
                   holder=None if not h else LockHolder.from_json(h, "lock.holder"),
                   known=_bool(d.get("known", True), "lock.known"), error=_opt_str(d.get("error"), "lock.error"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Journal(_Record):
    """A fleet journal entry appeared (`backlog`: it was there when the session started)."""

    TYPE: ClassVar[RecordType] = RecordType.JOURNAL
    entry: JournalEntry
    backlog: bool = False

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "entry": dict(self.entry.raw), "backlog": self.backlog}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Journal:
        return cls(ts=_time(_get(d, "ts", "journal"), "journal.ts"),
                   entry=JournalEntry.from_json(_get(d, "entry", "journal"), "journal.entry"),
                   backlog=_bool(d.get("backlog", False), "journal.backlog"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Action(_Record):
    """One thing the driving session did: lock, preview, confirm, cancel, refused, error, unlock."""

    TYPE: ClassVar[RecordType] = RecordType.ACTION
    kind: ActionKind
    step: str = ""
    service: str | None = None
    direction: Direction = Direction.ADVANCE
    who: str = ""
    preview: PreviewSummary | None = None  # kind preview
    reason: str | None = None  # kind confirm (the operator's), refused (why)
    error: str | None = None  # kind lock-refused, error

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "kind": self.kind.value, "step": self.step, "service": self.service,
                "direction": self.direction.value, "who": self.who,
                **_drop_none({"preview": self.preview.to_json() if self.preview else None, "reason": self.reason,
                              "error": self.error})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Action:
        w = "action"
        kind = _enum(ActionKind, _get(d, "kind", w), f"{w}.kind")
        p = d.get("preview")
        if kind is ActionKind.PREVIEW and p is None:
            raise RecordError(f"{w}.preview: a preview action without its preview")
        return cls(ts=_time(_get(d, "ts", w), f"{w}.ts"), kind=kind, step=_text(d, "step", w),
                   service=_opt_str(d.get("service"), f"{w}.service"),
                   direction=_enum(Direction, d.get("direction", "advance"), f"{w}.direction"),
                   who=_text(d, "who", w), preview=None if p is None else PreviewSummary.from_json(p, f"{w}.preview"),
                   reason=_opt_str(d.get("reason"), f"{w}.reason"), error=_opt_str(d.get("error"), f"{w}.error"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(_Record):
    """An engine progress event (update.sh output included)."""

    TYPE: ClassVar[RecordType] = RecordType.EVENT
    kind: EventKind | str
    host: str | None = None
    text: str = ""
    at: float | None = None  # the engine's timestamp

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "kind": str(self.kind), "host": self.host, "text": self.text, "at": self.at}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        raw = _str(_get(d, "kind", "event"), "event.kind")
        kind: EventKind | str = EventKind(raw) if raw in _EVENT_KINDS else raw
        return cls(ts=_time(_get(d, "ts", "event"), "event.ts"), kind=kind,
                   host=_opt_str(d.get("host"), "event.host"), text=_text(d, "text", "event"),
                   at=_opt_time(d.get("at"), "event.at"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome(_Record):
    """The result of an apply, with the operator's reason."""

    TYPE: ClassVar[RecordType] = RecordType.OUTCOME
    outcome: OutcomeSummary
    step: str = ""
    service: str | None = None
    direction: Direction = Direction.ADVANCE
    reason: str = ""
    who: str = ""

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "step": self.step, "service": self.service, "direction": self.direction.value,
                "reason": self.reason, "who": self.who, "outcome": self.outcome.to_json()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Outcome:
        w = "outcome"
        return cls(ts=_time(_get(d, "ts", w), f"{w}.ts"),
                   outcome=OutcomeSummary.from_json(_get(d, "outcome", w), f"{w}.outcome"),
                   step=_text(d, "step", w), service=_opt_str(d.get("service"), f"{w}.service"),
                   direction=_enum(Direction, d.get("direction", "advance"), f"{w}.direction"),
                   reason=_text(d, "reason", w), who=_text(d, "who", w))


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(_Record):
    """Something the session noticed (a snapshot that failed, a task that crashed)."""

    TYPE: ClassVar[RecordType] = RecordType.NOTE
    text: str
    level: NoteLevel = "warn"

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "text": self.text, "level": self.level}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Note:
        return cls(ts=_time(_get(d, "ts", "note"), "note.ts"), text=_text(d, "text", "note"),
                   level=cast(NoteLevel, _literal(NoteLevel, d.get("level", "warn"), "note.level")))


@dataclass(frozen=True, slots=True, kw_only=True)
class End(_Record):
    """The last line of a cleanly closed session."""

    TYPE: ClassVar[RecordType] = RecordType.END
    snapshots: int = 0

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "snapshots": self.snapshots}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> End:
        return cls(ts=_time(_get(d, "ts", "end"), "end.ts"), snapshots=_int(d.get("snapshots", 0), "end.snapshots"))


Record: TypeAlias = Header | Frame | Diff | Verdicts | Lock | Journal | Action | Event | Outcome | Note | End
Snapshot: TypeAlias = Frame | Diff

_CLASSES: Final[Mapping[str, Any]] = {c.TYPE.value: c for c in (Header, Frame, Diff, Verdicts, Lock, Journal, Action,
                                                                 Event, Outcome, Note, End)}


def parse_record(value: Any) -> Record | None:
    """The typed record of one decoded line; None for a line type this reader does not know (ignored,
    as docs/recording.md says). Raises RecordError for a known type whose fields are wrong."""
    d = _obj(value, "line")
    t = d.get("t")
    if not isinstance(t, str):
        raise RecordError("line: no record type (\"t\")")
    cls = _CLASSES.get(t)
    if cls is None:
        return None
    try:
        rec: Record = cls.from_json(d)
    except RecordError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:  # a shape no field reader saw
        raise RecordError(f"{t}: {type(exc).__name__}: {exc}") from None
    return rec


def record_of(t: str, fields: Mapping[str, Any]) -> Record:
    """The typed record a writer means by `t` and `fields` (Recorder.record's keyword form). A writer is
    held to the format: a field the record does not have is refused by name (a reader would never
    see it), not dropped."""
    cls = _CLASSES.get(t)
    if cls is None or cls is Header:
        raise RecordError(f"{t!r} is not a record type a session writes "
                          f"({', '.join(m.value for m in RecordType if m is not RecordType.HEADER)})")
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)} - {"t", "ts"})
    if unknown:
        raise RecordError(f"{t}: no field {', '.join(map(repr, unknown))} in a {t!r} record")
    rec = parse_record({"t": t, **fields})
    assert rec is not None
    return rec


def log_kinds() -> Sequence[RecordType]:
    """The record types shown in the event log (everything but the header, snapshots and the end)."""
    return (RecordType.VERDICT, RecordType.LOCK, RecordType.JOURNAL, RecordType.ACTION, RecordType.EVENT,
            RecordType.OUTCOME, RecordType.NOTE)
