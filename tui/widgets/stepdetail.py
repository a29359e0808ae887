"""The side panel's step detail: the highlighted step's gates and reasons."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.textual_internals import LaidOutOnce


class StepDetail(LaidOutOnce, Static):
    """The highlighted step's gates and reasons (fixed width: the side panel's)."""

    def show(self, text: Text) -> None:
        """Show `text`; the screen is laid out again only when the number of lines changes.

        `Static.update` lays the whole screen out by default, and a layout costs two frames (the
        tables' scrollbars are repainted after every layout). Same height: a repaint is enough.
        """
        self.update(text, layout=False)
        width, height = self.size
        if not width or self.get_content_height(self.size, self.size, width) != height:
            self.refresh(layout=True)
