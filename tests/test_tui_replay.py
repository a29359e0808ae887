"""Replay: a recording made by a watch session replays to the same screens; seeking, marks, idle
skipping, jump-to-time parsing, the Markdown report, and `cockpit replay`'s errors and exit codes.
Recordings come from the real writers (tests/recording_factory.py, the watch app)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from plans.plan import default_plan
from probes.model import CheckResult, Verdict
from session.recording.reader import Recording
from session.recording.writer import Recorder
from session.replay import Timeline, parse_time
from session.report.document import report
from session.report.markdown import md
from tests.recording_factory import drive_recording, make_drive_recording
from tests.test_tui_support import JOURNAL, T0, Clock, scenario, watch_app
from tui.app import make_app
from tui.widgets.tables import InstanceTable, PlanTable

ROOT = Path(__file__).resolve().parent.parent


async def ready(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def table_cells(table: Any) -> list[tuple[str, ...]]:
    return [tuple(str(c) for c in table.get_row(k)) for k in table.rows]


async def test_a_watch_recording_replays_to_the_same_screens(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "w.jsonl"
    rec = Recorder(
        path, env="staging", mode="watch", services=("api", "web", "voice", "ops", "telpro"), full_every=4, clock=clock
    )
    names = ["fresh", "ready-pg5", "straggler", "straggler", "ready-pg5", "done"]
    app = watch_app(
        [scenario(n, taken_at=T0 + 2 * i) for i, n in enumerate(names)], clock=clock, recorder=rec, journal=JOURNAL
    )
    seen: list[tuple[float, list[tuple[str, ...]], list[tuple[str, ...]]]] = []
    async with app.run_test(size=(100, 30)) as pilot:
        for i in range(len(names)):
            clock.t = T0 + 2 * i
            if i:
                app.action_poll_now()
            await ready(pilot)
            seen.append(
                (
                    clock.t,
                    table_cells(app.main.query_one("#plan", PlanTable)),
                    table_cells(app.main.query_one("#instances", InstanceTable)),
                )
            )
    rec.close()
    recording = Recording.open(path)
    replay = make_app("replay", recording=recording)
    async with replay.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for ts, plan_cells, inst_cells in reversed(seen):  # seeking backwards too
            replay.main.goto(ts)  # type: ignore[attr-defined]
            await pilot.pause()
            assert table_cells(replay.main.query_one("#plan", PlanTable)) == plan_cells
            assert table_cells(replay.main.query_one("#instances", InstanceTable)) == inst_cells
        assert replay.main.query_one("#events").count > 0


async def test_replay_keys_and_no_write_action(tmp_path: Path) -> None:
    recording = Recording.open(await drive_recording(tmp_path / "r.jsonl"))
    app = make_app("replay", recording=recording)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tl = app.main.timeline  # type: ignore[attr-defined]
        assert tl.pos == tl.start
        await pilot.press("n")
        first_mark = tl.pos
        assert first_mark > tl.start
        await pilot.press("n", "n")
        assert tl.pos > first_mark
        await pilot.press("p")
        await pilot.press("full_stop")
        at = tl.pos
        await pilot.press("comma")
        assert tl.pos == pytest.approx(at - 10) or tl.pos == tl.start
        await pilot.press("plus", "plus")
        assert tl.speed == 4.0
        await pilot.press("0")
        assert tl.pos == tl.start
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"@20", "enter")
        await pilot.pause()
        assert tl.pos == pytest.approx(tl.start + 20)
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & {"advance", "rollback", "advance_next"}
        assert "REPLAY" in str(app.main.query_one("#mode").render())


def test_timeline_marks_and_idle_skipping(tmp_path: Path) -> None:
    rec = Recording.open(make_drive_recording(tmp_path / "r.jsonl"))
    tl = Timeline(rec)
    assert tl.marks == sorted(tl.marks) and len(tl.marks) >= 8
    assert tl.next_mark() and tl.pos == next(m for m in tl.marks if m > tl.start)
    tl.to_end()
    assert not tl.next_mark()
    assert tl.prev_mark() and tl.pos == tl.marks[-1]
    tl.rewind()
    tl.skip_idle = True
    tl.toggle()
    tl.tick(0.1)
    assert tl.playing
    tl.seek(tl.end - 0.05)
    tl.tick(1.0)
    assert not tl.playing and tl.pos == tl.end


def test_seek_is_exact(tmp_path: Path) -> None:
    path = make_drive_recording(tmp_path / "r.jsonl")
    rec = Recording.open(path)
    for i in (len(rec.snaps) - 1, 3, 17, 0, 9):
        snap = rec.snapshot(i)
        assert snap is not None and snap.taken_at == rec.snaps[i].ts
    assert not rec.damaged
    assert rec.snap_index_at(rec.start - 1) == -1
    assert rec.snap_index_at(rec.end + 100) == len(rec.snaps) - 1


def test_parse_time() -> None:
    start = 1_800_000_000.0  # 08:00:00 UTC
    assert parse_time("+90s", start=start, pos=start + 10) == start + 100
    assert parse_time("-1m", start=start, pos=start + 100) == start + 40
    assert parse_time("08:00:30", start=start, pos=start) == start + 30
    assert parse_time("08:05", start=start, pos=start) == start + 300
    assert parse_time("@12.5", start=start, pos=start) == start + 12.5
    with pytest.raises(ValueError, match="cannot read"):
        parse_time("soon", start=start, pos=start)


def test_report_tells_the_window(tmp_path: Path) -> None:
    rec = Recording.open(make_drive_recording(tmp_path / "r.jsonl"))
    text = report(rec, default_plan())
    assert text.startswith("# Change window: staging — 2027-01-15 08:00:00Z")
    summary = text.split("## Actions")[0]
    # counts of what happened: one rollback, although it left a preview, a confirmation, an outcome
    # and two journal entries of its own engine behind
    assert "- Applied: 1\n" in summary and "- Rollbacks: 1\n" in summary and "- Cancelled: 1\n" in summary
    assert "- Refused: 2\n" in summary and "- Failures: 2\n" in summary
    assert "the fleet lock is held by bob" in summary  # refused in this cockpit
    assert "advance pg-5 web by bob (journal): refused: pgbouncer" in summary  # refused in bob's CLI
    assert "STOPPED by an error: RuntimeError: ssh connection to staging-api-01 lost" in summary
    assert "- Errors noted (failed snapshots, crashed tasks): 4" in summary
    assert "3 × snapshot failed: ConnectionRefusedError" in summary
    # each action with its preview's changes, reason, gates and result
    change = md("/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)")
    assert "- Preview: 2 change(s): " in text and change in text and "no change" not in text
    assert "- Reason: change window 42: api first" in text and "- Result: FAILED at verify" in text
    assert "gates: all 1 open (pgbouncer\\_offers\\_tls\\_and\\_ca\\_files)" in text
    assert text.count("### ") == 7
    # verdict flaps during a roll: one line per roll, none of them on their own
    timeline = text.split("## Timeline")[1]
    assert "30 verdict changes while pg-5 api rolled (" in timeline
    assert "30 verdict changes while pg-5 api rolled back (" in timeline
    assert "08:00:17 |  | verdict |" not in timeline
    assert "| 08:00:40 |  | verdict | pg-5 voice: pending → configured |" in timeline  # outside a roll
    assert "journal: apply-start" not in timeline  # the session's own engine's entries fold into its actions
    # the final state is the last one observed, said to be old: the fleet went away before the end
    assert "**Last observed at 08:00:42, 2m00s before the recording ended**" in summary
    assert "after it, 3 error(s) and no readable snapshot" in summary
    assert "| 08:00:00 | tester | session started |" in text
    assert "\x1b" not in text


def test_report_says_when_the_fleet_could_not_be_measured(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    clock = Clock(T0)
    rec = Recorder(path, env="staging", mode="watch", services=("api", "web", "voice", "ops", "telpro"), clock=clock)
    good = scenario("done", taken_at=T0)
    rec.snapshot(good)

    def unreachable(c: CheckResult) -> CheckResult:
        return dataclasses.replace(c, verdict=Verdict.ERROR, summary="ssh: connection refused (bastion down)")

    gone = dataclasses.replace(good, taken_at=T0 + 1, checks=tuple(map(unreachable, good.checks)))
    clock.t = T0 + 1
    rec.snapshot(gone)
    rec.close()
    text = report(Recording.open(path), default_plan())
    assert "the fleet could not be measured" in text and "ssh: connection refused (bastion down)" in text
    assert "- At the end (08:00:01)" in text


def test_report_escapes_what_was_recorded(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    who = "eve|*_[x](http://evil.example)\x1b[31m<b>"
    rec = Recorder(path, env="stag|ing", mode="watch", clock=Clock(T0), who=who)
    rec.snapshot(scenario("fresh", taken_at=T0))
    rec.record("note", text="a | pipe\nand a newline\r\x1b]0;title\x07 # not a heading", level="error")
    rec.record(
        "journal",
        entry={
            "ts": T0 + 1,
            "who": "mallory`code`",
            "event": "apply-done",
            "step": "pg-2",
            "ok": True,
            "reason": "**bold** ~~gone~~ <script>",
        },
    )
    rec.close()
    text = report(Recording.open(path), default_plan())
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    # ESC is shown as \e (its backslash escaped too, so Markdown shows it as typed)
    assert "eve\\|\\*\\_\\[x\\](http://evil.example)\\\\e\\[31m\\<b\\>" in text
    assert "# Change window: stag\\|ing" in text
    assert "mallory\\`code\\`" in text and "\\*\\*bold\\*\\* \\~\\~gone\\~\\~ \\<script\\>" in text
    for row in text.split("## Timeline")[1].strip().splitlines():
        unescaped = len(row) - len(row.replace("|", "")) - row.count("\\|")
        assert unescaped == 5, row  # every table row keeps its four cells


def test_replay_command_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.parser import build_parser, default_to_drive
    from cli.sessions import run_session_command

    ap = build_parser()
    path = make_drive_recording(tmp_path / "r.jsonl")
    out = tmp_path / "report.md"
    assert run_session_command(ap.parse_args(["replay", str(path), "--report", str(out)])) == 0
    assert out.read_text().startswith("# Change window")
    assert run_session_command(ap.parse_args(["replay", str(path), "--report"])) == 0
    assert "## Timeline" in capsys.readouterr().out
    assert default_to_drive([]) == ["drive"]
    assert default_to_drive(["--env", "prod"]) == ["drive", "--env", "prod"]
    assert default_to_drive(["--help"]) == ["--help"] and default_to_drive(["status"]) == ["status"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    assert run_session_command(ap.parse_args(["replay", str(bad)])) == 2


# -- `cockpit replay`: every argument error is one line with the right hint ------------------------------------


def cockpit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def drive_rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_drive_recording(tmp_path_factory.mktemp("rec") / "drive.jsonl")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--at", "garbage"], "--at garbage: cannot read 'garbage'"),
        (["--at", "23:59:00"], "--at 23:59:00: the recording runs 08:00:00–08:02:42 UTC"),
        (["--at", "@nan"], "--at @nan: cannot read"),
        (["--report", "/nonexistent-dir/sub/out.md"], "the directory /nonexistent-dir/sub does not exist"),
        (["--report", "/tmp"], "--report /tmp: is a directory"),
        (["--report", "-", "--at", "+5s"], "pass one of them"),
        (["--plan", "/nonexistent/plan.toml"], "--plan /nonexistent/plan.toml"),
    ],
)
def test_argument_errors_are_one_line(drive_rec: Path, args: list[str], says: str) -> None:
    r = cockpit("replay", str(drive_rec), *args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "--inventory" not in r.stderr


def test_the_report_refuses_to_overwrite_the_recording(drive_rec: Path) -> None:
    before = drive_rec.read_bytes()
    r = cockpit("replay", str(drive_rec), "--report", str(drive_rec))
    assert r.returncode == 2 and "that is the recording itself" in r.stderr
    assert drive_rec.read_bytes() == before


def test_what_is_not_a_recording_file_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "live.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "notes.jsonl").write_text('{"level": "info"}\n')
    for path, says in (
        (fifo, "is a named pipe (FIFO), not a recording file"),
        (tmp_path, "is a directory, not a recording file"),
        (tmp_path / "missing.jsonl", "no such file"),
        (tmp_path / "notes.jsonl", "not a Rollout Cockpit recording"),
    ):
        r = cockpit("replay", str(path), "--report", timeout=30)
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_closed_pipe_ends_the_report_quietly(drive_rec: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "replay", str(drive_rec), "--report"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has already gone: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_ctrl_c_during_the_report_is_a_clean_exit(
    drive_rec: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import session.report.document
    from cli.main import main

    def interrupted(*a: Any, **k: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(session.report.document, "report", interrupted)
    assert main(["replay", str(drive_rec), "--report"]) == 130
    assert capsys.readouterr().err == "cockpit replay: interrupted\n"


def test_report_counts_an_automatic_rollback_and_a_stop_once_each(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    clock = Clock(T0)
    rec = Recorder(path, env="staging", mode="drive", clock=clock, who="tester")
    rec.snapshot(scenario("ready-pg5", taken_at=T0))
    base = {"step": "pg-5", "service": "api", "direction": "advance", "who": "tester"}
    for kind in ("lock", "confirm"):
        rec.record("action", kind=kind, **base, **({"reason": "window 42"} if kind == "confirm" else {}))
    rec.record(
        "outcome",
        outcome={
            "ok": False,
            "stage": "verify",
            "reason": "api-02 unhealthy",
            "rolled_back": {"ok": True, "stage": "done", "reason": "restored"},
        },
        reason="window 42",
        **base,
    )
    rec.record("action", kind="unlock", **base)
    clock.t += 10
    web = {**base, "service": "web"}
    rec.record("action", kind="confirm", reason="web now", **web)
    rec.record(
        "outcome",
        outcome={"ok": False, "stage": "stopped", "reason": "stopped after staging-web-01"},
        reason="web now",
        **web,
    )
    rec.close()
    text = report(Recording.open(path), default_plan()).split("## Actions")[0]
    assert "- Rollbacks: 1\n" in text and "automatic, done" in text
    assert "- Failures: 1\n" in text and "- Stopped by the operator: 1\n" in text
    assert "STOPPED: stopped after staging-web-01" in text
