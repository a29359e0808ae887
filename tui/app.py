"""The cockpit app: `make_app(mode, ...)` builds it for drive, watch or replay; `cockpit` (cli/compose.py)
and the tests both call it.

The app holds no I/O of its own. In drive and watch a worker polls the feed (the next poll is
scheduled when the last one finished), builds a frozen `FleetView`, records the snapshot and posts
`SnapshotArrived`, which replaces a pending one so a burst collapses to the latest. In replay the
timeline feeds the same screen from a recording.

The screens are given a `ScreenContext` and never reach up into the app: what they need done (a
problem shown, a crashed task recorded) comes up as a message, handled here in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from plans.plan import Plan, default_plan
from session.contract import EngineLike
from session.feed import Feed, Observation
from session.loglines import LogLine, log_lines
from session.recording.reader import Recording
from session.recording.writer import Recorder
from session.view import MODES, FleetView, Mode, build_view, verdict_changes
from tui.screens.context import ScreenContext
from tui.screens.help import HelpScreen, help_text
from tui.screens.main import MainScreen
from tui.widgets.style import modal_title

JOURNAL_BACKLOG = 30  # journal entries shown from before the session started
# Textual's dark theme with a warning, an accent and an error that stay three colours on a 16-colour terminal
# (TEXTUAL_COLOR_SYSTEM=standard): there its orange warning and accent both become the error's bright red,
# so a WARN looked like a FAIL and every focus border and key hint looked like an alarm. Here warnings go to
# yellow, the accent (focus, key hints) to cyan, errors stay red.
COCKPIT_THEME = Theme(
    name="cockpit",
    primary="#0178D4",
    secondary="#004578",
    warning="#ffb000",
    error="#ba3c5b",
    success="#4EBF71",
    accent="#2fb8d8",
    foreground="#e0e0e0",
    dark=True,
)


def literal(text: str) -> str:
    """`text` as Textual markup that shows exactly `text`: every "[" escaped (`textual.markup.escape` leaves
    "[R]" alone, and the palette then eats it as a tag)."""
    return text.replace("[", "\\[")


MIN_POLL_GAP = 0.2  # seconds between the end of a round and the next, when rounds take longer than the interval


@dataclass(frozen=True)
class CockpitConfig:
    """Everything an app instance is built from (what `make_app` validated)."""

    mode: Mode
    env_name: str
    protected: bool
    plan: Plan
    services: tuple[str, ...]  # the environment's app services in inventory order ("others" expanded)
    feed: Feed | None = None
    engine: EngineLike | None = None
    recorder: Recorder | None = None
    recording: Recording | None = None
    clock: Callable[[], float] = field(default=time.time)
    poll_interval: float | None = 1.0  # None: poll once, then only on request (tests, benchmarks)
    # where the palette's Screenshot writes (cli.paths.screenshots_dir: the state dir, next to the recordings,
    # not Textual's default, a Downloads folder that may not exist); None: Textual's own Screenshot command
    screenshots: Path | None = None


class CockpitApp(App[None]):
    """Rollout Cockpit. Build it with `make_app`."""

    CSS_PATH = "cockpit.tcss"
    TITLE = "Rollout Cockpit"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="help", key_display="?"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("ctrl+l", "poll_now", "Refresh now", id="refresh", show=False),
    ]
    HELP_SECTION = "Anywhere"

    class SnapshotArrived(Message):
        """A new snapshot and its view; a newer one replaces a pending one."""

        def __init__(self, view: FleetView) -> None:
            self.view = view
            super().__init__()

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, CockpitApp.SnapshotArrived)

    class LockObserved(Message):
        def __init__(self, holder: dict[str, Any] | None, known: bool) -> None:
            self.holder = holder
            self.known = known
            super().__init__()

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, CockpitApp.LockObserved)

    class LinesArrived(Message):
        """Event-log lines (never collapsed: each one is a fact)."""

        def __init__(self, lines: Sequence[LogLine]) -> None:
            self.lines = tuple(lines)
            super().__init__()

    def __init__(self, config: CockpitConfig) -> None:
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # A switched tab is on screen in the next frame, but its underline would slide for
            # 0.3 s more (frames after every key); the cockpit answers keys at once instead.
            # TEXTUAL_ANIMATIONS=full brings animations back.
            self.animation_level = "none"
        self.register_theme(COCKPIT_THEME)
        self.theme = COCKPIT_THEME.name
        self.config = config
        self.clock = config.clock
        self.recorder = config.recorder or Recorder(
            None,
            env=config.env_name,
            mode=config.mode,
            protected=config.protected,
            plan=config.plan.name,
            services=config.services,
            clock=config.clock,
        )
        self.context = ScreenContext(
            env_name=config.env_name,
            protected=config.protected,
            plan=config.plan,
            services=config.services,
            recorder=self.recorder,
            clock=config.clock,
        )
        self.main = self._build_main()
        self.view: FleetView | None = None
        self._journal_seen: set[tuple[Any, ...]] | None = None
        self._lock_token: object = ()
        self._poll_timer: Any = None
        self.polls = 0
        self.closers: list[Callable[[], Awaitable[None]]] = []  # awaited on quit (the collector's sessions)
        self.sub_title = f"{config.env_name} · {config.mode.upper()}"

    def _build_main(self) -> MainScreen:
        mode = self.config.mode
        if mode == "drive":
            from tui.screens.drive import DriveScreen  # watch and replay never load the write actions

            assert self.config.engine is not None
            return DriveScreen(self.config.engine, self.context)
        if mode == "replay":
            from tui.screens.replaying import ReplayScreen

            assert self.config.recording is not None
            return ReplayScreen(self.config.recording, self.context)
        return MainScreen(self.context)

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        if self.config.mode != "replay":
            self._poll()
        self.set_interval(1.0, self.main.refresh_header)

    def on_ready(self) -> None:
        """Keep what lives until exit out of full garbage collections.

        Textual leaves reference cycles behind every frame (each `Strip` and its caches), so full
        collections run every few seconds; walking the ~85,000 objects alive by now (imports, CSS,
        the screen) took 50-100 ms each time, on whatever key was being answered. Frozen, they are
        not walked: a full collection covers what was made since (~20,000 objects, 10-30 ms).
        """
        gc.collect()  # what is garbage already is not frozen with the rest
        gc.freeze()

    def on_unmount(self) -> None:
        gc.unfreeze()  # hand everything back to the collector (tests run many apps in one process)

    # -- polling ----------------------------------------------------------------------------------------
    @work(exclusive=True, group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        feed = self.config.feed
        if feed is None:
            return
        started = time.monotonic()
        try:
            obs = await feed.observe()
            self.absorb(obs)
        finally:
            self.polls += 1
            if self.config.poll_interval is not None and self.is_running:
                # rounds start every poll_interval (a 0.3 s round does not stretch a 1 s cadence to
                # 1.3 s); a round longer than the interval is followed by the next after a short gap
                took = time.monotonic() - started
                self._poll_timer = self.set_timer(max(MIN_POLL_GAP, self.config.poll_interval - took), self._poll)

    async def action_quit(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), 5.0)
        self.exit()

    def action_poll_now(self) -> None:
        if self.config.mode == "replay":
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
        self._poll()

    def absorb(self, obs: Observation) -> None:
        """Turn one poll round into records, a view and messages (the worker calls this)."""
        lines: list[LogLine] = []
        rec = self.recorder
        if obs.snapshot is not None:
            now = self.clock()
            view = build_view(self.config.plan, obs.snapshot, self.config.services, now=now)
            changes = verdict_changes(self.view, view)
            snap_rec = rec.snapshot(obs.snapshot, ts=now)
            if changes:
                lines += log_lines(rec.record("verdict", ts=now, seq=snap_rec.get("seq"), changes=changes))
            self.view = view
            self.post_message(self.SnapshotArrived(view))
        elif obs.error:
            lines += log_lines(rec.record("note", text=f"snapshot failed: {obs.error}", level="error"))
        token = (obs.lock_known, (obs.lock or {}).get("token"), (obs.lock or {}).get("step"))
        if token != self._lock_token and (obs.lock_known or obs.lock_error):
            self._lock_token = token
            lines += log_lines(rec.record("lock", holder=obs.lock, known=obs.lock_known, error=obs.lock_error))
        if obs.lock_known or obs.lock_error:
            self.post_message(self.LockObserved(obs.lock, obs.lock_known))
        if obs.journal is not None:
            lines += self._journal(obs.journal)
        if lines:
            self.post_message(self.LinesArrived(lines))

    def _journal(self, entries: Sequence[dict[str, Any]]) -> list[LogLine]:
        def key(e: dict[str, Any]) -> tuple[Any, ...]:
            return (e.get("ts"), e.get("who"), e.get("event"), e.get("step"), e.get("service"))

        lines: list[LogLine] = []
        first = self._journal_seen is None
        seen = self._journal_seen if self._journal_seen is not None else set()
        fresh = [e for e in entries if key(e) not in seen]
        if first:
            fresh = fresh[-JOURNAL_BACKLOG:]
        for e in fresh:
            lines += log_lines(self.recorder.record("journal", entry=e, backlog=first))
        seen.update(key(e) for e in entries)
        self._journal_seen = seen
        return lines

    def _main_showing(self) -> bool:
        """Whether the main screen can still show what arrives. A poll's messages can be queued
        while the app shuts down: by then Textual is pruning the screen (its widgets are going),
        and what arrives is dropped — it is in the recording already."""
        return self.is_running and self.main.showing

    @on(SnapshotArrived)
    def _snapshot_arrived(self, message: SnapshotArrived) -> None:
        if self._main_showing():
            self.main.show_view(message.view)

    @on(LockObserved)
    def _lock_observed(self, message: LockObserved) -> None:
        if self._main_showing():
            mine = self.config.mode == "drive" and self.main_holds_lock(message.holder)
            self.main.show_lock(message.holder, message.known, mine)

    @on(LinesArrived)
    def _lines_arrived(self, message: LinesArrived) -> None:
        if self._main_showing():
            self.main.append_log(message.lines)

    def main_holds_lock(self, holder: dict[str, Any] | None) -> bool:
        token = self.main.lock_token
        return bool(holder and token and holder.get("token") == token)

    def log_record(self, record: dict[str, Any]) -> None:
        """Show an already-written record in the event log."""
        self.main.append_log(log_lines(record))

    # -- errors in one place --------------------------------------------------------------------------
    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.worker_failed(event.worker)

    @on(MainScreen.TaskFailed)
    def _task_failed(self, message: MainScreen.TaskFailed) -> None:
        self.worker_failed(message.worker)

    @on(MainScreen.ProblemRaised)
    def _problem_raised(self, message: MainScreen.ProblemRaised) -> None:
        self.show_problem(message.what, message.error, message.todo)

    def worker_failed(self, worker: Worker[Any]) -> None:
        """A worker crashed (a bug, or an error nobody caught): recorded, in the event log, and in a dialog
        that stays until it is read. The same error again while its dialog is open is not shown twice."""
        err = worker.error
        text = f"{worker.name or 'a task'} failed: {type(err).__name__}: {err}"
        rec = (
            self.recorder.record(
                "action",
                kind="error",
                error=f"the cockpit failed inside an action: {text}",
                who=self.recorder.header.get("who") or "",
            )
            if self.config.mode == "drive"
            else self.recorder.record("note", text=text, level="error")
        )
        self.log_record(rec)
        self.show_problem(
            "Something failed inside the cockpit",
            text,
            "The action was not finished. Look at the fleet (the plan and the lock) before you try "
            "again; if it repeats, report it with the recording.",
        )

    def show_problem(self, what: str, error: str, todo: str = "") -> None:
        """A failure in a dialog that stays until it is read (Enter or Escape closes it)."""
        from tui.screens.detail import ProblemScreen, problem_text

        for screen in self.screen_stack:
            if isinstance(screen, ProblemScreen) and screen.body.plain == problem_text(what, error, todo).plain:
                return
        title = modal_title(self.config.env_name, what, protected=self.config.protected)
        self.push_screen(ProblemScreen(title, problem_text(what, error, todo)))

    def save_screenshot_here(self) -> None:
        """The palette's Screenshot: an SVG of the screen in `config.screenshots` (created), its path said."""
        directory = self.config.screenshots
        if directory is None:
            self.action_screenshot()
            return
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.save_screenshot(path=str(directory))
        except OSError as exc:
            self.show_problem("The screenshot was not saved", f"{directory}: {exc}")
            return
        self.log_record(self.recorder.record("note", text=f"screenshot saved: {path}", level="info"))
        self.notify(f"saved to {path}", title="Screenshot", timeout=10, markup=False)

    # -- help and the palette ----------------------------------------------------------------------------
    def key_sections(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        sections = self.main.key_sections()
        rows = [(b.key_display or b.key, b.description, b.id or "") for b in self.BINDINGS if isinstance(b, Binding)]
        if self.config.mode == "replay":
            rows = [r for r in rows if r[2] != "refresh"]
        rows += [
            ("ctrl+p", "Command palette", "palette"),
            ("tab / shift+tab", "Next / previous panel", ""),
            ("enter", "Open the highlighted row", ""),
            ("escape", "Close a dialog", ""),
            ("j / k", "Down / up in a table or the events", ""),
            ("g / G", "First / last row (oldest / newest event)", ""),
        ]
        if self.config.mode == "drive":
            rows += [("p / s", "While a roll runs: pause (resume) / stop after the current instance", "")]
        sections.append((self.HELP_SECTION, rows))
        return sections

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        title = modal_title(
            self.config.env_name, f"keys and actions ({self.config.mode})", protected=self.config.protected
        )
        self.push_screen(HelpScreen(help_text(self.config.mode, self.key_sections()), title=title))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's commands (its Screenshot replaced), every key of the mode, the mode's own commands.

        The palette reads titles as markup: ours are escaped, or "Advance [a]" shows as "Advance " and
        "Filter [/]" fails to parse."""
        shots = self.config.screenshots
        for command in super().get_system_commands(screen):
            if command.title == "Screenshot" and shots is not None:
                yield SystemCommand(
                    "Screenshot",
                    literal(f"Save an SVG of the screen in {shots}"),
                    lambda: self.set_timer(0.1, self.save_screenshot_here),
                )
            else:
                yield command
        for command in self._own_commands():
            yield SystemCommand(literal(command.title), literal(command.help), command.callback, command.discover)

    def _own_commands(self) -> Iterable[SystemCommand]:
        for section, rows in self.main.key_sections():
            for keys, what, bid in rows:
                action = self._action_for(bid)
                if action is None:
                    continue
                yield SystemCommand(f"{what} [{keys}]", f"{section}: {what} (key {keys})", self._palette_runner(action))
        yield SystemCommand("Help [?]", "Every key and action of this mode", self.action_help)
        if self.config.mode != "replay":
            yield SystemCommand("Refresh now [ctrl+l]", "Poll the fleet now", self.action_poll_now)
        yield from self.main.palette_commands()

    def _action_for(self, binding_id: str) -> str | None:
        for klass in type(self.main).__mro__:
            for b in getattr(klass, "BINDINGS", ()) or ():
                if isinstance(b, Binding) and b.id == binding_id and binding_id:
                    return b.action
        return None

    def _palette_runner(self, action: str) -> Callable[[], Any]:
        async def run() -> None:
            name = action.split("(", 1)[0]
            allowed = self.main.check_action(name, ())
            if allowed is not True:
                why = self.main.why_disabled(name)
                self.notify(f"not available now{': ' + why if why else ''}", severity="warning", markup=False)
                return
            await self.main.run_action(action)

        return run


def make_app(
    mode: Mode,
    *,
    plan: Plan | None = None,
    env_name: str | None = None,
    protected: bool | None = None,
    services: Sequence[str] | None = None,
    feed: Feed | None = None,
    engine: EngineLike | None = None,
    recorder: Recorder | None = None,
    recording: Recording | None = None,
    clock: Callable[[], float] = time.time,
    poll_interval: float | None = 1.0,
    screenshots: Path | None = None,
) -> CockpitApp:
    """Build the cockpit for `mode`.

    drive: `engine` (the plans engine) and `feed` (snapshots via the engine, the lock, the journal).
    watch: `feed` only; passing an engine is refused: watch is built without write actions.
    replay: `recording` only; env, protection and services come from its header.
    `screenshots`: where the palette's Screenshot writes (None: Textual's own Screenshot command).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    plan = plan or default_plan()
    if mode == "replay":
        if recording is None:
            raise ValueError("replay needs a recording")
        if feed is not None or engine is not None or recorder is not None:
            raise ValueError("replay reads a recording only: no feed, engine or recorder")
        h = recording.header
        env_name = env_name or str(h.get("env", "?"))
        protected = bool(h.get("protected")) if protected is None else protected
        services = services if services is not None else tuple(h.get("services", ()))
    else:
        if feed is None:
            raise ValueError(f"{mode} needs a feed")
        if mode == "watch" and engine is not None:
            raise ValueError("watch mode is read-only: it is built without an engine")
        if mode == "drive" and engine is None:
            raise ValueError("drive mode needs the engine")
        if env_name is None or services is None:
            raise ValueError(f"{mode} needs env_name and services")
    return CockpitApp(
        CockpitConfig(
            mode=mode,
            env_name=env_name or "?",
            protected=bool(protected),
            plan=plan,
            services=tuple(services or ()),
            feed=feed,
            engine=engine,
            recorder=recorder,
            recording=recording,
            clock=clock,
            poll_interval=poll_interval,
            screenshots=screenshots,
        )
    )
