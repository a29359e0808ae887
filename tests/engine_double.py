"""The engine test double for the TUI tests: follows the contract in plans/engine.py, with its real
data types (Preview, RestartTarget, EngineEvent, Outcome, LockInfo). Kept apart from test_tui_support,
which watch-mode tests import in a process that must never load plans.engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plans.engine import EngineEvent, Outcome, Preview, RestartTarget
from plans.gates import GateResult
from plans.lock import LockError, LockInfo
from plans.plan import default_plan
from probes.snapshot import FleetSnapshot
from tests import snapshots_factory as f
from tests.test_tui_support import SERVICES, T0

__all__ = ["EngineEvent", "LockError", "LockInfo", "Outcome", "Preview", "RestartTarget"]


@dataclass
class FakeEngine:
    """Follows the Engine contract; records every call; outcomes and gates are set by the test."""

    snaps: list[FleetSnapshot]
    env: str = "staging"
    protected: bool = False
    gates_closed: bool = False
    fail_apply: bool = False
    lock_holder: str | None = None  # someone else holds the lock
    secret_output: str = ""
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    held: bool = False

    async def snapshot(self) -> FleetSnapshot:
        return self.snaps[0]

    def services_in_order(self) -> list[str]:
        return list(SERVICES)

    async def acquire_lock(self, step_id: str) -> LockInfo:
        self.calls.append(("acquire_lock", step_id))
        if self.lock_holder:
            raise LockError(f"the fleet lock is held by {self.lock_holder} on bastion (pid 42), step pg-3, for 60s")
        self.held = True
        return LockInfo("tester", "here", 1, step_id, T0, "tok-1")

    async def release_lock(self) -> None:
        self.calls.append(("release_lock",))
        self.held = False

    async def preview(self, step_id: str, service: str | None = None, *, direction: str = "advance") -> Preview:
        self.calls.append(("preview", step_id, service, direction))
        assert self.held, "preview without the lock"
        plan = default_plan()
        step = plan.step(step_id)
        hosts = f.INSTANCES.get(service or "", (f.DB_HOST,))
        if direction == "rollback":
            lines = tuple(f"/voiceai/{self.env}/{service or 'database'}/{c.var}: ({c.value} → "
                          f"{'unset' if c.rollback is None else c.rollback})" for c in step.changes)
        else:
            lines = tuple(f"/voiceai/{self.env}/{service or 'database'}/{c.var}: (unset → {c.value})"
                          for c in step.changes)
        gates = tuple(
            GateResult(g, "closed" if self.gates_closed else "open",
                       "voice (staging-voice-02) still connects to PgBouncer in plaintext — flip voice first"
                       if self.gates_closed else "PgBouncer offers verified TLS to clients", service)
            for g in step.gates_for_target(service))
        return Preview(env=self.env, protected=self.protected, step=step_id, service=service, direction=direction,
                       title=step.title, changes=(), change_lines=lines,
                       restarts=tuple(RestartTarget(h, f"/opt/services/{service or 'database'}/update.sh "
                                                       "--restart-only --yes",
                                                    "drain.sh" if service == "voice" else "") for h in hosts),
                       gates=gates, blockers=(), snapshot_at=self.snaps[0].taken_at, state="pending")

    async def apply(self, preview: Preview, *, reason: str, force: bool = False, dry_run: bool = False,
                    on_event: Callable[[EngineEvent], None] | None = None) -> Outcome:
        self.calls.append(("apply", preview.step, preview.service, preview.direction, reason))
        assert self.held, "apply without the lock"
        emit = on_event or (lambda e: None)
        emit(EngineEvent("write", None, preview.change_lines[0] if preview.change_lines else "(nothing)", T0 + 10))
        for n, r in enumerate(preview.restarts):
            emit(EngineEvent("restart", r.host, r.command, T0 + 11 + n))
            emit(EngineEvent("output", r.host, f"restarting {r.host}… {self.secret_output}".strip(), T0 + 11 + n))
            if self.fail_apply and n == len(preview.restarts) - 1:
                emit(EngineEvent("error", r.host, "health check failed after restart", T0 + 12 + n))
                return Outcome(False, "verify", f"{r.host} unhealthy after restart; the roll stopped")
            emit(EngineEvent("instance-done", r.host, "healthy, connects over TLS", T0 + 12 + n))
        emit(EngineEvent("done", None, "verified", T0 + 20))
        return Outcome(True, "verified", "every instance connects over TLS")
