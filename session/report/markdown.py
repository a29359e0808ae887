"""Recorded text as the report's Markdown: escaped, control characters made visible; times and durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from session.printable import printable

_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>#+!|~&$])")


def md(text: object) -> str:
    """Recorded text as inert Markdown: control characters made visible, newlines as ⏎, every character
    Markdown could read as formatting escaped."""
    s = printable(str(text), newlines=False).replace("\\n", " ⏎ ")
    return _MD_SPECIAL.sub(r"\\\1", s).strip()


def when(ts: float) -> str:
    """2026-01-31 08:00:00Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: float) -> str:
    """2m05s, 1h02m03s."""
    s = int(max(0, seconds))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def target_text(step: str, service: str | None) -> str:
    """ "pg-5 api", "pg-2"."""
    return f"{step} {service}".strip() if service else step
