"""`cockpit`: the command line. Thin over the engine; the TUI is imported only when it runs.

Exit codes: 0 ok (or, with --dry-run, "would proceed"), 1 something failed or was refused (or "would be
refused"), 2 could not run (bad arguments, unreadable inventory), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inventory.load import load_inventory
from inventory.model import Environment, InventoryError
from plans.plan import Plan, PlanError

if TYPE_CHECKING:
    from plans.engine import Engine, EngineEvent, Outcome, Preview, RollControl


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
        _acting(a)
        a.add_argument("--override-env-order", default=None, metavar="REASON",
                       help="advance before the environment this one comes after (inventory `after`) has the "
                            "step verified; the reason is quoted in the gate and journaled")
    r = sub.add_parser("restart", help="restart one service, one instance at a time, with no configuration change "
                                       "(to land a pushed CA, or to clear drift)")
    _common(r)
    r.add_argument("service", help="the service to restart (e.g. api, database)")
    r.add_argument("--host", action="append", default=[], metavar="HOST",
                   help="only this host (repeatable; default: every host of the service)")
    _acting(r)
    c = sub.add_parser("certs", help="runbook step 1: push the cert material to Secrets Manager, or check it")
    csub = c.add_subparsers(dest="certs_cmd", required=True)  # --inventory/--env after push/check, like every command
    cp = csub.add_parser("push", help="validate CA, cert and key locally, then write to each consuming service's "
                                      "secret only what it needs and only what changes (takes the fleet lock)")
    cp.add_argument("--ca", type=Path, required=True)
    cp.add_argument("--cert", type=Path, required=True)
    cp.add_argument("--key", type=Path, required=True)
    cp.add_argument("--dry-run", action="store_true")
    cp.add_argument("--reason", default="", help="why: goes in the journal (asked for when missing)")
    _common(cp)
    _common(csub.add_parser("check", help="validate what is stored under every consuming service"))
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


def _acting(a: argparse.ArgumentParser) -> None:
    a.add_argument("--yes", action="store_true", help="do not ask (automation); needs --reason")
    a.add_argument("--reason", default="", help="why: goes in the journal")
    a.add_argument("--dry-run", action="store_true",
                   help="show the preview; change nothing (exit 0: it would proceed, 1: it would be refused)")
    a.add_argument("--override", action="append", default=[], metavar="ID",
                   help="open exactly this closed gate or rollback blocker (its id is shown in brackets in the "
                        "preview); repeatable; journaled with --reason")
    a.add_argument("--force", action="store_true", help=argparse.SUPPRESS)


async def _status(inv_path: Path, env_name: str | None, as_json: bool) -> int:
    from plans.collecting import collector_for
    from plans.plan import default_plan
    from probes.model import Verdict
    from probes.snapshot import snapshot_to_json
    from tui.statustext import render

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


def _load(args: argparse.Namespace) -> tuple[Environment, Plan]:
    from plans.plan import default_plan, load_plan

    inv = load_inventory(args.inventory or default_inventory())
    env = inv.env(args.env)
    plan = load_plan(args.plan_file) if getattr(args, "plan_file", None) else default_plan()
    return env, plan


def _previous_env(args: argparse.Namespace, env: Environment) -> Environment | None:
    """The environment `env` comes after in the inventory (`after`), for the cross-environment gate."""
    return load_inventory(args.inventory or default_inventory()).env(env.after) if env.after else None


def _engine(args: argparse.Namespace, *, previous: bool = True) -> Engine:
    from plans.collecting import collector_for
    from plans.engine import Engine

    env, plan = _load(args)
    return Engine(env, plan, collector_for(env, plan), previous_env=_previous_env(args, env) if previous else None)


async def _plan_cmd(args: argparse.Namespace) -> int:
    import time as _t

    from plans.gates import GATES, evaluate
    from plans.journal import JournalError
    from plans.lock import LockError
    from plans.position import env_order_gate, next_action_in

    engine = _engine(args)
    env, plan = engine.env, engine.plan
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
        previous = await engine.previous_position() if env.after else None
    finally:
        await engine.collector.aclose()
    nxt = next_action_in(pos)
    if args.json:
        out = pos.to_json()
        out["next"] = {"step": nxt[0].id, "service": nxt[1]} if nxt else None
        out["lock"] = lock.describe() if lock else None
        out["unknown"] = unknown
        out["causes"] = [c.to_json() for c in snap.causes]
        out["plan_warnings"] = list(plan.warnings)
        print(json.dumps(out, indent=1))
        return 0
    lock_text = lock.describe() if lock else ("UNKNOWN (see below)" if "lock" in unknown else "free")
    print(f"plan {plan.name} in {env.name}" + (" [PROTECTED]" if env.protected else "") + f"   lock: {lock_text}")
    for what, why in sorted(unknown.items()):
        print(f"COULD NOT READ the {what}: {why}")
    for cause in snap.causes:
        print(f"ROOT CAUSE ({cause.why.value}): {cause.text}")
    for warning in plan.warnings:
        print(f"PLAN WARNING: {warning}")
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
    blocked: list[str] = []
    for g in step.gates_for_target(service if step.per_service else None):
        spec = GATES.get(g)
        svc = service if (spec and spec.per_service) else None
        r = evaluate(g, snap, service=svc, now=now, plan=plan, step=step)
        print(f"  gate [{r.status:>7}] {g}: {r.reason}")
        blocked += [g] if not r.open else []
    if env.after:
        r = env_order_gate(step, env, previous, service=service if step.per_service else None)
        print(f"  gate [{r.status:>7}] {r.gate}: {r.reason}")
        blocked += [r.gate] if not r.open else []
    if blocked:
        print(f"next is blocked by {', '.join(blocked)}")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _term_as_interrupt() -> None:
    """SIGTERM and SIGHUP (a closed terminal) as Ctrl-C, so they unwind through every `finally` — the
    fleet lock is released — instead of killing the process with the lock held. During a roll,
    `_Interrupts` takes them over (stop after the current instance)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)


class _Interrupts:
    """Ctrl-C and SIGTERM during a roll: the first stops it after the current instance (the lock is
    released and the state said); a second says how to abandon it at once."""

    def __init__(self, control: RollControl) -> None:
        self.control = control
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        if self.count == 1:
            print("\ninterrupted: the roll stops after the current instance; the lock is then released "
                  "(press Ctrl-C again for how to abandon it now)", file=sys.stderr, flush=True)
            self.control.stop()
        else:
            print(f"\nthe current instance's restart is still running. To abandon it now: kill -9 {os.getpid()} "
                  "— the fleet lock then stays held (break it with `cockpit lock --break --reason …`) and "
                  "`cockpit plan` shows what was left half-done", file=sys.stderr, flush=True)

    def install(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self)

        def remove() -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

        return remove


def _show(e: EngineEvent) -> None:
    prefix = f"[{e.host}] " if e.host else ""
    for line in e.text.splitlines() or [""]:
        print(f"  {e.kind:<13} {prefix}{line}", flush=True)


def _confirm(env: Environment, preview: Preview, args: argparse.Namespace) -> str | None:
    """The reason, once confirmed; None when not confirmed."""
    reason: str = args.reason
    if args.yes:
        return reason
    if env.protected:
        if _ask(f"{env.name} is protected: type its name to confirm: ").strip() != env.name:
            print("not confirmed; nothing done")
            return None
    elif _ask(f"{preview.direction} in {env.name}? [y/N] ").strip().lower() not in ("y", "yes"):
        print("not confirmed; nothing done")
        return None
    while not reason.strip():
        reason = _ask("reason (for the journal): ")
        if not sys.stdin.isatty() and not reason:
            print("cockpit: a reason is required", file=sys.stderr)
            return None
    return reason


async def _act(args: argparse.Namespace, step_id: str | None,
               make_preview: Callable[[Engine], Coroutine[Any, Any, Preview]]) -> int:
    """Lock → preview → confirm → apply (interruptible) → release, for advance, rollback and restart."""
    from plans.engine import EngineError, RollControl
    from plans.lock import LockError

    if args.force:
        print("cockpit: --force is gone: open exactly the gate or blocker you mean with --override ID (the id is in "
              "brackets in the preview, e.g. --override no_plaintext_leg1) and a --reason", file=sys.stderr)
        return 2
    if (args.yes or args.override) and not args.reason.strip() and not args.dry_run:
        print("cockpit: --yes and --override need --reason (it goes in the journal)", file=sys.stderr)
        return 2
    _term_as_interrupt()  # a SIGTERM or SIGHUP before or after the roll unwinds like Ctrl-C: the lock is released
    engine = _engine(args)
    locked = False
    try:
        if not args.dry_run:
            try:
                await engine.acquire_lock(step_id or "restart")
                locked = True
            except (LockError, EngineError) as exc:
                print(f"cockpit: {exc}", file=sys.stderr)
                return 1
        try:
            preview = await make_preview(engine)
        except EngineError as exc:
            print(f"cockpit: {exc}", file=sys.stderr)
            return 2
        print(preview.describe())
        if args.dry_run:
            out = await engine.apply(preview, reason=args.reason, overrides=args.override, dry_run=True)
            if not out.ok:
                print(out.reason, file=sys.stderr)
            print("dry run: " + ("it would proceed" if out.ok else "it would be refused"))
            return 0 if out.ok else 1
        if not preview.open and not args.override:
            why = "refused: " + "; ".join(preview.closed_reasons)
            await engine.refused(preview, why)
            print(why + " — to go ahead anyway, name each with --override ID and give a --reason", file=sys.stderr)
            return 1
        reason = _confirm(engine.env, preview, args)
        if reason is None:
            return 1
        control = RollControl()
        interrupts = _Interrupts(control)
        remove = interrupts.install()
        try:
            outcome = await engine.apply(preview, reason=reason, overrides=args.override, on_event=_show,
                                         control=control)
        finally:
            remove()
            _term_as_interrupt()
        _report(engine, preview, outcome)
        return 0 if outcome.ok else 1
    finally:
        if locked:
            try:
                await engine.release_lock()
                print("lock released")
            except Exception as exc:
                print(f"cockpit: the fleet lock could not be released: {exc} — break it with `cockpit lock --break "
                      "--reason …`", file=sys.stderr)
        await engine.collector.aclose()


def _report(engine: Engine, preview: Preview, outcome: Outcome) -> None:
    print(("OK: " if outcome.ok else "FAILED: ") + outcome.reason)
    for e in outcome.journal_errors:
        print(f"journal: {e}", file=sys.stderr)
    if outcome.rolled_back is not None:
        rb = outcome.rolled_back
        print(("automatic rollback OK: " if rb.ok else "automatic rollback FAILED: ") + rb.reason)
    if outcome.stage == "stopped":
        print(f"stopped: restarted with the new values: {', '.join(outcome.changed) or 'none'}; the config store holds "
              "the new values — `cockpit plan` shows each instance")
    if not outcome.ok and outcome.stage in ("restart", "verify", "stopped") and preview.direction == "advance" and \
            (outcome.rolled_back is None or not outcome.rolled_back.ok):
        svc = f" --service {preview.service}" if engine.plan.step(preview.step).per_service else ""
        print(f"to restore: cockpit rollback {preview.step}{svc}")


async def _advance_cmd(args: argparse.Namespace, direction: str) -> int:
    from plans.position import next_action_in

    step_id, service = args.step, args.service
    if step_id is None:
        if direction == "rollback":
            print("cockpit: name the step to roll back", file=sys.stderr)
            return 2
        engine = _engine(args, previous=False)
        try:
            nxt = next_action_in(engine.position(await engine.snapshot()))
        finally:
            await engine.collector.aclose()
        if nxt is None:
            print("nothing to advance: every step is verified")
            return 0
        step_id = nxt[0].id
        service = service or (nxt[1] if nxt[0].per_service else None)
    chosen = step_id

    async def make(engine: Engine) -> Preview:
        snap = await engine.snapshot()  # the preview is of the fleet as it is under the lock
        return await engine.preview(chosen, service, direction="advance" if direction == "advance" else "rollback",
                                    snapshot=snap, env_order_override=getattr(args, "override_env_order", None))

    return await _act(args, step_id, make)


async def _restart_cmd(args: argparse.Namespace) -> int:
    async def make(engine: Engine) -> Preview:
        return await engine.preview_restart(args.service, args.host)

    return await _act(args, "restart", make)


async def _certs_cmd(args: argparse.Namespace) -> int:
    from plans import certs as certs_mod
    from plans.engine import EngineError
    from plans.lock import LockError
    from probes.model import Verdict

    if args.certs_cmd != "push":
        from probes.aws import Aws

        env, _ = _load(args)
        results = await certs_mod.check(env, Aws(env))
        for c in results:
            print(f"  [{c.verdict.value:>5}] {c.target}: {c.check}: {c.summary}")
        return 0 if all(c.verdict in (Verdict.OK, Verdict.WARN) for c in results) else 1
    try:
        ca, cert, key = args.ca.read_bytes(), args.cert.read_bytes(), args.key.read_bytes()
    except OSError as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    _term_as_interrupt()
    engine = _engine(args, previous=False)
    locked = False
    try:
        if not args.dry_run:
            reason = args.reason or _ask("reason (for the journal): ")
            if not reason.strip():
                print("cockpit: a reason is required (--reason)", file=sys.stderr)
                return 2
            try:
                await engine.acquire_lock("pg-1")
                locked = True
            except (LockError, EngineError) as exc:
                print(f"cockpit: {exc}", file=sys.stderr)
                return 1
        from probes.aws import Aws

        res = await certs_mod.push(engine.env, Aws(engine.env), ca, cert, key, dry_run=args.dry_run)
        for c in res.checks:
            print(f"  [{c.verdict.value:>5}] {c.check}: {c.summary}")
        if not args.dry_run:
            await engine.journal.write("certs-push", ok=res.ok, reason=reason, written=list(res.written),
                                       unchanged=list(res.unchanged), result=res.reason)
        print(("OK: " if res.ok else "REFUSED: ") + res.reason)
        return 0 if res.ok else 1
    finally:
        if locked:
            await engine.release_lock()
        await engine.collector.aclose()


async def _lock_cmd(args: argparse.Namespace) -> int:
    from plans.engine import EngineError
    from plans.lock import LockError

    engine = _engine(args, previous=False)
    try:
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
        await engine.collector.aclose()


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


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
            return _run(_status(args.inventory or default_inventory(), args.env, args.json))
        if args.cmd == "plan":
            return _run(_plan_cmd(args))
        if args.cmd in ("advance", "rollback"):
            return _run(_advance_cmd(args, args.cmd))
        if args.cmd == "restart":
            return _run(_restart_cmd(args))
        if args.cmd == "certs":
            return _run(_certs_cmd(args))
        if args.cmd == "lock":
            return _run(_lock_cmd(args))
    except (InventoryError, PlanError) as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        hint = " — pass --inventory FILE or start the lab (cockpit lab up)" if "inventory" in str(exc) or \
            str(exc).endswith(".toml") else ""
        print(f"cockpit: {exc}{hint}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`cockpit status --json | head`): say nothing more, exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
