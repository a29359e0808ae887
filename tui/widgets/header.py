"""The always-visible header: environment (a protected one in a red band), mode, lock, freshness, next step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Static

from session.loglines import said
from session.view import age_text, clock_text

STALE_AFTER = 10.0  # seconds: the data is getting old
OLD_AFTER = 60.0  # seconds: gates no longer open on it
MIN_WIDTH, MIN_HEIGHT = 80, 24  # below this the screens are cut: said, not silently


def too_small(width: int, height: int) -> str:
    """What to say when the terminal is below the minimum size ("" when it is not)."""
    if width >= MIN_WIDTH and height >= MIN_HEIGHT:
        return ""
    return f"⚠ too small: {width}×{height} < {MIN_WIDTH}×{MIN_HEIGHT} — parts are cut; enlarge the terminal"


class SizeNotice(Static):
    """One line that says the terminal is too small, shown only then (the modal screens carry one)."""

    def check(self, width: int, height: int) -> None:
        text = too_small(width, height)
        self.display = bool(text)
        self.update(text)


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    env: str
    protected: bool
    mode: str  # "drive" | "watch" | "replay"
    taken_at: float | None  # the shown snapshot's time; None: none yet
    now: float
    verdict: str | None  # the fleet verdict word
    lock: dict[str, Any] | None  # the holder, None when free
    lock_known: bool  # False: the lock could not be read
    lock_mine: bool
    next_text: str
    replay_text: str = ""
    too_small: str = ""  # the terminal is below the minimum size: said instead of the next step


class CockpitHeader(Widget):
    """Two lines: badges (env, mode, verdict, freshness, lock) and the next step."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._last: HeaderInfo | None = None
        self._texts: dict[str, str] = {}  # selector → the text shown

    def compose(self) -> ComposeResult:
        # the fleet's verdict and the data's age before the lock: at 80 columns a long holder's name is what
        # gets cut, not the verdict
        with Horizontal(id="badges"):
            yield Static("", id="env", classes="badge")
            yield Static("", id="mode", classes="badge")
            yield Static("", id="verdict", classes="badge")
            yield Static("", id="fresh", classes="badge")
            yield Static("", id="lock", classes="badge")
        yield Static("", id="next-line")

    def _put(self, selector: str, text: str) -> Static:
        """Show `text` in one line; the screen is laid out again only when its width changes.

        Every line here is one row high, and the badges are as wide as their text: a text of the
        same width (the clock ticking, "3s ago" → "4s ago") only needs a repaint.
        """
        w = self.query_one(selector, Static)
        old = self._texts.get(selector)
        if old != text:
            self._texts[selector] = text
            # as Text: a name with brackets ("[staging]") is shown as it is, not read as markup
            w.update(Text(text), layout=old is None or cell_len(old) != cell_len(text))
        return w

    def _flag(self, w: Widget, on: bool, name: str) -> None:
        if w.has_class(name) != on:
            w.set_class(on, name)

    def show(self, info: HeaderInfo) -> None:
        """Show `info`; only what changed is touched (a repaint; a layout pass when a width changes)."""
        if info == self._last:
            return
        self._last = info
        self._show(info)

    def _show(self, info: HeaderInfo) -> None:
        self._flag(self, info.protected, "-protected")
        self._put("#env", f"▲ PROTECTED {info.env.upper()} ▲" if info.protected else f"env {info.env}")
        mode = self._put("#mode", info.mode.upper())
        for m in ("drive", "watch", "replay"):
            self._flag(mode, info.mode == m, f"-{m}")
        lock = self.query_one("#lock", Static)
        if not info.lock_known:
            self._put("#lock", "lock: ?")
        elif info.lock is None:
            self._put("#lock", "lock: free")
        else:
            h = info.lock
            since = h.get("since")
            held = (
                f" {age_text(info.now - float(since)).removesuffix(' ago')}"
                if isinstance(since, int | float) and since > 0
                else ""
            )
            who = "you" if info.lock_mine else f"{said(h.get('who'))}@{said(h.get('where'))}"
            self._put("#lock", f"lock: {who} {said(h.get('step'))}{held}")
        self._flag(lock, info.lock is not None, "-held")
        self._flag(lock, info.lock_mine, "-mine")
        if info.taken_at is None:
            fresh = self._put("#fresh", "no data yet")
            age = float("inf")
        else:
            age = info.now - info.taken_at
            fresh = self._put("#fresh", f"data {age_text(age)} ({clock_text(info.taken_at)}Z)")
        self._flag(fresh, STALE_AFTER < age <= OLD_AFTER, "-stale")
        self._flag(fresh, age > OLD_AFTER, "-old")
        verdict = self._put(
            "#verdict",
            f"fleet {info.verdict.upper() if info.verdict not in (None, 'ok') else 'ok'}" if info.verdict else "",
        )
        for v in ("ok", "warn", "fail", "error"):
            self._flag(verdict, info.verdict == v, f"-{v}")
        nxt = info.next_text if not info.replay_text else f"{info.replay_text}  ·  {info.next_text}"
        line = self._put("#next-line", info.too_small or nxt)
        self._flag(line, bool(info.too_small), "-too-small")
        self._flag(line, not info.too_small and " — blocked by " in nxt, "-blocked")
