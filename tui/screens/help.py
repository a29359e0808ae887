"""The help screen: every key of the current mode, from the same binding tables the app runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

KeyRow = tuple[str, str, str]  # (keys, what, binding id)


def help_text(mode: str, sections: Sequence[tuple[str, Sequence[KeyRow]]]) -> Text:
    t = Text()
    t.append(f"Mode {mode.upper()}", style="bold")
    if mode == "watch":
        t.append(" — read-only: this session has no write action at all (no engine, no config store).\n", style="dim")
    elif mode == "replay":
        t.append(" — a recording: nothing here touches the fleet.\n", style="dim")
    else:
        t.append(" — actions change the fleet; each needs a preview, a reason and a confirmation.\n", style="dim")
    for title, rows in sections:
        if not rows:
            continue
        t.append(f"\n{title}\n", style="bold underline")
        for keys, what, bid in rows:
            t.append(f"  {keys:<14}", style="bold")
            t.append(f"{what}")
            t.append(f"  ({bid})\n" if bid else "\n", style="dim")
    t.append("\nThe command palette (ctrl+p) lists the same actions; type to filter.\n", style="dim")
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", id="close-help")]

    def __init__(self, body: Text, *, title: Text | None = None) -> None:
        super().__init__()
        self._body = body
        self._title = title or Text("Keys and actions")

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(self._title, id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(self._body, id="help-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
