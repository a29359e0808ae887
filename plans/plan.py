"""The plan: the rollout as data, read from a file — the API the CLI, the TUI and the engine's callers use.

`default_plan()` is the shipped runbook, `plans/runbook.toml`; `load_plan(path)` / `parse_plan(text, source)`
read any plan file (`plans.planfile`), refusing it with one `PlanError` per problem. The data itself
(`Plan`, `Track`, `Step`, `Change`) is `plans.model`'s; modules inside `plans` import it from there.
The format is documented in `docs/plan.md`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from plans.model import (
    DEFAULT_CA_FILE_VARIABLES,
    FORMAT_VERSIONS,
    KINDS,
    OTHERS,
    SCOPES,
    Change,
    Plan,
    Scope,
    Step,
    StepKind,
    Track,
)
from plans.planerror import PlanError
from plans.planfile import load_plan, parse_plan

__all__ = [
    "DEFAULT_CA_FILE_VARIABLES",
    "FORMAT_VERSIONS",
    "KINDS",
    "OTHERS",
    "RUNBOOK",
    "SCOPES",
    "Change",
    "Plan",
    "PlanError",
    "Scope",
    "Step",
    "StepKind",
    "Track",
    "default_plan",
    "load_plan",
    "parse_plan",
]

# next to this module (importlib.resources trips over editable installs' namespace mapping)
RUNBOOK = Path(__file__).resolve().parent / "runbook.toml"


@functools.cache
def default_plan() -> Plan:
    """The shipped runbook, `plans/runbook.toml` (read once)."""
    return parse_plan(RUNBOOK.read_text(encoding="utf-8"), "plans/runbook.toml")
