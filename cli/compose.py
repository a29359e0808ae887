"""The one composition root: what `cockpit` builds from its arguments — the engine for a command, the live
session (app, recorder, recording) for drive and watch, the app that follows a recording, the replay app.
Tests build them the same way.

Watch gets the Collector, a journal reader and a read-only lock view — nothing that can write; it runs
only the host commands the inventory marks read-only. The TUI is imported only when an app is built
(`cockpit status`, `plan` and the acting commands never load textual).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.paths import default_inventory, recordings_dir, screenshots_dir
from inventory.load import load_inventory
from inventory.model import Environment
from plans.plan import Plan, default_plan, load_plan
from session.follow import FOLLOW_POLL, FollowFeed, RecordingTail
from session.loglines import LogLine
from session.printable import printable
from session.recording.index import MAX_LINE
from session.recording.writer import DEFAULT_FULL_EVERY, Recorder, recording_path

if TYPE_CHECKING:
    from plans.engine import Engine
    from session.recording.reader import Recording
    from tui.app import CockpitApp


def plan_from(path: Path | None) -> Plan:
    """The plan in `path`, or the shipped runbook."""
    return load_plan(path) if path else default_plan()


def load_env(args: argparse.Namespace) -> tuple[Environment, Plan]:
    """The environment and the plan a command's `--inventory`, `--env` and `--plan` name."""
    env = load_inventory(args.inventory or default_inventory()).env(args.env)
    return env, plan_from(getattr(args, "plan", None))


def build_engine(args: argparse.Namespace, *, previous: bool = True) -> Engine:
    """The engine for a command; `previous`: with the environment this one comes after (inventory `after`),
    for the cross-environment gate."""
    from plans.collecting import collector_for
    from plans.engine import Engine

    env, plan = load_env(args)
    before = load_inventory(args.inventory or default_inventory()).env(env.after) if previous and env.after else None
    return Engine(env, plan, collector_for(env, plan), previous_env=before)


@dataclass(frozen=True, slots=True)
class LiveSession:
    """What `cockpit drive|watch` runs: the app, the recorder it writes through, and the recording's path."""

    app: CockpitApp
    recorder: Recorder
    path: Path


def build_live_app(
    mode: str,
    inventory: Path,
    env_name: str | None,
    *,
    plan_path: Path | None = None,
    recordings: Path | None = None,
    poll_interval: float = 1.0,
    full_every: float | None = None,
) -> LiveSession:
    """The live session `cockpit drive|watch` runs (drive: with the engine; watch: nothing that can write)."""
    from plans.collecting import collector_for
    from plans.lock import FleetLock
    from session.feed import FleetJournalReader, LiveFeed, ReadOnlyLock
    from tui.app import make_app

    inv = load_inventory(inventory)
    env = inv.env(env_name)
    plan = plan_from(plan_path)
    directory = recordings or recordings_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # watch runs only the host commands the inventory marks read-only; drive runs the inventory's checks
    collector = collector_for(env, plan, read_only=mode != "drive")
    services = [s for s in env.service_names if env.service(s).role == "app"]
    path = recording_path(directory, env.name, time.time())
    recorder = Recorder(
        path,
        env=env.name,
        mode=mode,
        protected=env.protected,
        plan=plan.name,
        services=services,
        full_every=full_every or DEFAULT_FULL_EVERY,
    )
    lock = FleetLock(collector.aws, env.namespace)
    app_for = functools.partial(
        make_app,
        plan=plan,
        env_name=env.name,
        protected=env.protected,
        recorder=recorder,
        poll_interval=poll_interval,
        screenshots=screenshots_dir(),
    )
    if mode == "drive":
        from plans.engine import Engine
        from plans.journal import Journal

        journal = Journal(env, collector.pool)
        previous = inv.env(env.after) if env.after else None
        engine = Engine(env, plan, collector, journal=journal, lock=lock, previous_env=previous)
        feed = LiveFeed(engine, journal=journal, lock=ReadOnlyLock(lock))
        app = app_for("drive", services=list(engine.services_in_order()), feed=feed, engine=engine)
        app.closers.append(engine.release_lock)  # leaving the cockpit never leaves the fleet locked
    else:
        feed = LiveFeed(collector, journal=FleetJournalReader(env, collector.pool), lock=ReadOnlyLock(lock))
        app = app_for("watch", services=services, feed=feed)
    app.closers.append(collector.aclose)
    return LiveSession(app, recorder, path)


def build_follow_app(
    path: Path, *, plan: Plan | None = None, poll_interval: float = FOLLOW_POLL, max_line: int = MAX_LINE
) -> tuple[CockpitApp, FollowFeed]:
    """The watch app following `path` (a recording, or a directory of them): read-only, nothing recorded.

    Raises RecordingError when `path` cannot be followed (not a recording, a special file)."""
    from tui.app import CockpitApp, make_app

    tail = RecordingTail(path, max_line=max_line)
    h = tail.start()
    feed = FollowFeed(tail)
    app = make_app(
        "watch",
        plan=plan,
        env_name=printable(h.env),
        protected=h.protected,
        services=[printable(s) for s in h.services],
        feed=feed,
        poll_interval=poll_interval,
        screenshots=screenshots_dir(),
    )

    def show(lines: Sequence[LogLine]) -> None:
        app.post_message(CockpitApp.LinesArrived(lines))

    feed.on_lines = show
    app.closers.append(_closer(tail))
    return app, feed


def _closer(tail: RecordingTail) -> Callable[[], Any]:
    async def close() -> None:
        tail.close()

    return close


def build_replay_app(rec: Recording, plan: Plan, *, start: float | None = None) -> CockpitApp:
    """The replay app for `rec`, at `start` (epoch seconds inside the recording) when given."""
    from tui.app import make_app
    from tui.screens.replaying import ReplayScreen

    app = make_app(
        "replay",
        plan=plan,
        recording=rec,
        env_name=printable(rec.info.env, newlines=False),
        services=[printable(x, newlines=False) for x in rec.info.services],
        screenshots=screenshots_dir(),
    )
    if start is not None:
        at_ts = start

        async def seek() -> None:
            main = app.main
            assert isinstance(main, ReplayScreen)
            main.goto(at_ts)

        app.call_later(seek)
    return app
