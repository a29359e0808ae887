"""The rollout as data: a plan's steps, tracks and changes, as frozen dataclasses.

Like an alembic revision, each step holds its forward half (`Change.value`) and its backward half
(`Change.rollback`) together. `Plan` answers questions about the graph of steps (ancestors, descendants,
the value a rollback must land on, the services a step targets) in time linear in the plan's size. A plan
is read from a file by `plans.planfile`; `plans.plan` is the API callers use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from inventory.model import OTHERS

__all__ = [
    "DEFAULT_CA_FILE_VARIABLES",
    "DEFAULT_CERTS_COMMAND",
    "FORMAT_VERSIONS",
    "KINDS",
    "OTHERS",
    "SCOPES",
    "VARIABLE_SCOPES",
    "Change",
    "Plan",
    "Scope",
    "Step",
    "StepKind",
    "Track",
    "VariableScope",
]

StepKind = Literal["config", "certs"]
Scope = Literal["fleet", "database", "service"]
VariableScope = Literal["database", "service"]

FORMAT_VERSIONS: Final = (1,)
KINDS: Final[tuple[StepKind, ...]] = ("config", "certs")
SCOPES: Final[tuple[Scope, ...]] = ("fleet", "database", "service")
VARIABLE_SCOPES: Final[tuple[VariableScope, ...]] = ("database", "service")  # the scopes that hold variables
DEFAULT_CERTS_COMMAND: Final = "cockpit certs push"
# the service variables whose values are paths of the internal CA file on app hosts
DEFAULT_CA_FILE_VARIABLES: Final = ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")


@dataclass(frozen=True, slots=True)
class Change:
    """One variable set by a step, with its way back."""

    var: str
    value: str
    rollback: str | None  # None: unset — delete it from the config store, back to the manifest default

    def describe(self) -> str:
        return f"{self.var}={self.value}"

    def describe_rollback(self) -> str:
        return f"unset {self.var}" if self.rollback is None else f"{self.var}={self.rollback}"


@dataclass(frozen=True, slots=True)
class Track:
    """A sequence of steps run in the order written (Postgres, Redis); tracks are independent
    unless a step's `after` names a step of another track."""

    id: str
    title: str
    steps: tuple[str, ...]  # step ids, in order


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the rollout: exactly one kind ("config": set variables; "certs": push cert material)."""

    id: str
    track: str
    title: str
    kind: StepKind
    scope: Scope  # "fleet" (certs: one action for the environment) | "database" | "service" (each app service)
    changes: tuple[Change, ...]
    order: tuple[str, ...]  # scope "service": service names and "others", in rollout order
    after: tuple[str, ...]  # direct predecessors: the previous step of its track, then its own `after`
    gates: tuple[str, ...]  # checked before the step, for every target
    gates_for: tuple[tuple[str, tuple[str, ...]], ...]  # extra gates for one service: (service, gates)
    verify: str  # the check that says the step worked (a name in plans.gates.GATES)
    live: str  # how "running as configured" is read (a name in plans.facts.LIVE); "" for certs
    deadline: float  # seconds from apply until it must be verified
    auto_rollback: bool = False  # roll back by itself when the deadline passes unverified
    optional: bool = False
    command: str = ""  # certs: the cockpit command that performs it
    description: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def per_service(self) -> bool:
        return self.scope == "service"

    @property
    def summary(self) -> str:
        """ "POSTGRES_TLS_ENABLED=on", or the title of a step that sets no variable."""
        return ", ".join(c.describe() for c in self.changes) if self.changes else self.title

    def gates_for_target(self, service: str | None) -> tuple[str, ...]:
        """The gates guarding this step for `service`: `gates`, then that service's `gates_for`."""
        extra = tuple(g for svc, gs in self.gates_for if svc == service for g in gs)
        return self.gates + tuple(g for g in extra if g not in self.gates)


@dataclass(frozen=True, slots=True)
class Plan:
    version: int
    name: str
    title: str
    services: tuple[str, ...]  # the app services orders may name ("others" stands for the rest)
    database_service: str  # the service whose config store holds scope "database" variables
    variables: Mapping[str, frozenset[str]]  # scope -> the variables a step of that scope may set
    tracks: tuple[Track, ...]
    steps: tuple[Step, ...]  # in run order: by dependencies, then as written
    description: str = ""
    # service variables whose values are paths of the internal CA file on app hosts
    ca_file_variables: tuple[str, ...] = DEFAULT_CA_FILE_VARIABLES
    source: str = field(default="", compare=False)
    # what the plan sets that the cockpit has no rollback-safety rule for (plans.hazards), said when it is
    # loaded: a plan may add variables with no code change, and every rollback of one says it cannot tell
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # derived once: step id -> index in `steps`, and each step's ancestors as a bit set over those indexes
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _ancestry: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _setters: Mapping[tuple[str, str], int] = field(init=False, repr=False, compare=False)  # (scope, var)

    def __post_init__(self) -> None:
        index = {s.id: i for i, s in enumerate(self.steps)}
        setters: dict[tuple[str, str], int] = {}
        for i, s in enumerate(self.steps):
            for c in s.changes:
                setters[(s.scope, c.var)] = setters.get((s.scope, c.var), 0) | (1 << i)
        object.__setattr__(self, "_index", MappingProxyType(index))
        object.__setattr__(self, "_ancestry", _ancestry(self.steps, index))
        object.__setattr__(self, "_setters", MappingProxyType(setters))

    def step(self, step_id: str) -> Step:
        i = self._index.get(step_id)
        if i is None:
            raise KeyError(f"plan {self.name!r} has no step {step_id!r}; steps: {', '.join(self.step_ids)}")
        return self.steps[i]

    @property
    def step_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(f"plan {self.name!r} has no track {track_id!r}")

    def ancestors(self, step: Step) -> tuple[Step, ...]:
        """Every step `step` runs after, directly or not, in run order."""
        mask = self._ancestry[self._index[step.id]]
        return tuple(s for i, s in enumerate(self.steps) if mask >> i & 1)

    def descendants(self, step: Step) -> tuple[Step, ...]:
        """Every step that runs after `step`, directly or not, in run order."""
        bit = 1 << self._index[step.id]
        return tuple(s for s, mask in zip(self.steps, self._ancestry, strict=True) if mask & bit)

    def last_setter_before(self, step: Step, var: str) -> Step | None:
        """The last step, in run order, of the ancestors of `step` with its scope that sets `var`: the
        value a rollback of `var` must land on."""
        found = self._ancestry[self._index[step.id]] & self._setters.get((step.scope, var), 0)
        return self.steps[found.bit_length() - 1] if found else None

    def accepted_values(self, step: Step, var: str) -> frozenset[str]:
        """Values of `var` that count as `step` being configured: its own, and those of later steps
        of the same scope that set the same variable (they supersede it)."""
        out = {c.value for c in step.changes if c.var == var}
        for later in self.descendants(step):
            if later.scope == step.scope:
                out.update(c.value for c in later.changes if c.var == var)
        return frozenset(out)

    def targets(self, step: Step, env_services_in_order: Sequence[str]) -> list[str]:
        """The services `step` changes, in order: [] for a fleet step (one action for the environment),
        [database_service] for scope "database", and for scope "service" its `order` with "others"
        expanded, where it stands, to every remaining service of `env_services_in_order` (the
        environment's app services in inventory order). Named services the environment lacks are skipped.
        """
        if step.scope == "fleet":
            return []
        if step.scope == "database":
            return [self.database_service]
        env = [s for s in dict.fromkeys(env_services_in_order) if s not in (self.database_service, OTHERS)]
        named = {s for s in step.order if s != OTHERS}
        out: list[str] = []
        for item in step.order:
            if item == OTHERS:
                out.extend(s for s in env if s not in named and s not in out)
            elif item in env and item not in out:
                out.append(item)
        return out


def _ancestry(steps: Sequence[Step], index: Mapping[str, int]) -> tuple[int, ...]:
    """For each step, the bit set (bit i = steps[i]) of every step it runs after, directly or not.
    An iterative depth-first pass (a plan may be one long chain), each step once; unknown ids and
    cycles (never in a validated plan) are ignored."""
    deps = [[j for a in s.after if (j := index.get(a)) is not None] for s in steps]
    masks = [-1] * len(steps)  # -1: not computed yet
    on_stack = [False] * len(steps)
    for root in range(len(steps)):
        if masks[root] >= 0:
            continue
        on_stack[root] = True
        stack = [(root, iter(deps[root]))]
        while stack:
            i, todo = stack[-1]
            for j in todo:
                if masks[j] < 0 and not on_stack[j]:
                    on_stack[j] = True
                    stack.append((j, iter(deps[j])))
                    break
            else:
                stack.pop()
                on_stack[i] = False
                mask = 0
                for j in deps[i]:
                    mask |= max(masks[j], 0) | (1 << j)
                masks[i] = mask
    return tuple(masks)
