"""The main screen, read-only: header, plan, legs, step detail, instances, events.

Watch mode uses it as it is; drive and replay subclass it to add their own keys. It holds no
I/O: the app (or the replay timeline) hands it frozen views.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Key, Resize
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from probes.snapshot import DatabaseState
from session.loglines import LogLine
from session.view import FleetView, TargetDetail
from tui.screens.context import ScreenContext
from tui.screens.detail import DetailScreen
from tui.textual_internals import is_being_pruned, underline_now
from tui.widgets.detail_text import database_text, instance_text, step_text
from tui.widgets.eventlog import EventLog
from tui.widgets.footer import CockpitFooter
from tui.widgets.header import CockpitHeader, HeaderInfo, too_small
from tui.widgets.scrolling import SteadyVerticalScroll
from tui.widgets.stepdetail import StepDetail
from tui.widgets.style import modal_title
from tui.widgets.tables import InstanceTable, KeyedTable, LegsTable, PlanTable

NARROW = 110  # below this many columns, the legs move from the side panel to their tab


class MainScreen(Screen[None]):
    """Everything the cockpit shows, for any mode."""

    MODE = "watch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "detail", "Detail", id="detail"),
        Binding("1", "focus_plan", "Plan", id="focus-plan", show=False),
        Binding("2", "show_tab('tab-instances')", "Instances", id="focus-instances", show=False),
        Binding("3", "show_tab('tab-legs')", "Legs", id="focus-legs", show=False),
        Binding("4", "show_tab('tab-events')", "Events", id="focus-events", show=False),
        Binding("slash", "filter", "Filter", id="filter", key_display="/"),
    ]
    HELP_SECTION = "Look"

    class ProblemRaised(Message):
        """A failure to show in a dialog that stays until it is read (the app shows it, once)."""

        def __init__(self, what: str, error: str, todo: str = "") -> None:
            self.what = what
            self.error = error
            self.todo = todo
            super().__init__()

    class TaskFailed(Message):
        """A worker of this screen crashed (Worker.StateChanged does not bubble): the app records it and says so."""

        def __init__(self, worker: Worker[Any]) -> None:
            self.worker = worker
            super().__init__()

    def __init__(self, context: ScreenContext) -> None:
        super().__init__(id="main")
        self.context = context
        self.lock_token: str | None = None  # the fleet lock this session holds (drive), for the header's "you"
        self.view: FleetView | None = None
        self.selected: str | None = None
        self.lock_holder: dict[str, object] | None = None  # not `lock`: Widget.lock is the widget's RLock
        self.lock_known = False
        self.lock_mine = False
        self.applied_views = 0
        self._ready = False
        self._pending: FleetView | None = None
        self._pending_lines: list[LogLine] = []
        self._shown_detail: tuple[TargetDetail | None, str] | None = None
        self._filtering: Widget | None = None  # the table or log the filter bar edits

    @property
    def showing(self) -> bool:
        """Whether this screen can still show what arrives. A poll's messages can be queued while the app
        shuts down: by then Textual is pruning the screen (its widgets are going)."""
        return not is_being_pruned(self)

    # -- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield CockpitHeader(id="header")
        with Horizontal(id="upper"):
            yield PlanTable(id="plan")
            with Vertical(id="side"):
                yield LegsTable(id="legs-side")
                with SteadyVerticalScroll(id="step-scroll"):
                    yield StepDetail(step_text(None), id="step-detail")
        with TabbedContent(id="lower", initial="tab-instances"):
            with TabPane("Instances", id="tab-instances"):
                yield InstanceTable(id="instances")
            with TabPane("Legs", id="tab-legs"):
                yield LegsTable(id="legs")
            with TabPane("Events", id="tab-events"):
                yield EventLog(id="events")
        with Horizontal(id="filter-bar", classes="-hidden"):
            yield Static("", id="filter-state")
            yield Input(placeholder="filter: type; Enter keeps it, Esc clears it", id="filter-input")
        yield from self.compose_extra()
        yield CockpitFooter()

    def compose_extra(self) -> ComposeResult:
        """Mode-specific widgets above the footer (the replay timeline)."""
        yield from ()

    def on_mount(self) -> None:
        self._ready = True
        plan = self.query_one("#plan", PlanTable)
        plan.focus()
        self.watch(plan, "cursor_coordinate", self._plan_cursor_moved, init=False)
        self._narrow(self.app.size.width)
        if self._pending is not None:
            self.show_view(self._pending)
            self._pending = None
        if self._pending_lines:
            self.append_log(self._pending_lines)
            self._pending_lines = []
        self.refresh_header()

    @on(Resize)
    def _resized(self, event: Resize) -> None:
        self._narrow(event.size.width)
        self.refresh_header()

    def _narrow(self, width: int) -> None:
        self.set_class(width < NARROW, "-narrow")

    # -- data comes down --------------------------------------------------------------------------------
    def show_view(self, view: FleetView) -> int:
        """Show a new snapshot's view: tables reconciled in place; returns the cells changed."""
        if not self._ready:
            self._pending = view
            return 0
        first = self.view is None
        self.view = view
        changed = self.query_one("#plan", PlanTable).show(view.rows)
        changed += self.query_one("#legs", LegsTable).show(view.legs)
        changed += self.query_one("#legs-side", LegsTable).show(view.legs)
        changed += self.query_one("#instances", InstanceTable).show(view.instances)
        if first and view.next_key:
            self.query_one("#plan", PlanTable).highlight(view.next_key)
            self.selected = view.next_key
        elif first and view.rows:
            self.selected = view.rows[0].key
        self.show_detail()
        self.refresh_header()
        self.bindings_may_have_changed()
        self.applied_views += 1
        return changed

    def bindings_may_have_changed(self) -> None:
        """Refresh the footer only when a mode's enabled actions depend on the data (drive)."""

    def show_lock(self, holder: dict[str, object] | None, known: bool, mine: bool = False) -> None:
        self.lock_holder, self.lock_known, self.lock_mine = holder, known, mine
        self.refresh_header()

    def append_log(self, lines: Sequence[LogLine]) -> None:
        if not self._ready:
            self._pending_lines.extend(lines)
        elif lines:
            self.query_one("#events", EventLog).append(lines)

    def reset_log(self, lines: Sequence[LogLine]) -> None:
        self.query_one("#events", EventLog).reset(lines)

    def now(self) -> float:
        return self.context.clock()

    def header_info(self) -> HeaderInfo:
        cfg = self.context
        v = self.view
        return HeaderInfo(
            env=cfg.env_name,
            protected=cfg.protected,
            mode=self.MODE,
            taken_at=v.snapshot.taken_at if v else None,
            now=self.now(),
            verdict=v.snapshot.verdict.value if v else None,
            lock=self.lock_holder,
            lock_known=self.lock_known,
            lock_mine=self.lock_mine,
            next_text=(v.next_text + (f"  ·  ⚠ {len(v.dangers)} out of order" if v.dangers else ""))
            if v
            else "waiting for the first snapshot…",
            replay_text=self.replay_text(),
            too_small=too_small(*self.app.size),
        )

    def replay_text(self) -> str:
        return ""

    def refresh_header(self) -> None:
        if not self._ready or not self.is_attached:
            return
        with contextlib.suppress(NoMatches):  # the app is shutting down
            self.query_one("#header", CockpitHeader).show(self.header_info())

    # -- the highlighted target ----------------------------------------------------------------------
    @property
    def detail(self) -> TargetDetail | None:
        return self.view.detail(self.selected) if self.view else None

    def action_hint(self, detail: TargetDetail) -> str:
        """A line under the step detail saying what may be done with it (drive mode)."""
        return ""

    def show_detail(self) -> None:
        d = self.detail
        hint = self.action_hint(d) if d else ""
        if (d, hint) == self._shown_detail:
            return
        self._shown_detail = (d, hint)
        self.query_one("#step-detail", StepDetail).show(step_text(d, action_hint=hint))

    def _plan_cursor_moved(self) -> None:
        """Follow the plan's cursor at once, so its row and the side panel change in one frame.

        `PlanTable.TargetHighlighted` reaches the screen after the table has repainted its cursor
        (a frame on its own); it still comes, and then finds the panel up to date.
        """
        self._follow_plan_cursor()

    @on(PlanTable.TargetHighlighted)
    def _highlighted(self, message: PlanTable.TargetHighlighted) -> None:
        self._follow_plan_cursor()

    def _follow_plan_cursor(self) -> None:
        key = self.query_one("#plan", PlanTable).highlighted_key
        if key is None:
            return
        self.selected = key
        self.show_detail()
        self.bindings_may_have_changed()

    @on(PlanTable.TargetChosen)
    def _chosen(self, message: PlanTable.TargetChosen) -> None:
        self.selected = message.key
        self._open_step_detail()

    @on(InstanceTable.HostChosen)
    def _host_chosen(self, message: InstanceTable.HostChosen) -> None:
        self.open_host(message.host)

    @on(LegsTable.LegChosen)
    def _leg_chosen(self, message: LegsTable.LegChosen) -> None:
        self.open_database()

    # -- detail on demand ----------------------------------------------------------------------------
    def open_host(self, host: str) -> None:
        if self.view is None:
            return
        inst = next((i for i in self.view.snapshot.instances if i.host == host), None)
        if inst is None:
            self.notify(f"{host} is not in the current snapshot", severity="warning")
            return
        self.app.push_screen(
            DetailScreen(self.modal_title(f"{host} — detail"), instance_text(self.view.snapshot, inst))
        )

    def open_database(self) -> None:
        if self.view is None:
            return
        db = self.view.snapshot.database
        name = db.host if isinstance(db, DatabaseState) else "database"
        self.app.push_screen(
            DetailScreen(self.modal_title(f"{name} — Postgres, PgBouncer, Redis"), database_text(self.view.snapshot))
        )

    def _open_step_detail(self) -> None:
        d = self.detail
        if d is not None:
            self.app.push_screen(
                DetailScreen(
                    self.modal_title(f"{d.step} {d.target} — {d.title}"), step_text(d, action_hint=self.action_hint(d))
                )
            )

    def action_detail(self) -> None:
        focused: Widget | None = self.focused
        if isinstance(focused, InstanceTable):
            host = focused.highlighted_key
            if host:
                self.open_host(host)
        elif isinstance(focused, LegsTable):
            self.open_database()
        else:
            self._open_step_detail()

    def modal_title(self, text: str) -> Text:
        """A dialog's title with this session's environment first (brackets shown, never read as markup)."""
        cfg = self.context
        return modal_title(cfg.env_name, text, protected=cfg.protected)

    # -- the filter ----------------------------------------------------------------------------------
    def _filterable(self) -> Widget | None:
        focused = self.focused
        if isinstance(focused, KeyedTable | EventLog):
            return focused
        tabs = self.query_one("#lower", TabbedContent)
        return self.query_one(
            {"tab-instances": "#instances", "tab-legs": "#legs", "tab-events": "#events"}.get(tabs.active, "#plan")
        )

    def action_filter(self) -> None:
        """`/`: filter the focused table (or the events): rows containing the text; Enter keeps, Esc clears."""
        target = self._filterable()
        if target is None:
            return
        self._filtering = target
        bar = self.query_one("#filter-bar")
        bar.remove_class("-hidden")
        field = self.query_one("#filter-input", Input)
        field.display = True
        field.value = getattr(target, "filter_text", "")
        self._show_filters()
        field.focus()

    @on(Input.Changed, "#filter-input")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        target = self._filtering
        if isinstance(target, KeyedTable | EventLog):
            target.set_filter(event.value)
        self._show_filters()

    @on(Input.Submitted, "#filter-input")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.stop()
        self._end_filter()

    def on_key(self, event: Key) -> None:
        if event.key == "escape" and self.focused is self.query_one("#filter-input"):
            event.stop()
            event.prevent_default()
            target = self._filtering
            if isinstance(target, KeyedTable | EventLog):
                target.set_filter("")
            self._end_filter()

    def _end_filter(self) -> None:
        target = self._filtering
        self._filtering = None
        self.query_one("#filter-input", Input).display = False
        self._show_filters()
        if target is not None:
            target.focus()

    def _show_filters(self) -> None:
        """The filter bar: the one being edited, and every filter in force (shown while any is)."""
        names = {"plan": "Plan", "instances": "Instances", "legs": "Legs", "legs-side": "Legs", "events": "Events"}
        active = [
            f"{names.get(w.id or '', w.id)}: “{w.filter_text}”"
            for w in self.query("#plan, #instances, #legs, #legs-side, #events")
            if isinstance(w, KeyedTable | EventLog) and w.filter_text
        ]
        editing = self._filtering
        label = f"/ {names.get(editing.id or '', editing.id)}" if editing is not None else ""
        text = "  ·  ".join(([label] if label else []) + (["filtered " + ", ".join(active)] if active else []))
        self.query_one("#filter-state", Static).update(Text(text))
        self.query_one("#filter-bar").set_class(not (active or editing), "-hidden")

    # -- errors of this screen's workers (the drive cycle) ---------------------------------------------
    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        """A worker of this screen failed: Worker.StateChanged does not bubble, so tell the app's one place
        for errors (a dialog and the recording)."""
        if event.state is WorkerState.ERROR:
            self.post_message(self.TaskFailed(event.worker))

    def action_focus_plan(self) -> None:
        self.query_one("#plan", PlanTable).focus()

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one("#lower", TabbedContent)
        tabs.active = tab
        underline_now(tabs)
        target = {"tab-instances": "#instances", "tab-legs": "#legs", "tab-events": "#events"}.get(tab)
        if target:
            self.query_one(target).focus()

    # -- keys, for the help screen and the palette -------------------------------------------------------
    @classmethod
    def key_sections(cls) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """(section, [(keys, description, id)]) for this screen's class chain, most specific first."""
        out: list[tuple[str, list[tuple[str, str, str]]]] = []
        seen: set[str] = set()
        for klass in cls.__mro__:
            if not (isinstance(klass, type) and issubclass(klass, MainScreen)):
                continue
            rows: list[tuple[str, str, str]] = []
            for b in klass.__dict__.get("BINDINGS", ()):
                if isinstance(b, Binding) and b.action not in seen:
                    seen.add(b.action)
                    rows.append((b.key_display or b.key, b.description, b.id or ""))
            if rows:
                out.append((str(klass.__dict__.get("HELP_SECTION", klass.__name__)), rows))
        return out

    def palette_commands(self) -> Iterable[SystemCommand]:
        """Extra command-palette entries of this mode (drive: one per target and direction)."""
        yield from ()

    def why_disabled(self, action: str) -> str:
        """Why `action` cannot run now ("" when it can, or when there is nothing to say)."""
        return ""
