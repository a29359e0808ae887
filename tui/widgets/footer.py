"""The key footer, recomposed only when the keys it shows change.

Textual's `Footer` removes and re-mounts all its keys on every bindings signal, and a focus change
sends one even when the shown keys stay the same (moving between tables here): that costs three
layout passes of the whole screen per key press. This footer compares what it would show first.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from tui.textual_internals import footer_bindings_ready


class CockpitFooter(Footer):
    """A `Footer` that skips recomposing when the shown keys are unchanged."""

    _shown: tuple[Hashable, ...] | None = None

    def _signature(self) -> tuple[Hashable, ...]:
        """Everything `Footer.compose` reads to build its keys."""
        app = self.app
        active = self.screen.active_bindings
        shown = tuple(
            (b.key, app.get_key_display(b), b.description, b.action, enabled, tooltip, b.group, b.tooltip)
            for _, b, enabled, tooltip in active.values()
            if b.show
        )
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            entry = active.get(app.COMMAND_PALETTE_BINDING)
            if entry is not None:
                _, b, enabled, _ = entry
                palette = (b.key, app.get_key_display(b), b.description, b.action, enabled, b.tooltip)
        return (shown, palette, self.compact)

    def compose(self) -> ComposeResult:
        self._shown = self._signature() if footer_bindings_ready(self) else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[object]) -> None:
        if self._shown is not None and self.is_attached and screen is self.screen and self._signature() == self._shown:
            return
        super().bindings_changed(screen)
