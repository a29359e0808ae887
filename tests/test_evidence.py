"""Evidence, not absence, on the real lab: each defect an independent miniature of the platform found
(issue "Safe on any fleet"), made to happen here and shown refused, unknown or said — never read as fine."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.load import load_inventory
from lab import aws, control, scenarios
from lab.topology import LabSpec
from plans.collecting import collector_for
from plans.plan import default_plan
from probes.model import Unknown, Verdict
from probes.snapshot import DatabaseState, FleetSnapshot, Handshake, LegView
from tests.enginekit import REPO, cockpit

pytestmark = pytest.mark.lab


def snaps(lab: LabSpec, n: int = 1) -> list[FleetSnapshot]:
    """`n` cockpits' snapshots taken at the same time (each its own collector: its own probe sessions)."""
    env = load_inventory(Path(lab.dir) / "inventory.toml").env(None)

    async def one() -> FleetSnapshot:
        c = collector_for(env, default_plan())
        try:
            await c.snapshot()  # sessions up
            return await c.snapshot()
        finally:
            await c.aclose()

    async def go() -> list[FleetSnapshot]:
        return list(await asyncio.gather(*(one() for _ in range(n))))

    return asyncio.run(go())


def test_a_stopped_straggler_configured_for_plaintext_keeps_require_away(lab: LabSpec, tmp_path: Path) -> None:
    """Defect 2: ops stopped while still configured for plaintext; `require` (pg-6) would strand it."""
    scenarios.apply(lab, "straggler-stopped-pg")
    try:
        r = cockpit(lab, "advance", "pg-6", "--yes", "--reason", "straggler test", state_dir=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert (
            "no_plaintext_leg1" in r.stderr
            and "ops (staging-ops-01, stopped) is still configured for plaintext" in r.stderr
        ), r.stderr
        scenarios.apply(lab, "straggler-stopped-redis")
        r = cockpit(lab, "advance", "redis-3", "--yes", "--reason", "straggler test", state_dir=tmp_path)
        assert (
            r.returncode == 1 and "telpro (staging-telpro-01, stopped) is still configured for plaintext" in r.stderr
        ), r.stdout + r.stderr
    finally:
        scenarios.apply(lab, "fresh")


def test_two_cockpits_never_count_themselves_or_each_other(lab: LabSpec) -> None:
    """Defect 3: the cockpit's own probe connections (and a watcher's) are not evidence."""
    scenarios.apply(lab, "redis-3")  # everything TLS: a plaintext probe connection would stand out
    try:
        for s in snaps(lab, 2):
            assert isinstance(s.database, DatabaseState)
            for leg in ("leg1", "postgres", "redis"):
                view = s.leg(leg)  # type: ignore[arg-type]
                assert isinstance(view, LegView), (leg, view)
                assert not [c for c in view.connections if c.service.startswith("rollout-cockpit")], leg
                assert not [c for c in view.connections if c.instance is None and c.service != "otel-collector"], (
                    leg,
                    view.connections,
                )  # nothing unattributed: no other cockpit's session slipped in
            # its own Postgres session (the one that read pg_stat_ssl) is counted apart, never as a client
            own = s.database.leg("postgres")
            assert isinstance(own, LegView) and own.own >= 1
    finally:
        scenarios.apply(lab, "fresh")


def test_stopped_servers_never_read_as_fine(lab: LabSpec) -> None:
    """Defect 4: after the servers stop, Redis TLS must not read ok, nor the database as answering."""
    from lab import procs

    scenarios.apply(lab, "redis-1")
    run = Path(lab.database.root) / "run"
    try:
        for name in ("redis", "pgbouncer"):
            procs.stop_pidfile(run / f"{name}.pid")
        s = snaps(lab)[0]
        assert isinstance(s.database, DatabaseState)
        assert s.database.redis_tls is not Handshake.VERIFIED, s.database.redis_tls
        assert s.database.pgbouncer_tls is not Handshake.VERIFIED
        assert s.database.end_to_end_ok is not True
        assert isinstance(s.database.redis_port, Unknown) and isinstance(s.leg("redis"), Unknown)
        assert s.verdict in (Verdict.FAIL, Verdict.ERROR)
    finally:
        scenarios.apply(lab, "fresh")  # restarts the database host's services


def test_no_aws_credentials_opens_nothing_and_says_why_once(lab: LabSpec, tmp_path: Path) -> None:
    """Defect 4: without AWS credentials pg-3's gate must not read open; the root cause is said once."""
    scenarios.apply(lab, "pg-2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        XDG_STATE_HOME=str(tmp_path),
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
    )
    inv = str(Path(lab.dir) / "inventory.toml")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cli", "plan", "--json", "--inventory", inv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        plan = json.loads(r.stdout)
        assert any("no AWS credentials" in c["text"] for c in plan["causes"]), plan["causes"]
        verified = {s["step"] for s in plan["steps"] if s["state"] == "verified"}
        assert not verified & {"pg-1", "pg-2", "pg-3"}, verified  # nothing reads as done on no evidence
        r = subprocess.run(
            [sys.executable, "-m", "cli", "advance", "pg-3", "--dry-run", "--inventory", inv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert r.returncode in (1, 2), r.stdout + r.stderr
        assert "[   open] postgres_tls_verifies" not in r.stdout
    finally:
        scenarios.apply(lab, "fresh")


def test_probe_users_never_fall_back_to_a_default(lab: LabSpec, tmp_path: Path) -> None:
    """Defect 6: a credentials secret without the user names is said, not replaced by postgres/pgbouncer."""
    name = f"{lab.namespace}/cockpit/nouser"
    sm = aws.client(lab, "secretsmanager")
    pw = aws.lab_secrets(lab)
    aws.put_secret(
        sm,
        name,
        {
            "POSTGRES_PASSWORD": pw["POSTGRES_PASSWORD"],
            "PGBOUNCER_ADMIN_PASSWORD": pw["PGBOUNCER_ADMIN_PASSWORD"],
            "REDIS_PASSWORD": pw["REDIS_PASSWORD"],
        },
    )
    text = (Path(lab.dir) / "inventory.toml").read_text()
    start = text.index("[environments.staging.credentials]")
    end = text.index("\n[", start + 1)
    inv = tmp_path / "inventory.toml"
    inv.write_text(text[:start] + f'[environments.staging.credentials]\nsecret = "{name}"\n' + text[end:])
    scenarios.apply(lab, "fresh")
    r = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json", "--inventory", str(inv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    data = json.loads(r.stdout)
    creds = [c for c in data["checks"] if c["check"] == "probe.credentials"]
    assert creds and "no Postgres user for the probes" in creds[0]["summary"], creds
    assert "unknown" in data["database"]["postgres_ssl"], data["database"]["postgres_ssl"]  # not sampled as "postgres"
    assert r.returncode == 1  # could not measure is not a healthy fleet


def test_restart_one_service_instance_by_instance(lab: LabSpec, tmp_path: Path) -> None:
    """Defect 8: a restart-only action with preview, reason, lock, one instance at a time, and the journal."""
    scenarios.apply(lab, "fresh")
    control.reset_meters(lab)
    r = cockpit(lab, "restart", "api", "--yes", "--reason", "land the CA", state_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restart 1. staging-api-01" in r.stdout and "restart 2. staging-api-02" in r.stdout, r.stdout
    assert (
        r.stdout.index("staging-api-01: done") < r.stdout.index("staging-api-02: done")
        if "staging-api-01: done" in r.stdout
        else True
    )
    journal = [json.loads(x) for x in (tmp_path / "rollout-cockpit/journal/staging.jsonl").read_text().splitlines()]
    done = [e for e in journal if e["event"] == "apply-done" and e.get("step") == "restart"]
    assert done and done[-1]["ok"] is True
    assert [e["host"] for e in journal if e["event"] == "instance"] == ["staging-api-01", "staging-api-02"]
    one = cockpit(lab, "restart", "api", "--host", "staging-api-02", "--yes", "--reason", "one", state_dir=tmp_path)
    assert one.returncode == 0 and "staging-api-01" not in one.stdout.split("summary")[1], one.stdout
    bad = cockpit(lab, "restart", "api", "--host", "staging-web-01", "--yes", "--reason", "x", state_dir=tmp_path)
    assert bad.returncode == 2 and "not a host of api" in bad.stderr
    failed = {k: m["requests_failed"] for k, m in control.meters(lab).items() if m["requests_failed"]}
    assert not failed, failed
