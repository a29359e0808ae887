"""The database side judged against the configuration — runbook semantics the probes do not hold.

The collector reports raw facts: Postgres declines TLS, PgBouncer's clients are on plaintext, the Redis TLS
listener is not bound. Whether that is a problem depends on where the rollout stands: plaintext where the
configuration still allows it is the rollout's state, not a problem (OK, said so), and a live setting that
differs from the configured one is drift (WARN, "configured, not restarted?"). `judge_snapshot` is a pure
function of a snapshot and the inventory: it rewrites only the verdict and wording of the database host's
checks, never a fact. `plans.collecting` applies it to every snapshot the plan's collector takes, so the
TUI, the CLI and the recordings see judged snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from inventory.model import Environment
from probes.model import CheckResult, Unknown, Verdict
from probes.snapshot import DatabaseState, FleetSnapshot

_REQUIRING = ("require", "verify-ca", "verify-full")
Value = Callable[[str], str | None]  # a configured variable's value; None when unset or unknown


def judge_snapshot(snapshot: FleetSnapshot, env: Environment) -> FleetSnapshot:
    """`snapshot` with the database host's checks judged against the database service's configured values
    (which the snapshot carries). A snapshot without a database side is returned as it is."""
    if env.managed_database or not isinstance(snapshot.database, DatabaseState):
        return snapshot
    db = env.database_host
    configured = snapshot.configured.get(db.service, {})

    def val(var: str) -> str | None:
        v = configured.get(var)
        return v.value if v is not None and not isinstance(v, Unknown) else None

    d = env.database
    labels = {
        d.postgres_port: "postgres",
        d.pgbouncer_port: "pgbouncer",
        d.redis_port: "redis",
        d.redis_tls_port: "redis TLS",
    }
    ports = {f"{db.name}:{port}": label for port, label in labels.items()}
    prefix = f"{db.name}:"

    def one(c: CheckResult) -> CheckResult:
        return judge_check(c, val, ports.get(c.target, "")) if c.target.startswith(prefix) else c

    database = replace(snapshot.database, checks=tuple(one(c) for c in snapshot.database.checks))
    return replace(snapshot, database=database, checks=tuple(one(c) for c in snapshot.checks))


def judge_check(c: CheckResult, val: Value, listener: str = "") -> CheckResult:
    """One database-side check judged against the configuration (`listener`: the label of the port a
    listener.bound check is about). A could-not-measure is never judged."""
    if c.verdict is Verdict.ERROR:
        return c
    if c.check.startswith(("tls.", "listener.")):
        return _listener(c, val, listener)
    return _session(c, val)


def _ok(c: CheckResult, summary: str) -> CheckResult:
    return replace(c, verdict=Verdict.OK, summary=summary)


def _drift(c: CheckResult, summary: str) -> CheckResult:
    return replace(c, verdict=Verdict.WARN, summary=summary + " — configured, not restarted?")


def _listener(c: CheckResult, val: Value, listener: str) -> CheckResult:
    """A listener that is off, or declines TLS, because the configuration says so is the rollout's state."""
    ev = c.evidence
    if c.check == "listener.bound":
        expected = True
        if listener == "redis":
            expected = val("REDIS_FORCE_TLS") != "true"
        elif listener == "redis TLS":
            expected = val("REDIS_TLS_ENABLED") == "true"
        if expected:
            return c
        port = c.target.rsplit(":", 1)[-1]
        if c.verdict is Verdict.OK:
            return replace(c, summary=c.summary + " (configuration says it should not be)")
        return _ok(c, f"{listener} :{port} not bound, as configured")
    if c.check == "tls.postgres" and ev.get("answer") == "N" and val("POSTGRES_TLS_ENABLED") != "on":
        return _ok(c, "plaintext only: TLS not offered (POSTGRES_TLS_ENABLED is not on)")
    client_mode = val("PGBOUNCER_CLIENT_TLS_SSLMODE")
    if c.check == "tls.pgbouncer" and ev.get("answer") == "N" and client_mode in ("disable", None):
        return _ok(c, "plaintext only: TLS not offered (client_tls_sslmode=disable)")
    if c.check == "tls.redis" and ev.get("listening") is False and val("REDIS_TLS_ENABLED") != "true":
        return _ok(c, "no TLS listener (REDIS_TLS_ENABLED is not true)")
    if c.check == "listener.redis" and ev.get("listening") is False and val("REDIS_FORCE_TLS") == "true":
        return _ok(c, "plaintext listener dropped (REDIS_FORCE_TLS=true)")
    return c


def _session(c: CheckResult, val: Value) -> CheckResult:
    """A live setting or a connection seen by the Postgres, PgBouncer or Redis session, against the config."""
    ev = c.evidence
    if c.check == "postgres.ssl" and isinstance(ev.get("ssl"), bool):
        live = "on" if ev["ssl"] else "off"
        if ev["ssl"] == (val("POSTGRES_TLS_ENABLED") == "on"):
            return _ok(c, f"ssl = {live}, as configured")
        return _drift(c, f"ssl = {live} but POSTGRES_TLS_ENABLED={val('POSTGRES_TLS_ENABLED')}")
    if c.check == "postgres.hba" and isinstance(ev.get("hostssl_only"), bool):
        only = ev["hostssl_only"]
        if only == (val("POSTGRES_FORCE_SSL") == "on"):
            return _ok(c, c.summary + " (as configured)" if c.verdict is not Verdict.OK else c.summary)
        return _drift(
            c, f"pg_hba hostssl-only={'yes' if only else 'no'} but POSTGRES_FORCE_SSL={val('POSTGRES_FORCE_SSL')}"
        )
    if c.verdict is not Verdict.WARN:
        return c
    if c.check == "postgres.backends" and val("POSTGRES_FORCE_SSL") != "on":
        return _ok(c, c.summary + " (allowed until POSTGRES_FORCE_SSL=on)")
    if c.check == "pgbouncer.clients" and val("PGBOUNCER_CLIENT_TLS_SSLMODE") not in _REQUIRING:
        return _ok(c, c.summary + " (allowed: client_tls_sslmode does not require TLS yet)")
    if c.check == "pgbouncer.servers":
        if val("PGBOUNCER_SERVER_TLS_SSLMODE") in _REQUIRING:
            return _drift(c, c.summary + f" while PGBOUNCER_SERVER_TLS_SSLMODE={val('PGBOUNCER_SERVER_TLS_SSLMODE')}")
        return _ok(c, c.summary + " (server_tls_sslmode does not require TLS yet)")
    if c.check == "redis.listeners" and ((ev.get("tls_port") or 0) > 0) == (val("REDIS_TLS_ENABLED") == "true"):
        return _ok(c, c.summary + " (as configured)")
    if c.check == "redis.clients" and val("REDIS_FORCE_TLS") != "true":
        return _ok(c, c.summary + " (allowed until REDIS_FORCE_TLS=true)")
    return c
