"""`cockpit watch --follow RECORDING`: the driver's screens from the driving session's recording, live,
with no fleet access. The recording is written during the test by the real Recorder; the follow app
(run_test + Pilot) must show a step within a couple of its 200 ms polls of the write (counted in polls,
not timed); replaced files and directories of recordings are followed; and nothing that can reach the
fleet — SSH, AWS, the Collector, the engine — is ever imported."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.pilot import Pilot

from cli.compose import build_follow_app
from session.follow import FOLLOW_POLL, FollowFeed, RecordingTail
from session.recording.index import RecordingError
from session.recording.records import Action, Outcome
from session.recording.writer import Recorder
from tests.test_tui_support import JOURNAL, SERVICES, T0, Clock, scenario
from tui.app import CockpitApp
from tui.widgets.tables import PlanTable

ROOT = Path(__file__).resolve().parent.parent
BASE = {"step": "pg-5", "service": "api", "direction": "advance", "who": "alice"}
PREVIEW = {
    "env": "staging",
    "step": "pg-5",
    "service": "api",
    "direction": "advance",
    "title": "Leg 1",
    "changes": ["/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)"],
    "restarts": [{"host": "staging-api-01", "command": "update.sh", "pre_restart": ""}],
    "gates": [{"gate": "pgbouncer_offers_tls_and_ca_files", "status": "open", "reason": "ok", "service": None}],
    "blockers": [],
    "open": True,
    "state": "pending",
    "snapshot_at": T0,
}


def driver(path: Path, clock: Clock) -> Recorder:
    rec = Recorder(
        path, env="staging", mode="drive", services=SERVICES, plan="internal-encryption", clock=clock, who="alice"
    )
    rec.snapshot(scenario("ready-pg5", taken_at=clock.t))
    rec.record("lock", holder=None, known=True)
    rec.record("journal", entry=dict(JOURNAL[0]), backlog=True)
    return rec


def drive_a_step(rec: Recorder, clock: Clock) -> None:
    """What a drive session writes while it applies pg-5 for api, then the snapshot that shows it."""
    clock.t += 1
    rec.record(
        "lock",
        holder={"who": "alice", "where": "bastion", "pid": 7, "step": "pg-5", "since": clock.t, "token": "tok"},
        known=True,
    )
    rec.record("action", kind="lock", **BASE)
    rec.record("action", kind="preview", preview=PREVIEW, **BASE)
    rec.record("action", kind="confirm", reason="window 42: \x1b[31mapi\x1b[0m first", **BASE)
    rec.record("event", kind="restart", host="staging-api-01", text="update.sh --restart-only", at=clock.t)
    rec.record("outcome", outcome={"ok": True, "stage": "done", "reason": "verified"}, reason="window 42", **BASE)
    rec.record("action", kind="unlock", **BASE)
    clock.t += 1
    snap = scenario("ready-pg5", taken_at=clock.t)
    rec.snapshot(dataclasses.replace(snap, taken_at=clock.t))
    rec.snapshot(scenario("straggler", taken_at=clock.t + 0.5))


def state_of(app: CockpitApp, key: str) -> str | None:
    view = app.main.view
    if view is None:
        return None
    return next((r.state for r in view.rows if r.key == key), None)


async def until(pilot: Pilot[Any], cond: Any, what: str, tries: int = 2000) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_a_step_the_driver_applies_shows_within_two_polls(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "drive.jsonl"
    rec = driver(path, clock)
    app, _ = build_follow_app(path)
    lines: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, CockpitApp.LinesArrived):
            lines.extend(line.text for line in message.lines)

    assert app.config.poll_interval == FOLLOW_POLL and app.config.mode == "watch"
    async with app.run_test(size=(110, 32), message_hook=hook) as pilot:
        await until(pilot, lambda: state_of(app, "pg-5:api") == "pending", "the driver's first snapshot")
        assert any("following" in x and "drive session of alice" in x for x in lines)
        await until(pilot, lambda: app.main.lock_known, "the lock")
        assert app.main.lock_holder is None
        polls = app.polls
        drive_a_step(rec, clock)
        await until(
            pilot,
            lambda: state_of(app, "pg-5:api") == "verified" and any("confirmed" in x for x in lines),
            "the step on the follower's screen",
        )
        seen_after = app.polls - polls
        assert seen_after <= 2, f"shown after {seen_after} polls of {FOLLOW_POLL}s"
        assert any("alice confirmed advance pg-5 api — window 42: \\e[31mapi\\e[0m first" in x for x in lines)
        assert not any("\x1b" in x for x in lines)
        assert any("advance pg-5 api: done" in x for x in lines)
        assert app.main.lock_known  # the lock as the driver saw it
        plan = app.main.query_one("#plan", PlanTable)
        assert plan.row_count > 0
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & {"advance", "rollback", "advance_next"}  # watch: no write action exists
    rec.close()


async def test_a_line_still_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "drive.jsonl"
    rec = driver(path, clock)
    tail = RecordingTail(path)
    tail.start()
    first = tail.poll()
    assert first.opened is not None and first.snapshot is not None
    assert [type(r).__name__ for r in first.records] == ["Lock", "Journal"]
    line = b'{"t":"note","ts":1800000009.0,"text":"half and half","level":"warn"}\n'
    with path.open("ab") as fh:
        fh.write(line[:20])
        fh.flush()
        assert tail.poll().records == ()  # not a line yet
        fh.write(line[20:])
    notes = tail.poll().records
    assert len(notes) == 1 and getattr(notes[0], "text", "") == "half and half"
    assert tail.poll().records == () and tail.poll().snapshot is None  # nothing new: nothing handed out twice
    rec.close()


async def test_a_replaced_file_is_followed_from_its_start(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "current.jsonl"
    first = driver(path, clock)
    tail = RecordingTail(path)
    tail.start()
    feed = FollowFeed(tail)
    got: list[str] = []
    feed.on_lines = lambda lines: got.extend(x.text for x in lines)
    obs = await feed.observe()
    assert obs.snapshot is not None and tail.switches == 0
    # the driver's next session: a new recording moved into place over the old one
    clock.t += 60
    nxt = tmp_path / "next.jsonl"
    second = Recorder(nxt, env="staging", mode="drive", services=SERVICES, clock=clock, who="bob")
    second.snapshot(scenario("done", taken_at=clock.t))
    second.record("action", kind="lock", **{**BASE, "who": "bob"})
    os.replace(nxt, path)
    obs = await feed.observe()
    assert tail.switches == 1 and obs.snapshot is not None and obs.snapshot.taken_at == clock.t
    assert any("now following a new recording" in x and "bob" in x for x in got)
    assert any("lock taken for pg-5 api" in x for x in got)
    # and a file cut back to nothing and rewritten (truncated in place) is read again too
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(0)
    third = Recorder(tmp_path / "third.jsonl", env="staging", mode="drive", services=SERVICES, clock=clock, who="eve")
    third.close()
    path.write_bytes((tmp_path / "third.jsonl").read_bytes())
    assert path.stat().st_size < size
    await feed.observe()
    assert tail.switches == 2 and tail.header is not None and tail.header.who == "eve"
    for r in (first, second):
        r.close()


async def test_a_directory_follows_its_newest_recording(tmp_path: Path) -> None:
    clock = Clock(T0)
    d = tmp_path / "recordings"
    d.mkdir()
    (d / "notes.jsonl").write_text('{"not": "a recording"}\n')
    old = driver(d / "staging-1.jsonl", clock)
    an_hour_ago = time.time() - 3600
    os.utime(d / "staging-1.jsonl", (an_hour_ago, an_hour_ago))
    tail = RecordingTail(d)
    assert tail.start().who == "alice"
    tail.poll()
    clock.t += 100
    new = Recorder(d / "staging-2.jsonl", env="staging", mode="drive", services=SERVICES, clock=clock, who="bob")
    new.snapshot(scenario("done", taken_at=clock.t))
    batch = tail.poll()
    assert batch.opened is not None and batch.opened.who == "bob" and batch.snapshot is not None
    old.close()
    new.close()


def test_following_what_cannot_be_followed_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "other.jsonl").write_text("hello\n")
    (tmp_path / "empty").mkdir()
    for path, says in (
        (tmp_path / "missing.jsonl", "no such file"),
        (fifo, "named pipe"),
        (tmp_path / "other.jsonl", "not JSON"),
        (tmp_path / "empty", "no recording in this directory"),
    ):
        with pytest.raises(RecordingError, match=says):
            build_follow_app(path)
        r = subprocess.run(
            [sys.executable, "-m", "cli", "watch", "--follow", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


FOLLOW_WITHOUT_THE_FLEET = """
import asyncio, sys
from pathlib import Path
from textual.app import App
from tests.test_tui_support import Clock, T0, scenario
from session.recording.writer import Recorder

path = Path(sys.argv[1])
clock = Clock(T0)
rec = Recorder(path, env="staging", mode="drive", services=("api", "web"), clock=clock, who="alice")
rec.snapshot(scenario("ready-pg5", taken_at=T0))
rec.record("action", kind="lock", step="pg-5", service="api", direction="advance", who="alice")

async def drive_the_follower(pilot):
    app = pilot.app
    for _ in range(400):
        if app.polls >= 3 and app.main.view is not None:
            break
        await pilot.pause(0.02)
    assert app.main.view is not None, "the follower never showed the snapshot"
    await pilot.press("a", "r", "n", "ctrl+p")
    await pilot.pause()
    await pilot.press("escape")
    app.exit()

def headless(self, **kw):  # the real `cockpit watch --follow`, on no terminal
    return App.run(self, headless=True, auto_pilot=drive_the_follower)

from tui.app import CockpitApp
CockpitApp.run = headless
from cli.main import main
code = main(["watch", "--follow", str(path)])
loaded = [m for m in ("probes.ssh", "probes.aws", "probes.collect", "plans.engine", "plans.store", "plans.lock",
                      "plans.journal", "asyncssh", "boto3", "botocore", "tui.screens.drive") if m in sys.modules]
print(code, loaded)
sys.exit(0 if code == 0 and not loaded else 1)
"""


def test_following_never_loads_ssh_aws_or_the_engine(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", FOLLOW_WITHOUT_THE_FLEET, str(tmp_path / "d.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "0 []"


def test_the_feed_hands_out_typed_records_only_once(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "d.jsonl"
    rec = driver(path, clock)
    drive_a_step(rec, clock)
    rec.close()
    tail = RecordingTail(path)
    tail.start()
    batch = tail.poll()
    kinds = [type(r).__name__ for r in batch.records]
    assert kinds.count("Action") == 4 and kinds.count("Outcome") == 1 and kinds[-1] == "End"
    assert isinstance(batch.records[3], Action) and isinstance(
        next(r for r in batch.records if isinstance(r, Outcome)), Outcome
    )
    assert batch.snapshot is not None and batch.snapshot.taken_at == clock.t + 0.5
    again = tail.poll()
    assert again.records == () and again.snapshot is None and again.opened is None
