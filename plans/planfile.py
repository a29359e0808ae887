"""Reading a plan file (TOML, format version 1) into a validated `Plan`.

`load_plan(path)` / `parse_plan(text, source)` read and validate a plan; the format is documented in
`docs/plan.md`. The top level (version, services, scopes, tracks) is read here, each `[[steps]]` table
by `plans.stepfile`, then the graph is proved: every `after` names a step, there is no cycle, and each
rollback lands on what the step before it (in run order, same scope) set. Each problem raises one
`PlanError` that names the file, the line, the step and what to do.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final

from inventory import toml as tomlreader
from inventory.names import service_name_problem
from inventory.toml import Table
from inventory.tomllines import KeyPath
from plans.hazards import has_rule
from plans.model import DEFAULT_CA_FILE_VARIABLES, FORMAT_VERSIONS, OTHERS, VARIABLE_SCOPES, Plan, Step, Track
from plans.planerror import PlanError, Problems, quoted, show, suggest
from plans.stepfile import ID, STEP_KEYS, StepReader

__all__ = ["load_plan", "parse_plan"]

_VAR: Final = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
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


def _version_problem(value: object) -> str:
    return (
        f"unsupported plan version {show(value)}; this cockpit reads version "
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


class _Builder:
    """Reads one parsed plan file: the top level here, each step with a `StepReader`."""

    def __init__(self, doc: tomlreader.Document) -> None:
        self.doc = doc
        self.source = doc.source
        self.problems = Problems(doc)

    # -- errors ---------------------------------------------------------------------------------
    def error(self, path: KeyPath, problem: str, step: str | None = None) -> PlanError:
        return self.problems.error(path, problem, step)

    # -- the plan -------------------------------------------------------------------------------------
    def build(self) -> Plan:
        raw = self.doc.data
        if "version" not in raw:
            raise PlanError(self.source, 1, "version", "version is required; add version = 1 at the top")
        version = raw["version"]
        if not _VERSIONS.accepts(version):
            raise self.error(("version",), _version_problem(version))
        assert isinstance(version, int)
        top = self.problems.table(raw, (), _TOP_KEYS)
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
            warnings=_warnings(ordered),
        )
        self.rollbacks(plan, steps)
        return plan

    def services(self, top: Table) -> list[str]:
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

    def scopes(self, top: Table, services: list[str]) -> tuple[str, dict[str, frozenset[str]]]:
        scopes = top.raw_table("scopes") or {}
        variables: dict[str, frozenset[str]] = {}
        database_service = "database"
        for scope, t in scopes.items():
            path: KeyPath = ("scopes", scope)
            if scope not in VARIABLE_SCOPES:
                hint = ' ("fleet" steps set no variable)' if scope == "fleet" else suggest(scope, VARIABLE_SCOPES)
                raise self.error(
                    path,
                    f"unknown scope {json.dumps(scope)}{hint}; scopes that hold variables: {quoted(VARIABLE_SCOPES)}",
                )
            if not isinstance(t, dict):
                raise self.error(path, f"[scopes.{scope}] must be a table, got {show(t)}")
            st = self.problems.table(t, path, _SCOPE_KEYS[scope])
            names = st.str_list("variables")
            for i, v in enumerate(names):
                if not _VAR.match(v):
                    raise self.error((*path, "variables", i), f"{json.dumps(v)} is not a variable name (A-Z, 0-9, _)")
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

    def ca_file_variables(self, top: Table, variables: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
        known = variables.get("service", frozenset())
        if not top.has("ca_file_variables"):
            return tuple(v for v in DEFAULT_CA_FILE_VARIABLES if v in known)
        names = top.str_list("ca_file_variables")
        for i, v in enumerate(names):
            if v not in known:
                listed = f"known: {', '.join(sorted(known))}" if known else "[scopes.service] variables lists none"
                raise self.error(
                    ("ca_file_variables", i),
                    f'{json.dumps(v)} is not a variable of scope "service"{suggest(v, sorted(known))} '
                    f"({listed}); add it to [scopes.service] variables, or remove it",
                )
            if v in names[:i]:
                raise self.error(("ca_file_variables", i), f"{v} is listed twice; keep one")
        return tuple(names)

    def tracks(self, top: Table) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        for t in top.tables("tracks", _TRACK_KEYS):
            tid = t.text("id")
            if not ID.match(tid):
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
        top: Table,
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
        reader = StepReader(self.problems, services, variables, [t for t, _ in tracks])
        for i, t in enumerate(tables):
            path: KeyPath = ("steps", i)
            sid = t.data.get("id")
            if not isinstance(sid, str):
                raise self.error(
                    path if sid is None else (*path, "id"),
                    f'every step needs an id = "..." (got {show(sid) if sid is not None else "none"})',
                )
            if not ID.match(sid):
                raise self.error(
                    (*path, "id"),
                    f'step id {json.dumps(sid)} must be lowercase letters, digits, -, e.g. "pg-2"',
                )
            if sid in ids:
                raise self.error(
                    (*path, "id"),
                    f"duplicate step id {json.dumps(sid)} (also step #{ids[sid] + 1}); give each step its own id",
                    sid,
                )
            ids[sid] = i
            st = self.problems.table(t.data, path, STEP_KEYS, sid)
            step = reader.step(st, sid, last_in_track)
            last_in_track[step.track] = sid
            out.append(step)
        return out

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
                        f"after names unknown step {json.dumps(a)}{suggest(a, list(index))}; steps: {', '.join(index)}",
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


def _warnings(steps: Sequence[Step]) -> tuple[str, ...]:
    """What the plan sets that the cockpit has no rollback-safety rule for (plans.hazards): it loads — a
    plan may add variables with no code change — but every rollback of such a variable says the cockpit
    cannot tell whether it is safe."""
    out: list[str] = []
    for step in steps:
        for ch in step.changes:
            if not has_rule(step.scope, ch.var):
                out.append(
                    f"step {step.id}: {ch.var} ({step.scope}) has no rollback-safety rule: the cockpit "
                    "cannot tell when rolling it back is safe — add one to plans/hazards.py HAZARDS"
                )
    return tuple(dict.fromkeys(out))
