"""Gates as pure functions of a snapshot: each opens, closes, or is unknown — with a reason a person
can act on — and rollback safety and the environment order are decided from the same facts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from inventory.load import load_inventory
from inventory.model import Environment
from plans.facts import LIVE, NO_DATABASE
from plans.gates import GATES, GateResult, evaluate
from plans.hazards import rollback_blockers
from plans.plan import default_plan
from plans.position import derive_position, env_order_gate
from probes.model import Unknown, Why
from probes.snapshot import CaFile, Connection, FleetSnapshot, Handshake, LegUse, LegView
from tests.snapshots_factory import (
    SERVICES,
    T0,
    fleet,
    managed,
    with_config,
    with_connections,
    with_database,
    with_instance,
    with_leg_unknown,
    without_database,
)

UNREAD = Unknown(Why.TIMEOUT, "no answer")


def conns(snap: FleetSnapshot, leg: str) -> tuple[Connection, ...]:
    view = snap.leg(leg)  # type: ignore[arg-type]
    assert isinstance(view, LegView)
    return view.connections


ROOT = Path(__file__).resolve().parent.parent
PLAN = default_plan()


def gate(name: str, snap: FleetSnapshot, service: str | None = None) -> GateResult:
    return evaluate(name, snap, service=service, now=T0 + 5, plan=PLAN)


def assert_gate(name: str, snap: FleetSnapshot, status: str, *fragments: str, service: str | None = None) -> None:
    r = gate(name, snap, service)
    assert r.status == status, r.reason
    for f in fragments:
        assert f in r.reason, r.reason


# -- every gate: open on the state it waits for, closed before it, unknown without the fact ------------


def test_registry_is_plain_data() -> None:
    assert set(GATES) >= {
        "certs_valid",
        "postgres_tls_verifies",
        "leg2_tls_and_e2e",
        "pgbouncer_offers_tls_and_ca_files",
        "no_plaintext_leg1",
        "no_plaintext_postgres",
        "redis_tls_verifies",
        "telpro_ssl_build",
        "no_plaintext_redis",
    }
    assert {n for n, g in GATES.items() if g.per_service} == {
        "pgbouncer_offers_tls_and_ca_files",
        "ca_files",
        "telpro_ssl_build",
        "service_postgres_tls",
        "service_redis_tls",
    }
    assert all(f.per_instance == (f.read_instance is not None) for f in LIVE.values())


def test_certs_valid() -> None:
    r = gate("certs_valid", fleet(1))
    assert r == GateResult(
        "certs_valid",
        "open",
        "the cert material passes every check under database, api, web, voice, ops and telpro",
    )
    assert_gate(
        "certs_valid",
        fleet(1, certs="warn"),
        "open",
        "(warning: server cert expires in 12 days)",
    )
    assert gate("certs_valid", fleet(1, certs="bad-san")).reason == (
        "the cert material fails its checks under database, api, web, voice, ops and telpro (server cert SAN "
        "lacks staging-database-01.voiceai.internal) — fix the material and push it again (cockpit certs push)"
    )
    assert_gate("certs_valid", fleet(1, certs="missing-voice"), "closed", "under voice (INTERNAL_CA_CRT_B64")
    # problems on some services only name them
    mixed = fleet(1, certs="bad-san")
    mixed = dataclasses.replace(
        mixed, certs=tuple(c for c in mixed.certs if not (c.check == "certs.san" and c.target != "voice"))
    )
    assert_gate("certs_valid", mixed, "closed", "under voice (server cert SAN")
    assert_gate("certs_valid", fleet(1, certs="error"), "unknown", "could not run under voice", "AccessDenied")
    assert_gate("certs_valid", fleet(1, certs="none"), "unknown", "no cert check has run")


def test_certs_valid_needs_every_consuming_service() -> None:
    snap = fleet(1)
    snap = dataclasses.replace(snap, certs=tuple(c for c in snap.certs if c.target != "web"))
    assert_gate("certs_valid", snap, "unknown", "no cert check covers web")


def test_postgres_tls_verifies() -> None:
    assert_gate("postgres_tls_verifies", fleet(1), "closed", "does not serve TLS yet", "POSTGRES_TLS_ENABLED=on")
    assert_gate("postgres_tls_verifies", fleet(2), "open")
    assert_gate("postgres_tls_verifies", fleet(2, certs="bad-san"), "closed", "does not verify")
    assert_gate("postgres_tls_verifies", with_database(fleet(2), postgres_tls=UNREAD), "unknown", "timeout")
    r = gate("postgres_tls_verifies", without_database(fleet(2)))
    assert r.status == "unknown" and r.reason.startswith(NO_DATABASE)


def test_leg2_tls_and_e2e() -> None:
    assert_gate(
        "leg2_tls_and_e2e",
        fleet(2),
        "closed",
        "1 PgBouncer→Postgres connection (10.0.1.20:40001) is still plaintext",
    )
    assert_gate("leg2_tls_and_e2e", fleet(3), "open", "every PgBouncer→Postgres connection is TLS (1 connection)")
    assert_gate(
        "leg2_tls_and_e2e",
        with_connections(fleet(3), leg="leg2"),
        "unknown",
        "no PgBouncer→Postgres connection of an app is seen yet",
    )
    assert_gate("leg2_tls_and_e2e", with_database(fleet(3), end_to_end_ok=UNREAD), "unknown", "not measured")
    assert_gate("leg2_tls_and_e2e", with_leg_unknown(fleet(3), "leg2"), "unknown", "could not be read")
    assert_gate("leg2_tls_and_e2e", with_database(fleet(3), end_to_end_ok=False), "closed", "did not answer")


def test_pgbouncer_offers_tls_and_ca_files() -> None:
    name = "pgbouncer_offers_tls_and_ca_files"
    assert_gate(name, fleet(3), "closed", "client_tls_sslmode = disable", service="voice")
    assert_gate(
        name,
        fleet(4),
        "open",
        "every voice instance (staging-voice-01, staging-voice-02) has the internal CA at /etc/ssl/internal/ca.crt",
        service="voice",
    )
    snap = with_instance(fleet(4), "staging-voice-02", ca_files={"/etc/ssl/internal/ca.crt": CaFile.MISSING})
    assert_gate(
        name,
        snap,
        "closed",
        "the internal CA is not at /etc/ssl/internal/ca.crt on staging-voice-02 (missing)",
        service="voice",
    )
    assert_gate(name, snap, "open", service="api")  # another service is not held back
    assert_gate(
        name,
        with_instance(fleet(4), "staging-voice-01", ca_files={"/etc/ssl/internal/ca.crt": UNREAD}),
        "unknown",
        "could not check /etc/ssl/internal/ca.crt on staging-voice-01",
        service="voice",
    )
    assert_gate(name, with_database(fleet(4), pgbouncer_tls=UNREAD), "unknown", service="voice")
    assert_gate(name, with_database(fleet(4), pgbouncer_client_tls_sslmode=UNREAD), "unknown", service="voice")
    assert_gate(name, fleet(4), "unknown", "no instance of media", service="media")
    with pytest.raises(ValueError, match="checks one service"):
        gate(name, fleet(4))


PLAIN_DB = {"DATABASE_SSL_MODE": None, "DATABASE_SSL_CA_FILE": None}


def test_no_plaintext_leg1_names_the_stragglers() -> None:
    straggler = fleet(5, config={"voice": PLAIN_DB})
    r = gate("no_plaintext_leg1", straggler)
    assert r.status == "closed"
    assert r.reason == (
        "voice (staging-voice-01, staging-voice-02) still connects to PgBouncer in plaintext — flip voice first"
    )
    two = fleet(5, config={"voice": PLAIN_DB, "ops": PLAIN_DB})
    assert gate("no_plaintext_leg1", two).reason == (
        "voice (staging-voice-01, staging-voice-02) and ops (staging-ops-01) still connect to PgBouncer in "
        "plaintext — flip voice and ops first"
    )
    one_host = fleet(5, running={"staging-voice-02": {"DATABASE_SSL_MODE": None}})
    assert gate("no_plaintext_leg1", one_host).reason.startswith("voice (staging-voice-02) still connects")
    assert_gate(
        "no_plaintext_leg1",
        fleet(5),
        "open",
        "every client of PgBouncer is configured for TLS and connects over TLS (7 TLS connections seen)",
    )


def test_no_plaintext_leg1_needs_evidence_about_every_instance() -> None:
    stray = Connection("leg1", "?", None, "10.0.9.9:41000", False)
    snap = with_connections(fleet(5), *conns(fleet(5), "leg1"), stray, leg="leg1")
    assert_gate(
        "no_plaintext_leg1",
        snap,
        "closed",
        "an unidentified client (10.0.9.9:41000) connects to PgBouncer in plaintext from an address that is "
        "no host of the inventory — identify it and move it to TLS first",
    )
    # no connection seen proves nothing: configured for TLS, running, but silent → unknown, by name
    partly = with_connections(fleet(5), *(c for c in conns(fleet(5), "leg1") if c.service != "ops"), leg="leg1")
    assert_gate(
        "no_plaintext_leg1",
        partly,
        "unknown",
        "no evidence that staging-ops-01 (no connection seen; running but not connected) would use TLS",
    )
    # known to be down, configured for TLS: it will come back on TLS
    down = with_instance(partly, "staging-ops-01", running=False)
    assert_gate("no_plaintext_leg1", down, "open")
    # not known whether it runs: unknown
    assert_gate(
        "no_plaintext_leg1", with_instance(partly, "staging-ops-01", running=UNREAD), "unknown", "staging-ops-01"
    )
    # nobody seen at all: unknown for every instance
    empty = with_connections(fleet(5), leg="leg1")
    assert_gate("no_plaintext_leg1", empty, "unknown", "staging-api-01", "staging-web-01")
    assert_gate("no_plaintext_leg1", without_database(fleet(5)), "unknown")
    assert_gate("no_plaintext_leg1", with_leg_unknown(fleet(5), "leg1"), "unknown", "could not be read")


def test_a_stopped_straggler_configured_for_plaintext_closes_the_gate() -> None:
    """Issue #8 defect 2: ops stopped while still configured for plaintext must keep require away."""
    snap = fleet(5, config={"ops": PLAIN_DB})
    snap = with_connections(snap, *(c for c in conns(snap, "leg1") if c.service != "ops"), leg="leg1")
    snap = with_instance(snap, "staging-ops-01", running=False)
    assert gate("no_plaintext_leg1", snap).reason == (
        "ops (staging-ops-01, stopped) is still configured for plaintext to PgBouncer (pg-5 not in place: stopped or "
        "not, it would come back on plaintext) — flip ops first"
    )
    # the same for Redis with a stopped telpro
    snap = fleet(7, 2, config={"telpro": {"REDIS_TLS_ENABLED": None, "REDIS_TLS_CA_FILE": None}})
    snap = with_connections(snap, *(c for c in conns(snap, "redis") if c.service != "telpro"), leg="redis")
    snap = with_instance(snap, "staging-telpro-01", running=False)
    assert_gate(
        "no_plaintext_redis",
        snap,
        "closed",
        "telpro (staging-telpro-01, stopped) is still configured for plaintext to Redis (redis-2 not in place",
    )


def test_an_unreadable_configuration_is_not_evidence() -> None:
    snap = with_config(fleet(5), "web", "DATABASE_SSL_MODE", Unknown(Why.REFUSED, "AccessDenied"))
    assert_gate("no_plaintext_leg1", snap, "unknown", "staging-web-01 (its configuration could not be read")


def test_no_plaintext_postgres() -> None:
    assert_gate("no_plaintext_postgres", fleet(6), "open")
    assert_gate(
        "no_plaintext_postgres",
        fleet(2),
        "closed",
        "PgBouncer (10.0.1.20:40001) still connects to Postgres in plaintext",
    )
    direct = Connection("postgres", "ops", "staging-ops-01", "10.0.5.11:5555", False)
    snap = with_connections(
        fleet(6), *conns(fleet(6), "leg1"), *conns(fleet(6), "leg2"), *conns(fleet(6), "redis"), direct
    )
    assert gate("no_plaintext_postgres", snap).reason == (
        "ops (staging-ops-01) still connects directly to Postgres in plaintext — move it to TLS first; "
        "hostssl-only would refuse it"
    )
    assert_gate("no_plaintext_postgres", without_database(fleet(6)), "unknown")
    # sessions hidden from a probe user without pg_read_all_stats are unknown, not plaintext
    assert_gate("no_plaintext_postgres", with_leg_unknown(fleet(6), "postgres"), "unknown", "could not be read")


def test_redis_tls_verifies() -> None:
    assert_gate("redis_tls_verifies", fleet(7, 0), "closed", "no TLS listener yet")
    assert_gate("redis_tls_verifies", fleet(7, 1), "open")
    assert_gate("redis_tls_verifies", with_database(fleet(7, 1), redis_tls=UNREAD), "unknown")
    assert_gate(
        "redis_tls_verifies",
        with_database(fleet(7, 1), redis_tls=Handshake.NOT_VERIFIED),
        "closed",
        "serves TLS but the handshake does not verify",
    )


def test_telpro_ssl_build() -> None:
    assert_gate("telpro_ssl_build", fleet(7, 1), "open", service="telpro")
    assert_gate(
        "telpro_ssl_build",
        fleet(7, 1, telpro_ssl=False),
        "closed",
        "staging-telpro-01 runs a voiceai-telpro image without hiredis_ssl",
        service="telpro",
    )
    assert_gate(
        "telpro_ssl_build",
        with_instance(fleet(7, 1), "staging-telpro-01", telpro_ssl=UNREAD),
        "unknown",
        service="telpro",
    )
    no_telpro = dataclasses.replace(
        fleet(7, 1), instances=tuple(i for i in fleet(7, 1).instances if i.service != "telpro")
    )
    assert_gate("telpro_ssl_build", no_telpro, "unknown", "no telpro instance", service="telpro")


def test_no_plaintext_redis_counts_the_otel_collector() -> None:
    r = gate("no_plaintext_redis", fleet(7, 1))
    assert r.status == "closed"
    assert r.reason == (
        "api (staging-api-01, staging-api-02), web (staging-web-01), voice (staging-voice-01, staging-voice-02), "
        "ops (staging-ops-01) and telpro (staging-telpro-01) still connect to Redis in plaintext — flip api, web, "
        "voice, ops and telpro first"
    )
    assert_gate("no_plaintext_redis", fleet(7, 2), "open", "(8 TLS connections seen)")
    snap = fleet(7, 2)
    otel = next(c for c in conns(snap, "redis") if c.service == "otel-collector")
    others = [c for c in conns(snap, "redis") if c.service != "otel-collector"]
    plain_otel = dataclasses.replace(otel, tls=False, detail="6379")
    snap = with_database(with_connections(snap, *others, plain_otel, leg="redis"), otel_redis_endpoint="10.0.1.20:6379")
    r = gate("no_plaintext_redis", snap)
    assert r.status == "closed"
    assert "the OTel collector's REDIS_ENDPOINT is still the plaintext port (10.0.1.20:6379)" in r.reason
    assert_gate("no_plaintext_redis", with_connections(fleet(7, 2), leg="redis"), "unknown", "no evidence that")
    assert_gate(
        "no_plaintext_redis",
        with_database(fleet(7, 2), otel_redis_endpoint=""),
        "unknown",
        "OTel collector's Redis connection is not seen",
    )


def test_verifications() -> None:
    assert_gate("pgbouncer_tls_verifies", fleet(3), "closed")
    assert_gate("pgbouncer_tls_verifies", fleet(4), "open")
    assert_gate("service_postgres_tls", fleet(5), "open", service="voice")
    straggler = fleet(5, running={"staging-voice-02": {"DATABASE_SSL_MODE": None}})
    assert_gate(
        "service_postgres_tls",
        straggler,
        "closed",
        "staging-voice-02 still connects to PgBouncer in plaintext — restart it",
        service="voice",
    )
    assert_gate("postgres_hostssl_only", fleet(6), "closed", "still lets TCP connections in without TLS")
    assert_gate(
        "postgres_hostssl_only",
        with_database(fleet(7), pg_hba_hostssl_only=UNREAD),
        "unknown",
        "pg_hba.conf could not be read",
    )
    assert_gate("postgres_hostssl_only", fleet(7), "open")
    assert_gate("redis_plaintext_dropped", fleet(7, 2), "closed", "still listens in plaintext on :6379")
    assert_gate("redis_plaintext_dropped", fleet(7, 3), "open")
    assert_gate(
        "service_redis_tls",
        fleet(7, 2, telpro_ssl=False),
        "closed",
        "staging-telpro-01 (unhealthy) has no connection to Redis",
        service="telpro",
    )


# -- what every gate shares ---------------------------------------------------------------------------


def test_a_stale_snapshot_never_opens() -> None:
    snap = fleet(2)
    r = evaluate("postgres_tls_verifies", snap, now=T0 + 600, plan=PLAN)
    assert (r.status, r.reason) == (
        "unknown",
        "the snapshot is 600 s old (limit 60 s) — refresh before deciding",
    )
    assert evaluate("postgres_tls_verifies", snap, now=T0 + 600, max_age=None, plan=PLAN).status == "open"
    assert evaluate("postgres_tls_verifies", snap, now=T0 + 30, max_age=10, plan=PLAN).status == "unknown"


def test_managed_database_closes_every_gate() -> None:
    for name, spec in GATES.items():
        r = evaluate(name, managed(fleet(2)), service="api" if spec.per_service else None, now=T0, plan=PLAN)
        assert r.status == "closed" and "runbook does not apply" in r.reason


def test_unknown_gate_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown gate 'nope'"):
        evaluate("nope", fleet(1), now=T0, plan=PLAN)


# -- rollback safety ------------------------------------------------------------------------------


def blockers(step: str, snap: FleetSnapshot, service: str | None = None) -> list[str]:
    return [b.text for b in rollback_blockers(PLAN, PLAN.step(step), service, snap) if b.blocks]


def warnings(step: str, snap: FleetSnapshot, service: str | None = None) -> list[str]:
    return [b.text for b in rollback_blockers(PLAN, PLAN.step(step), service, snap) if not b.blocks]


def test_rollback_in_reverse_order_is_safe() -> None:
    assert blockers("pg-2", fleet(2)) == []
    assert blockers("pg-3", fleet(3)) == []
    assert blockers("pg-4", fleet(4)) == []
    assert blockers("pg-5", fleet(5), "voice") == []
    assert blockers("pg-6", fleet(6)) == []
    assert blockers("redis-1", fleet(7, 1)) == []
    assert blockers("redis-2", fleet(7, 2), "api") == []


def test_no_postgres_tls_off_while_pgbouncer_verifies_it() -> None:
    b = blockers("pg-2", fleet(3))
    assert b == [
        "pg-3 (PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca) is still configured: PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca in "
        "the config store — roll it back first (newest first)",
        "PgBouncer connects to Postgres with server_tls_sslmode = verify-ca: turning Postgres TLS off "
        "would cut "
        "Leg 2 — roll back PGBOUNCER_SERVER_TLS_SSLMODE first",
    ]
    # config rolled back, PgBouncer not restarted yet: still live, still blocked
    snap = fleet(
        3,
        config={"database": {"PGBOUNCER_SERVER_TLS_SSLMODE": None}},
        running={"database": {"PGBOUNCER_SERVER_TLS_SSLMODE": "verify-ca"}},
    )
    b = blockers("pg-2", snap)
    assert b[0] == (
        "pg-3 (PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca) is still live (server_tls_sslmode = verify-ca) until a "
        "restart — roll it back (or restart) first"
    )
    assert any("server_tls_sslmode = verify-ca" in x for x in b)


def test_no_client_tls_off_while_an_app_requires_it() -> None:
    snap = fleet(4, config={"api": {"DATABASE_SSL_MODE": "verify-full"}})
    b = blockers("pg-4", snap)
    assert any(
        (
            x.startswith(
                "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) "
                "is still configured on api"
            )
            and x.endswith("roll it back there first (newest first)")
        )
        or x.startswith(
            "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) "
            "is partly configured on api"
        )
        for x in b
    ), b
    assert (
        "api (DATABASE_SSL_MODE=verify-full) requires TLS to PgBouncer: with client TLS off they would be "
        "locked "
        "out — roll back their DATABASE_SSL_MODE first"
    ) in b


def test_pg6_rolls_back_to_allow_which_keeps_apps_working() -> None:
    # pg-6's rollback is "allow": apps on verify-full are not a hazard for it
    assert blockers("pg-6", fleet(6)) == []


def test_no_redis_tls_off_while_an_app_uses_it() -> None:
    b = blockers(
        "redis-1",
        fleet(
            7,
            1,
            config={"voice": {"REDIS_TLS_ENABLED": "true", "REDIS_TLS_CA_FILE": "/etc/ssl/internal/ca.crt"}},
        ),
    )
    assert any(x.startswith("redis-2 (") and "still configured on voice" in x for x in b), b
    assert (
        "voice (REDIS_TLS_ENABLED=true) uses Redis over TLS: dropping the TLS listener would cut them off — "
        "roll back their REDIS_TLS_ENABLED first" in b
    )


def test_per_service_rollback_waits_for_later_database_steps() -> None:
    b = blockers("pg-5", fleet(6), "voice")
    assert b[0] == (
        "pg-6 (PGBOUNCER_CLIENT_TLS_SSLMODE=require) is still configured: PGBOUNCER_CLIENT_TLS_SSLMODE=require in "
        "the config store — roll it back first (newest first)"
    )
    assert "voice would be refused in plaintext" in b[1]
    assert any("REDIS_FORCE_TLS" in x for x in blockers("redis-2", fleet(7, 3), "api"))
    # a per-service step is rolled back for one service at a time
    with pytest.raises(ValueError, match="per service"):
        blockers("pg-5", fleet(5))


def test_rollback_blocks_on_what_it_cannot_see() -> None:
    b = blockers("pg-2", without_database(fleet(2)))
    assert b and all("cannot tell" in x for x in b)
    snap = with_config(fleet(4), "database", "PGBOUNCER_CLIENT_TLS_SSLMODE", Unknown(Why.REFUSED, "AccessDenied"))
    snap = with_database(snap, pgbouncer_client_tls_sslmode=UNREAD)
    b = blockers("pg-3", snap)
    assert any(
        x.startswith("cannot tell whether pg-4 (PGBOUNCER_CLIENT_TLS_SSLMODE=allow) is still in place") for x in b
    ), b


def test_an_unmeasurable_later_step_that_the_store_says_is_off_only_warns() -> None:
    """Issue #8 defect 5: pg_hba unreadable (probe user not a superuser), POSTGRES_FORCE_SSL off in the store:
    rolling back pg-6 and earlier is not blocked by pg-7 — a warning says what could not be measured."""
    snap = with_database(fleet(6), pg_hba_hostssl_only=Unknown(Why.REFUSED, "needs superuser"))
    assert blockers("pg-6", snap) == []
    assert any(
        w.startswith("pg-7 (POSTGRES_FORCE_SSL=on) is not configured, but whether it still runs could not be measured")
        for w in warnings("pg-6", snap)
    ), warnings("pg-6", snap)
    # configured in the store: still blocked, whatever the live fact says
    on = with_database(fleet(7), pg_hba_hostssl_only=Unknown(Why.REFUSED, "needs superuser"))
    assert any(x.startswith("pg-7 (POSTGRES_FORCE_SSL=on) is still configured") for x in blockers("pg-6", on))


def test_every_blocker_has_an_id_to_override() -> None:
    ids = {b.id for b in rollback_blockers(PLAN, PLAN.step("pg-2"), None, fleet(3))}
    assert ids == {"later:pg-3", "hazard:POSTGRES_TLS_ENABLED"}


def test_certs_have_no_rollback() -> None:
    assert blockers("pg-1", fleet(1)) == [
        "pg-1 (Provision certs) has no rollback: the cockpit does not remove cert material, since every TLS "
        "listener and client depends on it"
    ]


# -- environments in order ------------------------------------------------------------------------


def envs() -> tuple[Environment, Environment]:
    staging = load_inventory(ROOT / "docs" / "inventory.example.toml").env()
    production = dataclasses.replace(staging, name="production", after="staging", protected=True)
    return staging, production


def test_env_order_gate() -> None:
    staging, production = envs()
    step = PLAN.step("pg-3")
    assert env_order_gate(step, staging, None) == GateResult("env_order", "open", "no environment comes before staging")
    r = env_order_gate(step, production, None)
    assert (r.status, r.reason) == (
        "unknown",
        "production comes after staging, whose position is unknown — take a snapshot of staging first",
    )
    behind = derive_position(
        PLAN, fleet(3, running={"database": {"PGBOUNCER_SERVER_TLS_SSLMODE": "disable"}}), SERVICES
    )
    r = env_order_gate(step, production, behind)
    assert (r.status, r.reason) == (
        "closed",
        "pg-3 is not verified in staging yet (database: configured) — finish it there first, or override with a reason",
    )
    ahead = derive_position(PLAN, fleet(3), SERVICES)
    assert env_order_gate(step, production, ahead).status == "open"
    r = env_order_gate(step, production, behind, override="staging's PgBouncer is being rebuilt; approved by ops")
    assert r.status == "open"
    assert r.reason.startswith("overridden: staging's PgBouncer is being rebuilt; approved by ops (otherwise: pg-3")
    r = env_order_gate(step, production, behind, override="  ")
    assert r.status == "closed" and r.reason.endswith("an override needs a non-empty reason")


def test_env_order_gate_per_service() -> None:
    _, production = envs()
    step = PLAN.step("pg-5")
    prev = derive_position(PLAN, fleet(4, config={"api": {"DATABASE_SSL_MODE": "verify-full"}}), SERVICES)
    assert env_order_gate(step, production, prev, service="api").status == "open"
    r = env_order_gate(step, production, prev, service="web")
    assert r.status == "closed" and "(web: pending)" in r.reason
    assert env_order_gate(step, production, prev).status == "closed"


def test_the_database_host_is_not_a_client() -> None:
    snap = fleet(5)
    assert not isinstance(snap.database, Unknown)
    db_inst = dataclasses.replace(
        snap.instances[0], host=snap.database.host, service="database", db=LegUse(), consumes=()
    )
    snap = dataclasses.replace(snap, instances=(*snap.instances, db_inst))
    r = gate("no_plaintext_leg1", snap)
    assert r.status == "open" and "staging-database-01" not in r.reason
