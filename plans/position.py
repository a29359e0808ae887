"""Where the rollout stands, derived from one `FleetSnapshot` (and the journals' unfinished intents) and
never stored.

For each step and each of its targets (a service, or the environment for a fleet step) the state is:

* `pending`: the config store does not hold the step's values;
* `configured`: it holds them (or some of them: a danger), but they do not run everywhere yet;
* `live`: they run on every instance, and the step's verification is still to pass;
* `verified`: they run, and the verification passes;
* `failed`: they run (or were applied), and the verification fails;
* `unknown`: a fact needed to tell these apart could not be measured.

A per-service target carries one `InstancePosition` per host, so instances that differ show up.
`Position.dangers` flags states nobody chose: a step configured before the one it needs, a gate
closed under a configured step, a step only partly configured, an apply that stopped half-way (an
unfinished intent). `next_action` walks the runbook order to the first target that is not verified.
The cross-environment gate (`env_order_gate`) reads another environment's `Position`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from inventory.model import Environment
from plans.facts import ConfigReading, Reading, config_reading, read_live, read_live_instance
from plans.gates import GATES, GateResult, GateStatus, evaluate
from plans.intent import Intent
from plans.model import Plan, Step
from probes.model import Unknown, Verdict, Why
from probes.snapshot import ConfiguredValue, FleetSnapshot

__all__ = [
    "STATES",
    "Danger",
    "InstancePosition",
    "Position",
    "State",
    "StepPosition",
    "TargetPosition",
    "derive_position",
    "env_order_gate",
    "next_action",
    "next_action_in",
]

State = Literal["pending", "configured", "live", "verified", "failed", "unknown"]
STATES: Final[tuple[State, ...]] = ("pending", "configured", "live", "verified", "failed", "unknown")


@dataclass(frozen=True, slots=True)
class InstancePosition:
    host: str
    state: State  # pending | configured | live | failed | unknown (verification is per target)
    detail: str


@dataclass(frozen=True, slots=True)
class TargetPosition:
    step: str
    service: str | None  # None: a fleet step (one action for the environment)
    state: State
    detail: str
    configured: bool | Unknown  # the config store holds the step's values (on any host)
    instances: tuple[InstancePosition, ...] = ()
    partial: bool = False  # only some of the step's values are configured

    def instance(self, host: str) -> InstancePosition | None:
        return next((i for i in self.instances if i.host == host), None)

    @property
    def instances_differ(self) -> bool:
        return len({i.state for i in self.instances}) > 1


@dataclass(frozen=True, slots=True)
class StepPosition:
    step: Step
    state: State  # over all targets
    targets: tuple[TargetPosition, ...]

    def target(self, service: str | None) -> TargetPosition | None:
        return next((t for t in self.targets if t.service == service), None)


@dataclass(frozen=True, slots=True)
class Danger:
    """A state nobody chose: what is configured, what it endangers, and what to do."""

    step: str
    service: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Position:
    env: str
    taken_at: float
    steps: tuple[StepPosition, ...]  # in the plan's run order
    dangers: tuple[Danger, ...]

    def step_position(self, step_id: str) -> StepPosition | None:
        return next((s for s in self.steps if s.step.id == step_id), None)

    def target(self, step_id: str, service: str | None = None) -> TargetPosition:
        sp = self.step_position(step_id)
        t = sp.target(service) if sp is not None else None
        if t is None:
            raise KeyError(f"no position for step {step_id!r}, service {service!r}")
        return t

    def state(self, step_id: str, service: str | None = None) -> State:
        """The state of a step (over all its targets), or of one target with `service`."""
        if service is None:
            sp = self.step_position(step_id)
            if sp is None:
                raise KeyError(f"no position for step {step_id!r}")
            return sp.state
        return self.target(step_id, service).state

    def to_json(self) -> dict[str, Any]:
        def cfg(v: bool | Unknown) -> Any:
            return v.to_json() if isinstance(v, Unknown) else v

        return {
            "env": self.env,
            "taken_at": self.taken_at,
            "steps": [
                {
                    "step": sp.step.id,
                    "state": sp.state,
                    "targets": [
                        {
                            "service": t.service,
                            "state": t.state,
                            "detail": t.detail,
                            "configured": cfg(t.configured),
                            "partial": t.partial,
                            "instances": [{"host": i.host, "state": i.state, "detail": i.detail} for i in t.instances],
                        }
                        for t in sp.targets
                    ],
                }
                for sp in self.steps
            ],
            "dangers": [{"step": d.step, "service": d.service, "message": d.message} for d in self.dangers],
        }


# --------------------------------------------------------------------------------------------- deriving


def _verify(plan: Plan, step: Step, snapshot: FleetSnapshot, service: str | None) -> GateResult:
    """The step's verification as of the snapshot itself (no age limit: a position is "as of")."""
    per_service = GATES[step.verify].per_service
    return evaluate(
        step.verify,
        snapshot,
        service=service if per_service else None,
        now=snapshot.taken_at,
        max_age=None,
        plan=plan,
        step=step,
    )


def _certs_target(plan: Plan, step: Step, snapshot: FleetSnapshot) -> TargetPosition:
    missing = [c for c in snapshot.certs if c.check == "certs.present" and c.verdict is Verdict.FAIL]
    if missing:
        where = ", ".join(dict.fromkeys(c.target for c in missing))
        summary = "; ".join(dict.fromkeys(c.summary for c in missing))
        return TargetPosition(
            step.id, None, "pending", f"cert material is missing under {where} ({summary}) — run {step.command}", False
        )
    v = _verify(plan, step, snapshot, None)
    state: State = "verified" if v.status == "open" else ("failed" if v.status == "closed" else "unknown")
    return TargetPosition(
        step.id, None, state, v.reason, True if state != "unknown" else Unknown(_cause_why(snapshot), v.reason)
    )


def _cause_why(snapshot: FleetSnapshot) -> Why:
    return snapshot.causes[0].why if snapshot.causes else Why.NOT_CHECKED


_At = Callable[[State, str], TargetPosition]


def _verified(
    plan: Plan, step: Step, snapshot: FleetSnapshot, service: str | None, live_detail: str, at: _At
) -> TargetPosition:
    v = _verify(plan, step, snapshot, service)
    if v.status == "open":
        return at("verified", v.reason)
    if v.status == "closed":
        return at("failed", f"live ({live_detail}) but {step.verify} fails: {v.reason}")
    return at("unknown", f"live ({live_detail}); {step.verify} could not be measured: {v.reason}")


def _database_target(plan: Plan, step: Step, service: str, snapshot: FleetSnapshot) -> TargetPosition:
    cfg = config_reading(plan, step, service, snapshot)
    live = read_live(step.live, snapshot)

    def at(state: State, detail: str) -> TargetPosition:
        return TargetPosition(step.id, service, state, detail, cfg.value, partial=bool(cfg.partial))

    if cfg.partial:
        return at("configured", f"{cfg.detail} — restart only after the step is complete")
    if cfg.value is False:
        detail = f"not configured: {cfg.detail}"
        if live.value is True:
            detail += f"; still live ({live.detail}) until the database host restarts"
        return at("pending", detail)
    if isinstance(live.value, Unknown):
        return at("unknown", f"{live.detail} ({cfg.detail})")
    if isinstance(cfg.value, Unknown):
        if live.value:
            v = _verify(plan, step, snapshot, None)
            if v.status == "open":
                return at("verified", f"{v.reason} ({cfg.detail})")
        return at("unknown", f"{cfg.detail}; live: {live.detail}")
    if not live.value:
        return at("configured", f"configured ({cfg.detail}), not live yet ({live.detail}) — restart the database host")
    return _verified(plan, step, snapshot, service, live.detail, at)


def _instance_state(cfg: ConfigReading, live: Reading, healthy: bool | Unknown) -> tuple[State, str]:
    if cfg.partial:
        return "configured", cfg.detail
    if cfg.value is False:
        if live.value is True:
            return "pending", f"not configured ({cfg.detail}), but still {live.detail} until it restarts"
        return "pending", f"not configured ({cfg.detail})"
    if isinstance(cfg.value, Unknown):
        if live.value is True:
            return "live", f"{live.detail} ({cfg.detail})"
        return "unknown", f"{cfg.detail}; {live.detail}"
    if live.value is True:
        return "live", live.detail
    if live.value is False:
        return "configured", f"configured, but still {live.detail} — restart it"
    if healthy is False:
        return "failed", f"configured, unhealthy and {live.detail}"
    return "unknown", f"configured; {live.detail}"


def _service_target(plan: Plan, step: Step, service: str, snapshot: FleetSnapshot) -> TargetPosition:
    insts = snapshot.instances_of(service)
    if not insts:
        cfg = config_reading(plan, step, service, snapshot)
        state: State = "pending" if cfg.value is False and not cfg.partial else "unknown"
        return TargetPosition(
            step.id,
            service,
            state,
            f"no instance of {service} is in the snapshot ({cfg.detail})",
            cfg.value,
            partial=bool(cfg.partial),
        )
    per: list[InstancePosition] = []
    cfgs: list[ConfigReading] = []
    for inst in insts:
        cfg = config_reading(plan, step, service, snapshot, instance=inst)
        st, detail = _instance_state(cfg, read_live_instance(step.live, inst), inst.healthy)
        per.append(InstancePosition(inst.host, st, detail))
        cfgs.append(cfg)
    configured: bool | Unknown
    if any(c.value is True for c in cfgs):
        configured = True
    else:
        configured = next((c.value for c in cfgs if isinstance(c.value, Unknown)), False)
    partial = any(c.partial for c in cfgs) or (
        any(c.value is True for c in cfgs) and any(c.value is False for c in cfgs)
    )
    states = [p.state for p in per]
    instances = tuple(per)

    def at(state: State, detail: str) -> TargetPosition:
        return TargetPosition(step.id, service, state, detail, configured, instances, partial)

    listing = "; ".join(f"{p.host} {p.state} ({p.detail})" for p in per)
    if all(s == "pending" for s in states):
        return at("pending", per[0].detail if len({p.detail for p in per}) == 1 else listing)
    if "failed" in states:
        return at("failed", listing)
    if "unknown" in states:
        return at("unknown", listing)
    if all(s == "live" for s in states):
        return _verified(plan, step, snapshot, service, f"on {', '.join(p.host for p in per)}", at)
    return at("configured", listing)


def _aggregate(targets: Sequence[TargetPosition]) -> State:
    states = {t.state for t in targets}
    if not targets or states == {"verified"}:
        return "verified"
    if states == {"pending"}:
        return "pending"
    if "failed" in states:
        return "failed"
    if "unknown" in states:
        return "unknown"
    if states <= {"live", "verified"}:
        return "live"
    return "configured"


def _remedy(step: Step, service: str | None) -> str:
    svc = f" --service {service}" if step.per_service and service else ""
    return f"`cockpit advance {step.id}{svc}` to complete it, or `cockpit rollback {step.id}{svc}` to revert it"


def _dangers(
    plan: Plan, snapshot: FleetSnapshot, steps: Sequence[StepPosition], intents: Sequence[Intent]
) -> list[Danger]:
    by_id = {sp.step.id: sp for sp in steps}
    out = [_intent_danger(snapshot, steps, intent) for intent in intents]
    for sp in steps:
        for t in sp.targets:
            out += _target_dangers(plan, snapshot, sp.step, t, by_id)
    return out


def _intent_danger(snapshot: FleetSnapshot, steps: Sequence[StepPosition], intent: Intent) -> Danger:
    """An apply that stopped half-way: what it wrote, what it did not, and the remedy."""
    step = next((sp.step for sp in steps if sp.step.id == intent.step), None)
    svc = intent.service if step is not None and step.per_service else None
    written = [c.var for c in intent.changes if _holds(snapshot, intent.service, c.var, c.new)]
    todo = [c.var for c in intent.changes if c.var not in written]
    what = f"written: {', '.join(written) or 'nothing'}; not written: {', '.join(todo) or 'nothing'}"
    remedy = _remedy(step, svc) if step is not None else "preview the step again"
    return Danger(
        intent.step,
        svc,
        f"an {intent.direction} of {intent.step} for {intent.service} by "
        f"{intent.who} on {intent.where} did not finish ({what}) — run {remedy}",
    )


def _target_dangers(
    plan: Plan, snapshot: FleetSnapshot, step: Step, t: TargetPosition, by_id: Mapping[str, StepPosition]
) -> list[Danger]:
    """A target only partly configured; or configured while nothing runs it, under a closed gate, or
    before a step it needs."""
    out: list[Danger] = []
    if t.partial:
        out.append(
            Danger(
                step.id,
                t.service,
                f"{step.id} ({step.summary}) is only partly configured"
                f"{' for ' + t.service if t.service else ''}: {t.detail} — a "
                f"restart would run half of it; run {_remedy(step, t.service)}",
            )
        )
    if t.configured is not True:
        return out
    for_svc = f" for {t.service}" if step.per_service and t.service else ""
    if _runs_nowhere(step, t):
        who = (
            "no instance runs it yet: the next restart of any of them"
            if step.per_service
            else "the database host does not run it yet: its next restart"
        )
        out.append(
            Danger(
                step.id,
                t.service,
                f"{step.id} ({step.summary}) is configured{for_svc} but {who} "
                "(a reboot, a deploy) would apply it outside the cockpit — run "
                f"{_remedy(step, t.service)}",
            )
        )
    for g in step.gates_for_target(t.service):
        svc = t.service if GATES[g].per_service else None
        r = evaluate(g, snapshot, service=svc, now=snapshot.taken_at, max_age=None, plan=plan, step=step)
        if r.status == "closed":
            out.append(
                Danger(
                    step.id,
                    t.service,
                    f"{step.id} ({step.summary}) is configured{for_svc} but its gate {g} is closed: {r.reason}",
                )
            )
    return out + _early_dangers(step, t, for_svc, by_id)


def _early_dangers(step: Step, t: TargetPosition, for_svc: str, by_id: Mapping[str, StepPosition]) -> list[Danger]:
    """A configured target whose dependency is not configured (for the same service, on per-service steps)."""
    out: list[Danger] = []
    for a in step.after:
        ap = by_id[a]
        before = (
            [x for x in ap.targets if x.service == t.service]
            if (ap.step.per_service and step.per_service)
            else list(ap.targets)
        )
        early = [x for x in before if x.configured is False]
        if early:
            where = ", ".join(x.service for x in early if x.service)
            out.append(
                Danger(
                    step.id,
                    t.service,
                    f"{step.id} ({step.summary}) is configured{for_svc} before "
                    f"{a} ({ap.step.summary}){' for ' + where if where else ''} "
                    f"— apply {a} first, or roll {step.id} back",
                )
            )
    return out


def _runs_nowhere(step: Step, t: TargetPosition) -> bool:
    """Configured (wholly), and measured not running anywhere: every instance still runs the old values."""
    if t.partial or step.kind == "certs":
        return False
    if step.per_service:
        return bool(t.instances) and all(i.state == "configured" for i in t.instances)
    return t.state == "configured"


def _holds(snapshot: FleetSnapshot, service: str, var: str, value: str | None) -> bool:
    cv = snapshot.configured.get(service, {}).get(var)
    if isinstance(cv, ConfiguredValue):
        return cv.value == value
    vals = [i.configured.get(var) for i in snapshot.instances_of(service)]
    return bool(vals) and all(isinstance(v, ConfiguredValue) and v.value == value for v in vals)


def derive_position(
    plan: Plan, snapshot: FleetSnapshot, services_in_order: Sequence[str], *, intents: Sequence[Intent] = ()
) -> Position:
    """Every step's position in `snapshot`. `services_in_order`: the environment's app services in
    inventory order (what "others" expands to). `intents`: the journals' unfinished intents."""
    steps: list[StepPosition] = []
    for step in plan.steps:
        targets: list[TargetPosition]
        if snapshot.managed_database:
            why = f"{snapshot.env} uses a managed database (RDS/ElastiCache): the runbook does not apply"
            names: list[str | None] = [None] if step.scope == "fleet" else list(plan.targets(step, services_in_order))
            targets = [TargetPosition(step.id, n, "unknown", why, Unknown(Why.NOT_CHECKED, why)) for n in names]
        elif step.kind == "certs":
            targets = [_certs_target(plan, step, snapshot)]
        elif step.scope == "database":
            targets = [_database_target(plan, step, plan.database_service, snapshot)]
        else:
            targets = [_service_target(plan, step, s, snapshot) for s in plan.targets(step, services_in_order)]
        steps.append(StepPosition(step, _aggregate(targets), tuple(targets)))
    dangers = [] if snapshot.managed_database else _dangers(plan, snapshot, steps, intents)
    return Position(snapshot.env, snapshot.taken_at, tuple(steps), tuple(dangers))


def next_action_in(position: Position, *, include_optional: bool = True) -> tuple[Step, str | None] | None:
    """The first target, in run order, that is not verified: required steps first, then optional ones
    (when `include_optional`). None when every target is verified."""
    passes = (False, True) if include_optional else (False,)
    for optional in passes:
        for sp in position.steps:
            if sp.step.optional != optional:
                continue
            for t in sp.targets:
                if t.state != "verified":
                    return sp.step, t.service
    return None


def next_action(
    plan: Plan, snapshot: FleetSnapshot, services_in_order: Sequence[str], *, include_optional: bool = True
) -> tuple[Step, str | None] | None:
    """What to do next: (step, service) — service is None for a fleet step and the database service for a
    database step — or None when everything is verified or the runbook does not apply."""
    if snapshot.managed_database:
        return None
    return next_action_in(derive_position(plan, snapshot, services_in_order), include_optional=include_optional)


# --------------------------------------------------------------------------------------------- env order


def env_order_gate(
    step: Step,
    env: Environment,
    previous_env_position: Position | None,
    *,
    service: str | None = None,
    override: str | None = None,
) -> GateResult:
    """May `step` run in `env` yet? Only once the environment it comes after (`env.after`) has it verified
    — for `service` when given, else for every target there. `override` is a reason given by a person;
    a non-blank one opens the gate and is quoted in the reason."""
    name = "env_order"
    if not env.after:
        return GateResult(name, "open", f"no environment comes before {env.name}", service)
    prev = env.after
    status: GateStatus
    if previous_env_position is None:
        status, reason = (
            "unknown",
            f"{env.name} comes after {prev}, whose position is unknown — take a snapshot of {prev} first",
        )
    else:
        sp = previous_env_position.step_position(step.id)
        if sp is None:
            status, reason = "unknown", f"{prev}'s position has no step {step.id} (another plan?) — refresh {prev}"
        else:
            targets = [t for t in sp.targets if service is None or t.service == service] or list(sp.targets)
            behind = [t for t in targets if t.state != "verified"]
            if not targets:
                status, reason = "unknown", f"{step.id} has no target in {prev}, so it cannot be verified there"
            elif behind:
                where = ", ".join(f"{t.service or prev}: {t.state}" for t in behind)
                status, reason = (
                    "closed",
                    (
                        f"{step.id} is not verified in {prev} yet ({where}) — finish it there "
                        "first, or override with a reason"
                    ),
                )
            else:
                status, reason = "open", f"{step.id} is verified in {prev}"
    if status != "open" and override is not None:
        if override.strip():
            return GateResult(
                name,
                "open",
                f"overridden: {override.strip()} (otherwise: {reason})",
                service,
                overridden=override.strip(),
            )
        reason += "; an override needs a non-empty reason"
    return GateResult(name, status, reason, service)
