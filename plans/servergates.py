"""Gate checks about the servers: the cert material, Postgres's, PgBouncer's and Redis's TLS (offered and
verifying against the internal CA and the database's DNS name), Leg 2, pg_hba and Redis's plaintext
listener. Pure: no I/O, no clock."""

from __future__ import annotations

from plans.facts import MODES_WITHOUT_TLS, join, sorted_hosts, unique
from plans.gatecheck import (
    GateContext,
    GateVerdict,
    clients_text,
    combine,
    database_of,
    leg_view,
    plural,
    unknown_text,
)
from probes.model import CheckResult, Unknown, Verdict
from probes.snapshot import DatabaseState, FleetSnapshot, Handshake, LegView

__all__ = [
    "certs_valid",
    "client_mode_problems",
    "handshake_gate",
    "leg2_tls_and_e2e",
    "no_plaintext_postgres",
    "pgbouncer_tls_verifies",
    "postgres_hostssl_only",
    "postgres_tls_verifies",
    "redis_plaintext_dropped",
    "redis_tls_verifies",
]


def certs_valid(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    checks = list(s.certs)
    if not checks:
        return "unknown", "no cert check has run (the cert material could not be read) — fix access and refresh"

    def grouped(results: list[CheckResult]) -> str:
        by_summary: dict[tuple[str, str], list[str]] = {}
        for c in results:
            by_summary.setdefault((c.check, c.summary), []).append(c.target)
        everywhere = {c.target for c in results}
        parts = [
            summary if set(t) == everywhere else f"{', '.join(unique(t))}: {summary}"
            for (_, summary), t in sorted(by_summary.items())
        ]
        return "; ".join(parts[:4]) + (f" (and {len(parts) - 4} more)" if len(parts) > 4 else "")

    fails = [c for c in checks if c.verdict is Verdict.FAIL]
    errors = [c for c in checks if c.verdict is Verdict.ERROR]
    warns = [c for c in checks if c.verdict is Verdict.WARN]
    covered = unique([c.target for c in checks])
    consumers = unique([i.service for i in s.instances])
    uncovered = [svc for svc in consumers if svc not in covered]
    if fails:
        return (
            "closed",
            f"the cert material fails its checks under {join(unique([c.target for c in fails]))} "
            f"({grouped(fails)}) — fix the material and push it again (cockpit certs push)",
        )
    if errors:
        return (
            "unknown",
            f"the cert checks could not run under {join(unique([c.target for c in errors]))} "
            f"({grouped(errors)}) — fix what stops them and refresh",
        )
    if uncovered:
        return "unknown", (
            f"no cert check covers {join(uncovered)}: the material under "
            f"{'its' if len(uncovered) == 1 else 'their'} prefix was not read — refresh"
        )
    ok = f"the cert material passes every check under {join(covered)}"
    if warns:
        ok += f" (warning: {grouped(warns)})"
    return "open", ok


def handshake_gate(h: Handshake | Unknown, what: str, not_offered: str) -> GateVerdict:
    if isinstance(h, Unknown):
        return "unknown", f"could not measure whether {what} TLS verifies ({unknown_text(h)}) — refresh"
    if h is Handshake.VERIFIED:
        return "open", f"{what} TLS verifies against the internal CA and the database's DNS name"
    if h is Handshake.NOT_OFFERED:
        return "closed", not_offered
    return "closed", (
        f"{what} serves TLS but the handshake does not verify against the internal CA and the "
        "database's DNS name — check the cert material (SAN, CA, expiry) and push it again"
    )


def postgres_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    return handshake_gate(
        db.postgres_tls,
        "Postgres",
        "Postgres does not serve TLS yet — set POSTGRES_TLS_ENABLED=on and restart the database host",
    )


def redis_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    return handshake_gate(
        db.redis_tls,
        "Redis's",
        "Redis has no TLS listener yet — set REDIS_TLS_ENABLED=true on the database and restart the database host",
    )


def leg2_tls_and_e2e(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    leg2 = leg_view(s, "leg2", "Postgres from PgBouncer")
    n = 0
    if isinstance(leg2, str):
        unknown.append(leg2)
    else:
        plain = [c for c in leg2.connections if not c.tls]
        n = len(leg2.connections)
        if plain:
            closed.append(
                f"{plural(len(plain), 'PgBouncer→Postgres connection')} "
                f"({', '.join(sorted_hosts([c.addr for c in plain]))}) {'is' if len(plain) == 1 else 'are'} "
                "still plaintext — set PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca and restart the database host"
            )
        elif not leg2.connections:
            unknown.append(
                "no PgBouncer→Postgres connection of an app is seen yet — make sure the apps run and refresh"
            )
    if isinstance(db.end_to_end_ok, Unknown):
        unknown.append(f"the end-to-end query through PgBouncer was not measured ({unknown_text(db.end_to_end_ok)})")
    elif not db.end_to_end_ok:
        closed.append(
            "a query through PgBouncer did not answer in time — check PgBouncer's log for the server TLS handshake"
        )
    return combine(
        closed,
        unknown,
        f"every PgBouncer→Postgres connection is TLS ({plural(n, 'connection')}) and a query through PgBouncer answers",
    )


def client_mode_problems(db: DatabaseState) -> tuple[list[str], list[str]]:
    closed: list[str] = []
    unknown: list[str] = []
    mode = db.pgbouncer_client_tls_sslmode
    if isinstance(mode, Unknown):
        unknown.append(f"PgBouncer's client_tls_sslmode could not be read ({unknown_text(mode)}) — refresh")
    elif mode in MODES_WITHOUT_TLS:
        closed.append(
            f"PgBouncer does not offer TLS to clients (client_tls_sslmode = {mode or 'disable'}) — set "
            "PGBOUNCER_CLIENT_TLS_SSLMODE=allow and restart the database host first"
        )
    if not closed:
        status, reason = handshake_gate(db.pgbouncer_tls, "PgBouncer's", "PgBouncer does not offer TLS to clients")
        if status == "closed":
            closed.append(reason)
        elif status == "unknown":
            unknown.append(reason)
    return closed, unknown


def pgbouncer_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown = client_mode_problems(db)
    return combine(
        closed,
        unknown,
        f"PgBouncer offers TLS to clients (client_tls_sslmode = "
        f"{db.pgbouncer_client_tls_sslmode}) and it verifies against the internal CA",
    )


def no_plaintext_postgres(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    n = 0
    for leg in ("leg2", "postgres"):
        view = leg_view(s, leg, "Postgres")
        if isinstance(view, str):
            unknown.append(view)
            continue
        n += len(view.connections)
        plain = [c for c in view.connections if not c.tls]
        if plain and leg == "leg2":
            closed.append(
                f"PgBouncer ({', '.join(sorted_hosts([c.addr for c in plain]))}) still connects to Postgres "
                "in plaintext — set PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca and restart the database host first"
            )
        elif plain:
            closed.append(
                f"{clients_text(plain)} still {'connects' if len(plain) == 1 else 'connect'} directly to Postgres in "
                f"plaintext — move {'it' if len(plain) == 1 else 'them'} to TLS first; hostssl-only would "
                f"refuse {'it' if len(plain) == 1 else 'them'}"
            )
    return combine(closed, unknown, f"no connection to Postgres is plaintext ({plural(n, 'connection')} seen)")


def postgres_hostssl_only(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    hba = db.pg_hba_hostssl_only
    if isinstance(hba, Unknown):
        unknown.append(f"pg_hba.conf could not be read ({unknown_text(hba)}) — refresh")
    elif not hba:
        closed.append(
            "pg_hba.conf still lets TCP connections in without TLS — set POSTGRES_FORCE_SSL=on and restart "
            "the database host"
        )
    status, reason = no_plaintext_postgres(s, ctx)
    (closed if status == "closed" else unknown if status == "unknown" else []).append(reason)
    return combine(closed, unknown, "pg_hba.conf is hostssl-only and no connection to Postgres is plaintext")


def redis_plaintext_dropped(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    if isinstance(db.redis_port, Unknown):
        return "unknown", f"Redis's plaintext port could not be read ({unknown_text(db.redis_port)}) — refresh"
    if db.redis_port != 0:
        return "closed", (
            f"Redis still listens in plaintext on :{db.redis_port} — set REDIS_FORCE_TLS=true and "
            "restart the database host"
        )
    view = leg_view(s, "redis", "Redis")
    if isinstance(view, LegView):
        plain = [c for c in view.connections if not c.tls]
        if plain:
            return "closed", f"{clients_text(plain)} still connect to Redis in plaintext"
    else:
        return "unknown", f"Redis's plaintext port is 0, but {view}"
    return "open", "Redis no longer listens in plaintext (port 0)"
