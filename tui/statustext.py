"""`cockpit status` as text: legs, listeners, certificate, services and instances, problems.

Plain text (no textual) so it works in a pipe, a CI log or a bastion without a terminal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from probes.model import CheckResult, Verdict
from probes.snapshot import FleetSnapshot, InstanceState

MARK = {Verdict.OK: "ok", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL", Verdict.ERROR: "ERR?"}


def _v(c: CheckResult | None) -> str:
    return f"[{MARK[c.verdict]:>4}] {c.summary}" if c else "[ ?? ] not measured"


def _tri(v: bool | None, yes: str, no: str) -> str:
    return "?" if v is None else (yes if v else no)


def _conn_summary(s: FleetSnapshot, leg: str) -> str:
    conns = s.connections(leg)
    if not conns:
        return "no connections seen"
    plain = [c for c in conns if not c.tls]
    text = f"{len(conns)} connections: {len(conns) - len(plain)} TLS, {len(plain)} plaintext"
    if plain:
        who = sorted({c.service + (f"@{c.instance}" if c.instance else "") for c in plain})
        text += " (" + ", ".join(who[:6]) + (" …" if len(who) > 6 else "") + ")"
    return text


def render(s: FleetSnapshot, *, width: int = 100) -> str:
    when = datetime.fromtimestamp(s.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    out = [f"environment {s.env}   snapshot {when} in {s.duration_ms / 1000:.2f}s   overall: "
           f"{s.verdict.value.upper()}"]
    if s.managed_database:
        out.append(_v(s.check("runbook.applies")))
        return "\n".join(out)
    db = s.database
    out.append("")
    out.append("LEGS")
    out.append(f"  Leg 1 app → PgBouncer     {_v(s.check('tls.pgbouncer'))}")
    out.append(f"                            {_conn_summary(s, 'leg1')}")
    out.append(f"  Leg 2 PgBouncer → Postgres {_v(s.check('tls.postgres'))}")
    out.append(f"                            {_conn_summary(s, 'leg2')}")
    direct = s.connections("postgres")
    if direct:
        out.append(f"  Postgres, bypassing PgBouncer: {_conn_summary(s, 'postgres')}")
    out.append(f"  end to end through PgBouncer {_v(s.check('e2e.query'))}")
    out.append(f"  Redis plaintext           {_v(s.check('listener.redis'))}")
    out.append(f"  Redis TLS                 {_v(s.check('tls.redis'))}")
    out.append(f"                            {_conn_summary(s, 'redis')}")
    if db is not None:
        out.append(f"  live: ssl={_tri(db.postgres_ssl, 'on', 'off')}  pg_hba hostssl-only="
                   f"{_tri(db.pg_hba_hostssl_only, 'yes', 'no')}  pgbouncer client={db.pgbouncer_client_tls_sslmode}"
                   f" server={db.pgbouncer_server_tls_sslmode}  redis port={db.redis_port} tls-port="
                   f"{db.redis_tls_port}  otel→{db.otel_redis_endpoint or '?'}")
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
    out.append(f"  {'instance':<22} {'DATABASE_SSL_MODE':<18} {'Leg1':<6} {'REDIS_TLS':<9} {'Redis':<6} "
               f"{'CA':<4} {'health':<7} drift")
    for i in s.instances:
        out.append("  " + _instance_row(i))
    problems = [c for c in s.checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)]
    warns = [c for c in s.checks if c.verdict is Verdict.WARN]
    if problems or warns:
        out.append("")
        out.append("PROBLEMS")
        for c in problems + warns:
            out.append(f"  [{MARK[c.verdict]:>4}] {c.target}: {c.summary}"[: width * 2])
    return "\n".join(out)


def _instance_row(i: InstanceState) -> str:
    mode = i.configured.get("DATABASE_SSL_MODE")
    rtls = i.configured.get("REDIS_TLS_ENABLED")
    mode_s = (mode.value or "(unset)") if mode and mode.value is not None else "?"
    rtls_s = rtls.value if rtls and rtls.value is not None else "?"
    if i.reachable is False:
        return f"{i.host:<22} UNREACHABLE over SSH"
    return (f"{i.host:<22} {mode_s:<18} {_tri(i.db_tls, 'TLS', 'plain'):<6} {rtls_s:<9} "
            f"{_tri(i.redis_tls, 'TLS', 'plain'):<6} {_tri(i.ca_file_ok, 'ok', 'BAD'):<4} "
            f"{_tri(i.healthy, 'ok', 'DOWN') if i.healthy is not None else '-':<7} "
            f"{'; '.join(i.drift) if i.drift else '-'}")
