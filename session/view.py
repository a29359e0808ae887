"""What the screens show, computed from one `FleetSnapshot`: frozen rows keyed for in-place updates.

Pure (no textual, no I/O): the poll worker builds a `FleetView` per snapshot, the widgets only
reconcile rows by key. `verdict_changes` says what changed between two views (recorded, and turned
into event-log lines by session.loglines), so a live session and its replay show the same words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from plans.gates import GATES, GateResult, evaluate
from plans.hazards import rollback_blockers
from plans.plan import Plan, Step
from plans.position import InstancePosition, Position, State, TargetPosition, derive_position, next_action_in
from probes.model import CheckResult, Unknown, Verdict
from probes.snapshot import CaFile, ConfiguredValue, DatabaseState, FleetSnapshot, InstanceState, LegUse, LegView

Mode = Literal["drive", "watch", "replay"]
MODES: Final[tuple[Mode, ...]] = ("drive", "watch", "replay")
GateSummary = Literal["open", "closed", "unknown", "-"]

VERDICT_WORD: Final[Mapping[Verdict, str]] = {
    Verdict.OK: "ok",
    Verdict.WARN: "WARN",
    Verdict.FAIL: "FAIL",
    Verdict.ERROR: "ERR?",
}
STATE_WORD: Final[Mapping[str, str]] = {
    "pending": "pending",
    "configured": "configured",
    "live": "live",
    "verified": "verified",
    "failed": "FAILED",
    "unknown": "unknown?",
}


def clock_text(ts: float) -> str:
    """HH:MM:SS (UTC) of an epoch time."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def age_text(seconds: float) -> str:
    """'3s ago', '2m ago', '1h05m ago'."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s ago" if s < 600 else f"{s // 60}m ago"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"


# --------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One target of one step: a row of the plan table (key "pg-5:api", or "pg-2")."""

    key: str
    step: str
    service: str | None  # what the engine's preview takes: the service of a per-service step, else None
    target: str  # "api", "database", "fleet"
    track: str
    title: str
    state: State
    gates: GateSummary
    is_next: bool


@dataclass(frozen=True, slots=True)
class TargetDetail:
    key: str
    step: str
    service: str | None
    target: str
    title: str
    summary: str  # "DATABASE_SSL_MODE=verify-full"
    state: State
    detail: str
    gates: tuple[GateResult, ...]
    instances: tuple[InstancePosition, ...]
    dangers: tuple[str, ...]
    optional: bool
    kind: str = "config"  # "config" | "certs" (done with `command`, not advanced from the cockpit)
    command: str = ""

    @property
    def gates_open(self) -> bool:
        return all(g.open for g in self.gates)

    @property
    def blocking(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.open)


@dataclass(frozen=True, slots=True)
class LegRow:
    key: str
    label: str
    listener: str
    handshake: str  # verdict word, or "-"
    verdict: Verdict | None
    tls: str  # count, or "-"
    plain: str
    summary: str  # the handshake check's summary (detail screens)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    key: str  # host
    service: str
    db: str  # "verify-full → TLS"
    redis: str  # "true → TLS"
    ca: str
    health: str
    drift: str
    verdict: Verdict
    reachable: bool | None  # None: could not be measured


@dataclass(frozen=True, slots=True)
class FleetView:
    """Everything the main screen shows for one snapshot."""

    snapshot: FleetSnapshot
    now: float
    rows: tuple[PlanRow, ...]
    details: Mapping[str, TargetDetail]
    legs: tuple[LegRow, ...]
    instances: tuple[InstanceRow, ...]
    next_key: str | None
    next_text: str
    dangers: tuple[str, ...]
    marks: Mapping[str, tuple[str, str]] = field(repr=False)  # what verdict changes compare: key -> (value, text)
    causes: tuple[str, ...] = ()  # root causes of many unknowns, said once

    def detail(self, key: str | None) -> TargetDetail | None:
        return self.details.get(key) if key else None


# --------------------------------------------------------------------------------------------
# building


def row_key(step: Step, service: str | None) -> str:
    return f"{step.id}:{service}" if step.per_service and service else step.id


def _gates(plan: Plan, step: Step, service: str | None, snap: FleetSnapshot, now: float) -> tuple[GateResult, ...]:
    out: list[GateResult] = []
    for g in step.gates_for_target(service):
        spec = GATES.get(g)
        if spec is None:
            out.append(GateResult(g, "unknown", f"unknown gate {g!r} (a newer plan?)", service))
            continue
        if spec.per_service and not service:
            continue
        out.append(evaluate(g, snap, service=service if spec.per_service else None, now=now, plan=plan, step=step))
    return tuple(out)


def _summary(gates: Sequence[GateResult]) -> GateSummary:
    if not gates:
        return "-"
    if any(g.status == "closed" for g in gates):
        return "closed"
    if any(g.status == "unknown" for g in gates):
        return "unknown"
    return "open"


def _word(c: CheckResult | None) -> tuple[str, Verdict | None, str]:
    if c is None:
        return "-", None, "not measured"
    return VERDICT_WORD[c.verdict], c.verdict, c.summary


def _onoff(v: bool | Unknown, yes: str = "on", no: str = "off") -> str:
    return "?" if isinstance(v, Unknown) else (yes if v else no)


def _text(v: object, missing: str = "?") -> str:
    """A measured value as text; could-not-measure as "?" (never None, True or False on screen)."""
    if isinstance(v, Unknown) or v is None:
        return missing
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _legs(s: FleetSnapshot) -> tuple[LegRow, ...]:
    db = s.database if isinstance(s.database, DatabaseState) else None
    if s.managed_database:
        return (LegRow("managed", "managed database", "-", "-", None, "-", "-", "the runbook does not apply"),)

    def counts(leg: str) -> tuple[str, str]:
        view = s.leg(leg)  # type: ignore[arg-type]
        if not isinstance(view, LegView):
            return "?", "?"
        tls = sum(1 for c in view.connections if c.tls)
        own = f"+{view.own}" if view.own else ""
        return str(tls) + own, str(len(view.connections) - tls)

    rows: list[LegRow] = []
    w, v, summ = _word(s.check("tls.pgbouncer"))
    mode = _text(db.pgbouncer_client_tls_sslmode) if db else "?"
    t, p = counts("leg1")
    rows.append(LegRow("leg1", "Leg 1 app→PgBouncer", mode or "disable", w, v, t, p, summ))
    w, v, summ = _word(s.check("tls.postgres"))
    t, p = counts("leg2")
    listener = "?" if db is None else f"ssl {_onoff(db.postgres_ssl)}·{_text(db.pgbouncer_server_tls_sslmode)}"
    rows.append(LegRow("leg2", "Leg 2 PgBouncer→PG", listener, w, v, t, p, summ))
    direct = s.leg("postgres")
    if db is not None and (not isinstance(direct, LegView) or direct.connections):
        t, p = counts("postgres")
        hba = "?" if isinstance(db.pg_hba_hostssl_only, Unknown) else ("hostssl" if db.pg_hba_hostssl_only else "host")
        rows.append(LegRow("direct", "PG direct (bypass)", hba, w, v, t, p, summ))
    w, v, summ = _word(s.check("listener.redis"))
    tls, plain = counts("redis")
    port = (
        "?"
        if db is None or isinstance(db.redis_port, Unknown)
        else ("dropped" if db.redis_port == 0 else f":{db.redis_port}")
    )
    rows.append(LegRow("redis-plain", "Redis plaintext", port, w, v, "-", plain, summ))
    w, v, summ = _word(s.check("tls.redis"))
    tport = (
        "?"
        if db is None or isinstance(db.redis_tls_port, Unknown)
        else ("off" if db.redis_tls_port == 0 else f":{db.redis_tls_port}")
    )
    rows.append(LegRow("redis-tls", "Redis TLS", tport, w, v, tls, "-", summ))
    e2e = s.check("e2e.query")
    if e2e is not None:
        w, v, summ = _word(e2e)
    elif db is not None and not isinstance(db.end_to_end_ok, Unknown):
        w, v = ("ok", Verdict.OK) if db.end_to_end_ok else ("FAIL", Verdict.FAIL)
        summ = "a query through PgBouncer answered" if db.end_to_end_ok else "a query through PgBouncer failed"
    else:
        w, v, summ = "ERR?", None, "not measured"
    rows.append(LegRow("e2e", "End to end query", "-", w, v, "-", "-", summ))
    return tuple(rows)


def _cfg(s: FleetSnapshot, i: InstanceState, var: str) -> str:
    cv = i.configured.get(var) or s.configured.get(i.service, {}).get(var)
    if not isinstance(cv, ConfiguredValue):
        return "?"
    return cv.value if cv.value else "(unset)"


def _use(u: LegUse | Unknown) -> str:
    if isinstance(u, Unknown):
        return "?"
    if u.plain:
        return "plain"
    return "TLS" if u.tls else "-"


def _ca(i: InstanceState) -> str:
    states = list(i.ca_files.values())
    if any(isinstance(x, CaFile) and x is not CaFile.MATCHES for x in states):
        return "BAD"
    if not states or any(isinstance(x, Unknown) for x in states):
        return "?"
    return "ok"


def _instances(s: FleetSnapshot) -> tuple[InstanceRow, ...]:
    out: list[InstanceRow] = []
    for i in s.instances:
        if i.reachable is False:
            health = "UNREACH"
        elif isinstance(i.reachable, Unknown):
            health = "?"
        elif i.running is False:
            health = "STOPPED"
        elif isinstance(i.healthy, Unknown):
            health = "-" if i.healthy.detail.endswith("no health URL") else "?"
        else:
            health = "ok" if i.healthy else "DOWN"
        out.append(
            InstanceRow(
                key=i.host,
                service=i.service,
                db=f"{_cfg(s, i, 'DATABASE_SSL_MODE')} → {_use(i.db)}",
                redis=f"{_cfg(s, i, 'REDIS_TLS_ENABLED')} → {_use(i.redis)}",
                ca=_ca(i),
                health=health,
                drift="; ".join(i.drift) if i.drift else "-",
                verdict=i.verdict,
                reachable=None if isinstance(i.reachable, Unknown) else i.reachable,
            )
        )
    return tuple(out)


def _target_of(plan: Plan, step: Step, service: str | None) -> str:
    """What a row acts on: the service, the fleet, or the database host."""
    if step.per_service and service:
        return service
    return "fleet" if step.scope == "fleet" else plan.database_service


def _next_text(nxt: tuple[Step, str | None] | None, nd: TargetDetail | None, managed: bool) -> str:
    """The header's "next": the next action and what blocks it, or why there is none."""
    if nxt is None:
        return "the runbook does not apply (managed database)" if managed else "every step is verified"
    who = f" for {nxt[1]}" if nxt[0].per_service and nxt[1] else ""
    return f"next: {nxt[0].id}{who} — " + (blocked_text(nd) or f"{nxt[0].title}" + (f" ({nd.state})" if nd else ""))


def _detail(
    key: str,
    step: Step,
    service: str | None,
    target: str,
    t: TargetPosition,
    gates: tuple[GateResult, ...],
    dangers: tuple[str, ...],
) -> TargetDetail:
    return TargetDetail(
        key,
        step.id,
        service,
        target,
        step.title,
        step.summary,
        t.state,
        t.detail,
        gates,
        t.instances,
        dangers,
        step.optional,
        step.kind,
        step.command,
    )


def build_view(
    plan: Plan,
    snap: FleetSnapshot,
    services_in_order: Sequence[str],
    *,
    now: float | None = None,
    position: Position | None = None,
) -> FleetView:
    """The main screen's content for `snap`, with gates evaluated as of `now`."""
    now = time.time() if now is None else now
    pos = position or derive_position(plan, snap, services_in_order)
    nxt = None if snap.managed_database else next_action_in(pos)
    next_key = row_key(nxt[0], nxt[1]) if nxt else None
    rows: list[PlanRow] = []
    details: dict[str, TargetDetail] = {}
    marks: dict[str, tuple[str, str]] = {"fleet": (snap.verdict.value, f"fleet verdict {snap.verdict.value}")}
    dangers_by: dict[str, list[str]] = {}
    for d in pos.dangers:
        dangers_by.setdefault(row_key(plan.step(d.step), d.service), []).append(d.message)
    for sp in pos.steps:
        step = sp.step
        for t in sp.targets:
            service = t.service if step.per_service else None
            key = row_key(step, service)
            target = _target_of(plan, step, service)
            gates = _gates(plan, step, service, snap, now)
            summary = _summary(gates)
            rows.append(
                PlanRow(key, step.id, service, target, step.track, step.title, t.state, summary, key == next_key)
            )
            details[key] = _detail(key, step, service, target, t, gates, tuple(dangers_by.get(key, ())))
            label = f"{step.id} {target}" if step.per_service else step.id
            marks[f"step {key}"] = (t.state, f"{label}: {t.state}")
    for c in snap.checks:
        marks.setdefault(f"check {c.check} {c.target}", (c.verdict.value, f"{c.check} on {c.target}: {c.summary}"))
    nd = details[next_key] if next_key else None
    return FleetView(
        snap,
        now,
        tuple(rows),
        details,
        _legs(snap),
        _instances(snap),
        next_key,
        _next_text(nxt, nd, snap.managed_database),
        tuple(d.message for d in pos.dangers),
        marks,
        tuple(c.text for c in snap.causes),
    )


def blocked_text(d: TargetDetail | None) -> str:
    """ "blocked by no_plaintext_leg1" (gate ids that are not open), "" when nothing blocks the target."""
    if d is None:
        return ""
    if d.kind == "certs":
        return f"done with `{d.command or 'cockpit certs push'}`" if d.state != "verified" else ""
    closed = [g.gate for g in d.gates if g.status == "closed"]
    unknown = [g.gate for g in d.gates if g.status != "closed" and not g.open]
    parts = ([f"blocked by {', '.join(closed)}"] if closed else []) + (
        [f"{', '.join(unknown)} could not be measured"] if unknown else []
    )
    return "; ".join(parts)


def blockers_for_rollback(plan: Plan, snap: FleetSnapshot, detail: TargetDetail) -> list[str]:
    """Why rolling `detail`'s target back is unsafe now ([]: safe); "nothing to roll back" when pending.
    Warnings do not block (they show in the confirmation)."""
    step = plan.step(detail.step)
    if detail.state == "pending":
        return [
            f"{detail.step} is not applied{' for ' + detail.target if step.per_service else ''}: nothing to roll back"
        ]
    try:
        return [b.text for b in rollback_blockers(plan, step, detail.service, snap) if b.blocks]
    except ValueError as exc:
        return [str(exc)]


# --------------------------------------------------------------------------------------------
# changes between two views, and event-log lines


def verdict_changes(old: FleetView | None, new: FleetView) -> list[dict[str, Any]]:
    """What changed between two views: step states, check verdicts, the fleet verdict.

    The first view has no predecessor: nothing is reported (the screen shows the state itself).
    """
    if old is None:
        return []
    out: list[dict[str, Any]] = []
    for key, (value, text) in new.marks.items():
        before = old.marks.get(key)
        if before is None or before[0] != value:
            out.append({"what": key, "from": before[0] if before else None, "to": value, "text": text})
    for key, (value, text) in old.marks.items():
        if key not in new.marks:
            out.append({"what": key, "from": value, "to": None, "text": text + " (gone)"})
    return out
