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

import difflib
import functools
import heapq
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from plans.gates import GATES, LIVE
from probes.inventory import OTHERS, format_key_path, iter_key_lines

__all__ = [
    "FORMAT_VERSIONS",
    "KINDS",
    "OTHERS",
    "SCOPES",
    "Change",
    "Plan",
    "PlanError",
    "Step",
    "Track",
    "default_plan",
    "load_plan",
    "parse_plan",
]

FORMAT_VERSIONS: Final = (1,)
KINDS: Final = ("config", "certs")
SCOPES: Final = ("fleet", "database", "service")
VARIABLE_SCOPES: Final = ("database", "service")  # the scopes that hold variables
DEFAULT_CERTS_COMMAND: Final = "cockpit certs push"

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_VAR = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

_TOP_KEYS: Final = ("version", "name", "title", "description", "services", "scopes", "tracks", "steps")
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

KeyPath = tuple[str | int, ...]


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
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(json.dumps(n) for n in names) if names else "(none)"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


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
    kind: str  # "config" | "certs"
    scope: str  # "fleet" (certs: one action for the environment) | "database" | "service" (each app service)
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
    source: str = field(default="", compare=False)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"plan {self.name!r} has no step {step_id!r}; steps: {', '.join(self.step_ids)}")

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
        seen: set[str] = set()
        todo = list(step.after)
        while todo:
            sid = todo.pop()
            if sid not in seen:
                seen.add(sid)
                todo.extend(self.step(sid).after)
        return tuple(s for s in self.steps if s.id in seen)

    def descendants(self, step: Step) -> tuple[Step, ...]:
        """Every step that runs after `step`, directly or not, in run order."""
        return tuple(s for s in self.steps if s.id != step.id and step in self.ancestors(s))

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


# --------------------------------------------------------------------------------------------
# loading


def load_plan(path: Path | str) -> Plan:
    """Read and validate the plan file at `path`."""
    p = Path(path)
    source = str(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PlanError(source, None, "", f"cannot read the plan file ({e.strerror or e})") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PlanError(source, line, "", "the file is not valid UTF-8; save it as UTF-8") from e
    return parse_plan(text, source)


@functools.cache
def default_plan() -> Plan:
    """The shipped runbook, `plans/runbook.toml`."""
    # next to this module (importlib.resources trips over editable installs' namespace mapping)
    text = (Path(__file__).resolve().parent / "runbook.toml").read_text(encoding="utf-8")
    return parse_plan(text, "plans/runbook.toml")


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*\Z")


def parse_plan(text: str, source: str) -> Plan:
    """Validate plan `text`; `source` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        line: int | None = None
        if m := _AT_LINE.search(msg):
            line = int(m.group(1))
            msg = msg[: m.start()] + f" (column {m.group(2)})"
        raise PlanError(source, line, "", f"TOML syntax error: {msg}; fix the TOML syntax there") from None
    return _Builder(text, source).build(raw)


class _Builder:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._lines: dict[str, int] | None = None

    # -- errors ---------------------------------------------------------------------------------
    def line(self, path: KeyPath) -> int | None:
        if self._lines is None:
            self._lines = dict(iter_key_lines(self.text))
        p = path
        while p:
            line = self._lines.get(format_key_path(p))
            if line is not None:
                return line
            p = p[:-1]
        return None

    def error(self, path: KeyPath, problem: str, step: str | None = None) -> PlanError:
        if step is not None:
            where = f"step {step}"
            if len(path) > 2:
                where += f": {format_key_path(path[2:])}"
        else:
            where = format_key_path(path)
        return PlanError(self.source, self.line(path), where, problem, step=step)

    # -- typed access -----------------------------------------------------------------------------
    def keys(
        self, t: Mapping[str, Any], allowed: Sequence[str], path: KeyPath, step: str | None = None
    ) -> None:
        for k in t:
            if k not in allowed:
                raise self.error(
                    (*path, k),
                    f"unknown key {json.dumps(k)}{_suggest(k, allowed)} (keys here: {', '.join(allowed)})",
                    step,
                )

    def text_value(
        self,
        t: Mapping[str, Any],
        key: str,
        path: KeyPath,
        step: str | None = None,
        *,
        default: str | None = None,
    ) -> str:
        if key not in t:
            if default is None:
                raise self.error(path, f'{key} is required; add {key} = "..."', step)
            return default
        v = t[key]
        if not isinstance(v, str):
            raise self.error((*path, key), f"{key} must be a string, got {_show(v)}", step)
        return v

    def flag(self, t: Mapping[str, Any], key: str, path: KeyPath, step: str | None) -> bool:
        v = t.get(key, False)
        if not isinstance(v, bool):
            raise self.error((*path, key), f"{key} must be true or false, got {_show(v)}", step)
        return v

    def str_list(self, t: Mapping[str, Any], key: str, path: KeyPath, step: str | None = None) -> list[str]:
        v = t.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error((*path, key), f"{key} must be an array of strings, got {_show(v)}", step)
        return list(v)

    def tables(self, raw: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        v = raw.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self.error((key,), f"{key} must be an array of tables ([[{key}]]), got {_show(v)}")
        return list(v)

    # -- the plan -------------------------------------------------------------------------------------
    def build(self, raw: dict[str, Any]) -> Plan:
        if "version" not in raw:
            raise PlanError(self.source, 1, "version", "version is required; add version = 1 at the top")
        version = raw["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version not in FORMAT_VERSIONS:
            raise self.error(
                ("version",),
                f"unsupported plan version {_show(version)}; this cockpit reads version "
                f"{', '.join(map(str, FORMAT_VERSIONS))} only — use a matching cockpit or rewrite the plan",
            )
        self.keys(raw, _TOP_KEYS, ())
        name = self.text_value(raw, "name", ())
        title = self.text_value(raw, "title", (), default=name)
        description = self.text_value(raw, "description", (), default="")
        services = self.services(raw)
        database_service, variables = self.scopes(raw, services)
        tracks_raw = self.tracks(raw)
        steps = self.steps(raw, tracks_raw, services, variables)
        ordered = self.graph(steps)
        plan = Plan(
            version=version,
            name=name,
            title=title,
            description=description,
            services=tuple(services),
            database_service=database_service,
            variables=MappingProxyType(variables),
            tracks=tuple(
                Track(tid, ttitle, tuple(s.id for s in steps if s.track == tid)) for tid, ttitle in tracks_raw
            ),
            steps=ordered,
            source=self.source,
        )
        self.rollbacks(plan, steps)
        return plan

    def services(self, raw: Mapping[str, Any]) -> list[str]:
        services = self.str_list(raw, "services", ())
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
            if not _SERVICE.match(s):
                raise self.error(("services", i), f"{json.dumps(s)} is not a valid service name")
            if s in seen:
                raise self.error(("services", i), f"service {json.dumps(s)} is listed twice; remove one")
            seen.add(s)
        return services

    def scopes(self, raw: Mapping[str, Any], services: list[str]) -> tuple[str, dict[str, frozenset[str]]]:
        scopes = raw.get("scopes", {})
        if not isinstance(scopes, dict):
            raise self.error(("scopes",), f"scopes must be a table, got {_show(scopes)}")
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
            self.keys(t, _SCOPE_KEYS[scope], path)
            names = self.str_list(t, "variables", path)
            for i, v in enumerate(names):
                if not _VAR.match(v):
                    raise self.error(
                        (*path, "variables", i), f"{json.dumps(v)} is not a variable name (A-Z, 0-9, _)"
                    )
            variables[scope] = frozenset(names)
            if scope == "database":
                database_service = self.text_value(t, "service", path, default="database")
                if database_service in services or database_service == OTHERS:
                    raise self.error(
                        (*path, "service"),
                        f"the database service {json.dumps(database_service)} is also listed as an app "
                        "service; remove it from services",
                    )
        return database_service, variables

    def tracks(self, raw: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, t in enumerate(self.tables(raw, "tracks")):
            path: KeyPath = ("tracks", i)
            self.keys(t, _TRACK_KEYS, path)
            tid = self.text_value(t, "id", path)
            if not _ID.match(tid):
                raise self.error(
                    (*path, "id"), f"track id {json.dumps(tid)} must be lowercase letters, digits, -"
                )
            if any(tid == o for o, _ in out):
                raise self.error(
                    (*path, "id"), f"duplicate track id {json.dumps(tid)}; give each track its own id"
                )
            out.append((tid, self.text_value(t, "title", path, default=tid)))
        if not out:
            raise self.error(("tracks",), 'a plan needs at least one [[tracks]] (id = "...", title = "...")')
        return out

    def steps(
        self,
        raw: Mapping[str, Any],
        tracks: list[tuple[str, str]],
        services: list[str],
        variables: Mapping[str, frozenset[str]],
    ) -> list[Step]:
        tables = self.tables(raw, "steps")
        if not tables:
            raise self.error(("steps",), "a plan needs at least one [[steps]]")
        out: list[Step] = []
        ids: dict[str, int] = {}
        last_in_track: dict[str, str] = {}
        track_ids = [t for t, _ in tracks]
        for i, t in enumerate(tables):
            path: KeyPath = ("steps", i)
            sid = t.get("id")
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
            step = self.step(t, path, sid, track_ids, services, variables)
            prev = last_in_track.get(step.track)
            explicit = step.after
            after = ((prev,) if prev is not None else ()) + tuple(a for a in explicit if a != prev)
            last_in_track[step.track] = sid
            out.append(_with_after(step, after))
        return out

    def step(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        sid: str,
        track_ids: list[str],
        services: list[str],
        variables: Mapping[str, frozenset[str]],
    ) -> Step:
        self.keys(t, _STEP_KEYS, path, sid)
        track = self.text_value(t, "track", path, sid)
        if track not in track_ids:
            raise self.error(
                (*path, "track"),
                f"unknown track {json.dumps(track)}{_suggest(track, track_ids)}; "
                f"tracks: {_quoted(track_ids)}",
                sid,
            )
        kind = self.text_value(t, "kind", path, sid, default="config")
        if kind not in KINDS:
            raise self.error(
                (*path, "kind"),
                f"unknown kind {json.dumps(kind)}{_suggest(kind, KINDS)}; kinds: {_quoted(KINDS)}",
                sid,
            )
        scope = self.text_value(t, "scope", path, sid, default="fleet" if kind == "certs" else "")
        if not scope:
            raise self.error(
                path, f'scope is required; add scope = "database" or "service" ({_quoted(SCOPES)})', sid
            )
        if scope not in SCOPES:
            raise self.error(
                (*path, "scope"),
                f"unknown scope {json.dumps(scope)}{_suggest(scope, SCOPES)}; scopes: {_quoted(SCOPES)}",
                sid,
            )
        if kind == "certs" and scope != "fleet":
            raise self.error(
                (*path, "scope"), 'a "certs" step is one action for the environment: scope = "fleet"', sid
            )
        if kind == "config" and scope == "fleet":
            raise self.error(
                (*path, "scope"),
                'scope "fleet" is only for kind "certs"; a config step is "database" or "service"',
                sid,
            )
        changes = self.changes(t, path, sid, kind, scope, variables)
        order = self.order(t, path, sid, scope, services)
        gates = self.gate_list(t, "gates", path, sid, scope)
        gates_for = self.gates_for(t, path, sid, scope, services)
        if "verify" not in t:
            raise self.error(
                path, f"verify is required: the check that says it worked ({_quoted(list(GATES))})", sid
            )
        verify = self.gate_name(t["verify"], (*path, "verify"), sid, scope, "verify")
        live = self.live(t, path, sid, kind, scope)
        deadline = self.deadline(t, path, sid)
        command = self.text_value(
            t, "command", path, sid, default=DEFAULT_CERTS_COMMAND if kind == "certs" else ""
        )
        if command and kind != "certs":
            raise self.error((*path, "command"), 'command applies to kind "certs" only; remove it', sid)
        after = self.str_list(t, "after", path, sid)
        return Step(
            id=sid,
            track=self.text_value(t, "track", path, sid),
            title=self.text_value(t, "title", path, sid, default=sid),
            kind=kind,
            scope=scope,
            changes=changes,
            order=order,
            after=tuple(after),
            gates=gates,
            gates_for=gates_for,
            verify=verify,
            live=live,
            deadline=deadline,
            auto_rollback=self.flag(t, "auto_rollback", path, sid),
            optional=self.flag(t, "optional", path, sid),
            command=command,
            description=self.text_value(t, "description", path, sid, default=""),
            line=self.line(path),
        )

    def changes(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        sid: str,
        kind: str,
        scope: str,
        variables: Mapping[str, frozenset[str]],
    ) -> tuple[Change, ...]:
        raw = t.get("changes", [])
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise self.error(
                (*path, "changes"), "changes must be an array of tables ([[steps.changes]])", sid
            )
        if kind == "certs":
            if raw:
                raise self.error(
                    (*path, "changes"),
                    'a "certs" step sets no variable (its action is its command); remove changes',
                    sid,
                )
            return ()
        if not raw:
            raise self.error(
                path,
                "a config step needs at least one [[steps.changes]] "
                '(var = "...", value = "...", rollback...)',
                sid,
            )
        known = variables.get(scope, frozenset())
        out: list[Change] = []
        for j, c in enumerate(raw):
            cpath: KeyPath = (*path, "changes", j)
            self.keys(c, _CHANGE_KEYS, cpath, sid)
            var = self.text_value(c, "var", cpath, sid)
            if var not in known:
                where = f"[scopes.{scope}] variables"
                listed = f"known: {', '.join(sorted(known))}" if known else f"{where} lists none"
                raise self.error(
                    (*cpath, "var"),
                    f"unknown variable {var} for scope {json.dumps(scope)}"
                    f"{_suggest(var, sorted(known))} ({listed}); "
                    f"fix the name or add it to {where}",
                    sid,
                )
            if any(o.var == var for o in out):
                raise self.error((*cpath, "var"), f"{var} is set twice in this step; keep one change", sid)
            value = self.text_value(c, "value", cpath, sid)
            rollback = self.rollback(c, cpath, sid, var, value)
            out.append(Change(var, value, rollback))
        return tuple(out)

    def rollback(self, c: Mapping[str, Any], cpath: KeyPath, sid: str, var: str, value: str) -> str | None:
        how = (
            "add rollback.unset = true (delete it from the config store: back to the manifest default) "
            'or rollback.value = "..."'
        )
        if "rollback" not in c:
            raise self.error(cpath, f"the change of {var} has no rollback; {how}", sid)
        r = c["rollback"]
        rpath: KeyPath = (*cpath, "rollback")
        if not isinstance(r, dict):
            raise self.error(rpath, f"rollback must be a table, got {_show(r)}; {how}", sid)
        self.keys(r, _ROLLBACK_KEYS, rpath, sid)
        unset = r.get("unset", False)
        if not isinstance(unset, bool):
            raise self.error((*rpath, "unset"), f"rollback.unset must be true, got {_show(unset)}", sid)
        if unset and "value" in r:
            raise self.error(rpath, f"the rollback of {var} both unsets and sets a value; keep one", sid)
        if unset:
            return None
        if "value" not in r:
            raise self.error(rpath, f"the change of {var} has no rollback value; {how}", sid)
        back = r["value"]
        if not isinstance(back, str):
            raise self.error((*rpath, "value"), f"rollback.value must be a string, got {_show(back)}", sid)
        if back == value:
            raise self.error(
                (*rpath, "value"),
                f"the rollback of {var} is its own value {json.dumps(value)}, so it undoes nothing",
                sid,
            )
        return back

    def order(
        self, t: Mapping[str, Any], path: KeyPath, sid: str, scope: str, services: list[str]
    ) -> tuple[str, ...]:
        if scope != "service":
            if "order" in t:
                raise self.error((*path, "order"), 'order applies to scope "service" only; remove it', sid)
            return ()
        order = self.str_list(t, "order", path, sid)
        if not order:
            raise self.error(
                path, f'a per-service step needs an order, e.g. order = ["api", "web", "{OTHERS}"]', sid
            )
        seen: set[str] = set()
        for i, s in enumerate(order):
            if s != OTHERS and s not in services:
                raise self.error(
                    (*path, "order", i),
                    f"unknown service {json.dumps(s)} in order{_suggest(s, services)}; known services: "
                    f'{_quoted(services)} and "{OTHERS}" — fix the name or add it to services',
                    sid,
                )
            if s in seen:
                raise self.error(
                    (*path, "order", i), f"{json.dumps(s)} appears twice in order; keep one", sid
                )
            seen.add(s)
        return tuple(order)

    def gate_name(self, name: object, path: KeyPath, sid: str, scope: str, what: str) -> str:
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

    def gate_list(
        self, t: Mapping[str, Any], key: str, path: KeyPath, sid: str, scope: str
    ) -> tuple[str, ...]:
        names = self.str_list(t, key, path, sid)
        out: list[str] = []
        for i, g in enumerate(names):
            self.gate_name(g, (*path, key, i), sid, scope, "a gate")
            if g in out:
                raise self.error((*path, key, i), f"gate {json.dumps(g)} is listed twice; keep one", sid)
            out.append(g)
        return tuple(out)

    def gates_for(
        self, t: Mapping[str, Any], path: KeyPath, sid: str, scope: str, services: list[str]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        raw = t.get("gates_for", {})
        gpath: KeyPath = (*path, "gates_for")
        if not isinstance(raw, dict):
            raise self.error(gpath, f"gates_for must be a table of service = [gates], got {_show(raw)}", sid)
        if raw and scope != "service":
            raise self.error(gpath, 'gates_for applies to scope "service" only; use gates', sid)
        out: list[tuple[str, tuple[str, ...]]] = []
        for svc in raw:
            if svc not in services:
                raise self.error(
                    (*gpath, svc),
                    f"unknown service {json.dumps(svc)} in gates_for{_suggest(svc, services)}; "
                    "known services: "
                    f"{_quoted(services)}",
                    sid,
                )
            out.append((svc, self.gate_list(raw, svc, gpath, sid, scope)))
        return tuple(out)

    def live(self, t: Mapping[str, Any], path: KeyPath, sid: str, kind: str, scope: str) -> str:
        if kind == "certs":
            if "live" in t:
                raise self.error((*path, "live"), 'a "certs" step has no live fact; remove live', sid)
            return ""
        if "live" not in t:
            raise self.error(
                path, f"live is required: how the setting is seen running ({_quoted(list(LIVE))})", sid
            )
        name = self.text_value(t, "live", path, sid)
        fact = LIVE.get(name)
        if fact is None:
            raise self.error(
                (*path, "live"),
                f"unknown live fact {json.dumps(name)}{_suggest(name, list(LIVE))}; known: {', '.join(LIVE)}",
                sid,
            )
        if fact.per_instance != (scope == "service"):
            want = "per-instance" if scope == "service" else "database-level"
            raise self.error(
                (*path, "live"),
                f"live fact {json.dumps(name)} does not fit scope {json.dumps(scope)}; use a {want} "
                f"one ({', '.join(n for n, f in LIVE.items() if f.per_instance == (scope == 'service'))})",
                sid,
            )
        return name

    def deadline(self, t: Mapping[str, Any], path: KeyPath, sid: str) -> float:
        if "deadline" not in t:
            raise self.error(path, "deadline is required: seconds from apply until it must be verified", sid)
        v = t["deadline"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise self.error(
                (*path, "deadline"), f"deadline must be a positive number of seconds, got {_show(v)}", sid
            )
        return float(v)

    # -- the graph ---------------------------------------------------------------------------------
    def graph(self, steps: list[Step]) -> tuple[Step, ...]:
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
        # cycles: depth-first, reporting the first cycle found in file order
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        stack: list[str] = []

        def visit(sid: str) -> list[str] | None:
            state[sid] = 1
            stack.append(sid)
            for a in steps[index[sid]].after:
                if state.get(a) == 1:
                    return [*stack[stack.index(a) :], a]
                if a not in state and (cycle := visit(a)) is not None:
                    return cycle
            stack.pop()
            state[sid] = 2
            return None

        for s in steps:
            if s.id not in state and (cycle := visit(s.id)) is not None:
                first = cycle[0]
                raise self.error(
                    ("steps", index[first], "after"),
                    f'the order forms a cycle: {" → ".join(cycle)} (→ reads "runs after"; steps of a track '
                    "also run after the one written before them) — remove one of these after entries",
                    first,
                )
        # run order: dependencies first, then as written
        remaining = {s.id: len(s.after) for s in steps}
        users: dict[str, list[str]] = {s.id: [] for s in steps}
        for s in steps:
            for a in s.after:
                users[a].append(s.id)
        ready = [index[s.id] for s in steps if remaining[s.id] == 0]
        heapq.heapify(ready)
        out: list[Step] = []
        while ready:
            s = steps[heapq.heappop(ready)]
            out.append(s)
            for u in users[s.id]:
                remaining[u] -= 1
                if remaining[u] == 0:
                    heapq.heappush(ready, index[u])
        return tuple(out)

    def rollbacks(self, plan: Plan, steps: list[Step]) -> None:
        """A rollback must land on what the step before it set, not skip past it."""
        index = {s.id: i for i, s in enumerate(steps)}
        for s in steps:
            ancestors = plan.ancestors(s)
            for j, ch in enumerate(s.changes):
                earlier = [
                    a for a in ancestors if a.scope == s.scope and any(c.var == ch.var for c in a.changes)
                ]
                if not earlier:
                    continue
                prev = earlier[-1]
                want = next(c.value for c in prev.changes if c.var == ch.var)
                if ch.rollback != want:
                    got = "unset" if ch.rollback is None else json.dumps(ch.rollback)
                    raise self.error(
                        ("steps", index[s.id], "changes", j, "rollback"),
                        f"rollback of {ch.var} is {got}, which would skip back past "
                        f"{prev.id} ({ch.var}={want}); "
                        f"write rollback.value = {json.dumps(want)}",
                        s.id,
                    )


def _with_after(step: Step, after: tuple[str, ...]) -> Step:
    return replace(step, after=after)
