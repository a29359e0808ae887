"""Linear scans over raw TOML text, for what must be known before (or without) `tomllib`: the top-level
`version` statement, nesting too deep to parse, and the key written on a line that does not parse.

None of them ever raises, whatever the text. Part of the one TOML reader (`inventory.toml`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from inventory.tomllines import BASIC, MULTI_END, SPACES, KeyPath, Locator, ScanError, format_key_path

MAX_DEPTH: Final = 16  # tables and arrays inside each other; the inventory and the plan use at most 6


@dataclass(frozen=True, slots=True)
class VersionLine:
    """The top-level `version = ...` statement found by `scan_version`."""

    value: object
    line: int


_VERSION_STATEMENT = re.compile(r"[ \t]*(?:version|\"version\"|'version')[ \t]*=[ \t]*([^\r\n]*)")
_UNREAD: Final = object()


def scan_version(text: str) -> VersionLine | None:
    """The top-level `version = <value>` statement, read without parsing the rest of the text: the
    statements before the first table header (multi-line strings skipped), with the value parsed on
    its own. None when there is no such statement or its value cannot be read."""
    lexer = Lexer(text)
    for pos in lexer.statement_starts():
        m = _VERSION_STATEMENT.match(text, pos)
        if m is None:
            continue
        value = _scalar(m.group(1))
        if value is _UNREAD:
            return None
        return VersionLine(value, text.count("\n", 0, pos) + 1)
    return None


_LEADING_SCALAR = re.compile(r"""[+-]?[0-9][0-9_]*(?![0-9A-Za-z_.:-])|"[^"\\\n]*"|'[^'\n]*'""")


def _scalar(written: str) -> object:
    """A value written on one line (a trailing comment or garbage allowed after a plain integer or
    string), or _UNREAD."""
    lead = _LEADING_SCALAR.match(written)
    for candidate in (written, written.split("#", 1)[0], lead.group() if lead else ""):
        try:
            return tomllib.loads(f"v = {candidate}")["v"]
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            continue
    return _UNREAD


_LEXEME = re.compile(r"\"\"\"|'''|[\"'#\[\]{}\n.=,]")
_LITERAL = re.compile(r"[^'\n]*'")


class Lexer:
    """A linear scan over TOML text that skips strings and comments: the bracket depth at every
    point, and where top-level statements start. It never raises, whatever the text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def events(self) -> Iterator[tuple[str, int]]:
        """(one of `[ ] { } . = ,` or a newline, position) outside strings and comments."""
        t = self.text
        pos = 0
        n = len(t)
        while pos < n:
            m = _LEXEME.search(t, pos)
            if m is None:
                return
            tok, start = m.group(), m.start()
            pos = m.end()
            if tok in MULTI_END:
                end = MULTI_END[tok].match(t, pos)
                if end is None:
                    return  # an unterminated multi-line string runs to the end
                pos = end.end()
                extra = 0
                while extra < 2 and pos < n and t[pos] == tok[0]:
                    pos += 1
                    extra += 1
            elif tok in {'"', "'"}:
                end = (BASIC if tok == '"' else _LITERAL).match(t, pos)
                pos = end.end() if end is not None else pos  # unterminated: on to the newline
            elif tok == "#":
                nl = t.find("\n", pos)
                pos = n if nl < 0 else nl
            else:
                yield tok, start

    def statement_starts(self) -> Iterator[int]:
        """The starts of the lines outside brackets and strings, up to the first table header."""
        depth = 0
        if self._header_at(0):
            return
        yield 0
        for tok, pos in self.events():
            if tok == "\n":
                if depth == 0:
                    if self._header_at(pos + 1):
                        return
                    yield pos + 1
            elif tok in "[{":
                depth += 1
            elif tok in "]}":
                depth = max(depth - 1, 0)

    def _header_at(self, line_start: int) -> bool:
        m = SPACES.match(self.text, line_start)
        return self.text.startswith("[", m.end() if m else line_start)


def deep_bracket_line(text: str) -> int | None:
    """The line where the text first nests deeper than MAX_DEPTH — brackets inside each other, or a
    dotted key of more parts (`tomllib` is quadratic in those) — or None. Linear, never raises."""
    stack: list[str] = []  # "h": a table header's brackets; "[": an array; "{": an inline table
    in_key = True  # in a key: at a statement's start, after "{" or "," in an inline table, in a header
    dots = 0
    for tok, pos in Lexer(text).events():
        if tok == "\n":
            if not stack or stack[-1] == "h":
                stack.clear()
                in_key, dots = True, 0
        elif tok == ".":
            if in_key:
                dots += 1
                if dots >= MAX_DEPTH:
                    return text.count("\n", 0, pos) + 1
        elif tok == "=":
            in_key = False
        elif tok == ",":
            if stack and stack[-1] == "{":
                in_key, dots = True, 0
        elif tok == "[" and in_key and (not stack or stack[-1] == "h") and dots == 0:
            stack.append("h")  # [table] or [[array of tables]]
        elif tok in "[{":
            stack.append(tok)
            in_key, dots = tok == "{", 0
            if len(stack) > MAX_DEPTH:
                return text.count("\n", 0, pos) + 1
        elif stack:  # "]" or "}"
            closed = stack.pop()
            in_key = closed == "h" and bool(stack)  # "[[a]" : still in the header
    return None


def deep_path(data: Mapping[str, Any]) -> KeyPath | None:
    """The first key path longer than MAX_DEPTH in parsed data (tables from headers and dotted keys
    nest without brackets), or None. Iterative, and no path grows past MAX_DEPTH + 1."""
    stack: list[tuple[KeyPath, object]] = [((), data)]
    while stack:
        path, value = stack.pop()
        items: Iterator[tuple[str | int, object]]
        if isinstance(value, dict):
            items = iter(value.items())
        elif isinstance(value, list):
            items = iter(enumerate(value))
        else:
            continue
        if len(path) == MAX_DEPTH:
            first = next(items, None)
            if first is not None:
                return (*path, first[0])
            continue
        stack.extend(((*path, k), v) for k, v in items)
    return None


_HEADER_LINE = re.compile(r"\s*(\[\[?)(.*?)\]\]?\s*(#.*)?\Z")
_KEY_LINE = re.compile(r"\s*([^=#\[\s][^=#]*?)\s*=")
_GUESS_MAX: Final = 1000  # characters of a line searched for a key (the guess is best effort)


def guess_key_at(text: str, lineno: int) -> str:
    """Best effort for text that does not parse: the table in force at `lineno` and the key written
    on it."""
    lines = text.splitlines()
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    for raw in lines[: max(lineno - 1, 0)]:
        if len(raw) > _GUESS_MAX or not raw.lstrip().startswith("["):
            continue
        m = _HEADER_LINE.match(raw)
        if not m:
            continue
        keys = _split_key(m.group(2))
        if keys is None:
            continue
        if m.group(1) == "[[":
            counts[keys] = counts.get(keys, -1) + 1
            table = (*keys, counts[keys])
        else:
            table = keys
    key: KeyPath = table
    if 0 < lineno <= len(lines):
        line = lines[lineno - 1]
        m = _HEADER_LINE.match(line) if len(line) <= _GUESS_MAX else None
        km = _KEY_LINE.match(line[:_GUESS_MAX])
        if m:
            keys = _split_key(m.group(2))
            key = keys if keys is not None else ()
        elif km:
            keys = _split_key(km.group(1))
            if keys is not None:
                key = table + keys
    return format_key_path(key)


def _split_key(text: str) -> tuple[str, ...] | None:
    if len(text) > 1000:
        return None
    try:
        loc = Locator(text, scan=False)
        keys, pos = loc.keys(0)
        return keys if loc.skip_spaces(pos) == len(text) else None
    except (ScanError, IndexError, ValueError, RecursionError):
        return None
