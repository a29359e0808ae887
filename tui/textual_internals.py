"""Every use of a Textual private, and every override of a Textual internal, in one place.

textual is pinned exactly (pyproject.toml); what is here leans on names Textual does not promise to
keep. `PRIVATE_NAMES` lists each of them, and tests/test_tui_textual_internals.py checks that each
exists in the installed Textual and that no other module of tui/ uses one: a Textual bump fails that
test, not the screens at run time.

Scrollbars (`SteadyScrollBar`, `SteadyScrollBars`, `SteadyScrollbars`, `LaidOutOnce`): Textual 8.2.8
asks a widget's scrollbars to repaint far more often than they change:

- `ScrollView._size_updated` compares the layout's viewport size with the widget's own virtual
  (content) size; the two differ whenever there is anything to scroll, so every layout of the
  screen — a tab switch, the side panel growing by a line — repaints the scrollbars of every table
  on screen;
- re-applying styles (focus, a tab shown) sets the scrollbar colours again, same values, and that
  repaints both scrollbars unconditionally;
- arranging a re-shown widget sets its scrollbars' window sizes again.

Each such repaint lands in a screen update of its own, one frame after the change a key asked for:
the pixels stay the same, but the key's effect is only complete a frame later. These mixins drop
the repaints that would paint the same scrollbar again.

The functions below do one private thing each for a widget elsewhere: keep a table's rendered lines
(`clear_styles_cache`), drop an event log's last rows (`drop_last_rows`, `rich_log_size_known`), compare a
footer's keys (`footer_bindings_ready`), move a tab's underline now (`underline_now`), and tell a
screen being torn down (`is_being_pruned`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from textual.css.query import NoMatches
from textual.geometry import Size
from textual.scrollbar import ScrollBar
from textual.widgets import Footer, RichLog, TabbedContent
from textual.widgets._tabs import Tab, Underline

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.scroll_view import ScrollView
    from textual.widget import Widget

    _ScrollViewBase = ScrollView
    _WidgetBase = Widget
else:
    _ScrollViewBase = object
    _WidgetBase = object

# Every Textual private used here: (module:class, name). A class attribute or method, or (with "()") an
# attribute every instance gets in its constructor; a module path alone names a private module and what
# is imported from it.
PRIVATE_NAMES: Final[tuple[tuple[str, str], ...]] = (
    ("textual.widget:Widget", "_size_updated"),  # overridden: SteadyScrollbars, LaidOutOnce
    ("textual.scroll_view:ScrollView", "_size_updated"),  # overridden: SteadyScrollbars
    ("textual.scrollbar:ScrollBar", "_check_refresh"),  # overridden: SteadyScrollBar
    ("textual.app:App", "_start_widget"),  # SteadyScrollBars mounts its own scrollbars
    ("textual.widget:Widget()", "_vertical_scrollbar"),
    ("textual.widget:Widget()", "_horizontal_scrollbar"),
    ("textual.widget:Widget()", "_repaint_required"),
    ("textual.widget:Widget()", "_styles_cache"),
    ("textual.dom:DOMNode()", "_pruning"),
    ("textual.widgets:RichLog()", "_line_cache"),
    ("textual.widgets:RichLog()", "_widest_line_width"),
    ("textual.widgets:RichLog()", "_size_known"),
    ("textual.widgets:Footer", "_bindings_ready"),
    ("textual.widgets._tabs", "Tab"),
    ("textual.widgets._tabs", "Underline"),
)


class SteadyScrollBar(ScrollBar):
    """A scrollbar that skips a repaint when everything it paints from is as it last painted it."""

    _painted: tuple[object, ...] | None = None

    def _paint_inputs(self) -> tuple[object, ...] | None:
        parent = self.parent
        if parent is None:
            return None
        s = parent.styles  # ScrollBar.render reads its colours from the parent
        return (
            self.size,
            self.display,
            self.grabbed,
            self.mouse_over,
            self.window_virtual_size,
            self.window_size,
            self.position,
            self.thickness,
            self.vertical,
            s.scrollbar_background,
            s.scrollbar_color,
            s.scrollbar_background_hover,
            s.scrollbar_color_hover,
            s.scrollbar_background_active,
            s.scrollbar_color_active,
            parent.background_colors,
            self.screen.styles.scrollbar_color.a,
        )

    def render(self):  # type: ignore[no-untyped-def]
        self._painted = self._paint_inputs()
        return super().render()

    def _check_refresh(self) -> None:
        if self._repaint_required and (
            not self.size.area  # hidden (its tab is not shown): nothing to paint; shown again, it is laid out anew
            or (self._painted is not None and self._paint_inputs() == self._painted)
        ):
            self._repaint_required = False
        super()._check_refresh()


class SteadyScrollBars(_WidgetBase):
    """Mixin for any widget: its scrollbars are `SteadyScrollBar`s.

    List it before the widget class. It overrides the two properties that create the scrollbars
    (textual is pinned exactly; an upgrade has to check `Widget.vertical_scrollbar`).
    """

    def _steady_bar(self, vertical: bool) -> SteadyScrollBar:
        bar = SteadyScrollBar(
            vertical=vertical,
            name="vertical" if vertical else "horizontal",
            thickness=self.scrollbar_size_vertical if vertical else self.scrollbar_size_horizontal,
        )
        bar.display = False
        self.app._start_widget(self, bar)
        return bar

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        if self._vertical_scrollbar is None:
            self._vertical_scrollbar = self._steady_bar(vertical=True)
        return self._vertical_scrollbar

    @property
    def horizontal_scrollbar(self) -> ScrollBar:
        if self._horizontal_scrollbar is None:
            self._horizontal_scrollbar = self._steady_bar(vertical=False)
        return self._horizontal_scrollbar


class SteadyScrollbars(SteadyScrollBars, _ScrollViewBase):
    """Mixin for a ScrollView: steady scrollbars, updated only when its size or content size changed.

    List it before the widget class (`class T(SteadyScrollbars, DataTable)`); being no widget itself,
    it leaves the widget's CSS and component classes alone. It overrides a private method: textual
    is pinned exactly, and an upgrade has to check `_size_updated` (the SVG snapshots show scrollbars).
    """

    _sized: tuple[Size, Size, Size] | None = None

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        sized = (size, container_size, self.virtual_size)
        if sized == self._sized:
            return False  # the scrollbars are up to date, and there is no Resize to send
        self._sized = sized
        return super()._size_updated(size, virtual_size, container_size, layout)


class LaidOutOnce(_WidgetBase):
    """Mixin: a layout that changes this widget's virtual size does not ask for another layout.

    `Widget._size_updated` sets the new virtual size through a reactive that lays the screen out
    again, a second layout and frame after the one that measured it. For a widget whose virtual
    size nothing else is laid out from (content in a scroll container, the container itself: the
    layout that measured it already placed everything), that second layout changes nothing.
    """

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        return super()._size_updated(size, virtual_size, container_size, layout=False)


def clear_styles_cache(widget: Widget) -> None:
    """Drop `widget`'s cached border and background lines (its content lines stay cached)."""
    widget._styles_cache.clear()


def rich_log_size_known(log: RichLog) -> bool:
    """Whether `log` knows its width yet (before that, written lines are rendered later)."""
    return log._size_known


def drop_last_rows(log: RichLog, rows: int) -> None:
    """Remove the last `rows` rendered rows of `log` (RichLog has no call for it: its `lines`, its line cache
    and its virtual size, as `RichLog.clear` sets them)."""
    if rows <= 0:
        return
    del log.lines[-rows:]
    log._line_cache.clear()
    log.virtual_size = Size(log._widest_line_width, len(log.lines))
    log.refresh()


def footer_bindings_ready(footer: Footer) -> bool:
    """Whether `footer` has had its first bindings signal (before it, it shows no keys)."""
    return bool(footer._bindings_ready)


def underline_now(tabs: TabbedContent) -> None:
    """Put the tab bar's underline under the active tab in the frame that shows the tab.

    Textual moves it after the next refresh (a frame of its own, a screen update after the key).
    Tabs keep their places when the active one changes, so their regions are already known; when
    Textual moves the underline later it sets the same values, which repaints nothing. Uses
    Textual's private `_tabs` module.
    """
    try:
        underline = tabs.query_one(Underline)
        active = tabs.query_one("#tabs-list > Tab.-active", Tab)
    except NoMatches:
        return
    start, end = active.virtual_region.shrink(active.styles.gutter).column_span
    underline.highlight_start = start
    underline.highlight_end = end


def is_being_pruned(node: DOMNode) -> bool:
    """Whether Textual is tearing `node` down (the app shutting down: its widgets are going)."""
    return node._pruning
