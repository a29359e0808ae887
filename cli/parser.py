"""`cockpit`'s one argparse tree: every command and its options, and `cockpit` alone meaning `cockpit drive`.

Every command that reads a plan takes it as `--plan FILE`; `--plan-file` (the engine commands' old name
for it) is refused with a message saying to use `--plan`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KEYS = """keys: ? help · ctrl+p command palette · d detail · 1-4 panels · / filter the table or the events
      · j k down/up · g G first/last row (oldest/newest event) · q quit
drive also: a advance · r roll back · n advance the next step · R restart a service, or the highlighted
            host (each opens a confirmation) · while a roll runs: p pause/resume · s stop after the
            current instance
replay also: space play/pause · , . seek ±10s · < > ±1 min · + - speed · 0 rewind · n p next/previous mark
             · g jump to a time · i skip idle stretches"""


class _PlanFileRenamed(argparse.Action):
    """`--plan-file` named what `--plan` names: refused, saying what to use."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(f"{option_string} is now --plan FILE (the same option every command takes): pass --plan {values}")


def _plan_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", type=Path, default=None, metavar="FILE", help="a plan TOML (default: the shipped runbook)")
    p.add_argument("--plan-file", action=_PlanFileRenamed, help=argparse.SUPPRESS)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help="environment (default: the inventory's default_env)")
    p.add_argument(
        "--inventory", type=Path, default=None, help="inventory TOML (default: $COCKPIT_INVENTORY or the lab's)"
    )


def _common(p: argparse.ArgumentParser) -> None:
    _where(p)
    _plan_option(p)


def _acting(a: argparse.ArgumentParser) -> None:
    a.add_argument("--yes", action="store_true", help="do not ask (automation); needs --reason")
    a.add_argument("--reason", default="", help="why: goes in the journal")
    a.add_argument(
        "--dry-run",
        action="store_true",
        help="show the preview; change nothing (exit 0: it would proceed, 1: it would be refused)",
    )
    a.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="ID",
        help="open exactly this closed gate or rollback blocker (its id is shown in brackets in the "
        "preview); repeatable; journaled with --reason",
    )
    a.add_argument("--force", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """Every `cockpit` command."""
    ap = argparse.ArgumentParser(
        prog="cockpit",
        description="Rollout Cockpit: drive the platform's internal-encryption rollout (Postgres, PgBouncer, "
        "Redis) over SSH, one step and one service at a time.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lab", help="the lab: a real miniature platform on loopback (cockpit lab --help)", add_help=False)
    st = sub.add_parser("status", help="every leg of every host, live: table or JSON snapshot")
    _where(st)
    st.add_argument("--json", action="store_true", help="print the FleetSnapshot as JSON (docs/snapshot.md)")
    pl = sub.add_parser("plan", help="where every step and service stands, what is next, each gate's verdict")
    _common(pl)
    pl.add_argument("--json", action="store_true")
    _add_acting_commands(sub)
    _add_session_commands(sub)
    lk = sub.add_parser("lock", help="show the fleet lock, or break a stale one (--break --reason)")
    _common(lk)
    lk.add_argument("--break", dest="break_", action="store_true")
    lk.add_argument("--reason", default="")
    return ap


def _add_acting_commands(sub: Any) -> None:
    """advance, rollback, restart, certs: the commands that change the fleet."""
    for name, verb in (("advance", "apply"), ("rollback", "roll back")):
        a = sub.add_parser(
            name, help=f"{verb} one step for one service: preview, confirm, restart one instance at a time, verify"
        )
        _common(a)
        a.add_argument(
            "step",
            nargs="?",
            default=None,
            help="step id (pg-2 … pg-7, redis-1 … redis-3); default: the next one"
            if name == "advance"
            else "step id to roll back",
        )
        a.add_argument("--service", default=None, help="the app service, for per-service steps")
        _acting(a)
        a.add_argument(
            "--override-env-order",
            default=None,
            metavar="REASON",
            help="advance before the environment this one comes after (inventory `after`) has the "
            "step verified; the reason is quoted in the gate and journaled",
        )
    r = sub.add_parser(
        "restart",
        help="restart one service, one instance at a time, with no configuration change "
        "(to land a pushed CA, or to clear drift)",
    )
    _common(r)
    r.add_argument("service", help="the service to restart (e.g. api, database)")
    r.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="HOST",
        help="only this host (repeatable; default: every host of the service)",
    )
    _acting(r)
    c = sub.add_parser("certs", help="runbook step 1: push the cert material to Secrets Manager, or check it")
    csub = c.add_subparsers(dest="certs_cmd", required=True)  # --inventory/--env after push/check, like every command
    cp = csub.add_parser(
        "push",
        help="validate CA, cert and key locally, then write to each consuming service's "
        "secret only what it needs and only what changes (takes the fleet lock)",
    )
    cp.add_argument("--ca", type=Path, required=True)
    cp.add_argument("--cert", type=Path, required=True)
    cp.add_argument("--key", type=Path, required=True)
    cp.add_argument("--dry-run", action="store_true")
    cp.add_argument("--reason", default="", help="why: goes in the journal (asked for when missing)")
    _common(cp)
    _common(csub.add_parser("check", help="validate what is stored under every consuming service"))


def _live_options(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between the end of one snapshot and the start of the next (default 1)",
    )
    p.add_argument(
        "--recordings-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the session is recorded (default $XDG_STATE_HOME/rollout-cockpit/recordings)",
    )
    p.add_argument(
        "--full-frame-every",
        type=float,
        default=None,
        metavar="S",
        help="seconds between full snapshot frames in the recording (default 300)",
    )
    p.add_argument(
        "--keep-recordings",
        type=int,
        default=None,
        metavar="N",
        help="keep at most N recordings (default $COCKPIT_RECORDINGS_MAX_FILES or 200)",
    )
    p.add_argument(
        "--keep-days",
        type=float,
        default=None,
        metavar="D",
        help="delete recordings older than D days (default $COCKPIT_RECORDINGS_MAX_AGE_DAYS or 90)",
    )


def _add_session_commands(sub: Any) -> None:
    """drive, watch, replay: the commands that open a session on the screens (or report on one)."""
    fmt = argparse.RawDescriptionHelpFormatter
    drive = sub.add_parser(
        "drive",
        help="drive the rollout in the terminal UI (the default: `cockpit` with no command)",
        description="Drive the rollout: plan, legs, services, events; advance or roll back one step and one "
        "service at a time, each with a preview, a reason and a confirmation. The session is "
        "recorded (path shown on exit).\n\n" + KEYS,
        formatter_class=fmt,
    )
    _live_options(drive)
    watch = sub.add_parser(
        "watch",
        help="follow a rollout read-only: who drives, the lock, the journal (no write action exists)",
        description="The same screens with no write action in them: built without the engine, reading the "
        "fleet, the journal and the lock only. The session is recorded.\n\n" + KEYS,
        formatter_class=fmt,
    )
    _live_options(watch)
    watch.add_argument(
        "--follow",
        type=Path,
        default=None,
        metavar="RECORDING",
        help="show a driving session live from its recording (a .jsonl file, or a directory: the "
        "newest recording in it), with no fleet access at all: no SSH, no AWS",
    )
    replay = sub.add_parser(
        "replay",
        help="replay a recording (timeline, seek, marks); --report writes a Markdown timeline",
        description="Replay a recording on the same screens, with a timeline.\n\n" + KEYS,
        formatter_class=fmt,
    )
    replay.add_argument("file", type=Path, help="a recording (.jsonl) written by drive or watch")
    replay.add_argument(
        "--report",
        nargs="?",
        const="-",
        default=None,
        metavar="OUT",
        help="write a Markdown timeline (steps, who, when, reasons, verdicts, failures, "
        "rollbacks) to OUT, or to standard output, instead of opening the UI",
    )
    _plan_option(replay)
    replay.add_argument(
        "--at", default=None, metavar="TIME", help="start at TIME (10:15:30 UTC, +90s, @300 seconds from the start)"
    )


def default_to_drive(argv: Sequence[str]) -> list[str]:
    """`cockpit` and `cockpit --env x ...` mean `cockpit drive ...` (help stays the top-level help)."""
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        return ["drive", *args]
    return args
