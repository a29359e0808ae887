"""The engine test double for the TUI tests: follows the contract in plans/engine.py, with its real
data types (Preview, RestartTarget, EngineEvent, Outcome, RollControl, Blocker, LockInfo) and its real
errors (EngineError, LockError). Kept apart from test_tui_support, which watch-mode tests import in a
process that must never load plans.engine.

What it does is set by the test: closed gates, blockers, a preview that raises, a refusal, a failed
preflight, a failing instance, an apply that crashes, a lock held elsewhere — and `paced`, which holds
each instance until the test lets it go (`go()`), so a test can pause and stop a roll half-way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plans.engine import RESTART, EngineError, EngineEvent, Outcome, Preview, RestartTarget, RollControl
from plans.gates import GateResult
from plans.hazards import Blocker
from plans.lock import LockError, LockInfo
from plans.plan import default_plan
from plans.store import Change
from probes.snapshot import FleetSnapshot
from tests import snapshots_factory as f
from tests.test_tui_support import SERVICES, T0

__all__ = [
    "Blocker",
    "EngineError",
    "EngineEvent",
    "LockError",
    "LockInfo",
    "Outcome",
    "Preview",
    "RestartTarget",
    "RollControl",
]

CONTAINERS = {"database": ("voiceai-postgres", "voiceai-pgbouncer", "voiceai-redis")}


@dataclass(frozen=True)
class BrokenPreview(Preview):
    """A preview whose JSON cannot be made: nothing in the drive cycle catches that, so its worker crashes."""

    def to_json(self) -> dict[str, Any]:
        raise RuntimeError("a preview that cannot be recorded")


@dataclass(frozen=True)
class BrokenOutcome(Outcome):
    """An outcome that cannot be recorded: the drive worker crashes after the roll, with its progress open."""

    def to_json(self) -> dict[str, Any]:
        raise RuntimeError("an outcome that cannot be recorded")


@dataclass
class FakeEngine:
    """Follows the Engine contract; records every call; outcomes and gates are set by the test."""

    snaps: list[FleetSnapshot]
    env: str = "staging"
    protected: bool = False
    gates_closed: bool = False
    fail_apply: bool = False
    lock_holder: str | None = None  # someone else holds the lock
    lock_error: str | None = None  # acquire_lock fails with an EngineError (e.g. the journal is not writable)
    preview_error: str | None = None  # preview raises EngineError with this text
    refuse: str | None = None  # apply returns Outcome(stage "refused") with this reason
    preflight_error: str | None = None  # apply returns Outcome(stage "preflight") with this reason
    crash_apply: bool = False  # apply raises a RuntimeError (a bug somewhere below the UI)
    broken_preview: bool = False  # the preview cannot be written down: the drive worker itself crashes
    broken_outcome: bool = False  # nor can the outcome, once the roll is over
    blockers: tuple[Blocker, ...] = ()  # a rollback preview's blockers
    extra_hosts: int = 0  # more instances for every service (a long per-host list)
    estimate_s: float | None = 20.0
    paced: bool = False  # each instance waits for `go()`
    secret_output: str = ""
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    held: bool = False
    controls: list[RollControl] = field(default_factory=list)
    _go: asyncio.Queue[None] | None = None

    async def snapshot(self) -> FleetSnapshot:
        return self.snaps[0]

    def services_in_order(self) -> list[str]:
        return list(SERVICES)

    def go(self, n: int = 1) -> None:
        """Let `n` paced instances run."""
        for _ in range(n):
            self._queue().put_nowait(None)

    def _queue(self) -> asyncio.Queue[None]:
        if self._go is None:
            self._go = asyncio.Queue()
        return self._go

    async def acquire_lock(self, step_id: str) -> LockInfo:
        self.calls.append(("acquire_lock", step_id))
        if self.lock_holder:
            raise LockError(f"the fleet lock is held by {self.lock_holder} on bastion (pid 42), step pg-3, for 60s")
        if self.lock_error:
            raise EngineError(self.lock_error)
        self.held = True
        return LockInfo("tester", "here", 1, step_id, T0, "tok-1")

    async def release_lock(self) -> None:
        self.calls.append(("release_lock",))
        self.held = False

    def _hosts(self, service: str | None) -> tuple[str, ...]:
        hosts = f.INSTANCES.get(service or "", (f.DB_HOST,))
        prefix = f"staging-{service or 'database'}"
        return hosts + tuple(f"{prefix}-{n:02d}" for n in range(len(hosts) + 1, len(hosts) + 1 + self.extra_hosts))

    def _restarts(self, service: str | None) -> tuple[RestartTarget, ...]:
        return tuple(
            RestartTarget(
                h,
                f"/opt/services/{service or 'database'}/update.sh --restart-only --yes",
                "drain.sh" if service == "voice" else "",
            )
            for h in self._hosts(service)
        )

    async def preview(self, step_id: str, service: str | None = None, *, direction: str = "advance") -> Preview:
        self.calls.append(("preview", step_id, service, direction))
        assert self.held, "preview without the lock"
        if self.preview_error:
            raise EngineError(self.preview_error)
        plan = default_plan()
        step = plan.step(step_id)
        svc = service or plan.database_service
        if direction == "rollback":
            changes = tuple(Change(svc, c.var, c.value, c.rollback) for c in step.changes)
            lines = tuple(
                f"/voiceai/{self.env}/{svc}/{c.var}: ({c.value} → {'unset' if c.rollback is None else c.rollback})"
                for c in step.changes
            )
        else:
            changes = tuple(Change(svc, c.var, None, c.value) for c in step.changes)
            lines = tuple(f"/voiceai/{self.env}/{svc}/{c.var}: (unset → {c.value})" for c in step.changes)
        gates = (
            ()
            if direction == "rollback"
            else tuple(
                GateResult(
                    g,
                    "closed" if self.gates_closed else "open",
                    "voice (staging-voice-02) still connects to PgBouncer in plaintext — flip voice first"
                    if self.gates_closed
                    else "PgBouncer offers verified TLS to clients",
                    service,
                )
                for g in step.gates_for_target(service)
            )
        )
        make = BrokenPreview if self.broken_preview else Preview
        return make(
            env=self.env,
            protected=self.protected,
            step=step_id,
            service=svc,
            direction="rollback" if direction == "rollback" else "advance",
            title=step.title,
            changes=changes,
            change_lines=lines,
            restarts=self._restarts(service),
            gates=gates,
            blockers=self.blockers if direction == "rollback" else (),
            snapshot_at=self.snaps[0].taken_at,
            state="pending",
            recreates=CONTAINERS.get(svc, (f"voiceai-{svc}",)),
            estimate_s=self.estimate_s,
        )

    async def preview_restart(self, service: str, hosts: Sequence[str] = ()) -> Preview:
        self.calls.append(("preview_restart", service, tuple(hosts)))
        assert self.held, "preview without the lock"
        if self.preview_error:
            raise EngineError(self.preview_error)
        restarts = tuple(
            r for r in self._restarts(None if service == "database" else service) if not hosts or r.host in hosts
        )
        return Preview(
            env=self.env,
            protected=self.protected,
            step=RESTART,
            service=service,
            direction="restart",
            title=f"restart {service} (no configuration change)",
            changes=(),
            change_lines=(),
            restarts=restarts,
            gates=(),
            blockers=(),
            snapshot_at=self.snaps[0].taken_at,
            state="restart",
            recreates=CONTAINERS.get(service, (f"voiceai-{service}",)),
            estimate_s=self.estimate_s,
        )

    async def apply(
        self,
        preview: Preview,
        *,
        reason: str,
        overrides: Sequence[str] = (),
        dry_run: bool = False,
        on_event: Callable[[EngineEvent], None] | None = None,
        control: RollControl | None = None,
    ) -> Outcome:
        self.calls.append(("apply", preview.step, preview.service, preview.direction, reason))
        assert self.held, "apply without the lock"
        control = control or RollControl()
        self.controls.append(control)
        emit = on_event or (lambda e: None)

        def say(kind: Any, host: str | None, text: str, at: float) -> None:
            emit(EngineEvent(kind, host, text, at))

        def done(ok: bool, stage: Any, why: str, changed: Sequence[str] = ()) -> Outcome:
            say("done" if ok else "error", None, why, T0 + 30)
            return Outcome(ok, stage, why, (), T0 + 10, T0 + 30, None, tuple(changed))

        if self.crash_apply:
            raise RuntimeError("the engine's apply crashed: 'NoneType' object has no attribute 'host'")
        if self.refuse:
            return done(False, "refused", self.refuse)
        if self.preflight_error:
            return done(False, "preflight", "preflight failed, nothing was written: " + self.preflight_error)
        say("preflight", None, f"preflight ok: {len(preview.restarts)} host(s) reachable", T0 + 10)
        if preview.change_lines:
            say("write", None, preview.change_lines[0], T0 + 10)
        changed: list[str] = []
        n_all = len(preview.restarts)

        at = [T0 + 11.0]  # the time of the engine's next checkpoint event

        def checkpoint_emit(kind: Any, host: str | None, text: str) -> None:
            say(kind, host, text, at[0])

        for n, r in enumerate(preview.restarts):
            at[0] = T0 + 11 + n
            if not await control.checkpoint(checkpoint_emit):
                why = f"stopped by the operator after {n} of {n_all} instance(s)" + (
                    f" ({', '.join(changed)} changed)" if changed else " (none restarted)"
                )
                say("stopping", None, why, T0 + 12 + n)
                return done(False, "stopped", why, changed)
            say("restart", r.host, r.command, T0 + 11 + n)
            if self.paced:
                await self._queue().get()
            say("output", r.host, f"restarting {r.host}… {self.secret_output}".strip(), T0 + 11 + n)
            changed.append(r.host)
            if self.fail_apply and n == n_all - 1:
                say("error", r.host, "health check failed after restart", T0 + 12 + n)
                return done(False, "verify", f"{r.host} unhealthy after restart; the roll stopped", changed)
            say("instance-done", r.host, "healthy, connects over TLS", T0 + 12 + n)
        if preview.direction == "restart":
            return done(True, "done", f"restarted {n_all} instance(s) of {preview.service}", changed)
        say("verify", None, "verified: every instance connects over TLS", T0 + 20)
        if self.broken_outcome:
            return BrokenOutcome(True, "done", "every instance connects over TLS", (), T0 + 10, T0 + 30)
        return done(True, "done", "every instance connects over TLS", changed)
