"""DB-side checks judged against the configuration: plaintext where the configuration still allows it is
the rollout's state, not a problem; a live setting that differs from the configured one is drift
(configured, not restarted). Only the check's verdict and wording change, never the facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from probes.model import CheckResult, Verdict
from probes.pgbouncer import PgBouncerFacts
from probes.postgres import PostgresFacts
from probes.redis import RedisFacts

_REQUIRING = ("require", "verify-ca", "verify-full")


def judge(
    c: CheckResult,
    val: Callable[[str], str | None],
    pg: PostgresFacts | None,
    pb: PgBouncerFacts | None,
    rd: RedisFacts | None,
) -> CheckResult:
    """A DB-side fact judged against the configuration: plaintext where the configuration still
    allows it is the rollout's state, not a problem; a live setting that differs from the
    configured one is drift (configured, not restarted)."""
    if c.verdict is Verdict.ERROR:
        return c

    def ok(summary: str) -> CheckResult:
        return replace(c, verdict=Verdict.OK, summary=summary)

    def drift(summary: str) -> CheckResult:
        return replace(c, verdict=Verdict.WARN, summary=summary + " — configured, not restarted?")

    if c.check == "postgres.ssl" and pg is not None and pg.ssl is not None:
        want = val("POSTGRES_TLS_ENABLED") == "on"
        live = "on" if pg.ssl else "off"
        return (
            ok(f"ssl = {live}, as configured")
            if pg.ssl == want
            else drift(f"ssl = {live} but POSTGRES_TLS_ENABLED={val('POSTGRES_TLS_ENABLED')}")
        )
    if c.check == "postgres.hba" and pg is not None and pg.hostssl_only is not None:
        want = val("POSTGRES_FORCE_SSL") == "on"
        if pg.hostssl_only == want:
            return ok(c.summary + " (as configured)" if c.verdict is not Verdict.OK else c.summary)
        return drift(
            f"pg_hba hostssl-only={'yes' if pg.hostssl_only else 'no'} but POSTGRES_FORCE_SSL="
            f"{val('POSTGRES_FORCE_SSL')}"
        )
    if c.check == "postgres.backends" and c.verdict is Verdict.WARN and val("POSTGRES_FORCE_SSL") != "on":
        return ok(c.summary + " (allowed until POSTGRES_FORCE_SSL=on)")
    if (
        c.check == "pgbouncer.clients"
        and c.verdict is Verdict.WARN
        and val("PGBOUNCER_CLIENT_TLS_SSLMODE") not in _REQUIRING
    ):
        return ok(c.summary + " (allowed: client_tls_sslmode does not require TLS yet)")
    if c.check == "pgbouncer.servers" and c.verdict is Verdict.WARN:
        if val("PGBOUNCER_SERVER_TLS_SSLMODE") in _REQUIRING:
            return drift(c.summary + f" while PGBOUNCER_SERVER_TLS_SSLMODE={val('PGBOUNCER_SERVER_TLS_SSLMODE')}")
        return ok(c.summary + " (server_tls_sslmode does not require TLS yet)")
    if c.check == "redis.listeners" and c.verdict is Verdict.WARN and rd is not None:
        tls_on = val("REDIS_TLS_ENABLED") == "true"
        if ((rd.tls_port or 0) > 0) == tls_on:
            return ok(c.summary + " (as configured)")
    if c.check == "redis.clients" and c.verdict is Verdict.WARN and val("REDIS_FORCE_TLS") != "true":
        return ok(c.summary + " (allowed until REDIS_FORCE_TLS=true)")
    return c
