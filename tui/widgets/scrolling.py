"""Scrolling widgets (DataTable, RichLog, scroll containers) whose scrollbars repaint only when
something about them changed.

Textual 8.2.8 asks a widget's scrollbars to repaint far more often than they change:

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.scrollbar import ScrollBar

if TYPE_CHECKING:
    from textual.scroll_view import ScrollView
    from textual.widget import Widget

    _ScrollViewBase = ScrollView
    _WidgetBase = Widget
else:
    _ScrollViewBase = object
    _WidgetBase = object


class SteadyScrollBar(ScrollBar):
    """A scrollbar that skips a repaint when everything it paints from is as it last painted it."""

    _painted: tuple[object, ...] | None = None

    def _paint_inputs(self) -> tuple[object, ...] | None:
        parent = self.parent
        if parent is None:
            return None
        s = parent.styles  # ScrollBar.render reads its colours from the parent
        return (self.size, self.display, self.grabbed, self.mouse_over, self.window_virtual_size, self.window_size,
                self.position, self.thickness, self.vertical, s.scrollbar_background, s.scrollbar_color,
                s.scrollbar_background_hover, s.scrollbar_color_hover, s.scrollbar_background_active,
                s.scrollbar_color_active, parent.background_colors, self.screen.styles.scrollbar_color.a)

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
        bar = SteadyScrollBar(vertical=vertical, name="vertical" if vertical else "horizontal",
                              thickness=self.scrollbar_size_vertical if vertical else self.scrollbar_size_horizontal)
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


class SteadyVerticalScroll(LaidOutOnce, SteadyScrollBars, VerticalScroll):
    """A VerticalScroll with steady scrollbars, laid out once per change (the side panel's step detail)."""
