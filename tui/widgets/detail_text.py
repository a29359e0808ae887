"""Rich text of the details: the highlighted step's gates and reasons (side panel), a host's and the
database's detail (modal): configured values, drift, certificate, and the raw evidence of every check.
Every value is redacted, and a could-not-measure says why."""

from __future__ import annotations

import json
from collections.abc import Iterable

from rich.text import Text

from probes.model import CheckResult, Unknown
from probes.snapshot import LEGS, Connection, DatabaseState, FleetSnapshot, InstanceState, Leg, LegUse, LegView
from session.redact import Redactor
from session.view import STATE_WORD, VERDICT_WORD, TargetDetail
from tui.widgets.style import GATE_MARK, GATE_STYLE, STATE_STYLE, VERDICT_STYLE

_REDACT = Redactor()


def step_text(d: TargetDetail | None, *, action_hint: str = "") -> Text:
    """The side panel: what the step does, where it stands, its gates with reasons."""
    if d is None:
        return Text("Move to a step in the plan to see its gates and reasons.", style="dim")
    t = Text()
    t.append(d.step, style="bold")
    if d.target != "fleet":
        t.append(" · ")
        t.append(d.target, style="bold")
    if d.optional:
        t.append(" (optional)", style="dim")
    t.append(f"\n{d.title}\n", style="")
    t.append(f"sets {d.summary}\n" if "=" in d.summary else "", style="dim")
    t.append("state ", style="dim")
    t.append(STATE_WORD.get(d.state, d.state), style=STATE_STYLE.get(d.state, ""))
    t.append(f": {d.detail}\n")
    if d.gates:
        t.append("gates\n", style="dim")
        for g in d.gates:
            t.append(f" {GATE_MARK.get(g.status, '?')} {g.status:<7}", style=GATE_STYLE.get(g.status, ""))
            t.append(f" {g.gate}", style="bold")
            t.append(f": {g.reason}\n")
    else:
        t.append("gates: none\n", style="dim")
    if d.instances:
        t.append("instances\n", style="dim")
        for i in d.instances:
            t.append(f" {i.host} ", style="bold")
            t.append(STATE_WORD.get(i.state, i.state), style=STATE_STYLE.get(i.state, ""))
            t.append(f": {i.detail}\n")
    for msg in d.dangers:
        t.append(f"⚠ {msg}\n", style="bold yellow")
    if action_hint:
        t.append(action_hint, style="bold")
    return t


def _evidence(c: CheckResult) -> str:
    if not c.evidence:
        return ""
    return json.dumps(_REDACT.value(dict(c.evidence)), indent=1, sort_keys=True, default=str)


def checks_text(checks: Iterable[CheckResult], title: str) -> Text:
    t = Text()
    t.append(f"\n{title}\n", style="bold underline")
    any_ = False
    for c in checks:
        any_ = True
        t.append(f" {VERDICT_WORD[c.verdict]:<4} ", style=VERDICT_STYLE[c.verdict])
        t.append(f"{c.check} ", style="bold")
        t.append(f"{c.target}", style="dim")
        t.append(f" ({c.duration_ms:.1f} ms)\n" if c.duration_ms else "\n", style="dim")
        t.append(f"      {_REDACT.text(c.summary)}\n")
        ev = _evidence(c)
        if ev:
            for line in ev.splitlines():
                t.append(f"      {line}\n", style="dim")
    if not any_:
        t.append(" (none)\n", style="dim")
    return t


def fact_text(v: object, yes: str = "yes", no: str = "NO") -> str:
    """A fact for the screen: never Python's None/True/False; could-not-measure says why."""
    if isinstance(v, Unknown):
        return f"? ({v.why.value}{': ' + v.detail if v.detail else ''})"
    if isinstance(v, bool):
        return yes if v else no
    if isinstance(v, LegUse):
        return f"{v.tls} TLS, {v.plain} plaintext" if v.seen else "none seen"
    if v is None or v == "":
        return "-"
    return str(getattr(v, "value", v))


def instance_text(s: FleetSnapshot, i: InstanceState) -> Text:
    t = Text()
    t.append(f"{i.host}", style="bold")
    t.append(f"  service {i.service}  address {fact_text(i.address)}\n")
    t.append(f"reachable {fact_text(i.reachable)}  running {fact_text(i.running)}  healthy {fact_text(i.healthy)}\n")
    t.append(f"Postgres connections {fact_text(i.db)}  Redis connections {fact_text(i.redis)}\n")
    for path, state in sorted(i.ca_files.items()):
        t.append(f"CA file {path}: {fact_text(state)}\n")
    if i.service == "telpro":
        t.append(f"TelPro SSL build {fact_text(i.telpro_ssl)}\n")
    t.append("\nconfigured (this host / the service)\n", style="bold underline")
    configured = dict(s.configured.get(i.service, {}))
    configured.update(i.configured)
    for var, cv in sorted(configured.items()):
        if isinstance(cv, Unknown):
            t.append(f" {var:<24} ? ({cv.why.value}: {cv.detail})\n", style="")
            continue
        value = _REDACT.value(cv.value, var) if cv.value is not None else "(unset)"
        t.append(f" {var:<24} {value}", style="")
        t.append(f"  [{cv.source.value}{'' if cv.version is None else f' v{cv.version}'}]\n", style="dim")
    if i.drift:
        t.append("\ndrift (configured ≠ observed)\n", style="bold underline")
        for d in i.drift:
            t.append(f" ⚠ {d}\n", style="yellow")
    conns = [c for leg in LEGS for c in sorted(_leg_conns(s, leg), key=lambda c: c.addr) if c.instance == i.host]
    if conns:
        t.append("\nobserved connections\n", style="bold underline")
        for c in conns:
            t.append(f" {c.leg:<8} {c.addr:<22} {'TLS' if c.tls else 'plaintext':<9} {c.detail}\n")
    t.append_text(checks_text(i.checks, "checks"))
    t.append_text(
        checks_text(
            [c for c in s.certs if c.target in (i.service, "all services")], f"certificate material ({i.service})"
        )
    )
    return t


def _leg_conns(s: FleetSnapshot, leg: Leg) -> tuple[Connection, ...]:
    view = s.leg(leg)
    return view.connections if isinstance(view, LegView) else ()


def database_text(s: FleetSnapshot) -> Text:
    db = s.database
    t = Text()
    for cause in s.causes:
        t.append(f"root cause ({cause.why.value}): {cause.text}\n", style="bold red")
    if not isinstance(db, DatabaseState):
        t.append(f"The database host could not be observed: {fact_text(db)}\n", style="bold red")
        t.append_text(checks_text([c for c in s.checks if c.check.startswith(("db.", "ssh."))], "checks"))
        return t
    t.append(f"{db.host}", style="bold")
    t.append("  Postgres, PgBouncer, Redis\n")
    fields: list[tuple[str, object]] = [
        ("reachable over SSH", db.reachable),
        ("postgres ssl", db.postgres_ssl),
        ("pg_hba hostssl only", db.pg_hba_hostssl_only),
        ("pgbouncer client_tls_sslmode", db.pgbouncer_client_tls_sslmode),
        ("pgbouncer server_tls_sslmode", db.pgbouncer_server_tls_sslmode),
        ("redis port", db.redis_port),
        ("redis tls-port", db.redis_tls_port),
        ("postgres TLS", db.postgres_tls),
        ("pgbouncer TLS", db.pgbouncer_tls),
        ("redis TLS", db.redis_tls),
        ("end-to-end query", db.end_to_end_ok),
        ("otel collector → redis", db.otel_redis_endpoint),
    ]
    for name, value in fields:
        t.append(f" {name:<30} ", style="dim")
        t.append(f"{fact_text(value, 'ok', 'NO')}\n")
    t.append("\nconnections\n", style="bold underline")
    for leg in LEGS:
        view = db.leg(leg)
        if not isinstance(view, LegView):
            t.append(f" {leg:<8} could not be read: {fact_text(view)}\n", style="red")
            continue
        for c in sorted(view.connections, key=lambda c: (c.service, c.instance or "", c.addr)):
            t.append(
                f" {c.leg:<8} {c.service:<14} {c.instance or '?':<20} {c.addr:<22} "
                f"{'TLS' if c.tls else 'plaintext':<9} {c.detail}\n"
            )
        if view.own:
            t.append(f" {leg:<8} + {view.own} of the cockpit's own probe connection(s), not counted\n", style="dim")
    t.append_text(checks_text(db.checks, "checks (listeners, handshakes, certificate served)"))
    t.append_text(checks_text(s.certs, "certificate material (Secrets Manager)"))
    return t
