"""Pilot tests of the cockpit app with in-memory snapshots and an engine test double: the header,
watch mode without write actions, the confirmation screen, a drive cycle with progress and rollback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.markup import to_content
from textual.pilot import Pilot
from textual.widgets import Button, Input, Static

from session.loglines import log_lines
from session.recording.writer import Recorder
from tests.engine_double import FakeEngine
from tests.test_tui_support import (
    JOURNAL,
    LAB_SECRETS,
    T0,
    Clock,
    drive_app,
    scenario,
    screen_text,
    watch_app,
)
from tui.app import CockpitApp, make_app
from tui.widgets.header import CockpitHeader
from tui.widgets.tables import InstanceTable, PlanTable

ROOT = Path(__file__).resolve().parent.parent
WRITE_ACTIONS = {"advance", "rollback", "advance_next"}


async def ready(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot: Pilot[Any], cond: Any, what: str, tries: int = 200) -> None:
    """Let the app run until `cond()` holds (message passing, no sleeping)."""
    for _ in range(tries):
        if cond():
            return
        await pilot.pause()
    raise AssertionError(f"never happened: {what}")


def unescaped(markup: str) -> str:
    """What the palette shows for a title (it reads titles as markup)."""
    return to_content(markup).plain


def text_of(app: CockpitApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def header_text(app: CockpitApp) -> str:
    h = app.main.query_one(CockpitHeader)
    return " ".join(str(w.render()) for w in h.query(Static))


# -- the header ------------------------------------------------------------------------------------


async def test_header_shows_env_mode_lock_and_freshness() -> None:
    app = watch_app(
        [scenario("straggler")],
        lock={"who": "alice", "where": "bastion", "step": "pg-5", "since": 1_800_000_000.0 - 120, "token": "x"},
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        text = header_text(app)
        assert "env staging" in text and "WATCH" in text
        assert "lock: alice@bastion pg-5" in text
        assert "3s ago" in text
        assert "next: pg-5 for voice" in text
        assert not app.main.query_one(CockpitHeader).has_class("-protected")


async def test_a_protected_env_looks_different() -> None:
    app = watch_app([scenario("fresh")], protected=True, env="production")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        header = app.main.query_one(CockpitHeader)
        assert header.has_class("-protected")
        assert "PROTECTED PRODUCTION" in header_text(app)


async def test_data_age_turns_stale() -> None:
    clock = Clock()
    app = watch_app([scenario("fresh")], clock=clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        clock.t += 120
        app.main.refresh_header()
        await pilot.pause()
        assert app.main.query_one("#fresh").has_class("-old")
        assert "2m03s ago" in header_text(app)


async def test_tables_update_in_place() -> None:
    app = watch_app([scenario("ready-pg5"), scenario("straggler", taken_at=1_800_000_001.0)])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        table = app.main.query_one("#instances", InstanceTable)
        first_keys = list(table.rows)
        app.action_poll_now()
        await ready(pilot)
        assert list(table.rows) == first_keys  # same rows, updated, not rebuilt
        assert "plain" in str(table.get_cell("staging-voice-02", "db"))
        plan = app.main.query_one("#plan", PlanTable)
        assert "configured" in str(plan.get_cell("pg-5:voice", "state"))
        events = app.main.query_one("#events")
        assert events.count > 0  # the verdict changes went to the log


async def test_journal_and_lock_go_to_the_event_log(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "r.jsonl", env="staging", mode="watch", clock=Clock())
    app = watch_app([scenario("fresh")], recorder=rec, journal=JOURNAL)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
    rec.close()
    kinds = [json.loads(x)["t"] for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert kinds[:2] == ["header", "frame"] and "journal" in kinds and "lock" in kinds


# -- watch mode: no write action at all -----------------------------------------------------------------


async def test_watch_has_no_write_bindings_or_commands() -> None:
    app = watch_app([scenario("ready-pg5")])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        actions = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not actions & WRITE_ACTIONS
        for klass in type(app.main).__mro__:
            for b in getattr(klass, "BINDINGS", ()) or ():
                assert getattr(b, "action", "") not in WRITE_ACTIONS
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not [t for t in titles if "Advance" in t or "Roll back" in t]
        assert not hasattr(app.main, "engine")
        await pilot.press("a", "r", "n")
        await pilot.pause()
        assert app.screen is app.main  # nothing opened


def test_watch_refuses_an_engine_and_never_loads_the_drive_code() -> None:
    with pytest.raises(ValueError, match="read-only"):
        make_app("watch", env_name="staging", services=(), feed=object(), engine=object())  # type: ignore[arg-type]
    code = """
import asyncio, sys
from tests.test_tui_support import watch_app, scenario
async def main():
    app = watch_app([scenario("ready-pg5")])
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete(); await pilot.pause()
        await pilot.press("a", "r", "n", "ctrl+p"); await pilot.pause()
asyncio.run(main())
bad = [m for m in ("tui.screens.drive", "tui.screens.confirm", "tui.screens.progress", "plans.engine",
                   "plans.store") if m in sys.modules]
print(bad); sys.exit(1 if bad else 0)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


async def test_help_lists_every_key_of_the_mode() -> None:
    app = drive_app(FakeEngine([scenario("ready-pg5")]))
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        body = text_of(app, "#help-body")
        for what in ("Advance", "Roll back", "Advance next", "Detail", "Quit", "Command palette"):
            assert what in body
        titles = [unescaped(c.title) for c in app.get_system_commands(app.main)]
        assert "Advance [a]" in titles and "Roll back [r]" in titles and "Advance pg-5 for api" in titles
        assert "Restart [R]" in titles and "Restart api" in titles and "Restart staging-api-02" in titles
        assert "Filter [/]" in titles


# -- drive mode ---------------------------------------------------------------------------------------------


async def open_confirm(pilot: Pilot[Any], key: str = "a") -> Any:
    from tui.screens.confirm import ConfirmScreen

    await ready(pilot)
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation screen")
    return pilot.app.screen


async def test_drive_advance_cycle_records_everything(tmp_path: Path) -> None:
    from tui.screens.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], secret_output=f"REDIS_PASSWORD={LAB_SECRETS[1]}")
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        assert engine.calls[:2] == [("acquire_lock", "pg-5"), ("preview", "pg-5", "api", "advance")]
        assert app.focused is confirm.query_one("#reason")  # focus lands in the reason field
        assert confirm.query_one("#confirm", Button).disabled
        assert "enter a reason" in text_of(app, "#why-disabled")
        preview = text_of(app, "#confirm-preview")
        assert "/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)" in preview
        assert preview.index("staging-api-01") < preview.index("staging-api-02")
        await pilot.press(*"window 42")
        await pilot.press("enter")  # Enter in the field moves on; it never confirms
        await pilot.pause()
        assert app.screen is confirm and not confirm.query_one("#confirm", Button).disabled
        assert app.focused is confirm.query_one("#cancel")
        assert "press Tab once to reach «Advance pg-5 for api», then Enter" in text_of(app, "#why-disabled")
        await pilot.press("tab")  # as the hint says
        await pilot.pause()
        assert app.focused is confirm.query_one("#confirm")
        assert "Enter confirms «Advance pg-5 for api» in staging" in text_of(app, "#why-disabled")
        await pilot.press("enter")
        await until(
            pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome"
        )
        progress = app.screen
        assert progress.statuses == {"staging-api-01": "done", "staging-api-02": "done"}
        assert "done" in text_of(app, "#progress-result")
        assert progress.query_one("#rollback").has_class("-hidden")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
        await pilot.press("escape")
        await ready(pilot)
        assert app.screen is app.main
        assert [c[0] for c in engine.calls] == ["acquire_lock", "preview", "apply", "release_lock"]
        assert engine.calls[2] == ("apply", "pg-5", "api", "advance", "window 42")
    rec.close()
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    kinds = [(r["t"], r.get("kind")) for r in lines if r["t"] in ("action", "event", "outcome")]
    assert kinds[:3] == [("action", "lock"), ("action", "preview"), ("action", "confirm")]
    assert ("outcome", None) in kinds and kinds[-1] == ("action", "unlock")
    assert ("event", "restart") in kinds and ("event", "instance-done") in kinds
    assert LAB_SECRETS[1] not in (tmp_path / "d.jsonl").read_text()
    confirm_rec = next(r for r in lines if r.get("kind") == "confirm")
    assert confirm_rec["reason"] == "window 42" and confirm_rec["step"] == "pg-5"


async def test_enter_does_not_confirm_by_default() -> None:
    engine = FakeEngine([scenario("ready-pg5")])
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_confirm(pilot)
        await pilot.press(*"why", "enter")  # Enter in the reason moves on, to Cancel
        await pilot.pause()
        assert app.focused is app.screen.query_one("#cancel")
        await pilot.press("enter")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
        await ready(pilot)
        assert app.screen is app.main
        assert "apply" not in [c[0] for c in engine.calls]


async def test_a_closed_gate_disables_confirm_with_its_reason() -> None:
    engine = FakeEngine([scenario("ready-pg5")], gates_closed=True)
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        assert confirm.query_one("#confirm", Button).disabled
        why = text_of(app, "#why-disabled")
        assert "gate pgbouncer_offers_tls_and_ca_files is closed" in why
        assert "flip voice first" in text_of(app, "#confirm-summary")  # the reason, above
        confirm.query_one("#confirm", Button).press()
        await pilot.pause()
        assert app.screen is confirm


async def test_a_protected_env_needs_its_name_typed() -> None:
    engine = FakeEngine([scenario("ready-pg5")], env="production", protected=True)
    app = drive_app(engine, env="production", protected=True)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        assert confirm.has_class("-protected")
        assert "PROTECTED ENVIRONMENT PRODUCTION" in text_of(app, "#protected-banner")
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        assert confirm.query_one("#confirm", Button).disabled
        assert "type the environment name (production)" in text_of(app, "#why-disabled")
        confirm.query_one("#typed-name", Input).value = "prod"
        await pilot.pause()
        assert confirm.query_one("#confirm", Button).disabled
        confirm.query_one("#typed-name", Input).value = "production"
        await pilot.pause()
        assert not confirm.query_one("#confirm", Button).disabled


async def test_closed_local_gates_dim_the_action_with_the_reason() -> None:
    app = drive_app(FakeEngine([scenario("straggler")]))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.main.query_one("#plan", PlanTable).highlight("pg-6")
        await pilot.pause()
        assert app.main.check_action("advance", ()) is None
        assert "gate no_plaintext_leg1 is closed" in app.main.why_disabled("advance")
        assert "[a] advance: disabled — gate no_plaintext_leg1 is closed" in text_of(app, "#step-detail")
        await pilot.press("a")
        await pilot.pause()
        assert app.screen is app.main


async def test_a_failure_offers_the_rollback_and_rolls_back() -> None:
    from tui.screens.confirm import ConfirmScreen
    from tui.screens.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], fail_apply=True)
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(
            pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome"
        )
        progress = app.screen
        assert "FAILED at verify" in text_of(app, "#progress-result")
        assert progress.statuses["staging-api-02"] == "FAILED"
        rollback = progress.query_one("#rollback", Button)
        assert not rollback.has_class("-hidden")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
        rollback.press()
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rollback's confirmation")
        assert app.screen.preview.direction == "rollback"
        assert "verify-full → unset" in text_of(app, "#confirm-preview")
        app.screen.query_one("#reason", Input).value = "api-02 unhealthy"
        await pilot.pause()
        app.screen.query_one("#confirm", Button).press()
        await until(pilot, lambda: any(c[0] == "apply" and c[3] == "rollback" for c in engine.calls), "rollback")
    assert [c[0] for c in engine.calls].count("acquire_lock") == 2


def last_said(app: CockpitApp) -> str:
    """The newest notification's text."""
    said = list(app._notifications)
    return said[-1].message if said else ""


def recorded(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


async def problem_shown(pilot: Pilot[Any]) -> str:
    """Wait for the problem dialog; returns its title and body."""
    from tui.screens.detail import ProblemScreen

    await until(pilot, lambda: isinstance(pilot.app.screen, ProblemScreen), "the problem dialog")
    return f"{text_of(pilot.app, '#problem-title')}\n{text_of(pilot.app, '#problem-body')}"


async def test_a_held_lock_is_said_in_a_dialog_and_recorded(tmp_path: Path) -> None:
    engine = FakeEngine([scenario("ready-pg5")], lock_holder="bob")
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a")
        text = await problem_shown(pilot)
        assert "[staging]" in text and "the fleet lock was not taken" in text and "held by bob" in text
        assert engine.calls == [("acquire_lock", "pg-5")]
        assert app.main.busy is False
        await pilot.press("enter")  # read: Enter closes it
        await pilot.pause()
        assert app.screen is app.main
    rec.close()
    refused = [r for r in recorded(tmp_path / "d.jsonl") if r.get("kind") == "lock-refused"]
    assert len(refused) == 1 and "held by bob" in refused[0]["error"]


@pytest.mark.parametrize("kind", ["engine error", "lock error"])
async def test_an_engine_error_is_said_in_a_dialog_and_recorded(tmp_path: Path, kind: str) -> None:
    """What bad-san did to `a` on pg-1: the engine said no, and the screen showed nothing."""
    why = (
        "pg-5 does not apply to service 'api'"
        if kind == "engine error"
        else "the journal could not be written (disk full); the lock was released, nothing was changed"
    )
    engine = FakeEngine(
        [scenario("ready-pg5")], **({"preview_error": why} if kind == "engine error" else {"lock_error": why})
    )
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a")
        text = await problem_shown(pilot)
        assert why in text and "EngineError" not in text  # the engine's words, not a type name
        await until(pilot, lambda: not app.main.busy, "the cycle over")
        assert (
            ("release_lock",) in engine.calls if kind == "engine error" else engine.calls == [("acquire_lock", "pg-5")]
        )
    rec.close()
    kinds = [(r.get("kind"), r.get("error")) for r in recorded(tmp_path / "d.jsonl") if r["t"] == "action"]
    wanted = ("error", f"no preview: {why}") if kind == "engine error" else ("lock-refused", why)
    assert wanted in kinds


@pytest.mark.parametrize("how", ["refuse", "preflight_error"])
async def test_a_refusal_stays_on_screen_and_is_recorded(tmp_path: Path, how: str) -> None:
    from tui.screens.progress import ProgressScreen

    why = "the fleet changed since the preview: DATABASE_SSL_MODE for api is now require, was unset — preview again"
    engine = FakeEngine([scenario("ready-pg5")], **{how: why})  # type: ignore[arg-type]
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(
            pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome"
        )
        result = text_of(app, "#progress-result")
        assert "REFUSED" in result and "nothing was changed" in result and "preview again" in result
        assert app.screen.query_one("#rollback").has_class("-hidden")  # nothing to roll back
        await pilot.pause()
        assert isinstance(app.screen, ProgressScreen)  # it stays until closed
    rec.close()
    refused = [r for r in recorded(tmp_path / "d.jsonl") if r.get("kind") == "refused"]
    assert len(refused) == 1 and "preview again" in refused[0]["reason"]
    assert refused[0]["reason"].startswith("refused: " if how == "refuse" else "preflight: preflight failed")


async def test_an_apply_that_raises_is_shown_and_recorded(tmp_path: Path) -> None:
    from tui.screens.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], crash_apply=True)
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(
            pilot,
            lambda: isinstance(app.screen, ProgressScreen) and app.screen.state == "finished",
            "the end of the roll",
        )
        assert "stopped by an error: RuntimeError" in text_of(app, "#progress-result")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
    rec.close()
    errors = [r for r in recorded(tmp_path / "d.jsonl") if r.get("kind") == "error"]
    assert len(errors) == 1 and errors[0]["error"].startswith("RuntimeError: the engine's apply crashed")


async def test_a_crashed_drive_worker_is_shown_and_recorded(tmp_path: Path) -> None:
    engine = FakeEngine([scenario("ready-pg5")], broken_preview=True)
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a")
        text = await problem_shown(pilot)
        assert "Something failed inside the cockpit" in text and "a preview that cannot be recorded" in text
        assert ("release_lock",) in engine.calls and not app.main.busy
    rec.close()
    errors = [r for r in recorded(tmp_path / "d.jsonl") if r.get("kind") == "error"]
    assert errors and "a preview that cannot be recorded" in errors[-1]["error"]
    assert errors[-1]["error"].startswith("the cockpit failed inside an action")
    assert log_lines(errors[-1])[0].text.startswith("error: the cockpit failed inside an action")


async def test_a_crash_after_the_roll_leaves_a_progress_screen_that_closes() -> None:
    from tui.screens.detail import ProblemScreen
    from tui.screens.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], broken_outcome=True)
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        text = await problem_shown(pilot)
        assert "an outcome that cannot be recorded" in text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), "the progress screen under it")
        assert app.screen.state == "finished" and "stopped following this roll" in text_of(app, "#progress-result")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main and not any(isinstance(s, ProblemScreen) for s in app.screen_stack)


# -- every key answers ---------------------------------------------------------------------------------


async def test_a_disabled_key_says_why_in_one_line() -> None:
    engine = FakeEngine([scenario("straggler")])
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.main.query_one("#plan", PlanTable).highlight("pg-6")
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        said = [n.message for n in app._notifications]
        assert any(m.startswith("Advance [a] is not available: gate no_plaintext_leg1 is closed") for m in said)
        assert app.main.why_disabled("advance") in said[-1]  # the palette's reason, word for word
        app.main.query_one("#plan", PlanTable).highlight("pg-7")
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        assert "Roll back [r] is not available: pg-7 is not applied" in last_said(app)
        assert engine.calls == []  # no lock was taken for a key that cannot act


async def test_a_certs_step_is_not_advanced_from_the_cockpit() -> None:
    """bad-san: pg-1 failed; `a` there used to take the lock and fail silently in the engine."""
    engine = FakeEngine([scenario("cert-fail")])
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert "next: pg-1 — done with `cockpit certs push`" in header_text(app)
        assert "[a] advance: disabled — pg-1 is done with `cockpit certs push`" in text_of(app, "#step-detail")
        await pilot.press("a", "n")
        await pilot.pause()
        assert "pg-1 is done with `cockpit certs push`, not from the cockpit" in last_said(app)
        assert engine.calls == []


async def test_the_header_says_what_blocks_the_next_step() -> None:
    app = drive_app(FakeEngine([scenario("ca-missing")]))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert "next: pg-5 for api — blocked by pgbouncer_offers_tls_and_ca_files" in header_text(app)
        assert app.main.query_one("#next-line").has_class("-blocked")


# -- restart ---------------------------------------------------------------------------------------------


async def test_restart_a_host_from_the_instances(tmp_path: Path) -> None:
    from tui.screens.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")])
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("2", "j")  # the instances, second row
        await pilot.pause()
        assert app.main.query_one("#instances", InstanceTable).highlighted_key == "staging-api-02"
        confirm = await open_confirm(pilot, "R")
        assert engine.calls[:2] == [("acquire_lock", "restart"), ("preview_restart", "api", ("staging-api-02",))]
        title = text_of(app, "#confirm-title")
        assert title.startswith("[staging] RESTART api (1 instance)")
        assert "restarts 1 instance(s) of api (recreates voiceai-api on each), one at a time" in text_of(
            app, "#confirm-summary"
        )
        confirm.query_one("#reason", Input).value = "land the new CA"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(
            pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome"
        )
        assert app.screen.outcome.ok and app.screen.statuses == {"staging-api-02": "done"}
        assert app.screen.query_one("#rollback").has_class("-hidden")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("1")  # the plan, on pg-5 for api: R restarts every instance of api
        await pilot.pause()
        await open_confirm(pilot, "R")
        assert engine.calls[-1] == ("preview_restart", "api", ())
    rec.close()
    records = recorded(tmp_path / "d.jsonl")
    confirm_rec = next(r for r in records if r.get("kind") == "confirm")
    assert confirm_rec["direction"] == "restart" and (confirm_rec["step"], confirm_rec["service"]) == ("restart", "api")
    preview_rec = next(r for r in records if r.get("kind") == "preview")
    assert [r["host"] for r in preview_rec["preview"]["restarts"]] == ["staging-api-02"]
    assert not [r for r in records if r["t"] == "note" and r.get("level") == "error"]  # nothing refused


# -- pause and stop ----------------------------------------------------------------------------------------


async def test_pause_then_stop_a_roll_and_roll_back_what_changed(tmp_path: Path) -> None:
    from tui.screens.confirm import ConfirmScreen
    from tui.screens.progress import ProgressScreen

    clock = Clock()
    engine = FakeEngine([scenario("ready-pg5")], paced=True, extra_hosts=2)  # 4 instances of api
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=clock)
    app = drive_app(engine, recorder=rec, clock=clock)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(
            pilot,
            lambda: isinstance(app.screen, ProgressScreen) and app.screen.statuses["staging-api-01"] == "restarting",
            "the first restart",
        )
        progress = app.screen
        assert "0/4 instances" in text_of(app, "#progress-status") and "ETA 1:20" in text_of(app, "#progress-status")
        for key in ("escape", "q", "enter"):  # none of them leaves, or quits, a running roll
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is progress and app.is_running
            assert "does not interrupt a roll: p pauses and s stops" in last_said(app)
        await pilot.press("p")
        await pilot.pause()
        assert "pausing after the current instance" in text_of(app, "#progress-status")
        clock.t += 30
        engine.go()  # staging-api-01 finishes; the engine pauses before the next one
        await until(pilot, lambda: progress.state == "paused", "paused")
        status = text_of(app, "#progress-status")
        assert "1/4 instances" in status and "elapsed 0:30" in status and "PAUSED" in status
        assert engine.controls[0].paused
        await pilot.press("p")  # resume
        await until(pilot, lambda: progress.statuses["staging-api-02"] == "restarting", "resumed")
        await pilot.press("s")  # stop after this instance
        assert "stopping after the current instance" in text_of(app, "#progress-status")
        engine.go()
        await until(pilot, lambda: progress.outcome is not None, "the stopped outcome")
        assert progress.outcome.stage == "stopped"
        assert progress.outcome.changed == ("staging-api-01", "staging-api-02")
        assert progress.statuses == {
            "staging-api-01": "done",
            "staging-api-02": "done",
            "staging-api-03": "not restarted",
            "staging-api-04": "not restarted",
        }
        assert "STOPPED" in text_of(app, "#progress-result")
        rollback = progress.query_one("#rollback", Button)
        assert not rollback.has_class("-hidden")
        await until(pilot, lambda: ("release_lock",) in engine.calls, "the lock released")
        rollback.press()
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rollback's confirmation")
        assert app.screen.preview.direction == "rollback"
    rec.close()
    said = [r.get("kind") or r.get("text", "") for r in recorded(tmp_path / "d.jsonl") if r["t"] in ("event", "note")]
    at = {
        w: next(i for i, x in enumerate(said) if w in x)
        for w in ("asked to pause", "paused", "resumed: advance", "asked to stop", "stopping")
    }
    assert at["asked to pause"] < at["paused"] < at["resumed: advance"] < at["asked to stop"] < at["stopping"]


# -- the confirmation says where and how much ----------------------------------------------------------------


async def test_the_confirmation_puts_where_and_how_much_above_the_hosts() -> None:
    engine = FakeEngine([scenario("ready-pg5")], extra_hosts=8, gates_closed=True)  # 10 instances
    app = drive_app(engine, env="[staging]")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_confirm(pilot)
        await pilot.pause()
        shown = screen_text(app)
        assert "[[staging]] ADVANCE pg-5 for api" in shown  # brackets and all: not eaten as markup
        head = text_of(app, "#confirm-summary")
        assert head.startswith(
            "2 config change(s); restarts 10 instance(s) of api (recreates voiceai-api on each), "
            "one at a time, about 200 s in all"
        )
        assert "restarts 10 instance(s)" in shown  # the summary is on screen,
        assert "pgbouncer_offers_tls_and_ca_files" in shown  # and so is the gate, above the host list
        assert "Not open: pgbouncer_offers_tls_and_ca_files" in head and "The cockpit offers no override" in head
        assert "cockpit advance pg-5 --service api --override pgbouncer_offers_tls_and_ca_files --reason" in head
        assert "staging-api-10" in text_of(app, "#confirm-preview")


async def test_a_rollback_confirmation_lists_blockers_and_warnings_by_id() -> None:
    from tests.engine_double import Blocker

    engine = FakeEngine(
        [scenario("straggler")],
        blockers=(
            Blocker("later:pg-6", "pg-6 is configured: roll it back first"),
            Blocker("unmeasured:redis-2", "redis-2 could not be measured; the store says it is off", "warn"),
        ),
    )
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.main.query_one("#plan", PlanTable).highlight("pg-5:api")
        await pilot.pause()
        confirm = await open_confirm(pilot, "r")
        head = text_of(app, "#confirm-summary")
        assert "✘ [later:pg-6] pg-6 is configured" in head and "⚠ [unmeasured:redis-2]" in head
        assert "Not open: later:pg-6." in head and "unmeasured:redis-2," not in head
        confirm.query_one("#reason", Input).value = "back"
        await pilot.pause()
        assert confirm.query_one("#confirm", Button).disabled
        assert "blocked [later:pg-6]" in text_of(app, "#why-disabled")


async def test_host_detail_on_demand() -> None:
    app = watch_app([scenario("cert-fail")])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.main.query_one("#legs-side").focus() if not app.main.has_class("-narrow") else None
        await pilot.press("2")  # the instances tab
        await pilot.press("enter")
        await pilot.pause()
        body = text_of(app, "#detail-body")
        assert "staging-api-01" in body and "DATABASE_SSL_MODE" in body and "certificate material" in body
        await pilot.press("escape", "3", "enter")
        await pilot.pause()
        body = text_of(app, "#detail-body")
        assert "tls.postgres" in body and "certificate does not cover" in body and '"fingerprint"' in body


def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = watch_app([scenario("fresh")])
    assert app.no_color


# -- terminal manners ------------------------------------------------------------------------------------------


async def test_problem_columns_stay_at_80_columns_and_every_column_at_120() -> None:
    for size, hidden in (((80, 24), {"service"}), ((140, 40), set())):
        app = watch_app([scenario("straggler")])
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            table = app.main.query_one("#instances", InstanceTable)
            shown = set(table.visible_columns)
            assert {"host", "v", "drift", "db"} <= shown, (size, shown)
            assert not shown & hidden
            assert table.get_cell("staging-voice-02", "v") is not None
            if size == (80, 24):
                assert "Chk" in screen_text(app) and "Drift" in screen_text(app)


async def test_a_terminal_below_the_minimum_says_so() -> None:
    app = watch_app([scenario("fresh")])
    async with app.run_test(size=(60, 20)) as pilot:
        await ready(pilot)
        assert "⚠ too small: 60×20 < 80×24" in screen_text(app)
        assert app.main.query_one("#next-line").has_class("-too-small")
    app = watch_app([scenario("fresh")])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "too small" not in screen_text(app)


async def test_sixteen_colours_keep_warn_fail_focus_and_key_hints_apart() -> None:
    """On a 16-colour terminal (TEXTUAL_COLOR_SYSTEM=standard) Rich maps every colour to the nearest of 16;
    Textual's own theme then paints warnings, focus and key hints in the error's bright red."""
    from rich.color import Color, ColorSystem
    from rich.style import Style
    from textual.widgets._footer import FooterKey

    from probes.model import Verdict
    from tui.widgets.style import VERDICT_STYLE

    def sixteen(color: Any) -> int:
        c = (color if isinstance(color, Color) else Color.parse(str(color))).downgrade(ColorSystem.STANDARD)
        assert c.number is not None
        return c.number

    red, yellow = {1, 9}, {3, 11}
    app = watch_app([scenario("cert-fail")])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        v = app.get_css_variables()
        assert sixteen(v["error"]) in red
        assert sixteen(v["warning"]) in yellow  # WARN ≠ FAIL
        assert sixteen(v["accent"]) not in red | yellow
        plan = app.main.query_one("#plan")
        assert plan.has_focus
        assert sixteen(plan.styles.border_top[1].rich_color) not in red  # focus is not an alarm
        key = app.main.query_one(FooterKey)
        key_color = key.get_component_rich_style("footer-key--key").color
        assert key_color is not None and sixteen(key_color) not in red  # nor are the key hints
        warn, fail = (Style.parse(VERDICT_STYLE[x]).color for x in (Verdict.WARN, Verdict.FAIL))
        assert warn is not None and fail is not None and sixteen(warn) in yellow and sixteen(fail) in red
        verdict = app.main.query_one("#verdict")
        assert verdict.has_class("-fail") and sixteen(verdict.rich_style.color) in red


PY_LITERAL = re.compile(r"\b(None|True|False)\b")


async def test_no_python_none_true_or_false_on_any_screen() -> None:
    from probes.model import Why
    from tests import snapshots_factory as f

    odd = f.with_leg_unknown(scenario("straggler"), "redis", Why.TIMEOUT)
    snaps = [scenario("fresh"), odd, f.without_database(scenario("cert-fail"), Why.UNREACHABLE)]
    app = watch_app(
        snaps,
        lock={"who": "alice", "where": None, "step": None, "since": T0, "token": "t"},
        journal=({"ts": T0 - 5, "who": None, "event": "apply", "step": None, "ok": None},),
    )
    seen: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        for n in range(len(snaps)):
            if n:
                app.action_poll_now()
            await ready(pilot)
            for tab in ("2", "3", "4"):
                await pilot.press(tab)
                await pilot.pause()
                seen.append(screen_text(app))
            for host in ("staging-voice-02", "staging-api-01"):
                app.main.open_host(host)
                await pilot.pause()
                seen.append(text_of(app, "#detail-body"))
                await pilot.press("escape")
            app.main.open_database()
            await pilot.pause()
            seen.append(text_of(app, "#detail-body"))
            await pilot.press("escape")
            await pilot.pause()
        events = app.main.query_one("#events")
        seen.append("\n".join(line.text for line in events.all))
    for text in seen:
        assert not PY_LITERAL.search(text), PY_LITERAL.search(text)


async def test_events_are_in_time_order_whatever_order_they_arrive_in() -> None:
    from session.loglines import LogLine

    app = watch_app([scenario("fresh")])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("4")
        events = app.main.query_one("#events")
        events.reset([])
        events.append([LogLine(T0 + 10, "action", "confirmed"), LogLine(T0 + 20, "outcome", "done")])
        events.append(
            [LogLine(T0 + 12, "journal", "alice apply pg-5 api"), LogLine(T0 + 11, "journal", "alice intent pg-5")]
        )  # the journal, read late
        await pilot.pause()
        assert [line.text for line in events.shown] == [
            "confirmed",
            "alice intent pg-5",
            "alice apply pg-5 api",
            "done",
        ]
        rendered = [strip.text for strip in events.lines]
        assert [r.split(" ", 2)[-1].strip() for r in rendered] == [line.text for line in events.shown]
        await pilot.press("slash", *"alice", "enter")
        await pilot.pause()
        assert [line.text for line in events.shown] == ["alice intent pg-5", "alice apply pg-5 api"]
        assert "filtered Events" in screen_text(app)


async def test_j_k_g_G_and_the_filter_in_the_tables() -> None:
    app = watch_app([scenario("straggler")])
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("2")
        table = app.main.query_one("#instances", InstanceTable)
        assert table.highlighted_key == "staging-api-01"
        await pilot.press("j", "j")
        assert table.highlighted_key == "staging-web-01"
        await pilot.press("k")
        assert table.highlighted_key == "staging-api-02"
        await pilot.press("G")
        assert table.highlighted_key == "staging-telpro-01"
        await pilot.press("g")
        assert table.highlighted_key == "staging-api-01"
        await pilot.press("slash", *"voice")
        await pilot.pause()
        assert list(table.rows) and all("voice" in str(k.value) for k in table.rows)
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is table and table.filter_text == "voice"
        app.action_poll_now()  # a new snapshot keeps the filter
        await ready(pilot)
        assert {str(k.value) for k in table.rows} == {"staging-voice-01", "staging-voice-02"}
        await pilot.press("slash", "escape")  # Esc in the field clears the filter
        await pilot.pause()
        assert len(table.rows) == 7 and table.filter_text == ""


async def test_the_palette_screenshot_lands_in_the_state_dir() -> None:
    from cli.paths import screenshots_dir

    app = watch_app([scenario("fresh")])
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        titles = {c.title: c for c in app.get_system_commands(app.main)}
        assert str(screenshots_dir()) in titles["Screenshot"].help
        app.save_screenshot_here()
        await pilot.pause()
        saved = list(screenshots_dir().glob("*.svg"))
        assert saved and saved[0].read_text().startswith("<svg")
        assert str(saved[0]) in last_said(app)


def test_connections_are_listed_in_a_stable_order() -> None:
    import dataclasses

    from probes.snapshot import DatabaseState
    from tui.widgets.detail_text import database_text, instance_text

    snap = scenario("straggler")
    db = snap.database
    assert isinstance(db, DatabaseState)
    flipped = dataclasses.replace(
        db,
        legs={
            k: (dataclasses.replace(v, connections=tuple(reversed(v.connections))) if hasattr(v, "connections") else v)
            for k, v in db.legs.items()
        },
    )
    other = dataclasses.replace(snap, database=flipped)
    assert database_text(snap).plain == database_text(other).plain
    inst = snap.instances[3]
    assert instance_text(snap, inst).plain == instance_text(other, inst).plain
