"""How the plan loader says what is wrong: one `PlanError` per problem, naming the file, the line (when it
can be found), the step and what to do::

    runbook.toml:58: step pg-6: rollback of PGBOUNCER_CLIENT_TLS_SSLMODE is unset, which would skip
    back past pg-4 (PGBOUNCER_CLIENT_TLS_SSLMODE=allow); write rollback.value = "allow"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from inventory import toml as tomlreader
from inventory.tomllines import KeyPath, format_key_path

__all__ = ["WORDING", "PlanError", "Problems", "quoted", "show", "suggest"]


class PlanError(Exception):
    """A problem with a plan file: `source:line: step <id>: what is wrong and what to do`."""

    def __init__(self, source: str, line: int | None, where: str, problem: str, *, step: str | None = None):
        self.source = source
        self.line = line
        self.where = where  # "step pg-3", "scopes.database.variables", ... ("" for the whole file)
        self.step = step  # the step id, when the problem is in a step whose id is known
        self.problem = problem
        at = source if line is None else f"{source}:{line}"
        super().__init__(f"{at}: {where}: {problem}" if where else f"{at}: {problem}")


def suggest(word: str, choices: Sequence[str]) -> str:
    """'; did you mean "x"?' when one of `choices` is close to `word`, else ""."""
    close = tomlreader.did_you_mean(word, choices)
    return f'; did you mean "{close}"?' if close else ""


def quoted(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n) for n in names) if names else "(none)"


show = tomlreader.show


class _Wording:
    """The plan's phrasing: `<key> must be <what>, got <value>`; `<key> is required; add ...`."""

    def wrong(self, key: str, expected: str, got: str) -> str:
        return f"{key} must be {expected}, got {got}"

    def missing(self, path: KeyPath, key: str) -> tuple[KeyPath, str]:
        return path, f'{key} is required; add {key} = "..."'

    def unknown_key(self, key: str, allowed: Sequence[str]) -> str:
        return f"unknown key {json.dumps(key)}{suggest(key, allowed)} (keys here: {', '.join(allowed)})"


WORDING: Final = _Wording()


class Problems:
    """The problems of one plan file: each becomes a `PlanError` at the line of its key (or of the table
    that holds it), said "step <id>: <key>" inside a step."""

    def __init__(self, doc: tomlreader.Document) -> None:
        self.doc = doc
        self.source = doc.source

    def line(self, path: KeyPath) -> int | None:
        return self.doc.find_line(path)

    def error(self, path: KeyPath, problem: str, step: str | None = None) -> PlanError:
        if step is not None:
            where = f"step {step}"
            if len(path) > 2:
                where += f": {format_key_path(path[2:])}"
        else:
            where = format_key_path(path)
        return PlanError(self.source, self.line(path), where, problem, step=step)

    def failer(self, step: str | None) -> Callable[[KeyPath, str], PlanError]:
        return lambda path, problem: self.error(path, problem, step)

    def table(
        self, data: Mapping[str, Any], path: KeyPath, allowed: Sequence[str] | None, step: str | None = None
    ) -> tomlreader.Table:
        return tomlreader.Table(data, path, fail=self.failer(step), wording=WORDING, allowed=allowed)
