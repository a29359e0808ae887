"""Live progress of an apply: instance by instance, n/N, elapsed and ETA, the streamed output, then the result.

While the roll runs: `p` pauses after the current instance (and resumes), `s` stops after it; Esc, q and
Enter say what they do instead (the roll is not left half-watched by a stray key). At the end: the
result, the automatic rollback if the engine made one, journal failures; after a failed or stopped
advance the step's rollback is offered for the instances already changed. Returns "rollback" when the
operator takes that offer, else None.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, RichLog, Static

from session.contract import REFUSED_STAGES, ControlLike, EventLike, OutcomeLike, PreviewLike
from session.redact import Redactor
from session.view import clock_text
from tui.screens.confirm import action_title
from tui.widgets.header import SizeNotice
from tui.widgets.style import modal_title

InstanceStatus = Literal["waiting", "restarting", "verifying", "done", "FAILED", "not restarted"]
ControlWord = Literal["pause", "resume", "stop"]
RollState = Literal["running", "pausing", "paused", "stopping", "finished"]
STATUS_STYLE: dict[str, str] = {
    "waiting": "dim",
    "restarting": "yellow",
    "done": "green",
    "FAILED": "bold red",
    "verifying": "cyan",
    "not restarted": "dim",
}
EVENT_STYLE = {
    "error": "bold red",
    "done": "green",
    "instance-done": "green",
    "write": "cyan",
    "verify": "cyan",
    "paused": "bold yellow",
    "resumed": "cyan",
    "stopping": "bold yellow",
    "journal": "yellow",
    "rollback": "bold yellow",
    "diagnostics": "yellow",
    "preflight": "cyan",
}


def duration_text(seconds: float) -> str:
    """0:42, 12:05, 1:02:03."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class ProgressScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause / resume", id="pause-roll"),
        Binding("s", "stop", "Stop", id="stop-roll"),
        Binding("escape,q", "close", "Close (when finished)", id="close-progress"),
        Binding("enter", "enter", "Close (when finished)", show=False),
    ]

    class EventArrived(Message):
        """One engine event (output line, restart, instance done, verification, pause, error)."""

        def __init__(self, event: EventLike) -> None:
            self.event = event
            super().__init__()

    def __init__(
        self,
        preview: PreviewLike,
        *,
        redactor: Redactor | None = None,
        control: ControlLike | None = None,
        clock: Callable[[], float] = time.time,
        env_name: str | None = None,
        protected: bool = False,
        rollback_label: str = "",
        on_control: Callable[[ControlWord], None] | None = None,
    ) -> None:
        super().__init__(classes="-protected" if protected else "")
        self.preview = preview
        self.outcome: OutcomeLike | None = None
        self.control = control
        self.clock = clock
        self.env_name = env_name or preview.env
        self.protected = protected
        self.rollback_label = rollback_label or f"Roll back {preview.step}"
        self.on_control = on_control or (lambda what: None)  # the drive screen records each request
        self.state: RollState = "running"
        self._redactor = redactor or Redactor()
        self._hosts = [r.host for r in preview.restarts]
        self._status: dict[str, InstanceStatus] = dict.fromkeys(self._hosts, "waiting")
        self._loop_thread = threading.get_ident()
        self._started = clock()
        self._ended: float | None = None
        self._current: tuple[str, float] | None = None  # the instance restarting, since when
        self._took: list[float] = []  # seconds each finished instance took
        self.mounted = asyncio.Event()  # set once the screen can show events

    def compose(self) -> ComposeResult:
        p = self.preview
        with Vertical(id="progress-box"):
            yield Static(modal_title(self.env_name, action_title(p), protected=self.protected), id="progress-title")
            yield SizeNotice("", classes="size-notice")
            yield Static(self.status_text(), id="progress-status")
            yield DataTable(id="progress-instances", cursor_type="none", show_cursor=False)
            yield RichLog(id="progress-output", wrap=True, markup=False, max_lines=2000)
            yield Static(Text("the result shows here when the roll ends", style="dim"), id="progress-result")
            yield Static(self.keys_text(), id="progress-keys")
            with Horizontal(id="progress-buttons"):
                yield Button("Close", id="close", disabled=True)
                yield Button(self.rollback_label, id="rollback", variant="warning", classes="-hidden")

    def on_mount(self) -> None:
        self._loop_thread = threading.get_ident()
        table = self.query_one("#progress-instances", DataTable)
        table.can_focus = False
        self.query_one("#progress-output", RichLog).can_focus = False
        table.add_column("#", key="n", width=3)
        table.add_column("instance", key="host", width=24)
        table.add_column("status", key="status", width=14)
        for n, host in enumerate(self._hosts, start=1):
            table.add_row(str(n), host, Text("waiting", style="dim"), key=host)
        self.set_interval(1.0, self._tick)
        self.mounted.set()

    def on_resize(self, event: Resize) -> None:
        self.query_one(SizeNotice).check(event.size.width, event.size.height)

    # -- what the status line says -------------------------------------------------------------------
    @property
    def finished_count(self) -> int:
        return sum(1 for s in self._status.values() if s in ("done", "FAILED"))

    def eta(self, now: float) -> float | None:
        """Seconds until the last instance is done: the preview's estimate per instance, else the average of
        the instances done so far; None when neither is known."""
        per = self.preview.estimate_s
        if per is None and self._took:
            per = sum(self._took) / len(self._took)
        if per is None:
            return None
        left = len(self._hosts) - self.finished_count
        into = now - self._current[1] if self._current is not None else 0.0
        return max(0.0, left * per - min(into, per))

    def status_text(self) -> Text:
        now = self.clock() if self._ended is None else self._ended
        n, total = self.finished_count, len(self._hosts)
        t = Text()
        t.append(f"{n}/{total} instance{'s' if total != 1 else ''}", style="bold")
        t.append(f" · elapsed {duration_text(now - self._started)}")
        if self.state == "finished":
            pass
        elif self.state == "paused":
            eta = self.eta(now)
            t.append(f" · ETA {duration_text(eta) + ' once resumed' if eta is not None else 'unknown'}")
        else:
            eta = self.eta(now)
            t.append(f" · ETA {duration_text(eta) if eta is not None else 'unknown'}")
        word = {
            "running": ("running", "cyan"),
            "pausing": ("pausing after the current instance…", "yellow"),
            "paused": ("PAUSED", "bold reverse yellow"),
            "stopping": ("stopping after the current instance…", "bold yellow"),
            "finished": ("finished", "bold"),
        }[self.state]
        t.append(" · ")
        t.append(word[0], style=word[1])
        if self._current is not None and self.state in ("running", "pausing", "stopping"):
            t.append(f" · now {self._current[0]}", style="dim")
        return t

    def keys_text(self) -> Text:
        if self.state == "finished":
            return Text("Esc, q or Enter closes · the event log and the recording keep every line", style="dim")
        if self.control is None:
            return Text("the roll cannot be paused from here · Esc closes once it has finished", style="dim")
        pause = "p resumes" if self.state in ("paused", "pausing") else "p pauses after the current instance"
        stop = "" if self.state == "stopping" else " · s stops after the current instance"
        return Text(f"{pause}{stop} · Esc closes once it has finished", style="bold")

    def _show_state(self) -> None:
        self.query_one("#progress-status", Static).update(self.status_text())
        self.query_one("#progress-keys", Static).update(self.keys_text())

    def _tick(self) -> None:
        if self.state != "finished":
            self.query_one("#progress-status", Static).update(self.status_text())

    # -- events come in from the engine (maybe from another thread) ------------------------------
    def deliver(self, event: EventLike) -> None:
        """Hand an engine event to this screen, from the UI thread or any other."""
        if threading.get_ident() == self._loop_thread:
            self.post_message(self.EventArrived(event))
        else:
            self.app.call_from_thread(self.post_message, self.EventArrived(event))

    def _set_status(self, host: str, status: InstanceStatus) -> None:
        if host not in self._status:
            return
        self._status[host] = status
        self.query_one("#progress-instances", DataTable).update_cell(
            host, "status", Text(status, style=STATUS_STYLE.get(status, ""))
        )

    def _instance_over(self, host: str, status: InstanceStatus) -> None:
        now = self.clock()
        if self._current is not None and self._current[0] == host:
            self._took.append(now - self._current[1])
            self._current = None
        self._set_status(host, status)

    @on(EventArrived)
    def _event(self, message: EventArrived) -> None:
        ev = message.event
        log = self.query_one("#progress-output", RichLog)
        host = ev.host or ""
        text = self._redactor.text(ev.text)
        if ev.kind == "restart" and host:
            if self._current is None or self._current[0] != host:
                self._current = (host, self.clock())
            self._set_status(host, "restarting")
        elif ev.kind == "instance-done" and host:
            self._instance_over(host, "done")
        elif ev.kind == "verify" and host and self._status.get(host) != "done":
            self._set_status(host, "verifying")
        elif ev.kind == "error" and host:
            self._instance_over(host, "FAILED")
        elif ev.kind == "paused":
            self.state = "paused"
        elif ev.kind == "resumed":
            self.state = "running"
        elif ev.kind == "stopping":
            self.state = "stopping"
        if ev.kind in ("paused", "resumed", "stopping", "restart", "instance-done", "error"):
            self._show_state()
        line = Text(f"{clock_text(ev.ts)} ", style="dim")
        if host:
            line.append(f"{host}: ", style="bold")
        line.append(text, style=EVENT_STYLE.get(ev.kind, ""))
        log.write(line)

    # -- the operator's keys ---------------------------------------------------------------------------
    def action_pause(self) -> None:
        if self.state == "finished":
            self.notify("the roll has finished: nothing to pause", severity="information")
            return
        if self.control is None:
            self.notify("this roll cannot be paused from here", severity="warning")
            return
        if self.state == "stopping":
            self.notify("the roll is stopping after the current instance", severity="warning")
            return
        if self.control.paused:
            self.control.resume()
            self.state = "running"
            self.on_control("resume")
        else:
            self.control.pause()
            self.state = "pausing"
            self.on_control("pause")
        self._show_state()

    def action_stop(self) -> None:
        if self.state == "finished":
            self.notify("the roll has finished: nothing to stop", severity="information")
            return
        if self.control is None:
            self.notify("this roll cannot be stopped from here", severity="warning")
            return
        if self.control.stop_requested:
            self.notify("stop asked already: the roll ends after the current instance", severity="warning")
            return
        self.control.stop()
        self.state = "stopping"
        self.on_control("stop")
        self._show_state()

    def _explain(self, key: str) -> None:
        if self.control is None:
            self.notify(f"{key}: the roll is running — this closes once it has finished", severity="warning")
            return
        self.notify(
            f"{key} does not interrupt a roll: p pauses and s stops after the current instance; "
            "this window closes once the roll has finished",
            severity="warning",
            timeout=6,
        )

    def action_close(self) -> None:
        if self.state == "finished":
            self.dismiss(None)
        else:
            self._explain("Esc / q")

    def action_enter(self) -> None:
        if self.state == "finished":
            self.dismiss(None)
        else:
            self._explain("Enter")

    # -- the end -------------------------------------------------------------------------------------
    def _finish(self) -> None:
        self.state = "finished"
        self._ended = self.clock()
        self._current = None
        self._show_state()
        close = self.query_one("#close", Button)
        close.disabled = False
        close.focus()

    def show_outcome(self, outcome: OutcomeLike) -> None:
        """The apply finished: show the result, enable Close, and offer the rollback where it applies."""
        self.outcome = outcome
        result = self.query_one("#progress-result", Static)
        r = self._redactor.text
        t = Text()
        if outcome.ok:
            t.append(f"✔ done: {r(outcome.reason) or outcome.stage}", style="bold green")
        elif outcome.stage in REFUSED_STAGES:
            t.append(f"✘ REFUSED ({outcome.stage}), nothing was changed: {r(outcome.reason)}", style="bold red")
        elif outcome.stage == "stopped":
            changed = ", ".join(outcome.changed) or "none"
            t.append(f"■ STOPPED: {r(outcome.reason)}\n", style="bold yellow")
            t.append(f"restarted with the new values: {changed}; the config store holds the new values", style="yellow")
        else:
            t.append(f"✘ FAILED at {outcome.stage}: {r(outcome.reason)}", style="bold red")
        rb = outcome.rolled_back
        if rb is not None:
            t.append(
                f"\nautomatic rollback: {'done' if rb.ok else 'FAILED at ' + rb.stage}: {r(rb.reason)}",
                style="green" if rb.ok else "bold red",
            )
        for e in outcome.journal_errors:
            t.append(f"\njournal: {r(e)}", style="yellow")
        result.update(t)
        if not outcome.ok:
            for host, st in self._status.items():
                if st in ("restarting", "verifying"):
                    self._set_status(host, "FAILED")
                elif st == "waiting" and outcome.stage == "stopped":
                    self._set_status(host, "not restarted")
        self._finish()
        offer = (
            not outcome.ok
            and outcome.stage not in REFUSED_STAGES
            and self.preview.direction == "advance"
            and (rb is None or not rb.ok)
            and (outcome.stage != "stopped" or bool(outcome.changed))
        )
        if offer:
            self.query_one("#rollback", Button).remove_class("-hidden")

    def show_error(self, text: str) -> None:
        """The apply raised: show it as a failure; the rollback is offered (what was done is not known)."""
        self.query_one("#progress-result", Static).update(
            Text(
                f"✘ stopped by an error: {self._redactor.text(text)} — look at the plan before going on",
                style="bold red",
            )
        )
        self._finish()
        if self.preview.direction == "advance":
            self.query_one("#rollback", Button).remove_class("-hidden")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#rollback")
    def _rollback(self) -> None:
        self.dismiss("rollback")

    @property
    def statuses(self) -> dict[str, Any]:
        return dict(self._status)
