"""A preview: exactly what advancing, rolling back or restarting one step for one service would do — the
config changes, the instances restarted one at a time, the gates and rollback blockers — shown to a
person before anything runs, and what `Engine.apply` then does (refusing if the fleet changed since)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from plans.gates import GateResult, override
from plans.hazards import Blocker
from plans.store import Change

__all__ = ["RESTART", "Direction", "EngineError", "Preview", "RestartTarget"]

Direction = Literal["advance", "rollback", "restart"]
RESTART: Final = "restart"  # the step id of a restart-only action


class EngineError(Exception):
    """The request cannot be previewed or applied; the message says why and what to do."""


@dataclass(frozen=True)
class RestartTarget:
    """One instance to restart: `update.sh --restart-only` as the inventory renders it, and the command
    to run on it first (draining, e.g.), if any."""

    host: str
    command: str
    pre_restart: str = ""


@dataclass(frozen=True)
class Preview:
    """What one apply would do, as shown to a person: `open` when every gate is open and no blocker blocks."""

    env: str
    protected: bool
    step: str
    service: str | None  # the app service, or the database service for a database step
    direction: Direction
    title: str
    changes: tuple[Change, ...]
    change_lines: tuple[str, ...]
    restarts: tuple[RestartTarget, ...]
    gates: tuple[GateResult, ...]
    blockers: tuple[Blocker, ...]  # rollback safety: "block" ones close the preview, "warn" ones inform
    snapshot_at: float
    state: str  # the position of the target when previewed
    recreates: tuple[str, ...] = ()  # what a restart recreates on each host (the service's containers)
    estimate_s: float | None = None  # expected seconds per instance, from earlier restarts of this service
    notes: tuple[str, ...] = ()  # e.g. "restores the value that was there before pg-5: disable"

    @property
    def open(self) -> bool:
        return all(g.open for g in self.gates) and not any(b.blocks for b in self.blockers)

    @property
    def closed(self) -> tuple[tuple[str, str], ...]:
        """(id, reason) of everything that keeps this preview from running: what `--override` names."""
        return tuple((g.gate, g.reason) for g in self.gates if not g.open) + tuple(
            (b.id, b.text) for b in self.blockers if b.blocks
        )

    @property
    def closed_reasons(self) -> tuple[str, ...]:
        return tuple(f"{i}: {r}" for i, r in self.closed)

    def describe(self) -> str:
        head = (
            f"{self.direction} {self.step} ({self.title})"
            + (f" for {self.service}" if self.service else "")
            + f" in {self.env}"
            + (" [PROTECTED]" if self.protected else "")
        )
        lines = [head, f"  summary {self.summary()}"]
        lines += [f"  change  {c}" for c in self.change_lines] or ["  change  (none: already configured)"]
        lines += [f"  note    {n}" for n in self.notes]
        for i, r in enumerate(self.restarts, 1):
            lines.append(
                f"  restart {i}. {r.host}: {r.command}" + (f"  (first: {r.pre_restart})" if r.pre_restart else "")
            )
        if not self.restarts:
            lines.append("  restart (none: every instance already runs as configured)")
        for g in self.gates:
            lines.append(f"  gate    [{g.status:>7}] {g.gate}: {g.reason}")
        for b in self.blockers:
            lines.append(f"  {'refuse ' if b.blocks else 'warning'} [{b.id}] {b.text}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many instances of what, what restarts on each, one at a time, how long."""
        n = len(self.restarts)
        what = f" (recreates {', '.join(self.recreates)} on each)" if self.recreates else ""
        eta = f", about {self.estimate_s * n:.0f} s in all" if self.estimate_s and n else ""
        if not n:
            return f"{len(self.changes)} config change(s), no restart"
        return (
            f"{len(self.changes)} config change(s); restarts {n} instance(s) of {self.service}{what}, one at a "
            f"time{eta}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "protected": self.protected,
            "step": self.step,
            "service": self.service,
            "direction": self.direction,
            "title": self.title,
            "changes": list(self.change_lines),
            "restarts": [{"host": r.host, "command": r.command, "pre_restart": r.pre_restart} for r in self.restarts],
            "gates": [g.to_json() for g in self.gates],
            "blockers": [b.to_json() for b in self.blockers],
            "open": self.open,
            "state": self.state,
            "snapshot_at": self.snapshot_at,
            "recreates": list(self.recreates),
            "estimate_s": self.estimate_s,
            "summary": self.summary(),
            "notes": list(self.notes),
        }

    def opened(self, overrides: Sequence[str], reason: str) -> Preview | str:
        """This preview with exactly the named gates / blockers opened (each saying `reason`), or why that
        is refused: an id that names nothing here, or a closed one left unnamed."""
        preview = self
        closed = dict(preview.closed)
        unknown = [
            o
            for o in overrides
            if o not in closed
            and o not in {g.gate for g in preview.gates}
            and o not in {b.id for b in preview.blockers}
        ]
        if unknown:
            names = ", ".join(closed) or "none"
            return f"--override {', '.join(unknown)}: no such gate or blocker in this preview (closed now: {names})"
        left = [i for i in closed if i not in overrides]
        if left:
            return (
                "refused: "
                + "; ".join(f"{i}: {closed[i]}" for i in left)
                + (" — override each with --override ID --reason …" if overrides else "")
            )
        gates = tuple(override(g, reason) if g.gate in overrides else g for g in preview.gates)
        blockers = tuple(
            replace(b, kind="warn", text=f"overridden: {reason} (was: {b.text})")
            if b.id in overrides and b.blocks
            else b
            for b in preview.blockers
        )
        return replace(preview, gates=gates, blockers=blockers)
