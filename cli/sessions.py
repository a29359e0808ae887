"""`cockpit drive` (also `cockpit` alone), `watch` and `replay`: the commands that open a session on the
screens, or (`replay --report`) write one as Markdown.

Watch and replay never build an Engine or a config store: watch reads the fleet through the Collector,
a read-only journal reader and the lock's `current()`; `watch --follow` and replay read a recording only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.compose import build_follow_app, build_live_app, build_replay_app, plan_from
from cli.paths import default_inventory, recordings_dir

if TYPE_CHECKING:
    from plans.plan import Plan
    from session.recording.reader import Recording


def run_session_command(args: argparse.Namespace) -> int:
    """Run `cockpit drive|watch|replay` (args from `cli.parser.build_parser`)."""
    if args.cmd == "replay":
        return _replay(args)
    if args.cmd in ("drive", "watch"):
        return _live(args)
    raise ValueError(f"not a session command: {args.cmd!r}")


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
    from session.printable import printable

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
    from session.recording.index import RecordingError
    from session.recording.reader import Recording

    if args.report is not None and args.at is not None:
        _say("replay", "--at positions the replay screen; --report covers the whole recording: pass one of them")
        return 2
    if args.report not in (None, "-"):
        why = _report_target(args.report, args.file)
        if why is not None:
            _say("replay", why)
            return 2
    try:
        plan = plan_from(args.plan)
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


def _write_report(rec: Recording, plan: Plan, out: str) -> int:
    from session.report.document import report

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


def _replay_ui(rec: Recording, plan: Plan, at: str | None) -> int:
    from session.replay import parse_time
    from session.view import clock_text

    start: float | None = None
    if at is not None:
        try:
            start = parse_time(at, start=rec.start, pos=rec.start)
        except ValueError as exc:
            _say("replay", f"--at {at}: {exc}")
            return 2
        if not rec.start <= start <= rec.end:
            _say(
                "replay",
                f"--at {at}: the recording runs {clock_text(rec.start)}–{clock_text(rec.end)} UTC; "
                "pass a time inside it",
            )
            return 2
    app = build_replay_app(rec, plan, start=start)
    app.run()
    return 1 if app.return_code else 0


def _follow(args: argparse.Namespace) -> int:
    """`cockpit watch --follow RECORDING`: no inventory, no Collector, no SSH or AWS client at all."""
    from plans.plan import PlanError
    from session.recording.index import RecordingError

    try:
        plan = plan_from(args.plan)
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


def _live(args: argparse.Namespace) -> int:
    if args.cmd == "watch" and getattr(args, "follow", None) is not None:
        return _follow(args)
    from session.recording.writer import prune

    directory = args.recordings_dir or recordings_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    prune(
        directory,
        max_files=args.keep_recordings
        if args.keep_recordings is not None
        else _env_int("COCKPIT_RECORDINGS_MAX_FILES", 200),
        max_age_days=args.keep_days
        if args.keep_days is not None
        else _env_float("COCKPIT_RECORDINGS_MAX_AGE_DAYS", 90.0),
    )
    live = build_live_app(
        args.cmd,
        args.inventory or default_inventory(),
        args.env,
        plan_path=args.plan,
        recordings=directory,
        poll_interval=args.poll_interval,
        full_every=args.full_frame_every,
    )
    try:
        live.app.run()
    finally:
        live.recorder.close()
        print(f"recording: {live.path}")
    return 1 if live.app.return_code else 0
