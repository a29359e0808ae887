"""The event log: journal entries, lock changes, actions, engine output and verdict changes, in time order.

Lines arrive out of order — the fleet journal is read every few seconds and its entries carry the time
they were written, earlier than the actions recorded meanwhile — so each line is put in its place by
time. The common case (a line newer than the last) is a plain append; an earlier one rewrites only the
lines after its place. `set_filter` shows the lines containing a text.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import RichLog

from session.loglines import LogLine
from session.view import clock_text
from tui.textual_internals import SteadyScrollbars, drop_last_rows, rich_log_size_known
from tui.widgets.style import LEVEL_STYLE
from tui.widgets.tables import screen_binds

MAX_LINES = 1000
TRIM_EVERY = 200  # lines beyond MAX_LINES before the oldest are dropped (a rewrite, amortised)


def line_text(line: LogLine) -> Text:
    t = Text(clock_text(line.ts), style="dim")
    t.append(f" {line.kind:<8} ", style="dim")
    t.append(line.text, style=LEVEL_STYLE.get(line.level, ""))
    return t


def _ts(line: LogLine) -> float:
    return line.ts


class EventLog(SteadyScrollbars, RichLog):
    """Every line by time (stable for equal times: arrival order), newest last; j/k, g/G, and a filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "scroll_down", "Down", show=False),
        Binding("k", "scroll_up", "Up", show=False),
        Binding("g", "oldest", "Oldest", show=False),
        Binding("G", "newest", "Newest", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        # max_lines stays None: RichLog would drop rendered lines (not log lines) on its own
        super().__init__(id=id, max_lines=None, wrap=True, markup=False, highlight=False, auto_scroll=True)
        self.all: list[LogLine] = []  # every line, by time
        self.shown: list[LogLine] = []  # the lines written (those the filter lets through), by time
        self._heights: list[int] = []  # rendered rows of each shown line (-1: not known yet)
        self.filter_text = ""
        self.rewrites = 0  # how many times lines were written again (tests, benchmarks)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("oldest", "newest") and screen_binds(self.screen, "g" if action == "oldest" else "G"):
            return False  # the screen's own binding for the key wins (replay: g jumps to a time)
        return super().check_action(action, parameters)

    def action_oldest(self) -> None:
        self.scroll_home(animate=False)

    def action_newest(self) -> None:
        self.scroll_end(animate=False)

    @property
    def count(self) -> int:
        return len(self.all)

    def _matches(self, line: LogLine) -> bool:
        f = self.filter_text
        return not f or f in line.text.lower() or f in line.kind.lower()

    def _write(self, line: LogLine) -> None:
        before = len(self.lines)
        self.write(line_text(line))
        self._heights.append(len(self.lines) - before if rich_log_size_known(self) else -1)
        self.shown.append(line)

    def append(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        for line in sorted(lines, key=_ts):
            self.all.insert(bisect.bisect_right(self.all, line.ts, key=_ts), line)
        if len(self.all) > MAX_LINES + TRIM_EVERY:
            del self.all[: len(self.all) - MAX_LINES]
        self._sync()

    def _sync(self) -> None:
        """Make the written lines the filtered `all`: the lines up to the first difference stay, the rest is
        written again (after an append in order, that is the new lines only)."""
        wanted = [line for line in self.all if self._matches(line)]
        p = 0
        n = min(len(wanted), len(self.shown))
        while p < n and wanted[p] is self.shown[p]:
            p += 1
        if p < len(self.shown):
            tail = self._heights[p:]
            self.rewrites += 1
            if p == 0 or any(h < 0 for h in tail):
                self.clear()
                self.shown, self._heights, p = [], [], 0
            else:
                drop_last_rows(self, sum(tail))
                del self.shown[p:]
                del self._heights[p:]
        for line in wanted[p:]:
            self._write(line)

    def reset(self, lines: Sequence[LogLine]) -> None:
        self.all = sorted(lines, key=_ts)[-MAX_LINES:]
        self.clear()
        self.shown, self._heights = [], []
        self._sync()

    def set_filter(self, text: str) -> None:
        """Show only the lines containing `text` (case-insensitive); "" shows every line."""
        text = text.strip().lower()
        if text == self.filter_text:
            return
        self.filter_text = text
        self._sync()
