r"""Surgical editing of shell-style ``KEY=VALUE`` env files.

Pure functions on ``bytes``: no I/O. The caller reads the file, calls :func:`set_value` or
:func:`unset`, and writes the result back atomically.

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

Rejected (:class:`EnvFileError` naming the line): unquoted ``$``, backtick, backslash, quotes,
``|&;<>()``, whitespace inside an unquoted value, a ``~`` that the shell would expand
(start of an unquoted value or after ``:``), unescaped ``$``/backtick inside double quotes,
unterminated quotes (multi-line values), text glued to a closing quote, NUL or a stray CR
inside a value, and any line that is not an assignment, comment or blank line.

Values are ``str`` decoded from UTF-8 with ``surrogateescape``, so arbitrary bytes survive a
round trip. Effective values follow shell rules: the last assignment of a key wins.
"""

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Entry",
    "EnvFileError",
    "get",
    "parse",
    "set_value",
    "unset",
    "validate_key",
    "validate_value",
]

_Style = Literal["bare", "single", "double"]

_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(rb"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
_WS = b" \t"
# Bytes that cannot appear in an unquoted value without the shell giving them meaning
# (operators, quoting, expansion) or that can never be part of a value (NUL, CR, LF).
_BARE_FORBIDDEN = frozenset(b" \t\r\n\0|&;<>()'\"\\$`")
# Inside double quotes a backslash escapes only these; before anything else it is literal.
_DQ_ESCAPABLE = frozenset(b'\\"$`')
_BACKSLASH = 0x5C
_DQUOTE = 0x22
_SQUOTE = 0x27
_HASH = 0x23


class EnvFileError(ValueError):
    """The env file (or a key/value to be written) is not in the supported syntax."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int  # 1-based line of the effective (last) assignment


@dataclass(frozen=True)
class _Assignment:
    key: str
    value: str
    line: int  # 1-based
    start: int  # offset of the first byte of the line
    end: int  # offset just past the line ending
    value_start: int  # offsets of the value token (including its quotes)
    value_end: int
    style: _Style


@dataclass(frozen=True)
class _Scan:
    assignments: list[_Assignment]
    crlf_lines: int
    lf_lines: int


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _show(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("utf-8", "backslashreplace").strip(" \t")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _bare_problem(raw: bytes) -> str | None:
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
    return None


def _parse_double(line: bytes, start: int, where: str) -> tuple[bytes, int]:
    """Parse a double-quoted token whose opening quote is at ``start``; return (value, end)."""
    out = bytearray()
    k = start + 1
    n = len(line)
    while k < n:
        b = line[k]
        if b == _BACKSLASH and k + 1 < n and line[k + 1] in _DQ_ESCAPABLE:
            out.append(line[k + 1])
            k += 2
            continue
        if b == _DQUOTE:
            return bytes(out), k + 1
        if b in b"$`":
            raise EnvFileError(
                f"{where}: unescaped {chr(b)!r} in double-quoted value (shell expansion is not "
                "supported; escape it or use single quotes)"
            )
        if b in b"\r\0":
            raise EnvFileError(f"{where}: value contains a control character (CR or NUL)")
        out.append(b)
        k += 1
    raise EnvFileError(f"{where}: unterminated double quote (multi-line values are not supported)")


def _parse_line(line: bytes, number: int) -> tuple[str, str, int, int, _Style] | None:
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
        raise EnvFileError(f"line {number}: expected KEY=VALUE, got {_show(line)}")
    key = m.group(1).decode("ascii")
    where = f"line {number}: {key}"
    j = m.end()
    style: _Style
    if j < n and line[j] == _SQUOTE:
        close = line.find(b"'", j + 1)
        if close < 0:
            raise EnvFileError(f"{where}: unterminated single quote (multi-line values are not supported)")
        raw = line[j + 1 : close]
        if b"\r" in raw or b"\0" in raw:
            raise EnvFileError(f"{where}: value contains a control character (CR or NUL)")
        token_end = close + 1
        style = "single"
    elif j < n and line[j] == _DQUOTE:
        raw, token_end = _parse_double(line, j, where)
        style = "double"
    else:
        token_end = j
        while token_end < n and line[token_end] not in _WS:
            token_end += 1
        raw = line[j:token_end]
        problem = _bare_problem(raw)
        if problem is not None:
            raise EnvFileError(f"{where}: {problem}")
        style = "bare"
    k = token_end
    while k < n and line[k] in _WS:
        k += 1
    if k < n and (k == token_end or line[k] != _HASH):
        raise EnvFileError(
            f"{where}: unexpected text after the value (only whitespace and a '# comment' may follow)"
        )
    return key, _decode(raw), j, token_end, style


def _scan(data: bytes) -> _Scan:
    assignments: list[_Assignment] = []
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
        parsed = _parse_line(data[pos:content_end], number)
        if parsed is not None:
            key, value, t_start, t_end, style = parsed
            assignments.append(_Assignment(key, value, number, pos, end, pos + t_start, pos + t_end, style))
        pos = end
    return _Scan(assignments, crlf, lf)


def _effective(scan: _Scan) -> dict[str, _Assignment]:
    result: dict[str, _Assignment] = {}
    for a in scan.assignments:
        result[a.key] = a  # last assignment wins, as in a shell
    return result


def _quote(raw: bytes, style: _Style) -> bytes | None:
    """Encode ``raw`` as a value token in ``style``, or None if that style cannot represent it."""
    if style == "bare":
        return raw if _bare_problem(raw) is None else None
    if style == "single":
        return None if b"'" in raw else b"'" + raw + b"'"
    out = bytearray(b'"')
    for b in raw:
        if b in _DQ_ESCAPABLE:
            out.append(_BACKSLASH)
        out.append(b)
    out.append(_DQUOTE)
    return bytes(out)


def _token(value: str, preferred: _Style) -> bytes:
    raw = _encode(value)
    for style in (preferred, "single", "double"):
        token = _quote(raw, style)
        if token is not None:
            return token
    raise AssertionError("unreachable: double quotes represent every valid value")


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
        roundtrip = _decode(_encode(value))
    except UnicodeEncodeError:
        roundtrip = None
    if roundtrip != value:
        raise EnvFileError("invalid value: contains surrogate code points that do not encode to bytes")


def parse(data: bytes) -> dict[str, Entry]:
    """Effective value of every key; for duplicate keys the last assignment wins."""
    return {key: Entry(key, a.value, a.line) for key, a in _effective(_scan(data)).items()}


def get(data: bytes, key: str) -> str | None:
    """Effective value of ``key``, or None if it is not assigned."""
    validate_key(key)
    a = _effective(_scan(data)).get(key)
    return None if a is None else a.value


def set_value(data: bytes, key: str, value: str) -> bytes:
    """Return ``data`` with the effective assignment of ``key`` changed to ``value``.

    Only the value token of the last assignment of ``key`` is replaced; every other byte is kept.
    The existing quoting style is kept when it can represent ``value``; otherwise single quotes
    are used, or double quotes (with escapes) when the value contains a single quote. If the
    value is already ``value``, ``data`` is returned unchanged. If ``key`` is absent,
    ``KEY=value`` is appended with the file's dominant line ending (unquoted if safe).
    """
    validate_key(key)
    validate_value(value)
    scan = _scan(data)
    effective = _effective(scan)
    current = effective.get(key)
    if current is not None:
        if current.value == value:
            return data
        token = _token(value, current.style)
        result = data[: current.value_start] + token + data[current.value_end :]
    else:
        eol = b"\r\n" if scan.crlf_lines > scan.lf_lines else b"\n"
        head = data if not data or data.endswith(b"\n") else data + eol
        result = head + key.encode("ascii") + b"=" + _token(value, "bare") + eol
    # Defence in depth: the edit must change exactly this key's effective value.
    expected = {k: a.value for k, a in effective.items()}
    expected[key] = value
    if {k: a.value for k, a in _effective(_scan(result)).items()} != expected:
        raise AssertionError(f"internal error: editing {key} would not round-trip")
    return result


def unset(data: bytes, key: str) -> bytes:
    """Return ``data`` without any assignment line of ``key`` (whole lines, incl. line endings)."""
    validate_key(key)
    doomed = [a for a in _scan(data).assignments if a.key == key]
    if not doomed:
        return data
    parts: list[bytes] = []
    pos = 0
    for a in doomed:
        parts.append(data[pos : a.start])
        pos = a.end
    parts.append(data[pos:])
    return b"".join(parts)
