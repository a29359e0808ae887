"""Reading the inventory's tables: the shared TOML getters (`inventory.toml.Table`) plus ports, host paths
and command templates, with errors worded the inventory's way and located on the file's lines."""

from __future__ import annotations

import json
import os
import posixpath
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from inventory import toml
from inventory.model import InventoryError
from inventory.toml import show as _show
from inventory.tomllines import KeyPath, format_key_path


class _Wording:
    """The inventory's phrasing: `expected <what>, got <value>`; `required key is missing; add ...`."""

    def wrong(self, key: str, expected: str, got: str) -> str:
        return f"expected {expected}, got {got}"

    def missing(self, path: KeyPath, key: str) -> tuple[KeyPath, str]:
        where = format_key_path(path) or "the top level"
        return (*path, key), f"required key is missing; add `{key} = ...` to {where}"

    def unknown_key(self, key: str, allowed: Sequence[str]) -> str:
        return unknown_key(key, allowed)


_WORDING: Final = _Wording()


class LoadContext:
    """The document being validated: errors with its lines, and local paths against its folder."""

    def __init__(self, doc: toml.Document, base_dir: Path) -> None:
        self.doc = doc
        self.source = doc.source
        self.base_dir = base_dir

    def line(self, path: KeyPath) -> int:
        return self.doc.line_of(path)

    def error(self, path: KeyPath, problem: str) -> InventoryError:
        return InventoryError(self.source, self.line(path), format_key_path(path), problem)

    def table(self, path: KeyPath, data: Mapping[str, Any], allowed: Sequence[str] | None) -> InventoryTable:
        return InventoryTable(data, path, fail=self.error, wording=_WORDING, allowed=allowed)

    def local_path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


REQUIRED: Final = toml.REQUIRED


class InventoryTable(toml.Table):
    """A table of the inventory: the shared getters, plus ports, host paths and command templates."""

    def abs_path(self, key: str, default: object = REQUIRED, *, what: str = "a path on the host") -> str:
        value = self.text(key, default, hint=f' (an absolute {what}, like "/etc/ssl/internal")')
        if not value.startswith("/"):
            raise self.error(key, f"expected an absolute {what} starting with /, got {_show(value)}")
        no_nul(self, (key,), value)
        return clean_abs(value)

    def port(self, key: str, default: object) -> int:
        return self.integer(key, default, 1, 65535)

    def positive_float(self, key: str, default: object) -> float:
        """A finite number of seconds > 0."""
        return self.seconds(key, default)

    def template(self, key: str, default: object, fields: Sequence[str]) -> str:
        value = self.text(key, default)
        problem = template_problem(value, fields)
        if problem:
            raise self.error(key, problem)
        return value


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    near = toml.did_you_mean(key, allowed)
    if near:
        return f"unknown key {_show(key)}; did you mean {json.dumps(near)}?"
    return f"unknown key {_show(key)}; valid keys here: {', '.join(allowed)}"


def template_problem(value: str, fields: Sequence[str]) -> str:
    known = " ".join("{" + f + "}" for f in fields)
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as e:
        return f"bad placeholder syntax ({e}); placeholders are {known}, write {{{{ and }}}} for literal braces"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            near = toml.did_you_mean(name, fields)
            hint = f" (did you mean {{{near}}}?)" if near else ""
            return (
                f"unknown placeholder {shown}{hint}; placeholders are {known}, write {{{{ and }}}} for literal braces"
            )
    return ""


def clean_abs(value: str) -> str:
    """A normalised absolute POSIX path: no trailing slash (except "/"), no "." or ".." parts."""
    out = posixpath.normpath(value)
    return "/" + out.lstrip("/") if out.startswith("//") else out


def no_nul(t: InventoryTable, rel: KeyPath, path: str) -> None:
    """A path with a NUL character is refused: no file system can name it (and os.path raises)."""
    if "\x00" in path:
        raise t.error_at(rel, f"a path cannot hold a NUL character, got {_show(path)}")
