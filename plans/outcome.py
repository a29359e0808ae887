"""What an apply tells while it runs (`EngineEvent`s) and what it returns (`Outcome`, with one
`InstanceOutcome` per instance restarted)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Emit", "EngineEvent", "EventKind", "InstanceOutcome", "Outcome", "Stage"]

Stage = Literal["refused", "preflight", "write", "restart", "verify", "done", "dry-run", "stopped"]
EventKind = Literal[
    "preflight",
    "write",
    "restart",
    "output",
    "instance-done",
    "verify",
    "done",
    "error",
    "paused",
    "resumed",
    "stopping",
    "journal",
    "diagnostics",
    "rollback",
]
Emit = Callable[[EventKind, str | None, str], None]  # (kind, host, text): tell the caller


@dataclass(frozen=True)
class EngineEvent:
    """Something an apply did or saw, as it happens (`host` None: the apply as a whole)."""

    kind: EventKind
    host: str | None
    text: str
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True)
class InstanceOutcome:
    """How one instance's restart went: update.sh's exit and output, and whether it then ran as configured."""

    host: str
    ok: bool
    exit_status: int | None
    output: str  # the tail of update.sh's stdout+stderr
    update_ms: float
    verify_ms: float
    reason: str = ""
    diagnostics: str = ""  # the service's own error: its log tail, its health answer

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "exit_status": self.exit_status,
            "output": self.output,
            "update_ms": round(self.update_ms, 1),
            "verify_ms": round(self.verify_ms, 1),
            "reason": self.reason,
            "diagnostics": self.diagnostics,
        }


@dataclass(frozen=True)
class Outcome:
    """How an apply ended (`stage`: where it stopped), with the automatic rollback's outcome when one ran."""

    ok: bool
    stage: Stage
    reason: str
    instances: tuple[InstanceOutcome, ...] = ()
    started: float = 0.0
    finished: float = 0.0
    rolled_back: Outcome | None = None
    changed: tuple[str, ...] = ()  # the hosts restarted with the new values
    journal_errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stage": self.stage,
            "reason": self.reason,
            "instances": [i.to_json() for i in self.instances],
            "started": self.started,
            "finished": self.finished,
            "rolled_back": self.rolled_back.to_json() if self.rolled_back else None,
            "changed": list(self.changed),
            "journal_errors": list(self.journal_errors),
        }
