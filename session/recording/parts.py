"""The pieces inside a recording's records: the lock holder, verdict changes, the engine's preview and
outcome as recorded, fleet journal entries. Frozen dataclasses with `to_json` / `from_json`. No textual here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from plans.gates import GateStatus
from session.recording.format import (
    Direction,
    Json,
    RecordError,
    as_bool,
    as_enum,
    as_list,
    as_literal,
    as_num,
    as_object,
    as_opt_int,
    as_opt_str,
    as_opt_time,
    as_str,
    as_strs,
    required,
    text_field,
)


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
        return {
            "who": self.who,
            "where": self.where,
            "pid": self.pid,
            "step": self.step,
            "since": self.since,
            "token": self.token,
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "holder") -> LockHolder:
        d = as_object(value, where)
        return cls(
            who=text_field(d, "who", where, "?"),
            where=text_field(d, "where", where),
            step=text_field(d, "step", where),
            since=as_opt_time(d.get("since"), f"{where}.since"),
            pid=as_opt_int(d.get("pid"), f"{where}.pid"),
            token=text_field(d, "token", where),
        )


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
        d = as_object(value, where)
        return cls(
            what=as_str(required(d, "what", where), f"{where}.what"),
            before=as_opt_str(d.get("from"), f"{where}.from"),
            after=as_opt_str(d.get("to"), f"{where}.to"),
            text=text_field(d, "text", where),
        )

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
        d = as_object(value, where)
        return cls(
            host=as_str(required(d, "host", where), f"{where}.host"),
            command=text_field(d, "command", where),
            pre_restart=text_field(d, "pre_restart", where),
        )


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
        d = as_object(value, where)
        return cls(
            gate=as_str(required(d, "gate", where), f"{where}.gate"),
            status=cast(GateStatus, as_literal(GateStatus, required(d, "status", where), f"{where}.status")),
            reason=text_field(d, "reason", where),
            service=as_opt_str(d.get("service"), f"{where}.service"),
        )

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
        d = as_object(value, where)
        return cls(text=text_field(d, "text", where), id=text_field(d, "id", where), kind=text_field(d, "kind", where))


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

    _KNOWN: ClassVar[frozenset[str]] = frozenset(
        {
            "env",
            "protected",
            "step",
            "service",
            "direction",
            "title",
            "changes",
            "restarts",
            "gates",
            "blockers",
            "open",
            "state",
            "snapshot_at",
        }
    )

    def to_json(self) -> dict[str, Json]:
        return {
            "env": self.env,
            "protected": self.protected,
            "step": self.step,
            "service": self.service,
            "direction": self.direction.value,
            "title": self.title,
            "changes": list(self.changes),
            "restarts": [r.to_json() for r in self.restarts],
            "gates": [g.to_json() for g in self.gates],
            "blockers": [b.to_json() for b in self.blockers],
            "open": self.open,
            "state": self.state,
            "snapshot_at": self.snapshot_at,
            **self.extra,
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "preview") -> PreviewSummary:
        d = as_object(value, where)
        return cls(
            step=text_field(d, "step", where),
            service=as_opt_str(d.get("service"), f"{where}.service"),
            direction=as_enum(Direction, d.get("direction", "advance"), f"{where}.direction"),
            title=text_field(d, "title", where),
            env=text_field(d, "env", where),
            protected=as_bool(d.get("protected", False), f"{where}.protected"),
            changes=as_strs(d.get("changes", ()), f"{where}.changes"),
            restarts=tuple(
                Restart.from_json(r, f"{where}.restarts[{i}]")
                for i, r in enumerate(as_list(d.get("restarts", ()), f"{where}.restarts"))
            ),
            gates=tuple(
                Gate.from_json(g, f"{where}.gates[{i}]")
                for i, g in enumerate(as_list(d.get("gates", ()), f"{where}.gates"))
            ),
            blockers=tuple(
                Blocker.from_json(b, f"{where}.blockers[{i}]")
                for i, b in enumerate(as_list(d.get("blockers", ()), f"{where}.blockers"))
            ),
            open=as_bool(d.get("open", True), f"{where}.open"),
            state=text_field(d, "state", where),
            snapshot_at=as_opt_time(d.get("snapshot_at"), f"{where}.snapshot_at"),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )

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
        return {
            "host": self.host,
            "ok": self.ok,
            "exit_status": self.exit_status,
            "output": self.output,
            "update_ms": self.update_ms,
            "verify_ms": self.verify_ms,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> InstanceResult:
        d = as_object(value, where)
        return cls(
            host=text_field(d, "host", where, "?"),
            ok=as_bool(required(d, "ok", where), f"{where}.ok"),
            reason=text_field(d, "reason", where),
            exit_status=as_opt_int(d.get("exit_status"), f"{where}.exit_status"),
            output=text_field(d, "output", where),
            update_ms=as_num(d.get("update_ms", 0.0), f"{where}.update_ms"),
            verify_ms=as_num(d.get("verify_ms", 0.0), f"{where}.verify_ms"),
        )


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

    _KNOWN: ClassVar[frozenset[str]] = frozenset(
        {"ok", "stage", "reason", "instances", "started", "finished", "rolled_back"}
    )

    def to_json(self) -> dict[str, Json]:
        return {
            "ok": self.ok,
            "stage": self.stage,
            "reason": self.reason,
            "instances": [i.to_json() for i in self.instances],
            "started": self.started,
            "finished": self.finished,
            "rolled_back": self.rolled_back.to_json() if self.rolled_back else None,
            **self.extra,
        }

    @classmethod
    def from_json(cls, value: Any, where: str = "outcome", depth: int = 0) -> OutcomeSummary:
        d = as_object(value, where)
        rb = d.get("rolled_back")
        if rb is not None and depth > 4:
            raise RecordError(f"{where}.rolled_back: nested too deep")
        return cls(
            ok=as_bool(required(d, "ok", where), f"{where}.ok"),
            stage=text_field(d, "stage", where),
            reason=text_field(d, "reason", where),
            instances=tuple(
                InstanceResult.from_json(x, f"{where}.instances[{i}]")
                for i, x in enumerate(as_list(d.get("instances", ()), f"{where}.instances"))
            ),
            started=as_opt_time(d.get("started"), f"{where}.started"),
            finished=as_opt_time(d.get("finished"), f"{where}.finished"),
            rolled_back=None if rb is None else cls.from_json(rb, f"{where}.rolled_back", depth + 1),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )


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
        d = as_object(value, where)
        direction = d.get("direction")
        ok = d.get("ok")
        return cls(
            event=text_field(d, "event", where, "?"),
            who=text_field(d, "who", where, "?"),
            ts=as_opt_time(d.get("ts"), f"{where}.ts"),
            step=text_field(d, "step", where),
            service=as_opt_str(d.get("service"), f"{where}.service"),
            direction=None if direction is None else as_enum(Direction, direction, f"{where}.direction"),
            ok=None if ok is None else as_bool(ok, f"{where}.ok"),
            stage=text_field(d, "stage", where),
            reason=text_field(d, "reason", where),
            where=text_field(d, "where", where),
            raw=dict(d),
        )

    @property
    def refused(self) -> bool:
        """A refusal that reached the journal (a CLI `advance` the engine refused, or a refusal event)."""
        return self.event in ("refused", "apply-refused") or (self.ok is False and self.stage == "refused")
