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

This module is the engine's facade, the one the CLI and the TUI use: `Engine` here; `Preview`,
`Outcome`, `EngineEvent`, `RollControl` and `EngineError` are re-exported from where they live
(`plans.preview`, `plans.outcome`, `plans.rollcontrol`). How a preview is built is `plans.previewing`'s,
the roll `plans.roll`'s, the record of an apply `plans.applyrun`'s. Every dependency (the fleet reader,
host commands, the config store, the journals, the lock) is a constructor parameter typed against
`plans.capabilities`, with the real one as default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from inventory.model import Environment
from plans.applyrun import ApplyRecord
from plans.capabilities import EngineJournal, FleetReader, HostCommands, LiveFleet, LockHolder, SshHosts
from plans.collecting import collector_for
from plans.intent import Intent, merge, unfinished
from plans.journal import Journal, JournalError
from plans.lock import FleetLock, LockError, LockInfo
from plans.model import Plan, Step
from plans.outcome import EngineEvent, EventKind, InstanceOutcome, Outcome, Stage
from plans.position import Position, derive_position
from plans.preview import RESTART, Direction, EngineError, Preview, RestartTarget
from plans.previewing import Previews
from plans.roll import Observed, Roll
from plans.rollcontrol import RollControl
from plans.store import ConfigStore, StoreError, make_store
from probes.model import Verdict
from probes.snapshot import FleetSnapshot

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

PREVIOUS_ENV_TTL = 30.0  # seconds a snapshot of the environment before this one is reused by previews


def _previous_reader(env: Environment, plan: Plan) -> FleetReader:
    """A read-only collector of the environment before this one (for the env-order gate)."""
    return collector_for(env, plan, read_only=True)


class Engine:
    def __init__(
        self,
        env: Environment,
        plan: Plan,
        collector: FleetReader,
        *,
        store: ConfigStore | None = None,
        journal: EngineJournal | None = None,
        lock: LockHolder | None = None,
        hosts: HostCommands | None = None,
        recreates: Callable[[str], Sequence[str]] | None = None,
        poll_interval: float = 0.25,
        previous_env: Environment | None = None,
        previous_reader: Callable[[Environment, Plan], FleetReader] = _previous_reader,
    ) -> None:
        """`collector`: the fleet as observed. The other dependencies default to the real ones, built from a
        `probes.collect.Collector` (its SSH pool and AWS clients): the config store the inventory names,
        the journals, the fleet lock, commands over SSH, and the containers its vars.yaml lists (what a
        restart recreates). `previous_env`: the environment `env.after` names (from the same inventory),
        whose position the cross-environment gate reads through `previous_reader`; None with `env.after`
        set leaves that gate unknown."""
        self.env = env
        self.plan = plan
        self.collector = collector
        live = _live(collector, store, journal, lock, hosts)
        if live is not None:
            store = store or make_store(env, live.aws, live.pool)
            journal = journal or Journal(env, live.pool)
            lock = lock or FleetLock(live.aws, env.namespace)
            hosts = hosts or SshHosts(live.pool)
            recreates = recreates or live.config.containers
        assert store is not None and journal is not None and lock is not None and hosts is not None  # see _live
        self.store: ConfigStore = store
        self.journal: EngineJournal = journal
        self.lock: LockHolder = lock
        self.hosts: HostCommands = hosts
        self.poll_interval = poll_interval
        self.previous_env = previous_env
        self.previous_reader = previous_reader
        self._previous: tuple[float, Position | None] | None = None
        self.observed = Observed(collector)
        self.previews = Previews(env, plan, store, journal, recreates or (lambda service: ()))
        self.roll = Roll(env, plan, self.services_in_order(), self.hosts, self.observed, poll_interval=poll_interval)

    # ------------------------------------------------------------------------------------ reading
    async def snapshot(self) -> FleetSnapshot:
        return await self.observed.fresh()

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
        reader = self.previous_reader(prev, self.plan)
        try:
            snap = await reader.snapshot()
            pos: Position | None = derive_position(
                self.plan, snap, prev.services_in_order([*self.plan.services, "others"])
            )
        except Exception:
            pos = None
        finally:
            await reader.aclose()
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
                    await self.journal.write("lock-lost", broken_by=broken.who, reason=broken.reason)
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
        step, svc = self.previews.target(step_id, service, direction)
        snap = snapshot or await self.snapshot()
        previous = await self.previous_position() if direction == "advance" and self.env.after else None
        return await self.previews.build(
            step, svc, service, direction, snap, previous=previous, env_order_override=env_order_override
        )

    async def preview_restart(
        self, service: str, hosts: Sequence[str] = (), *, snapshot: FleetSnapshot | None = None
    ) -> Preview:
        """Restart `service` (its `hosts`, default all) one instance at a time: no config change — to land a
        pushed CA, or to clear drift."""
        chosen = self.previews.restart_hosts(service, hosts)
        snap = snapshot or await self.snapshot()
        return self.previews.build_restart(service, chosen, snap)

    # ------------------------------------------------------------------------------------ apply
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
        record = ApplyRecord(self.journal, preview, on_event)
        if dry_run:
            return self._dry_run(record, overrides, reason)
        admitted = await self._admit(record, reason, overrides, automatic)
        if isinstance(admitted, Outcome):
            return admitted
        await record.note(
            "apply-start",
            step=admitted.step,
            service=admitted.service,
            direction=admitted.direction,
            reason=reason,
            preview=admitted.to_json(),
            overrides=list(overrides),
            automatic=automatic,
        )
        record.preview = admitted
        failed = await record.write_changes(self.env, self.store, self.observed.invalidate)
        if failed is not None:
            return failed
        self.observed.invalidate()  # the next snapshot reads the store as it is now
        return await self._roll(record, control or RollControl(), automatic)

    def _dry_run(self, record: ApplyRecord, overrides: Sequence[str], reason: str) -> Outcome:
        preview = record.preview
        checked = preview.opened(overrides, reason or "dry run") if not preview.open else preview
        if isinstance(checked, str):
            return Outcome(False, "refused", checked, (), record.started, time.time())
        record.emit("done", None, "dry run: nothing written, nothing restarted")
        return Outcome(True, "dry-run", preview.describe(), (), record.started, time.time())

    async def _admit(
        self, record: ApplyRecord, reason: str, overrides: Sequence[str], automatic: bool
    ) -> Preview | Outcome:
        """The preview as it will run (with the named gates opened), or the outcome of a refusal: no reason,
        the lock not held, an override that names nothing, a failed preflight, the fleet changed since."""
        preview = record.preview
        if not reason.strip():
            return record.done(False, "refused", "a reason is required (it goes in the journal)")
        if self.lock.held is None:
            return await record.refuse("refused", "the fleet lock is not held: take it before preview (acquire_lock)")
        if not preview.open or overrides:
            checked = preview.opened(overrides, reason)
            if isinstance(checked, str):
                return await record.refuse("refused", checked)
            if overrides:
                await record.note(
                    "override",
                    step=preview.step,
                    service=preview.service,
                    reason=reason,
                    overridden=[f"{i}: {r}" for i, r in preview.closed if i in overrides],
                    ids=list(overrides),
                    automatic=automatic,
                )
            preview = record.preview = checked
        why_not = await self._preflight(preview, record)
        if why_not is not None:
            return await record.refuse("preflight", why_not)
        for c in preview.changes:  # compare-and-swap: the store must still hold what the preview showed
            try:
                now_value = await self.store.read(c.service, c.var)
            except Exception as exc:
                return await record.refuse("refused", f"cannot re-read {c.var}: {exc}")
            if now_value != c.old:
                return await record.refuse(
                    "refused",
                    f"the fleet changed since the preview: {c.var} for {c.service} is now "
                    f"{now_value or 'unset'}, was {c.old or 'unset'} — preview again",
                )
        return preview

    async def _preflight(self, preview: Preview, record: ApplyRecord) -> str | None:
        """Prove the apply can finish before anything is written: None, or why it cannot."""
        problems: list[str] = []
        hosts = [r.host for r in preview.restarts]
        limit = self.env.ssh.connect_timeout

        async def reach(host: str) -> str | None:
            try:
                r = await asyncio.wait_for(self.hosts.reachable(host), limit)
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
        record.emit(
            "preflight",
            None,
            f"preflight ok: {len(hosts)} host(s) reachable with verified host keys"
            + (", config store writable" if preview.changes else "")
            + ", journals writable",
        )
        return None

    async def _roll(self, record: ApplyRecord, control: RollControl, automatic: bool) -> Outcome:
        """Each instance in turn (stoppable between them), then the step's verification; a failure rolls
        back by itself where the step says so."""
        preview = record.preview
        step = self.plan.step(preview.step) if preview.step != RESTART else None
        results: list[InstanceOutcome] = []
        changed: list[str] = []
        for n, r in enumerate(preview.restarts, 1):
            if not await control.checkpoint(record.emit):
                why = f"stopped by the operator after {n - 1} of {len(preview.restarts)} instance(s)" + (
                    f" ({', '.join(changed)} changed)" if changed else " (none restarted)"
                )
                record.emit("stopping", None, why)
                await record.finished(False, "stopped", why, changed=changed)
                return record.done(False, "stopped", why, results, changed)
            res = await self.roll.restart_one(step, preview, r, record.emit)
            results.append(res)
            if res.exit_status is not None or res.ok:
                changed.append(r.host)
            await record.note("instance", step=preview.step, service=preview.service, **res.to_json())
            if not res.ok:
                why = f"{r.host}: {res.reason}"
                await record.finished(False, "restart", why, changed=changed)
                failed = record.done(False, "restart", why + " — the roll stopped here", results, changed)
                return await self._after_failure(step, preview, failed, record.on_event, automatic)
        if step is None:
            await record.finished(True, "done", "restarted", direction="restart")
            return record.done(
                True, "done", f"restarted {len(results)} instance(s) of {preview.service}", results, changed
            )
        ok, why = await self.roll.verify(step, preview, record.emit)
        await record.finished(ok, "done" if ok else "verify", why, direction=preview.direction)
        outcome = record.done(ok, "done" if ok else "verify", why, results, changed)
        return outcome if ok else await self._after_failure(step, preview, outcome, record.on_event, automatic)

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


def _live(collector: FleetReader, *given: object) -> LiveFleet | None:
    """The collector the missing dependencies are built from; TypeError when some are missing and it is
    not one (a test's reader must come with all of them)."""
    if isinstance(collector, LiveFleet):
        return collector
    if any(g is None for g in given):
        raise TypeError("Engine: a fleet reader that is not the collector needs store, journal, lock and hosts")
    return None
