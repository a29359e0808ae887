"""The event log: journal entries, lock changes, actions, engine output and verdict changes, newest last."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import RichLog

from tui.view import LogLine, clock_text
from tui.widgets.scrolling import SteadyScrollbars
from tui.widgets.style import LEVEL_STYLE

MAX_LINES = 1000


def line_text(line: LogLine) -> Text:
    t = Text(clock_text(line.ts), style="dim")
    t.append(f" {line.kind:<8} ", style="dim")
    t.append(line.text, style=LEVEL_STYLE.get(line.level, ""))
    return t


class EventLog(SteadyScrollbars, RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, auto_scroll=True)
        self.count = 0

    def append(self, lines: Sequence[LogLine]) -> None:
        for line in lines:
            self.write(line_text(line))
        self.count += len(lines)

    def reset(self, lines: Sequence[LogLine]) -> None:
        self.clear()
        self.count = 0
        self.append(lines)
