"""Drive mode: the main screen plus the write actions — advance, roll back, restart, one target at a time.

Imported only when the cockpit drives (watch and replay never load this module). One cycle:
take the fleet lock → preview → confirmation (summary, gates, blockers, restarts, reason) → apply with
live progress (pause, stop) → result → release the lock; after a failure or a stop the rollback is
offered. Every step of it is recorded and shown in the event log, and nothing is swallowed: a refused
lock, an engine error, a refusal or a crash is shown where the operator is looking (a dialog that stays,
or the progress screen) and written to the recording. A key whose action cannot run says why.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.events import DescendantFocus, Key

from plans.engine import RESTART, RollControl
from session.contract import REFUSED_STAGES, Direction, EngineLike, EventLike, PreviewLike
from session.feed import lock_holder
from session.loglines import log_lines
from session.view import TargetDetail, blockers_for_rollback
from tui.screens.confirm import ConfirmScreen, target_text
from tui.screens.context import ScreenContext
from tui.screens.main import MainScreen
from tui.screens.progress import ControlWord, ProgressScreen
from tui.widgets.tables import InstanceTable

WRITE_ACTIONS = ("advance", "rollback", "advance_next", "restart")
RESTART_STEP = RESTART  # the step id the engine gives a restart-only action (and the lock's step)


@dataclass(frozen=True, slots=True)
class Target:
    """What one drive cycle acts on: a step for a service (advance, rollback), or a restart of a service's
    instances (`hosts` empty: every instance)."""

    direction: Direction
    step: str  # the step id; "restart" for a restart
    service: str | None  # the plan's service for a per-service step; None for a database step
    hosts: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.direction == "restart":
            return f"restart {self.service}" + (f" ({', '.join(self.hosts)})" if self.hosts else "")
        return f"{'roll back' if self.direction == 'rollback' else 'advance'} {target_text(self.step, self.service)}"

    def fields(self, who: Any) -> dict[str, Any]:
        """The recording's fields for this target (every action record of the cycle carries them; a restart's
        hosts are in its preview record)."""
        return {"step": self.step, "service": self.service, "direction": self.direction, "who": who}

    def cli(self, closed: Iterable[str]) -> str:
        """The command line that would open exactly `closed` (the cockpit itself offers no override)."""
        ids = "".join(f" --override {i}" for i in closed)
        if self.direction == "restart":
            hosts = "".join(f" --host {h}" for h in self.hosts)
            return f"cockpit restart {self.service}{hosts}{ids} --reason …"
        svc = f" --service {self.service}" if self.service else ""
        return f"cockpit {self.direction} {self.step}{svc}{ids} --reason …"


def _error_text(exc: BaseException) -> str:
    """The engine's and the lock's errors say what and what to do; anything else also says what it is."""
    if type(exc).__name__ in ("EngineError", "LockError") and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class DriveScreen(MainScreen):
    MODE = "drive"
    HELP_SECTION = "Drive (these change the fleet; each asks for confirmation)"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "advance", "Advance", id="advance"),
        Binding("r", "rollback", "Roll back", id="rollback"),
        Binding("n", "advance_next", "Advance next", id="advance-next"),
        Binding("R", "restart", "Restart", id="restart", key_display="R"),
    ]

    def __init__(self, engine: EngineLike, context: ScreenContext) -> None:
        super().__init__(context)
        self.engine = engine
        self.recorder = context.recorder
        self.busy = False
        self._rollback_cache: tuple[int, str, list[str]] | None = None
        self._binding_state: tuple[bool | None, ...] = ()
        self._progress: ProgressScreen | None = None  # the running cycle's progress screen

    # -- what may run now ------------------------------------------------------------------------
    @property
    def next_detail(self) -> TargetDetail | None:
        return self.view.detail(self.view.next_key) if self.view else None

    def _rollback_blockers(self, d: TargetDetail) -> list[str]:
        assert self.view is not None
        key = (id(self.view), d.key)
        if self._rollback_cache is None or self._rollback_cache[:2] != key:
            self._rollback_cache = (*key, blockers_for_rollback(self.context.plan, self.view.snapshot, d))
        return self._rollback_cache[2]

    def restart_target(self) -> Target | None:
        """What `R` restarts: the highlighted host when the instances have the focus, else every instance of
        the highlighted step's service (the database host for a database step)."""
        if self.view is None:
            return None
        focused = self.focused
        if isinstance(focused, InstanceTable):
            host = focused.highlighted_key
            inst = next((i for i in self.view.instances if i.key == host), None)
            return Target("restart", RESTART_STEP, inst.service, (inst.key,)) if inst is not None else None
        d = self.detail
        if d is None or d.kind == "certs":  # a fleet-wide certs step has no one service to restart
            return None
        return Target("restart", RESTART_STEP, d.service or self.context.plan.database_service)

    def why_disabled(self, action: str) -> str:
        if action not in WRITE_ACTIONS:
            return ""
        if self.busy:
            return "an action is running"
        if self.view is None:
            return "no snapshot yet"
        if action == "restart":
            return (
                ""
                if self.restart_target() is not None
                else "move to a host (Instances) or to a database or service step's row"
            )
        d = self.next_detail if action == "advance_next" else self.detail
        if d is None:
            return "every step is verified" if action == "advance_next" else "move to a step in the plan"
        label = target_text(d.step, d.service)
        if d.kind == "certs":
            how = f"`{d.command or 'cockpit certs push'}`"
            return (
                f"{d.step} is done with {how}, not from the cockpit"
                if action != "rollback"
                else f"{d.step} has no rollback here: push the previous material again with {how}"
            )
        if action == "rollback":
            blockers = self._rollback_blockers(d)
            return blockers[0] if blockers else ""
        if d.state == "verified":
            return f"{label} is verified already"
        if d.blocking:
            g = d.blocking[0]
            return f"gate {g.gate} is {g.status}: {g.reason}"
        return ""

    def bindings_may_have_changed(self) -> None:
        state = tuple(self.check_action(a, ()) for a in WRITE_ACTIONS)
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS:
            return None if self.why_disabled(action) else True
        return True

    @on(DescendantFocus)
    def _focus_moved(self, event: DescendantFocus) -> None:
        self.bindings_may_have_changed()  # `R` acts on a host in Instances, on a service elsewhere

    def on_key(self, event: Key) -> None:
        """A write key whose action cannot run now says why, in one line (Textual would ignore it)."""
        action = next((b.action for b in self.BINDINGS if isinstance(b, Binding) and b.key == event.key), None)
        if action is None or action not in WRITE_ACTIONS:
            return
        why = self.why_disabled(action)
        if why:
            event.stop()
            event.prevent_default()
            binding = next(b for b in self.BINDINGS if isinstance(b, Binding) and b.action == action)
            self.notify(
                f"{binding.description} [{event.key}] is not available: {why}",
                severity="warning",
                timeout=6,
                markup=False,
            )

    def action_hint(self, detail: TargetDetail) -> str:
        if self.busy:
            return "\nan action is running"
        saved = self.selected
        self.selected = detail.key
        try:
            adv = self.why_disabled("advance")
            rb = self.why_disabled("rollback")
        finally:
            self.selected = saved
        svc = detail.service or self.context.plan.database_service
        restart = (
            "" if detail.kind == "certs" else f"\n[R] restart {svc}, every instance (in Instances: the highlighted one)"
        )
        return (
            f"\n[a] advance: {'ready' if not adv else 'disabled — ' + adv}"
            f"\n[r] roll back: {'ready' if not rb else 'disabled — ' + rb}{restart}"
        )

    # -- the actions ---------------------------------------------------------------------------------
    def action_advance(self) -> None:
        d = self.detail
        if d is not None:
            self._start(Target("advance", d.step, d.service))

    def action_rollback(self) -> None:
        d = self.detail
        if d is not None:
            self._start(Target("rollback", d.step, d.service))

    def action_advance_next(self) -> None:
        d = self.next_detail
        if d is not None:
            self._start(Target("advance", d.step, d.service))

    def action_restart(self) -> None:
        t = self.restart_target()
        if t is not None:
            self._start(t)

    def _start(self, target: Target) -> None:
        if self.busy:
            return
        self.busy = True
        self.bindings_may_have_changed()
        self.show_detail()
        self._cycle(target)

    def _done(self) -> None:
        self.busy = False
        self.bindings_may_have_changed()
        self.show_detail()

    def _log(self, record: dict[str, Any]) -> None:
        """Show a record this screen has just written in the event log."""
        self.append_log(log_lines(record))

    def _problem(self, what: str, error: str, todo: str = "") -> None:
        """Ask the app for a dialog that stays until it is read."""
        self.post_message(self.ProblemRaised(what, error, todo))

    @work(exclusive=True, group="drive", exit_on_error=False)
    async def _cycle(self, target: Target) -> None:
        rec = self.recorder
        base = target.fields(rec.header.get("who"))
        answer: Any = None
        try:
            try:
                info = await self.engine.acquire_lock(target.step)
            except Exception as exc:
                text = _error_text(exc)
                self._log(rec.record("action", kind="lock-refused", error=text, **base))
                self._problem(
                    f"{target.label}: the fleet lock was not taken",
                    text,
                    "Nothing was changed. If the holder is gone for good, break the lock from a shell: "
                    "cockpit lock --break --reason …",
                )
                return
            holder = lock_holder(info)
            self.lock_token = str(holder.get("token")) if holder and holder.get("token") else None
            self._log(rec.record("action", kind="lock", **base))
            self.show_lock(holder, True, True)
            try:
                answer = await self._previewed(target, base)
            finally:
                await self._release(base)
        finally:
            progress = self._progress
            self._progress = None
            if progress is not None and progress.state != "finished" and progress.is_attached:
                # the cycle ended without an outcome (a crash, said in its own dialog): the progress screen
                # must not stay open with nothing to close it
                progress.show_error("the cockpit stopped following this roll — look at the plan before going on")
            self._done()
        choice: str | None = await answer if answer is not None else None
        if choice == "rollback":
            self.call_later(self._start_rollback, target)

    async def _release(self, base: dict[str, Any]) -> None:
        try:
            await self.engine.release_lock()
        except Exception as exc:
            text = _error_text(exc)
            self._log(
                self.recorder.record(
                    "action", kind="error", error=f"the fleet lock could not be released: {text}", **base
                )
            )
            self.lock_token = None
            self.show_lock(None, False, False)
            self._problem(
                "The fleet lock could not be released",
                text,
                "It may still be held in your name. Once the cause is fixed, break it from a shell: "
                "cockpit lock --break --reason …",
            )
            return
        self.lock_token = None
        self._log(self.recorder.record("action", kind="unlock", **base))
        self.show_lock(None, True, False)

    def _start_rollback(self, target: Target) -> None:
        if self.view is None:
            return
        key = f"{target.step}:{target.service}" if target.service else target.step
        d = self.view.detail(key)
        if d is None:
            self._problem(
                f"roll back {target_text(target.step, target.service)}", f"{key} is not in the plan as shown now"
            )
            return
        self._start(Target("rollback", d.step, d.service))

    async def _preview(self, target: Target) -> PreviewLike:
        if target.direction == "restart":
            assert target.service is not None
            p: PreviewLike = await self.engine.preview_restart(target.service, target.hosts)
        else:
            p = await self.engine.preview(target.step, target.service, direction=target.direction)
        return p

    async def _previewed(self, target: Target, base: dict[str, Any]) -> Any:
        """Preview, confirm, apply with progress; returns the awaitable answer of the progress screen
        (None when there is none), so the caller releases the lock as soon as the apply is over."""
        rec = self.recorder
        try:
            preview = await self._preview(target)
        except Exception as exc:
            text = _error_text(exc)
            self._log(rec.record("action", kind="error", error=f"no preview: {text}", **base))
            self._problem(
                f"{target.label}: the engine gave no preview",
                text,
                "Nothing was changed, and the fleet lock is released.",
            )
            return None
        self._log(rec.record("action", kind="preview", preview=preview.to_json(), **base))
        protected = self.context.protected or bool(preview.protected)
        result = await self.app.push_screen_wait(
            ConfirmScreen(
                preview,
                env_name=self.context.env_name,
                protected=protected,
                override_hint=target.cli(i for i, _ in preview.closed),
            )
        )
        if result is None:
            self._log(rec.record("action", kind="cancel", **base))
            return None
        self._log(rec.record("action", kind="confirm", reason=result.reason, **base))
        return await self._applied(target, base, preview, result.reason, protected)

    async def _applied(
        self, target: Target, base: dict[str, Any], preview: PreviewLike, reason: str, protected: bool
    ) -> Any:
        """Apply the confirmed `preview` with the progress screen following it; returns the screen's answer."""
        app = self.app
        rec = self.recorder
        control = RollControl()

        def asked(what: ControlWord) -> None:
            """The operator's request, when it is made (the engine's "paused"/"stopping" follow when it acts)."""
            words = {
                "pause": "asked to pause after the current instance",
                "resume": "resumed",
                "stop": "asked to stop after the current instance",
            }[what]
            self._log(
                rec.record(
                    "note",
                    text=f"{base['who'] or 'the operator'} {words}: {target.label}",
                    level="info" if what == "resume" else "warn",
                )
            )

        progress = ProgressScreen(
            preview,
            redactor=rec.redactor,
            control=control,
            clock=self.context.clock,
            env_name=self.context.env_name,
            protected=protected,
            on_control=asked,
            rollback_label=f"Roll back {target_text(target.step, target.service)}",
        )
        answer = app.push_screen(progress, wait_for_dismiss=True)
        self._progress = progress
        await progress.mounted.wait()
        loop_thread = threading.get_ident()

        def on_loop(ev: EventLike) -> None:
            self._log(rec.record("event", kind=ev.kind, host=ev.host, text=ev.text, at=ev.ts))
            progress.deliver(ev)

        def on_event(ev: EventLike) -> None:
            if threading.get_ident() == loop_thread:
                on_loop(ev)
            else:
                app.call_from_thread(on_loop, ev)

        try:
            outcome = await self.engine.apply(preview, reason=reason, on_event=on_event, control=control)
        except Exception as exc:
            text = _error_text(exc)
            self._log(rec.record("action", kind="error", error=text, **base))
            progress.show_error(text)
        else:
            self._log(rec.record("outcome", outcome=outcome.to_json(), reason=reason, **base))
            if outcome.stage in REFUSED_STAGES:
                self._log(rec.record("action", kind="refused", reason=f"{outcome.stage}: {outcome.reason}", **base))
            progress.show_outcome(outcome)
        return answer

    # -- the palette -----------------------------------------------------------------------------------
    def palette_commands(self) -> Iterable[SystemCommand]:
        if self.view is None:
            return
        for row in self.view.rows:
            label = target_text(row.step, row.service)
            for direction, action in (("advance", "Advance"), ("rollback", "Roll back")):
                yield SystemCommand(
                    f"{action} {label}",
                    f"{row.title} — now {row.state}, gates {row.gates}",
                    self._palette_start(row.key, direction),
                )
        services: dict[str, list[str]] = {self.context.plan.database_service: []}
        for i in self.view.instances:
            services.setdefault(i.service, []).append(i.key)
        for svc, hosts in services.items():
            yield SystemCommand(
                f"Restart {svc}",
                f"every instance of {svc}, one at a time, no configuration change",
                self._palette_restart(Target("restart", RESTART_STEP, svc)),
            )
            for h in hosts:
                yield SystemCommand(
                    f"Restart {h}",
                    f"this instance of {svc} only, no configuration change",
                    self._palette_restart(Target("restart", RESTART_STEP, svc, (h,))),
                )

    def _palette_start(self, key: str, direction: str) -> Any:
        def run() -> None:
            self.selected = key
            self.query_one("#plan").highlight(key)  # type: ignore[attr-defined]
            action = "advance" if direction == "advance" else "rollback"
            why = self.why_disabled(action)
            if why:
                self.notify(f"{action} {key} is disabled: {why}", severity="warning", timeout=8, markup=False)
                return
            d = self.detail
            if d is not None:
                self._start(Target("rollback" if direction == "rollback" else "advance", d.step, d.service))

        return run

    def _palette_restart(self, target: Target) -> Any:
        def run() -> None:
            why = "an action is running" if self.busy else ("no snapshot yet" if self.view is None else "")
            if why:
                self.notify(f"{target.label} is disabled: {why}", severity="warning", timeout=8, markup=False)
                return
            self._start(target)

        return run
