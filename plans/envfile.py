r"""Surgical editing of shell-style ``KEY=VALUE`` env files.

Pure functions on ``bytes``: no I/O. The caller reads the file, calls :func:`set_value`,
:func:`unset` or :func:`unset_written`, and writes the result back atomically.

The syntax, its bash semantics and the parser live in :mod:`probes.envparse`, shared with the
reader (``probes.config.parse_env_text``) so that what the cockpit reads is exactly what it
writes. Editing refuses any file that parser does not accept in full (strict mode).
"""

from probes.envparse import (
    DQ_ESCAPABLE,
    Entry,
    EnvFileError,
    Style,
    bare_problem,
    effective,
    encode_value,
    get,
    parse,
    scan,
    validate_key,
    validate_value,
)

__all__ = [
    "Entry",
    "EnvFileError",
    "get",
    "parse",
    "set_value",
    "unset",
    "unset_written",
    "validate_key",
    "validate_value",
]

_BACKSLASH = 0x5C
_DQUOTE = 0x22


def _quote(raw: bytes, style: Style) -> bytes | None:
    """Encode ``raw`` as a value token in ``style``, or None if that style cannot represent it."""
    if style == "bare":
        return raw if bare_problem(raw) is None else None
    if style == "single":
        return None if b"'" in raw else b"'" + raw + b"'"
    out = bytearray(b'"')
    for b in raw:
        if b in DQ_ESCAPABLE:
            out.append(_BACKSLASH)
        out.append(b)
    out.append(_DQUOTE)
    return bytes(out)


def _token(value: str, preferred: Style) -> bytes:
    raw = encode_value(value)
    for style in (preferred, "single", "double"):
        token = _quote(raw, style)
        if token is not None:
            return token
    raise AssertionError("unreachable: double quotes represent every valid value")


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
    s = scan(data)
    eff = effective(s)
    current = eff.get(key)
    if current is not None:
        if current.value == value:
            return data
        token = _token(value, current.style)
        result = data[: current.value_start] + token + data[current.value_end :]
    else:
        eol = b"\r\n" if s.crlf_lines > s.lf_lines else b"\n"
        head = data if not data or data.endswith(b"\n") else data + eol
        result = head + key.encode("ascii") + b"=" + _token(value, "bare") + eol
    # Defence in depth: the edit must change exactly this key's effective value.
    expected = {k: a.value for k, a in eff.items()}
    expected[key] = value
    if {k: a.value for k, a in effective(scan(result)).items()} != expected:
        raise AssertionError(f"internal error: editing {key} would not round-trip")
    return result


def _without_lines(data: bytes, starts_ends: list[tuple[int, int]]) -> bytes:
    parts: list[bytes] = []
    pos = 0
    for start, end in starts_ends:
        parts.append(data[pos:start])
        pos = end
    parts.append(data[pos:])
    return b"".join(parts)


def unset(data: bytes, key: str) -> bytes:
    """Return ``data`` without any assignment line of ``key`` (whole lines, incl. line endings)."""
    validate_key(key)
    doomed = [(a.start, a.end) for a in scan(data).assignments if a.key == key]
    return _without_lines(data, doomed) if doomed else data


def unset_written(data: bytes, key: str, written: str) -> bytes:
    """Return ``data`` without the assignment lines of ``key`` that hold ``written`` (the value a
    step wrote), so that ``key`` ends up unassigned — or raise EnvFileError naming the line.

    Refuses when the effective value is not ``written`` (someone changed it), and when another
    assignment of ``key`` with a different value would remain: deleting that line would lose a
    value the step never wrote, keeping it would leave it in effect instead of unsetting.
    """
    validate_key(key)
    lines = [a for a in scan(data).assignments if a.key == key]
    if not lines:
        return data
    if lines[-1].value != written:
        raise EnvFileError(
            f"line {lines[-1].line}: {key} no longer holds the value the step wrote; not removing it", lines[-1].line
        )
    others = [a for a in lines if a.value != written]
    if others:
        raise EnvFileError(
            f"line {others[-1].line}: {key} is also assigned here with another value, which the step did not "
            f"write — removing it would lose it and keeping it would leave it in effect; pass the value to "
            f"restore, or edit the file by hand",
            others[-1].line,
        )
    return _without_lines(data, [(a.start, a.end) for a in lines])
