"""Detail on demand (a scrollable page; Escape closes it) and problems (a failure shown until it is read)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from session.redact import Redactor
from tui.widgets.header import SizeNotice

_REDACT = Redactor()


class DetailScreen(ModalScreen[None]):
    """A scrollable page of detail; Escape closes it. The title is Rich Text (brackets shown as they are)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss_detail", "Close", id="close-detail"),
    ]

    def __init__(self, title: str | Text, body: Text) -> None:
        super().__init__()
        self._title = title if isinstance(title, Text) else Text(title)
        self._body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box"):
            yield Static(self._title, id="detail-title")
            yield SizeNotice("", classes="size-notice")
            with VerticalScroll(id="detail-scroll"):
                yield Static(self._body, id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()

    def on_resize(self, event: Resize) -> None:
        self.query_one(SizeNotice).check(event.size.width, event.size.height)

    def action_dismiss_detail(self) -> None:
        self.dismiss(None)


class ProblemScreen(ModalScreen[None]):
    """A failure, shown until it is read: what failed, the error, what to do. Enter, Escape or q closes it.

    Every failure of an action (a refused lock, an engine error, a crash) lands here, where the operator is
    looking, and not only in a toast that fades or in Textual's log."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss_problem", "Close", id="close-problem"),
    ]
    AUTO_FOCUS = "#problem-ok"

    def __init__(self, title: Text, body: Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="problem-box"):
            yield Static(self.title_text, id="problem-title")
            yield SizeNotice("", classes="size-notice")
            with VerticalScroll(id="problem-scroll"):
                yield Static(self.body, id="problem-body")
            with Horizontal(id="problem-buttons"):
                yield Button("Close (read)", id="problem-ok", variant="primary")

    def on_resize(self, event: Resize) -> None:
        self.query_one(SizeNotice).check(event.size.width, event.size.height)

    @on(Button.Pressed, "#problem-ok")
    def _ok(self) -> None:
        self.dismiss(None)

    def action_dismiss_problem(self) -> None:
        self.dismiss(None)


def problem_text(what: str, error: str, todo: str = "") -> Text:
    """A problem's body: what was being done, the error (redacted), what to do about it."""
    t = Text()
    t.append(f"{what}\n\n", style="bold")
    t.append(_REDACT.text(error) + "\n", style="bold red")
    if todo:
        t.append(f"\n{todo}\n")
    t.append("\nIt is in the event log and in the session's recording.", style="dim")
    return t
