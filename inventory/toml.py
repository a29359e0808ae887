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
and `Document.line_of` maps key paths to the lines they are written on (`inventory.tomllines.Locator`:
`tomllib` reports no line for a key). The scans over raw text live in `inventory.tomlscan`.
Each loader keeps its own wording (`Wording`) and its own error class; a `TomlError` from here is
turned into that class with its source, line, key and problem unchanged.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, Self, TypeVar

from inventory.tomllines import KeyPath, Locator, format_key_path
from inventory.tomlscan import MAX_DEPTH, deep_bracket_line, deep_path, guess_key_at, scan_version

MAX_BYTES: Final = 1 << 20  # 1 MiB

_S = TypeVar("_S", bound=str)
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


def read_file(path: Path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """At most `max_bytes + 1` bytes of `path` (one more than allowed tells that it is too large).
    Raises OSError."""
    with path.open("rb") as f:
        return f.read(max_bytes + 1)


def parse_bytes(data: bytes, source: str, *, what: str, versions: Versions, max_bytes: int = MAX_BYTES) -> Document:
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
    deep = deep_bracket_line(text)
    if deep is not None:
        raise _too_deep(source, what, deep, guess_key_at(text, deep))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(text, source, e) from None
    except ValueError:  # Python refuses integers of more than 4300 digits (int_max_str_digits)
        m = _HUGE_INTEGER.search(text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        key = guess_key_at(text, line) if line else ""
        raise TomlError(source, line, key, "an integer of more than 4300 digits; write a smaller number") from None
    except RecursionError:  # the scan above should have caught it; never let it escape
        raise _too_deep(source, what, None, "") from None
    doc = Document(text, source, data)
    too_deep = deep_path(data)
    if too_deep is not None:
        raise _too_deep(source, what, doc.line_of(too_deep), format_key_path(too_deep[: MAX_DEPTH + 1]))
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
    key = guess_key_at(text, line)
    return TomlError(source, line, key, f"TOML syntax error: {msg}{where}; fix the TOML syntax there")


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
                raise self.error_at((key, i), self.wording.wrong(f"{key}[{i}]", one_of(choices), show(item)) + hint)
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
