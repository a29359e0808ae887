"""The fault matrix (issue "Nothing half-done"): each fault is made for real on the lab, and afterwards the
fleet, the store and the lock are checked — no store value that no instance runs without a DANGER saying so,
no lock held by a dead process without "stale", 0 failed requests on the meters (except where the fault is an
outage itself, and then it is named)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import control, faults, scenarios
from lab.topology import LabSpec
from tests.enginekit import REPO, cockpit, with_engine
from tests.labkit import rollout_params, running_lab

pytestmark = pytest.mark.lab


def consistent(lab: LabSpec, state: Path | None = None, *, outage: bool = False) -> dict[str, object]:
    """The three promises after a fault; returns the plan (JSON) for more checks."""
    r = cockpit(lab, "plan", "--json", state_dir=state)
    assert r.returncode == 0, r.stdout + r.stderr
    plan: dict[str, object] = json.loads(r.stdout)
    dangers = {(d["step"], d["service"]) for d in plan["dangers"]}  # type: ignore[union-attr, index]
    for s in plan["steps"]:  # type: ignore[union-attr]
        for t in s["targets"]:  # type: ignore[index]
            runs_nowhere = (
                t["configured"] is True
                and t["instances"]
                and all(  # type: ignore[index]
                    i["state"] == "configured" for i in t["instances"]
                )
            )  # type: ignore[index]
            db_runs_nowhere = t["configured"] is True and not t["instances"] and t["state"] == "configured"
            if runs_nowhere or db_runs_nowhere or t["partial"]:  # type: ignore[index]
                assert (s["step"], t["service"]) in dangers, (s["step"], t, plan["dangers"])  # type: ignore[index]
    lock = cockpit(lab, "lock", state_dir=state).stdout
    assert "free" in lock or "stale" in lock, lock
    if not outage:
        failed = {
            k: (m["requests_failed"], m.get("last_failure"))
            for k, m in control.meters(lab).items()
            if m["requests_failed"]
        }
        assert not failed, failed
    return plan


@pytest.fixture
def fresh(lab: LabSpec) -> Iterator[LabSpec]:
    scenarios.apply(lab, "fresh")
    control.reset_meters(lab)
    yield lab
    scenarios.apply(lab, "fresh")


def test_host_key_changed_refuses_before_any_write(fresh: LabSpec, tmp_path: Path) -> None:
    with faults.replaced_host_key(fresh, fresh.database):
        r = cockpit(fresh, "advance", "pg-2", "--yes", "--reason", "fault: host key", state_dir=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "preflight failed, nothing was written" in r.stdout and "host key" in r.stdout, r.stdout
        assert f"/{fresh.namespace}/database/POSTGRES_TLS_ENABLED" not in rollout_params(fresh)
    consistent(fresh, tmp_path)


def test_bastion_down_refuses_before_any_write(fresh: LabSpec, tmp_path: Path) -> None:
    with faults.bastion_down(fresh):
        r = cockpit(fresh, "advance", "pg-2", "--yes", "--reason", "fault: bastion", state_dir=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "nothing was written" in r.stdout + r.stderr, r.stdout + r.stderr
        assert f"/{fresh.namespace}/database/POSTGRES_TLS_ENABLED" not in rollout_params(fresh)
        plan = cockpit(fresh, "plan", state_dir=tmp_path)
        assert "ROOT CAUSE" in plan.stdout and "bastion" in plan.stdout, plan.stdout  # said once, up front
    consistent(fresh, tmp_path)


def test_a_stalled_target_refuses_within_the_connect_timeout(fresh: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(fresh, "pg-4")
    control.reset_meters(fresh)
    api2 = [h for h in fresh.app_hosts() if h.service == "api"][1]
    with faults.stalled_sshd(fresh, api2):
        r = cockpit(
            fresh,
            "advance",
            "pg-5",
            "--service",
            "api",
            "--yes",
            "--reason",
            "fault: stalled",
            state_dir=tmp_path,
            timeout=300,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        # refused before any write, naming the host: by preflight, or already by a gate it leaves unmeasured
        assert api2.name in r.stdout and ("preflight failed" in r.stdout or "[unknown]" in r.stdout), r.stdout
    assert f"/{fresh.namespace}/api/DATABASE_SSL_MODE" not in rollout_params(fresh)
    consistent(fresh, tmp_path)


def test_fleet_journal_unwritable_refuses(fresh: LabSpec, tmp_path: Path) -> None:
    with faults.unwritable_journal_dir(fresh):
        r = cockpit(fresh, "advance", "pg-2", "--yes", "--reason", "fault: journal", state_dir=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "fleet journal" in r.stdout and "nothing was written" in r.stdout, r.stdout
    assert f"/{fresh.namespace}/database/POSTGRES_TLS_ENABLED" not in rollout_params(fresh)
    consistent(fresh, tmp_path)


def test_local_journal_unwritable_releases_the_lock(fresh: LabSpec, tmp_path: Path) -> None:
    (tmp_path / "rollout-cockpit" / "journal" / "staging.jsonl").mkdir(parents=True)  # a directory: not writable
    r = cockpit(fresh, "advance", "pg-2", "--yes", "--reason", "fault: local journal", state_dir=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "local journal" in r.stderr and "lock was released" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert "free" in cockpit(fresh, "lock").stdout
    assert f"/{fresh.namespace}/database/POSTGRES_TLS_ENABLED" not in rollout_params(fresh)


_KILL_BETWEEN_WRITES = textwrap.dedent("""
    import os, sys, time
    import plans.store as store
    first = store.SsmStore._apply
    n = 0
    async def apply(self, *a, **kw):
        global n
        out = await first(self, *a, **kw)
        n += 1
        if n == 1:
            print("FIRST-WRITE-DONE", flush=True)
            time.sleep(600)  # killed here, between the step's two writes
        return out
    store.SsmStore._apply = apply
    from cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def test_killed_between_the_two_writes_of_a_step(fresh: LabSpec, tmp_path: Path) -> None:
    """kill -9 between redis-2's two SSM writes: plan shows a DANGER with the remedy (never "pending"), the
    lock shows its holder stale, and the remedy completes the step."""
    scenarios.apply(fresh, "redis-1")
    control.reset_meters(fresh)
    inv = str(Path(fresh.dir) / "inventory.toml")
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILL_BETWEEN_WRITES,
            "advance",
            "redis-2",
            "--service",
            "api",
            "--yes",
            "--reason",
            "to be killed",
            "--inventory",
            inv,
        ],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert p.stdout is not None
    for line in p.stdout:
        if "FIRST-WRITE-DONE" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=60)
    params = rollout_params(fresh)
    written = [v for v in ("REDIS_TLS_ENABLED", "REDIS_TLS_CA_FILE") if f"/{fresh.namespace}/api/{v}" in params]
    assert len(written) == 1, params  # half of the step
    plan = cockpit(fresh, "plan", state_dir=tmp_path)
    assert "DANGER  redis-2 api:" in plan.stdout and "cockpit advance redis-2 --service api" in plan.stdout, plan.stdout
    assert "did not finish" in plan.stdout  # the intent names what was and was not written
    lock = cockpit(fresh, "lock", state_dir=tmp_path)
    assert "stale" in lock.stdout and "is not running on this machine" in lock.stdout, lock.stdout
    consistent(fresh, tmp_path)
    assert cockpit(fresh, "lock", "--break", "--reason", "the run was killed", state_dir=tmp_path).returncode == 0
    r = cockpit(fresh, "advance", "redis-2", "--service", "api", "--yes", "--reason", "complete it", state_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    after = consistent(fresh, tmp_path)
    assert not after["dangers"], after["dangers"]


def test_sigterm_mid_roll_stops_after_the_instance_and_releases(fresh: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(fresh, "pg-4")
    control.reset_meters(fresh)
    inv = str(Path(fresh.dir) / "inventory.toml")
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
            "to be stopped",
            "--inventory",
            inv,
        ],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert p.stdout is not None
    out = []
    for line in p.stdout:
        out.append(line)
        if line.lstrip().startswith("restart") and "[staging-api-01]" in line:  # the event, not the preview
            p.send_signal(signal.SIGTERM)  # during the first instance's restart
    assert p.wait(timeout=300) == 1, "".join(out)
    text = "".join(out)
    assert "stops after the current instance" in text and "stopped by the operator after 1 of 2" in text, text
    assert "lock released" in text, text
    plan = consistent(fresh, tmp_path)
    api = next(
        t
        for s in plan["steps"]
        if s["step"] == "pg-5"
        for t in s["targets"]  # type: ignore[union-attr, index]
        if t["service"] == "api"
    )
    assert {i["host"]: i["state"] for i in api["instances"]} == {
        "staging-api-01": "live",  # type: ignore[index]
        "staging-api-02": "configured",
    }
    r = cockpit(fresh, "advance", "pg-5", "--service", "api", "--yes", "--reason", "finish", state_dir=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    consistent(fresh, tmp_path)


def test_certs_push_waits_for_the_lock(fresh: LabSpec, tmp_path: Path) -> None:
    pki = Path(fresh.dir) / "pki"

    async def hold(engine: object) -> str:
        from plans.engine import Engine

        assert isinstance(engine, Engine)
        await engine.acquire_lock("pg-5")
        r = await __import__("asyncio").to_thread(
            cockpit,
            fresh,
            "certs",
            "push",
            "--ca",
            str(pki / "ca.crt"),
            "--cert",
            str(pki / "server.crt"),
            "--key",
            str(pki / "server.key"),
            "--reason",
            "rotate during a step",
            state_dir=tmp_path,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        return r.stderr

    err = with_engine(fresh, hold)  # type: ignore[arg-type]
    assert "the fleet lock is held by" in err and "pg-5" in err
    r = cockpit(
        fresh,
        "certs",
        "push",
        "--ca",
        str(pki / "ca.crt"),
        "--cert",
        str(pki / "server.crt"),
        "--key",
        str(pki / "server.key"),
        "--reason",
        "rotate, nothing else running",
        state_dir=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    journal = (tmp_path / "rollout-cockpit/journal/staging.jsonl").read_text()
    assert '"event": "certs-push"' in journal and "rotate, nothing else running" in journal
    assert "already held these values" in r.stdout  # only what changes is written


@pytest.fixture(scope="module")
def envfile_lab() -> Iterator[LabSpec]:
    with running_lab("api=2,web=0,voice=0,ops=0,telpro=0", variants="envfile") as spec:
        yield spec


def test_envfile_unsupported_line_on_the_second_host_refuses_before_writing(
    envfile_lab: LabSpec, tmp_path: Path
) -> None:
    spec = envfile_lab
    scenarios.apply(spec, "pg-4")
    api1, api2 = [h for h in spec.app_hosts() if h.service == "api"]
    f1 = Path(api1.root) / "opt/deployment/rollout.env"
    before = f1.read_bytes()
    with faults.unsupported_envfile_line(spec, api2):
        r = cockpit(
            spec, "advance", "pg-5", "--service", "api", "--yes", "--reason", "fault: envfile line", state_dir=tmp_path
        )
        assert r.returncode in (1, 2), r.stdout + r.stderr
        text = r.stdout + r.stderr
        assert api2.name in text and "line" in text, text
        assert "Traceback" not in text
    assert f1.read_bytes() == before  # the first host was not written either
