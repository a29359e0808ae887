"""Pilot tests of the cockpit app with in-memory snapshots and an engine test double: the header,
watch mode without write actions, the confirmation screen, a drive cycle with progress and rollback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Static

from tests.engine_double import FakeEngine
from tests.test_tui_support import (
    JOURNAL,
    LAB_SECRETS,
    Clock,
    drive_app,
    scenario,
    watch_app,
)
from tui.app import CockpitApp, make_app
from tui.recording import Recorder
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


def text_of(app: CockpitApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def header_text(app: CockpitApp) -> str:
    h = app.main.query_one(CockpitHeader)
    return " ".join(str(w.render()) for w in h.query(Static))


# -- the header ------------------------------------------------------------------------------------


async def test_header_shows_env_mode_lock_and_freshness() -> None:
    app = watch_app([scenario("straggler")], lock={"who": "alice", "where": "bastion", "step": "pg-5",
                                                   "since": 1_800_000_000.0 - 120, "token": "x"})
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
bad = [m for m in ("tui.widgets.drive", "tui.widgets.confirm", "tui.widgets.progress", "plans.engine",
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
        titles = [c.title for c in app.get_system_commands(app.main)]
        assert "Advance [a]" in titles and "Roll back [r]" in titles and "Advance pg-5 for api" in titles


# -- drive mode ---------------------------------------------------------------------------------------------


async def open_confirm(pilot: Pilot[Any], key: str = "a") -> Any:
    from tui.widgets.confirm import ConfirmScreen

    await ready(pilot)
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation screen")
    return pilot.app.screen


async def test_drive_advance_cycle_records_everything(tmp_path: Path) -> None:
    from tui.widgets.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], secret_output=f"REDIS_PASSWORD={LAB_SECRETS[1]}")
    rec = Recorder(tmp_path / "d.jsonl", env="staging", mode="drive", clock=Clock())
    app = drive_app(engine, recorder=rec)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        assert engine.calls[:2] == [("acquire_lock", "pg-5"), ("preview", "pg-5", "api", "advance")]
        assert app.focused is confirm.query_one("#cancel")
        assert confirm.query_one("#confirm", Button).disabled
        assert "enter a reason" in text_of(app, "#why-disabled")
        preview = text_of(app, "#confirm-preview")
        assert "/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)" in preview
        assert preview.index("staging-api-01") < preview.index("staging-api-02")
        confirm.query_one("#reason", Input).focus()
        await pilot.press(*"window 42")
        await pilot.press("enter")  # Enter in the field never confirms
        await pilot.pause()
        assert app.screen is confirm and not confirm.query_one("#confirm", Button).disabled
        confirm.query_one("#confirm", Button).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None,
                    "the outcome")
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
        await pilot.press("enter")  # focus is on Cancel
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
        assert "gate pgbouncer_offers_tls_and_ca_files is closed" in why and "flip voice first" in why
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
    from tui.widgets.confirm import ConfirmScreen
    from tui.widgets.progress import ProgressScreen

    engine = FakeEngine([scenario("ready-pg5")], fail_apply=True)
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        confirm = await open_confirm(pilot)
        confirm.query_one("#reason", Input).value = "window 42"
        await pilot.pause()
        confirm.query_one("#confirm", Button).press()
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None,
                    "the outcome")
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


async def test_a_held_lock_stops_before_the_preview() -> None:
    engine = FakeEngine([scenario("ready-pg5")], lock_holder="bob")
    app = drive_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("a")
        await ready(pilot)
        assert app.screen is app.main
        assert engine.calls == [("acquire_lock", "pg-5")]
        assert app.main.busy is False


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
