"""Could-not-measure never opens a gate: for every gate, in every fleet state where it is open, every fact
the gate reads is made unknown in turn — and the gate is then not open.

Which facts a gate reads is recorded, not guessed: the snapshot's parts are swapped for subclasses that
note every field read (and every key of the mappings: configured values, legs, CA files), so a gate that
starts to read a new fact is covered by this test without editing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plans.gates import GATES, evaluate
from plans.plan import default_plan
from probes.model import CheckResult, Unknown, Verdict, Why
from probes.snapshot import DatabaseState, FleetSnapshot, InstanceState
from tests.snapshots_factory import SERVICES, T0, fleet

PLAN = default_plan()
UNKNOWN = Unknown(Why.TIMEOUT, "no answer in time")
STATES = [(pg, 0) for pg in range(1, 8)] + [(7, r) for r in range(1, 4)]

Path = tuple[Any, ...]  # where a fact sits: ("database", field), ("instance", host, field), …


class _Reads(dict[Any, Any]):
    """A mapping that notes the keys read from it."""

    def __init__(self, data: Any, path: Path, log: set[Path]) -> None:
        super().__init__(data)
        self._path = path
        self._log = log

    def __getitem__(self, key: Any) -> Any:
        self._log.add((*self._path, key))
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self._log.add((*self._path, key))
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._log.add((*self._path, key))
        return super().__contains__(key)

    def items(self) -> Any:
        for k in self:
            self._log.add((*self._path, k))
        return super().items()

    def values(self) -> Any:
        for k in self:
            self._log.add((*self._path, k))
        return super().values()


def _recording(obj: Any, path: Path, log: set[Path]) -> Any:
    """A copy of a snapshot part whose field reads are noted in `log`."""
    cls = type(obj)
    fields = [f.name for f in dataclasses.fields(cls)]

    class Recorded(cls):  # type: ignore[valid-type, misc]
        def __getattribute__(self, name: str) -> Any:
            if name in fields:
                log.add((*path, name))
            return super().__getattribute__(name)

    values = {}
    for f in fields:
        v = getattr(obj, f)
        if isinstance(v, dict) or (hasattr(v, "keys") and hasattr(v, "__getitem__") and not isinstance(v, str)):
            v = _Reads(v, (*path, f), log)
        values[f] = v
    return Recorded(**values)


def recorded(s: FleetSnapshot) -> tuple[FleetSnapshot, set[Path]]:
    log: set[Path] = set()
    db = s.database if isinstance(s.database, Unknown) else _recording(s.database, ("database",), log)
    insts = tuple(_recording(i, ("instance", i.host), log) for i in s.instances)
    configured = _Reads(
        {svc: _Reads(v, ("configured", svc), log) for svc, v in s.configured.items()}, ("configured",), log
    )
    return dataclasses.replace(s, database=db, instances=insts, configured=configured), log


def with_unknown(s: FleetSnapshot, path: Path) -> FleetSnapshot | None:
    """`s` with the fact at `path` made unknown (None when the path holds no fact, e.g. a key never set)."""
    kind = path[0]
    if kind == "database" and len(path) >= 2:
        assert isinstance(s.database, DatabaseState)
        name = path[1]
        if name in ("host", "checks"):
            return None
        if name in ("legs",) and len(path) == 3:
            legs = dict(s.database.legs)
            if path[2] not in legs:
                return None
            legs[path[2]] = UNKNOWN
            return dataclasses.replace(s, database=dataclasses.replace(s.database, legs=legs))
        if name == "legs":
            return None
        return dataclasses.replace(s, database=dataclasses.replace(s.database, **{name: UNKNOWN}))
    if kind == "instance" and len(path) >= 3:
        host, name = path[1], path[2]
        if name in ("host", "service", "address", "consumes", "drift", "checks"):
            return None

        def change(i: InstanceState) -> InstanceState:
            if name == "ca_files":
                if len(path) != 4 or path[3] not in i.ca_files:
                    return i
                return dataclasses.replace(i, ca_files={**i.ca_files, path[3]: UNKNOWN})
            if name == "configured":
                if len(path) != 4 or path[3] not in i.configured:
                    return i
                return dataclasses.replace(i, configured={**i.configured, path[3]: UNKNOWN})
            return dataclasses.replace(i, **{name: UNKNOWN})

        new = tuple(change(i) if i.host == host else i for i in s.instances)
        return None if new == s.instances else dataclasses.replace(s, instances=new)
    if kind == "configured" and len(path) == 3:
        svc, var = path[1], path[2]
        if var not in s.configured.get(svc, {}):
            return None
        configured = {k: dict(v) for k, v in s.configured.items()}
        configured[svc][var] = UNKNOWN
        return dataclasses.replace(s, configured=configured)
    return None


def cases() -> Iterator[tuple[str, str | None, int, int, FleetSnapshot]]:
    for pg, redis in STATES:
        snap = fleet(pg, redis)
        for name, spec in GATES.items():
            for svc in SERVICES if spec.per_service else (None,):
                yield name, svc, pg, redis, snap


def _open(name: str, snap: FleetSnapshot, svc: str | None) -> bool:
    return evaluate(name, snap, service=svc, now=T0 + 1, plan=PLAN).open


def test_every_fact_a_gate_reads_blocks_it_when_unknown() -> None:
    checked = 0
    gates_seen: set[str] = set()
    for name, svc, pg, redis, snap in cases():
        if not _open(name, snap, svc):
            continue
        spy, log = recorded(snap)
        assert evaluate(name, spy, service=svc, now=T0 + 1, plan=PLAN).open  # recording changes nothing
        for path in sorted(log, key=repr):
            broken = with_unknown(snap, path)
            if broken is None:
                continue
            r = evaluate(name, broken, service=svc, now=T0 + 1, plan=PLAN)
            assert r.status != "open", (name, svc, (pg, redis), path, r.reason)
            checked += 1
        gates_seen.add(name)
    assert gates_seen == set(GATES), set(GATES) - gates_seen  # every gate was open somewhere, and checked
    assert checked > 500


def test_an_unobserved_database_or_unreadable_certs_open_nothing() -> None:
    for name, svc, _pg, _redis, snap in cases():
        if not _open(name, snap, svc):
            continue
        no_db = dataclasses.replace(snap, database=UNKNOWN)
        assert not _open(name, no_db, svc) or name in (
            "certs_valid",
            "telpro_ssl_build",
            "ca_files",
            "service_postgres_tls",
            "service_redis_tls",
        ), name
        errors = tuple(dataclasses.replace(c, verdict=Verdict.ERROR, why=Why.REFUSED) for c in snap.certs)
        if name == "certs_valid":
            assert not _open(name, dataclasses.replace(snap, certs=errors, checks=errors), svc)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(STATES), st.sampled_from(sorted(GATES)), st.sampled_from(SERVICES), st.data())
def test_any_set_of_unknown_facts_never_opens_a_closed_or_unknown_gate(
    state: tuple[int, int], name: str, service: str, data: st.DataObject
) -> None:
    """Unknowns only ever take a gate away from "open": a gate that is closed or unknown stays so however
    many more facts become unknown, and an open one opens only if none of the facts it read changed."""
    svc = service if GATES[name].per_service else None
    snap = fleet(*state)
    before = evaluate(name, snap, service=svc, now=T0 + 1, plan=PLAN)
    spy, log = recorded(snap)
    evaluate(name, spy, service=svc, now=T0 + 1, plan=PLAN)
    paths = sorted(log, key=repr)
    if not paths:
        return
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=6, unique_by=repr))
    broken: FleetSnapshot = snap
    for p in chosen:
        nxt = with_unknown(broken, p)
        if nxt is not None:
            broken = nxt
    after = evaluate(name, broken, service=svc, now=T0 + 1, plan=PLAN)
    if broken is not snap:
        assert after.status != "open" or (before.status == "open" and broken == snap), (name, chosen, after.reason)
    if before.status != "open":
        assert after.status != "open"


def test_a_failed_check_is_not_a_measured_fact() -> None:
    """An ERROR result says why it could not measure; it never reads as ok or as fail."""
    c = CheckResult("tls.postgres", "db:5432", Verdict.ERROR, "connect to db:5432 timed out after 3s")
    assert c.why is Why.TIMEOUT and c.unknown is not None
    with pytest.raises(TypeError, match="no truth value"):
        bool(c.unknown)
