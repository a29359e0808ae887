"""The engine: preview, apply, verify and roll back one step for one service, one instance at a time.

A short loop in the alembic manner: the step holds its forward and backward halves; a preview
describes exactly what apply will do (and apply refuses if the fleet changed since); apply writes
the config store, then runs `update.sh --restart-only` on each instance in turn, waiting for that
instance to be running as configured before the next; then verifies the step until its deadline.
Everything is journaled. The engine holds no position of its own: it reads it from the fleet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from plans.gates import GATES, GateResult, env_order_gate, evaluate, rollback_blockers
from plans.journal import Journal
from plans.lock import FleetLock, LockError, LockInfo
from plans.plan import Plan, Step
from plans.position import Position, derive_position
from plans.store import Change, ConfigStore, StoreError
from probes.collect import Collector
from probes.inventory import Environment, Host
from probes.snapshot import FleetSnapshot

LIVE_STATES = ("live", "verified")


class EngineError(Exception):
    """The request cannot be previewed or applied; the message says why and what to do."""


@dataclass(frozen=True)
class RestartTarget:
    host: str
    command: str
    pre_restart: str = ""


@dataclass(frozen=True)
class Preview:
    env: str
    protected: bool
    step: str
    service: str | None  # the app service, or the database service for a database step
    direction: str  # "advance" | "rollback"
    title: str
    changes: tuple[Change, ...]
    change_lines: tuple[str, ...]
    restarts: tuple[RestartTarget, ...]
    gates: tuple[GateResult, ...]
    blockers: tuple[str, ...]
    snapshot_at: float
    state: str  # the position of the target when previewed

    @property
    def open(self) -> bool:
        return all(g.open for g in self.gates) and not self.blockers

    @property
    def closed_reasons(self) -> tuple[str, ...]:
        return tuple(f"{g.gate}: {g.reason}" for g in self.gates if not g.open) + self.blockers

    def describe(self) -> str:
        lines = [f"{self.direction} {self.step} ({self.title})" + (f" for {self.service}" if self.service else "")
                 + f" in {self.env}" + (" [PROTECTED]" if self.protected else "")]
        lines += [f"  change  {c}" for c in self.change_lines] or ["  change  (none: already configured)"]
        for i, r in enumerate(self.restarts, 1):
            lines.append(f"  restart {i}. {r.host}: {r.command}" + (f"  (first: {r.pre_restart})" if r.pre_restart
                                                                    else ""))
        if not self.restarts:
            lines.append("  restart (none: every instance already runs as configured)")
        for g in self.gates:
            lines.append(f"  gate    [{g.status:>7}] {g.gate}: {g.reason}")
        for b in self.blockers:
            lines.append(f"  refuse  {b}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env, "protected": self.protected, "step": self.step, "service": self.service,
            "direction": self.direction, "title": self.title, "changes": list(self.change_lines),
            "restarts": [{"host": r.host, "command": r.command, "pre_restart": r.pre_restart}
                         for r in self.restarts],
            "gates": [g.to_json() for g in self.gates], "blockers": list(self.blockers), "open": self.open,
            "state": self.state, "snapshot_at": self.snapshot_at,
        }


@dataclass(frozen=True)
class EngineEvent:
    kind: str  # "write" | "restart" | "output" | "instance-done" | "verify" | "done" | "error"
    host: str | None
    text: str
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True)
class InstanceOutcome:
    host: str
    ok: bool
    exit_status: int | None
    output: str  # the tail of update.sh's stdout+stderr
    update_ms: float
    verify_ms: float
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "exit_status": self.exit_status, "output": self.output,
                "update_ms": round(self.update_ms, 1), "verify_ms": round(self.verify_ms, 1),
                "reason": self.reason}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    stage: str  # "refused" | "write" | "restart" | "verify" | "done" | "dry-run"
    reason: str
    instances: tuple[InstanceOutcome, ...] = ()
    started: float = 0.0
    finished: float = 0.0
    rolled_back: Outcome | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "stage": self.stage, "reason": self.reason,
                "instances": [i.to_json() for i in self.instances], "started": self.started,
                "finished": self.finished, "rolled_back": self.rolled_back.to_json() if self.rolled_back else None}


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


PREVIOUS_ENV_TTL = 30.0  # seconds a snapshot of the environment before this one is reused by previews


class Engine:
    def __init__(self, env: Environment, plan: Plan, collector: Collector, *, store: ConfigStore | None = None,
                 journal: Journal | None = None, lock: FleetLock | None = None,
                 poll_interval: float = 0.25, previous_env: Environment | None = None) -> None:
        """`previous_env`: the environment `env.after` names (from the same inventory), whose
        position the cross-environment gate reads; None with `env.after` set leaves that gate unknown."""
        from plans.store import make_store

        self.env = env
        self.plan = plan
        self.collector = collector
        self.store = store or make_store(env, collector.aws, collector.pool)
        self.journal = journal or Journal(env, collector.pool)
        self.lock = lock or FleetLock(collector.aws, env.namespace)
        self.poll_interval = poll_interval
        self.previous_env = previous_env
        self._last: FleetSnapshot | None = None
        self._previous: tuple[float, Position | None] | None = None

    # -------------------------------------------------------------------------- reading
    async def snapshot(self) -> FleetSnapshot:
        self._last = await self.collector.snapshot()
        return self._last

    def services_in_order(self) -> list[str]:
        return self.env.services_in_order([*self.plan.services, "others"])

    def position(self, snap: FleetSnapshot) -> Position:
        return derive_position(self.plan, snap, self.services_in_order())

    async def previous_position(self) -> Position | None:
        """Where the rollout stands in the environment before this one (`after`), read from that
        fleet (a snapshot of its own, reused for PREVIOUS_ENV_TTL); None when it cannot be read."""
        prev = self.previous_env
        if prev is None or not self.env.after or prev.name != self.env.after:
            return None
        now = time.monotonic()
        if self._previous is not None and now - self._previous[0] < PREVIOUS_ENV_TTL:
            return self._previous[1]
        collector = Collector(prev)
        try:
            snap = await collector.snapshot()
            pos: Position | None = derive_position(self.plan, snap, prev.services_in_order(
                [*self.plan.services, "others"]))
        except Exception:
            pos = None
        finally:
            await collector.aclose()
        self._previous = (now, pos)
        return pos

    # -------------------------------------------------------------------------- the lock
    async def acquire_lock(self, step_id: str) -> LockInfo:
        info = await self.lock.acquire(step_id)
        await self.journal.write("lock", step=step_id)
        return info

    async def release_lock(self) -> None:
        if self.lock.held is not None:
            await self.lock.release()
            await self.journal.write("unlock")

    async def break_lock(self, reason: str) -> LockInfo | None:
        if not reason.strip():
            raise EngineError("breaking the fleet lock needs a reason (--reason)")
        old = await self.lock.break_lock()
        await self.journal.write("lock-broken", reason=reason,
                                 holder=old.describe() if old else None)
        return old

    # -------------------------------------------------------------------------- preview
    def _target_service(self, step: Step, service: str | None) -> str:
        if step.kind == "certs":
            raise EngineError(f"{step.id} is done with `{step.command or 'cockpit certs push'}`, not advance")
        if step.per_service:
            if not service:
                raise EngineError(f"{step.id} is applied one service at a time: name one with --service "
                                  f"({', '.join(self.plan.targets(step, self.services_in_order()))})")
            if service not in self.plan.targets(step, self.services_in_order()):
                raise EngineError(f"{step.id} does not apply to service {service!r}")
            return service
        if service and service != self.plan.database_service:
            raise EngineError(f"{step.id} is a {step.scope} step; it applies to {self.plan.database_service} only")
        return self.plan.database_service

    def _hosts(self, service: str) -> tuple[Host, ...]:
        hosts = self.env.hosts_for(service)
        if not hosts:
            raise EngineError(f"the inventory has no host for service {service!r}")
        return hosts

    async def preview(self, step_id: str, service: str | None = None, *, direction: str = "advance",
                      snapshot: FleetSnapshot | None = None, env_order_override: str | None = None) -> Preview:
        """What advancing (or rolling back) `step_id` for `service` would do, with its gates.

        `env_order_override`: a person's reason to advance before the environment this one comes
        after (`after` in the inventory) has the step verified; it is quoted in the gate's reason."""
        try:
            step = self.plan.step(step_id)
        except KeyError:
            raise EngineError(f"no step {step_id!r} in the plan ({', '.join(self.plan.step_ids)})") from None
        if direction not in ("advance", "rollback"):
            raise EngineError(f"direction must be advance or rollback, not {direction!r}")
        svc = self._target_service(step, service)
        snap = snapshot or await self.snapshot()
        now = time.time()
        changes: list[Change] = []
        for c in step.changes:
            try:
                old = await self.store.read(svc, c.var)
            except (StoreError, Exception) as exc:
                raise EngineError(f"cannot read {c.var} for {svc} from the config store: {exc}") from None
            new = c.value if direction == "advance" else c.rollback
            if old != new:
                changes.append(Change(svc, c.var, old, new))
        pos = self.position(snap)
        target = pos.target(step.id, service if step.per_service else self.plan.database_service) \
            if step.per_service else _fleet_target(pos, step.id)
        hosts = self._hosts(svc)
        if changes:
            restart_hosts = list(hosts)
        elif direction == "advance":
            # already configured: restart only the instances not running as configured (a rerun converges)
            restart_hosts = [h for h in hosts if _state_of(target, h.name) not in LIVE_STATES]
        else:
            restart_hosts = [h for h in hosts if target.state not in ("pending",)]
        pre = self.env.service(svc).pre_restart
        restarts = tuple(RestartTarget(h.name, self.env.update_command(h),
                                       pre.replace("{root}", h.root.rstrip("/")).replace("{service}", svc)
                                       if pre else "") for h in restart_hosts)
        gates: list[GateResult] = []
        blockers: list[str] = []
        if direction == "advance":
            for g in step.gates_for_target(service if step.per_service else None):
                spec = GATES.get(g)
                gates.append(evaluate(g, snap, service=svc if (spec and spec.per_service) else None, now=now))
            if self.env.after:
                gates.append(env_order_gate(step, self.env, await self.previous_position(),
                                            service=service if step.per_service else None,
                                            override=env_order_override))
        else:
            blockers = rollback_blockers(self.plan, step, service if step.per_service else None, snap)
        return Preview(
            env=self.env.name, protected=self.env.protected, step=step.id,
            service=svc, direction=direction, title=step.title, changes=tuple(changes),
            change_lines=tuple(c.describe(self.env) for c in changes), restarts=restarts, gates=tuple(gates),
            blockers=tuple(blockers), snapshot_at=snap.taken_at, state=target.state)

    # -------------------------------------------------------------------------- apply
    async def apply(self, preview: Preview, *, reason: str, force: bool = False, dry_run: bool = False,
                    on_event: Callable[[EngineEvent], None] | None = None) -> Outcome:
        started = time.time()

        def emit(kind: str, host: str | None, text: str) -> None:
            if on_event is not None:
                on_event(EngineEvent(kind, host, text))

        def done(ok: bool, stage: str, why: str, inst: list[InstanceOutcome]) -> Outcome:
            emit("done" if ok else "error", None, why)
            return Outcome(ok, stage, why, tuple(inst), started, time.time())

        if dry_run:
            emit("done", None, "dry run: nothing written, nothing restarted")
            return Outcome(True, "dry-run", preview.describe(), (), started, time.time())
        if not reason.strip():
            return done(False, "refused", "a reason is required (it goes in the journal)", [])
        if self.lock.held is None:
            return done(False, "refused", "the fleet lock is not held: take it before preview (acquire_lock)", [])
        if not preview.open and not force:
            return done(False, "refused", "refused: " + "; ".join(preview.closed_reasons), [])
        if not preview.open:
            await self.journal.write("override", step=preview.step, service=preview.service, reason=reason,
                                     overridden=list(preview.closed_reasons))
        # compare-and-swap: the store must still hold what the preview showed
        for c in preview.changes:
            try:
                now_value = await self.store.read(c.service, c.var)
            except Exception as exc:
                return done(False, "refused", f"cannot re-read {c.var}: {exc}", [])
            if now_value != c.old:
                return done(False, "refused", f"the fleet changed since the preview: {c.var} for {c.service} is now "
                                              f"{now_value or 'unset'}, was {c.old or 'unset'} — preview again", [])
        await self.journal.write("apply-start", step=preview.step, service=preview.service,
                                 direction=preview.direction, reason=reason, preview=preview.to_json(), force=force)
        for c in preview.changes:
            try:
                receipt = await self.store.write(c)
            except StoreError as exc:
                self.collector.invalidate()
                await self.journal.write("apply-done", step=preview.step, service=preview.service, ok=False,
                                         stage="write", reason=str(exc))
                return done(False, "write", f"{exc}", [])
            emit("write", None, f"{c.describe(self.env)}  [{receipt}]")
        self.collector.invalidate()  # the next snapshot reads the store as it is now
        step = self.plan.step(preview.step)
        results: list[InstanceOutcome] = []
        for r in preview.restarts:
            res = await self._restart_one(step, preview, r, emit)
            results.append(res)
            await self.journal.write("instance", step=preview.step, service=preview.service, **res.to_json())
            if not res.ok:
                why = f"{r.host}: {res.reason} — the roll stopped here; roll back {preview.step} to restore " \
                      f"the instances already restarted"
                await self.journal.write("apply-done", step=preview.step, service=preview.service, ok=False,
                                         stage="restart", reason=why)
                return done(False, "restart", why, results)
        ok, why = await self._verify(step, preview, emit)
        await self.journal.write("apply-done", step=preview.step, service=preview.service, ok=ok,
                                 stage="done" if ok else "verify", reason=why, direction=preview.direction)
        outcome = done(ok, "done" if ok else "verify", why, results)
        if not ok and step.auto_rollback and preview.direction == "advance":
            back = await self.preview(step.id, preview.service if step.per_service else None, direction="rollback")
            rolled = await self.apply(back, reason=f"automatic rollback: {why}", force=True, on_event=on_event)
            outcome = replace(outcome, rolled_back=rolled)
        return outcome

    async def _restart_one(self, step: Step, preview: Preview, r: RestartTarget,
                           emit: Callable[[str, str | None, str], None]) -> InstanceOutcome:
        pool = self.collector.pool
        if r.pre_restart:
            emit("restart", r.host, f"pre-restart: {r.pre_restart}")
            pre = await pool.run(r.host, r.pre_restart)
            if not pre.ok:
                return InstanceOutcome(r.host, False, pre.exit_status, _tail(pre.stdout + pre.stderr), 0.0, 0.0,
                                       f"pre-restart command failed: {pre.error or pre.stderr.strip()[-300:]}")
        emit("restart", r.host, r.command)
        t0 = time.monotonic()
        res = await pool.run(r.host, r.command, timeout=self.env.ssh.command_timeout)
        update_ms = (time.monotonic() - t0) * 1000
        self.collector.invalidate()  # what restarted is measured anew: no reused handshake or listener
        output = _tail(res.stdout + ("\n" + res.stderr if res.stderr else ""))
        if output:
            emit("output", r.host, output)
        if res.error is not None:
            return InstanceOutcome(r.host, False, None, output, update_ms, 0.0, f"could not run update.sh: {res.error}")
        if res.exit_status != 0:
            return InstanceOutcome(r.host, False, res.exit_status, output, update_ms, 0.0,
                                   f"update.sh exited {res.exit_status}: {res.stderr.strip()[-300:]}")
        t1 = time.monotonic()
        ok, why = await self._wait_instance(step, preview, r.host)
        verify_ms = (time.monotonic() - t1) * 1000
        emit("instance-done", r.host, why)
        return InstanceOutcome(r.host, ok, res.exit_status, output, update_ms, verify_ms, "" if ok else why)

    def _instance_state(self, step: Step, preview: Preview, host: str, snap: FleetSnapshot) -> tuple[bool, str]:
        pos = self.position(snap)
        if step.per_service:
            t = pos.target(step.id, preview.service)
            inst = t.instance(host)
            state, detail = (inst.state, inst.detail) if inst else (t.state, t.detail)
            healthy = next((i.healthy for i in snap.instances if i.host == host), None)
            if healthy is False:
                return False, f"{host} is not healthy"
        else:
            t = _fleet_target(pos, step.id)
            state, detail = t.state, t.detail
        want_pending = preview.direction == "rollback"
        if want_pending:
            return state in ("pending",), f"{host}: {state}: {detail}"
        return state in LIVE_STATES, f"{host}: {state}: {detail}"

    async def _wait_instance(self, step: Step, preview: Preview, host: str) -> tuple[bool, str]:
        deadline = time.monotonic() + min(step.deadline, 120.0)
        why = "not checked"
        while True:
            snap = await self.snapshot()
            ok, why = self._instance_state(step, preview, host, snap)
            if ok or time.monotonic() > deadline:
                return ok, why
            await asyncio.sleep(self.poll_interval)

    async def _verify(self, step: Step, preview: Preview,
                      emit: Callable[[str, str | None, str], None]) -> tuple[bool, str]:
        deadline = time.monotonic() + step.deadline
        svc = preview.service if step.per_service else None
        while True:
            snap = self._last if self._last is not None else await self.snapshot()
            if preview.direction == "advance":
                g = evaluate(step.verify, snap, service=svc if GATES[step.verify].per_service else None,
                             now=time.time())
                ok, why = g.open, g.reason
            else:
                pos = self.position(snap)
                t = pos.target(step.id, svc) if step.per_service else _fleet_target(pos, step.id)
                ok, why = t.state == "pending", f"{t.state}: {t.detail}"
            emit("verify", None, ("verified: " if ok else "not yet: ") + why)
            if ok:
                return True, why
            if time.monotonic() > deadline:
                return False, f"not verified within {step.deadline:.0f}s: {why}"
            await asyncio.sleep(self.poll_interval)
            self._last = None


def _state_of(target: Any, host: str) -> str:
    """An instance's state in a target position (the target's own when it has no per-instance detail)."""
    inst = target.instance(host)
    return str(inst.state if inst is not None else target.state)


def _fleet_target(pos: Position, step_id: str) -> Any:
    sp = pos.step_position(step_id)
    if sp is None or not sp.targets:
        raise EngineError(f"no position for step {step_id}")
    return sp.targets[0]


__all__ = ["Engine", "EngineError", "EngineEvent", "InstanceOutcome", "LockError", "Outcome", "Preview",
           "RestartTarget"]
