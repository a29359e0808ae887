r"""Shell-style ``KEY=VALUE`` env files, parsed as bash sourcing them would: the one parser shared by
the reader (``probes.config.parse_env_text``) and the editor (``plans.envfile``).

Pure functions on ``bytes``: no I/O. The reader and the writer must agree on every byte, or the
cockpit would gate on a value the hosts do not have; so both use this module, and its tests use
bash itself as the oracle.

Semantics follow a POSIX shell sourcing the file (``set -a; . ./file``), restricted to a safe
subset: anything whose meaning would depend on shell expansion is rejected instead of being
guessed at.

Accepted line forms (each line ends with LF or CRLF; the last line may lack a line ending)::

    <blank>                      spaces/tabs only
    # comment                    any bytes, including non-UTF-8
    KEY=value                    optionally indented, optionally ``export KEY=value``
    KEY='single quoted'          no escapes (as in a shell)
    KEY="double \" quoted"       backslash escapes \\ \" \$ \` ; any other backslash is literal
    KEY=                         empty value
    KEY=value  # comment         an inline comment must be preceded by whitespace

Rejected (:class:`EnvFileError` naming the line, or an :class:`EnvProblem` in lenient mode):
unquoted ``$``, backtick, backslash, quotes, ``|&;<>()``, whitespace inside an unquoted value, a
``~`` that the shell would expand (start of an unquoted value or after ``:``), unescaped
``$``/backtick inside double quotes, unterminated quotes (multi-line values), text glued to a
closing quote, NUL or a stray CR inside a value, and any line that is not an assignment, comment
or blank line. Messages never quote a value or a rejected line: env files hold secrets.

Values are ``str`` decoded from UTF-8 with ``surrogateescape``, so arbitrary bytes survive a
round trip. Effective values follow shell rules: the last assignment of a key wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Assignment",
    "Entry",
    "EnvFileError",
    "EnvProblem",
    "EnvValues",
    "Scan",
    "Style",
    "bare_problem",
    "decode_value",
    "effective",
    "encode_value",
    "get",
    "parse",
    "read_env",
    "scan",
    "validate_key",
    "validate_value",
]

Style = Literal["bare", "single", "double"]

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(rb"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
_SPACED_ASSIGN_RE = re.compile(rb"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]+=")
_BARE_EXPORT_RE = re.compile(rb"export[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*$")
_WS = b" \t"
# Bytes that cannot appear in an unquoted value without the shell giving them meaning
# (operators, quoting, expansion) or that can never be part of a value (NUL, CR, LF).
_BARE_FORBIDDEN = frozenset(b" \t\r\n\0|&;<>()'\"\\$`")
# Inside double quotes a backslash escapes only these; before anything else it is literal.
DQ_ESCAPABLE = frozenset(b'\\"$`')
_BACKSLASH = 0x5C
_DQUOTE = 0x22
_SQUOTE = 0x27
_HASH = 0x23


class EnvFileError(ValueError):
    """The env file (or a key/value to be written) is not in the supported syntax.

    `line` is the 1-based line it is about (None for a key or value given by the caller)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class EnvProblem:
    """A line the lenient reader could not read: its number and why (never its text)."""

    line: int
    message: str  # starts with "line N: "

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int  # 1-based line of the effective (last) assignment


@dataclass(frozen=True)
class Assignment:
    """One assignment line, with the byte offsets the editor needs to change it surgically."""

    key: str
    value: str
    line: int  # 1-based
    start: int  # offset of the first byte of the line
    end: int  # offset just past the line ending
    value_start: int  # offsets of the value token (including its quotes)
    value_end: int
    style: Style


@dataclass(frozen=True)
class Scan:
    assignments: tuple[Assignment, ...]
    crlf_lines: int
    lf_lines: int
    problems: tuple[EnvProblem, ...] = ()  # lenient scans only; a strict scan raises instead


class EnvValues(dict[str, str]):
    """What the lenient reader found: a dict of the effective value of every readable assignment,
    plus `problems`, every line it could not read.

    A dict so that existing callers keep working unchanged; `problems` is what they must report
    ("could not read line N"). With problems the values are best effort: an unreadable line may
    assign any key (or, for an unterminated quote, swallow the lines after it in a shell), so a
    caller that decides must treat the file as unreadable rather than read a missing key as unset.
    """

    problems: tuple[EnvProblem, ...]

    def __init__(self, values: dict[str, str], problems: tuple[EnvProblem, ...] = ()) -> None:
        super().__init__(values)
        self.problems = problems

    @property
    def complete(self) -> bool:
        return not self.problems


def decode_value(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode_value(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def bare_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be an unquoted shell value meaning exactly itself, or None if it can."""
    for b in raw:
        if b in _BARE_FORBIDDEN:
            if b in _WS:
                return "unquoted value contains whitespace (quote the value)"
            if b in b"\r\n\0":
                return "value contains a control character (CR, LF or NUL)"
            return f"unquoted value contains {chr(b)!r}, which the shell interprets (quote the value)"
    if raw.startswith(b"~") or b":~" in raw:
        return "unquoted value contains a '~' that the shell would expand (quote the value)"
    if b"{" in raw and b"}" in raw:  # `export A={,}` is brace-expanded (an assignment word is not)
        return "unquoted value contains braces that the shell may expand (quote the value)"
    return None


def _parse_double(line: bytes, start: int, where: str, number: int) -> tuple[bytes, int]:
    """Parse a double-quoted token whose opening quote is at ``start``; return (value, end)."""
    out = bytearray()
    k = start + 1
    n = len(line)
    while k < n:
        b = line[k]
        if b == _BACKSLASH and k + 1 < n and line[k + 1] in DQ_ESCAPABLE:
            out.append(line[k + 1])
            k += 2
            continue
        if b == _DQUOTE:
            return bytes(out), k + 1
        if b in b"$`":
            raise EnvFileError(
                f"{where}: unescaped {chr(b)!r} in double-quoted value (shell expansion is not "
                "supported; escape it or use single quotes)",
                number,
            )
        if b in b"\r\0":
            raise EnvFileError(f"{where}: value contains a control character (CR or NUL)", number)
        out.append(b)
        k += 1
    raise EnvFileError(f"{where}: unterminated double quote (multi-line values are not supported)", number)


def _not_an_assignment(line: bytes, i: int, number: int) -> EnvFileError:
    """Why a non-blank, non-comment line is not an assignment, without quoting it (it may hold a secret)."""
    base = f"line {number}: expected KEY=VALUE, a comment or a blank line"
    if line.startswith(b"\xef\xbb\xbf", i):
        return EnvFileError(f"{base} (the line starts with a UTF-8 byte-order mark; save the file without it)", number)
    if (m := _SPACED_ASSIGN_RE.match(line, i)) is not None:
        key = m.group(1).decode("ascii")
        return EnvFileError(f"{base} ({key}: no spaces are allowed before '=')", number)
    if (m := _BARE_EXPORT_RE.match(line, i)) is not None:
        key = m.group(1).decode("ascii")
        return EnvFileError(f"{base} (export {key} without a value; write {key}=value)", number)
    return EnvFileError(base, number)


def _parse_line(line: bytes, number: int) -> tuple[str, str, int, int, Style] | None:
    """Parse one line's content (without its line ending).

    Returns None for blank and comment lines, else (key, value, token_start, token_end, style)
    with offsets relative to the line.
    """
    n = len(line)
    i = 0
    while i < n and line[i] in _WS:
        i += 1
    if i == n or line[i] == _HASH:
        return None
    m = _ASSIGN_RE.match(line, i)
    if m is None:
        raise _not_an_assignment(line, i, number)
    key = m.group(1).decode("ascii")
    where = f"line {number}: {key}"
    j = m.end()
    style: Style
    if j < n and line[j] == _SQUOTE:
        close = line.find(b"'", j + 1)
        if close < 0:
            raise EnvFileError(f"{where}: unterminated single quote (multi-line values are not supported)", number)
        raw = line[j + 1 : close]
        if b"\r" in raw or b"\0" in raw:
            raise EnvFileError(f"{where}: value contains a control character (CR or NUL)", number)
        token_end = close + 1
        style = "single"
    elif j < n and line[j] == _DQUOTE:
        raw, token_end = _parse_double(line, j, where, number)
        style = "double"
    else:
        token_end = j
        while token_end < n and line[token_end] not in _WS:
            token_end += 1
        raw = line[j:token_end]
        problem = bare_problem(raw)
        if problem is not None:
            raise EnvFileError(f"{where}: {problem}", number)
        style = "bare"
    k = token_end
    while k < n and line[k] in _WS:
        k += 1
    if k < n and (k == token_end or line[k] != _HASH):
        raise EnvFileError(
            f"{where}: unexpected text after the value (only whitespace and a '# comment' may follow)", number
        )
    return key, decode_value(raw), j, token_end, style


def scan(data: bytes, *, lenient: bool = False) -> Scan:
    """Every assignment line of ``data`` in order, with offsets.

    Strict (the default): the first line outside the supported syntax raises EnvFileError.
    Lenient: such lines are skipped and listed in ``Scan.problems``."""
    assignments: list[Assignment] = []
    problems: list[EnvProblem] = []
    crlf = lf = 0
    pos = 0
    number = 0
    size = len(data)
    while pos < size:
        number += 1
        nl = data.find(b"\n", pos)
        if nl < 0:
            content_end = end = size
        else:
            end = nl + 1
            if nl > pos and data[nl - 1] == 0x0D:
                content_end = nl - 1
                crlf += 1
            else:
                content_end = nl
                lf += 1
        try:
            parsed = _parse_line(data[pos:content_end], number)
        except EnvFileError as exc:
            if not lenient:
                raise
            problems.append(EnvProblem(number, str(exc)))
            parsed = None
        if parsed is not None:
            key, value, t_start, t_end, style = parsed
            assignments.append(Assignment(key, value, number, pos, end, pos + t_start, pos + t_end, style))
        pos = end
    return Scan(tuple(assignments), crlf, lf, tuple(problems))


def effective(s: Scan) -> dict[str, Assignment]:
    """The assignment in effect for every key: the last one, as in a shell."""
    result: dict[str, Assignment] = {}
    for a in s.assignments:
        result[a.key] = a
    return result


def validate_key(key: str) -> None:
    """Raise EnvFileError unless ``key`` is a shell variable name ``[A-Za-z_][A-Za-z0-9_]*``."""
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise EnvFileError(f"invalid key {key!r}: expected [A-Za-z_][A-Za-z0-9_]*")


def validate_value(value: str) -> None:
    """Raise EnvFileError unless ``value`` can be stored on one env-file line and read back exactly."""
    if not isinstance(value, str):
        raise EnvFileError(f"invalid value: expected str, got {type(value).__name__}")
    for ch, name in (("\0", "NUL"), ("\n", "a newline (LF)"), ("\r", "a carriage return (CR)")):
        if ch in value:
            raise EnvFileError(f"invalid value: contains {name}")
    try:
        roundtrip = decode_value(encode_value(value))
    except UnicodeEncodeError:
        roundtrip = None
    if roundtrip != value:
        raise EnvFileError("invalid value: contains surrogate code points that do not encode to bytes")


def parse(data: bytes) -> dict[str, Entry]:
    """Effective value of every key (strict); for duplicate keys the last assignment wins."""
    return {key: Entry(key, a.value, a.line) for key, a in effective(scan(data)).items()}


def get(data: bytes, key: str) -> str | None:
    """Effective value of ``key`` (strict), or None if it is not assigned."""
    validate_key(key)
    a = effective(scan(data)).get(key)
    return None if a is None else a.value


def read_env(data: bytes) -> EnvValues:
    """The lenient read: every readable assignment's effective value, and every unreadable line."""
    s = scan(data, lenient=True)
    return EnvValues({key: a.value for key, a in effective(s).items()}, s.problems)
