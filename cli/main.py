"""`cockpit`: the command line. Thin over the engine; each command's module (and the TUI) is imported only when
that command runs, so `cockpit status` and `cockpit plan` never load textual.

Exit codes: 0 ok (or, with --dry-run, "would proceed"), 1 something failed or was refused (or "would be
refused"), 2 could not run (bad arguments, unreadable inventory), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

from cli.parser import build_parser, default_to_drive
from cli.paths import default_inventory
from inventory.model import InventoryError
from plans.plan import PlanError

SESSION_COMMANDS = ("drive", "watch", "replay")


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command `args` name (its module imported now)."""
    if args.cmd in SESSION_COMMANDS:
        from cli.sessions import run_session_command

        return run_session_command(args)
    if args.cmd in ("status", "plan"):
        from cli.status import plan_cmd, status_cmd

        if args.cmd == "status":
            return _run(status_cmd(args.inventory or default_inventory(), args.env, args.json))
        return _run(plan_cmd(args))
    if args.cmd in ("advance", "rollback", "restart", "lock"):
        from cli.acting import advance_cmd, lock_cmd, restart_cmd

        if args.cmd == "restart":
            return _run(restart_cmd(args))
        if args.cmd == "lock":
            return _run(lock_cmd(args))
        return _run(advance_cmd(args, args.cmd))
    if args.cmd == "certs":
        from cli.certs import certs_cmd

        return _run(certs_cmd(args))
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:], prog="cockpit lab")
    args = build_parser().parse_args(default_to_drive(argv))
    try:
        return _dispatch(args)
    except (InventoryError, PlanError) as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        hint = (
            " — pass --inventory FILE or start the lab (cockpit lab up)"
            if "inventory" in str(exc) or str(exc).endswith(".toml")
            else ""
        )
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
