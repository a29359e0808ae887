"""The rollout as data: a plan file (TOML, format version 1) read into frozen dataclasses.

`load_plan(path)` / `parse_plan(text, source)` read and validate a plan. `default_plan()` is the
shipped runbook, `plans/runbook.toml`. The format is documented in `docs/plan.md`.

Like an alembic revision, each step holds its forward half (`Change.value`) and its backward half
(`Change.rollback`) together. The graph is validated on load, and each problem raises one specific
`PlanError` that names the file, the line (when it can be found), the step and what to do::

    runbook.toml:58: step pg-6: rollback of PGBOUNCER_CLIENT_TLS_SSLMODE is unset, which would skip
    back past pg-4 (PGBOUNCER_CLIENT_TLS_SSLMODE=allow); write rollback.value = "allow"
"""

from __future__ import annotations

import functools
import heapq
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from plans.gates import GATES, LIVE
from probes import tomlreader
from probes.inventory import OTHERS, service_name_problem
from probes.tomlreader import KeyPath, format_key_path

__all__ = [
    "DEFAULT_CA_FILE_VARIABLES",
    "FORMAT_VERSIONS",
    "KINDS",
    "OTHERS",
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

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_VAR = re.compile(r"[A-Z_][A-Z0-9_]*\Z")

_TOP_KEYS: Final = (
    "version",
    "name",
    "title",
    "description",
    "services",
    "scopes",
    "ca_file_variables",
    "tracks",
    "steps",
)
_SCOPE_KEYS: Final = {"database": ("service", "variables"), "service": ("variables",)}
_TRACK_KEYS: Final = ("id", "title")
_STEP_KEYS: Final = (
    "id",
    "track",
    "title",
    "description",
    "kind",
    "scope",
    "order",
    "changes",
    "command",
    "gates",
    "gates_for",
    "verify",
    "live",
    "deadline",
    "auto_rollback",
    "optional",
    "after",
)
_CHANGE_KEYS: Final = ("var", "value", "rollback")
_ROLLBACK_KEYS: Final = ("unset", "value")



# --------------------------------------------------------------------------------------------
# errors


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


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = tomlreader.did_you_mean(word, choices)
    return f'; did you mean "{close}"?' if close else ""


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n) for n in names) if names else "(none)"


_show = tomlreader.show


# --------------------------------------------------------------------------------------------
# the data


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
    live: str  # how "running as configured" is read (a name in plans.gates.LIVE); "" for certs
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
    # derived once: step id -> index in `steps`, and each step's ancestors as a bit set over those indexes
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _ancestry: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _setters: Mapping[tuple[str, str], int] = field(init=False, repr=False, compare=False)  # (scope, var)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the plan sets that the cockpit has no rollback-safety rule for (plans.hazards): it loads —
        a plan may add variables with no code change — but every rollback of such a variable says the
        cockpit cannot tell whether it is safe."""
        from plans.hazards import has_rule

        out: list[str] = []
        for step in self.steps:
            for ch in step.changes:
                if not has_rule(step.scope, ch.var):
                    out.append(f"step {step.id}: {ch.var} ({step.scope}) has no rollback-safety rule: the cockpit "
                               "cannot tell when rolling it back is safe — add one to plans/hazards.py HAZARDS")
        return tuple(dict.fromkeys(out))

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
        env = [s for s in dict.fromkeys(env_services_in_order) if s != self.database_service and s != OTHERS]
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


# --------------------------------------------------------------------------------------------
# loading


def _version_problem(value: object) -> str:
    return (
        f"unsupported plan version {_show(value)}; this cockpit reads version "
        f"{', '.join(map(str, FORMAT_VERSIONS))} only — use a matching cockpit or rewrite the plan"
    )


_VERSIONS: Final = tomlreader.Versions(FORMAT_VERSIONS, _version_problem)


def load_plan(path: Path | str, *, max_bytes: int = tomlreader.MAX_BYTES) -> Plan:
    """Read and validate the plan file at `path`."""
    p = Path(path)
    source = str(path)
    try:
        data = tomlreader.read_file(p, max_bytes=max_bytes)
    except OSError as e:
        raise PlanError(source, None, "", f"cannot read the plan file ({e.strerror or e})") from e
    try:
        doc = tomlreader.parse_bytes(data, source, what="a plan", versions=_VERSIONS, max_bytes=max_bytes)
    except tomlreader.TomlError as e:
        raise _plan_error(e) from None
    return _Builder(doc).build()


@functools.cache
def default_plan() -> Plan:
    """The shipped runbook, `plans/runbook.toml`."""
    # next to this module (importlib.resources trips over editable installs' namespace mapping)
    text = (Path(__file__).resolve().parent / "runbook.toml").read_text(encoding="utf-8")
    return parse_plan(text, "plans/runbook.toml")


def parse_plan(text: str, source: str, *, max_bytes: int = tomlreader.MAX_BYTES) -> Plan:
    """Validate plan `text`; `source` names it in errors. `max_bytes` is the size limit (1 MiB)."""
    try:
        doc = tomlreader.parse_text(text, source, what="a plan", versions=_VERSIONS, max_bytes=max_bytes)
    except tomlreader.TomlError as e:
        raise _plan_error(e) from None
    return _Builder(doc).build()


def _plan_error(e: tomlreader.TomlError) -> PlanError:
    # a syntax error reads `file:line: TOML syntax error: ...` (the plan's documented form: no key)
    where = "" if e.problem.startswith("TOML syntax error") else e.key
    return PlanError(e.source, e.line, where, e.problem)


class _Wording:
    """The plan's phrasing: `<key> must be <what>, got <value>`; `<key> is required; add ...`."""

    def wrong(self, key: str, expected: str, got: str) -> str:
        return f"{key} must be {expected}, got {got}"

    def missing(self, path: KeyPath, key: str) -> tuple[KeyPath, str]:
        return path, f'{key} is required; add {key} = "..."'

    def unknown_key(self, key: str, allowed: Sequence[str]) -> str:
        return f"unknown key {json.dumps(key)}{_suggest(key, allowed)} (keys here: {', '.join(allowed)})"


_WORDING: Final = _Wording()
_Table = tomlreader.Table


class _Builder:
    def __init__(self, doc: tomlreader.Document) -> None:
        self.doc = doc
        self.source = doc.source

    # -- errors ---------------------------------------------------------------------------------
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
    ) -> _Table:
        return _Table(data, path, fail=self.failer(step), wording=_WORDING, allowed=allowed)

    # -- the plan -------------------------------------------------------------------------------------
    def build(self) -> Plan:
        raw = self.doc.data
        if "version" not in raw:
            raise PlanError(self.source, 1, "version", "version is required; add version = 1 at the top")
        version = raw["version"]
        if not _VERSIONS.accepts(version):
            raise self.error(("version",), _version_problem(version))
        assert isinstance(version, int)
        top = self.table(raw, (), _TOP_KEYS)
        name = top.text("name")
        title = top.text("title", name)
        description = top.text("description", "")
        services = self.services(top)
        database_service, variables = self.scopes(top, services)
        ca_files = self.ca_file_variables(top, variables)
        tracks_raw = self.tracks(top)
        steps = self.steps(top, tracks_raw, services, variables)
        ordered = self.graph(steps)
        by_track: dict[str, list[str]] = {tid: [] for tid, _ in tracks_raw}
        for s in steps:
            by_track[s.track].append(s.id)
        plan = Plan(
            version=version,
            name=name,
            title=title,
            description=description,
            services=tuple(services),
            database_service=database_service,
            variables=MappingProxyType(variables),
            tracks=tuple(Track(tid, ttitle, tuple(by_track[tid])) for tid, ttitle in tracks_raw),
            steps=ordered,
            ca_file_variables=ca_files,
            source=self.source,
        )
        self.rollbacks(plan, steps)
        return plan

    def services(self, top: _Table) -> list[str]:
        services = top.str_list("services")
        if not services:
            raise self.error(
                ("services",),
                'services is required: the app services an order may name, e.g. services = ["api", "web"]',
            )
        seen: set[str] = set()
        for i, s in enumerate(services):
            if s == OTHERS:
                raise self.error(
                    ("services", i),
                    f'"{OTHERS}" is reserved (it means every remaining app service); remove it',
                )
            if problem := service_name_problem(s):
                raise self.error(("services", i), problem)
            if s in seen:
                raise self.error(("services", i), f"service {json.dumps(s)} is listed twice; remove one")
            seen.add(s)
        return services

    def scopes(self, top: _Table, services: list[str]) -> tuple[str, dict[str, frozenset[str]]]:
        scopes = top.raw_table("scopes") or {}
        variables: dict[str, frozenset[str]] = {}
        database_service = "database"
        for scope, t in scopes.items():
            path: KeyPath = ("scopes", scope)
            if scope not in VARIABLE_SCOPES:
                hint = (
                    ' ("fleet" steps set no variable)'
                    if scope == "fleet"
                    else _suggest(scope, VARIABLE_SCOPES)
                )
                raise self.error(
                    path,
                    f"unknown scope {json.dumps(scope)}{hint}; scopes that hold variables: "
                    f"{_quoted(VARIABLE_SCOPES)}",
                )
            if not isinstance(t, dict):
                raise self.error(path, f"[scopes.{scope}] must be a table, got {_show(t)}")
            st = self.table(t, path, _SCOPE_KEYS[scope])
            names = st.str_list("variables")
            for i, v in enumerate(names):
                if not _VAR.match(v):
                    raise self.error(
                        (*path, "variables", i), f"{json.dumps(v)} is not a variable name (A-Z, 0-9, _)"
                    )
            variables[scope] = frozenset(names)
            if scope == "database":
                database_service = st.text("service", "database")
                if database_service in services or database_service == OTHERS:
                    raise self.error(
                        (*path, "service"),
                        f"the database service {json.dumps(database_service)} is also listed as an app "
                        "service; remove it from services",
                    )
                if problem := service_name_problem(database_service):
                    raise self.error((*path, "service"), problem)
        return database_service, variables

    def ca_file_variables(self, top: _Table, variables: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
        known = variables.get("service", frozenset())
        if not top.has("ca_file_variables"):
            return tuple(v for v in DEFAULT_CA_FILE_VARIABLES if v in known)
        names = top.str_list("ca_file_variables")
        for i, v in enumerate(names):
            if v not in known:
                listed = f"known: {', '.join(sorted(known))}" if known else "[scopes.service] variables lists none"
                raise self.error(
                    ("ca_file_variables", i),
                    f"{json.dumps(v)} is not a variable of scope \"service\"{_suggest(v, sorted(known))} "
                    f"({listed}); add it to [scopes.service] variables, or remove it",
                )
            if v in names[:i]:
                raise self.error(("ca_file_variables", i), f"{v} is listed twice; keep one")
        return tuple(names)

    def tracks(self, top: _Table) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for t in top.tables("tracks", _TRACK_KEYS):
            tid = t.text("id")
            if not _ID.match(tid):
                raise t.error("id", f"track id {json.dumps(tid)} must be lowercase letters, digits, -")
            if tid in seen:
                raise t.error("id", f"duplicate track id {json.dumps(tid)}; give each track its own id")
            seen.add(tid)
            out.append((tid, t.text("title", tid)))
        if not out:
            raise self.error(("tracks",), 'a plan needs at least one [[tracks]] (id = "...", title = "...")')
        return out

    def steps(
        self,
        top: _Table,
        tracks: list[tuple[str, str]],
        services: list[str],
        variables: Mapping[str, frozenset[str]],
    ) -> list[Step]:
        tables = top.tables("steps", None)
        if not tables:
            raise self.error(("steps",), "a plan needs at least one [[steps]]")
        out: list[Step] = []
        ids: dict[str, int] = {}
        last_in_track: dict[str, str] = {}
        track_ids = [t for t, _ in tracks]
        for i, t in enumerate(tables):
            path: KeyPath = ("steps", i)
            sid = t.data.get("id")
            if not isinstance(sid, str):
                raise self.error(
                    path if sid is None else (*path, "id"),
                    f'every step needs an id = "..." (got {_show(sid) if sid is not None else "none"})',
                )
            if not _ID.match(sid):
                raise self.error(
                    (*path, "id"),
                    f'step id {json.dumps(sid)} must be lowercase letters, digits, -, e.g. "pg-2"',
                )
            if sid in ids:
                raise self.error(
                    (*path, "id"),
                    f"duplicate step id {json.dumps(sid)} (also step #{ids[sid] + 1}); "
                    "give each step its own id",
                    sid,
                )
            ids[sid] = i
            st = self.table(t.data, path, _STEP_KEYS, sid)
            step = self.step(st, sid, track_ids, services, variables, last_in_track)
            last_in_track[step.track] = sid
            out.append(step)
        return out

    def step(
        self,
        t: _Table,
        sid: str,
        track_ids: list[str],
        services: list[str],
        variables: Mapping[str, frozenset[str]],
        last_in_track: Mapping[str, str],
    ) -> Step:
        """One step; its `after` is the step written before it in its track, then its own `after`."""
        path = t.path
        track = t.text("track")
        if track not in track_ids:
            raise t.error(
                "track",
                f"unknown track {json.dumps(track)}{_suggest(track, track_ids)}; tracks: {_quoted(track_ids)}",
            )
        kind_name = t.text("kind", "config")
        if kind_name not in KINDS:
            raise t.error(
                "kind",
                f"unknown kind {json.dumps(kind_name)}{_suggest(kind_name, KINDS)}; kinds: {_quoted(KINDS)}",
            )
        kind = KINDS[KINDS.index(kind_name)]
        scope_name = t.text("scope", "fleet" if kind == "certs" else "")
        if not scope_name:
            raise t.error(None, f'scope is required; add scope = "database" or "service" ({_quoted(SCOPES)})')
        if scope_name not in SCOPES:
            raise t.error(
                "scope",
                f"unknown scope {json.dumps(scope_name)}{_suggest(scope_name, SCOPES)}; scopes: {_quoted(SCOPES)}",
            )
        scope = SCOPES[SCOPES.index(scope_name)]
        if kind == "certs" and scope != "fleet":
            raise t.error("scope", 'a "certs" step is one action for the environment: scope = "fleet"')
        if kind == "config" and scope == "fleet":
            raise t.error(
                "scope", 'scope "fleet" is only for kind "certs"; a config step is "database" or "service"'
            )
        changes = self.changes(t, sid, kind, scope, variables)
        order = self.order(t, sid, scope, services)
        gates = self.gate_list(t, "gates", sid, scope)
        gates_for = self.gates_for(t, sid, scope, services)
        if not t.has("verify"):
            raise t.error(None, f"verify is required: the check that says it worked ({_quoted(list(GATES))})")
        verify = self.gate_name(t.data["verify"], (*path, "verify"), sid, scope, "verify")
        live = self.live(t, kind, scope)
        if not t.has("deadline"):
            raise t.error(None, "deadline is required: seconds from apply until it must be verified")
        deadline = t.seconds("deadline", expected="a positive number of seconds")
        command = t.text("command", DEFAULT_CERTS_COMMAND if kind == "certs" else "")
        if command and kind != "certs":
            raise t.error("command", 'command applies to kind "certs" only; remove it')
        prev = last_in_track.get(track)
        after = ((prev,) if prev is not None else ()) + tuple(a for a in t.str_list("after") if a != prev)
        return Step(
            id=sid,
            track=track,
            title=t.text("title", sid),
            kind=kind,
            scope=scope,
            changes=changes,
            order=order,
            after=after,
            gates=gates,
            gates_for=gates_for,
            verify=verify,
            live=live,
            deadline=deadline,
            auto_rollback=t.flag("auto_rollback", False),
            optional=t.flag("optional", False),
            command=command,
            description=t.text("description", ""),
            line=self.line(path),
        )

    def changes(
        self,
        t: _Table,
        sid: str,
        kind: StepKind,
        scope: Scope,
        variables: Mapping[str, frozenset[str]],
    ) -> tuple[Change, ...]:
        raw = t.data.get("changes", [])
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise t.error("changes", "changes must be an array of tables ([[steps.changes]])")
        if kind == "certs":
            if raw:
                raise t.error("changes", 'a "certs" step sets no variable (its action is its command); remove changes')
            return ()
        if not raw:
            raise t.error(
                None,
                'a config step needs at least one [[steps.changes]] (var = "...", value = "...", rollback...)',
            )
        known = variables.get(scope, frozenset())
        out: list[Change] = []
        seen: set[str] = set()
        for c in t.tables("changes", _CHANGE_KEYS):
            var = c.text("var")
            if var not in known:
                where = f"[scopes.{scope}] variables"
                listed = f"known: {', '.join(sorted(known))}" if known else f"{where} lists none"
                raise c.error(
                    "var",
                    f"unknown variable {var} for scope {json.dumps(scope)}"
                    f"{_suggest(var, sorted(known))} ({listed}); "
                    f"fix the name or add it to {where}",
                )
            if var in seen:
                raise c.error("var", f"{var} is set twice in this step; keep one change")
            seen.add(var)
            value = c.text("value")
            out.append(Change(var, value, self.rollback(c, var, value)))
        return tuple(out)

    def rollback(self, c: _Table, var: str, value: str) -> str | None:
        how = (
            "add rollback.unset = true (delete it from the config store: back to the manifest default) "
            'or rollback.value = "..."'
        )
        if not c.has("rollback"):
            raise c.error(None, f"the change of {var} has no rollback; {how}")
        r = c.data["rollback"]
        if not isinstance(r, dict):
            raise c.error("rollback", f"rollback must be a table, got {_show(r)}; {how}")
        rt = c.child("rollback", r, _ROLLBACK_KEYS)
        unset = r.get("unset", False)
        if not isinstance(unset, bool):
            raise rt.error("unset", f"rollback.unset must be true, got {_show(unset)}")
        if unset and "value" in r:
            raise rt.error(None, f"the rollback of {var} both unsets and sets a value; keep one")
        if unset:
            return None
        if "value" not in r:
            raise rt.error(None, f"the change of {var} has no rollback value; {how}")
        back = r["value"]
        if not isinstance(back, str):
            raise rt.error("value", f"rollback.value must be a string, got {_show(back)}")
        if back == value:
            raise rt.error("value", f"the rollback of {var} is its own value {json.dumps(value)}, so it undoes nothing")
        return back

    def order(self, t: _Table, sid: str, scope: Scope, services: list[str]) -> tuple[str, ...]:
        if scope != "service":
            if t.has("order"):
                raise t.error("order", 'order applies to scope "service" only; remove it')
            return ()
        order = t.str_list("order")
        if not order:
            raise t.error(None, f'a per-service step needs an order, e.g. order = ["api", "web", "{OTHERS}"]')
        seen: set[str] = set()
        for i, s in enumerate(order):
            if s != OTHERS and s not in services:
                raise t.error_at(
                    ("order", i),
                    f"unknown service {json.dumps(s)} in order{_suggest(s, services)}; known services: "
                    f'{_quoted(services)} and "{OTHERS}" — fix the name or add it to services',
                )
            if s in seen:
                raise t.error_at(("order", i), f"{json.dumps(s)} appears twice in order; keep one")
            seen.add(s)
        return tuple(order)

    def gate_name(self, name: object, path: KeyPath, sid: str, scope: Scope, what: str) -> str:
        if not isinstance(name, str):
            raise self.error(path, f"{what} must name a gate (a string), got {_show(name)}", sid)
        spec = GATES.get(name)
        if spec is None:
            raise self.error(
                path,
                f"unknown gate {json.dumps(name)}{_suggest(name, list(GATES))}; gates: {', '.join(GATES)}",
                sid,
            )
        if spec.per_service and scope != "service":
            raise self.error(
                path,
                f"gate {json.dumps(name)} checks one service; "
                'it can only be used by a step with scope "service"',
                sid,
            )
        return name

    def gate_list(self, t: _Table, key: str, sid: str, scope: Scope) -> tuple[str, ...]:
        names = t.str_list(key)
        out: list[str] = []
        for i, g in enumerate(names):
            self.gate_name(g, (*t.path, key, i), sid, scope, "a gate")
            if g in out:
                raise t.error_at((key, i), f"gate {json.dumps(g)} is listed twice; keep one")
            out.append(g)
        return tuple(out)

    def gates_for(
        self, t: _Table, sid: str, scope: Scope, services: list[str]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        raw = t.data.get("gates_for", {})
        if not isinstance(raw, dict):
            raise t.error("gates_for", f"gates_for must be a table of service = [gates], got {_show(raw)}")
        if raw and scope != "service":
            raise t.error("gates_for", 'gates_for applies to scope "service" only; use gates')
        gt = t.child("gates_for", raw, None)
        out: list[tuple[str, tuple[str, ...]]] = []
        for svc in raw:
            if svc not in services:
                raise gt.error(
                    svc,
                    f"unknown service {json.dumps(svc)} in gates_for{_suggest(svc, services)}; "
                    f"known services: {_quoted(services)}",
                )
            out.append((svc, self.gate_list(gt, svc, sid, scope)))
        return tuple(out)

    def live(self, t: _Table, kind: StepKind, scope: Scope) -> str:
        if kind == "certs":
            if t.has("live"):
                raise t.error("live", 'a "certs" step has no live fact; remove live')
            return ""
        if not t.has("live"):
            raise t.error(None, f"live is required: how the setting is seen running ({_quoted(list(LIVE))})")
        name = t.text("live")
        fact = LIVE.get(name)
        if fact is None:
            raise t.error(
                "live",
                f"unknown live fact {json.dumps(name)}{_suggest(name, list(LIVE))}; known: {', '.join(LIVE)}",
            )
        if fact.per_instance != (scope == "service"):
            want = "per-instance" if scope == "service" else "database-level"
            raise t.error(
                "live",
                f"live fact {json.dumps(name)} does not fit scope {json.dumps(scope)}; use a {want} "
                f"one ({', '.join(n for n, f in LIVE.items() if f.per_instance == (scope == 'service'))})",
            )
        return name

    # -- the graph ---------------------------------------------------------------------------------
    def graph(self, steps: list[Step]) -> tuple[Step, ...]:
        """The steps in run order (dependencies first, then as written); refuses unknown ids and
        cycles. Linear: one depth-first pass (iterative) and a heap."""
        index = {s.id: i for i, s in enumerate(steps)}
        for i, s in enumerate(steps):
            for a in s.after:
                if a == s.id:
                    raise self.error(
                        ("steps", i, "after"), "a step cannot run after itself; remove it from after", s.id
                    )
                if a not in index:
                    raise self.error(
                        ("steps", i, "after"),
                        f"after names unknown step {json.dumps(a)}{_suggest(a, list(index))}; steps: "
                        f"{', '.join(index)}",
                        s.id,
                    )
        if cycle := self._first_cycle(steps, index):
            first = cycle[0]
            raise self.error(
                ("steps", index[first], "after"),
                f'the order forms a cycle: {" → ".join(cycle)} (→ reads "runs after"; steps of a track '
                "also run after the one written before them) — remove one of these after entries",
                first,
            )
        # run order: dependencies first, then as written
        remaining = [len(s.after) for s in steps]
        users: list[list[int]] = [[] for _ in steps]
        for i, s in enumerate(steps):
            for a in s.after:
                users[index[a]].append(i)
        ready = [i for i, n in enumerate(remaining) if n == 0]
        heapq.heapify(ready)
        out: list[Step] = []
        while ready:
            i = heapq.heappop(ready)
            out.append(steps[i])
            for u in users[i]:
                remaining[u] -= 1
                if remaining[u] == 0:
                    heapq.heappush(ready, u)
        return tuple(out)

    @staticmethod
    def _first_cycle(steps: list[Step], index: Mapping[str, int]) -> list[str]:
        """The first cycle a depth-first walk in file order meets, as [a, b, ..., a]; [] if none."""
        state: dict[str, int] = {}  # 1: on the walk, 2: done
        for s in steps:
            if s.id in state:
                continue
            walk = [s.id]
            at = {s.id: 0}
            todo = [iter(s.after)]
            state[s.id] = 1
            while todo:
                a = next(todo[-1], None)
                if a is None:
                    done = walk.pop()
                    del at[done]
                    todo.pop()
                    state[done] = 2
                elif state.get(a) == 1:
                    return [*walk[at[a] :], a]
                elif a not in state:
                    state[a] = 1
                    at[a] = len(walk)
                    walk.append(a)
                    todo.append(iter(steps[index[a]].after))
        return []

    def rollbacks(self, plan: Plan, steps: list[Step]) -> None:
        """A rollback must land on what the step before it set, not skip past it."""
        for i, s in enumerate(steps):
            for j, ch in enumerate(s.changes):
                prev = plan.last_setter_before(s, ch.var)
                if prev is None:
                    continue
                want = next(c.value for c in prev.changes if c.var == ch.var)
                if ch.rollback != want:
                    got = "unset" if ch.rollback is None else json.dumps(ch.rollback)
                    raise self.error(
                        ("steps", i, "changes", j, "rollback"),
                        f"rollback of {ch.var} is {got}, which would skip back past "
                        f"{prev.id} ({ch.var}={want}); "
                        f"write rollback.value = {json.dumps(want)}",
                        s.id,
                    )

