"""Line-API scrolling widgets (DataTable, RichLog) that skip repainting their scrollbars after a
layout that changed nothing about them.

Textual 8.2.8's `ScrollView._size_updated` compares the layout's viewport size with the widget's own
virtual (content) size; the two differ whenever there is anything to scroll, so every layout of the
screen — a tab switch, a focus border, the side panel growing by a line — repaints the scrollbars of
every table on screen, one frame after the layout. The pixels stay the same, but that frame comes
after the change a key asked for, and adds a frame's time to every such key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.geometry import Size

if TYPE_CHECKING:
    from textual.scroll_view import ScrollView

    _Base = ScrollView
else:
    _Base = object


class SteadyScrollbars(_Base):
    """Mixin for a ScrollView: update the scrollbars only when its size or content size changed.

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
