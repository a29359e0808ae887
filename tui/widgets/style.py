"""Rich styles for table cells and log lines.

DataTable cells cannot take TCSS classes, so cell colours are Rich styles here; every cell also
carries its meaning in words ("FAILED", "WARN"), so nothing depends on colour (NO_COLOR).
"""

from __future__ import annotations

from typing import Final

from rich.text import Text

from probes.model import Verdict

STATE_STYLE: Final = {
    "verified": "green", "live": "cyan", "configured": "yellow", "pending": "", "failed": "bold red",
    "unknown": "magenta",
}
GATE_STYLE: Final = {"open": "green", "closed": "bold red", "unknown": "magenta", "-": "dim"}
VERDICT_STYLE: Final = {
    Verdict.OK: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red", Verdict.ERROR: "magenta",
}
LEVEL_STYLE: Final = {"info": "", "ok": "green", "warn": "yellow", "error": "bold red", "action": "bold cyan"}
GATE_MARK: Final = {"open": "✔", "closed": "✘", "unknown": "?"}


def styled(text: str, style: str | None) -> Text:
    return Text(text, style=style or "", no_wrap=True, overflow="ellipsis")


def verdict_text(word: str, verdict: Verdict | None) -> Text:
    return styled(word, VERDICT_STYLE.get(verdict, "dim") if verdict is not None else "dim")
