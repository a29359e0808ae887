"""The replay timeline bar, and the jump-to-time prompt."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static

from tui.replay import Timeline, parse_time
from tui.view import clock_text


def timeline_text(tl: Timeline, width: int) -> Text:
    """▶ 4x 10:15:03 ──●──▲──── 12:40:00 [skip idle]"""
    state = "▶" if tl.playing else "❚❚"
    speed = f"{tl.speed:g}x"
    left = f"{state} {speed:>5} {clock_text(tl.pos)} "
    damaged = len(tl.rec.damaged)
    right = f" {clock_text(tl.end)}" + (" idle⇥" if tl.skip_idle else "") + (f" ⚠{damaged} damaged" if damaged else "")
    bar_w = max(10, width - len(left) - len(right))
    span = max(tl.end - tl.start, 1e-9)
    cells = ["─"] * bar_w
    for m in tl.marks:
        i = min(bar_w - 1, int((m - tl.start) / span * bar_w))
        cells[i] = "▲"
    cur = min(bar_w - 1, int((tl.pos - tl.start) / span * bar_w))
    t = Text(left, style="bold")
    t.append("".join(cells[:cur]), style="cyan")
    t.append("●", style="bold reverse")
    t.append("".join(cells[cur + 1:]), style="dim")
    t.append(right, style="bold yellow" if damaged else "bold")
    return t


class TimelineBar(Widget):
    """One line: play state, speed, position, the bar with marks (▲) and the end time."""

    def __init__(self, timeline: Timeline, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.timeline = timeline

    def render(self) -> Text:
        return timeline_text(self.timeline, self.size.width)


class JumpScreen(ModalScreen[float | None]):
    """Ask for a time; returns the epoch seconds to jump to, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="cancel-jump")]

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self.timeline = timeline

    def compose(self) -> ComposeResult:
        tl = self.timeline
        with Vertical(id="jump-box"):
            yield Static(f"Jump to a time between {clock_text(tl.start)} and {clock_text(tl.end)} (UTC): "
                         "10:15:30, +90s, -5m, +1h or @300 (seconds from the start)", id="jump-title")
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
