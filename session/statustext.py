"""`cockpit status` as text: legs, listeners, certificate, services and instances, problems.

Plain text (no textual) so it works in a pipe, a CI log or a bastion without a terminal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from probes.model import CheckResult, Unknown, Verdict
from probes.snapshot import CaFile, ConfiguredValue, DatabaseState, FleetSnapshot, InstanceState, LegUse, LegView

MARK = {Verdict.OK: "ok", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL", Verdict.ERROR: "ERR?"}


def _v(c: CheckResult | None) -> str:
    return f"[{MARK[c.verdict]:>4}] {c.summary}" if c else "[ ?? ] not measured"


def _tri(v: bool | Unknown, yes: str, no: str) -> str:
    return "?" if isinstance(v, Unknown) else (yes if v else no)


def _val(v: object) -> str:
    return "?" if isinstance(v, Unknown) or v is None else str(v)


def _conn_summary(s: FleetSnapshot, leg: str) -> str:
    view = s.leg(leg)  # type: ignore[arg-type]
    if not isinstance(view, LegView):
        return f"could not be read ({view.why.value}: {view.detail})"
    conns = view.connections
    own = f"; {view.own} of the cockpit's own (not counted)" if view.own else ""
    if not conns:
        return "no connections seen" + own
    plain = [c for c in conns if not c.tls]
    text = f"{len(conns)} connections: {len(conns) - len(plain)} TLS, {len(plain)} plaintext{own}"
    if plain:
        who = sorted({c.service + (f"@{c.instance}" if c.instance else "") for c in plain})
        text += " (" + ", ".join(who[:6]) + (" …" if len(who) > 6 else "") + ")"
    return text


def render(s: FleetSnapshot, *, width: int = 100) -> str:
    when = datetime.fromtimestamp(s.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    out = [f"environment {s.env}   snapshot {when} in {s.duration_ms / 1000:.2f}s   overall: {s.verdict.value.upper()}"]
    if s.managed_database:
        out.append(_v(s.check("runbook.applies")))
        return "\n".join(out)
    for cause in s.causes:
        out.append(f"ROOT CAUSE ({cause.why.value}): {cause.text}")
    db = s.database if isinstance(s.database, DatabaseState) else None
    out.append("")
    out.append("LEGS")
    out.append(f"  Leg 1 app → PgBouncer     {_v(s.check('tls.pgbouncer'))}")
    out.append(f"                            {_conn_summary(s, 'leg1')}")
    out.append(f"  Leg 2 PgBouncer → Postgres {_v(s.check('tls.postgres'))}")
    out.append(f"                            {_conn_summary(s, 'leg2')}")
    direct = s.leg("postgres")
    if not isinstance(direct, LegView) or direct.connections:
        out.append(f"  Postgres, bypassing PgBouncer: {_conn_summary(s, 'postgres')}")
    out.append(f"  end to end through PgBouncer {_v(s.check('e2e.query'))}")
    out.append(f"  Redis plaintext           {_v(s.check('listener.redis'))}")
    out.append(f"  Redis TLS                 {_v(s.check('tls.redis'))}")
    out.append(f"                            {_conn_summary(s, 'redis')}")
    if db is not None:
        out.append(
            f"  live: ssl={_tri(db.postgres_ssl, 'on', 'off')}  pg_hba hostssl-only="
            f"{_tri(db.pg_hba_hostssl_only, 'yes', 'no')}  pgbouncer client="
            f"{_val(db.pgbouncer_client_tls_sslmode)} server={_val(db.pgbouncer_server_tls_sslmode)}  redis "
            f"port={_val(db.redis_port)} tls-port={_val(db.redis_tls_port)}  "
            f"otel→{_val(db.otel_redis_endpoint) or 'not seen'}"
        )
    out.append("")
    out.append("CERTIFICATE MATERIAL")
    bad = [c for c in s.certs if c.verdict is not Verdict.OK]
    if s.certs and not bad:
        exp = next((c for c in s.certs if c.check == "certs.expiry"), None)
        out.append(f"  [  ok] valid under every consuming service; {exp.summary if exp else ''}")
    for c in bad:
        out.append(f"  [{MARK[c.verdict]:>4}] {c.target}: {c.check}: {c.summary}")
    for c in s.checks:
        if c.check.startswith("files.") and c.verdict is not Verdict.OK:
            out.append(f"  [{MARK[c.verdict]:>4}] {c.target}: {c.summary}")
    out.append("")
    out.append("SERVICES  (configured → observed)")
    out.append(
        f"  {'instance':<22} {'DATABASE_SSL_MODE':<18} {'Leg1':<6} {'REDIS_TLS':<9} {'Redis':<6} "
        f"{'CA':<4} {'health':<7} drift"
    )
    for i in s.instances:
        out.append("  " + _instance_row(i, s))
    problems = [c for c in s.checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)]
    warns = [c for c in s.checks if c.verdict is Verdict.WARN]
    if problems or warns:
        out.append("")
        out.append("PROBLEMS")
        for c in problems + warns:
            out.append(f"  [{MARK[c.verdict]:>4}] {c.target}: {c.summary}"[: width * 2])
    return "\n".join(out)


def _cfg(i: InstanceState, s: FleetSnapshot, var: str) -> str:
    cv = i.configured.get(var) or s.configured.get(i.service, {}).get(var)
    if not isinstance(cv, ConfiguredValue):
        return "?"
    return cv.value or "(unset)"


def _use(u: LegUse | Unknown) -> str:
    if isinstance(u, Unknown):
        return "?"
    return "plain" if u.plain else ("TLS" if u.tls else "-")


def _ca(i: InstanceState) -> str:
    states = list(i.ca_files.values())
    if any(isinstance(x, CaFile) and x is not CaFile.MATCHES for x in states):
        return "BAD"
    return "?" if not states or any(isinstance(x, Unknown) for x in states) else "ok"


def _instance_row(i: InstanceState, s: FleetSnapshot) -> str:
    if i.reachable is False:
        return f"{i.host:<22} UNREACHABLE over SSH"
    health = (
        "STOPPED"
        if i.running is False
        else (
            ("-" if i.healthy.detail.endswith("no health URL") else "?")
            if isinstance(i.healthy, Unknown)
            else ("ok" if i.healthy else "DOWN")
        )
    )
    return (
        f"{i.host:<22} {_cfg(i, s, 'DATABASE_SSL_MODE'):<18} {_use(i.db):<6} {_cfg(i, s, 'REDIS_TLS_ENABLED'):<9} "
        f"{_use(i.redis):<6} {_ca(i):<4} {health:<7} {'; '.join(i.drift) if i.drift else '-'}"
    )
