"""Keyed tables: plan targets, legs, instances. Rows are reconciled in place by key, changed cells only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.message import Message
from textual.widget import PseudoClasses, Widget
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from session.view import STATE_WORD, VERDICT_WORD, InstanceRow, LegRow, PlanRow
from tui.textual_internals import SteadyScrollbars, clear_styles_cache
from tui.widgets.style import (
    GATE_STYLE,
    STATE_STYLE,
    VERDICT_STYLE,
    Cell,
    listener_style,
    seen_style,
    styled,
    verdict_text,
)

Cells = tuple[Cell, ...]


def screen_binds(screen: object, key: str) -> bool:
    """Whether `screen`'s class (or a base) binds `key` itself: a table's own binding for that key steps
    aside (bindings are tried from the focused widget up)."""
    for klass in type(screen).__mro__:
        for b in vars(klass).get("BINDINGS", ()) or ():
            if isinstance(b, Binding) and key in (k.strip() for k in b.key.split(",")):
                return True
    return False


class KeyedTable(SteadyScrollbars, DataTable[Cell]):
    """A DataTable whose rows are set as (key, cells): only changed cells are touched.

    Two more things every table here does: columns by priority (`PRIORITY`, most important first: when the
    table is narrower than all its columns, the least important ones go, never a problem column), and a
    filter (`set_filter`: rows whose words contain the text, case-insensitive).
    """

    COLUMNS: ClassVar[tuple[tuple[str, str, int | None], ...]] = ()  # (key, label, width; None: as wide as needed)
    PRIORITY: ClassVar[tuple[str, ...]] = ()  # column keys, most important first (default: COLUMNS' order)
    AUTO_MIN: ClassVar[int] = 10  # what a column of width None needs at least to be worth showing
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "first_row", "First row", show=False),
        Binding("G", "last_row", "Last row", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False, show_cursor=True)
        self._cells: dict[str, Cells] = {}  # what the table shows: the visible columns' cells
        self._order: list[str] = []
        self._rows: list[tuple[str, Cells]] = []  # every row, every column (before the filter and the fit)
        self._look: tuple[object, ...] | None = None
        self.filter_text = ""
        self._visible: tuple[int, ...] = tuple(range(len(self.COLUMNS)))
        self._fitted_width = -1

    # -- focus without a repaint of every cell ---------------------------------------------
    # A table looks the same focused or not (cockpit.tcss: the panel's border says which one has
    # focus). Textual's DataTable drops every rendered line when its styles are re-applied, which
    # focus does, and keys its line caches on the focus state: one key then re-rendered every
    # visible cell of two tables. Here the caches are kept when the table's look did not change.

    def get_pseudo_class_state(self) -> PseudoClasses:
        state = super().get_pseudo_class_state()
        return PseudoClasses(enabled=state.enabled, hover=state.hover, focus=False)

    def _current_look(self) -> tuple[object, ...]:
        return (
            self.rich_style,
            self.background_colors,
            *(self.get_component_rich_style(name, partial=False) for name in sorted(self.COMPONENT_CLASSES)),
        )

    def notify_style_update(self) -> None:
        Widget.notify_style_update(self)  # the widget's own style caches (cheap)
        try:
            look: tuple[object, ...] | None = self._current_look()
        except KeyError:  # component styles not set up yet (the first styling)
            look = None
        if look is not None and look == self._look:
            clear_styles_cache(self)  # the border may have changed: repaint it, lines come from the cache
            self.refresh()
            return
        self._look = look
        super().notify_style_update()

    def on_mount(self) -> None:
        self._add_columns()

    # -- g / G, unless the screen has its own use for the key (replay: g jumps to a time) -------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("first_row", "last_row") and screen_binds(self.screen, "g" if action == "first_row" else "G"):
            return False  # the key goes on to the screen's binding
        return super().check_action(action, parameters)

    def action_first_row(self) -> None:
        self.action_scroll_top()

    def action_last_row(self) -> None:
        self.action_scroll_bottom()

    def _add_columns(self) -> None:
        for i in self._visible:
            key, label, width = self.COLUMNS[i]
            self.add_column(label, key=key, width=width)

    # -- columns by priority ------------------------------------------------------------------------
    @classmethod
    def fit_columns(cls, width: int) -> tuple[int, ...]:
        """The indexes of the columns that fit in `width` cells, taken in priority order, shown in COLUMNS'
        order. The first column is always shown."""
        keys = [c[0] for c in cls.COLUMNS]
        order = [keys.index(k) for k in cls.PRIORITY] + [i for i in range(len(keys)) if keys[i] not in cls.PRIORITY]
        chosen: set[int] = set()
        used = 0
        for n, i in enumerate(order):
            w = cls.COLUMNS[i][2]
            need = (cls.AUTO_MIN if w is None else w) + 2  # each cell has one cell of padding on either side
            if n == 0 or used + need <= width:
                chosen.add(i)
                used += need
        return tuple(sorted(chosen))

    def on_resize(self, event: Resize) -> None:
        self.refit(event.size.width)

    def refit(self, width: int) -> None:
        """Show the columns that fit `width` (less the vertical scrollbar); rebuilt only when that set changes."""
        if width == self._fitted_width or width <= 0:
            return
        self._fitted_width = width
        visible = self.fit_columns(width - self.styles.scrollbar_size_vertical)
        if visible == self._visible:
            return
        cursor_key = self.highlighted_key
        self._visible = visible
        with self.app.batch_update():
            self.clear(columns=True)
            self._cells.clear()
            self._order = []
            self._add_columns()
            self._sync()
            if cursor_key is not None:
                self.highlight(cursor_key)

    @property
    def visible_columns(self) -> tuple[str, ...]:
        return tuple(self.COLUMNS[i][0] for i in self._visible)

    # -- the filter -------------------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        """Show only the rows whose key or cells contain `text` (case-insensitive); "" shows every row."""
        text = text.strip().lower()
        if text == self.filter_text:
            return
        self.filter_text = text
        self._sync()

    def _matches(self, key: str, cells: Cells) -> bool:
        f = self.filter_text
        return not f or f in key.lower() or any(f in c.text.lower() for c in cells)

    # -- rows ---------------------------------------------------------------------------------------------
    def reconcile(self, rows: Sequence[tuple[str, Cells]]) -> int:
        """Make the table show `rows` (every column's cells, in order; filtered and fitted here); returns how
        many cells changed."""
        self._rows = list(rows)
        return self._sync()

    def _sync(self) -> int:
        """Bring the table in line with the rows, the filter and the visible columns.

        Existing rows are updated cell by cell; rows come and go in place. Only when a new row
        lands between existing ones (rare: a host joins mid-list) is the table rebuilt.
        """
        vis = self._visible
        every = len(vis) == len(self.COLUMNS)
        rows = [(k, c if every else tuple(c[i] for i in vis)) for k, c in self._rows if self._matches(k, c)]
        wanted = [k for k, _ in rows]
        wanted_set = set(wanted)
        kept = [k for k in self._order if k in wanted_set]
        cursor_key = self.highlighted_key
        changed = 0
        with self.app.batch_update():
            if kept + [k for k in wanted if k not in self._cells] != wanted:
                self.clear()
                self._cells.clear()
                for key, cells in rows:
                    self.add_row(*cells, key=key)
                    self._cells[key] = cells
                    changed += len(cells)
            else:
                cols = self.visible_columns
                for key in [k for k in self._order if k not in wanted_set]:
                    self.remove_row(key)
                    del self._cells[key]
                    changed += 1
                for key, cells in rows:
                    old = self._cells.get(key)
                    if old is None:
                        self.add_row(*cells, key=key)
                        changed += len(cells)
                    elif old != cells:
                        for col, a, b in zip(cols, old, cells, strict=True):
                            if a != b:
                                try:
                                    self.update_cell(key, col, b)
                                except CellDoesNotExist:
                                    continue
                                changed += 1
                    self._cells[key] = cells
            self._order = wanted
            if cursor_key is not None and cursor_key in wanted_set and self.highlighted_key != cursor_key:
                self.move_cursor(row=self.get_row_index(cursor_key), animate=False, scroll=False)
        return changed

    @property
    def highlighted_key(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return key.value

    def highlight(self, key: str) -> None:
        if key in self._cells:
            self.move_cursor(row=self.get_row_index(key), animate=False)


# --------------------------------------------------------------------------------------------


class PlanTable(KeyedTable):
    """Every target of every step: its state, its gates, the next one marked ▶."""

    COLUMNS = (("step", "Step", 9), ("target", "Target", 8), ("state", "State", 10), ("gates", "Gates", 7))
    PRIORITY = ("step", "state", "gates", "target")

    class TargetHighlighted(Message):
        """The operator moved to a target (key "pg-5:api", or "pg-2")."""

        def __init__(self, key: str | None) -> None:
            self.key = key
            super().__init__()

    class TargetChosen(Message):
        """The operator pressed Enter on a target."""

        def __init__(self, key: str) -> None:
            self.key = key
            super().__init__()

    def show(self, rows: Sequence[PlanRow]) -> int:
        return self.reconcile([(r.key, _plan_cells(r)) for r in rows])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.TargetHighlighted(event.row_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.TargetChosen(event.row_key.value))


def _plan_cells(r: PlanRow) -> Cells:
    step = styled(f"▶ {r.step}", "bold") if r.is_next else styled(f"  {r.step}", "")
    return (
        step,
        styled(r.target, ""),
        styled(STATE_WORD.get(r.state, r.state), STATE_STYLE.get(r.state)),
        styled(r.gates, GATE_STYLE.get(r.gates)),
    )


class LegsTable(KeyedTable):
    """Leg 1, Leg 2, Redis plaintext and TLS: listener, handshake verdict, TLS vs plaintext connections."""

    COLUMNS = (
        ("leg", "Leg", 19),
        ("listener", "Listener", 16),
        ("handshake", "Hshake", 6),
        ("tls", "TLS", 4),
        ("plain", "Plain", 5),
    )
    PRIORITY = ("leg", "handshake", "plain", "tls", "listener")

    class LegChosen(Message):
        def __init__(self, key: str) -> None:
            self.key = key
            super().__init__()

    def show(self, rows: Sequence[LegRow]) -> int:
        return self.reconcile([(r.key, _leg_cells(r)) for r in rows])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.LegChosen(event.row_key.value))


def _leg_cells(r: LegRow) -> Cells:
    tls_style = "green" if r.tls not in ("0", "-", "?") else ""
    plain_style = "yellow" if r.plain not in ("0", "-", "?") else ""
    return (
        styled(r.label, "bold"),
        styled(r.listener, listener_style(r.listener)),
        verdict_text(r.handshake, r.verdict),
        styled(r.tls, tls_style),
        styled(r.plain, plain_style),
    )


class InstanceTable(KeyedTable):
    """Every app instance: configured → observed for Postgres and Redis, CA file, health, drift."""

    COLUMNS = (
        ("host", "Instance", 18),
        ("service", "Svc", 6),
        ("db", "DB mode → seen", 19),
        ("redis", "Redis → seen", 14),
        ("ca", "CA", 3),
        ("health", "Health", 7),
        ("v", "Chk", 4),
        ("drift", "Drift", None),
    )
    # problems first (Chk sums up CA and health; Drift says configured ≠ observed), the service last: the
    # host's name carries it, and its detail says it
    PRIORITY = ("host", "v", "drift", "db", "redis", "health", "ca", "service")

    class HostChosen(Message):
        def __init__(self, host: str) -> None:
            self.host = host
            super().__init__()

    def show(self, rows: Sequence[InstanceRow]) -> int:
        return self.reconcile([(r.key, _instance_cells(r)) for r in rows])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.HostChosen(event.row_key.value))


def _instance_cells(r: InstanceRow) -> Cells:
    drift_style = "yellow" if r.drift != "-" else "dim"
    health_style = {"ok": "green", "DOWN": "bold red", "UNREACH": "bold red", "STOPPED": "bold red"}.get(
        r.health, "dim"
    )
    return (
        styled(r.key, "bold" if r.reachable is not False else "bold red"),
        styled(r.service, ""),
        styled(r.db, seen_style(r.db, wants_tls=r.db.split(" → ")[0] in ("require", "verify-ca", "verify-full"))),
        styled(r.redis, seen_style(r.redis, wants_tls=r.redis.startswith("true "))),
        styled(r.ca, "bold red" if r.ca == "BAD" else ("dim" if r.ca == "?" else "")),
        styled(r.health, health_style),
        styled(VERDICT_WORD[r.verdict], VERDICT_STYLE[r.verdict]),
        styled(r.drift, drift_style),
    )
