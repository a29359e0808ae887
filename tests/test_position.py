"""Position derived from a snapshot: per step and service, per instance where instances differ,
unknown where a fact is missing, dangers where the fleet is out of order, and `next_action` walking
the runbook order."""

from __future__ import annotations

import dataclasses
import json

import pytest

from plans.plan import Plan, default_plan
from plans.position import Position, derive_position, next_action
from probes.model import Unknown, Why
from probes.snapshot import ConfigSource, ConfiguredValue, FleetSnapshot
from tests.snapshots_factory import (
    SERVICES,
    fleet,
    managed,
    with_config,
    with_database,
    with_instance,
    without_database,
)

UNREAD = Unknown(Why.TIMEOUT, "no answer")
PLAIN_DB = {"DATABASE_SSL_MODE": None, "DATABASE_SSL_CA_FILE": None}
TLS_DB = {"DATABASE_SSL_MODE": "verify-full", "DATABASE_SSL_CA_FILE": "/etc/ssl/internal/ca.crt"}

PLAN = default_plan()
PG = ["pg-1", "pg-2", "pg-3", "pg-4", "pg-5", "pg-6", "pg-7"]
REDIS = ["redis-1", "redis-2", "redis-3"]


def position(snap: FleetSnapshot, plan: Plan = PLAN) -> Position:
    return derive_position(plan, snap, SERVICES)


def states(pos: Position) -> dict[str, str]:
    return {sp.step.id: sp.state for sp in pos.steps}


def action(snap: FleetSnapshot, **kw: bool) -> tuple[str, str | None] | None:
    na = next_action(PLAN, snap, SERVICES, **kw)
    return None if na is None else (na[0].id, na[1])


# -- each runbook state -------------------------------------------------------------------------


@pytest.mark.parametrize(("pg", "redis"), [(0, 0), *((n, 0) for n in range(1, 8)), *((7, n) for n in range(1, 4))])
def test_each_runbook_state(pg: int, redis: int) -> None:
    pos = position(fleet(pg, redis))
    want = {s: ("verified" if i < pg else "pending") for i, s in enumerate(PG)}
    want |= {s: ("verified" if i < redis else "pending") for i, s in enumerate(REDIS)}
    assert states(pos) == want
    assert pos.dangers == ()
    for sp in pos.steps:  # every target agrees with its step here
        assert {t.state for t in sp.targets} == {want[sp.step.id]}


def test_targets_per_step() -> None:
    pos = position(fleet(5))
    assert [t.service for t in pos.step_position("pg-1").targets] == [None]  # type: ignore[union-attr]
    assert [t.service for t in pos.step_position("pg-2").targets] == ["database"]  # type: ignore[union-attr]
    assert [t.service for t in pos.step_position("pg-5").targets] == list(SERVICES)  # type: ignore[union-attr]
    t = pos.target("pg-5", "voice")
    assert [(i.host, i.state) for i in t.instances] == [
        ("staging-voice-01", "live"),
        ("staging-voice-02", "live"),
    ]
    assert t.detail == "every voice instance (staging-voice-01, staging-voice-02) connects to PgBouncer over TLS"


def test_fresh_details() -> None:
    pos = position(fleet(1))
    assert pos.target("pg-2", "database").detail == (
        "not configured: POSTGRES_TLS_ENABLED is 'off' (default), not 'on'"
    )
    assert position(fleet(0)).target("pg-1").detail.startswith("cert material is missing under database, api")


def test_superseded_values_stay_verified() -> None:
    # pg-6 sets PGBOUNCER_CLIENT_TLS_SSLMODE=require: pg-4's "allow" is superseded, not undone
    pos = position(fleet(6))
    assert pos.state("pg-4") == "verified"
    assert pos.target("pg-4", "database").configured is True


# -- configured, live, verified, failed -----------------------------------------------------------


def test_configured_not_restarted() -> None:
    snap = fleet(
        1,
        config={"database": {"POSTGRES_TLS_ENABLED": "on"}},
        running={"database": {"POSTGRES_TLS_ENABLED": None}},
    )
    t = position(snap).target("pg-2", "database")
    assert t.state == "configured"
    assert t.detail == (
        "configured (POSTGRES_TLS_ENABLED=on in the config store), not live yet (ssl = off) — restart the database host"
    )


def test_live_but_not_verified_yet() -> None:
    snap = with_database(fleet(2), postgres_tls=UNREAD)
    t = position(snap).target("pg-2", "database")
    assert t.state == "unknown" and t.detail.startswith("live (ssl = on); postgres_tls_verifies could not be measured")


def test_failed_verification() -> None:
    pos = position(fleet(2, certs="bad-san"))
    assert pos.state("pg-1") == "failed"
    t = pos.target("pg-2", "database")
    assert t.state == "failed"
    assert t.detail.startswith("live (ssl = on) but postgres_tls_verifies fails: Postgres serves TLS but the handshake")


def test_rolled_back_but_still_live_is_pending() -> None:
    snap = fleet(
        2,
        config={"database": {"POSTGRES_TLS_ENABLED": None}},
        running={"database": {"POSTGRES_TLS_ENABLED": "on"}},
    )
    t = position(snap).target("pg-2", "database")
    assert t.state == "pending"
    assert t.detail.endswith("still live (ssl = on) until the database host restarts")


# -- per-instance detail ----------------------------------------------------------------------------


def test_instances_that_differ() -> None:
    snap = fleet(5, running={"staging-voice-02": {"DATABASE_SSL_MODE": None}})
    pos = position(snap)
    t = pos.target("pg-5", "voice")
    assert t.state == "configured"
    assert t.instances_differ
    assert t.instance("staging-voice-01").state == "live"  # type: ignore[union-attr]
    v2 = t.instance("staging-voice-02")
    assert v2 is not None and v2.state == "configured"
    assert v2.detail == "configured, but still connects to PgBouncer in plaintext — restart it"
    assert pos.state("pg-5", "api") == "verified"
    assert pos.state("pg-5") == "configured"
    assert action(snap) == ("pg-5", "voice")


def test_straggler_service() -> None:
    # the lab's "straggler": every service flipped (pg-5, redis-2) but voice
    snap = fleet(
        5,
        2,
        config={"voice": {**PLAIN_DB, "REDIS_TLS_ENABLED": None, "REDIS_TLS_CA_FILE": None}},
    )
    pos = position(snap)
    assert pos.state("pg-5", "voice") == "pending"
    assert pos.state("pg-5", "ops") == "verified"
    assert pos.state("redis-2", "voice") == "pending"
    assert pos.state("pg-6") == "pending"
    assert action(snap) == ("pg-5", "voice")


def test_per_host_config_store() -> None:
    # env-file store: each host holds its own value; voice-01 flipped and restarted, voice-02 not yet edited
    snap = with_config(
        fleet(4, running={"staging-voice-01": {"DATABASE_SSL_MODE": "verify-full"}}),
        "voice",
        "DATABASE_SSL_MODE",
        None,
    )
    snap = with_config(snap, "voice", "DATABASE_SSL_CA_FILE", None)
    ca = ConfiguredValue("/etc/ssl/internal/ca.crt", ConfigSource.ENVFILE)
    snap = with_instance(
        snap,
        "staging-voice-01",
        configured={
            "DATABASE_SSL_MODE": ConfiguredValue("verify-full", ConfigSource.ENVFILE),
            "DATABASE_SSL_CA_FILE": ca,
        },
    )
    snap = with_instance(
        snap,
        "staging-voice-02",
        configured={
            "DATABASE_SSL_MODE": ConfiguredValue("disable", ConfigSource.ENVFILE),
            "DATABASE_SSL_CA_FILE": ConfiguredValue("/etc/ssl/internal/ca.crt", ConfigSource.DEFAULT),
        },
    )
    t = position(snap).target("pg-5", "voice")
    assert [(i.host, i.state) for i in t.instances] == [
        ("staging-voice-01", "live"),
        ("staging-voice-02", "pending"),
    ]
    assert t.state == "configured" and t.configured is True


# -- unknown, never pending ------------------------------------------------------------------------


def test_unknown_when_the_database_is_not_observed() -> None:
    pos = position(without_database(fleet(4)))
    for sid in ("pg-2", "pg-3", "pg-4"):
        assert pos.state(sid) == "unknown", sid
    assert NO_DB_TEXT in pos.target("pg-2", "database").detail
    # what the config store says is still known: a step nobody configured is pending
    assert pos.state("pg-6") == "pending"


NO_DB_TEXT = "the database host could not be observed"


@pytest.mark.parametrize(
    ("step", "fact"),
    [
        ("pg-2", "postgres_ssl"),
        ("pg-3", "pgbouncer_server_tls_sslmode"),
        ("pg-4", "pgbouncer_client_tls_sslmode"),
        ("pg-6", "pgbouncer_client_tls_sslmode"),
        ("pg-7", "pg_hba_hostssl_only"),
    ],
)
def test_unknown_live_fact(step: str, fact: str) -> None:
    pos = position(with_database(fleet(7), **{fact: UNREAD}))
    t = pos.target(step, "database")
    assert t.state == "unknown", t.detail
    assert "could not be read" in t.detail


@pytest.mark.parametrize(("step", "fact"), [("redis-1", "redis_tls_port"), ("redis-3", "redis_port")])
def test_unknown_redis_fact(step: str, fact: str) -> None:
    assert position(with_database(fleet(7, 3), **{fact: UNREAD})).state(step) == "unknown"


def test_unknown_instance_fact() -> None:
    from probes.snapshot import LegUse

    snap = with_instance(fleet(5), "staging-ops-01", db=LegUse())
    t = position(snap).target("pg-5", "ops")
    assert t.state == "unknown"
    assert t.instances[0].detail == "configured; no connection to PgBouncer seen"
    snap = with_instance(fleet(5), "staging-ops-01", db=LegUse(), reachable=False)
    assert (
        position(snap).target("pg-5", "ops").instances[0].detail
        == "configured; staging-ops-01 is unreachable, and no connection to PgBouncer is seen"
    )
    snap = with_instance(fleet(5), "staging-ops-01", db=UNREAD)
    assert position(snap).target("pg-5", "ops").state == "unknown"
    assert action(with_instance(fleet(5), "staging-ops-01", db=LegUse())) == ("pg-5", "ops")


def test_unknown_config() -> None:
    snap = with_config(fleet(1), "database", "POSTGRES_TLS_ENABLED", Unknown(Why.REFUSED, "AccessDenied"))
    t = position(snap).target("pg-2", "database")
    assert t.state == "unknown" and isinstance(t.configured, Unknown)
    assert t.detail.startswith("POSTGRES_TLS_ENABLED could not be read from the config store")
    # observed live and verified wins over an unreadable store
    snap = with_config(fleet(2), "database", "POSTGRES_TLS_ENABLED", None)
    assert position(snap).state("pg-2") == "verified"


def test_missing_instances() -> None:
    snap = with_config(fleet(5), "ops", "DATABASE_SSL_MODE", ConfiguredValue("verify-full", ConfigSource.SSM))
    snap = dataclasses.replace(snap, instances=tuple(i for i in snap.instances if i.service != "ops"))
    assert position(snap).state("pg-5", "ops") == "unknown"


def test_managed_database() -> None:
    pos = position(managed(fleet(3)))
    assert set(states(pos).values()) == {"unknown"}
    assert "runbook does not apply" in pos.target("pg-2", "database").detail
    assert action(managed(fleet(3))) is None


# -- dangers ---------------------------------------------------------------------------------------


def runs_nowhere(step: str) -> str:
    return (
        f"is configured but the database host does not run it yet: its next restart (a reboot, a deploy) would "
        f"apply it outside the cockpit — run `cockpit advance {step}` to complete it, or `cockpit rollback {step}` "
        "to revert it"
    )


def messages(pos: Position) -> list[str]:
    return [d.message for d in pos.dangers]


def test_danger_require_configured_while_a_client_is_plaintext() -> None:
    snap = fleet(
        5,
        config={
            "database": {"PGBOUNCER_CLIENT_TLS_SSLMODE": "require"},
            "voice": PLAIN_DB,
        },
        running={"database": {"PGBOUNCER_CLIENT_TLS_SSLMODE": "allow"}},
    )
    pos = position(snap)
    assert pos.state("pg-6") == "configured"
    assert messages(pos) == [
        "pg-6 (PGBOUNCER_CLIENT_TLS_SSLMODE=require) " + runs_nowhere("pg-6"),
        "pg-6 (PGBOUNCER_CLIENT_TLS_SSLMODE=require) is configured but its gate no_plaintext_leg1 is "
        "closed: voice "
        "(staging-voice-01, staging-voice-02) still connects to PgBouncer in plaintext — flip voice first",
        "pg-6 (PGBOUNCER_CLIENT_TLS_SSLMODE=require) is configured before pg-5 "
        "(DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) for "
        "voice — apply pg-5 first, or roll pg-6 back",
    ]
    assert {(d.step, d.service) for d in pos.dangers} == {("pg-6", "database")}


def test_danger_per_service_step_before_client_tls() -> None:
    snap = fleet(3, config={"api": TLS_DB})
    pos = position(snap)
    assert pos.state("pg-5", "api") == "failed"  # configured, and api is locked out
    assert messages(pos) == [
        "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) is configured for api "
        "but its gate "
        "pgbouncer_offers_tls_and_ca_files "
        "is closed: PgBouncer does not offer TLS to clients (client_tls_sslmode = disable) — set "
        "PGBOUNCER_CLIENT_TLS_SSLMODE=allow and restart the database host first",
        "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) is configured for api "
        "before pg-4 "
        "(PGBOUNCER_CLIENT_TLS_SSLMODE=allow) "
        "for database — apply pg-4 first, or roll pg-5 back",
    ]
    assert action(snap) == ("pg-4", "database")


def test_danger_client_tls_configured_but_not_live() -> None:
    snap = fleet(
        4,
        config={"api": TLS_DB},
        running={"database": {"PGBOUNCER_CLIENT_TLS_SSLMODE": "disable"}, "api": {"DATABASE_SSL_MODE": None}},
    )
    pos = position(snap)
    assert pos.state("pg-4") == "configured"
    assert messages(pos) == [
        "pg-4 (PGBOUNCER_CLIENT_TLS_SSLMODE=allow) " + runs_nowhere("pg-4"),
        "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) is configured for api but "
        "no instance runs it yet: the next restart of any of them (a reboot, a deploy) would apply it outside the "
        "cockpit — run `cockpit advance pg-5 --service api` to complete it, or `cockpit rollback pg-5 --service api` "
        "to revert it",
        "pg-5 (DATABASE_SSL_MODE=verify-full, DATABASE_SSL_CA_FILE=/etc/ssl/internal/ca.crt) is configured for api "
        "but its gate "
        "pgbouncer_offers_tls_and_ca_files "
        "is closed: PgBouncer does not offer TLS to clients (client_tls_sslmode = disable) — set "
        "PGBOUNCER_CLIENT_TLS_SSLMODE=allow and restart the database host first",
    ]


def test_danger_redis_force_tls_while_clients_on_6379() -> None:
    snap = fleet(
        7,
        3,
        config={"voice": {"REDIS_TLS_ENABLED": None, "REDIS_TLS_CA_FILE": None}},
        running={"database": {"REDIS_FORCE_TLS": "false"}},
    )
    pos = position(snap)
    assert pos.state("redis-3") == "configured"
    assert messages(pos)[0] == "redis-3 (REDIS_FORCE_TLS=true) " + runs_nowhere("redis-3")
    assert messages(pos)[1] == (
        "redis-3 (REDIS_FORCE_TLS=true) is configured but its gate no_plaintext_redis is closed: voice "
        "(staging-voice-01, staging-voice-02) still connects to Redis in plaintext — flip voice first"
    )


def test_danger_telpro_flipped_without_its_ssl_build() -> None:
    snap = fleet(7, 2, telpro_ssl=False)
    pos = position(snap)
    assert pos.state("redis-2", "telpro") == "failed"
    assert pos.state("redis-2", "voice") == "verified"
    assert pos.state("pg-5", "telpro") == "verified"  # a Redis problem does not fail the Postgres step
    assert messages(pos) == [
        "redis-2 (REDIS_TLS_ENABLED=true, REDIS_TLS_CA_FILE=/etc/ssl/internal/ca.crt) is configured for "
        "telpro but "
        "its gate telpro_ssl_build is closed: staging-telpro-01 runs a voiceai-telpro image without "
        "hiredis_ssl — "
        "ship the SSL build of voiceai-telpro before flipping its Redis to TLS"
    ]
    assert action(snap) == ("redis-2", "telpro")


def test_no_danger_for_a_clean_rollout() -> None:
    assert position(fleet(7, 3)).dangers == ()


# -- next action walks the runbook ------------------------------------------------------------------


def test_next_action_at_each_state() -> None:
    assert action(fleet(0)) == ("pg-1", None)
    assert action(fleet(1)) == ("pg-2", "database")
    assert action(fleet(4)) == ("pg-5", "api")
    assert action(fleet(4, config={"api": TLS_DB})) == ("pg-5", "web")
    assert action(fleet(6)) == ("redis-1", "database")  # pg-7 is optional: required steps first
    assert action(fleet(6, 3)) == ("pg-7", "database")
    assert action(fleet(6, 3), include_optional=False) is None
    assert action(fleet(7, 3)) is None


def test_next_action_walks_the_whole_runbook() -> None:
    """Apply whatever next_action says (set its values; every host restarts) until it says nothing."""
    certs = False
    config: dict[str, dict[str, str | None]] = {}
    walked: list[tuple[str, str | None]] = []
    for _ in range(40):
        snap = fleet(1 if certs else 0, config=config)
        na = next_action(PLAN, snap, SERVICES)
        if na is None:
            break
        step, service = na
        walked.append((step.id, service))
        if step.kind == "certs":
            certs = True
        else:
            assert service is not None
            config.setdefault(service, {}).update({c.var: c.value for c in step.changes})
        assert position(fleet(1 if certs else 0, config=config)).dangers == ()
    apps = list(SERVICES)
    assert walked == [
        ("pg-1", None),
        ("pg-2", "database"),
        ("pg-3", "database"),
        ("pg-4", "database"),
        *(("pg-5", s) for s in apps),
        ("pg-6", "database"),
        ("redis-1", "database"),
        *(("redis-2", s) for s in apps),
        ("redis-3", "database"),
        ("pg-7", "database"),
    ]


def test_others_follows_the_inventory_order() -> None:
    order = [
        "telpro",
        "api",
        "web",
        "voice",
        "ops",
    ]  # the inventory writes telpro first; "others" keeps it last
    na = next_action(PLAN, fleet(5, config={"telpro": PLAIN_DB}), order)
    assert na is not None and (na[0].id, na[1]) == ("pg-5", "telpro")
    pos = derive_position(PLAN, fleet(4), order)
    assert [t.service for t in pos.step_position("pg-5").targets] == ["api", "web", "voice", "ops", "telpro"]  # type: ignore[union-attr]


def test_position_is_json() -> None:
    data = position(fleet(5, running={"staging-voice-02": {"DATABASE_SSL_MODE": None}})).to_json()
    text = json.dumps(data)
    assert '"staging-voice-02", "state": "configured"' in text
    assert data["steps"][4]["targets"][2]["service"] == "voice"


# -- dangers nobody chose: half-written steps, unfinished applies ------------------------------------


def test_a_step_only_partly_configured_is_a_danger_never_pending() -> None:
    """Issue #10: kill -9 between redis-2's two writes left REDIS_TLS_ENABLED=true without the CA file."""
    snap = fleet(7, 1, config={"voice": {"REDIS_TLS_ENABLED": "true"}})
    pos = position(snap)
    t = pos.target("redis-2", "voice")
    assert t.state != "pending" and t.partial
    assert any(
        d.step == "redis-2"
        and d.service == "voice"
        and "only partly configured" in d.message
        and "cockpit advance redis-2 --service voice" in d.message
        for d in pos.dangers
    ), messages(pos)


def test_an_unfinished_intent_is_a_danger_with_its_remedy() -> None:
    from plans.intent import Intent, IntentChange

    intent = Intent(
        "t1",
        "pg-3",
        "database",
        "advance",
        (IntentChange("PGBOUNCER_SERVER_TLS_SSLMODE", None, "verify-ca"),),
        "ana",
        "jump-1",
        1.0,
    )
    pos = derive_position(PLAN, fleet(2), SERVICES, intents=[intent])
    assert [d.message for d in pos.dangers] == [
        "an advance of pg-3 for database by ana on jump-1 did not finish (written: nothing; not written: "
        "PGBOUNCER_SERVER_TLS_SSLMODE) — run `cockpit advance pg-3` to complete it, or `cockpit rollback pg-3` to "
        "revert it"
    ]
    pos = derive_position(
        PLAN, fleet(3, running={"database": {"PGBOUNCER_SERVER_TLS_SSLMODE": None}}), SERVICES, intents=[intent]
    )
    assert "written: PGBOUNCER_SERVER_TLS_SSLMODE; not written: nothing" in pos.dangers[0].message
