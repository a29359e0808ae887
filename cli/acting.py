"""`cockpit advance`, `rollback`, `restart` and `lock`: the commands that change the fleet (or its lock).

One shape for each change: lock → preview → confirm → apply (interruptible) → release. Ctrl-C, SIGTERM
and SIGHUP never leave the fleet lock held: before or after a roll they unwind like Ctrl-C through
every `finally`; during one, the first stops it after the current instance.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from cli.compose import build_engine

if TYPE_CHECKING:
    from inventory.model import Environment
    from plans.engine import Engine, EngineEvent, Outcome, Preview, RollControl


def ask(prompt: str) -> str:
    """A line from the operator; "" at the end of input."""
    try:
        return input(prompt)
    except EOFError:
        return ""


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def term_as_interrupt() -> None:
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
            print(
                "\ninterrupted: the roll stops after the current instance; the lock is then released "
                "(press Ctrl-C again for how to abandon it now)",
                file=sys.stderr,
                flush=True,
            )
            self.control.stop()
        else:
            print(
                f"\nthe current instance's restart is still running. To abandon it now: kill -9 {os.getpid()} "
                "— the fleet lock then stays held (break it with `cockpit lock --break --reason …`) and "
                "`cockpit plan` shows what was left half-done",
                file=sys.stderr,
                flush=True,
            )

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
        if ask(f"{env.name} is protected: type its name to confirm: ").strip() != env.name:
            print("not confirmed; nothing done")
            return None
    elif ask(f"{preview.direction} in {env.name}? [y/N] ").strip().lower() not in ("y", "yes"):
        print("not confirmed; nothing done")
        return None
    while not reason.strip():
        reason = ask("reason (for the journal): ")
        if not sys.stdin.isatty() and not reason:
            print("cockpit: a reason is required", file=sys.stderr)
            return None
    return reason


def _refused_arguments(args: argparse.Namespace) -> bool:
    """Arguments an acting command refuses, said on stderr: the gone --force, --yes or --override without a
    reason."""
    if args.force:
        print(
            "cockpit: --force is gone: open exactly the gate or blocker you mean with --override ID (the id is in "
            "brackets in the preview, e.g. --override no_plaintext_leg1) and a --reason",
            file=sys.stderr,
        )
        return True
    if (args.yes or args.override) and not args.reason.strip() and not args.dry_run:
        print("cockpit: --yes and --override need --reason (it goes in the journal)", file=sys.stderr)
        return True
    return False


async def _act(
    args: argparse.Namespace, step_id: str | None, make_preview: Callable[[Engine], Coroutine[Any, Any, Preview]]
) -> int:
    """Lock → preview → confirm → apply (interruptible) → release, for advance, rollback and restart."""
    from plans.engine import EngineError
    from plans.lock import LockError

    if _refused_arguments(args):
        return 2
    term_as_interrupt()  # a SIGTERM or SIGHUP before or after the roll unwinds like Ctrl-C: the lock is released
    engine = build_engine(args)
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
        return await _apply(engine, preview, args)
    finally:
        if locked:
            try:
                await engine.release_lock()
                print("lock released")
            except Exception as exc:
                print(
                    f"cockpit: the fleet lock could not be released: {exc} — break it with `cockpit lock --break "
                    "--reason …`",
                    file=sys.stderr,
                )
        await engine.collector.aclose()


async def _apply(engine: Engine, preview: Preview, args: argparse.Namespace) -> int:
    """The previewed change: described (--dry-run), refused (a closed gate, no override), or confirmed and
    applied with Ctrl-C and SIGTERM stopping it after the current instance."""
    from plans.engine import RollControl

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
        outcome = await engine.apply(preview, reason=reason, overrides=args.override, on_event=_show, control=control)
    finally:
        remove()
        term_as_interrupt()
    _report(engine, preview, outcome)
    return 0 if outcome.ok else 1


def _report(engine: Engine, preview: Preview, outcome: Outcome) -> None:
    print(("OK: " if outcome.ok else "FAILED: ") + outcome.reason)
    for e in outcome.journal_errors:
        print(f"journal: {e}", file=sys.stderr)
    if outcome.rolled_back is not None:
        rb = outcome.rolled_back
        print(("automatic rollback OK: " if rb.ok else "automatic rollback FAILED: ") + rb.reason)
    if outcome.stage == "stopped":
        print(
            f"stopped: restarted with the new values: {', '.join(outcome.changed) or 'none'}; the config store holds "
            "the new values — `cockpit plan` shows each instance"
        )
    if (
        not outcome.ok
        and outcome.stage in ("restart", "verify", "stopped")
        and preview.direction == "advance"
        and (outcome.rolled_back is None or not outcome.rolled_back.ok)
    ):
        svc = f" --service {preview.service}" if engine.plan.step(preview.step).per_service else ""
        print(f"to restore: cockpit rollback {preview.step}{svc}")


async def advance_cmd(args: argparse.Namespace, direction: str) -> int:
    from plans.position import next_action_in

    step_id, service = args.step, args.service
    if step_id is None:
        if direction == "rollback":
            print("cockpit: name the step to roll back", file=sys.stderr)
            return 2
        engine = build_engine(args, previous=False)
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
        return await engine.preview(
            chosen,
            service,
            direction="advance" if direction == "advance" else "rollback",
            snapshot=snap,
            env_order_override=getattr(args, "override_env_order", None),
        )

    return await _act(args, step_id, make)


async def restart_cmd(args: argparse.Namespace) -> int:
    async def make(engine: Engine) -> Preview:
        return await engine.preview_restart(args.service, args.host)

    return await _act(args, "restart", make)


async def lock_cmd(args: argparse.Namespace) -> int:
    from plans.engine import EngineError
    from plans.lock import LockError

    engine = build_engine(args, previous=False)
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
