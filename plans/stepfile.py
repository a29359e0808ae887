"""Reading one `[[steps]]` table of a plan file into a `Step`, with one specific `PlanError` per problem
(unknown variable, gate, live fact, service or scope; a change with no rollback, or one that undoes
nothing; a per-service gate on a database step; ...). The checks that need the whole plan (`after`, cycles,
rollbacks landing on the previous step's value) are `plans.planfile`'s."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Final

from inventory.toml import Table
from inventory.tomllines import KeyPath
from plans.facts import LIVE
from plans.gates import GATES
from plans.model import DEFAULT_CERTS_COMMAND, KINDS, OTHERS, SCOPES, Change, Scope, Step, StepKind
from plans.planerror import Problems, quoted, show, suggest

__all__ = ["ID", "STEP_KEYS", "StepReader"]

ID: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")  # step and track ids
STEP_KEYS: Final = (
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


class StepReader:
    """Reads the steps of one plan: `services` (the app services an order may name), `variables` (scope ->
    the variables a step of that scope may set) and `track_ids` are the plan's, read before its steps."""

    def __init__(
        self,
        problems: Problems,
        services: Sequence[str],
        variables: Mapping[str, frozenset[str]],
        track_ids: Sequence[str],
    ) -> None:
        self.problems = problems
        self.services = list(services)
        self.variables = variables
        self.track_ids = list(track_ids)

    def step(self, t: Table, sid: str, last_in_track: Mapping[str, str]) -> Step:
        """One step; its `after` is the step written before it in its track, then its own `after`."""
        track, kind, scope = self.kind_and_scope(t)
        changes = self.changes(t, sid, kind, scope)
        order = self.order(t, sid, scope)
        gates = self.gate_list(t, "gates", sid, scope)
        gates_for = self.gates_for(t, sid, scope)
        verify, live = self.checks(t, sid, kind, scope)
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
            line=self.problems.line(t.path),
        )

    def kind_and_scope(self, t: Table) -> tuple[str, StepKind, Scope]:
        """The step's track, kind and scope, which every later check depends on."""
        track = t.text("track")
        if track not in self.track_ids:
            raise t.error(
                "track",
                f"unknown track {json.dumps(track)}{suggest(track, self.track_ids)}; tracks: {quoted(self.track_ids)}",
            )
        kind_name = t.text("kind", "config")
        if kind_name not in KINDS:
            raise t.error(
                "kind",
                f"unknown kind {json.dumps(kind_name)}{suggest(kind_name, KINDS)}; kinds: {quoted(KINDS)}",
            )
        kind = KINDS[KINDS.index(kind_name)]
        scope_name = t.text("scope", "fleet" if kind == "certs" else "")
        if not scope_name:
            raise t.error(None, f'scope is required; add scope = "database" or "service" ({quoted(SCOPES)})')
        if scope_name not in SCOPES:
            raise t.error(
                "scope",
                f"unknown scope {json.dumps(scope_name)}{suggest(scope_name, SCOPES)}; scopes: {quoted(SCOPES)}",
            )
        scope = SCOPES[SCOPES.index(scope_name)]
        if kind == "certs" and scope != "fleet":
            raise t.error("scope", 'a "certs" step is one action for the environment: scope = "fleet"')
        if kind == "config" and scope == "fleet":
            raise t.error("scope", 'scope "fleet" is only for kind "certs"; a config step is "database" or "service"')
        return track, kind, scope

    def checks(self, t: Table, sid: str, kind: StepKind, scope: Scope) -> tuple[str, str]:
        """The step's `verify` gate and its `live` fact."""
        if not t.has("verify"):
            raise t.error(None, f"verify is required: the check that says it worked ({quoted(list(GATES))})")
        verify = self.gate_name(t.data["verify"], (*t.path, "verify"), sid, scope, "verify")
        return verify, self.live(t, kind, scope)

    def changes(self, t: Table, sid: str, kind: StepKind, scope: Scope) -> tuple[Change, ...]:
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
        known = self.variables.get(scope, frozenset())
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
                    f"{suggest(var, sorted(known))} ({listed}); "
                    f"fix the name or add it to {where}",
                )
            if var in seen:
                raise c.error("var", f"{var} is set twice in this step; keep one change")
            seen.add(var)
            value = c.text("value")
            out.append(Change(var, value, self.rollback(c, var, value)))
        return tuple(out)

    def rollback(self, c: Table, var: str, value: str) -> str | None:
        how = (
            "add rollback.unset = true (delete it from the config store: back to the manifest default) "
            'or rollback.value = "..."'
        )
        if not c.has("rollback"):
            raise c.error(None, f"the change of {var} has no rollback; {how}")
        r = c.data["rollback"]
        if not isinstance(r, dict):
            raise c.error("rollback", f"rollback must be a table, got {show(r)}; {how}")
        rt = c.child("rollback", r, _ROLLBACK_KEYS)
        unset = r.get("unset", False)
        if not isinstance(unset, bool):
            raise rt.error("unset", f"rollback.unset must be true, got {show(unset)}")
        if unset and "value" in r:
            raise rt.error(None, f"the rollback of {var} both unsets and sets a value; keep one")
        if unset:
            return None
        if "value" not in r:
            raise rt.error(None, f"the change of {var} has no rollback value; {how}")
        back = r["value"]
        if not isinstance(back, str):
            raise rt.error("value", f"rollback.value must be a string, got {show(back)}")
        if back == value:
            raise rt.error("value", f"the rollback of {var} is its own value {json.dumps(value)}, so it undoes nothing")
        return back

    def order(self, t: Table, sid: str, scope: Scope) -> tuple[str, ...]:
        services = self.services
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
                    f"unknown service {json.dumps(s)} in order{suggest(s, services)}; known services: "
                    f'{quoted(services)} and "{OTHERS}" — fix the name or add it to services',
                )
            if s in seen:
                raise t.error_at(("order", i), f"{json.dumps(s)} appears twice in order; keep one")
            seen.add(s)
        return tuple(order)

    def gate_name(self, name: object, path: KeyPath, sid: str, scope: Scope, what: str) -> str:
        if not isinstance(name, str):
            raise self.problems.error(path, f"{what} must name a gate (a string), got {show(name)}", sid)
        spec = GATES.get(name)
        if spec is None:
            raise self.problems.error(
                path,
                f"unknown gate {json.dumps(name)}{suggest(name, list(GATES))}; gates: {', '.join(GATES)}",
                sid,
            )
        if spec.per_service and scope != "service":
            raise self.problems.error(
                path,
                f'gate {json.dumps(name)} checks one service; it can only be used by a step with scope "service"',
                sid,
            )
        return name

    def gate_list(self, t: Table, key: str, sid: str, scope: Scope) -> tuple[str, ...]:
        names = t.str_list(key)
        out: list[str] = []
        for i, g in enumerate(names):
            self.gate_name(g, (*t.path, key, i), sid, scope, "a gate")
            if g in out:
                raise t.error_at((key, i), f"gate {json.dumps(g)} is listed twice; keep one")
            out.append(g)
        return tuple(out)

    def gates_for(self, t: Table, sid: str, scope: Scope) -> tuple[tuple[str, tuple[str, ...]], ...]:
        services = self.services
        raw = t.data.get("gates_for", {})
        if not isinstance(raw, dict):
            raise t.error("gates_for", f"gates_for must be a table of service = [gates], got {show(raw)}")
        if raw and scope != "service":
            raise t.error("gates_for", 'gates_for applies to scope "service" only; use gates')
        gt = t.child("gates_for", raw, None)
        out: list[tuple[str, tuple[str, ...]]] = []
        for svc in raw:
            if svc not in services:
                raise gt.error(
                    svc,
                    f"unknown service {json.dumps(svc)} in gates_for{suggest(svc, services)}; "
                    f"known services: {quoted(services)}",
                )
            out.append((svc, self.gate_list(gt, svc, sid, scope)))
        return tuple(out)

    def live(self, t: Table, kind: StepKind, scope: Scope) -> str:
        if kind == "certs":
            if t.has("live"):
                raise t.error("live", 'a "certs" step has no live fact; remove live')
            return ""
        if not t.has("live"):
            raise t.error(None, f"live is required: how the setting is seen running ({quoted(list(LIVE))})")
        name = t.text("live")
        fact = LIVE.get(name)
        if fact is None:
            raise t.error(
                "live",
                f"unknown live fact {json.dumps(name)}{suggest(name, list(LIVE))}; known: {', '.join(LIVE)}",
            )
        if fact.per_instance != (scope == "service"):
            want = "per-instance" if scope == "service" else "database-level"
            raise t.error(
                "live",
                f"live fact {json.dumps(name)} does not fit scope {json.dumps(scope)}; use a {want} "
                f"one ({', '.join(n for n, f in LIVE.items() if f.per_instance == (scope == 'service'))})",
            )
        return name
