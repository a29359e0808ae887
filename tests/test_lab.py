"""The lab behaves as the platform does: each runbook variable, set in SSM and applied with
`update.sh --restart-only` over SSH through the bastion, has its effect — and the meters see
outages when (and only when) there is one."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from lab import control, scenarios
from lab.netclaim import claim_net
from lab.topology import LabSpec
from tests.labkit import (
    pgbouncer_config,
    port_open,
    postgres_query,
    rollout_params,
    running_lab,
    set_var,
    ssh,
    ssl_request,
    update,
)

pytestmark = pytest.mark.lab

APP_ORDER_PG = ["api", "web", "voice", "ops", "telpro"]  # api → web → voice → ops → others
APP_ORDER_REDIS = ["api", "web", "voice", "ops", "telpro"]


def _flip(spec: LabSpec, service: str, changes: dict[str, str | None]) -> None:
    for var, value in changes.items():
        set_var(spec, service, var, value)
    hosts = [spec.database] if service == "database" else [h for h in spec.app_hosts() if h.service == service]
    for h in hosts:  # one instance at a time
        r = update(spec, h)
        assert r.returncode == 0, f"{h.name}: {r.stderr}"


def _meter(spec: LabSpec, host_name: str, proc: str) -> dict[str, object]:
    h = spec.host(host_name)
    return json.loads((Path(h.root) / "var/lib/lab" / f"{proc}.meter.json").read_text())


def _apps_tls(spec: LabSpec, service: str, leg: str) -> list[bool]:
    return [
        bool(_meter(spec, h.name, service).get(leg, {}).get("tls")) for h in spec.app_hosts() if h.service == service
    ]


def test_whole_runbook_by_hand_and_back_without_a_failed_request(lab: LabSpec) -> None:
    scenarios.apply(lab, "fresh")
    before = rollout_params(lab)
    db = lab.database
    control.reset_meters(lab)

    assert ssl_request(db.address, lab.postgres_port) == b"N"
    _flip(lab, "database", {"POSTGRES_TLS_ENABLED": "on"})  # step 2
    assert ssl_request(db.address, lab.postgres_port) == b"S"

    _flip(lab, "database", {"PGBOUNCER_SERVER_TLS_SSLMODE": "verify-ca"})  # step 3
    assert pgbouncer_config(lab)["server_tls_sslmode"] == "verify-ca"
    rows = postgres_query(
        lab,
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.backend_type='client backend' AND a.pid <> pg_backend_pid()",
    )
    assert rows and all(r[0] for r in rows), rows  # Leg 2 on TLS

    assert ssl_request(db.address, lab.pgbouncer_port) == b"N"
    _flip(lab, "database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "allow"})  # step 4
    assert ssl_request(db.address, lab.pgbouncer_port) == b"S"

    for svc in APP_ORDER_PG:  # step 5, one service at a time
        assert not any(_apps_tls(lab, svc, "db"))
        _flip(lab, svc, {"DATABASE_SSL_MODE": "verify-full"})
        assert all(_apps_tls(lab, svc, "db"))

    _flip(lab, "database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "require"})  # step 6
    assert pgbouncer_config(lab)["client_tls_sslmode"] == "require"

    _flip(lab, "database", {"POSTGRES_FORCE_SSL": "on"})  # step 7
    rules = postgres_query(lab, "SELECT type FROM pg_hba_file_rules WHERE type <> 'local'")
    assert rules and {r[0] for r in rules} == {"hostssl"}

    assert not port_open(db.address, lab.redis_tls_port)
    _flip(lab, "database", {"REDIS_TLS_ENABLED": "true"})  # Redis step 1
    assert port_open(db.address, lab.redis_tls_port) and port_open(db.address, lab.redis_port)
    assert _meter(lab, db.name, "otel-collector")["redis"]["port"] == lab.redis_tls_port

    for svc in APP_ORDER_REDIS:  # Redis step 2
        _flip(lab, svc, {"REDIS_TLS_ENABLED": "true", "REDIS_TLS_CA_FILE": "/etc/ssl/internal/ca.crt"})
        assert all(_apps_tls(lab, svc, "redis"))

    _flip(lab, "database", {"REDIS_FORCE_TLS": "true"})  # Redis step 3
    assert not port_open(db.address, lab.redis_port)
    assert port_open(db.address, lab.redis_tls_port)

    # the full rollback, in reverse
    _flip(lab, "database", {"REDIS_FORCE_TLS": None})
    assert port_open(db.address, lab.redis_port)
    for svc in reversed(APP_ORDER_REDIS):
        _flip(lab, svc, {"REDIS_TLS_ENABLED": None, "REDIS_TLS_CA_FILE": None})
        assert not any(_apps_tls(lab, svc, "redis"))
    _flip(lab, "database", {"REDIS_TLS_ENABLED": None})
    assert not port_open(db.address, lab.redis_tls_port)
    _flip(lab, "database", {"POSTGRES_FORCE_SSL": None})
    _flip(lab, "database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "allow"})
    for svc in reversed(APP_ORDER_PG):
        _flip(lab, svc, {"DATABASE_SSL_MODE": None})
        assert not any(_apps_tls(lab, svc, "db"))
    _flip(lab, "database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": None})
    _flip(lab, "database", {"PGBOUNCER_SERVER_TLS_SSLMODE": None})
    _flip(lab, "database", {"POSTGRES_TLS_ENABLED": None})
    assert ssl_request(db.address, lab.postgres_port) == b"N"

    assert rollout_params(lab) == before
    meters = control.meters(lab)
    assert len(meters) == 1 + len(lab.app_hosts())
    failed = {k: (m["requests_failed"], m.get("last_failure")) for k, m in meters.items() if m["requests_failed"]}
    assert not failed, failed
    assert all(m["requests_ok"] > 0 for m in meters.values())


def test_meter_catches_an_outage(lab: LabSpec) -> None:
    """`require` on Leg 1 while the services still connect in plaintext: the meters count it."""
    scenarios.apply(lab, "pg-4")
    try:
        control.reset_meters(lab)
        _flip(lab, "database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "require"})
        import time

        time.sleep(4)  # longer than the 3-second retry budget
        m = _meter(lab, "staging-web-01", "web")
        assert m["db_failed"] > 0
        assert "SSL" in str(m["last_failure"]) or "ssl" in str(m["last_failure"]).lower()
        assert _meter(lab, "staging-web-01", "web")["redis_failed"] == 0  # Redis unaffected
    finally:
        scenarios.apply(lab, "fresh")


def test_telpro_without_hiredis_ssl_cannot_reach_redis_over_tls(lab: LabSpec) -> None:
    scenarios.apply(lab, "telpro-no-ssl")
    telpro = next(h for h in lab.app_hosts() if h.service == "telpro")
    try:
        set_var(lab, "telpro", "REDIS_TLS_ENABLED", "true")
        set_var(lab, "telpro", "REDIS_TLS_CA_FILE", "/etc/ssl/internal/ca.crt")
        r = update(lab, telpro)
        assert r.returncode != 0
        assert "hiredis_ssl" in r.stderr and "telpro" in r.stderr
    finally:
        scenarios.apply(lab, "fresh")


def test_a_value_update_sh_cannot_apply_leaves_services_running(lab: LabSpec) -> None:
    run = Path(lab.database.root) / "run"
    pids = {n: (run / f"{n}.pid").read_text() for n in ("postgres", "pgbouncer", "redis")}
    set_var(lab, "database", "PGBOUNCER_CLIENT_TLS_SSLMODE", "bogus")
    try:
        r = update(lab, lab.database)
        assert r.returncode == 1
        assert "PGBOUNCER_CLIENT_TLS_SSLMODE='bogus'" in r.stderr and "nothing was restarted" in r.stderr
        assert {n: (run / f"{n}.pid").read_text() for n in pids} == pids
        assert port_open(lab.database.address, lab.pgbouncer_port)
    finally:
        set_var(lab, "database", "PGBOUNCER_CLIENT_TLS_SSLMODE", None)


def test_update_sh_flags(lab: LabSpec) -> None:
    api = lab.app_hosts()[0]
    stray = Path(api.root) / "opt/services/api/.env"
    stray.write_text("LEFTOVER=1\n")
    dry = update(lab, api, "--dry-run")
    assert dry.returncode == 0 and "nothing restarted" in dry.stdout
    assert "DATABASE_PASSWORD=********" in dry.stdout  # masked
    no_confirm = update(lab, api, "--restart-only")
    assert no_confirm.returncode == 3 and "--yes" in no_confirm.stderr
    assert stray.exists()  # nothing ran
    ok = update(lab, api)
    assert ok.returncode == 0, ok.stderr
    assert not stray.exists()  # init.sh shreds a stray .env


def test_fetch_env_resolution_order(lab: LabSpec) -> None:
    from lab import aws

    api = lab.app_hosts()[0]
    fetch = f"{api.root}/opt/services/common/fetch-env.sh --service api"
    base = ssh(lab, api, fetch)
    assert base.returncode == 0, base.stderr
    assert "export DATABASE_NAME=voiceai" in base.stdout  # manifest default
    set_var(lab, "api", "DATABASE_NAME", "from_ssm")
    try:
        assert "export DATABASE_NAME=from_ssm" in ssh(lab, api, fetch).stdout  # SSM beats the default
        sm = aws.client(lab, "secretsmanager")
        sm.create_secret(Name=f"{lab.namespace}/api/zz-extra", SecretString=json.dumps({"DATABASE_NAME": "from_sm"}))
        try:
            assert "export DATABASE_NAME=from_sm" in ssh(lab, api, fetch).stdout  # Secrets Manager beats SSM
        finally:
            sm.delete_secret(SecretId=f"{lab.namespace}/api/zz-extra", ForceDeleteWithoutRecovery=True)
    finally:
        set_var(lab, "api", "DATABASE_NAME", None)


def test_lab_up_twice_is_safe(lab: LabSpec) -> None:
    run = Path(lab.database.root) / "run"
    before = {p.name: p.read_text() for p in run.glob("*.pid")}
    control.up(lab)
    assert {p.name: p.read_text() for p in run.glob("*.pid")} == before


def test_port_in_use_and_missing_binary_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = claim_net()
    blocker = socket.socket()
    blocker.bind((f"{claim.net}.1", 2222))
    blocker.listen()
    try:
        in_use = re.escape(f"{claim.net}.1:2222 already in use (nothing was started)")
        with (
            pytest.raises(control.LabError, match=in_use),
            running_lab("api=1,web=0,voice=0,ops=0,telpro=0", net=claim.net),
        ):
            pass
    finally:
        blocker.close()
        claim.release()
    monkeypatch.setitem(control.REQUIRED, "/nonexistent/pgbouncer", "pgbouncer")
    with pytest.raises(control.LabError, match="apt-get install -y pgbouncer"):
        control.check_binaries()


def test_down_leaves_no_process() -> None:
    from lab import procs

    with running_lab("api=1,web=0,voice=0,ops=0,telpro=0") as spec:
        pids = [procs.read_pid(p) for p in Path(spec.dir).rglob("*.pid")]
        pids = [p for p in pids if p]
        assert len(pids) >= 8  # 3 sshd, moto, postgres, pgbouncer, redis, otel, api
        assert all(procs.pid_alive(p) for p in pids)
    assert not any(procs.pid_alive(p) for p in pids)


def test_two_labs_at_once_do_not_touch_each_other() -> None:
    """Two test runs on one machine: each lab claims its own loopback net and directory."""
    from concurrent.futures import ThreadPoolExecutor

    from lab import procs

    small = "api=1,web=0,voice=0,ops=0,telpro=0"
    with running_lab(small) as one:
        # the second lab comes up while the first runs, on another net, in another directory
        with ThreadPoolExecutor(1) as pool:
            two_cm = running_lab(small)
            two = pool.submit(two_cm.__enter__).result()
            try:
                assert (one.net, one.dir) != (two.net, two.dir)
                for spec in (one, two):
                    assert procs.port_open(spec.database.address, spec.pgbouncer_port)
                    assert ssh(spec, spec.app_hosts()[0], "true").returncode == 0
            finally:
                two_cm.__exit__(None, None, None)
        # stopping the second left the first running
        assert procs.port_open(one.database.address, one.pgbouncer_port)
        assert ssh(one, one.app_hosts()[0], "true").returncode == 0
