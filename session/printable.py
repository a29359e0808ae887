"""Recorded strings made safe to print: control characters and escape sequences shown, never obeyed.

A recording holds what hosts printed (update.sh output), what operators typed (`who`, reasons) and
what a damaged file contains. Any of it can carry ESC sequences, carriage returns or bidi overrides
that would move the cursor, recolour or rewrite a terminal. Every recorded string that reaches a
terminal (the replay and follow screens, `cockpit replay` messages) or a report goes through
`printable` first. No textual here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

# C0 controls but tab and newline, DEL, C1 controls, and the invisible format characters that
# reorder or hide text (zero-width, bidi embeddings/overrides/isolates, BOM).
_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMES: Final = {"\x1b": "\\e", "\r": "\\r", "\x00": "\\0", "\x07": "\\a", "\x08": "\\b", "\x0c": "\\f", "\x0b": "\\v"}


def _shown(m: re.Match[str]) -> str:
    c = m.group(0)
    name = _NAMES.get(c)
    if name is not None:
        return name
    n = ord(c)
    return f"\\x{n:02x}" if n <= 0xFF else f"\\u{n:04x}"


def printable(text: str, *, newlines: bool = True) -> str:
    """`text` with every control or invisible formatting character written out (ESC as `\\e`, CR as
    `\\r`, others as `\\xNN` / `\\uNNNN`); newlines kept unless `newlines=False` (then `\\n`)."""
    out = _UNSAFE.sub(_shown, text)
    if not newlines:
        out = out.replace("\n", "\\n")
    return out


def has_unsafe(text: str) -> bool:
    """Whether `text` holds a character `printable` would rewrite (tab and newline are safe)."""
    return _UNSAFE.search(text) is not None


def printable_json(obj: Any) -> Any:
    """A copy of a JSON-like value with `printable` applied to every string, keys included."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, Mapping):
        return {printable(str(k)): printable_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [printable_json(v) for v in obj]
    return obj
