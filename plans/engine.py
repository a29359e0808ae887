"""The engine: preview, apply, verify and roll back one step for one service (or restart one service),
one instance at a time.

A short loop in the alembic manner: the step holds its forward and backward halves; a preview describes
exactly what apply will do (and apply refuses if the fleet changed since). Apply first proves it can
finish (preflight: every restart target reachable with a verified host key, the config store writable,
the journals writable) — anything missing is a refusal and nothing is written. Then it records an
intent, writes the step's values all together, runs `update.sh --restart-only` on each instance in
turn (pausable, stoppable between instances), waits for each to run as configured, and verifies the
step until its deadline. When an instance or the verification fails and the step says `auto_rollback`,
the instances already changed are rolled back — and the outcome says so. The engine holds no position
of its own: it reads it from the fleet.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from plans.facts import read_live, read_live_instance
from plans.gates import GATES, GateResult, evaluate, override
from plans.hazards import Blocker, rollback_blockers
from plans.intent import Intent, IntentChange, merge, unfinished
from plans.journal import Journal, JournalError
from plans.lock import FleetLock, LockError, LockInfo
from plans.model import Plan, Step
from plans.position import Position, TargetPosition, derive_position, env_order_gate
from plans.store import Change, ConfigStore, StoreError
from probes.collect import Collector
from probes.inventory import Environment, Host, render_command
from probes.model import Verdict
from probes.snapshot import FleetSnapshot
from probes.ssh import check_reachable

Direction = Literal["advance", "rollback", "restart"]
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
LIVE_STATES = ("live", "verified")
RESTART = "restart"  # the step id of a restart-only action
INSTANCE_WAIT_CAP = 120.0  # seconds an instance may take to run as configured after its restart


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
    direction: Direction
    title: str
    changes: tuple[Change, ...]
    change_lines: tuple[str, ...]
    restarts: tuple[RestartTarget, ...]
    gates: tuple[GateResult, ...]
    blockers: tuple[Blocker, ...]  # rollback safety: "block" ones close the preview, "warn" ones inform
    snapshot_at: float
    state: str  # the position of the target when previewed
    recreates: tuple[str, ...] = ()  # what a restart recreates on each host (the service's containers)
    estimate_s: float | None = None  # expected seconds per instance, from earlier restarts of this service
    notes: tuple[str, ...] = ()  # e.g. "restores the value that was there before pg-5: disable"

    @property
    def open(self) -> bool:
        return all(g.open for g in self.gates) and not any(b.blocks for b in self.blockers)

    @property
    def closed(self) -> tuple[tuple[str, str], ...]:
        """(id, reason) of everything that keeps this preview from running: what `--override` names."""
        return tuple((g.gate, g.reason) for g in self.gates if not g.open) + tuple(
            (b.id, b.text) for b in self.blockers if b.blocks
        )

    @property
    def closed_reasons(self) -> tuple[str, ...]:
        return tuple(f"{i}: {r}" for i, r in self.closed)

    def describe(self) -> str:
        head = (
            f"{self.direction} {self.step} ({self.title})"
            + (f" for {self.service}" if self.service else "")
            + f" in {self.env}"
            + (" [PROTECTED]" if self.protected else "")
        )
        lines = [head, f"  summary {self.summary()}"]
        lines += [f"  change  {c}" for c in self.change_lines] or ["  change  (none: already configured)"]
        lines += [f"  note    {n}" for n in self.notes]
        for i, r in enumerate(self.restarts, 1):
            lines.append(
                f"  restart {i}. {r.host}: {r.command}" + (f"  (first: {r.pre_restart})" if r.pre_restart else "")
            )
        if not self.restarts:
            lines.append("  restart (none: every instance already runs as configured)")
        for g in self.gates:
            lines.append(f"  gate    [{g.status:>7}] {g.gate}: {g.reason}")
        for b in self.blockers:
            lines.append(f"  {'refuse ' if b.blocks else 'warning'} [{b.id}] {b.text}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many instances of what, what restarts on each, one at a time, how long."""
        n = len(self.restarts)
        what = f" (recreates {', '.join(self.recreates)} on each)" if self.recreates else ""
        eta = f", about {self.estimate_s * n:.0f} s in all" if self.estimate_s and n else ""
        if not n:
            return f"{len(self.changes)} config change(s), no restart"
        return (
            f"{len(self.changes)} config change(s); restarts {n} instance(s) of {self.service}{what}, one at a "
            f"time{eta}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "protected": self.protected,
            "step": self.step,
            "service": self.service,
            "direction": self.direction,
            "title": self.title,
            "changes": list(self.change_lines),
            "restarts": [{"host": r.host, "command": r.command, "pre_restart": r.pre_restart} for r in self.restarts],
            "gates": [g.to_json() for g in self.gates],
            "blockers": [b.to_json() for b in self.blockers],
            "open": self.open,
            "state": self.state,
            "snapshot_at": self.snapshot_at,
            "recreates": list(self.recreates),
            "estimate_s": self.estimate_s,
            "summary": self.summary(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class EngineEvent:
    kind: EventKind
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


class RollControl:
    """Pause, resume or stop a rolling restart between instances (the UI's keys, the CLI's Ctrl-C)."""

    def __init__(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self.stop_requested = False

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.stop_requested = True
        self._running.set()

    async def checkpoint(self, emit: Callable[[EventKind, str | None, str], None]) -> bool:
        """Wait while paused; False when a stop was asked for (the roll ends here)."""
        if self.paused and not self.stop_requested:
            emit("paused", None, "paused after the current instance — resume to go on, or stop")
            await self._running.wait()
            if not self.stop_requested:
                emit("resumed", None, "resumed")
        return not self.stop_requested


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


PREVIOUS_ENV_TTL = 30.0  # seconds a snapshot of the environment before this one is reused by previews


class Engine:
    def __init__(
        self,
        env: Environment,
        plan: Plan,
        collector: Collector,
        *,
        store: ConfigStore | None = None,
        journal: Journal | None = None,
        lock: FleetLock | None = None,
        poll_interval: float = 0.25,
        previous_env: Environment | None = None,
    ) -> None:
        """`previous_env`: the environment `env.after` names (from the same inventory), whose position the
        cross-environment gate reads; None with `env.after` set leaves that gate unknown."""
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

    # ------------------------------------------------------------------------------------ reading
    async def snapshot(self) -> FleetSnapshot:
        self._last = await self.collector.snapshot()
        return self._last

    def services_in_order(self) -> list[str]:
        return self.env.services_in_order([*self.plan.services, "others"])

    async def intents(self) -> list[Intent]:
        """Unfinished intents from the fleet journal and this machine's."""
        fleet = unfinished(await self.journal.read_fleet(2000))
        local = unfinished(self.journal.read_local(2000))
        return merge(fleet, local)

    def position(self, snap: FleetSnapshot, intents: Sequence[Intent] = ()) -> Position:
        return derive_position(self.plan, snap, self.services_in_order(), intents=intents)

    async def previous_position(self) -> Position | None:
        """Where the rollout stands in the environment before this one (`after`), read from that fleet (a
        snapshot of its own, reused for PREVIOUS_ENV_TTL); None when it cannot be read."""
        prev = self.previous_env
        if prev is None or not self.env.after or prev.name != self.env.after:
            return None
        now = time.monotonic()
        if self._previous is not None and now - self._previous[0] < PREVIOUS_ENV_TTL:
            return self._previous[1]
        collector = Collector(prev, read_only=True)
        try:
            snap = await collector.snapshot()
            pos: Position | None = derive_position(
                self.plan, snap, prev.services_in_order([*self.plan.services, "others"])
            )
        except Exception:
            pos = None
        finally:
            await collector.aclose()
        self._previous = (now, pos)
        return pos

    # ------------------------------------------------------------------------------------ the lock
    async def acquire_lock(self, step_id: str) -> LockInfo:
        """Take the fleet lock and journal it; if the journal cannot be written the lock is released
        again (a lock held by a process that has failed is the worst kind)."""
        info = await self.lock.acquire(step_id)
        try:
            await self.journal.write("lock", step=step_id)
        except BaseException as exc:
            try:
                await self.lock.release()
            except Exception as rel:
                raise EngineError(
                    f"the journal could not be written ({exc}) and the lock could not be released "
                    f"({rel}) — break it with `cockpit lock --break --reason …`"
                ) from None
            if isinstance(exc, JournalError):
                raise EngineError(f"{exc}; the lock was released, nothing was changed") from None
            raise
        return info

    async def release_lock(self) -> None:
        if self.lock.held is not None:
            broken = await self.lock.release()
            try:
                if broken is not None:  # someone broke it while we held it: say so, once
                    await self.journal.write(
                        "lock-lost",
                        broken_by=str(getattr(broken, "who", "?")),
                        reason=str(getattr(broken, "reason", "")),
                    )
                await self.journal.write("unlock")
            except JournalError:
                pass  # the lock is released; a missing unlock line is not worth a failure

    async def break_lock(self, reason: str) -> LockInfo | None:
        if not reason.strip():
            raise EngineError("breaking the fleet lock needs a reason (--reason)")
        old = await self.lock.break_lock(reason)
        await self.journal.write("lock-broken", reason=reason, holder=old.describe() if old else None)
        return old

    # ------------------------------------------------------------------------------------ preview
    def _target_service(self, step: Step, service: str | None) -> str:
        if step.kind == "certs":
            raise EngineError(f"{step.id} is done with `{step.command or 'cockpit certs push'}`, not advance")
        if step.per_service:
            if not service:
                raise EngineError(
                    f"{step.id} is applied one service at a time: name one with --service "
                    f"({', '.join(self.plan.targets(step, self.services_in_order()))})"
                )
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

    def _restart_target(self, host: Host, service: str) -> RestartTarget:
        pre = self.env.service(service).pre_restart
        values = {"root": host.root.rstrip("/"), "service": service, "host": host.name, "address": host.address}
        return RestartTarget(
            host.name, self.env.update_command(host), render_command(pre, values, literal_braces=True) if pre else ""
        )

    def _recreates(self, service: str) -> tuple[str, ...]:
        return tuple(self.collector.config.containers(service))

    def _estimate(self, service: str) -> float | None:
        times = [
            float(e.get("update_ms", 0)) + float(e.get("verify_ms", 0))
            for e in self.journal.read_local(2000)
            if e.get("event") == "instance" and e.get("service") == service and e.get("ok")
        ]
        if not times:
            return None
        times.sort()
        return times[len(times) // 2] / 1000.0

    def _db_gates(self, snap: FleetSnapshot, service: str, gates: list[GateResult], now: float) -> None:
        """Every restart of the database host re-decodes the cert material: its gate, always."""
        if service == self.plan.database_service and not any(g.gate == "certs_valid" for g in gates):
            gates.append(evaluate("certs_valid", snap, now=now, plan=self.plan))

    async def _previous_values(self, step: Step, service: str) -> dict[str, str | None]:
        """The values that were there before the last advance of `step` for `service`, from the journals'
        intents — what a rollback restores, so a value set by hand before the step is never lost."""
        entries = [*self.journal.read_local(5000), *await self.journal.read_fleet(5000)]
        out: dict[str, str | None] = {}
        for e in sorted((e for e in entries if isinstance(e, dict)), key=lambda e: float(e.get("ts", 0) or 0)):
            intent = Intent.from_entry(e)
            if (
                intent is not None
                and intent.step == step.id
                and intent.service == service
                and intent.direction == "advance"
            ):
                for c in intent.changes:
                    out[c.var] = c.old
        return out

    async def preview(
        self,
        step_id: str,
        service: str | None = None,
        *,
        direction: Direction = "advance",
        snapshot: FleetSnapshot | None = None,
        env_order_override: str | None = None,
    ) -> Preview:
        """What advancing (or rolling back) `step_id` for `service` would do, with its gates.

        `env_order_override`: a person's reason to advance before the environment this one comes after
        (`after` in the inventory) has the step verified; it is quoted in the gate's reason."""
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
        notes: list[str] = []
        before = await self._previous_values(step, svc) if direction == "rollback" else {}
        for c in step.changes:
            try:
                old = await self.store.read(svc, c.var)
            except Exception as exc:
                raise EngineError(f"cannot read {c.var} for {svc} from the config store: {exc}") from None
            new = c.value if direction == "advance" else c.rollback
            if direction == "rollback" and c.var in before and old == c.value and before[c.var] != c.value:
                new = before[c.var]  # what was there before the step, not the plan's default
                if new != c.rollback:
                    notes.append(
                        f"{c.var} goes back to {new if new is not None else 'unset'}, the value it had "
                        f"before {step.id} was applied (not the plan's {c.rollback or 'unset'})"
                    )
            if old != new:
                changes.append(Change(svc, c.var, old, new))
        pos = self.position(snap)
        target = pos.target(step.id, svc) if step.per_service else _fleet_target(pos, step.id)
        hosts = self._hosts(svc)
        if changes and direction == "advance":
            restart_hosts = list(hosts)
        elif direction == "advance":
            # already configured: restart only the instances not running as configured (a rerun converges)
            restart_hosts = [h for h in hosts if _state_of(target, h.name) not in LIVE_STATES]
        else:
            # back: only the instances that run (or may run) the step's values need a restart — one whose
            # restart failed still runs the old values, and is back as soon as the store is
            restart_hosts = (
                [h for h in hosts if _runs_step(step, snap, h.name)]
                if step.per_service
                else (list(hosts) if target.state != "pending" or read_live(step.live, snap).value is not False else [])
            )
        gates: list[GateResult] = []
        blockers: list[Blocker] = []
        if direction == "advance":
            for g in step.gates_for_target(service if step.per_service else None):
                spec = GATES.get(g)
                gates.append(
                    evaluate(
                        g,
                        snap,
                        service=svc if (spec and spec.per_service) else None,
                        now=now,
                        plan=self.plan,
                        step=step,
                    )
                )
            if self.env.after:
                gates.append(
                    env_order_gate(
                        step,
                        self.env,
                        await self.previous_position(),
                        service=service if step.per_service else None,
                        override=env_order_override,
                    )
                )
        else:
            blockers = rollback_blockers(self.plan, step, service if step.per_service else None, snap)
        if restart_hosts:
            self._db_gates(snap, svc, gates, now)
        return Preview(
            env=self.env.name,
            protected=self.env.protected,
            step=step.id,
            service=svc,
            direction=direction,
            title=step.title,
            changes=tuple(changes),
            change_lines=tuple(c.describe(self.env) for c in changes),
            restarts=tuple(self._restart_target(h, svc) for h in restart_hosts),
            gates=tuple(gates),
            blockers=tuple(blockers),
            snapshot_at=snap.taken_at,
            state=target.state,
            recreates=self._recreates(svc),
            estimate_s=self._estimate(svc),
            notes=tuple(notes),
        )

    async def preview_restart(
        self, service: str, hosts: Sequence[str] = (), *, snapshot: FleetSnapshot | None = None
    ) -> Preview:
        """Restart `service` (its `hosts`, default all) one instance at a time: no config change — to land a
        pushed CA, or to clear drift."""
        if service not in self.env.service_names:
            raise EngineError(f"no service {service!r} in {self.env.name} ({', '.join(self.env.service_names)})")
        known = self._hosts(service)
        unknown = [h for h in hosts if h not in {k.name for k in known}]
        if unknown:
            raise EngineError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a host of {service} "
                f"({', '.join(k.name for k in known)})"
            )
        chosen = [h for h in known if not hosts or h.name in hosts]
        snap = snapshot or await self.snapshot()
        now = time.time()
        gates: list[GateResult] = []
        self._db_gates(snap, service, gates, now)
        return Preview(
            env=self.env.name,
            protected=self.env.protected,
            step=RESTART,
            service=service,
            direction="restart",
            title=f"restart {service} (no configuration change)",
            changes=(),
            change_lines=(),
            restarts=tuple(self._restart_target(h, service) for h in chosen),
            gates=tuple(gates),
            blockers=(),
            snapshot_at=snap.taken_at,
            state="restart",
            recreates=self._recreates(service),
            estimate_s=self._estimate(service),
        )

    # ------------------------------------------------------------------------------------ apply
    def _overridden(self, preview: Preview, overrides: Sequence[str], reason: str) -> Preview | str:
        """The preview with exactly the named gates / blockers opened, or why that is refused."""
        closed = dict(preview.closed)
        unknown = [
            o
            for o in overrides
            if o not in closed
            and o not in {g.gate for g in preview.gates}
            and o not in {b.id for b in preview.blockers}
        ]
        if unknown:
            names = ", ".join(closed) or "none"
            return f"--override {', '.join(unknown)}: no such gate or blocker in this preview (closed now: {names})"
        left = [i for i in closed if i not in overrides]
        if left:
            return (
                "refused: "
                + "; ".join(f"{i}: {closed[i]}" for i in left)
                + (" — override each with --override ID --reason …" if overrides else "")
            )
        gates = tuple(override(g, reason) if g.gate in overrides else g for g in preview.gates)
        blockers = tuple(
            replace(b, kind="warn", text=f"overridden: {reason} (was: {b.text})")
            if b.id in overrides and b.blocks
            else b
            for b in preview.blockers
        )
        return replace(preview, gates=gates, blockers=blockers)

    async def _preflight(self, preview: Preview, emit: Callable[[EventKind, str | None, str], None]) -> str | None:
        """Prove the apply can finish before anything is written: None, or why it cannot."""
        problems: list[str] = []
        hosts = [r.host for r in preview.restarts]
        limit = self.env.ssh.connect_timeout

        async def reach(host: str) -> str | None:
            try:
                r = await asyncio.wait_for(check_reachable(self.collector.pool, host, round_trip=True), limit)
            except TimeoutError:
                return f"{host} cannot be restarted: it did not answer within {limit:g} s (stalled?)"
            return None if r.verdict is Verdict.OK else f"{host} cannot be restarted: {r.summary}"

        problems += [p for p in await asyncio.gather(*(reach(h) for h in hosts)) if p]
        if preview.changes and preview.service is not None:
            try:
                await self.store.check_writable(preview.service)
            except StoreError as exc:
                problems.append(f"the config store is not writable: {exc}")
        try:
            await self.journal.check_writable()
        except JournalError as exc:
            problems.append(str(exc))
        if problems:
            return "preflight failed, nothing was written: " + "; ".join(problems)
        emit(
            "preflight",
            None,
            f"preflight ok: {len(hosts)} host(s) reachable with verified host keys"
            + (", config store writable" if preview.changes else "")
            + ", journals writable",
        )
        return None

    async def apply(
        self,
        preview: Preview,
        *,
        reason: str,
        overrides: Sequence[str] = (),
        dry_run: bool = False,
        on_event: Callable[[EngineEvent], None] | None = None,
        control: RollControl | None = None,
        automatic: bool = False,
    ) -> Outcome:
        """Apply a preview. `overrides`: ids of closed gates / rollback blockers a person opens on purpose
        (each journaled with `reason`); nothing else is ever overridden — not by an automatic rollback
        either. `control` pauses or stops the roll between instances."""
        started = time.time()
        journal_errors: list[str] = []
        control = control or RollControl()

        def emit(kind: EventKind, host: str | None, text: str) -> None:
            if on_event is not None:
                on_event(EngineEvent(kind, host, text))

        def done(
            ok: bool,
            stage: Stage,
            why: str,
            inst: Sequence[InstanceOutcome] = (),
            changed: Sequence[str] = (),
            rolled: Outcome | None = None,
        ) -> Outcome:
            emit("done" if ok else "error", None, why)
            return Outcome(
                ok, stage, why, tuple(inst), started, time.time(), rolled, tuple(changed), tuple(journal_errors)
            )

        async def journal(event: str, **fields: Any) -> None:
            try:
                entry = await self.journal.write(event, **fields)
            except JournalError as exc:
                journal_errors.append(str(exc))
                emit("journal", None, f"journal: {exc}")
                return
            if entry.get("fleet_journal_error"):
                text = (
                    f"the fleet journal could not be written ({entry['fleet_journal_error']}); kept locally and "
                    "uploaded with the next entry that reaches it"
                )
                journal_errors.append(text)
                emit("journal", None, text)

        async def refuse(stage: Stage, why: str) -> Outcome:
            """A refusal is an outcome, said where everyone reads (the journals), not only here."""
            await journal(
                "apply-done",
                step=preview.step,
                service=preview.service,
                direction=preview.direction,
                ok=False,
                stage=stage,
                reason=why,
            )
            return done(False, stage, why)

        if dry_run:
            checked = self._overridden(preview, overrides, reason or "dry run") if not preview.open else preview
            if isinstance(checked, str):
                return Outcome(False, "refused", checked, (), started, time.time())
            emit("done", None, "dry run: nothing written, nothing restarted")
            return Outcome(True, "dry-run", preview.describe(), (), started, time.time())
        if not reason.strip():
            return done(False, "refused", "a reason is required (it goes in the journal)")
        if self.lock.held is None:
            return await refuse("refused", "the fleet lock is not held: take it before preview (acquire_lock)")
        if not preview.open or overrides:
            checked = self._overridden(preview, overrides, reason)
            if isinstance(checked, str):
                return await refuse("refused", checked)
            if overrides:
                await journal(
                    "override",
                    step=preview.step,
                    service=preview.service,
                    reason=reason,
                    overridden=[f"{i}: {r}" for i, r in preview.closed if i in overrides],
                    ids=list(overrides),
                    automatic=automatic,
                )
            preview = checked
        why_not = await self._preflight(preview, emit)
        if why_not is not None:
            return await refuse("preflight", why_not)
        for c in preview.changes:  # compare-and-swap: the store must still hold what the preview showed
            try:
                now_value = await self.store.read(c.service, c.var)
            except Exception as exc:
                return await refuse("refused", f"cannot re-read {c.var}: {exc}")
            if now_value != c.old:
                return await refuse(
                    "refused",
                    f"the fleet changed since the preview: {c.var} for {c.service} is now "
                    f"{now_value or 'unset'}, was {c.old or 'unset'} — preview again",
                )
        token = os.urandom(8).hex()
        await journal(
            "apply-start",
            step=preview.step,
            service=preview.service,
            direction=preview.direction,
            reason=reason,
            preview=preview.to_json(),
            overrides=list(overrides),
            automatic=automatic,
        )
        if preview.changes:
            intent = Intent(
                token,
                preview.step,
                preview.service or "",
                preview.direction,
                tuple(IntentChange(c.var, c.old, c.new) for c in preview.changes),
                "",
                "",
                time.time(),
            )
            await journal("intent", **intent.to_json())
            try:
                receipts = await self.store.write_all(preview.changes)
            except StoreError as exc:
                self.collector.invalidate()
                if not exc.partial:  # undone: the store holds what it held before; else the intent stays open
                    await journal(
                        "intent-done",
                        token=token,
                        ok=False,
                        reason=str(exc),
                        step=preview.step,
                        service=preview.service,
                    )
                await journal(
                    "apply-done", step=preview.step, service=preview.service, ok=False, stage="write", reason=str(exc)
                )
                return done(False, "write", f"{exc}")
            await journal("intent-done", token=token, ok=True, step=preview.step, service=preview.service)
            for c, receipt in zip(preview.changes, receipts, strict=False):
                emit("write", None, f"{c.describe(self.env)}  [{receipt}]")
        self.collector.invalidate()  # the next snapshot reads the store as it is now
        step = self.plan.step(preview.step) if preview.step != RESTART else None
        results: list[InstanceOutcome] = []
        changed: list[str] = []
        for n, r in enumerate(preview.restarts, 1):
            if not await control.checkpoint(emit):
                why = f"stopped by the operator after {n - 1} of {len(preview.restarts)} instance(s)" + (
                    f" ({', '.join(changed)} changed)" if changed else " (none restarted)"
                )
                emit("stopping", None, why)
                await journal(
                    "apply-done",
                    step=preview.step,
                    service=preview.service,
                    ok=False,
                    stage="stopped",
                    reason=why,
                    changed=changed,
                )
                return done(False, "stopped", why, results, changed)
            res = await self._restart_one(step, preview, r, emit)
            results.append(res)
            if res.exit_status is not None or res.ok:
                changed.append(r.host)
            await journal("instance", step=preview.step, service=preview.service, **res.to_json())
            if not res.ok:
                why = f"{r.host}: {res.reason}"
                await journal(
                    "apply-done",
                    step=preview.step,
                    service=preview.service,
                    ok=False,
                    stage="restart",
                    reason=why,
                    changed=changed,
                )
                return await self._after_failure(
                    step,
                    preview,
                    done(False, "restart", why + " — the roll stopped here", results, changed),
                    on_event,
                    automatic,
                )
        if step is None:
            await journal(
                "apply-done",
                step=RESTART,
                service=preview.service,
                ok=True,
                stage="done",
                reason="restarted",
                direction="restart",
            )
            return done(True, "done", f"restarted {len(results)} instance(s) of {preview.service}", results, changed)
        ok, why = await self._verify(step, preview, emit)
        await journal(
            "apply-done",
            step=preview.step,
            service=preview.service,
            ok=ok,
            stage="done" if ok else "verify",
            reason=why,
            direction=preview.direction,
        )
        outcome = done(ok, "done" if ok else "verify", why, results, changed)
        return outcome if ok else await self._after_failure(step, preview, outcome, on_event, automatic)

    async def refused(self, preview: Preview, reason: str) -> None:
        """Journal a refusal decided before apply (closed gates and no override), so watchers and the
        change-window report see it."""
        try:
            await self.journal.write(
                "apply-done",
                step=preview.step,
                service=preview.service,
                direction=preview.direction,
                ok=False,
                stage="refused",
                reason=reason,
            )
        except JournalError:
            pass  # the caller says the refusal itself; a journal that cannot be written is said by the next apply

    async def _after_failure(
        self,
        step: Step | None,
        preview: Preview,
        outcome: Outcome,
        on_event: Callable[[EngineEvent], None] | None,
        automatic: bool,
    ) -> Outcome:
        """Where the step says auto_rollback, roll back what was changed — never overriding anything."""
        if step is None or not step.auto_rollback or preview.direction != "advance" or automatic:
            return outcome
        if on_event is not None:
            on_event(EngineEvent("rollback", None, f"automatic rollback of {step.id}: {outcome.reason}"))
        try:
            back = await self.preview(step.id, preview.service if step.per_service else None, direction="rollback")
        except EngineError as exc:
            rolled = Outcome(False, "refused", f"automatic rollback could not be previewed: {exc}")
        else:
            if not back.open:
                rolled = Outcome(False, "refused", "automatic rollback refused: " + "; ".join(back.closed_reasons))
            else:
                rolled = await self.apply(
                    back, reason=f"automatic rollback: {outcome.reason}", on_event=on_event, automatic=True
                )
        said = (
            "; rolled back automatically" if rolled.ok else f"; the automatic rollback did not finish: {rolled.reason}"
        )
        return replace(outcome, reason=outcome.reason + said, rolled_back=rolled)

    async def _diagnostics(self, host: str, service: str) -> str:
        """The service's own error: its log tail (the inventory's `logs` command) and its health answer."""
        parts: list[str] = []
        h = self.env.host(host)
        if self.env.service(service).logs:
            r = await self.collector.pool.run(host, self.env.logs_command(h), timeout=15)
            text = _tail(r.stdout + ("\n" + r.stderr if r.stderr else ""), 15)
            parts.append(f"log tail:\n{text}" if text else f"log: {r.error or 'empty'}")
        snap = self._last
        inst = next((i for i in snap.instances if i.host == host), None) if snap is not None else None
        if inst is not None:
            parts += [
                c.summary
                for c in inst.checks
                if c.check in ("instance.health", "instance.running") and c.verdict is not Verdict.OK
            ]
        return "\n".join(parts)

    async def _restart_one(
        self, step: Step | None, preview: Preview, r: RestartTarget, emit: Callable[[EventKind, str | None, str], None]
    ) -> InstanceOutcome:
        pool = self.collector.pool
        svc = preview.service or ""
        if r.pre_restart:
            emit("restart", r.host, f"pre-restart: {r.pre_restart}")
            pre = await pool.run(r.host, r.pre_restart)
            if not pre.ok:
                return InstanceOutcome(
                    r.host,
                    False,
                    None,
                    _tail(pre.stdout + pre.stderr),
                    0.0,
                    0.0,
                    f"pre-restart command failed: {pre.error or pre.stderr.strip()[-300:]}",
                )
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
            diag = await self._diagnostics(r.host, svc)
            if diag:
                emit("diagnostics", r.host, diag)
            return InstanceOutcome(
                r.host,
                False,
                res.exit_status,
                output,
                update_ms,
                0.0,
                f"update.sh exited {res.exit_status}: {res.stderr.strip()[-300:]}",
                diag,
            )
        t1 = time.monotonic()
        ok, why = await self._wait_instance(step, preview, r.host)
        verify_ms = (time.monotonic() - t1) * 1000
        diag = ""
        if not ok:
            diag = await self._diagnostics(r.host, svc)
            if diag:
                emit("diagnostics", r.host, diag)
        emit("instance-done", r.host, why)
        return InstanceOutcome(r.host, ok, res.exit_status, output, update_ms, verify_ms, "" if ok else why, diag)

    def _instance_state(
        self, step: Step | None, preview: Preview, host: str, snap: FleetSnapshot
    ) -> tuple[bool | None, str]:
        """(True: done, False: failed for good, None: not yet) for one restarted instance."""
        inst = next((i for i in snap.instances if i.host == host), None)
        if step is None or not step.per_service:
            if inst is not None and inst.running is False:
                return False, f"{host} is not running after its restart"
            if step is None:
                if inst is None:  # the database host: its reach is enough here, the gates check the rest
                    return (True, f"{host} restarted") if snap.database is not None else (None, "not observed yet")
                return (
                    (True, f"{host} runs")
                    if inst.running is True or inst.healthy is True
                    else (None, f"{host}: waiting until it runs")
                )
        pos = self.position(snap)
        if step.per_service:
            t = pos.target(step.id, preview.service)
            ip = t.instance(host)
            state, detail = (ip.state, ip.detail) if ip else (t.state, t.detail)
            if inst is not None and inst.running is False:
                return False, f"{host} is not running after its restart"
        else:
            ft = _fleet_target(pos, step.id)
            state, detail = ft.state, ft.detail
        if preview.direction == "rollback":
            return (True if state == "pending" else None), f"{host}: {state}: {detail}"
        if state in LIVE_STATES:
            return True, f"{host}: {state}: {detail}"
        return None, f"{host}: {state}: {detail}"

    async def _wait_instance(self, step: Step | None, preview: Preview, host: str) -> tuple[bool, str]:
        limit = min(step.deadline if step else INSTANCE_WAIT_CAP, INSTANCE_WAIT_CAP)
        deadline = time.monotonic() + limit
        unhealthy_since: float | None = None
        while True:
            snap = await self.snapshot()
            ok, why = self._instance_state(step, preview, host, snap)
            if ok is not None:
                return ok, why
            inst = next((i for i in snap.instances if i.host == host), None)
            if inst is not None and inst.healthy is False:  # unhealthy for 15 s in a row: it will not come good
                unhealthy_since = unhealthy_since or time.monotonic()
                if time.monotonic() - unhealthy_since > 15:
                    return False, f"{host} has been unhealthy for 15 s since its restart ({why})"
            else:
                unhealthy_since = None
            if time.monotonic() > deadline:
                return False, f"not running as configured within {limit:.0f}s: {why}"
            await asyncio.sleep(self.poll_interval)

    async def _verify(
        self, step: Step, preview: Preview, emit: Callable[[EventKind, str | None, str], None]
    ) -> tuple[bool, str]:
        deadline = time.monotonic() + step.deadline
        svc = preview.service if step.per_service else None
        while True:
            snap = self._last if self._last is not None else await self.snapshot()
            if preview.direction == "advance":
                g = evaluate(
                    step.verify,
                    snap,
                    service=svc if GATES[step.verify].per_service else None,
                    now=time.time(),
                    plan=self.plan,
                    step=step,
                )
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


def _runs_step(step: Step, snap: FleetSnapshot, host: str) -> bool:
    """Whether an instance runs (or may run) the step's values: its live fact is true or unknown — and it
    is not known to be stopped."""
    inst = next((i for i in snap.instances if i.host == host), None)
    if inst is None or inst.running is False:
        return False
    return read_live_instance(step.live, inst).value is not False


def _state_of(target: TargetPosition, host: str) -> str:
    """An instance's state in a target position (the target's own when it has no per-instance detail)."""
    inst = target.instance(host)
    return inst.state if inst is not None else target.state


def _fleet_target(pos: Position, step_id: str) -> TargetPosition:
    sp = pos.step_position(step_id)
    if sp is None or not sp.targets:
        raise EngineError(f"no position for step {step_id}")
    return sp.targets[0]


__all__ = [
    "RESTART",
    "Direction",
    "Engine",
    "EngineError",
    "EngineEvent",
    "EventKind",
    "InstanceOutcome",
    "LockError",
    "Outcome",
    "Preview",
    "RestartTarget",
    "RollControl",
    "Stage",
]
