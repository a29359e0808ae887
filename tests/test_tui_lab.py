"""The TUI against the real lab: drive a step to verified, a failure's rollback, and watch mode
changing nothing while another process drives."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input

from cli.compose import build_live_app
from lab import aws, control, scenarios
from lab.topology import LabSpec
from tests.enginekit import REPO
from tests.labkit import running_lab, set_var

pytestmark = pytest.mark.lab


async def wait_for(pilot: Pilot[Any], cond: Callable[[], bool], what: str, seconds: float = 120) -> None:
    """Real servers take wall time: let the app run in short steps until `cond()` holds."""
    for _ in range(int(seconds / 0.2)):
        if cond():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"never happened within {seconds}s: {what}")


def snap(app: Any) -> Any:
    view = getattr(app.main, "view", None)
    return view.snapshot if view is not None else None


def next_key(app: Any) -> str | None:
    """The step `n` would drive. Right after a scenario's restart PgBouncer may hold no server connection
    yet, so pg-4's verification can read "unverified" for a round: act on the settled fleet."""
    view = getattr(app.main, "view", None)
    return view.next_key if view is not None else None


async def drive_next_to_outcome(pilot: Pilot[Any], key: str, reason: str) -> Any:
    """Once the view names `key` as next, press `n`, confirm with `reason`, and wait for the outcome;
    returns the progress screen."""
    from tui.screens.progress import ProgressScreen

    app = pilot.app
    await wait_for(pilot, lambda: next_key(app) == key, f"{key} as the next step", 60)
    await pilot.press("n")
    await confirm_with_reason(pilot, reason)
    await wait_for(
        pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome", 180
    )
    return app.screen


def meter(spec: LabSpec, host_name: str, proc: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(spec.host(host_name).root) / f"var/lib/lab/{proc}.meter.json").read_text())
    return data


async def confirm_with_reason(pilot: Pilot[Any], reason: str) -> Any:
    from tui.screens.confirm import ConfirmScreen

    app = pilot.app
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, ConfirmScreen) and app.focused is not None,
        "the confirmation screen, focused",
        60,
    )
    confirm = app.screen
    assert app.focused is confirm.query_one("#reason")  # the focus is in the reason; Enter there never confirms
    confirm.query_one("#reason", Input).value = reason
    await pilot.pause()
    assert not confirm.query_one("#confirm", Button).disabled, confirm.query_one("#why-disabled").render()
    confirm.query_one("#confirm", Button).press()
    return confirm


async def test_drive_advances_a_service_and_sees_it_verified(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "pg-4")  # next: pg-5 for api
    live = build_live_app("drive", Path(lab.dir) / "inventory.toml", None, recordings=tmp_path, poll_interval=0.5)
    app, recorder, path = live.app, live.recorder, live.path
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            progress = await drive_next_to_outcome(pilot, "pg-5:api", "tui lab test")
            assert progress.outcome.ok, progress.outcome.reason
            assert progress.statuses == {"staging-api-01": "done", "staging-api-02": "done"}
    finally:
        recorder.close()
    for h in ("staging-api-01", "staging-api-02"):
        assert meter(lab, h, "api")["db"]["tls"] is True
    text = path.read_text()
    assert '"kind": "confirm"' in text or '"kind":"confirm"' in text
    for secret in aws.lab_secrets(lab).values():
        assert secret not in text
    scenarios.apply(lab, "fresh")


async def test_a_failing_step_rolls_back_by_itself_and_says_so(lab: LabSpec, tmp_path: Path) -> None:
    """pg-5 rolls back on its own when an instance fails (auto_rollback): the progress screen says so, and
    offers no second rollback. (A rollback the operator is offered — after a stop — is the small fleet's test.)"""
    scenarios.apply(lab, "pg-4")
    api2 = lab.host("staging-api-02")
    script = Path(api2.root) / "opt/services/api/update.sh"
    os.chmod(script, 0o644)  # update.sh cannot run on the second instance
    live = build_live_app("drive", Path(lab.dir) / "inventory.toml", None, recordings=tmp_path, poll_interval=0.5)
    app, recorder = live.app, live.recorder
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            progress = await drive_next_to_outcome(pilot, "pg-5:api", "tui failure test")
            assert not progress.outcome.ok and progress.statuses["staging-api-02"] == "FAILED"
            rolled = progress.outcome.rolled_back
            assert rolled is not None and rolled.ok, rolled
            result = str(progress.query_one("#progress-result").render())
            assert "FAILED at restart" in result and "automatic rollback: done" in result, result
            assert progress.query_one("#rollback", Button).has_class("-hidden")
    finally:
        os.chmod(script, 0o755)
        recorder.close()
    assert meter(lab, "staging-api-01", "api")["db"]["tls"] is False
    scenarios.apply(lab, "fresh")


def _fleet_writes(spec: LabSpec) -> dict[str, Any]:
    """Every trace a write leaves: SSM parameter versions (lock included), secrets' versions, and
    update.sh's backups on every host."""
    ssm, sm = aws.client(spec, "ssm"), aws.client(spec, "secretsmanager")
    params = {p["Name"]: p["Version"] for p in ssm.describe_parameters(MaxResults=50).get("Parameters", [])}
    token = None
    while True:
        page = ssm.describe_parameters(MaxResults=50, **({"NextToken": token} if token else {}))
        params.update({p["Name"]: p["Version"] for p in page["Parameters"]})
        token = page.get("NextToken")
        if not token:
            break
    secrets = {s["Name"]: sorted(s.get("SecretVersionsToStages", {})) for s in sm.list_secrets()["SecretList"]}
    backups = {
        h.name: sorted(p.name for p in (Path(h.root) / "opt/services/.backup").glob("*"))
        for h in [spec.database, *spec.app_hosts()]
    }
    # the lock's holders: one parameter per generation, /${namespace}/cockpit/lock/<gen> (docs/lock.md)
    lock_history = {
        n: json.loads(ssm.get_parameter(Name=n)["Parameter"]["Value"]).get("pid")
        for n in params
        if n.startswith(f"/{spec.namespace}/cockpit/lock/") and not n.endswith("/released")
    }
    return {"params": params, "secrets": secrets, "backups": backups, "lock_pids": lock_history}


async def test_watch_changes_nothing_while_another_process_drives(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "fresh")
    before = _fleet_writes(lab)
    live = build_live_app("watch", Path(lab.dir) / "inventory.toml", None, recordings=tmp_path, poll_interval=0.3)
    app, recorder, path = live.app, live.recorder, live.path
    assert not hasattr(app, "engine") or getattr(app, "engine", None) is None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: snap(app) is not None, "the first snapshot", 60)
            watched_alone = _fleet_writes(lab)
            assert watched_alone == before  # watching alone wrote nothing anywhere
            driver = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli",
                "advance",
                "pg-2",
                "--yes",
                "--reason",
                "driven elsewhere",
                "--inventory",
                str(Path(lab.dir) / "inventory.toml"),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            waiter = asyncio.ensure_future(driver.communicate())
            await wait_for(pilot, waiter.done, "the other process's advance", 180)
            out = waiter.result()[0].decode()
            assert driver.returncode == 0, out
            await wait_for(
                pilot,
                lambda: (
                    snap(app) is not None and snap(app).database is not None and snap(app).database.postgres_ssl is True
                ),
                "the watch sees pg-2 live",
                60,
            )
            # the watcher reads the fleet journal every few seconds: the driver's entries arrive
            await wait_for(pilot, lambda: "driven elsewhere" in path.read_text(), "the journal entry", 30)
    finally:
        recorder.close()
    after = _fleet_writes(lab)
    # every change is the driver's: one parameter, its lock, one restart of the database
    changed = {k for k in after["params"] if after["params"][k] != before["params"].get(k)}
    lock_writes = {k for k in changed if k.startswith(f"/{lab.namespace}/cockpit/lock/")}
    assert changed - lock_writes <= {f"/{lab.namespace}/database/POSTGRES_TLS_ENABLED"} and lock_writes
    assert after["secrets"] == before["secrets"]
    new_backups = {h: set(after["backups"][h]) - set(before["backups"][h]) for h in after["backups"]}
    assert {h for h, b in new_backups.items() if b} == {lab.database.name}
    # the watcher never took the lock (generations left by earlier tests in this process are not new)
    assert all(pid != os.getpid() for n, pid in after["lock_pids"].items() if n in lock_writes)
    scenarios.apply(lab, "fresh")


# -- a small fleet of its own: three api instances and nothing else ------------------------------------------


SMALL = "api=3,web=0,voice=0,ops=0,telpro=0"


@pytest.fixture(scope="module")
def small_lab() -> Iterator[LabSpec]:
    with running_lab(SMALL) as spec:
        yield spec


def actions(path: Path) -> list[dict[str, Any]]:
    return [r for r in (json.loads(x) for x in path.read_text().splitlines()) if r["t"] == "action"]


async def test_pause_stop_and_roll_back_a_rolling_advance_without_a_failed_request(
    small_lab: LabSpec, tmp_path: Path
) -> None:
    """Three api instances: pause the roll during the first restart, stop it while paused, roll back the
    instance that changed; the apps' availability meters count every request all along."""
    from tui.screens.progress import ProgressScreen

    scenarios.apply(small_lab, "pg-4")  # next: pg-5 for api; the meters start from zero
    live = build_live_app("drive", Path(small_lab.dir) / "inventory.toml", None, recordings=tmp_path, poll_interval=0.5)
    app, recorder, path = live.app, live.recorder, live.path
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: next_key(app) == "pg-5:api", "pg-5 for api as the next step", 60)
            await pilot.press("n")
            await confirm_with_reason(pilot, "tui lab: pause and stop")
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, ProgressScreen) and app.screen.statuses["staging-api-01"] == "restarting"
                ),
                "the first restart",
                120,
            )
            progress = app.screen
            await pilot.press("p")  # pause after the instance restarting now
            await wait_for(pilot, lambda: progress.state == "paused", "the roll paused", 180)
            status = str(progress.query_one("#progress-status").render())
            assert "1/3 instances" in status and "PAUSED" in status, status
            assert progress.statuses["staging-api-02"] == "waiting"
            await pilot.press("s")  # stop, while paused
            await wait_for(pilot, lambda: progress.outcome is not None, "the stopped outcome", 60)
            assert progress.outcome.stage == "stopped", progress.outcome.reason
            assert progress.outcome.changed == ("staging-api-01",)
            assert progress.statuses["staging-api-03"] == "not restarted"
            rollback = progress.query_one("#rollback", Button)
            assert not rollback.has_class("-hidden")
            await wait_for(pilot, lambda: not app.main.busy, "the lock released", 30)
            rollback.press()
            confirm = await confirm_with_reason(pilot, "tui lab: back after the stop")
            assert confirm.preview.direction == "rollback"
            assert [r.host for r in confirm.preview.restarts] == ["staging-api-01"]  # only what changed
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, ProgressScreen)
                    and app.screen.outcome is not None
                    and app.screen.preview.direction == "rollback"
                ),
                "the rollback's outcome",
                180,
            )
            assert app.screen.outcome.ok, app.screen.outcome.reason
    finally:
        recorder.close()
    assert meter(small_lab, "staging-api-01", "api")["db"]["tls"] is False  # back on plaintext
    failed = {
        k: (m["requests_failed"], m.get("last_failure"))
        for k, m in control.meters(small_lab).items()
        if m["requests_failed"]
    }
    assert not failed, failed
    assert sum(m["requests_ok"] for m in control.meters(small_lab).values()) > 0  # the meters did count
    kinds = [a["kind"] for a in actions(path)]
    assert kinds.count("confirm") == 2
    notes = [r.get("text", "") for r in (json.loads(x) for x in path.read_text().splitlines()) if r["t"] == "note"]
    assert [n for n in notes if "asked to pause" in n] and [n for n in notes if "asked to stop" in n]


async def test_every_failure_of_an_action_is_shown_and_recorded(
    small_lab: LabSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real engine: a lock another operator holds, the engine's own error (this machine's journal
    cannot be written: it releases the lock and says so), a refusal (compare-and-swap). Each in a dialog, or
    the progress screen, that stays — and in the recording. (The engine's errors in a preview, and a worker
    that crashes, are driven through the engine double in test_tui_app: the screens now keep the keys
    that used to reach them — `a` on a certs step — from being pressed.)"""
    from plans.lock import FleetLock
    from tui.screens.detail import ProblemScreen
    from tui.screens.progress import ProgressScreen

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # this test's own local journal
    scenarios.apply(small_lab, "pg-4")
    live = build_live_app("drive", Path(small_lab.dir) / "inventory.toml", None, recordings=tmp_path, poll_interval=0.5)
    app, recorder, path = live.app, live.recorder, live.path
    engine: Any = app.config.engine
    other = FleetLock(engine.lock.aws, small_lab.namespace)  # another operator's lock, the real writer
    journal = tmp_path / "state" / "rollout-cockpit" / "journal" / f"{small_lab.environment}.jsonl"
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: next_key(app) == "pg-5:api", "pg-5 for api as the next step", 60)
            # 1. the lock is held elsewhere
            await other.acquire("pg-3")
            try:
                await pilot.press("n")
                await wait_for(pilot, lambda: isinstance(app.screen, ProblemScreen), "the lock problem", 60)
                body = str(app.screen.query_one("#problem-body").render())
                assert "the fleet lock is held by" in body, body
                await pilot.press("enter")
            finally:
                await other.release()
            await wait_for(pilot, lambda: not app.main.busy and app.screen is app.main, "back on the main screen")
            # 2. the engine's error: this machine's journal is a directory, so the engine gives the lock back
            journal.unlink(missing_ok=True)
            journal.mkdir(parents=True)
            try:
                await pilot.press("n")
                await wait_for(pilot, lambda: isinstance(app.screen, ProblemScreen), "the engine's error", 60)
                body = str(app.screen.query_one("#problem-body").render())
                assert "the lock was released, nothing was changed" in body, body
                await pilot.press("escape")
            finally:
                journal.rmdir()
            await wait_for(pilot, lambda: not app.main.busy and app.screen is app.main, "back on the main screen")
            assert await other.current() is None  # the engine gave the lock back
            # 3. a refusal: the store changes between the preview and the confirmation
            app.main.query_one("#plan").highlight("pg-5:api")  # type: ignore[attr-defined]
            await pilot.pause()
            await pilot.press("a")
            from tui.screens.confirm import ConfirmScreen

            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation", 60)
            await asyncio.to_thread(set_var, small_lab, "api", "DATABASE_SSL_MODE", "require")
            await confirm_with_reason(pilot, "tui lab: refused")
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None,
                "the refusal",
                120,
            )
            assert app.screen.outcome.stage == "refused"
            assert "REFUSED" in str(app.screen.query_one("#progress-result").render())
            assert app.screen.query_one("#rollback").has_class("-hidden")
    finally:
        set_var(small_lab, "api", "DATABASE_SSL_MODE", None)
        recorder.close()
    refusals = [a.get("error") or "" for a in actions(path) if a["kind"] == "lock-refused"]
    assert len(refusals) == 2 and "held by" in refusals[0] and "the lock was released" in refusals[1]
    refused = [a.get("reason") or "" for a in actions(path) if a["kind"] == "refused"]
    assert len(refused) == 1 and refused[0].startswith("refused: the fleet changed since the preview")
