"""The one TOML reader behind the cockpit's files (the inventory and the plan): bounded, version first,
and every problem located as `source:line: key.path: what is wrong and what to do`.

`parse_text` / `parse_bytes` refuse, in this order and before anything else reads the data:

1. an unsupported `version` — found by a cheap scan of the top-level statements, so a newer file is
   refused as such even when the rest is garbage, does not parse, or is too large;
2. a file over `MAX_BYTES` (1 MiB): no hand-written inventory or plan comes near it;
3. TOML nested deeper than `MAX_DEPTH` (16) levels of tables and arrays — found by a linear scan of the
   brackets before `tomllib` runs, which would otherwise die in a RecursionError;
4. TOML syntax errors, with the line, the column and the key written there.

`Table` gives typed getters over one parsed table (unknown keys refused up front, with a did-you-mean),
and `Locator` maps key paths to the lines they are written on: `tomllib` reports no line for a key.
Each loader keeps its own wording (`Wording`) and its own error class; a `TomlError` from here is
turned into that class with its source, line, key and problem unchanged.
"""

from __future__ import annotations

import bisect
import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, Self, TypeVar

MAX_BYTES: Final = 1 << 20  # 1 MiB
MAX_DEPTH: Final = 16  # tables and arrays inside each other; the inventory and the plan use at most 6

KeyPath = tuple[str | int, ...]
_S = TypeVar("_S", bound=str)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_SHOW_MAX = 120  # characters of a value shown in a message


# --------------------------------------------------------------------------------------------
# errors and the words they use


class TomlError(Exception):
    """A problem with a TOML file: `source:line: key.path: problem` (line and key when known)."""

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


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


def show(value: object) -> str:
    """A TOML-ish rendering of a parsed value for "got ..." phrases; long strings are cut."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > _SHOW_MAX:
            return json.dumps(value[:_SHOW_MAX], ensure_ascii=False)[:-1] + f'…" ({len(value)} characters)'
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _SHOW_MAX else f"a number of {len(text)} digits"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__} ({value})"


def quoted_list(names: Sequence[str]) -> str:
    """'"a", "b"' — or "(none)"."""
    return ", ".join(json.dumps(n, ensure_ascii=False) for n in names) if names else "(none)"


def one_of(choices: Sequence[str]) -> str:
    """'"a"', '"a" or "b"', '"a", "b" or "c"'."""
    quoted = [json.dumps(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def did_you_mean(word: object, choices: Sequence[str]) -> str | None:
    """The choice nearest to `word`, when one is near enough to suggest."""
    if not isinstance(word, str) or not choices or len(word) > 200:
        return None
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return near[0] if near else None


# --------------------------------------------------------------------------------------------
# reading: size, version, nesting, syntax


@dataclass(frozen=True, slots=True)
class Versions:
    """What a loader accepts as its top-level `version`, and how it words a refusal."""

    supported: tuple[int, ...]
    problem: Callable[[object], str]  # the message for an unsupported value (shown with show())

    def accepts(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value in self.supported


@dataclass(frozen=True, slots=True)
class VersionLine:
    """The top-level `version = ...` statement found by `scan_version`."""

    value: object
    line: int


def read_file(path: Path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """At most `max_bytes + 1` bytes of `path` (one more than allowed tells that it is too large).
    Raises OSError."""
    with path.open("rb") as f:
        return f.read(max_bytes + 1)


def parse_bytes(
    data: bytes, source: str, *, what: str, versions: Versions, max_bytes: int = MAX_BYTES
) -> Document:
    """Decode (UTF-8) and parse a file's bytes; see `parse_text`."""
    if len(data) > max_bytes:
        _check_version(data[:max_bytes].decode("utf-8", "replace"), source, versions)
        raise _too_large(source, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        _check_version(data.decode("utf-8", "replace"), source, versions)
        line = data.count(b"\n", 0, e.start) + 1
        raise TomlError(source, line, "", "the file is not valid UTF-8; save it as UTF-8") from None
    return parse_text(text, source, what=what, versions=versions, max_bytes=max_bytes)


def parse_text(text: str, source: str, *, what: str, versions: Versions, max_bytes: int = MAX_BYTES) -> Document:
    """Parse `text` into a `Document`, refusing (as `TomlError`) an unsupported version, a text over
    `max_bytes`, nesting deeper than `MAX_DEPTH` and TOML syntax errors — in that order. `what`
    ("an inventory", "a plan") names the file in messages. The document's own `version` key is left to the
    loader (missing, or a value the scan could not read)."""
    _check_version(text[: max_bytes + 1], source, versions)
    if _too_many_bytes(text, max_bytes):
        raise _too_large(source, what, max_bytes)
    deep = _deep_bracket_line(text)
    if deep is not None:
        raise _too_deep(source, what, deep, _guess_key_at(text, deep))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(text, source, e) from None
    except ValueError:  # Python refuses integers of more than 4300 digits (int_max_str_digits)
        m = _HUGE_INTEGER.search(text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        key = _guess_key_at(text, line) if line else ""
        raise TomlError(source, line, key, "an integer of more than 4300 digits; write a smaller number") from None
    except RecursionError:  # the scan above should have caught it; never let it escape
        raise _too_deep(source, what, None, "") from None
    doc = Document(text, source, data)
    too_deep = _deep_path(data)
    if too_deep is not None:
        raise _too_deep(source, what, doc.line_of(too_deep), format_key_path(too_deep[:MAX_DEPTH + 1]))
    return doc


_HUGE_INTEGER = re.compile(r"[0-9_]{4301,}")


def _too_many_bytes(text: str, max_bytes: int) -> bool:
    if len(text) > max_bytes:
        return True
    if len(text) * 4 <= max_bytes:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > max_bytes


def _too_large(source: str, what: str, max_bytes: int) -> TomlError:
    limit = f"{max_bytes // (1 << 20)} MiB" if max_bytes % (1 << 20) == 0 else f"{max_bytes} bytes"
    return TomlError(
        source,
        None,
        "",
        f"the file is larger than {limit}, the most {what} may be; check that this is the right file",
    )


def _too_deep(source: str, what: str, line: int | None, key: str) -> TomlError:
    return TomlError(
        source,
        line,
        key,
        f"TOML nested deeper than {MAX_DEPTH} levels (tables and arrays inside each other); "
        f"{what} never nests that deep — check this part of the file",
    )


def _check_version(text: str, source: str, versions: Versions) -> None:
    found = scan_version(text)
    if found is not None and not versions.accepts(found.value):
        raise TomlError(source, found.line, "version", versions.problem(found.value))


_VERSION_STATEMENT = re.compile(r"[ \t]*(?:version|\"version\"|'version')[ \t]*=[ \t]*([^\r\n]*)")
_UNREAD: Final = object()


def scan_version(text: str) -> VersionLine | None:
    """The top-level `version = <value>` statement, read without parsing the rest of the text: the
    statements before the first table header (multi-line strings skipped), with the value parsed on
    its own. None when there is no such statement or its value cannot be read."""
    lexer = _Lexer(text)
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
_MULTI_END: Final = {'"""': re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*"""'), "'''": re.compile(r"[\s\S]*?'''")}
_BASIC = re.compile(r'(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"[^'\n]*'")


class _Lexer:
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
            if tok in _MULTI_END:
                end = _MULTI_END[tok].match(t, pos)
                if end is None:
                    return  # an unterminated multi-line string runs to the end
                pos = end.end()
                extra = 0
                while extra < 2 and pos < n and t[pos] == tok[0]:
                    pos += 1
                    extra += 1
            elif tok == '"' or tok == "'":
                end = (_BASIC if tok == '"' else _LITERAL).match(t, pos)
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
        m = _SPACES.match(self.text, line_start)
        return self.text.startswith("[", m.end() if m else line_start)


def _deep_bracket_line(text: str) -> int | None:
    """The line where the text first nests deeper than MAX_DEPTH — brackets inside each other, or a
    dotted key of more parts (`tomllib` is quadratic in those) — or None. Linear, never raises."""
    stack: list[str] = []  # "h": a table header's brackets; "[": an array; "{": an inline table
    in_key = True  # in a key: at a statement's start, after "{" or "," in an inline table, in a header
    dots = 0
    for tok, pos in _Lexer(text).events():
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


def _deep_path(data: Mapping[str, Any]) -> KeyPath | None:
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


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*\Z")
_AT_END = re.compile(r"\s*\(at end of document\)\s*\Z")


def _syntax_error(text: str, source: str, e: tomllib.TOMLDecodeError) -> TomlError:
    msg = str(e)
    lineno: int | None = getattr(e, "lineno", None)
    colno: int | None = getattr(e, "colno", None)
    msg = getattr(e, "msg", msg)
    if m := _AT_LINE.search(msg):
        lineno, colno = int(m.group(1)), int(m.group(2))
        msg = msg[: m.start()]
    elif m := _AT_END.search(msg):
        lineno, colno = text.count("\n") + 1, None
        msg = msg[: m.start()] + " (at the end of the file)"
    line = lineno if lineno is not None else 1
    where = f" (column {colno})" if colno is not None else ""
    key = _guess_key_at(text, line)
    return TomlError(source, line, key, f"TOML syntax error: {msg}{where}; fix the TOML syntax there")


_HEADER_LINE = re.compile(r"\s*(\[\[?)(.*?)\]\]?\s*(#.*)?\Z")
_KEY_LINE = re.compile(r"\s*([^=#\[\s][^=#]*?)\s*=")
_GUESS_MAX: Final = 1000  # characters of a line searched for a key (the guess is best effort)


def _guess_key_at(text: str, lineno: int) -> str:
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
    except (_ScanError, IndexError, ValueError, RecursionError):
        return None


# --------------------------------------------------------------------------------------------
# the parsed document


@dataclass(slots=True)
class Document:
    """A parsed TOML file: its text (for line numbers), its source name and its data."""

    text: str
    source: str
    data: dict[str, Any]
    _locator: Locator | None = field(default=None, repr=False)

    @property
    def locator(self) -> Locator:
        if self._locator is None:
            self._locator = Locator(self.text)
        return self._locator

    def line_of(self, path: KeyPath) -> int:
        """The line of `path`; else of its nearest enclosing table found; else 1."""
        return self.locator.line_of(path)

    def find_line(self, path: KeyPath) -> int | None:
        """Like `line_of`, but None when neither the key nor any enclosing table is found."""
        return self.locator.find_line(path)


# --------------------------------------------------------------------------------------------
# typed getters


class Wording(Protocol):
    """How a loader phrases the common problems (each loader keeps its documented messages)."""

    def wrong(self, key: str, expected: str, got: str) -> str:
        """The value of `key` is not `expected` ("a string", "an integer 1-65535", ...)."""
        ...

    def missing(self, path: KeyPath, key: str) -> tuple[KeyPath, str]:
        """A required key is absent from the table at `path`: where to report it, and the problem."""
        ...

    def unknown_key(self, key: str, allowed: Sequence[str]) -> str: ...


Fail = Callable[[KeyPath, str], Exception]  # (key path, problem) -> the loader's error
REQUIRED: Final[Any] = object()  # the default of a required key


class Table:
    """One TOML table being read: typed getters, unknown keys refused up front. Errors are made by
    `fail` and worded by `wording`, so each loader keeps its own error class and messages."""

    def __init__(
        self,
        data: Mapping[str, Any],
        path: KeyPath,
        *,
        fail: Fail,
        wording: Wording,
        allowed: Sequence[str] | None = None,
    ) -> None:
        self.data = data
        self.path = path
        self.fail = fail
        self.wording = wording
        if allowed is not None:
            for key in data:
                if key not in allowed:
                    raise fail((*path, key), wording.unknown_key(key, allowed))

    def child(self, key: str | int, data: Mapping[str, Any], allowed: Sequence[str] | None) -> Self:
        """The table `data` found under `key`, read with the same errors and words."""
        return type(self)(data, (*self.path, key), fail=self.fail, wording=self.wording, allowed=allowed)

    def error(self, key: str | int | None, problem: str) -> Exception:
        return self.fail(self.path if key is None else (*self.path, key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: object = REQUIRED) -> object:
        """The raw value, the default, or the wording's "missing" error for a required key."""
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            path, problem = self.wording.missing(self.path, key)
            raise self.fail(path, problem)
        return default

    def _wrong(self, key: str, expected: str, value: object) -> Exception:
        return self.error(key, self.wording.wrong(key, expected, show(value)))

    def text(self, key: str, default: object = REQUIRED, *, nonempty: bool = False, hint: str = "") -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            raise self._wrong(key, f"a string{hint}", value)
        if nonempty and not value.strip():
            raise self.error(key, f"must not be empty{hint or '; give a value'}")
        return value

    def flag(self, key: str, default: object = REQUIRED) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def integer(self, key: str, default: object, lo: int, hi: int | None = None) -> int:
        value = self.get(key, default)
        rng = f" {lo}-{hi}" if hi is not None else f" >= {lo}"
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            raise self._wrong(key, f"an integer{rng}", value)
        return value

    def seconds(self, key: str, default: object = REQUIRED, *, expected: str = "a number of seconds > 0") -> float:
        """A finite number > 0: `inf`, `nan`, 0 and negatives are refused."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, expected, value)
        try:
            seconds = float(value)
        except OverflowError:
            raise self._wrong(key, expected, value) from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise self._wrong(key, expected, value)
        return seconds

    def enum(self, key: str, choices: Sequence[_S], default: object = REQUIRED) -> _S:
        value = self.get(key, default)
        if not isinstance(value, str) or value not in choices:
            near = did_you_mean(value, choices)
            hint = f"; did you mean {json.dumps(near)}?" if near else ""
            raise self.error(key, self.wording.wrong(key, one_of(choices), show(value)) + hint)
        return choices[choices.index(value)]

    def enum_list(self, key: str, choices: Sequence[_S], default: Sequence[_S]) -> tuple[_S, ...]:
        """An array of distinct names from `choices`, returned in the order of `choices`."""
        value = self.get(key, list(default))
        if not isinstance(value, list):
            raise self._wrong(key, f"an array of {one_of(choices)}", value)
        seen: set[str] = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or item not in choices:
                near = did_you_mean(item, choices)
                hint = f"; did you mean {json.dumps(near)}?" if near else ""
                raise self.error_at(
                    (key, i), self.wording.wrong(f"{key}[{i}]", one_of(choices), show(item)) + hint
                )
            if item in seen:
                raise self.error_at((key, i), f"{json.dumps(item)} is listed twice; keep one")
            seen.add(item)
        return tuple(c for c in choices if c in seen)

    def error_at(self, rel: KeyPath, problem: str) -> Exception:
        """An error at a path below this table (`(key, index)` for an array item)."""
        return self.fail((*self.path, *rel), problem)

    def str_list(self, key: str, default: Sequence[str] = (), *, nonempty_items: bool = False) -> list[str]:
        value = self.get(key, list(default))
        if not isinstance(value, list):
            raise self._wrong(key, "an array of strings", value)
        for i, item in enumerate(value):
            if not isinstance(item, str) or (nonempty_items and not item):
                expected = "a non-empty string" if nonempty_items else "a string"
                raise self.error_at((key, i), self.wording.wrong(f"{key}[{i}]", expected, show(item)))
        return list(value)

    def raw_table(self, key: str) -> dict[str, Any] | None:
        """A table whose keys are names (environments, services, paths): no key check."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self._wrong(key, "a table", value)
        return value

    def table(self, key: str, allowed: Sequence[str] | None, *, required: bool = False) -> Self | None:
        if key not in self.data:
            if required:
                raise self.error(key, f"required table is missing; add [{format_key_path((*self.path, key))}]")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self._wrong(key, "a table", value)
        return self.child(key, value, allowed)

    def tables(self, key: str, allowed: Sequence[str] | None) -> list[Self]:
        """An array of tables ([[key]]); a missing key is an empty array."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self._wrong(key, f"an array of tables ([[{format_key_path((*self.path, key))}]])", value)
        out: list[Self] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error_at((key, i), self.wording.wrong(f"{key}[{i}]", "a table", show(item)))
            out.append(type(self)(item, (*self.path, key, i), fail=self.fail, wording=self.wording, allowed=allowed))
        return out


# --------------------------------------------------------------------------------------------
# the key locator


class _ScanError(Exception):
    pass


_ESCAPES: Final = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}
_SPACES = re.compile(r"[ \t]*")
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
            except (_ScanError, IndexError, ValueError, RecursionError):
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
        m = _SPACES.match(self.text, pos)
        return m.end() if m else pos

    def skip_blank(self, pos: int) -> int:
        """Spaces, newlines and comments."""
        m = _BLANK.match(self.text, pos)
        return m.end() if m else pos

    def expect(self, pos: int, token: str) -> int:
        pos = self.skip_spaces(pos)
        if not self.text.startswith(token, pos):
            raise _ScanError(f"expected {token!r} at {pos}")
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
                    raise _ScanError(f"no key at {pos}")
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
                    raise _ScanError(f"bad escape at {pos}")
            elif c == "\n":
                raise _ScanError(f"newline in string at {pos}")
            else:
                out.append(c)
                pos += 1

    def _value(self, path: KeyPath, pos: int) -> int:
        t = self.text
        if t.startswith('"""', pos) or t.startswith("'''", pos):
            quote = t[pos : pos + 3]
            end = _MULTI_END[quote].match(t, pos + 3)
            if end is None:
                raise _ScanError(f"unterminated string at {pos}")
            pos = end.end()
            extra = 0
            while extra < 2 and pos < self.n and t[pos] == quote[0]:
                pos += 1
                extra += 1
            return pos
        c = t[pos]
        if c == '"':
            m = _BASIC.match(t, pos + 1)
            if m is None:
                raise _ScanError(f"unterminated string at {pos}")
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
                    raise _ScanError(f"bad array at {pos}")
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
                    raise _ScanError(f"bad inline table at {pos}")
        m = _PLAIN_VALUE.match(t, pos)
        if m is None or m.end() == pos:
            raise _ScanError(f"no value at {pos}")
        return m.end()


def iter_key_lines(text: str) -> Iterator[tuple[str, int]]:
    """Every key path the locator finds in `text`, with its line (for tests and debugging)."""
    loc = Locator(text)
    for path, line in loc.lines.items():
        yield format_key_path(path), line
