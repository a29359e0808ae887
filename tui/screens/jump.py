"""The replay's jump-to-time prompt."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from session.replay import Timeline, parse_time
from session.view import clock_text


class JumpScreen(ModalScreen[float | None]):
    """Ask for a time; returns the epoch seconds to jump to, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel-jump")]

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self.timeline = timeline

    def compose(self) -> ComposeResult:
        tl = self.timeline
        with Vertical(id="jump-box"):
            yield Static(
                f"Jump to a time between {clock_text(tl.start)} and {clock_text(tl.end)} (UTC): "
                "10:15:30, +90s, -5m, +1h or @300 (seconds from the start)",
                id="jump-title",
            )
            yield Input(placeholder=clock_text(tl.pos), id="jump-input")
            yield Static("", id="jump-error")

    def on_mount(self) -> None:
        self.query_one("#jump-input", Input).focus()

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            ts = parse_time(event.value, start=self.timeline.start, pos=self.timeline.pos)
        except ValueError as exc:
            self.query_one("#jump-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(ts)

    def action_cancel(self) -> None:
        self.dismiss(None)
