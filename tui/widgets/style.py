"""Rich styles for table cells and log lines.

DataTable cells cannot take TCSS classes, so cell colours are Rich styles here; every cell also
carries its meaning in words ("FAILED", "WARN"), so nothing depends on colour (NO_COLOR).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions
from rich.control import strip_control_codes
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from probes.model import Verdict

STATE_STYLE: Final = {
    "verified": "green",
    "live": "cyan",
    "configured": "yellow",
    "pending": "",
    "failed": "bold red",
    "unknown": "magenta",
}
GATE_STYLE: Final = {"open": "green", "closed": "bold red", "unknown": "magenta", "-": "dim"}
VERDICT_STYLE: Final = {
    Verdict.OK: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "bold red",
    Verdict.ERROR: "magenta",
}
LEVEL_STYLE: Final = {"info": "", "ok": "green", "warn": "yellow", "error": "bold red", "action": "bold cyan"}
GATE_MARK: Final = {"open": "✔", "closed": "✘", "unknown": "?"}


class Cell:
    """One table cell: a line of text in one style, cut with an ellipsis when it is too wide.

    It renders what `Text(text, style=style, no_wrap=True, overflow="ellipsis")` renders (control
    codes stripped the same way), at about a third of the cost: a table repaints every visible cell
    when it gains or loses focus (both tables on screen: ~180 cells) and when a cell changes.
    Like `Text`, `str()` is the text; `==` compares text and style, so a cell whose colour alone
    changed (a state word that keeps its text) is repainted too.
    """

    __slots__ = ("style", "text")

    def __init__(self, text: str, style: str = "") -> None:
        self.text = strip_control_codes(text)
        self.style = style

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell({self.text!r}, {self.style!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and self.text == other.text and self.style == other.style

    def __hash__(self) -> int:
        return hash((self.text, self.style))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        style = console.get_style(self.style, default=Style.null()) if self.style else None
        width = options.max_width
        for n, line in enumerate(self.text.split("\n")):
            if n:
                yield Segment.line()
            if "\t" in line:
                line = line.expandtabs(console.tab_size)
            if cell_len(line) > width:
                line = set_cell_size(line, width - 1) + "…"
            yield Segment(line, style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lines = self.text.splitlines()  # as `Text.__rich_measure__` (tabs not expanded)
        width = max(cell_len(line) for line in lines) if lines else 0
        return Measurement(width, width)


def styled(text: str, style: str | None) -> Cell:
    return Cell(text, style or "")


def verdict_text(word: str, verdict: Verdict | None) -> Cell:
    return styled(word, VERDICT_STYLE.get(verdict, "dim") if verdict is not None else "dim")


def seen_style(text: str, *, wants_tls: bool) -> str:
    """ "verify-full → TLS" green, "… → plain" yellow (bold when the instance is configured for TLS: drift),
    "… → ?" dim: TLS and plaintext differ by colour as well as by word."""
    seen = text.rsplit("→", 1)[-1].strip()
    if seen == "TLS":
        return "green"
    if seen == "plain":
        return "bold yellow" if wants_tls else "yellow"
    return "dim"


def listener_style(text: str) -> str:
    """A listener's mode: TLS-only modes green, plaintext-only ones yellow, could-not-measure dim."""
    t = text.lower()
    if t in ("?", "-"):
        return "dim"
    if t in ("require", "verify-ca", "verify-full", "hostssl", "dropped") or t.startswith("ssl on·verify"):
        return "green"
    if t in ("disable", "host") or t.startswith("ssl off"):
        return "yellow"
    return ""


def modal_title(env: str, text: str, *, protected: bool = False) -> Text:
    """A dialog's title, the environment first: "[staging] ADVANCE pg-5 for api — …". Rich Text, so the
    brackets are shown, never read as markup (a name like "[staging]" would vanish as a tag)."""
    t = Text()
    t.append(f"[{env}]" if not protected else f"▲ [{env}] PROTECTED ▲", style="bold reverse" if protected else "bold")
    t.append(f" {text}")
    return t
