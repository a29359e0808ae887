"""Snapshots turned into the redacted keyed state a recording stores, incrementally.

Only what changed since the previous snapshot is turned into JSON and redacted again (a 50-host
snapshot changes a few timings per round, not its 300 checks). No textual here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from probes.model import CheckResult
from probes.snapshot import DatabaseState, FleetSnapshot, LegView, to_json_value
from session.recording.keyed import Json, is_unordered, is_volatile, keyed_list, normal_check, sort_key, sorted_keyed
from session.redact import Redactor


def _steady(evidence: Mapping[str, Json]) -> dict[str, Json]:
    """Evidence without its clocks and with its connection lists sorted: what a diff would see of it."""
    return {
        k: sorted(v, key=sort_key) if is_unordered(v) else v
        for k, v in evidence.items()
        if not is_volatile(k, True, True)
    }


def _same_check(a: CheckResult, b: CheckResult) -> bool:
    """Equal but for what a diff ignores (timings, clocks in evidence, the order of connection lists)."""
    return (
        a.check == b.check
        and a.target == b.target
        and a.verdict is b.verdict
        and a.summary == b.summary
        and (a.evidence == b.evidence or _steady(a.evidence) == _steady(b.evidence))
    )


def _same_legs(a: DatabaseState, b: DatabaseState) -> bool:
    """The same connections on every leg, in whatever order the servers listed them."""
    if a.legs == b.legs:
        return True
    if a.legs.keys() != b.legs.keys():
        return False
    for leg, va in a.legs.items():
        vb = b.legs[leg]
        if isinstance(va, LegView) and isinstance(vb, LegView):
            if (
                va.own != vb.own
                or len(va.connections) != len(vb.connections)
                or set(va.connections) != set(vb.connections)
            ):
                return False
        elif va != vb:
            return False
    return True


class SnapshotConverter:
    """Snapshot -> redacted keyed state, reusing the entries of the previous snapshot that did not change.

    A reused check keeps its previous timing; diffs ignore timings anyway (VOLATILE) and every full
    frame is converted from scratch (`fresh=True`).
    """

    def __init__(self, redactor: Redactor) -> None:
        self.r = redactor
        self.prev: FleetSnapshot | None = None
        self.state: dict[str, Json] | None = None
        self._checks: dict[tuple[str, ...], dict[str, tuple[CheckResult, Json]]] = {}

    def _checks_keyed(self, where: tuple[str, ...], checks: Sequence[CheckResult], fresh: bool) -> dict[str, Json]:
        old = {} if fresh else self._checks.get(where, {})
        out: dict[str, Json] = {}
        mine: dict[str, tuple[CheckResult, Json]] = {}
        for c in checks:
            base = f"{c.check} {c.target}"
            key = base
            n = 1
            while key in out:
                n += 1
                key = f"{base} #{n}"
            hit = old.get(key)
            same = hit is not None and (hit[0] is c or _same_check(hit[0], c))
            entry = hit[1] if hit is not None and same else self.r.value(normal_check(c.to_json()))
            out[key] = entry
            mine[key] = (c, entry)
        self._checks[where] = mine
        return out

    def _legs(self, db: DatabaseState) -> dict[str, Json]:
        """The legs, each one's observed connections keyed by identity and sorted (the server's order is
        not a fact: SHOW CLIENTS and CLIENT LIST list them differently every round)."""
        out: dict[str, Json] = {}
        for leg, view in db.legs.items():
            js = self.r.value(to_json_value(view))
            if isinstance(js, dict) and isinstance(js.get("connections"), list):
                js["connections"] = sorted_keyed(
                    keyed_list(js["connections"], ("leg", "addr"), ("database", "legs", str(leg), "connections"))
                )
            out[str(leg)] = js
        return out

    def convert(self, s: FleetSnapshot, *, fresh: bool) -> dict[str, Json]:
        """The keyed, redacted state of `s`; `fresh`: converted from scratch (a full frame)."""
        prev = None if fresh else self.prev
        ps = None if fresh else self.state
        r = self.r
        # the names of who holds what are not secrets (session.redact: "redact values only")
        r.add_public([*s.configured, *(i.host for i in s.instances), *(i.service for i in s.instances)])
        out: dict[str, Json] = {}
        for name in ("env", "taken_at", "duration_ms", "managed_database"):
            out[name] = r.value(getattr(s, name))
        if ps is not None and prev is not None and prev.configured == s.configured:
            out["configured"] = ps["configured"]
        else:
            out["configured"] = r.value(
                {svc: {var: cv.to_json() for var, cv in vs.items()} for svc, vs in s.configured.items()}
            )
        out["database"] = self._database(s, prev, ps, fresh)
        out["instances"] = self._instances(s, prev, ps, fresh)
        out["certs"] = self._checks_keyed(("certs",), s.certs, fresh)
        out["checks"] = self._checks_keyed(("checks",), s.checks, fresh)
        out["causes"] = r.value(to_json_value(s.causes))
        out["schema"] = s.schema
        out["verdict"] = s.verdict.value
        self.prev = s
        self.state = out
        return out

    def _database(self, s: FleetSnapshot, prev: FleetSnapshot | None, ps: dict[str, Json] | None, fresh: bool) -> Json:
        """The database's state; its legs reused from `ps` when their connections did not change."""
        r = self.r
        db = s.database
        if not isinstance(db, DatabaseState):
            return r.value(to_json_value(db))
        pdb = prev.database if prev is not None and isinstance(prev.database, DatabaseState) else None
        dbo: dict[str, Json] = {}
        for f_ in db.__dataclass_fields__:
            if f_ == "legs":
                same = (
                    pdb is not None
                    and ps is not None
                    and isinstance(ps.get("database"), dict)
                    and "legs" in ps["database"]
                    and _same_legs(pdb, db)
                )
                dbo[f_] = ps["database"]["legs"] if same and ps is not None else self._legs(db)
            elif f_ == "checks":
                dbo[f_] = self._checks_keyed(("database",), db.checks, fresh)
            else:
                dbo[f_] = r.value(to_json_value(getattr(db, f_)), f_)
        return dbo

    def _instances(
        self, s: FleetSnapshot, prev: FleetSnapshot | None, ps: dict[str, Json] | None, fresh: bool
    ) -> dict[str, Json]:
        """The instances keyed by host; an instance that did not change is reused from `ps` whole."""
        r = self.r
        pinst = {i.host: i for i in prev.instances} if prev is not None else {}
        insts: dict[str, Json] = {}
        for inst in s.instances:
            key = inst.host
            n = 1
            while key in insts:
                n += 1
                key = f"{inst.host} #{n}"
            old = pinst.get(inst.host)
            checks = self._checks_keyed(("instances", key), inst.checks, fresh)
            if (
                old is not None
                and ps is not None
                and key in ps["instances"]
                and all(getattr(old, f_) == getattr(inst, f_) for f_ in inst.__dataclass_fields__ if f_ != "checks")
                and ps["instances"][key]["checks"] == checks
            ):
                insts[key] = ps["instances"][key]
                continue
            io: dict[str, Json] = {}
            for f_ in inst.__dataclass_fields__:
                v = getattr(inst, f_)
                if f_ == "checks":
                    io[f_] = checks
                elif f_ == "configured":
                    io[f_] = r.value({var: cv.to_json() for var, cv in v.items()})
                elif f_ == "drift":
                    io[f_] = r.value(list(v))
                else:
                    io[f_] = r.value(to_json_value(v), f_)
            insts[key] = io
        return insts
