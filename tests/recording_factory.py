"""Recordings for the replay, report, follow and corpus tests, made by the real writers: the drive app
(DriveScreen records every action, the app every snapshot, verdict change, lock change, journal entry
and note) writing through the real Recorder, with the engine test double's real Preview and Outcome.
Nothing here writes a record by hand, so readers are tested against what the cockpit writes.

`drive_session` scripts one change window: a lock refused, an advance that fails with the rollback
it offers, an apply that stops on an exception, a cancelled confirmation, an advance that succeeds;
another operator's CLI refusal and apply through the fleet journal; snapshots failing when the fleet
goes away at the end. Verdicts flap while the failing advance rolls.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, Input

from plans.engine import Outcome, Preview
from probes.snapshot import FleetSnapshot
from session.feed import Observation
from session.recording.writer import Recorder
from session.redact import Redactor
from tests.engine_double import FakeEngine
from tests.test_tui_support import JOURNAL, LAB_SECRETS, SERVICES, T0, Clock, scenario
from tui.app import CockpitApp, make_app

# what update.sh "prints" during the restarts: a secret, and escape sequences that would clear and
# recolour a terminal if they were ever sent to one raw
HOSTILE_OUTPUT = f"REDIS_PASSWORD={LAB_SECRETS[1]} \x1b[2J\x1b[31mred\x1b[0m\x07 done"
BOB = {"who": "bob", "where": "laptop", "pid": 4242, "step": "pg-5", "since": T0 + 30, "token": "bob-token"}


@dataclass
class ScriptedFeed:
    """Observations the test sets round by round: the next snapshot (or the error taking it failed
    with), the lock holder, the fleet journal."""

    snapshot: FleetSnapshot | None = None
    error: str | None = None
    lock: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = field(default_factory=list)

    async def observe(self) -> Observation:
        if self.error is not None:
            return Observation(None, self.error, self.lock, True, None, tuple(self.journal))
        return Observation(self.snapshot, None, self.lock, True, None, tuple(self.journal))


class ScriptedEngine(FakeEngine):
    """The engine double, with a hook that runs while an apply is under way (the fleet changes then),
    and an apply that can stop on an exception."""

    during_apply: Callable[[Preview], Any] | None = None
    raise_apply: bool = False

    async def apply(self, preview: Preview, **kw: Any) -> Outcome:  # type: ignore[override]
        if self.during_apply is not None:
            await self.during_apply(preview)
        if self.raise_apply:
            self.calls.append(("apply", preview.step, preview.service, preview.direction, kw.get("reason")))
            raise RuntimeError("ssh connection to staging-api-01 lost mid-restart")
        return await super().apply(preview, **kw)


async def until(pilot: Pilot[Any], cond: Callable[[], bool], what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause()
    app = pilot.app
    raise AssertionError(
        f"never happened: {what} (screen {app.screen!r}, "
        f"why {getattr(app.main, 'why_disabled', lambda a: '')('advance')!r}, "
        f"calls {getattr(getattr(app.main, 'engine', None), 'calls', None)})"
    )


async def _round(
    app: CockpitApp,
    pilot: Pilot[Any],
    clock: Clock,
    feed: ScriptedFeed,
    t: float,
    snap: FleetSnapshot | None = None,
    error: str | None = None,
) -> None:
    clock.t = t
    feed.snapshot = scenario_at(snap, t) if snap is not None else None
    feed.error = error
    app.action_poll_now()
    await app.workers.wait_for_complete()
    await pilot.pause()


def scenario_at(snap: FleetSnapshot, t: float) -> FleetSnapshot:
    import dataclasses

    return dataclasses.replace(snap, taken_at=t)


async def _confirm(pilot: Pilot[Any], reason: str) -> None:
    from tui.screens.confirm import ConfirmScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation screen")
    app.screen.query_one("#reason", Input).value = reason
    await pilot.pause()
    app.screen.query_one("#confirm", Button).press()


async def _cycle_done(pilot: Pilot[Any], engine: FakeEngine, n_release: int) -> None:
    await until(pilot, lambda: [c[0] for c in engine.calls].count("release_lock") >= n_release, "the lock released")
    await pilot.pause()


async def drive_session(path: Path, *, full_every: float = 4.0) -> Path:
    """Record the scripted change window (see the module docstring) to `path`; returns it."""
    from tui.screens.progress import ProgressScreen

    clock = Clock(T0)
    rec = Recorder(
        path,
        env="staging",
        mode="drive",
        protected=False,
        plan="internal-encryption",
        services=SERVICES,
        full_every=full_every,
        clock=clock,
        who="tester",
        redactor=Redactor(known=[LAB_SECRETS[2]]),
    )
    engine = ScriptedEngine([scenario("ready-pg5")], secret_output=HOSTILE_OUTPUT)
    feed = ScriptedFeed(journal=[dict(JOURNAL[0])])
    app = make_app(
        "drive",
        env_name="staging",
        services=SERVICES,
        feed=feed,
        engine=engine,
        clock=clock,
        recorder=rec,
        poll_interval=None,
    )
    me = socket.gethostname()
    async with app.run_test(size=(110, 32)) as pilot:
        await app.workers.wait_for_complete()
        t = T0
        for name in ("fresh", "fresh", "ready-pg5"):
            t += 2
            await _round(app, pilot, clock, feed, t, scenario(name))
        t += 2
        await _round(app, pilot, clock, feed, t, error="TimeoutError: staging-web-01 did not answer in 5 s")
        t += 2
        await _round(app, pilot, clock, feed, t, scenario("ready-pg5"))

        # 1. bob holds the lock: our advance is refused before any preview
        feed.lock = dict(BOB)
        engine.lock_holder = "bob"
        t += 2
        await _round(app, pilot, clock, feed, t, scenario("ready-pg5"))
        await pilot.press("n")
        await _cycle_done(pilot, engine, 0)
        await until(pilot, lambda: not app.main.busy, "the refused cycle over")  # type: ignore[attr-defined]
        await pilot.press("escape")  # the refusal's dialog stays until it is read
        await pilot.pause()
        # bob, through the CLI: refused by a closed gate (journaled), then his apply of pg-4's rollback
        bob = {"v": 1, "env": "staging", "who": "bob", "where": "laptop"}
        feed.journal += [
            {
                **bob,
                "ts": t + 0.5,
                "event": "apply-done",
                "step": "pg-5",
                "service": "web",
                "ok": False,
                "stage": "refused",
                "reason": "refused: pgbouncer_offers_tls_and_ca_files: PgBouncer does not offer TLS",
            },
        ]
        engine.lock_holder = None
        feed.lock = None
        t += 2
        await _round(app, pilot, clock, feed, t, scenario("ready-pg5"))

        # 2. an advance that fails at verify, while the fleet's verdicts flap; then its rollback
        engine.fail_apply = True

        async def flap(preview: Preview) -> None:
            nonlocal t
            if preview.direction == "rollback":
                engine.fail_apply = False  # the rollback works
                feed.journal += [
                    {
                        "v": 1,
                        "env": "staging",
                        "who": "tester",
                        "where": me,
                        "ts": clock.t,
                        "event": "apply-start",
                        "step": "pg-5",
                        "service": "api",
                        "direction": "rollback",
                        "reason": "api-02 unhealthy: back",
                    },
                    {
                        "v": 1,
                        "env": "staging",
                        "who": "tester",
                        "where": me,
                        "ts": clock.t + 0.5,
                        "event": "apply-done",
                        "step": "pg-5",
                        "service": "api",
                        "ok": True,
                        "stage": "done",
                        "direction": "rollback",
                        "reason": "rolled back",
                    },
                ]
            for k in range(6):
                t += 1
                clock.t = t
                feed.snapshot = scenario_at(scenario("straggler" if k % 2 == 0 else "ready-pg5"), t)
                app.absorb(await feed.observe())
                await asyncio.sleep(0)

        engine.during_apply = flap
        t += 2
        clock.t = t
        await pilot.press("n")
        await _confirm(pilot, "change window 42: api first")
        await until(
            pilot,
            lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None,
            "the failed outcome",
        )
        await _cycle_done(pilot, engine, 1)
        t += 2
        clock.t = t
        app.screen.query_one("#rollback", Button).press()
        await _confirm(pilot, "api-02 unhealthy: back")
        await _cycle_done(pilot, engine, 2)
        await until(
            pilot,
            lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None,
            "the rollback's outcome",
        )
        await pilot.press("escape")
        await pilot.pause()
        engine.during_apply = None
        engine.fail_apply = False
        t += 2
        await _round(app, pilot, clock, feed, t, scenario("ready-pg5"))

        # 3. an apply that stops on an exception
        engine.raise_apply = True
        t += 2
        clock.t = t
        await pilot.press("n")
        await _confirm(pilot, "try again")
        await _cycle_done(pilot, engine, 3)
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), "the progress screen")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        engine.raise_apply = False

        # 4. a confirmation cancelled
        t += 2
        clock.t = t
        await pilot.press("n")
        from tui.screens.confirm import ConfirmScreen

        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation screen")
        app.screen.query_one("#cancel", Button).press()
        await _cycle_done(pilot, engine, 4)

        # 5. an advance that succeeds
        t += 2
        clock.t = t
        await pilot.press("n")
        await _confirm(pilot, "change window 42: api again")
        await until(
            pilot, lambda: isinstance(app.screen, ProgressScreen) and app.screen.outcome is not None, "the outcome"
        )
        await _cycle_done(pilot, engine, 5)
        await pilot.press("escape")
        await pilot.pause()
        for name in ("straggler", "straggler"):
            t += 2
            await _round(app, pilot, clock, feed, t, scenario(name))
        # the fleet goes away (the lab stops): snapshots fail from here on
        for _ in range(3):
            t += 20
            await _round(app, pilot, clock, feed, t, error="ConnectionRefusedError: bastion 127.0.0.1:2222 refused")
        t += 60
        clock.t = t
    rec.close()
    return path


_MADE: dict[float, bytes] = {}  # full_every -> the recording, made once per test process


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


async def drive_recording(path: Path, *, full_every: float = 4.0) -> Path:
    """`drive_session`'s recording at `path` (made once per test process, then copied), from async code."""
    if full_every not in _MADE:
        with tempfile.TemporaryDirectory() as d:
            made = await drive_session(Path(d) / "drive.jsonl", full_every=full_every)
            _MADE[full_every] = made.read_bytes()
    return _put(path, _MADE[full_every])


def make_drive_recording(path: Path, *, full_every: float = 4.0) -> Path:
    """The same, from synchronous code (fixtures, plain tests)."""
    if full_every not in _MADE:
        asyncio.run(drive_recording(path, full_every=full_every))
    return _put(path, _MADE[full_every])
