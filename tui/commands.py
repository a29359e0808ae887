"""The TUI's commands for `cockpit`: drive (also `cockpit` alone), watch and replay.

tui/cli.py calls `add_tui_commands(sub)` when it builds its parser and `run_tui_command(args)`
for any `args.cmd` in `TUI_COMMANDS`; `default_to_drive(argv)` makes `cockpit --env x` mean
`cockpit drive --env x`. Watch and replay never build an Engine or a config store: watch reads
the fleet through the Collector, a read-only journal reader and the lock's `current()`.
"""

from __future__ import annotations

import argparse
import contextlib
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
    watch.add_argument("--follow", type=Path, default=None, metavar="RECORDING",
                       help="show a driving session live from its recording (a .jsonl file, or a directory: the "
                            "newest recording in it), with no fleet access at all: no SSH, no AWS")
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


def _say(cmd: str, message: str) -> None:
    """One line on stderr (recorded text in it made printable)."""
    from tui.printable import printable

    print(f"cockpit {cmd}: {printable(message, newlines=False)}", file=sys.stderr)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's last flush stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write_stdout(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `cockpit replay X --report | head`: the reader has what it wanted
        _quiet_stdout()
    return 0


def _report_target(out: str, recording: Path) -> str | None:
    """Why the report cannot be written to `out` (None: it can)."""
    p = Path(out)
    if p.is_dir():
        return f"--report {out}: is a directory; pass a file name, e.g. {p / 'report.md'}"
    if not p.parent.is_dir():
        return f"--report {out}: the directory {p.parent} does not exist (create it, or pass another path)"
    with contextlib.suppress(OSError):
        if p.exists() and p.samefile(recording):
            return f"--report {out}: that is the recording itself; pass another file name"
    return None


def _replay(args: argparse.Namespace) -> int:
    try:
        return _replay_run(args)
    except KeyboardInterrupt:
        _say("replay", "interrupted")
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0


def _replay_run(args: argparse.Namespace) -> int:
    from plans.plan import PlanError
    from tui.recording import Recording, RecordingError

    if args.report is not None and args.at is not None:
        _say("replay", "--at positions the replay screen; --report covers the whole recording: pass one of them")
        return 2
    if args.report not in (None, "-"):
        why = _report_target(args.report, args.file)
        if why is not None:
            _say("replay", why)
            return 2
    try:
        plan = _plan(args.plan)
    except (OSError, PlanError) as exc:
        _say("replay", f"--plan {args.plan}: {exc}")
        return 2
    try:
        rec = Recording.open(args.file)
    except RecordingError as exc:
        _say("replay", str(exc))
        return 2
    except OSError as exc:
        _say("replay", f"{args.file}: cannot read it ({exc.strerror or exc})")
        return 2
    try:
        if args.report is not None:
            return _write_report(rec, plan, args.report)
        return _replay_ui(rec, plan, args.at)
    finally:
        rec.close()


def _write_report(rec: Any, plan: Any, out: str) -> int:
    from tui.report import report

    text = report(rec, plan)
    if out == "-":
        return _write_stdout(text)
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        _say("replay", f"--report {out}: cannot write it ({exc.strerror or exc})")
        return 2
    print(f"report: {out}")
    return 0


def _replay_ui(rec: Any, plan: Any, at: str | None) -> int:
    from tui.app import make_app
    from tui.printable import printable
    from tui.replay import parse_time
    from tui.view import clock_text

    start: float | None = None
    if at is not None:
        try:
            start = parse_time(at, start=rec.start, pos=rec.start)
        except ValueError as exc:
            _say("replay", f"--at {at}: {exc}")
            return 2
        if not rec.start <= start <= rec.end:
            _say("replay", f"--at {at}: the recording runs {clock_text(rec.start)}–{clock_text(rec.end)} UTC; "
                           "pass a time inside it")
            return 2
    app = make_app("replay", plan=plan, recording=rec, env_name=printable(rec.info.env, newlines=False),
                   services=[printable(x, newlines=False) for x in rec.info.services])
    if start is not None:
        at_ts = start

        async def seek() -> None:
            app.main.goto(at_ts)  # type: ignore[attr-defined]

        app.call_later(seek)
    app.run()
    return 1 if app.return_code else 0


def _follow(args: argparse.Namespace) -> int:
    """`cockpit watch --follow RECORDING`: no inventory, no Collector, no SSH or AWS client at all."""
    from plans.plan import PlanError
    from tui.follow import build_follow_app
    from tui.recording import RecordingError

    try:
        plan = _plan(args.plan)
    except (OSError, PlanError) as exc:
        _say("watch", f"--plan {args.plan}: {exc}")
        return 2
    try:
        app, feed = build_follow_app(args.follow, plan=plan)
    except RecordingError as exc:
        _say("watch", f"--follow: {exc}")
        return 2
    env = feed.tail.header.env if feed.tail.header is not None else None
    if args.env and args.env != env:
        _say("watch", f"--follow {args.follow}: a recording of env {env}, not {args.env}")
        feed.tail.close()
        return 2
    try:
        app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        feed.tail.close()
    return 1 if app.return_code else 0


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
    from plans.collecting import collector_for
    from probes.inventory import load_inventory
    from tui.app import make_app
    from tui.feed import LiveFeed, ReadOnlyLock
    from tui.recording import DEFAULT_FULL_EVERY, Recorder, recording_path, recordings_dir

    inv = load_inventory(inventory)
    env = inv.env(env_name)
    plan = _plan(plan_path)
    directory = recordings or recordings_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # watch runs only the host commands the inventory marks read-only; drive runs the inventory's checks
    collector = collector_for(env, plan, read_only=mode != "drive")
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
    if args.cmd == "watch" and getattr(args, "follow", None) is not None:
        return _follow(args)
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
    return 1 if app.return_code else 0
