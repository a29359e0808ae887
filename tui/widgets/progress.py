"""Live progress of an apply: instance by instance, the streamed output, then the result; on failure the
step's rollback is offered. Returns "rollback" when the operator takes that offer, else None."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, RichLog, Static

from tui.feed import EventLike, OutcomeLike, PreviewLike
from tui.redact import Redactor
from tui.view import clock_text
from tui.widgets.confirm import target_text, verb

STATUS_STYLE = {"waiting": "dim", "restarting": "yellow", "done": "green", "FAILED": "bold red",
                "verifying": "cyan"}


class ProgressScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close (when finished)", id="close-progress")]

    class EventArrived(Message):
        """One engine event (output line, restart, instance done, verification, error)."""

        def __init__(self, event: EventLike) -> None:
            self.event = event
            super().__init__()

    def __init__(self, preview: PreviewLike, *, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.preview = preview
        self.outcome: OutcomeLike | None = None
        self._redactor = redactor or Redactor()
        self._hosts = [r.host for r in preview.restarts]
        self._status: dict[str, str] = dict.fromkeys(self._hosts, "waiting")
        self._loop_thread = threading.get_ident()
        self.mounted = asyncio.Event()  # set once the screen can show events

    def compose(self) -> ComposeResult:
        p = self.preview
        with Vertical(id="progress-box"):
            yield Static(f"{verb(p.direction)} {target_text(p.step, p.service)} — {p.title}  [{p.env}]",
                         id="progress-title")
            yield DataTable(id="progress-instances", cursor_type="none", show_cursor=False)
            yield RichLog(id="progress-output", wrap=True, markup=False, max_lines=2000)
            yield Static(Text("running…", style="yellow"), id="progress-result")
            with Horizontal(id="progress-buttons"):
                yield Button("Close", id="close", disabled=True)
                yield Button(f"Roll back {target_text(p.step, p.service)}", id="rollback", variant="warning",
                             classes="-hidden")

    def on_mount(self) -> None:
        self._loop_thread = threading.get_ident()
        table = self.query_one("#progress-instances", DataTable)
        table.add_column("#", key="n", width=3)
        table.add_column("instance", key="host", width=24)
        table.add_column("status", key="status", width=12)
        for n, host in enumerate(self._hosts, start=1):
            table.add_row(str(n), host, Text("waiting", style="dim"), key=host)
        self.mounted.set()

    # -- events come in from the engine (maybe from another thread) ------------------------------
    def deliver(self, event: EventLike) -> None:
        """Hand an engine event to this screen, from the UI thread or any other."""
        if threading.get_ident() == self._loop_thread:
            self.post_message(self.EventArrived(event))
        else:
            self.app.call_from_thread(self.post_message, self.EventArrived(event))

    def _set_status(self, host: str, status: str) -> None:
        if host not in self._status:
            return
        self._status[host] = status
        self.query_one("#progress-instances", DataTable).update_cell(
            host, "status", Text(status, style=STATUS_STYLE.get(status, "")))

    @on(EventArrived)
    def _event(self, message: EventArrived) -> None:
        ev = message.event
        log = self.query_one("#progress-output", RichLog)
        host = ev.host or ""
        text = self._redactor.text(ev.text)
        if ev.kind == "restart" and host:
            self._set_status(host, "restarting")
        elif ev.kind == "instance-done" and host:
            self._set_status(host, "done")
        elif ev.kind == "verify" and host and self._status.get(host) != "done":
            self._set_status(host, "verifying")
        elif ev.kind == "error" and host:
            self._set_status(host, "FAILED")
        style = {"error": "bold red", "done": "green", "instance-done": "green", "write": "cyan",
                 "verify": "cyan"}.get(ev.kind, "")
        line = Text(f"{clock_text(ev.ts)} ", style="dim")
        if host:
            line.append(f"{host}: ", style="bold")
        line.append(text, style=style)
        log.write(line)

    def show_outcome(self, outcome: OutcomeLike) -> None:
        """The apply finished: show the result, enable Close, and offer the rollback after a failure."""
        self.outcome = outcome
        result = self.query_one("#progress-result", Static)
        if outcome.ok:
            result.update(Text(f"✔ done: {self._redactor.text(outcome.reason) or outcome.stage}", style="bold green"))
        else:
            result.update(Text(f"✘ FAILED at {outcome.stage}: {self._redactor.text(outcome.reason)} — the roll "
                               "stopped", style="bold red"))
            for host, st in self._status.items():
                if st in ("restarting", "verifying"):
                    self._set_status(host, "FAILED")
            if self.preview.direction != "rollback":
                self.query_one("#rollback", Button).remove_class("-hidden")
        close = self.query_one("#close", Button)
        close.disabled = False
        close.focus()

    def show_error(self, text: str) -> None:
        """The apply raised: show it as a failure without a rollback offer the engine did not make."""
        self.query_one("#progress-result", Static).update(Text(f"✘ stopped: {self._redactor.text(text)}",
                                                               style="bold red"))
        close = self.query_one("#close", Button)
        close.disabled = False
        close.focus()
        if self.preview.direction != "rollback":
            self.query_one("#rollback", Button).remove_class("-hidden")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#rollback")
    def _rollback(self) -> None:
        self.dismiss("rollback")

    def action_close(self) -> None:
        if not self.query_one("#close", Button).disabled:
            self.dismiss(None)

    @property
    def statuses(self) -> dict[str, Any]:
        return dict(self._status)
