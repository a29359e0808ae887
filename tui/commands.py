"""The TUI's commands for `cockpit`: drive (also `cockpit` alone), watch and replay.

tui/cli.py calls `add_tui_commands(sub)` when it builds its parser and `run_tui_command(args)`
for any `args.cmd` in `TUI_COMMANDS`; `default_to_drive(argv)` makes `cockpit --env x` mean
`cockpit drive --env x`. Watch and replay never build an Engine or a config store: watch reads
the fleet through the Collector, a read-only journal reader and the lock's `current()`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TUI_COMMANDS = ("drive", "watch", "replay")

_KEYS = """keys: ? help · ctrl+p command palette · d detail · 1-4 panels · q quit
drive also: a advance · r roll back · n advance the next step (each opens a confirmation)
replay also: space play/pause · , . seek ±10s · < > ±1 min · + - speed · 0 rewind · n p next/previous mark
             · g jump to a time · i skip idle stretches"""


def _live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default=None, help="environment (default: the inventory's default_env)")
    p.add_argument("--inventory", type=Path, default=None,
                   help="inventory TOML (default: $COCKPIT_INVENTORY or the lab's)")
    p.add_argument("--plan", type=Path, default=None, help="plan file (default: the shipped runbook)")
    p.add_argument("--poll-interval", type=float, default=1.0, metavar="S",
                   help="seconds between the end of one snapshot and the start of the next (default 1)")
    p.add_argument("--recordings-dir", type=Path, default=None, metavar="DIR",
                   help="where the session is recorded (default $XDG_STATE_HOME/rollout-cockpit/recordings)")
    p.add_argument("--full-frame-every", type=float, default=None, metavar="S",
                   help="seconds between full snapshot frames in the recording (default 300)")
    p.add_argument("--keep-recordings", type=int, default=None, metavar="N",
                   help="keep at most N recordings (default $COCKPIT_RECORDINGS_MAX_FILES or 200)")
    p.add_argument("--keep-days", type=float, default=None, metavar="D",
                   help="delete recordings older than D days (default $COCKPIT_RECORDINGS_MAX_AGE_DAYS or 90)")


def add_tui_commands(sub: Any) -> None:
    """Add `drive`, `watch` and `replay` to the `cockpit` subparsers `sub`."""
    fmt = argparse.RawDescriptionHelpFormatter
    drive = sub.add_parser(
        "drive", help="drive the rollout in the terminal UI (the default: `cockpit` with no command)",
        description="Drive the rollout: plan, legs, services, events; advance or roll back one step and one "
                    "service at a time, each with a preview, a reason and a confirmation. The session is "
                    "recorded (path shown on exit).\n\n" + _KEYS, formatter_class=fmt)
    _live_options(drive)
    watch = sub.add_parser(
        "watch", help="follow a rollout read-only: who drives, the lock, the journal (no write action exists)",
        description="The same screens with no write action in them: built without the engine, reading the "
                    "fleet, the journal and the lock only. The session is recorded.\n\n" + _KEYS,
        formatter_class=fmt)
    _live_options(watch)
    replay = sub.add_parser(
        "replay", help="replay a recording (timeline, seek, marks); --report writes a Markdown timeline",
        description="Replay a recording on the same screens, with a timeline.\n\n" + _KEYS, formatter_class=fmt)
    replay.add_argument("file", type=Path, help="a recording (.jsonl) written by drive or watch")
    replay.add_argument("--report", nargs="?", const="-", default=None, metavar="OUT",
                        help="write a Markdown timeline (steps, who, when, reasons, verdicts, failures, "
                             "rollbacks) to OUT, or to standard output, instead of opening the UI")
    replay.add_argument("--plan", type=Path, default=None, help="plan file (default: the shipped runbook)")
    replay.add_argument("--at", default=None, metavar="TIME",
                        help="start at TIME (10:15:30 UTC, +90s, @300 seconds from the start)")


def default_to_drive(argv: Sequence[str]) -> list[str]:
    """`cockpit` and `cockpit --env x ...` mean `cockpit drive ...` (help stays the top-level help)."""
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        return ["drive", *args]
    return args


def run_tui_command(args: argparse.Namespace) -> int:
    """Run `cockpit drive|watch|replay` (args from the parser `add_tui_commands` extended)."""
    if args.cmd == "replay":
        return _replay(args)
    if args.cmd in ("drive", "watch"):
        return _live(args)
    raise ValueError(f"not a TUI command: {args.cmd!r}")


# --------------------------------------------------------------------------------------------


def _plan(path: Path | None) -> Any:
    from plans.plan import default_plan, load_plan

    return load_plan(path) if path else default_plan()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _replay(args: argparse.Namespace) -> int:
    from tui.recording import Recording, RecordingError

    try:
        rec = Recording.open(args.file)
    except (OSError, RecordingError) as exc:
        print(f"cockpit replay: {exc}", file=sys.stderr)
        return 2
    plan = _plan(args.plan)
    if args.report is not None:
        from tui.report import report

        text = report(rec, plan)
        if args.report == "-":
            sys.stdout.write(text)
        else:
            Path(args.report).write_text(text, encoding="utf-8")
            print(f"report: {args.report}")
        return 0
    from tui.app import make_app

    app = make_app("replay", plan=plan, recording=rec)
    if args.at:
        from tui.replay import parse_time

        start = parse_time(args.at, start=rec.start, pos=rec.start)

        async def seek() -> None:
            app.main.goto(start)  # type: ignore[attr-defined]

        app.call_later(seek)
    app.run()
    return 0


class FleetJournalReader:
    """Reads the fleet journal on the database host (never writes; watch mode's journal)."""

    def __init__(self, env: Any, pool: Any) -> None:
        self._env = env
        self._pool = pool

    async def read_fleet(self, limit: int = 500) -> list[dict[str, Any]]:
        from plans.journal import FLEET_PATH

        if self._env.managed_database:
            return []
        db = self._env.database_host
        data = await self._pool.read_file(db.name, self._env.host_path(db, FLEET_PATH), 16 << 20)
        if not isinstance(data, bytes):
            return []
        out: list[dict[str, Any]] = []
        for line in data.decode("utf-8", "replace").splitlines()[-limit:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


def build_live_app(mode: str, inventory: Path, env_name: str | None, *, plan_path: Path | None = None,
                   recordings: Path | None = None, poll_interval: float = 1.0,
                   full_every: float | None = None) -> tuple[Any, Any, Path]:
    """The app `cockpit drive|watch` runs: (app, recorder, recording path). Tests build it the same way.

    Watch gets the Collector, a journal reader and a read-only lock view — nothing that can write."""
    from probes.collect import Collector
    from probes.inventory import load_inventory
    from tui.app import make_app
    from tui.feed import LiveFeed, ReadOnlyLock
    from tui.recording import DEFAULT_FULL_EVERY, Recorder, recording_path, recordings_dir

    inv = load_inventory(inventory)
    env = inv.env(env_name)
    plan = _plan(plan_path)
    directory = recordings or recordings_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    collector = Collector(env)
    services = [s for s in env.service_names if env.service(s).role == "app"]
    path = recording_path(directory, env.name, time.time())
    recorder = Recorder(path, env=env.name, mode=mode, protected=env.protected, plan=plan.name,
                        services=services, full_every=full_every or DEFAULT_FULL_EVERY)
    from plans.lock import FleetLock

    lock = FleetLock(collector.aws, env.namespace)
    if mode == "drive":
        from plans.engine import Engine  # type: ignore[import-not-found,unused-ignore]
        from plans.journal import Journal

        journal = Journal(env, collector.pool)
        engine = Engine(env, plan, collector, journal=journal, lock=lock,
                        previous_env=inv.env(env.after) if env.after else None)
        services = list(engine.services_in_order())
        feed = LiveFeed(engine, journal=journal, lock=ReadOnlyLock(lock))
        app = make_app("drive", plan=plan, env_name=env.name, protected=env.protected, services=services,
                       feed=feed, engine=engine, recorder=recorder, poll_interval=poll_interval)
        app.closers.append(engine.release_lock)  # leaving the cockpit never leaves the fleet locked
    else:
        feed = LiveFeed(collector, journal=FleetJournalReader(env, collector.pool), lock=ReadOnlyLock(lock))
        app = make_app("watch", plan=plan, env_name=env.name, protected=env.protected, services=services,
                       feed=feed, recorder=recorder, poll_interval=poll_interval)
    app.closers.append(collector.aclose)
    return app, recorder, path


def _live(args: argparse.Namespace) -> int:
    from tui.cli import default_inventory
    from tui.recording import prune, recordings_dir

    directory = args.recordings_dir or recordings_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    prune(directory, max_files=args.keep_recordings if args.keep_recordings is not None else
          _env_int("COCKPIT_RECORDINGS_MAX_FILES", 200),
          max_age_days=args.keep_days if args.keep_days is not None else
          _env_float("COCKPIT_RECORDINGS_MAX_AGE_DAYS", 90.0))
    app, recorder, path = build_live_app(args.cmd, args.inventory or default_inventory(), args.env,
                                         plan_path=args.plan, recordings=directory,
                                         poll_interval=args.poll_interval, full_every=args.full_frame_every)
    try:
        app.run()
    finally:
        recorder.close()
        print(f"recording: {path}")
    return 0
