"""The engine on the lab: the whole runbook through the CLI and back, gates, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import control, scenarios, sshd
from lab.topology import LabSpec
from plans.engine import Engine
from tests.enginekit import REPO, cockpit, with_engine
from tests.labkit import rollout_params, set_var

pytestmark = pytest.mark.lab


def test_whole_runbook_through_the_cli_and_back(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "fresh")
    before = rollout_params(lab)
    control.reset_meters(lab)
    done: list[tuple[str, str | None]] = []
    for _ in range(30):
        r = cockpit(lab, "advance", "--yes", "--reason", "runbook test", state_dir=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        if "nothing to advance" in r.stdout:
            break
        first = r.stdout.splitlines()[0].split()
        done.append((first[1], first[first.index("for") + 1] if "for" in first else None))
    steps = [s for s, _ in done]
    assert steps[:3] == ["pg-2", "pg-3", "pg-4"]
    assert [svc for s, svc in done if s == "pg-5"] == ["api", "web", "voice", "ops", "telpro"]
    assert [svc for s, svc in done if s == "redis-2"] == ["api", "web", "voice", "ops", "telpro"]
    assert {"pg-6", "pg-7", "redis-1", "redis-3"} <= set(steps)
    assert steps.index("pg-6") > max(i for i, s in enumerate(steps) if s == "pg-5")
    assert steps.index("redis-3") > max(i for i, s in enumerate(steps) if s == "redis-2")
    for step, svc in reversed(done):  # the full rollback, newest first
        args = ["rollback", step, "--yes", "--reason", "runbook test rollback"]
        if step in ("pg-5", "redis-2"):
            args += ["--service", str(svc)]
        r = cockpit(lab, *args, state_dir=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    assert rollout_params(lab) == before
    meters = control.meters(lab)
    failed = {k: (m["requests_failed"], m.get("last_failure")) for k, m in meters.items() if m["requests_failed"]}
    assert not failed, failed
    journal = [json.loads(x) for x in (tmp_path / "rollout-cockpit/journal/staging.jsonl").read_text().splitlines()]
    assert sum(1 for e in journal if e["event"] == "apply-done" and e["ok"]) == 2 * len(done)
    assert all(e["reason"] for e in journal if e["event"] == "apply-start")


@pytest.mark.parametrize(
    ("scenario", "step", "service", "gate", "words"),
    [
        ("secret-missing", "pg-2", None, "certs_valid", "voice"),
        ("bad-san", "pg-3", None, "postgres_tls_verifies", ""),
        ("pg-2", "pg-4", None, "leg2_tls_and_e2e", ""),
        ("pg-3", "pg-5", "api", "pgbouncer_offers_tls_and_ca_files", ""),
        ("straggler", "pg-6", None, "no_plaintext_leg1", "voice"),
        ("bad-san", "redis-2", "api", "redis_tls_verifies", ""),
        ("telpro-no-ssl", "redis-2", "telpro", "telpro_ssl_build", "telpro"),
        ("straggler", "redis-3", None, "no_plaintext_redis", "voice"),
    ],
)
def test_each_gate_blocks_where_it_should(
    lab: LabSpec, scenario: str, step: str, service: str | None, gate: str, words: str
) -> None:
    scenarios.apply(lab, scenario)

    async def go(engine: Engine) -> tuple[str, str]:
        p = await engine.preview(step, service)
        g = next(g for g in p.gates if g.gate == gate)
        return g.status, g.reason

    status, reason = with_engine(lab, go)
    assert status == "closed", reason
    assert words in reason and len(reason) > 20
    args = ["advance", step, "--yes", "--reason", "gate test"] + (["--service", service] if service else [])
    r = cockpit(lab, *args)
    assert r.returncode == 1 and "refused" in r.stderr and gate in r.stderr


def test_plaintext_postgres_client_blocks_force_ssl(lab: LabSpec) -> None:
    import asyncio

    import asyncpg

    from lab import aws

    scenarios.apply(lab, "pg-6")

    async def go() -> str:
        conn = await asyncpg.connect(
            host=lab.database.address,
            port=lab.postgres_port,
            user="voiceai",
            password=aws.lab_secrets(lab)["POSTGRES_PASSWORD"],
            database="voiceai",
            ssl=False,
            server_settings={"application_name": "batch-job"},
        )
        try:
            env_engine: list[str] = []

            async def pv(engine: Engine) -> str:
                p = await engine.preview("pg-7")
                return next(g for g in p.gates if g.gate == "no_plaintext_postgres").reason

            loop_result = await asyncio.to_thread(with_engine, lab, pv)
            env_engine.append(loop_result)
            return env_engine[0]
        finally:
            await conn.close()

    reason = asyncio.run(go())
    assert "batch-job" in reason or "plaintext" in reason


def test_forced_override_is_journaled(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "pg-2")  # Leg 2 not on TLS yet: pg-4's gate is closed
    r = cockpit(lab, "advance", "pg-4", "--yes", "--force", "--reason", "testing", state_dir=tmp_path)
    assert r.returncode == 2 and "--override ID" in r.stderr  # no blanket override any more
    r = cockpit(lab, "advance", "pg-4", "--yes", "--override", "nope", "--reason", "testing", state_dir=tmp_path)
    assert r.returncode == 1 and "no such gate or blocker" in r.stdout + r.stderr
    r = cockpit(
        lab,
        "advance",
        "pg-4",
        "--yes",
        "--override",
        "leg2_tls_and_e2e",
        "--reason",
        "testing the override",
        state_dir=tmp_path,
    )
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        entries = [json.loads(x) for x in (tmp_path / "rollout-cockpit/journal/staging.jsonl").read_text().splitlines()]
        ov = [e for e in entries if e["event"] == "override"]
        assert ov and ov[0]["reason"] == "testing the override" and ov[0]["ids"] == ["leg2_tls_and_e2e"]
        assert ov[0]["overridden"] and ov[0]["overridden"][0].startswith("leg2_tls_and_e2e: ")
        fleet = (Path(lab.database.root) / "var/log/rollout-cockpit/journal.jsonl").read_text()
        assert "testing the override" in fleet
    finally:
        scenarios.apply(lab, "fresh")


def test_two_advances_at_once_one_gets_the_lock(lab: LabSpec) -> None:
    scenarios.apply(lab, "fresh")
    inv = str(Path(lab.dir) / "inventory.toml")
    cmd = [sys.executable, "-m", "cli", "advance", "pg-2", "--yes", "--reason", "race", "--inventory", inv]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    try:
        assert codes == [0, 1], outs
        loser = next(err for (out, err), p in zip(outs, procs, strict=True) if p.returncode == 1)
        assert "the fleet lock is held by" in loser and "pg-2" in loser
    finally:
        scenarios.apply(lab, "fresh")


def test_fleet_changed_between_preview_and_apply_is_refused(lab: LabSpec) -> None:
    scenarios.apply(lab, "pg-4")

    async def go(engine: Engine) -> str:
        await engine.acquire_lock("pg-5")
        p = await engine.preview("pg-5", "api")
        set_var(lab, "api", "DATABASE_SSL_MODE", "require")  # someone else changes it
        out = await engine.apply(p, reason="cas test")
        assert not out.ok and out.stage == "refused"
        return out.reason

    try:
        reason = with_engine(lab, go)
        assert "changed since the preview" in reason
        assert rollout_params(lab)[f"/{lab.namespace}/api/DATABASE_SSL_MODE"] == "require"  # ours not written
    finally:
        set_var(lab, "api", "DATABASE_SSL_MODE", None)


def test_update_failing_on_second_instance_stops_and_rolls_back_by_itself(lab: LabSpec) -> None:
    """pg-5 says auto_rollback: when the second instance cannot be restarted, the roll stops and the
    instance already changed is rolled back (the one that never changed is not touched), and it says so."""
    scenarios.apply(lab, "pg-4")
    api2 = [h for h in lab.app_hosts() if h.service == "api"][1]
    script = Path(api2.root) / "opt/services/api/update.sh"
    os.chmod(script, 0o644)  # update.sh cannot run on the second instance
    try:
        r = cockpit(lab, "advance", "pg-5", "--service", "api", "--yes", "--reason", "fault test")
        assert r.returncode == 1
        assert "staging-api-02" in r.stdout and "the roll stopped" in r.stdout
        assert "rolled back automatically" in r.stdout and "automatic rollback OK" in r.stdout, r.stdout
        m1 = json.loads((Path(lab.app_hosts()[0].root) / "var/lib/lab/api.meter.json").read_text())
        assert m1["db"]["tls"] is False  # the first instance was moved, then moved back
        assert f"/{lab.namespace}/api/DATABASE_SSL_MODE" not in rollout_params(lab)
        assert f"/{lab.namespace}/api/DATABASE_SSL_CA_FILE" not in rollout_params(lab)
    finally:
        os.chmod(script, 0o755)
    failed = {k: m["requests_failed"] for k, m in control.meters(lab).items() if m["requests_failed"]}
    assert not failed, failed


def _kill_sshd_tree(lab: LabSpec, host_name: str) -> None:
    """Stop a host's sshd and the per-connection sshd processes it forked: SSH to it is cut."""
    from lab import procs

    host = lab.host(host_name)
    listener = procs.read_pid(sshd.pidfile(lab, host))
    assert listener
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == listener:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    for pid in [listener, *children]:
        procs.stop_pid(pid, sig=signal.SIGKILL, timeout=5)
    sshd.pidfile(lab, host).unlink(missing_ok=True)


def test_ssh_cut_during_the_roll_then_rerun_converges(lab: LabSpec) -> None:
    scenarios.apply(lab, "pg-4")
    api2 = [h for h in lab.app_hosts() if h.service == "api"][1]
    inv = str(Path(lab.dir) / "inventory.toml")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "advance",
            "pg-5",
            "--service",
            "api",
            "--yes",
            "--reason",
            "ssh cut",
            "--inventory",
            inv,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    out = []
    cut = False
    try:
        for line in p.stdout:
            out.append(line)
            if "instance-done" in line and "staging-api-01" in line and not cut:
                _kill_sshd_tree(lab, api2.name)  # cut while the roll is between the two instances
                cut = True
        assert p.wait(timeout=300) == 1, "".join(out)
        assert "staging-api-02" in "".join(out)
        # pg-5 rolls back by itself: api-01 (moved) goes back; api-02 never ran the new values (PgBouncer still
        # sees it on plaintext), so the cut host is not needed for that
        assert "automatic rollback OK" in "".join(out), "".join(out)
    finally:
        sshd.start(lab, api2)
        sshd.wait_ready(lab, api2)
    assert f"/{lab.namespace}/api/DATABASE_SSL_MODE" not in rollout_params(lab)
    r = cockpit(lab, "advance", "pg-5", "--service", "api", "--yes", "--reason", "rerun")
    assert r.returncode == 0, r.stdout + r.stderr
    for h in ("staging-api-01", "staging-api-02"):
        m = json.loads((Path(lab.host(h).root) / "var/lib/lab/api.meter.json").read_text())
        assert m["db"]["tls"] is True, h
    scenarios.apply(lab, "fresh")


def test_cockpit_killed_mid_step(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "pg-4")
    inv = str(Path(lab.dir) / "inventory.toml")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path))
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "advance",
            "pg-5",
            "--service",
            "voice",
            "--yes",
            "--reason",
            "to be killed",
            "--inventory",
            inv,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert p.stdout is not None
    for line in p.stdout:  # kill it once the first instance is done
        if "instance-done" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    try:
        lock = cockpit(lab, "lock")
        assert "step pg-5" in lock.stdout and "free" not in lock.stdout
        assert "stale" in lock.stdout and "not running on this machine" in lock.stdout, lock.stdout
        plan = cockpit(lab, "plan")
        assert "staging-voice-01" in plan.stdout and "staging-voice-02" in plan.stdout  # instances differ
        entries = [
            json.loads(x)["event"]
            for x in (tmp_path / "rollout-cockpit/journal/staging.jsonl").read_text().splitlines()
        ]
        assert "apply-start" in entries and "apply-done" not in entries
        r = cockpit(lab, "advance", "pg-5", "--service", "voice", "--yes", "--reason", "after the kill")
        assert r.returncode == 1 and "held by" in r.stderr
        b = cockpit(lab, "lock", "--break", "--reason", "the previous run was killed")
        assert b.returncode == 0 and "journaled" in b.stdout
        r = cockpit(lab, "advance", "pg-5", "--service", "voice", "--yes", "--reason", "after the kill")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        time.sleep(0)
        scenarios.apply(lab, "fresh")


def _two_environments(lab: LabSpec, dest: Path) -> Path:
    """The lab's inventory with a second environment, `production`, that comes after `staging`
    (the same fleet under both names: what staging has verified, production's gate reads)."""
    text = (Path(lab.dir) / "inventory.toml").read_text()
    head, sep, envs = text.partition("[environments.staging]")
    prod = (
        (sep + envs)
        .replace("[environments.staging", "[environments.production")
        .replace('after = ""', 'after = "staging"', 1)
    )
    dest.write_text(head + sep + envs + "\n" + prod)
    return dest


def test_a_step_waits_for_the_environment_before(lab: LabSpec, tmp_path: Path) -> None:
    """Across environments: production may not take a step staging has not verified, unless
    overridden with a reason; a step staging verified is open."""
    inv = _two_environments(lab, tmp_path / "inventory.toml")
    scenarios.apply(lab, "pg-4")  # staging: pg-4 verified, pg-5 for api pending
    try:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "cli", *args, "--inventory", str(inv)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
            )

        blocked = run("advance", "pg-5", "--service", "api", "--env", "production", "--dry-run")
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr  # a dry run exits as the real run would
        assert "it would be refused" in blocked.stdout
        gate = [ln for ln in blocked.stdout.splitlines() if "env_order" in ln]
        assert gate and "[ closed]" in gate[0] and "pg-5 is not verified in staging" in gate[0], blocked.stdout
        refused = run("advance", "pg-5", "--service", "api", "--env", "production", "--yes", "--reason", "go")
        assert refused.returncode == 1 and "env_order" in refused.stderr, refused.stdout + refused.stderr
        overridden = run(
            "advance",
            "pg-5",
            "--service",
            "api",
            "--env",
            "production",
            "--dry-run",
            "--override-env-order",
            "staging is down for maintenance",
        )
        gate = [ln for ln in overridden.stdout.splitlines() if "env_order" in ln]
        assert gate and "[   open]" in gate[0] and "overridden: staging is down for maintenance" in gate[0]
        done_there = run("advance", "pg-4", "--env", "production", "--dry-run")
        gate = [ln for ln in done_there.stdout.splitlines() if "env_order" in ln]
        assert gate and "[   open]" in gate[0] and "pg-4 is verified in staging" in gate[0], done_there.stdout
        first = run("advance", "pg-5", "--service", "api", "--env", "staging", "--dry-run")
        assert "env_order" not in first.stdout  # staging comes first: no such gate
        plan = run("plan", "--env", "production")
        assert plan.returncode == 0 and "env_order" in plan.stdout, plan.stdout + plan.stderr
    finally:
        scenarios.apply(lab, "fresh")


def test_envfile_config_store_end_to_end(lab: LabSpec, tmp_path: Path) -> None:
    """The config store as a KEY=VALUE file on the hosts (`config_store.kind = "envfile"`): advance
    and roll back pg-5 for web through the CLI. The file is edited in place with a backup; SSM is not
    touched; the restarted app connects as the file says."""
    from tests.labkit import rollout_params

    scenarios.apply(lab, "pg-4")
    db_env = Path(lab.database.root) / "opt/deployment/.env"
    web = lab.host("staging-web-01")
    web_env = Path(web.root) / "opt/deployment/.env"
    saved = {p: p.read_bytes() for p in (db_env, web_env)}
    ssm_before = rollout_params(lab)
    # the database's rollout variables, as pg-4 set them, move into its env file (same values: no restart)
    db_env.write_bytes(
        saved[db_env]
        + "".join(
            f"{name.rsplit('/', 1)[-1]}={value}\n" for name, value in ssm_before.items() if "/database/" in name
        ).encode()
    )
    inv = tmp_path / "inventory.toml"
    inv.write_text(
        (Path(lab.dir) / "inventory.toml")
        .read_text()
        .replace('kind = "ssm"', 'kind = "envfile"\npath = "/opt/deployment/.env"', 1)
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args, "--inventory", str(inv)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
        )

    def web_meter() -> dict[str, object]:
        data: dict[str, object] = json.loads((Path(web.root) / "var/lib/lab/web.meter.json").read_text())
        return data

    try:
        r = run("advance", "pg-5", "--service", "web", "--yes", "--reason", "env-file store")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "DATABASE_SSL_MODE=verify-full" in web_env.read_text()
        assert web_env.read_bytes().startswith(saved[web_env])  # the rest of the file as it was
        backups = sorted(web_env.parent.glob(".env.bak-*"))
        assert backups and backups[0].read_bytes() == saved[web_env]
        assert web_meter()["db"]["tls"] is True  # type: ignore[index]
        assert rollout_params(lab) == ssm_before  # SSM untouched
        plan = run("plan", "--json")
        web_pg5 = [
            t
            for s in json.loads(plan.stdout)["steps"]
            if s["step"] == "pg-5"
            for t in s["targets"]
            if t["service"] == "web"
        ]
        assert web_pg5 and web_pg5[0]["state"] == "verified", plan.stdout

        back = run("rollback", "pg-5", "--service", "web", "--yes", "--reason", "env-file store back")
        assert back.returncode == 0, back.stdout + back.stderr
        assert "DATABASE_SSL_MODE" not in web_env.read_text() and web_env.read_bytes() == saved[web_env]
        assert web_meter()["db"]["tls"] is False  # type: ignore[index]
        assert web_meter()["requests_failed"] == 0, web_meter()
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
        for b in web_env.parent.glob(".env.bak-*"):
            b.unlink()
        scenarios.apply(lab, "fresh")
