"""Replay mode: the main screen fed by a recording, with a timeline bar and its keys."""

from __future__ import annotations

import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer

from session.loglines import log_lines
from session.recording.reader import Recording
from session.replay import Timeline
from session.view import clock_text
from tui.screens.context import ScreenContext
from tui.screens.jump import JumpScreen
from tui.screens.main import MainScreen
from tui.widgets.timeline import TimelineBar

TICK = 0.1  # seconds between timeline steps while playing


class ReplayScreen(MainScreen):
    MODE = "replay"
    HELP_SECTION = "Replay"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play", "Play/pause", id="play"),
        Binding("full_stop", "seek(10)", "+10s", id="forward", key_display="."),
        Binding("comma", "seek(-10)", "-10s", id="back", key_display=","),
        Binding("greater_than_sign", "seek(60)", "+1 min", id="forward-minute", key_display=">", show=False),
        Binding("less_than_sign", "seek(-60)", "-1 min", id="back-minute", key_display="<", show=False),
        Binding("plus,equals_sign", "faster", "Faster", id="faster", key_display="+"),
        Binding("minus", "slower", "Slower", id="slower", key_display="-"),
        Binding("0", "rewind", "Rewind", id="rewind"),
        Binding("dollar_sign", "to_end", "To the end", id="to-end", key_display="$", show=False),
        Binding("n", "next_mark", "Next mark", id="next-mark"),
        Binding("p", "prev_mark", "Previous mark", id="prev-mark"),
        Binding("g", "jump", "Jump to time", id="jump"),
        Binding("i", "skip_idle", "Skip idle", id="skip-idle"),
    ]

    def __init__(self, recording: Recording, context: ScreenContext) -> None:
        super().__init__(context)
        self.timeline = Timeline(recording)
        self._index = -2
        self._timer: Timer | None = None
        self._last_tick = 0.0
        self._damage_told = 0

    def compose_extra(self) -> ComposeResult:
        yield TimelineBar(self.timeline, id="timeline")

    def on_mount(self) -> None:
        super().on_mount()
        self.goto(self.timeline.start, reset=True)
        self._timer = self.set_interval(TICK, self._tick, pause=True)
        rec = self.timeline.rec
        told = [
            t
            for t in (
                self.timeline.damage(),
                f"the last line (line {rec.cut_short}) was cut short by a crash and is ignored"
                if rec.cut_short
                else "",
                f"{len(rec.out_of_order)} line(s) with times that go backwards, shown in file order"
                if rec.out_of_order
                else "",
            )
            if t
        ]
        if told:
            self._damage_told = len(rec.damaged)
            self.notify("; ".join(told), title="recording", severity="warning", timeout=15)

    def now(self) -> float:
        return self.timeline.pos

    def replay_text(self) -> str:
        tl = self.timeline
        state = "playing" if tl.playing else "paused"
        return f"REPLAY {clock_text(tl.pos)}Z of {clock_text(tl.start)}–{clock_text(tl.end)}, {state} {tl.speed:g}x"

    # -- moving the position -------------------------------------------------------------------------
    def goto(self, ts: float | None = None, *, reset: bool = False) -> None:
        """Show the recording at `ts` (the timeline's position when None): the last snapshot at or
        before it that can be shown (damaged ones are skipped, and said so in the event log)."""
        tl = self.timeline
        old = tl.pos
        if ts is not None:
            tl.seek(ts)
        cfg = self.context
        i, view = tl.view_at(cfg.plan, cfg.services)
        if i != self._index:
            self._index = i
            if view is not None:
                self.show_view(view)
        if reset or tl.pos < old:
            lines = [ln for r in tl.records_tail(tl.pos) for ln in log_lines(r)]
            self.reset_log(lines)
        elif tl.pos > old:
            self.append_log([ln for r in tl.records_between(old, tl.pos) for ln in log_lines(r)])
        holder, known = tl.lock_at(tl.pos)
        self.show_lock(holder, known)
        self.query_one("#timeline", TimelineBar).refresh()
        self.refresh_header()

    def _tick(self) -> None:
        now = time.monotonic()
        dt = min(1.0, now - self._last_tick) if self._last_tick else TICK
        self._last_tick = now
        tl = self.timeline
        old = tl.pos
        if tl.tick(dt):
            self.goto_from(old)
        if not tl.playing and self._timer is not None:
            self._timer.pause()
            self.refresh_header()
            self.query_one("#timeline", TimelineBar).refresh()

    def goto_from(self, old: float) -> None:
        """After the timeline moved forward from `old` by itself (playing)."""
        tl = self.timeline
        new = tl.pos
        tl.pos = old
        self.goto(new)

    # -- keys ---------------------------------------------------------------------------------------------
    def action_play(self) -> None:
        playing = self.timeline.toggle()
        if self._timer is not None:
            if playing:
                self._last_tick = time.monotonic()
                self._timer.resume()
            else:
                self._timer.pause()
        self.goto()

    def action_seek(self, seconds: float) -> None:
        self.goto(self.timeline.pos + seconds)

    def action_faster(self) -> None:
        self.timeline.faster()
        self.goto()

    def action_slower(self) -> None:
        self.timeline.slower()
        self.goto()

    def action_rewind(self) -> None:
        self.timeline.playing = False
        self.goto(self.timeline.start)

    def action_to_end(self) -> None:
        self.timeline.playing = False
        self.goto(self.timeline.end)

    def action_next_mark(self) -> None:
        old = self.timeline.pos
        if self.timeline.next_mark():
            new = self.timeline.pos
            self.timeline.pos = old
            self.goto(new)
        else:
            self.notify("no later action or verdict change", timeout=3)

    def action_prev_mark(self) -> None:
        old = self.timeline.pos
        if self.timeline.prev_mark():
            new = self.timeline.pos
            self.timeline.pos = old
            self.goto(new)
        else:
            self.notify("no earlier action or verdict change", timeout=3)

    def action_skip_idle(self) -> None:
        self.timeline.skip_idle = not self.timeline.skip_idle
        self.notify(f"skip idle stretches: {'on' if self.timeline.skip_idle else 'off'}", timeout=3)
        self.goto()

    def action_jump(self) -> None:
        def done(ts: float | None) -> None:
            if ts is not None:
                self.goto(ts)

        self.app.push_screen(JumpScreen(self.timeline), done)
