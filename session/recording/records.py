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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias, cast

from session.recording.format import (
    EVENT_KINDS,
    FORMAT,
    FORMAT_VERSION,
    ActionKind,
    DiffOpKind,
    Direction,
    EventKind,
    Json,
    Mode,
    NoteLevel,
    RecordError,
    RecordType,
    as_bool,
    as_enum,
    as_int,
    as_list,
    as_literal,
    as_num,
    as_object,
    as_opt_int,
    as_opt_str,
    as_opt_time,
    as_str,
    as_strs,
    as_time,
    drop_none,
    required,
    text_field,
)
from session.recording.parts import JournalEntry, LockHolder, OutcomeSummary, PreviewSummary, VerdictChange

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
        return {
            **self._head(),
            "format": FORMAT,
            "version": self.version,
            "env": self.env,
            "mode": self.mode,
            "protected": self.protected,
            "plan": self.plan,
            "services": list(self.services),
            "who": self.who,
            "where": self.where,
            "pid": self.pid,
            "full_every": self.full_every,
            **self.extra,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Header:
        w = "header"
        known = {
            "t",
            "ts",
            "format",
            "version",
            "env",
            "mode",
            "protected",
            "plan",
            "services",
            "who",
            "where",
            "pid",
            "full_every",
        }
        full_every = as_num(d.get("full_every", 300.0), f"{w}.full_every")
        if full_every <= 0:
            raise RecordError(f"{w}.full_every: must be positive ({full_every!r})")
        return cls(
            ts=as_time(required(d, "ts", w), f"{w}.ts"),
            env=text_field(d, "env", w, "?"),
            mode=cast(Mode, as_literal(Mode, d.get("mode", "watch"), f"{w}.mode")),
            protected=as_bool(d.get("protected", False), f"{w}.protected"),
            plan=text_field(d, "plan", w),
            services=as_strs(d.get("services", ()), f"{w}.services"),
            who=text_field(d, "who", w, "?"),
            where=text_field(d, "where", w, "?"),
            pid=as_opt_int(d.get("pid"), f"{w}.pid"),
            full_every=full_every,
            version=as_int(required(d, "version", w), f"{w}.version"),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame(_Record):
    """A full snapshot, in keyed form (session.recording.keyed.keyed)."""

    TYPE: ClassVar[RecordType] = RecordType.FRAME
    seq: int
    snapshot: Mapping[str, Json]

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "seq": self.seq, "snapshot": self.snapshot}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Frame:
        return cls(
            ts=as_time(required(d, "ts", "frame"), "frame.ts"),
            seq=as_int(required(d, "seq", "frame"), "frame.seq"),
            snapshot=dict(as_object(required(d, "snapshot", "frame"), "frame.snapshot")),
        )


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
        d = as_object(value, where)
        op = cast(DiffOpKind, as_literal(DiffOpKind, required(d, "op", where), f"{where}.op"))
        path = as_str(required(d, "path", where), f"{where}.path")
        if path and not path.startswith("/"):
            raise RecordError(f"{where}.path: not a JSON Pointer ({path!r})")
        if op == "order":
            return cls(op, path, keys=as_strs(required(d, "keys", where), f"{where}.keys"))
        if op in ("add", "replace"):
            return cls(op, path, required(d, "value", where))
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
        return cls(
            ts=as_time(required(d, "ts", "diff"), "diff.ts"),
            seq=as_int(required(d, "seq", "diff"), "diff.seq"),
            ops=tuple(
                DiffOp.from_json(o, f"diff.ops[{i}]")
                for i, o in enumerate(as_list(required(d, "ops", "diff"), "diff.ops"))
            ),
        )


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
        return cls(
            ts=as_time(required(d, "ts", "verdict"), "verdict.ts"),
            seq=as_opt_int(d.get("seq"), "verdict.seq"),
            changes=tuple(
                VerdictChange.from_json(c, f"verdict.changes[{i}]")
                for i, c in enumerate(as_list(d.get("changes", ()), "verdict.changes"))
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock(_Record):
    """The fleet lock changed hands, or could not be read (`known` false, `error` why)."""

    TYPE: ClassVar[RecordType] = RecordType.LOCK
    holder: LockHolder | None = None
    known: bool = True
    error: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {
            **self._head(),
            "holder": self.holder.to_json() if self.holder else None,
            "known": self.known,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Lock:
        h = d.get("holder")
        return cls(
            ts=as_time(required(d, "ts", "lock"), "lock.ts"),
            holder=None if not h else LockHolder.from_json(h, "lock.holder"),
            known=as_bool(d.get("known", True), "lock.known"),
            error=as_opt_str(d.get("error"), "lock.error"),
        )


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
        return cls(
            ts=as_time(required(d, "ts", "journal"), "journal.ts"),
            entry=JournalEntry.from_json(required(d, "entry", "journal"), "journal.entry"),
            backlog=as_bool(d.get("backlog", False), "journal.backlog"),
        )


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
        return {
            **self._head(),
            "kind": self.kind.value,
            "step": self.step,
            "service": self.service,
            "direction": self.direction.value,
            "who": self.who,
            **drop_none(
                {
                    "preview": self.preview.to_json() if self.preview else None,
                    "reason": self.reason,
                    "error": self.error,
                }
            ),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Action:
        w = "action"
        kind = as_enum(ActionKind, required(d, "kind", w), f"{w}.kind")
        p = d.get("preview")
        if kind is ActionKind.PREVIEW and p is None:
            raise RecordError(f"{w}.preview: a preview action without its preview")
        return cls(
            ts=as_time(required(d, "ts", w), f"{w}.ts"),
            kind=kind,
            step=text_field(d, "step", w),
            service=as_opt_str(d.get("service"), f"{w}.service"),
            direction=as_enum(Direction, d.get("direction", "advance"), f"{w}.direction"),
            who=text_field(d, "who", w),
            preview=None if p is None else PreviewSummary.from_json(p, f"{w}.preview"),
            reason=as_opt_str(d.get("reason"), f"{w}.reason"),
            error=as_opt_str(d.get("error"), f"{w}.error"),
        )


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
        raw = as_str(required(d, "kind", "event"), "event.kind")
        kind: EventKind | str = EventKind(raw) if raw in EVENT_KINDS else raw
        return cls(
            ts=as_time(required(d, "ts", "event"), "event.ts"),
            kind=kind,
            host=as_opt_str(d.get("host"), "event.host"),
            text=text_field(d, "text", "event"),
            at=as_opt_time(d.get("at"), "event.at"),
        )


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
        return {
            **self._head(),
            "step": self.step,
            "service": self.service,
            "direction": self.direction.value,
            "reason": self.reason,
            "who": self.who,
            "outcome": self.outcome.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Outcome:
        w = "outcome"
        return cls(
            ts=as_time(required(d, "ts", w), f"{w}.ts"),
            outcome=OutcomeSummary.from_json(required(d, "outcome", w), f"{w}.outcome"),
            step=text_field(d, "step", w),
            service=as_opt_str(d.get("service"), f"{w}.service"),
            direction=as_enum(Direction, d.get("direction", "advance"), f"{w}.direction"),
            reason=text_field(d, "reason", w),
            who=text_field(d, "who", w),
        )


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
        return cls(
            ts=as_time(required(d, "ts", "note"), "note.ts"),
            text=text_field(d, "text", "note"),
            level=cast(NoteLevel, as_literal(NoteLevel, d.get("level", "warn"), "note.level")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class End(_Record):
    """The last line of a cleanly closed session."""

    TYPE: ClassVar[RecordType] = RecordType.END
    snapshots: int = 0

    def to_json(self) -> dict[str, Json]:
        return {**self._head(), "snapshots": self.snapshots}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> End:
        return cls(
            ts=as_time(required(d, "ts", "end"), "end.ts"), snapshots=as_int(d.get("snapshots", 0), "end.snapshots")
        )


Record: TypeAlias = Header | Frame | Diff | Verdicts | Lock | Journal | Action | Event | Outcome | Note | End
Snapshot: TypeAlias = Frame | Diff

_CLASSES: Final[Mapping[str, Any]] = {
    c.TYPE.value: c for c in (Header, Frame, Diff, Verdicts, Lock, Journal, Action, Event, Outcome, Note, End)
}


def parse_record(value: Any) -> Record | None:
    """The typed record of one decoded line; None for a line type this reader does not know (ignored,
    as docs/recording.md says). Raises RecordError for a known type whose fields are wrong."""
    d = as_object(value, "line")
    t = d.get("t")
    if not isinstance(t, str):
        raise RecordError('line: no record type ("t")')
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
        raise RecordError(
            f"{t!r} is not a record type a session writes "
            f"({', '.join(m.value for m in RecordType if m is not RecordType.HEADER)})"
        )
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)} - {"t", "ts"})
    if unknown:
        raise RecordError(f"{t}: no field {', '.join(map(repr, unknown))} in a {t!r} record")
    rec = parse_record({"t": t, **fields})
    assert rec is not None
    return rec


def log_kinds() -> Sequence[RecordType]:
    """The record types shown in the event log (everything but the header, snapshots and the end)."""
    return (
        RecordType.VERDICT,
        RecordType.LOCK,
        RecordType.JOURNAL,
        RecordType.ACTION,
        RecordType.EVENT,
        RecordType.OUTCOME,
        RecordType.NOTE,
    )
