"""The always-visible header: environment (a protected one in a red band), mode, lock, freshness, next step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Static

from tui.view import age_text, clock_text

STALE_AFTER = 10.0  # seconds: the data is getting old
OLD_AFTER = 60.0  # seconds: gates no longer open on it


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


class CockpitHeader(Widget):
    """Two lines: badges (env, mode, lock, freshness, verdict) and the next step."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="badges"):
            yield Static("", id="env", classes="badge")
            yield Static("", id="mode", classes="badge")
            yield Static("", id="lock", classes="badge")
            yield Static("", id="fresh", classes="badge")
            yield Static("", id="verdict", classes="badge")
        yield Static("", id="next-line")

    _last: HeaderInfo | None = None

    def _put(self, selector: str, text: str) -> Static:
        w = self.query_one(selector, Static)
        if getattr(w, "_cockpit_text", None) != text:
            w._cockpit_text = text  # type: ignore[attr-defined]
            w.update(text)
        return w

    def _flag(self, w: Widget, on: bool, name: str) -> None:
        if w.has_class(name) != on:
            w.set_class(on, name)

    def show(self, info: HeaderInfo) -> None:
        """Show `info`; only what changed is touched (each update costs a layout pass)."""
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
            held = f" {age_text(info.now - float(since)).removesuffix(' ago')}" if isinstance(since, int | float) \
                and since > 0 else ""
            who = "you" if info.lock_mine else f"{h.get('who', '?')}@{h.get('where', '?')}"
            self._put("#lock", f"lock: {who} {h.get('step', '?')}{held}")
        self._flag(lock, info.lock is not None, "-held")
        self._flag(lock, info.lock_mine, "-mine")
        if info.taken_at is None:
            fresh = self._put("#fresh", "no data yet")
            age = float("inf")
        else:
            age = info.now - info.taken_at
            fresh = self._put("#fresh", f"data {clock_text(info.taken_at)}Z, {age_text(age)}")
        self._flag(fresh, STALE_AFTER < age <= OLD_AFTER, "-stale")
        self._flag(fresh, age > OLD_AFTER, "-old")
        verdict = self._put("#verdict", f"fleet {info.verdict.upper() if info.verdict not in (None, 'ok') else 'ok'}"
                            if info.verdict else "")
        for v in ("ok", "warn", "fail", "error"):
            self._flag(verdict, info.verdict == v, f"-{v}")
        nxt = info.next_text if not info.replay_text else f"{info.replay_text}  ·  {info.next_text}"
        self._put("#next-line", nxt)
