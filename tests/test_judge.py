"""`plans.judge`: the database side's raw facts judged against the configuration — plaintext the configuration
still allows is the rollout's state (ok, said so), a live setting that differs from the configured one is drift
(warn), a could-not-measure is never judged, and only verdicts and wording change, never a fact. In memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.load import load_inventory
from inventory.model import Environment
from plans.judge import judge_check, judge_snapshot
from probes.model import CheckResult, Unknown, Verdict, Why
from probes.snapshot import ConfigSource, ConfiguredValue, DatabaseState, FleetSnapshot, InstanceState

ROOT = Path(__file__).resolve().parent.parent
DB = "staging-database-01"


@pytest.fixture(scope="module")
def env() -> Environment:
    return load_inventory(ROOT / "docs" / "inventory.example.toml").env()


def snapshot(
    checks: list[CheckResult], config: dict[str, str | None], instance_checks: tuple[CheckResult, ...] = ()
) -> FleetSnapshot:
    configured = {"database": {k: ConfiguredValue(v, ConfigSource.SSM) for k, v in config.items()}}
    db = DatabaseState(DB, reachable=True, checks=tuple(checks))
    inst = InstanceState("staging-api-01", "api", "10.0.1.21", checks=instance_checks)
    return FleetSnapshot("staging", 0.0, 1.0, False, configured, db, (inst,), (), (*checks, *instance_checks))


def judged(env: Environment, c: CheckResult, **config: str | None) -> CheckResult:
    s = judge_snapshot(snapshot([c], config), env)
    assert isinstance(s.database, DatabaseState)
    assert s.database.checks == s.checks[:1]  # the flat list and the database side agree
    return s.checks[0]


def test_postgres_declining_tls_is_the_state_while_the_configuration_says_off(env: Environment) -> None:
    raw = CheckResult("tls.postgres", f"{DB}:5432", Verdict.FAIL, "TLS not offered (answered N)", {"answer": "N"})
    off = judged(env, raw, POSTGRES_TLS_ENABLED="off")
    assert off.verdict is Verdict.OK and "POSTGRES_TLS_ENABLED is not on" in off.summary
    assert off.evidence == raw.evidence  # the fact is kept as measured
    on = judged(env, raw, POSTGRES_TLS_ENABLED="on")
    assert on == raw  # configured on, and it declines: the failure stands


def test_live_ssl_differing_from_the_configuration_is_drift(env: Environment) -> None:
    raw = CheckResult("postgres.ssl", f"{DB}:5432", Verdict.FAIL, "ssl = off", {"ssl": False})
    drift = judged(env, raw, POSTGRES_TLS_ENABLED="on")
    assert drift.verdict is Verdict.WARN and "configured, not restarted?" in drift.summary
    same = judged(env, raw, POSTGRES_TLS_ENABLED="off")
    assert same.verdict is Verdict.OK and same.summary == "ssl = off, as configured"


def test_plaintext_clients_are_allowed_only_until_the_configuration_requires_tls(env: Environment) -> None:
    raw = CheckResult(
        "pgbouncer.clients", f"{DB}:6432", Verdict.WARN, "2 of 5 client(s) on plaintext: voice", {"total": 5, "tls": 3}
    )
    allowed = judged(env, raw, PGBOUNCER_CLIENT_TLS_SSLMODE="allow")
    assert allowed.verdict is Verdict.OK and allowed.summary.startswith(raw.summary) and "allowed" in allowed.summary
    assert judged(env, raw, PGBOUNCER_CLIENT_TLS_SSLMODE="require") == raw


def test_an_unbound_redis_tls_port_is_as_configured_only_when_tls_is_off(env: Environment) -> None:
    raw = CheckResult("listener.bound", f"{DB}:6380", Verdict.FAIL, "nothing bound on :6380 (redis TLS)")
    off = judged(env, raw, REDIS_TLS_ENABLED="false")
    assert off.verdict is Verdict.OK and off.summary == "redis TLS :6380 not bound, as configured"
    assert judged(env, raw, REDIS_TLS_ENABLED="true") == raw
    plain = CheckResult("listener.bound", f"{DB}:6379", Verdict.OK, "redis listening on :6379")
    forced = judged(env, plain, REDIS_FORCE_TLS="true")
    assert forced.verdict is Verdict.OK and forced.summary.endswith("(configuration says it should not be)")
    pg = CheckResult("listener.bound", f"{DB}:5432", Verdict.FAIL, "nothing bound on :5432 (postgres)")
    assert judged(env, pg, POSTGRES_TLS_ENABLED="off") == pg  # Postgres is always expected


def test_an_unknown_or_unread_configuration_allows_nothing_it_would_have_to_say(env: Environment) -> None:
    raw = CheckResult("tls.redis", f"{DB}:6380", Verdict.FAIL, "nothing listening on :6380", {"listening": False})
    assert judged(env, raw).verdict is Verdict.OK  # REDIS_TLS_ENABLED unset: TLS is not on yet
    s = snapshot([raw], {})
    s = FleetSnapshot(
        s.env,
        s.taken_at,
        s.duration_ms,
        False,
        {"database": {"REDIS_TLS_ENABLED": Unknown(Why.TIMEOUT, "ssm")}},
        s.database,
        s.instances,
        s.certs,
        s.checks,
    )
    assert judge_snapshot(s, env).checks[0].verdict is Verdict.OK  # unknown is never "true"


def test_could_not_measure_is_never_judged(env: Environment) -> None:
    raw = CheckResult("postgres.hba", f"{DB}:5432", Verdict.ERROR, "cannot read pg_hba_file_rules", why=Why.REFUSED)
    assert judge_check(raw, lambda var: "on") is raw
    assert judged(env, raw, POSTGRES_FORCE_SSL="off") == raw


def test_only_the_database_hosts_checks_are_judged(env: Environment) -> None:
    db_check = CheckResult("redis.clients", f"{DB}:6379", Verdict.WARN, "1 of 2 client(s) on plaintext: voice")
    elsewhere = CheckResult("redis.clients", "staging-api-01", Verdict.WARN, "not a database check")
    s = judge_snapshot(snapshot([db_check], {"REDIS_FORCE_TLS": "false"}, (elsewhere,)), env)
    assert s.checks[0].verdict is Verdict.OK
    assert s.checks[1] is elsewhere and s.instances[0].checks == (elsewhere,)
    assert s.configured == snapshot([db_check], {"REDIS_FORCE_TLS": "false"}).configured


def test_a_snapshot_without_a_database_side_is_returned_as_it_is(env: Environment) -> None:
    s = FleetSnapshot("staging", 0.0, 1.0, False, {}, Unknown(Why.UNREACHABLE, "down"), (), (), ())
    assert judge_snapshot(s, env) is s
