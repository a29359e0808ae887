"""`cockpit status` and `cockpit plan`: where the fleet stands, read-only.

status: every leg of every host (a table, or the FleetSnapshot as JSON). plan: where every step and
service stands, what is next and each of its gates' verdicts; what could not be read (the lock, the
journal's intents) is said, never shown as free or none.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.compose import build_engine

if TYPE_CHECKING:
    from inventory.model import Environment
    from plans.engine import Engine
    from plans.lock import LockInfo
    from plans.plan import Plan, Step
    from plans.position import Position
    from probes.snapshot import FleetSnapshot


async def status_cmd(inv_path: Path, env_name: str | None, as_json: bool) -> int:
    from inventory.load import load_inventory
    from plans.collecting import collector_for
    from plans.plan import default_plan
    from probes.model import Verdict
    from probes.snapshot import snapshot_to_json
    from session.statustext import render

    inv = load_inventory(inv_path)
    env = inv.env(env_name)
    collector = collector_for(env, default_plan())
    try:
        snap = await collector.snapshot()
    finally:
        await collector.aclose()
    if as_json:
        print(json.dumps(snapshot_to_json(snap), indent=1))
    else:
        print(render(snap))
    return 0 if snap.verdict in (Verdict.OK, Verdict.WARN) else 1


@dataclass(frozen=True, slots=True)
class _Reading:
    """What `cockpit plan` read from the fleet: the snapshot, the position, the lock, the previous environment's
    position, and what could not be read (said, never shown as free or none)."""

    snap: FleetSnapshot
    pos: Position
    lock: LockInfo | None
    previous: Position | None
    unknown: dict[str, str]


async def _read(engine: Engine) -> _Reading:
    from plans.journal import JournalError
    from plans.lock import LockError

    unknown: dict[str, str] = {}  # what could not be read: said, never shown as free / none
    lock = None
    try:
        snap = await engine.snapshot()
        try:
            intents = await engine.intents()
        except JournalError as exc:
            intents, unknown["intents"] = [], str(exc)
        pos = engine.position(snap, intents)
        try:
            lock = await engine.lock.current()
        except LockError as exc:
            unknown["lock"] = str(exc)
        previous = await engine.previous_position() if engine.env.after else None
    finally:
        await engine.collector.aclose()
    return _Reading(snap, pos, lock, previous, unknown)


async def plan_cmd(args: argparse.Namespace) -> int:
    from plans.position import next_action_in

    engine = build_engine(args)
    env, plan = engine.env, engine.plan
    r = await _read(engine)
    nxt = next_action_in(r.pos)
    if args.json:
        out: dict[str, Any] = r.pos.to_json()
        out["next"] = {"step": nxt[0].id, "service": nxt[1]} if nxt else None
        out["lock"] = r.lock.describe() if r.lock else None
        out["unknown"] = r.unknown
        out["causes"] = [c.to_json() for c in r.snap.causes]
        out["plan_warnings"] = list(plan.warnings)
        print(json.dumps(out, indent=1))
        return 0
    _print_position(env, plan, r)
    if nxt is None:
        print("next: nothing — every step is verified")
        return 0
    _print_next(env, plan, r, *nxt)
    return 0


def _print_position(env: Environment, plan: Plan, r: _Reading) -> None:
    """The heading (plan, environment, lock), what could not be read, and every step's state."""
    lock_text = r.lock.describe() if r.lock else ("UNKNOWN (see below)" if "lock" in r.unknown else "free")
    print(f"plan {plan.name} in {env.name}" + (" [PROTECTED]" if env.protected else "") + f"   lock: {lock_text}")
    for what, why in sorted(r.unknown.items()):
        print(f"COULD NOT READ the {what}: {why}")
    for cause in r.snap.causes:
        print(f"ROOT CAUSE ({cause.why.value}): {cause.text}")
    for warning in plan.warnings:
        print(f"PLAN WARNING: {warning}")
    for sp in r.pos.steps:
        st = sp.step
        print(f"{st.id:<8} {sp.state:<10} {st.title}" + ("  (optional)" if st.optional else ""))
        for t in sp.targets:
            if t.service is not None and (st.per_service or len(sp.targets) > 1):
                print(f"           {t.service:<10} {t.state:<10} {t.detail}")
                for i in t.instances if t.instances_differ else ():
                    print(f"               {i.host:<24} {i.state:<10} {i.detail}")
            elif t.detail and t.state not in ("verified",):
                print(f"           {t.detail}")
    for d in r.pos.dangers:
        print(f"DANGER  {d.step}" + (f" {d.service}" if d.service else "") + f": {d.message}")


def _print_next(env: Environment, plan: Plan, r: _Reading, step: Step, service: str | None) -> None:
    """The next step and each of its gates' verdicts (the environment order's too)."""
    from plans.gates import GATES, evaluate
    from plans.position import env_order_gate

    print(f"next: {step.id} ({step.title})" + (f" for {service}" if service else ""))
    now = time.time()
    blocked: list[str] = []
    for g in step.gates_for_target(service if step.per_service else None):
        spec = GATES.get(g)
        svc = service if (spec and spec.per_service) else None
        res = evaluate(g, r.snap, service=svc, now=now, plan=plan, step=step)
        print(f"  gate [{res.status:>7}] {g}: {res.reason}")
        blocked += [g] if not res.open else []
    if env.after:
        res = env_order_gate(step, env, r.previous, service=service if step.per_service else None)
        print(f"  gate [{res.status:>7}] {res.gate}: {res.reason}")
        blocked += [res.gate] if not res.open else []
    if blocked:
        print(f"next is blocked by {', '.join(blocked)}")
