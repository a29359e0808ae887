"""`cockpit`: the command line. Thin over the engine; the TUI is imported only when it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from plans.plan import PlanError
from probes.inventory import Environment, InventoryError, load_inventory


def default_inventory() -> Path:
    env = os.environ.get("COCKPIT_INVENTORY")
    if env:
        return Path(env)
    from lab.topology import default_lab_dir

    return default_lab_dir() / "inventory.toml"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cockpit",
        description="Rollout Cockpit: drive the platform's internal-encryption rollout (Postgres, PgBouncer, "
                    "Redis) over SSH, one step and one service at a time.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lab", help="the lab: a real miniature platform on loopback (cockpit lab --help)",
                   add_help=False)
    st = sub.add_parser("status", help="every leg of every host, live: table or JSON snapshot")
    st.add_argument("--env", default=None, help="environment (default: the inventory's default_env)")
    st.add_argument("--inventory", type=Path, default=None,
                    help="inventory TOML (default: $COCKPIT_INVENTORY or the lab's)")
    st.add_argument("--json", action="store_true", help="print the FleetSnapshot as JSON (docs/snapshot.md)")
    pl = sub.add_parser("plan", help="where every step and service stands, what is next, each gate's verdict")
    _common(pl)
    pl.add_argument("--json", action="store_true")
    for name, verb in (("advance", "apply"), ("rollback", "roll back")):
        a = sub.add_parser(name, help=f"{verb} one step for one service: preview, confirm, restart one instance at "
                                      "a time, verify")
        _common(a)
        a.add_argument("step", nargs="?", default=None,
                       help="step id (pg-2 … pg-7, redis-1 … redis-3); default: the next one" if name == "advance"
                       else "step id to roll back")
        a.add_argument("--service", default=None, help="the app service, for per-service steps")
        a.add_argument("--yes", action="store_true", help="do not ask (automation); needs --reason")
        a.add_argument("--reason", default="", help="why: goes in the journal")
        a.add_argument("--dry-run", action="store_true", help="show the preview; change nothing")
        a.add_argument("--force", action="store_true", help="override closed gates (journaled with the reason)")
        a.add_argument("--override-env-order", default=None, metavar="REASON",
                       help="advance before the environment this one comes after (inventory `after`) has the "
                            "step verified; the reason is quoted in the gate and journaled")
    c = sub.add_parser("certs", help="runbook step 1: push the cert material to Secrets Manager, or check it")
    _common(c)
    csub = c.add_subparsers(dest="certs_cmd", required=True)
    cp = csub.add_parser("push", help="validate CA, cert and key locally, then write them to every consuming "
                                      "service's secret (merging keys)")
    cp.add_argument("--ca", type=Path, required=True)
    cp.add_argument("--cert", type=Path, required=True)
    cp.add_argument("--key", type=Path, required=True)
    cp.add_argument("--dry-run", action="store_true")
    csub.add_parser("check", help="validate what is stored under every consuming service")
    from tui.commands import add_tui_commands

    add_tui_commands(sub)
    lk = sub.add_parser("lock", help="show the fleet lock, or break a stale one (--break --reason)")
    _common(lk)
    lk.add_argument("--break", dest="break_", action="store_true")
    lk.add_argument("--reason", default="")
    return ap


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help="environment (default: the inventory's default_env)")
    p.add_argument("--inventory", type=Path, default=None,
                   help="inventory TOML (default: $COCKPIT_INVENTORY or the lab's)")
    p.add_argument("--plan-file", type=Path, default=None, help="a plan TOML (default: the shipped runbook)")


async def _status(inv_path: Path, env_name: str | None, as_json: bool) -> int:
    from probes.collect import Collector
    from probes.model import Verdict
    from probes.snapshot import snapshot_to_json
    from tui.statustext import render

    inv = load_inventory(inv_path)
    env = inv.env(env_name)
    collector = Collector(env)
    try:
        snap = await collector.snapshot()
    finally:
        await collector.aclose()
    if as_json:
        print(json.dumps(snapshot_to_json(snap), indent=1))
    else:
        print(render(snap))
    return 0 if snap.verdict in (Verdict.OK, Verdict.WARN) else 1


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from plans.plan import default_plan, load_plan

    inv = load_inventory(args.inventory or default_inventory())
    env = inv.env(args.env)
    plan = load_plan(args.plan_file) if getattr(args, "plan_file", None) else default_plan()
    return env, plan


def _previous_env(args: argparse.Namespace, env: Environment) -> Environment | None:
    """The environment `env` comes after in the inventory (`after`), for the cross-environment gate."""
    return load_inventory(args.inventory or default_inventory()).env(env.after) if env.after else None


async def _plan_cmd(args: argparse.Namespace) -> int:
    from plans.engine import Engine
    from plans.gates import GATES, env_order_gate, evaluate
    from plans.position import next_action_in
    from probes.collect import Collector

    env, plan = _load(args)
    collector = Collector(env)
    try:
        engine = Engine(env, plan, collector, previous_env=_previous_env(args, env))
        snap = await engine.snapshot()
        pos = engine.position(snap)
        lock = await engine.lock.current()
        previous = await engine.previous_position() if env.after else None
    finally:
        await collector.aclose()
    nxt = next_action_in(pos)
    if args.json:
        out = pos.to_json()
        out["next"] = {"step": nxt[0].id, "service": nxt[1]} if nxt else None
        out["lock"] = lock.describe() if lock else None
        print(json.dumps(out, indent=1))
        return 0
    import time as _t

    print(f"plan {plan.name} in {env.name}" + (" [PROTECTED]" if env.protected else "")
          + f"   lock: {lock.describe() if lock else 'free'}")
    for sp in pos.steps:
        st = sp.step
        print(f"{st.id:<8} {sp.state:<10} {st.title}" + ("  (optional)" if st.optional else ""))
        for t in sp.targets:
            if t.service is not None and (st.per_service or len(sp.targets) > 1):
                print(f"           {t.service:<10} {t.state:<10} {t.detail}")
                for i in t.instances if t.instances_differ else ():
                    print(f"               {i.host:<24} {i.state:<10} {i.detail}")
            elif t.detail and t.state not in ("verified",):
                print(f"           {t.detail}")
    for d in pos.dangers:
        print(f"DANGER  {d.step}" + (f" {d.service}" if d.service else "") + f": {d.message}")
    if nxt is None:
        print("next: nothing — every step is verified")
        return 0
    step, service = nxt
    print(f"next: {step.id} ({step.title})" + (f" for {service}" if service else ""))
    now = _t.time()
    for g in step.gates_for_target(service if step.per_service else None):
        spec = GATES.get(g)
        svc = service if (spec and spec.per_service) else None
        r = evaluate(g, snap, service=svc, now=now)
        print(f"  gate [{r.status:>7}] {g}: {r.reason}")
    if env.after:
        r = env_order_gate(step, env, previous, service=service if step.per_service else None)
        print(f"  gate [{r.status:>7}] {r.gate}: {r.reason}")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


async def _advance_cmd(args: argparse.Namespace, direction: str) -> int:
    from plans.engine import Engine, EngineError, EngineEvent
    from plans.lock import LockError
    from plans.position import next_action_in
    from probes.collect import Collector

    env, plan = _load(args)
    if args.yes and not args.reason.strip() and not args.dry_run:
        print("cockpit: --yes needs --reason (it goes in the journal)", file=sys.stderr)
        return 2
    collector = Collector(env)
    engine = Engine(env, plan, collector, previous_env=_previous_env(args, env))
    locked = False
    try:
        snap = await engine.snapshot()
        step_id, service = args.step, args.service
        if step_id is None:
            if direction == "rollback":
                print("cockpit: name the step to roll back", file=sys.stderr)
                return 2
            nxt = next_action_in(engine.position(snap))
            if nxt is None:
                print("nothing to advance: every step is verified")
                return 0
            step_id = nxt[0].id
            service = service or (nxt[1] if nxt[0].per_service else None)
        if not args.dry_run:
            try:
                await engine.acquire_lock(step_id)
                locked = True
            except LockError as exc:
                print(f"cockpit: {exc}", file=sys.stderr)
                return 1
            snap = await engine.snapshot()  # the preview is of the fleet as it is under the lock
        try:
            preview = await engine.preview(step_id, service, direction=direction, snapshot=snap,
                                           env_order_override=args.override_env_order)
        except EngineError as exc:
            print(f"cockpit: {exc}", file=sys.stderr)
            return 2
        print(preview.describe())
        if args.dry_run:
            return 0
        if not preview.open and not args.force:
            print("refused: " + "; ".join(preview.closed_reasons), file=sys.stderr)
            return 1
        reason = args.reason
        if not args.yes:
            if env.protected:
                if _ask(f"{env.name} is protected: type its name to confirm: ").strip() != env.name:
                    print("not confirmed; nothing done")
                    return 1
            elif _ask("proceed? [y/N] ").strip().lower() not in ("y", "yes"):
                print("not confirmed; nothing done")
                return 1
            while not reason.strip():
                reason = _ask("reason (for the journal): ")
                if not sys.stdin.isatty() and not reason:
                    print("cockpit: a reason is required", file=sys.stderr)
                    return 1

        def show(e: EngineEvent) -> None:
            prefix = f"[{e.host}] " if e.host else ""
            for line in e.text.splitlines() or [""]:
                print(f"  {e.kind:<13} {prefix}{line}", flush=True)

        outcome = await engine.apply(preview, reason=reason, force=args.force, on_event=show)
        print(("OK: " if outcome.ok else "FAILED: ") + outcome.reason)
        if not outcome.ok and outcome.stage in ("restart", "verify") and direction == "advance":
            cmd = f"cockpit rollback {step_id}" + (f" --service {preview.service}" if plan.step(step_id).per_service
                                                   else "")
            print(f"the roll stopped; to restore: {cmd}")
        return 0 if outcome.ok else 1
    finally:
        if locked:
            await engine.release_lock()
        await collector.aclose()


async def _certs_cmd(args: argparse.Namespace) -> int:
    from plans import certs as certs_mod
    from probes.aws import Aws
    from probes.model import Verdict

    env, _ = _load(args)
    aws = Aws(env)
    if args.certs_cmd == "push":
        try:
            ca, cert, key = args.ca.read_bytes(), args.cert.read_bytes(), args.key.read_bytes()
        except OSError as exc:
            print(f"cockpit: {exc}", file=sys.stderr)
            return 2
        res = await certs_mod.push(env, aws, ca, cert, key, dry_run=args.dry_run)
        for c in res.checks:
            print(f"  [{c.verdict.value:>5}] {c.check}: {c.summary}")
        print(("OK: " if res.ok else "REFUSED: ") + res.reason)
        return 0 if res.ok else 1
    results = await certs_mod.check(env, aws)
    for c in results:
        print(f"  [{c.verdict.value:>5}] {c.target}: {c.check}: {c.summary}")
    return 0 if all(c.verdict in (Verdict.OK, Verdict.WARN) for c in results) else 1


async def _lock_cmd(args: argparse.Namespace) -> int:
    from plans.engine import Engine, EngineError
    from plans.lock import LockError
    from probes.collect import Collector

    env, plan = _load(args)
    collector = Collector(env)
    try:
        engine = Engine(env, plan, collector)
        if args.break_:
            try:
                old = await engine.break_lock(args.reason)
            except (EngineError, LockError) as exc:
                print(f"cockpit: {exc}", file=sys.stderr)
                return 2
            print(f"lock broken (was: {old.describe() if old else 'free'}); journaled")
            return 0
        cur = await engine.lock.current()
        print(f"lock: {cur.describe() if cur else 'free'}")
        return 0
    finally:
        await collector.aclose()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:], prog="cockpit lab")
    from tui.commands import TUI_COMMANDS, default_to_drive, run_tui_command

    args = build_parser().parse_args(default_to_drive(argv))
    try:
        if args.cmd in TUI_COMMANDS:
            return run_tui_command(args)
        if args.cmd == "status":
            return asyncio.run(_status(args.inventory or default_inventory(), args.env, args.json))
        if args.cmd == "plan":
            return asyncio.run(_plan_cmd(args))
        if args.cmd in ("advance", "rollback"):
            return asyncio.run(_advance_cmd(args, args.cmd))
        if args.cmd == "certs":
            return asyncio.run(_certs_cmd(args))
        if args.cmd == "lock":
            return asyncio.run(_lock_cmd(args))
    except (InventoryError, PlanError) as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"cockpit: {exc} — pass --inventory FILE or start the lab (cockpit lab up)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
