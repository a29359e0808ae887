"""Replay: a recording made by a watch session replays to the same screens; seeking, marks, idle
skipping, jump-to-time parsing and the Markdown report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from plans.plan import default_plan
from tests.test_tui_support import JOURNAL, T0, Clock, make_recording, scenario, watch_app
from tui.app import make_app
from tui.recording import Recorder, Recording
from tui.replay import Timeline, parse_time
from tui.report import report
from tui.widgets.tables import InstanceTable, PlanTable


async def ready(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def table_cells(table: Any) -> list[tuple[str, ...]]:
    return [tuple(str(c) for c in table.get_row(k)) for k in table.rows]


async def test_a_watch_recording_replays_to_the_same_screens(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "w.jsonl"
    rec = Recorder(path, env="staging", mode="watch", services=("api", "web", "voice", "ops", "telpro"),
                   full_every=4, clock=clock)
    names = ["fresh", "ready-pg5", "straggler", "straggler", "ready-pg5", "done"]
    app = watch_app([scenario(n, taken_at=T0 + 2 * i) for i, n in enumerate(names)], clock=clock, recorder=rec,
                    journal=JOURNAL)
    seen: list[tuple[float, list[tuple[str, ...]], list[tuple[str, ...]]]] = []
    async with app.run_test(size=(100, 30)) as pilot:
        for i in range(len(names)):
            clock.t = T0 + 2 * i
            if i:
                app.action_poll_now()
            await ready(pilot)
            seen.append((clock.t, table_cells(app.main.query_one("#plan", PlanTable)),
                         table_cells(app.main.query_one("#instances", InstanceTable))))
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
    recording = Recording.open(make_recording(tmp_path / "r.jsonl"))
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
    rec = Recording.open(make_recording(tmp_path / "r.jsonl"))
    tl = Timeline(rec)
    assert tl.marks == sorted(tl.marks) and len(tl.marks) >= 8
    assert tl.next_mark() and tl.pos == tl.marks[0]
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


def test_seek_is_fast_and_exact(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "r.jsonl", full_every=7)
    t0 = time.perf_counter()
    rec = Recording.open(path)
    for i in (len(rec.snaps) - 1, 3, 17, 0, 9):
        snap = rec.snapshot(i)
        assert snap.taken_at == rec.snaps[i].ts
    assert time.perf_counter() - t0 < 0.5
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
    rec = Recording.open(make_recording(tmp_path / "r.jsonl"))
    text = report(rec, default_plan())
    assert text.startswith("# Change window: staging — 2027-01-15 08:00:00Z")
    assert "**confirmed advance pg-5 api**" in text and "change window 42: api first" in text
    assert "**FAILED: advance pg-5 api**" in text and "staging-api-02 unhealthy" in text
    assert "- Rollbacks: 1" in text and "api-02 unhealthy: back" in text
    assert "- Failures: 1" in text
    assert "| 08:00:00 | tester | session started |" in text
    assert "pg-5 voice: pending → configured" in text  # a verdict change
    assert "REDIS_PASSWORD" not in text or "[redacted]" in text


def test_replay_command_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from tui.commands import add_tui_commands, default_to_drive, run_tui_command

    ap = argparse.ArgumentParser(prog="cockpit")
    sub = ap.add_subparsers(dest="cmd")
    add_tui_commands(sub)
    path = make_recording(tmp_path / "r.jsonl")
    out = tmp_path / "report.md"
    assert run_tui_command(ap.parse_args(["replay", str(path), "--report", str(out)])) == 0
    assert out.read_text().startswith("# Change window")
    assert run_tui_command(ap.parse_args(["replay", str(path), "--report"])) == 0
    assert "## Timeline" in capsys.readouterr().out
    assert default_to_drive([]) == ["drive"]
    assert default_to_drive(["--env", "prod"]) == ["drive", "--env", "prod"]
    assert default_to_drive(["--help"]) == ["--help"] and default_to_drive(["status"]) == ["status"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    assert run_tui_command(ap.parse_args(["replay", str(bad)])) == 2
