"""Scroll containers whose scrollbars repaint only when something about them changed (the mixins, and why,
are in tui/textual_internals.py)."""

from __future__ import annotations

from textual.containers import VerticalScroll

from tui.textual_internals import LaidOutOnce, SteadyScrollBars


class SteadyVerticalScroll(LaidOutOnce, SteadyScrollBars, VerticalScroll):
    """A VerticalScroll with steady scrollbars, laid out once per change (the side panel's step detail)."""
