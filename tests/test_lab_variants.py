"""The lab's platform variants, stopped-straggler scenarios and fault tools, on the real servers.

Each variant breaks one assumption the default lab shares with the cockpit; each test here checks
the variant's behaviour directly (processes, files, SSM / Secrets Manager contents, app meters),
not through the cockpit. One lab per variant, started through the command line
(`python -m lab up --variant V`), small, and stopped when its class is done.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import aws, control, faults, procs, rolloutenv, scenarios
from lab.manifests import CA_FILE, TLS_VARS
from lab.topology import PROBE_CONSOLE_USER, PROBE_ENV, PROBE_ROLE, ROLLOUT_ENV, LabError, LabHost, LabSpec
from tests.labkit import (
    cli_lab,
    meter,
    port_open,
    rollout_params,
    running_check,
    secret,
    set_var,
    ssh,
    ssl_request,
    update,
)

pytestmark = pytest.mark.lab

SMALL = "api=1,web=0,voice=0,ops=0,telpro=0"
FLEET = "api=2,web=0,voice=0,ops=1,telpro=1"
REPO = Path(__file__).resolve().parent.parent


def _inventory(spec: LabSpec) -> dict[str, Any]:
    inv = tomllib.loads((Path(spec.dir) / "inventory.toml").read_text())
    return dict(inv["environments"][spec.environment])


def _manifest(host: LabHost) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((Path(host.root) / "opt/services" / host.service / "vars.yaml").read_text())
    return {v["name"]: v for v in data["variables"]}


def _hosts(spec: LabSpec, service: str) -> list[LabHost]:
    return [h for h in [spec.database, *spec.app_hosts()] if h.service == service]


def _restart(spec: LabSpec, host: LabHost) -> subprocess.CompletedProcess[str]:
    return update(spec, host)


def _uid_of(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    gid = int(re.search(r"^Gid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return uid, gid


def _wait(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def _pg(spec: LabSpec, user: str, password: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(
            host=spec.database.address,
            port=spec.postgres_port,
            user=user,
            password=password,
            database="voiceai",
            ssl="prefer",
            timeout=5,
        )
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


def _ssh_ok(spec: LabSpec, host: LabHost, timeout: float = 20) -> bool:
    """True when `true` runs on the host over SSH within the timeout (a hang counts as failure)."""
    try:
        return ssh(spec, host, "true", timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# ---------------------------------------------------------------------------------------------- the default lab


def test_default_lab_only_the_database_secret_holds_the_key(lab: LabSpec) -> None:
    assert lab.variants == ()
    assert set(TLS_VARS) <= set(secret(lab, aws.secret_name(lab, "database")))
    for svc in ("api", "web", "voice", "ops", "telpro"):
        keys = set(secret(lab, aws.secret_name(lab, svc)))
        assert {"INTERNAL_CA_CRT_B64", "INTERNAL_TLS_CERT_B64"} <= keys, svc
        assert "INTERNAL_TLS_KEY_B64" not in keys, svc
    assert _manifest(lab.database)["TLS_KEY_OWNER"]["default"] == "70:70"
    assert _manifest(lab.app_hosts()[0])["DATABASE_SSL_CA_FILE"]["default"] == CA_FILE


def test_default_lab_inventory_keys(lab: LabSpec) -> None:
    env = _inventory(lab)
    assert env["commands"]["read_only"] == ["telpro_ssl_check", "running_check"]
    assert env["database"]["pg_hba_path"] == "/mnt/data/postgres/pg_hba.conf"
    assert "key_owner" not in env["database"]
    assert env["credentials"]["secret"] == f"{lab.namespace}/database/secrets"
    assert "postgres_user" not in env["credentials"] and "file" not in env["credentials"]
    assert env["tls_secrets"] == {"layout": "json", "secret_suffix": "secrets"}
    assert env["config_store"] == {"kind": "ssm"}
    services = env["services"]
    assert services["database"]["tls_material"] == ["ca", "cert", "key"]
    for svc in ("api", "web", "voice", "ops", "telpro"):
        assert services[svc]["tls_material"] == ["ca", "cert"]
        assert "consumes" not in services[svc]
        assert services[svc]["running_check"] and services[svc]["logs"]
    assert (Path(lab.database.root) / env["database"]["pg_hba_path"].lstrip("/")).exists()


def test_running_check_and_logs_commands(lab: LabSpec) -> None:
    env = _inventory(lab)
    db, api = lab.database, lab.app_hosts()[0]
    assert running_check(lab, db).returncode == 0
    assert running_check(lab, api).returncode == 0
    logs = env["services"]["database"]["logs"].replace("{root}", db.root)
    r = ssh(lab, db, logs)
    assert r.returncode == 0 and "postgres.log" in r.stdout and "pgbouncer.log" in r.stdout


def test_stop_and_start_service_keep_configuration_and_ssh(lab: LabSpec) -> None:
    scenarios.apply(lab, "fresh")
    web = next(h for h in lab.app_hosts() if h.service == "web")
    before = meter(lab, web)
    control.stop_service(lab, web)
    try:
        assert procs.running(Path(web.root) / "run/web.pid") is None
        assert running_check(lab, web).returncode == 1
        assert _ssh_ok(lab, web)
        rows = [r for r in control.status(lab) if r["service"] == "web"]
        assert rows and all(r["processes"]["web"] is None and r["sshd"] for r in rows)
    finally:
        pid = control.start_service(lab, web)
    assert pid == procs.running(Path(web.root) / "run/web.pid")
    assert running_check(lab, web).returncode == 0
    after = meter(lab, web)
    assert after["pid"] == pid != before["pid"]
    assert _wait(lambda: meter(lab, web).get("db", {}).get("connected") is True)
    assert meter(lab, web)["db"]["mode"] == before["db"]["mode"]
    with pytest.raises(LabError, match="not an app host"):
        control.stop_service(lab, lab.database)


def test_scenarios_set_the_ca_file_with_verify_full() -> None:
    for name in ("pg-5", "pg-6", "pg-7", "redis-1", "redis-2", "redis-3", "done", "straggler-stopped-pg"):
        sc = scenarios.SCENARIOS[name]
        for svc, values in sc.settings.items():
            if values.get("DATABASE_SSL_MODE") == "verify-full":
                assert values["DATABASE_SSL_CA_FILE"] == CA_FILE, (name, svc)
    assert "DATABASE_SSL_CA_FILE" not in scenarios.SCENARIOS["pg-4"].settings["api"]


def test_straggler_stopped_pg_on_the_default_lab(lab: LabSpec) -> None:
    try:
        scenarios.apply(lab, "straggler-stopped-pg")
        params = rollout_params(lab)
        ns = lab.namespace
        assert params[f"/{ns}/database/PGBOUNCER_CLIENT_TLS_SSLMODE"] == "allow"
        assert f"/{ns}/database/POSTGRES_FORCE_SSL" not in params
        for svc in ("api", "web", "voice", "telpro"):
            assert params[f"/{ns}/{svc}/DATABASE_SSL_MODE"] == "verify-full"
            assert params[f"/{ns}/{svc}/DATABASE_SSL_CA_FILE"] == CA_FILE
        assert not any(k.startswith(f"/{ns}/ops/") for k in params)
        for h in lab.app_hosts():
            if h.service == "ops":
                assert running_check(lab, h).returncode == 1
                assert procs.running(Path(h.root) / "run/ops.pid") is None
                assert _ssh_ok(lab, h)
            else:
                assert running_check(lab, h).returncode == 0
                assert meter(lab, h)["db"]["tls"] is True
    finally:
        scenarios.apply(lab, "fresh")
    assert all(running_check(lab, h).returncode == 0 for h in lab.app_hosts())


def test_lab_scenario_lists_the_straggler_scenarios(lab: LabSpec) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lab", "--dir", lab.dir, "scenario"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "straggler-stopped-pg" in r.stdout and "straggler-stopped-redis" in r.stdout


# ---------------------------------------------------------------------------------------------- fault tools


def test_stalled_sshd_hangs_the_host_and_resumes(lab: LabSpec) -> None:
    api = lab.app_hosts()[0]
    with faults.stalled_sshd(lab, api) as pids:
        assert pids and all(Path(f"/proc/{p}/status").read_text().count("\nState:\tT") for p in pids)
        assert not _ssh_ok(lab, api, timeout=5)
        assert _ssh_ok(lab, lab.app_hosts()[1])  # only that host
    assert not any("State:\tT" in Path(f"/proc/{p}/status").read_text() for p in pids if procs.pid_alive(p))
    assert _ssh_ok(lab, api)


def test_stopped_sshd_and_bastion_down(lab: LabSpec) -> None:
    api = lab.app_hosts()[0]
    with faults.stopped_sshd(lab, api):
        assert not port_open(api.address, lab.ssh_port)
        assert not _ssh_ok(lab, api)
        assert procs.running(Path(api.root) / "run/api.pid")  # the service runs on
    assert _ssh_ok(lab, api)
    with faults.bastion_down(lab):
        assert not port_open(lab.bastion.address, lab.ssh_port)
        assert not _ssh_ok(lab, api)
        assert port_open(api.address, lab.ssh_port)  # the host's own sshd is up, unreachable
    assert _ssh_ok(lab, api)


def test_replaced_host_key_breaks_known_hosts_until_restored(lab: LabSpec) -> None:
    api = lab.app_hosts()[0]
    known = (Path(lab.dir) / "ssh/known_hosts").read_text()
    with faults.replaced_host_key(lab, api) as new_pub:
        assert new_pub.split()[1] not in known
        r = ssh(lab, api, "true", timeout=30)
        assert r.returncode != 0 and "host key" in r.stderr.lower(), r.stderr
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(lab.ssh_port), "-t", "ed25519", api.address],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert new_pub.split()[1] in scan.stdout
    assert (Path(lab.dir) / "ssh/known_hosts").read_text() == known
    assert _ssh_ok(lab, api)


def test_unwritable_journal_dir(lab: LabSpec) -> None:
    db = lab.database
    d = Path(db.root) / "var/log/rollout-cockpit"
    probe = d / "fault-test.jsonl"
    with faults.unwritable_journal_dir(lab) as where:
        assert where == d
        r = ssh(lab, db, f"echo x >> {probe}")
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        assert ssh(lab, db, f"ls {d}").returncode == 0  # readable
    r = ssh(lab, db, f"echo x >> {probe} && rm {probe}")
    assert r.returncode == 0, r.stderr
    assert str(d) not in Path("/proc/self/mounts").read_text()


# ---------------------------------------------------------------------------------------------- no-default-ca


class TestNoDefaultCa:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab(SMALL, variants="no-default-ca") as spec:
            yield spec

    def test_manifest_default_is_empty(self, spec: LabSpec) -> None:
        assert spec.variants == ("no-default-ca",)
        assert _manifest(spec.app_hosts()[0])["DATABASE_SSL_CA_FILE"]["default"] == ""

    def test_verify_without_ca_file_fails_with_the_apps_own_error(self, spec: LabSpec) -> None:
        scenarios.apply(spec, "redis-1")  # the apps verify-full with the CA file set; Redis TLS offered
        api = spec.app_hosts()[0]
        assert meter(spec, api)["db"]["tls"] is True
        set_var(spec, "api", "DATABASE_SSL_CA_FILE", None)  # verify-full, CA unset: no default here
        r = _restart(spec, api)
        assert r.returncode == 1
        assert "did not become healthy" in r.stderr and "root certificate file" in r.stderr, r.stderr
        assert ".postgresql/root.crt" in r.stderr
        control.reset_meters(spec)
        assert _wait(lambda: meter(spec, api)["db_failed"] > 0)
        set_var(spec, "api", "DATABASE_SSL_CA_FILE", CA_FILE)
        r = _restart(spec, api)
        assert r.returncode == 0, r.stderr
        assert meter(spec, api)["db"]["tls"] is True

        set_var(spec, "api", "REDIS_TLS_ENABLED", "true")  # REDIS_TLS_CA_FILE unset: redis-py's default trust
        r = _restart(spec, api)
        assert r.returncode == 1
        assert "certificate verify failed" in r.stderr, r.stderr
        set_var(spec, "api", "REDIS_TLS_CA_FILE", CA_FILE)
        r = _restart(spec, api)
        assert r.returncode == 0, r.stderr
        assert meter(spec, api)["redis"]["tls"] is True


# ---------------------------------------------------------------------------------------------- key-owner


class TestKeyOwner:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab(SMALL, variants="key-owner") as spec:
            yield spec

    def test_db_servers_run_as_the_variant_uid(self, spec: LabSpec) -> None:
        assert _manifest(spec.database)["TLS_KEY_OWNER"]["default"] == "999:999"
        run = Path(spec.database.root) / "run"
        for name in ("postgres", "pgbouncer", "redis"):
            pid = procs.running(run / f"{name}.pid")
            assert pid and _uid_of(pid) == (999, 999), name

    def test_postgres_serves_tls_with_the_key_owned_by_the_variant_uid(self, spec: LabSpec) -> None:
        db = spec.database
        assert ssl_request(db.address, spec.postgres_port) == b"N"
        set_var(spec, "database", "POSTGRES_TLS_ENABLED", "on")  # pg-2
        r = _restart(spec, db)
        assert r.returncode == 0, r.stderr
        key = (Path(db.root) / "etc/ssl/internal/server.key").stat()
        assert (key.st_uid, key.st_gid, key.st_mode & 0o777) == (999, 999, 0o600)
        assert ssl_request(db.address, spec.postgres_port) == b"S"

    def test_the_runbooks_owner_stops_postgres_here(self, spec: LabSpec) -> None:
        db = spec.database
        set_var(spec, "database", "TLS_KEY_OWNER", "70:70")  # as the runbook says, not as this platform runs
        try:
            r = _restart(spec, db)
            assert r.returncode == 1 and "postgres did not come up" in r.stderr, r.stderr
        finally:
            set_var(spec, "database", "TLS_KEY_OWNER", None)
            r = _restart(spec, db)
        assert r.returncode == 0, r.stderr
        assert ssl_request(db.address, spec.postgres_port) == b"S"


# ---------------------------------------------------------------------------------------------- ca-only-secrets


class TestCaOnlySecrets:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab(SMALL, variants="ca-only-secrets") as spec:
            yield spec

    def test_no_app_secret_holds_cert_or_key(self, spec: LabSpec) -> None:
        for svc in ("api", "web", "voice", "ops", "telpro"):
            keys = set(secret(spec, aws.secret_name(spec, svc)))
            assert keys & set(TLS_VARS) == {"INTERNAL_CA_CRT_B64"}, svc
        assert set(TLS_VARS) <= set(secret(spec, aws.secret_name(spec, "database")))
        services = _inventory(spec)["services"]
        assert set(services) == {"database", "api"}  # no table for a service the fleet does not run
        assert services["api"]["tls_material"] == ["ca"]
        assert services["database"]["tls_material"] == ["ca", "cert", "key"]

    def test_scenarios_keep_the_rule_and_apps_verify(self, spec: LabSpec) -> None:
        scenarios.apply(spec, "pg-5")
        keys = set(secret(spec, aws.secret_name(spec, "api")))
        assert keys & set(TLS_VARS) == {"INTERNAL_CA_CRT_B64"}
        api = spec.app_hosts()[0]
        assert meter(spec, api)["db"]["tls"] is True
        assert sorted(p.name for p in (Path(api.root) / "etc/ssl/internal").iterdir()) == ["ca.crt"]


# ---------------------------------------------------------------------------------------------- probe-not-superuser


class TestProbeNotSuperuser:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab(SMALL, variants="probe-not-superuser") as spec:
            yield spec

    def test_probe_secret_and_inventory(self, spec: LabSpec) -> None:
        probe = secret(spec, f"{spec.namespace}/cockpit/probe")
        assert set(probe) == {"POSTGRES_PASSWORD", "PGBOUNCER_ADMIN_PASSWORD", "REDIS_PASSWORD"}
        assert probe["POSTGRES_PASSWORD"] != secret(spec, aws.secret_name(spec, "database"))["POSTGRES_PASSWORD"]
        creds = _inventory(spec)["credentials"]
        assert creds["secret"] == f"{spec.namespace}/cockpit/probe"
        assert creds["postgres_user"] == PROBE_ROLE == "cockpit_probe"
        assert creds["pgbouncer_admin_user"] == PROBE_CONSOLE_USER

    def test_probe_role_is_monitor_not_superuser(self, spec: LabSpec) -> None:
        import asyncpg

        scenarios.apply(spec, "pg-3")  # PgBouncer -> Postgres on TLS: other users' sessions to look at
        pw = secret(spec, f"{spec.namespace}/cockpit/probe")["POSTGRES_PASSWORD"]
        rows = _pg(
            spec,
            PROBE_ROLE,
            pw,
            "SELECT rolsuper, pg_has_role('pg_monitor', 'member') FROM pg_roles WHERE rolname = current_user",
        )
        assert rows == [(False, True)]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            _pg(spec, PROBE_ROLE, pw, "SELECT * FROM pg_hba_file_rules")
        others = _pg(
            spec,
            PROBE_ROLE,
            pw,
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a "
            "USING (pid) WHERE a.usename = 'voiceai' "
            "AND a.backend_type = 'client backend'",
        )
        assert others and all(ssl is True and version for ssl, version in others), others

    def test_probe_console_user_reads_pgbouncer_but_is_not_admin(self, spec: LabSpec) -> None:
        import psycopg

        pw = secret(spec, f"{spec.namespace}/cockpit/probe")["PGBOUNCER_ADMIN_PASSWORD"]
        with psycopg.connect(
            host=spec.database.address,
            port=spec.pgbouncer_port,
            dbname="pgbouncer",
            user=PROBE_CONSOLE_USER,
            password=pw,
            autocommit=True,
            prepare_threshold=None,
            sslmode="prefer",
            connect_timeout=5,
        ) as conn:
            clients = conn.execute("SHOW CLIENTS").fetchall()
            assert clients
            config = {r[0]: r[1] for r in conn.execute("SHOW CONFIG").fetchall()}
            assert config["stats_users"] == PROBE_CONSOLE_USER and config["admin_users"] == "pgbouncer_admin"
            with pytest.raises(psycopg.Error, match="admin"):
                conn.execute("PAUSE")

    def test_probe_redis_password_is_the_default_users(self, spec: LabSpec) -> None:
        import redis

        pw = secret(spec, f"{spec.namespace}/cockpit/probe")["REDIS_PASSWORD"]
        r = redis.Redis(host=spec.database.address, port=spec.redis_port, password=pw, socket_timeout=5)
        try:
            assert r.ping() is True
        finally:
            r.close()


# ---------------------------------------------------------------------------------------------- envfile


class TestEnvfile:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab(FLEET, variants="envfile") as spec:
            yield spec

    def test_layout(self, spec: LabSpec) -> None:
        assert rollout_params(spec) == {}  # SSM holds no rollout variable
        for h in [spec.database, *spec.app_hosts()]:
            text = rolloutenv.path(h).read_text()
            assert text == rolloutenv.initial_text(h.service)
            assert "  # pinned by ops" in text
        shared = secret(spec, f"{spec.namespace}/shared/tls")
        assert set(shared) == set(TLS_VARS)
        for svc in ("database", "api", "web", "voice", "ops", "telpro"):
            assert not set(secret(spec, aws.secret_name(spec, svc))) & set(TLS_VARS), svc
        probe = Path(spec.database.root) / PROBE_ENV.lstrip("/")
        assert probe.stat().st_mode & 0o777 == 0o600
        keys = {line.split("=", 1)[0] for line in probe.read_text().splitlines()}
        assert keys == {
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "PGBOUNCER_ADMIN_USER",
            "PGBOUNCER_ADMIN_PASSWORD",
            "REDIS_PASSWORD",
        }
        env = _inventory(spec)
        assert env["config_store"] == {"kind": "envfile", "path": ROLLOUT_ENV}
        assert env["tls_secrets"] == {"layout": "shared", "name": f"{spec.namespace}/shared/tls"}
        assert env["credentials"]["file"] == PROBE_ENV and "secret" not in env["credentials"]
        # only the database decodes the key, though every service reads the shared secret
        assert (Path(spec.database.root) / "etc/ssl/internal/server.key").exists()
        assert not (Path(spec.app_hosts()[0].root) / "etc/ssl/internal/server.key").exists()

    def test_a_hosts_file_decides_what_it_runs_comment_stripped(self, spec: LabSpec) -> None:
        api1, api2 = _hosts(spec, "api")
        assert meter(spec, api1)["db"]["mode"] == "disable"  # "disable  # pinned by ops", as bash reads it
        rolloutenv.set_line(api1, "DATABASE_SSL_MODE", "prefer", comment="tried by hand")
        try:
            assert "DATABASE_SSL_MODE=prefer  # tried by hand" in rolloutenv.path(api1).read_text()
            dry = update(spec, api1, "--dry-run")
            assert "DATABASE_SSL_MODE=prefer\n" in dry.stdout, dry.stdout
            r = _restart(spec, api1)
            assert r.returncode == 0, r.stderr
            assert meter(spec, api1)["db"]["mode"] == "prefer"
            assert _restart(spec, api2).returncode == 0
            assert meter(spec, api2)["db"]["mode"] == "disable"  # the other host's file is its own
        finally:
            rolloutenv.write(api1, rolloutenv.initial_text("api"))
            assert _restart(spec, api1).returncode == 0
        assert meter(spec, api1)["db"]["mode"] == "disable"

    def test_straggler_stopped_redis_on_envfile(self, spec: LabSpec) -> None:
        try:
            scenarios.apply(spec, "straggler-stopped-redis")
            assert rollout_params(spec) == {}
            db_vals = rolloutenv.source(
                rolloutenv.path(spec.database), ["POSTGRES_FORCE_SSL", "REDIS_TLS_ENABLED", "REDIS_FORCE_TLS"]
            )
            assert db_vals == {"POSTGRES_FORCE_SSL": "on", "REDIS_TLS_ENABLED": "true"}
            for h in spec.app_hosts():
                vals = rolloutenv.source(
                    rolloutenv.path(h), ["DATABASE_SSL_MODE", "DATABASE_SSL_CA_FILE", "REDIS_TLS_ENABLED"]
                )
                assert vals["DATABASE_SSL_MODE"] == "verify-full" and vals["DATABASE_SSL_CA_FILE"] == CA_FILE
                if h.service == "telpro":
                    assert vals["REDIS_TLS_ENABLED"] == "false"
                    assert "REDIS_TLS_ENABLED=false  # plaintext until" in rolloutenv.path(h).read_text()
                    assert running_check(spec, h).returncode == 1
                    assert _ssh_ok(spec, h)
                else:
                    assert vals["REDIS_TLS_ENABLED"] == "true"
                    assert running_check(spec, h).returncode == 0
                    assert meter(spec, h)["redis"]["tls"] is True
            telpro = _hosts(spec, "telpro")[0]
            control.start_service(spec, telpro)  # as it was: plaintext Redis, verified TLS to PgBouncer
            assert running_check(spec, telpro).returncode == 0
            assert _wait(lambda: meter(spec, telpro).get("redis", {}).get("port") == spec.redis_port)
            assert meter(spec, telpro)["db"]["tls"] is True
        finally:
            scenarios.apply(spec, "fresh")
        for h in [spec.database, *spec.app_hosts()]:
            assert rolloutenv.path(h).read_text() == rolloutenv.initial_text(h.service)

    def test_secret_missing_scenario_is_refused(self, spec: LabSpec) -> None:
        with pytest.raises(LabError, match="one shared secret"):
            scenarios.apply(spec, "secret-missing")

    def test_unsupported_line_fault(self, spec: LabSpec) -> None:
        ops = _hosts(spec, "ops")[0]
        f = rolloutenv.path(ops)
        before = f.read_text()
        with faults.unsupported_envfile_line(spec, ops) as where:
            assert where == f
            assert f.read_text() == before + "X=$(date)\n"
            rolloutenv.set_line(ops, "REDIS_TLS_CA_FILE", "")  # a write meanwhile survives the restore
            assert _restart(spec, ops).returncode == 0  # bash runs it: the platform does not mind
        assert "X=$(date)" not in f.read_text()
        assert "REDIS_TLS_CA_FILE=''" in f.read_text()
        rolloutenv.write(ops, before)


# ---------------------------------------------------------------------------------------------- hostile


class TestHostile:
    @pytest.fixture(scope="class")
    def spec(self) -> Iterator[LabSpec]:
        with cli_lab("api=1,web=0,voice=0,ops=1,telpro=0", variants="hostile") as spec:
            yield spec

    def test_all_four_variants_at_once(self, spec: LabSpec) -> None:
        assert spec.variants == ("no-default-ca", "key-owner", "ca-only-secrets", "probe-not-superuser")
        saved = json.loads((Path(spec.dir) / "lab.json").read_text())
        assert saved["variants"] == list(spec.variants)
        env = _inventory(spec)
        assert env["credentials"]["postgres_user"] == PROBE_ROLE
        assert env["services"]["api"]["tls_material"] == ["ca"]
        assert _manifest(spec.app_hosts()[0])["DATABASE_SSL_CA_FILE"]["default"] == ""
        assert _manifest(spec.database)["TLS_KEY_OWNER"]["default"] == "999:999"
        pid = procs.running(Path(spec.database.root) / "run/postgres.pid")
        assert pid and _uid_of(pid) == (999, 999)
        with pytest.raises(LabError, match="a different lab is running"):
            control.up(replace(spec, variants=()))
        r = subprocess.run(
            [sys.executable, "-m", "lab", "--dir", spec.dir, "status", "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0 and json.loads(r.stdout)["variants"] == list(spec.variants)

    def test_straggler_stopped_pg_on_hostile(self, spec: LabSpec) -> None:
        scenarios.apply(spec, "straggler-stopped-pg")
        api = next(h for h in spec.app_hosts() if h.service == "api")
        ops = next(h for h in spec.app_hosts() if h.service == "ops")
        assert meter(spec, api)["db"]["tls"] is True
        assert ssl_request(spec.database.address, spec.postgres_port) == b"S"
        assert running_check(spec, ops).returncode == 1
        assert _ssh_ok(spec, ops)
        control.start_service(spec, ops)
        assert _wait(lambda: meter(spec, ops).get("db", {}).get("connected") is True)
        assert meter(spec, ops)["db"]["tls"] is False  # still plaintext
