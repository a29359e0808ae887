"""Drive mode: the main screen plus the write actions — advance and roll back, one target at a time.

Imported only when the cockpit drives (watch and replay never load this module). One cycle:
take the fleet lock → preview → confirmation (change, restarts, gates, reason) → apply with live
progress → result → release the lock; after a failure the rollback is offered. Every step of it
is recorded and shown in the event log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from tui.feed import EngineLike, EventLike, lock_holder
from tui.recording import Recorder
from tui.view import TargetDetail, blockers_for_rollback
from tui.widgets.confirm import ConfirmScreen, target_text
from tui.widgets.main import MainScreen
from tui.widgets.progress import ProgressScreen

WRITE_ACTIONS = ("advance", "rollback", "advance_next")


class DriveScreen(MainScreen):
    MODE = "drive"
    HELP_SECTION = "Drive (these change the fleet; each asks for confirmation)"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "advance", "Advance", id="advance"),
        Binding("r", "rollback", "Roll back", id="rollback"),
        Binding("n", "advance_next", "Advance next", id="advance-next"),
    ]

    def __init__(self, engine: EngineLike, recorder: Recorder) -> None:
        super().__init__()
        self.engine = engine
        self.recorder = recorder
        self.busy = False
        self.lock_token: str | None = None
        self._rollback_cache: tuple[int, str, list[str]] | None = None
        self._binding_state: tuple[bool | None, ...] = ()

    # -- what may run now ------------------------------------------------------------------------
    @property
    def next_detail(self) -> TargetDetail | None:
        return self.view.detail(self.view.next_key) if self.view else None

    def _rollback_blockers(self, d: TargetDetail) -> list[str]:
        assert self.view is not None
        key = (id(self.view), d.key)
        if self._rollback_cache is None or self._rollback_cache[:2] != key:
            self._rollback_cache = (*key, blockers_for_rollback(self.cockpit.config.plan, self.view.snapshot, d))
        return self._rollback_cache[2]

    def why_disabled(self, action: str) -> str:
        if action not in WRITE_ACTIONS:
            return ""
        if self.busy:
            return "an action is running"
        if self.view is None:
            return "no snapshot yet"
        d = self.next_detail if action == "advance_next" else self.detail
        if d is None:
            return "every step is verified" if action == "advance_next" else "move to a step in the plan"
        label = target_text(d.step, d.service)
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
        return (f"\n[a] advance: {'ready' if not adv else 'disabled — ' + adv}"
                f"\n[r] roll back: {'ready' if not rb else 'disabled — ' + rb}")

    # -- the actions ---------------------------------------------------------------------------------
    def action_advance(self) -> None:
        self._start(self.detail, "advance")

    def action_rollback(self) -> None:
        self._start(self.detail, "rollback")

    def action_advance_next(self) -> None:
        self._start(self.next_detail, "advance")

    def _start(self, d: TargetDetail | None, direction: str) -> None:
        if d is None or self.busy:
            return
        self.busy = True
        self.bindings_may_have_changed()
        self.show_detail()
        self._cycle(d.step, d.service, direction)

    def _done(self) -> None:
        self.busy = False
        self.bindings_may_have_changed()
        self.show_detail()

    @work(exclusive=True, group="drive", exit_on_error=False)
    async def _cycle(self, step: str, service: str | None, direction: str) -> None:
        app = self.cockpit
        rec = self.recorder
        base: dict[str, Any] = {"step": step, "service": service, "direction": direction,
                                "who": rec.header.get("who")}
        answer: Any = None
        try:
            try:
                info = await self.engine.acquire_lock(step)
            except Exception as exc:
                app.log_record(rec.record("action", kind="lock-refused", error=str(exc), **base))
                self.notify(str(exc), title="lock refused", severity="error", timeout=10)
                return
            holder = lock_holder(info)
            self.lock_token = str(holder.get("token")) if holder and holder.get("token") else None
            app.log_record(rec.record("action", kind="lock", **base))
            self.show_lock(holder, True, True)
            try:
                answer = await self._previewed(step, service, direction, base)
            finally:
                try:
                    await self.engine.release_lock()
                finally:
                    self.lock_token = None
                    app.log_record(rec.record("action", kind="unlock", **base))
                    self.show_lock(None, True, False)
        finally:
            self._done()
        choice: str | None = await answer if answer is not None else None
        if choice == "rollback":
            self.call_later(self._start_rollback, step, service)

    def _start_rollback(self, step: str, service: str | None) -> None:
        if self.view is None:
            return
        key = f"{step}:{service}" if service else step
        self._start(self.view.detail(key), "rollback")

    async def _previewed(self, step: str, service: str | None, direction: str, base: dict[str, Any]) -> Any:
        """Preview, confirm, apply with progress; returns the awaitable answer of the progress screen
        (None when cancelled), so the caller releases the lock as soon as the apply is over."""
        app = self.cockpit
        rec = self.recorder
        preview = await self.engine.preview(step, service, direction=direction)
        app.log_record(rec.record("action", kind="preview", preview=preview.to_json(), **base))
        protected = app.config.protected or bool(preview.protected)
        result = await app.push_screen_wait(ConfirmScreen(preview, env_name=app.config.env_name,
                                                          protected=protected))
        if result is None:
            app.log_record(rec.record("action", kind="cancel", **base))
            return None
        app.log_record(rec.record("action", kind="confirm", reason=result.reason, **base))
        progress = ProgressScreen(preview, redactor=rec.redactor)
        answer = app.push_screen(progress, wait_for_dismiss=True)
        await progress.mounted.wait()
        loop_thread = threading.get_ident()

        def on_loop(ev: EventLike) -> None:
            app.log_record(rec.record("event", kind=ev.kind, host=ev.host, text=ev.text, at=ev.ts))
            progress.deliver(ev)

        def on_event(ev: EventLike) -> None:
            if threading.get_ident() == loop_thread:
                on_loop(ev)
            else:
                app.call_from_thread(on_loop, ev)

        try:
            outcome = await self.engine.apply(preview, reason=result.reason, on_event=on_event)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            app.log_record(rec.record("action", kind="error", error=text, **base))
            progress.show_error(text)
        else:
            app.log_record(rec.record("outcome", outcome=outcome.to_json(), reason=result.reason, **base))
            progress.show_outcome(outcome)
        return answer

    # -- the palette -----------------------------------------------------------------------------------
    def palette_commands(self) -> Iterable[SystemCommand]:
        if self.view is None:
            return
        for row in self.view.rows:
            label = target_text(row.step, row.service)
            for direction, action in (("advance", "Advance"), ("rollback", "Roll back")):
                yield SystemCommand(f"{action} {label}", f"{row.title} — now {row.state}, gates {row.gates}",
                                    self._palette_start(row.key, direction))

    def _palette_start(self, key: str, direction: str) -> Any:
        def run() -> None:
            self.selected = key
            self.query_one("#plan").highlight(key)  # type: ignore[attr-defined]
            action = "advance" if direction == "advance" else "rollback"
            why = self.why_disabled(action)
            if why:
                self.notify(f"{action} {key} is disabled: {why}", severity="warning", timeout=8)
                return
            self._start(self.detail, direction)

        return run
