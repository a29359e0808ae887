"""Key paths and the lines they are written on: `tomllib` reports no line for a key, so `Locator` finds
them in the text (tables, arrays of tables with their index, dotted keys, inline tables and arrays).

Part of the one TOML reader (`inventory.toml`); the scans over raw text live in `inventory.tomlscan`.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from typing import Final

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
# strings, shared with the scans in inventory.tomlscan
MULTI_END: Final = {'"""': re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*"""'), "'''": re.compile(r"[\s\S]*?'''")}
BASIC = re.compile(r'(?:[^"\\\n]|\\.)*"')
SPACES = re.compile(r"[ \t]*")


def format_key_path(path: KeyPath) -> str:
    """("environments", "staging", "hosts", 0, "port") -> 'environments.staging.hosts[0].port'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


class ScanError(Exception):
    pass


_ESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}
_BLANK = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_PLAIN_VALUE = re.compile(r"[^,\]}\r\n#]*")


class Locator:
    """Maps key paths to the 1-based line where they are written (tables, arrays of tables with their
    index, dotted keys, inline tables and arrays). Runs on text that `tomllib` accepted; stops quietly
    at anything it does not understand (what it found so far stays). Linear in the text."""

    def __init__(self, text: str, *, scan: bool = True) -> None:
        self.text = text
        self.n = len(text)
        self.lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        self._newlines = [m.start() for m in re.finditer("\n", text)] if scan else []
        if scan:
            try:
                self._scan()
            except (ScanError, IndexError, ValueError, RecursionError):
                pass

    def line_of(self, path: KeyPath) -> int:
        """The key's line; else the nearest enclosing table's; else 1."""
        found = self.find_line(path)
        return 1 if found is None else found

    def find_line(self, path: KeyPath) -> int | None:
        """The key's line; else the nearest enclosing table's; else None."""
        p = path
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    def line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    # -- scanning ------------------------------------------------------------------------------
    def _mark(self, path: KeyPath, line: int, *, force: bool = False) -> None:
        for i in range(1, len(path) + 1):
            self.lines.setdefault(path[:i], line)
        if force:
            self.lines[path] = line

    def _resolve(self, keys: tuple[str, ...]) -> KeyPath:
        """A header's path, with the current index of each array of tables it passes through."""
        out: KeyPath = ()
        for i, k in enumerate(keys):
            out = (*out, k)
            if i < len(keys) - 1 and out in self._arrays:
                out = (*out, self._arrays[out])
        return out

    def _scan(self) -> None:
        t = self.text
        table: KeyPath = ()
        pos = 0
        while True:
            pos = self.skip_blank(pos)
            if pos >= self.n:
                return
            line = self.line_at(pos)
            if t.startswith("[[", pos):
                keys, pos = self.keys(pos + 2)
                pos = self.expect(pos, "]]")
                path = self._resolve(keys)
                index = self._arrays.get(path, -1) + 1
                self._arrays[path] = index
                table = (*path, index)
                self._mark(table, line, force=True)
            elif t[pos] == "[":
                keys, pos = self.keys(pos + 1)
                pos = self.expect(pos, "]")
                table = self._resolve(keys)
                self._mark(table, line, force=True)
            else:
                keys, pos = self.keys(pos)
                pos = self.expect(pos, "=")
                path = table + keys
                self._mark(path, line)
                pos = self._value(path, self.skip_spaces(pos))

    def skip_spaces(self, pos: int) -> int:
        m = SPACES.match(self.text, pos)
        return m.end() if m else pos

    def skip_blank(self, pos: int) -> int:
        """Spaces, newlines and comments."""
        m = _BLANK.match(self.text, pos)
        return m.end() if m else pos

    def expect(self, pos: int, token: str) -> int:
        pos = self.skip_spaces(pos)
        if not self.text.startswith(token, pos):
            raise ScanError(f"expected {token!r} at {pos}")
        return pos + len(token)

    def keys(self, pos: int) -> tuple[tuple[str, ...], int]:
        """A dotted key starting at `pos` (spaces allowed around parts and dots)."""
        t = self.text
        out: list[str] = []
        while True:
            pos = self.skip_spaces(pos)
            c = t[pos]
            if c == '"':
                key, pos = self._basic_string(pos)
            elif c == "'":
                end = t.index("'", pos + 1)
                key, pos = t[pos + 1 : end], end + 1
            else:
                m = _BARE.match(t, pos)
                if m is None:
                    raise ScanError(f"no key at {pos}")
                key, pos = m.group(), m.end()
            out.append(key)
            pos = self.skip_spaces(pos)
            if pos < self.n and t[pos] == ".":
                pos += 1
                continue
            return tuple(out), pos

    def _basic_string(self, pos: int) -> tuple[str, int]:
        t = self.text
        pos += 1
        out: list[str] = []
        while True:
            c = t[pos]
            if c == '"':
                return "".join(out), pos + 1
            if c == "\\":
                e = t[pos + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    pos += 2
                elif e == "u":
                    out.append(chr(int(t[pos + 2 : pos + 6], 16)))
                    pos += 6
                elif e == "U":
                    out.append(chr(int(t[pos + 2 : pos + 10], 16)))
                    pos += 10
                elif e == "x":
                    out.append(chr(int(t[pos + 2 : pos + 4], 16)))
                    pos += 4
                else:
                    raise ScanError(f"bad escape at {pos}")
            elif c == "\n":
                raise ScanError(f"newline in string at {pos}")
            else:
                out.append(c)
                pos += 1

    def _value(self, path: KeyPath, pos: int) -> int:
        t = self.text
        if t.startswith('"""', pos) or t.startswith("'''", pos):
            quote = t[pos : pos + 3]
            end = MULTI_END[quote].match(t, pos + 3)
            if end is None:
                raise ScanError(f"unterminated string at {pos}")
            pos = end.end()
            extra = 0
            while extra < 2 and pos < self.n and t[pos] == quote[0]:
                pos += 1
                extra += 1
            return pos
        c = t[pos]
        if c == '"':
            m = BASIC.match(t, pos + 1)
            if m is None:
                raise ScanError(f"unterminated string at {pos}")
            return m.end()
        if c == "'":
            return t.index("'", pos + 1) + 1
        if c == "[":
            pos += 1
            index = 0
            while True:
                pos = self.skip_blank(pos)
                if t[pos] == "]":
                    return pos + 1
                element = (*path, index)
                self._mark(element, self.line_at(pos))
                pos = self._value(element, pos)
                index += 1
                pos = self.skip_blank(pos)
                if t[pos] == ",":
                    pos += 1
                elif t[pos] != "]":
                    raise ScanError(f"bad array at {pos}")
        if c == "{":
            pos += 1
            while True:
                pos = self.skip_blank(pos)
                if t[pos] == "}":
                    return pos + 1
                line = self.line_at(pos)
                keys, pos = self.keys(pos)
                pos = self.expect(pos, "=")
                sub = path + keys
                self._mark(sub, line)
                pos = self._value(sub, self.skip_blank(pos))
                pos = self.skip_blank(pos)
                if t[pos] == ",":
                    pos += 1
                elif t[pos] != "}":
                    raise ScanError(f"bad inline table at {pos}")
        m = _PLAIN_VALUE.match(t, pos)
        if m is None or m.end() == pos:
            raise ScanError(f"no value at {pos}")
        return m.end()


def iter_key_lines(text: str) -> Iterator[tuple[str, int]]:
    """Every key path the locator finds in `text`, with its line (for tests and debugging)."""
    loc = Locator(text)
    for path, line in loc.lines.items():
        yield format_key_path(path), line
