"""The replay timeline bar: play state, speed, position, the marks."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from session.replay import Timeline
from session.view import clock_text


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
    t.append("".join(cells[cur + 1 :]), style="dim")
    t.append(right, style="bold yellow" if damaged else "bold")
    return t


class TimelineBar(Widget):
    """One line: play state, speed, position, the bar with marks (▲) and the end time."""

    def __init__(self, timeline: Timeline, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.timeline = timeline

    def render(self) -> Text:
        return timeline_text(self.timeline, self.size.width)
