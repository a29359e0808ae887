"""Building a preview: what one step (or a restart) would change in the config store, which instances it
would restart, and what guards it — its gates and the environment order for an advance, the rollback
blockers for a rollback. Reads the config store and the journals; decides from one snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from inventory.model import Environment, Host, render_command
from plans.capabilities import EngineJournal
from plans.facts import read_live, read_live_instance
from plans.gates import GATES, GateResult, evaluate
from plans.hazards import Blocker, rollback_blockers
from plans.intent import Intent
from plans.journal import JournalError
from plans.model import Plan, Step
from plans.position import Position, TargetPosition, derive_position, env_order_gate
from plans.preview import RESTART, Direction, EngineError, Preview, RestartTarget
from plans.store import Change, ConfigStore
from probes.snapshot import FleetSnapshot

__all__ = ["LIVE_STATES", "Previews", "fleet_target"]

LIVE_STATES = ("live", "verified")


class Previews:
    """Previews for one environment and plan. `recreates(service)`: what a restart of the service recreates
    on each host (its containers), shown in the preview."""

    def __init__(
        self,
        env: Environment,
        plan: Plan,
        store: ConfigStore,
        journal: EngineJournal,
        recreates: Callable[[str], Sequence[str]],
    ) -> None:
        self.env = env
        self.plan = plan
        self.store = store
        self.journal = journal
        self.recreates = recreates

    def services_in_order(self) -> list[str]:
        return self.env.services_in_order([*self.plan.services, "others"])

    def position(self, snap: FleetSnapshot, intents: Sequence[Intent] = ()) -> Position:
        return derive_position(self.plan, snap, self.services_in_order(), intents=intents)

    # -- what a request targets -----------------------------------------------------------------
    def target(self, step_id: str, service: str | None, direction: Direction) -> tuple[Step, str]:
        """The step and the service whose config store it changes; EngineError for a request that cannot
        be previewed (unknown step, a certs step, a missing or foreign service)."""
        try:
            step = self.plan.step(step_id)
        except KeyError:
            raise EngineError(f"no step {step_id!r} in the plan ({', '.join(self.plan.step_ids)})") from None
        if direction not in ("advance", "rollback"):
            raise EngineError(f"direction must be advance or rollback, not {direction!r}")
        if step.kind == "certs":
            raise EngineError(f"{step.id} is done with `{step.command or 'cockpit certs push'}`, not advance")
        if step.per_service:
            targets = self.plan.targets(step, self.services_in_order())
            if not service:
                raise EngineError(
                    f"{step.id} is applied one service at a time: name one with --service ({', '.join(targets)})"
                )
            if service not in targets:
                raise EngineError(f"{step.id} does not apply to service {service!r}")
            return step, service
        if service and service != self.plan.database_service:
            raise EngineError(f"{step.id} is a {step.scope} step; it applies to {self.plan.database_service} only")
        return step, self.plan.database_service

    def hosts(self, service: str) -> tuple[Host, ...]:
        hosts = self.env.hosts_for(service)
        if not hosts:
            raise EngineError(f"the inventory has no host for service {service!r}")
        return hosts

    def restart_hosts(self, service: str, hosts: Sequence[str]) -> list[Host]:
        """The chosen hosts of `service` (all when none is named); EngineError for an unknown one."""
        if service not in self.env.service_names:
            raise EngineError(f"no service {service!r} in {self.env.name} ({', '.join(self.env.service_names)})")
        known = self.hosts(service)
        unknown = [h for h in hosts if h not in {k.name for k in known}]
        if unknown:
            raise EngineError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a host of {service} "
                f"({', '.join(k.name for k in known)})"
            )
        return [h for h in known if not hosts or h.name in hosts]

    # -- building -------------------------------------------------------------------------------
    async def build(
        self,
        step: Step,
        svc: str,
        service: str | None,
        direction: Direction,
        snap: FleetSnapshot,
        *,
        previous: Position | None = None,
        env_order_override: str | None = None,
    ) -> Preview:
        """The preview of `step` for `svc` (the service as asked: `service`), from `snap`; `previous`: the
        position of the environment this one comes after (for the env-order gate of an advance)."""
        now = time.time()
        changes, notes = await self._changes(step, svc, direction)
        pos = self.position(snap)
        target = pos.target(step.id, svc) if step.per_service else fleet_target(pos, step.id)
        restart = self._to_restart(step, svc, direction, snap, target, bool(changes))
        gates: list[GateResult] = []
        blockers: list[Blocker] = []
        per = service if step.per_service else None
        if direction == "advance":
            gates = self._gates(step, per, svc, snap, now)
            if self.env.after:
                gates.append(env_order_gate(step, self.env, previous, service=per, override=env_order_override))
        else:
            blockers = rollback_blockers(self.plan, step, per, snap)
        if restart:
            self._db_gates(snap, svc, gates, now)
        return self._preview(
            step.id,
            step.title,
            svc,
            direction,
            snap,
            restart,
            gates,
            target.state,
            changes=changes,
            blockers=blockers,
            notes=notes,
        )

    def build_restart(self, service: str, hosts: Sequence[Host], snap: FleetSnapshot) -> Preview:
        """A restart of `hosts` of `service`, one at a time, with no config change."""
        gates: list[GateResult] = []
        self._db_gates(snap, service, gates, time.time())
        return self._preview(
            RESTART,
            f"restart {service} (no configuration change)",
            service,
            "restart",
            snap,
            list(hosts),
            gates,
            "restart",
        )

    def _preview(
        self,
        step_id: str,
        title: str,
        svc: str,
        direction: Direction,
        snap: FleetSnapshot,
        restart: Sequence[Host],
        gates: Sequence[GateResult],
        state: str,
        *,
        changes: Sequence[Change] = (),
        blockers: Sequence[Blocker] = (),
        notes: Sequence[str] = (),
    ) -> Preview:
        return Preview(
            env=self.env.name,
            protected=self.env.protected,
            step=step_id,
            service=svc,
            direction=direction,
            title=title,
            changes=tuple(changes),
            change_lines=tuple(c.describe(self.env) for c in changes),
            restarts=tuple(self._restart_target(h, svc) for h in restart),
            gates=tuple(gates),
            blockers=tuple(blockers),
            snapshot_at=snap.taken_at,
            state=state,
            recreates=tuple(self.recreates(svc)),
            estimate_s=self._estimate(svc),
            notes=tuple(notes),
        )

    async def _changes(self, step: Step, svc: str, direction: Direction) -> tuple[list[Change], list[str]]:
        """What the store holds now → what the step sets (or, back, what was there before the step)."""
        changes: list[Change] = []
        notes: list[str] = []
        before = await self._previous_values(step, svc, notes) if direction == "rollback" else {}
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
        return changes, notes

    def _to_restart(
        self, step: Step, svc: str, direction: Direction, snap: FleetSnapshot, target: TargetPosition, changes: bool
    ) -> list[Host]:
        hosts = self.hosts(svc)
        if changes and direction == "advance":
            return list(hosts)
        if direction == "advance":
            # already configured: restart only the instances not running as configured (a rerun converges)
            return [h for h in hosts if _state_of(target, h.name) not in LIVE_STATES]
        # back: only the instances that run (or may run) the step's values need a restart — one whose
        # restart failed still runs the old values, and is back as soon as the store is
        if step.per_service:
            return [h for h in hosts if _runs_step(step, snap, h.name)]
        return list(hosts) if target.state != "pending" or read_live(step.live, snap).value is not False else []

    def _gates(self, step: Step, per: str | None, svc: str, snap: FleetSnapshot, now: float) -> list[GateResult]:
        out: list[GateResult] = []
        for g in step.gates_for_target(per):
            spec = GATES.get(g)
            scope = svc if (spec and spec.per_service) else None
            out.append(evaluate(g, snap, service=scope, now=now, plan=self.plan, step=step))
        return out

    def _restart_target(self, host: Host, service: str) -> RestartTarget:
        pre = self.env.service(service).pre_restart
        values = {"root": host.root.rstrip("/"), "service": service, "host": host.name, "address": host.address}
        return RestartTarget(
            host.name, self.env.update_command(host), render_command(pre, values, literal_braces=True) if pre else ""
        )

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

    async def _previous_values(self, step: Step, service: str, notes: list[str]) -> dict[str, str | None]:
        """The values that were there before the last advance of `step` for `service`, from the journals'
        intents — what a rollback restores, so a value set by hand before the step is never lost. An
        unreadable fleet journal leaves this machine's (a note says so): rollback is never refused for it."""
        try:
            fleet = await self.journal.read_fleet(5000)
        except JournalError as exc:
            fleet = []
            notes.append(f"{exc}; the values before the step come from this machine's journal only")
        entries = [*self.journal.read_local(5000), *fleet]
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


def fleet_target(pos: Position, step_id: str) -> TargetPosition:
    """The one target of a step that is not per service (the database, or the environment)."""
    sp = pos.step_position(step_id)
    if sp is None or not sp.targets:
        raise EngineError(f"no position for step {step_id}")
    return sp.targets[0]
