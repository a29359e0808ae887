"""SVG snapshots of the main screens (pytest-textual-snapshot), at 100×30 and 80×24, with a frozen
clock, fed from in-memory snapshots and a fixed recording. Update baselines deliberately:
`pytest tests/test_tui_snapshots.py --snapshot-update`, then look at them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from session.recording.reader import Recording
from tests.engine_double import FakeEngine
from tests.test_tui_support import T0, Clock, drive_app, make_recording, scenario, watch_app
from tui.app import make_app
from tui.screens.confirm import ConfirmScreen
from tui.screens.progress import ProgressScreen

SIZES = [(100, 30), (80, 24)]
Compare = Callable[..., bool]


def prepared(
    *keys: str, until: Callable[[Any], bool] | None = None, then: Callable[[Pilot[Any]], Awaitable[None]] | None = None
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        if until is not None:
            for _ in range(200):
                if until(pilot.app):
                    break
                await pilot.pause()
        if then is not None:
            await then(pilot)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("state", ["fresh", "straggler"])
def test_watch(snap_compare: Compare, state: str, size: tuple[int, int]) -> None:
    app = watch_app(
        [scenario(state)],
        lock={"who": "alice", "where": "bastion-1", "step": "pg-5", "since": T0 - 125, "token": "t"}
        if state == "straggler"
        else None,
    )
    assert snap_compare(app, terminal_size=size, run_before=prepared())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_drive_protected_failing_cert(snap_compare: Compare, size: tuple[int, int]) -> None:
    app = drive_app(
        FakeEngine([scenario("cert-fail")], env="production", protected=True), env="production", protected=True
    )
    assert snap_compare(app, terminal_size=size, run_before=prepared())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_confirm_protected(snap_compare: Compare, size: tuple[int, int]) -> None:
    engine = FakeEngine([scenario("ready-pg5")], env="production", protected=True)
    app = drive_app(engine, env="production", protected=True)

    async def reason(pilot: Pilot[Any]) -> None:
        pilot.app.screen.query_one("#reason", Input).value = "change window 42"
        await pilot.pause()

    assert snap_compare(
        app,
        terminal_size=size,
        run_before=prepared("a", until=lambda a: isinstance(a.screen, ConfirmScreen), then=reason),
    )


def test_progress_failure(snap_compare: Compare) -> None:
    engine = FakeEngine([scenario("ready-pg5")], fail_apply=True)
    app = drive_app(engine)

    async def confirm(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        screen.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        screen.query_one("#confirm").press()
        for _ in range(200):
            if isinstance(pilot.app.screen, ProgressScreen) and pilot.app.screen.outcome is not None:
                break
            await pilot.pause()

    assert snap_compare(
        app,
        terminal_size=(100, 30),
        run_before=prepared("a", until=lambda a: isinstance(a.screen, ConfirmScreen), then=confirm),
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_confirm_many_instances_blocked(snap_compare: Compare, size: tuple[int, int]) -> None:
    """Ten instances and a closed gate: the summary and the gate stay above the host list; the closed id and
    the command line that would override it are named."""
    engine = FakeEngine([scenario("ready-pg5")], extra_hosts=8, gates_closed=True)
    app = drive_app(engine)
    assert snap_compare(
        app, terminal_size=size, run_before=prepared("a", until=lambda a: isinstance(a.screen, ConfirmScreen))
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_progress_paused(snap_compare: Compare, size: tuple[int, int]) -> None:
    """A roll of three instances paused after the first: n/N, elapsed, ETA, PAUSED, what p and s do."""
    clock = Clock()
    engine = FakeEngine([scenario("ready-pg5")], paced=True, extra_hosts=1)
    app = drive_app(engine, clock=clock)

    async def pause_after_the_first(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        screen.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        screen.query_one("#confirm").press()
        await wait(
            pilot,
            lambda a: isinstance(a.screen, ProgressScreen) and a.screen.statuses["staging-api-01"] == "restarting",
        )
        await pilot.press("p")
        clock.t += 42
        engine.go()
        await wait(pilot, lambda a: isinstance(a.screen, ProgressScreen) and a.screen.state == "paused")

    assert snap_compare(
        app,
        terminal_size=size,
        run_before=prepared("a", until=lambda a: isinstance(a.screen, ConfirmScreen), then=pause_after_the_first),
    )


async def wait(pilot: Pilot[Any], cond: Callable[[Any], bool]) -> None:
    for _ in range(300):
        if cond(pilot.app):
            return
        await pilot.pause()
    raise AssertionError("the screen never got there")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_replay(snap_compare: Compare, tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_app("replay", recording=Recording.open(make_recording(tmp_path / "r.jsonl")))

    async def seek(pilot: Pilot[Any]) -> None:
        pilot.app.main.goto(T0 + 26)  # type: ignore[attr-defined]
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=prepared(then=seek))


def test_help_80x24(snap_compare: Compare) -> None:
    app = drive_app(FakeEngine([scenario("ready-pg5")]))
    assert snap_compare(app, terminal_size=(80, 24), run_before=prepared("question_mark"))


def test_host_detail_80x24(snap_compare: Compare) -> None:
    app = watch_app([scenario("straggler")])
    assert snap_compare(app, terminal_size=(80, 24), run_before=prepared("2", "down", "down", "down", "down", "enter"))


def test_database_detail_100x30(snap_compare: Compare) -> None:
    app = watch_app([scenario("cert-fail")])
    assert snap_compare(app, terminal_size=(100, 30), run_before=prepared("3", "enter"))
