"""`cockpit status` at 50 app instances: cold and warm snapshots, peak memory, SSH connections,
the whole cockpit in watch mode probing the fleet every second (its CPU: issue #5's ≤ 15 % of one core
"at 50 hosts probed every second"), and the runbook's own verification commands on the same fleet for
comparison (issue #3's goals: warm ≤ 1 s, cold ≤ 3 s, ≤ 150 MB, exactly one SSH connection per host).

    .venv/bin/python bench/status.py [--keep]      # starts a 50-instance lab on a claimed net (lab.netclaim)
"""

from __future__ import annotations

import asyncio
import os
import resource
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lab-operator")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lab-operator")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from inventory.load import load_inventory
from lab import aws, control
from lab.netclaim import claim_net, private_dir
from lab.topology import LabSpec, parse_instances
from plans.collecting import collector_for
from plans.plan import default_plan
from probes.ssh.pool import SshPool

FIFTY = "api=15,web=5,voice=15,ops=5,telpro=10"


async def measure(inv: Path) -> dict[str, float]:
    env = load_inventory(inv).env(None)
    colds = []
    for _ in range(3):  # a cold round: a new collector, every SSH connection made through the bastion
        c = collector_for(env, default_plan())
        t = time.monotonic()
        await c.snapshot()
        colds.append(time.monotonic() - t)
        await c.aclose()
    cold = statistics.median(colds)
    c = collector_for(env, default_plan())
    s = await c.snapshot()
    warm = []
    for _ in range(10):
        t = time.monotonic()
        s = await c.snapshot()
        warm.append(time.monotonic() - t)
    conns = c.pool.connection_count()
    await c.aclose()
    return {
        "cold_s": cold,
        "cold_all": colds,
        "warm_median_s": statistics.median(warm),
        "warm_max_s": max(warm),
        "ssh_connections": conns,
        "hosts_plus_bastion": len(env.hosts) + 1,
        "instances": len(s.instances),
        "verdict": s.verdict.value,
    }  # type: ignore[dict-item]


async def live_watch_cpu(inv: Path, seconds: float = 30.0) -> dict[str, float]:
    """The whole cockpit as an observer runs it: `cockpit watch` (headless, 120×40, recording on)
    probing the 50 instances every second — CPU of the process (probes, UI, recording) over `seconds`."""
    import tempfile

    from cli.compose import build_live_app

    with tempfile.TemporaryDirectory() as tmp:
        live = build_live_app("watch", inv, None, recordings=Path(tmp), poll_interval=1.0)
        app, recorder = live.app, live.recorder
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                for _ in range(600):  # connected and settled: the first (cold) rounds are not counted
                    if getattr(app, "polls", 0) >= 3:
                        break
                    await pilot.pause(0.1)
                c0, w0, p0 = time.process_time(), time.monotonic(), app.polls
                await asyncio.sleep(seconds)
                c1, w1, p1 = time.process_time(), time.monotonic(), app.polls
        finally:
            recorder.close()
    return {"watch_cpu_pct": (c1 - c0) / (w1 - w0) * 100, "watch_polls_per_s": (p1 - p0) / (w1 - w0)}


async def runbook_commands(inv: Path, spec: LabSpec) -> float:
    """The runbook's four verification commands, as written, one host at a time over SSH."""
    env = load_inventory(inv).env(None)
    pw = aws.lab_secrets(spec)
    db, dns, ca = spec.database, spec.db_dns_name, "/etc/ssl/internal/ca.crt"
    pool = SshPool(env)
    t = time.monotonic()
    sock = f"{db.root}/run/postgresql"
    r = await pool.run(
        db.name,
        f"PGPASSWORD={shlex.quote(pw['POSTGRES_PASSWORD'])} psql -h {sock} -U voiceai "
        f'-d voiceai -c "SELECT ssl, version FROM pg_stat_ssl WHERE pid=pg_backend_pid();"',
    )
    r2 = await pool.run(
        db.name,
        f"redis-cli -h {db.address} -p {spec.redis_tls_port} --tls --cacert "
        f"{db.root}{ca} --insecure -a {shlex.quote(pw['REDIS_PASSWORD'])} ping",
    )
    for h in spec.app_hosts():
        hca = f"{h.root}{ca}"
        await pool.run(
            h.name,
            f"PGPASSWORD={shlex.quote(pw['POSTGRES_PASSWORD'])} psql "
            f'"postgresql://voiceai@{dns}:{spec.pgbouncer_port}/voiceai?sslmode=verify-full'
            f'&sslrootcert={hca}&hostaddr={db.address}" -c "SELECT 1;"',
        )
        await pool.run(
            h.name,
            f"redis-cli -h {db.address} --sni {dns} -p {spec.redis_tls_port} --tls "
            f"--cacert {hca} -a {shlex.quote(pw['REDIS_PASSWORD'])} ping",
        )
    took = time.monotonic() - t
    await pool.aclose()
    assert r.exit_status == 0 and r2.exit_status == 0, (r.stderr, r2.stderr)
    return took


def main() -> None:
    claim = claim_net()  # held until this process exits; --keep leaves the lab running on it
    d = private_dir("cockpit-bench-status-")
    spec = LabSpec(dir=str(d), net=claim.net, instances=parse_instances(FIFTY))
    try:
        control.up(spec)
        from lab import scenarios

        scenarios.apply(spec, "redis-1")  # TLS listeners up, so the runbook's commands can run
        time.sleep(20)  # let the 50 freshly restarted apps finish reconnecting before measuring
        inv = d / "inventory.toml"
        # the cockpit's rounds in a process of their own, so its peak memory is the cockpit's alone
        import json
        import subprocess

        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(inv)], capture_output=True, text=True, check=True, timeout=600
        ).stdout
        res = json.loads(out.strip().splitlines()[-1])
        peak = res["peak_mb"]
        live = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--watch-cpu", str(inv)],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        manual = asyncio.run(runbook_commands(inv, spec))
        print(f"app instances:            {res['instances']}")
        print(
            f"cold snapshot:            median {res['cold_s']:.2f} s of "
            f"{', '.join(f'{x:.2f}' for x in res['cold_all'])}   (goal ≤ 3 s; SSH connects through the bastion)"
        )
        print(
            f"warm snapshot:            median {res['warm_median_s']:.2f} s, max {res['warm_max_s']:.2f} s"
            "   (goal ≤ 1 s)"
        )
        print(f"peak memory (RSS):        {peak:.0f} MB   (goal ≤ 150 MB)")
        print(
            f"SSH connections:          {res['ssh_connections']} for {res['hosts_plus_bastion']} hosts incl. "
            "bastion (goal: exactly one each)"
        )
        print(
            f"cockpit watch, 1 poll/s:  {live['watch_cpu_pct']:.1f} % of one core (probes + UI + recording; "
            f"{live['watch_polls_per_s']:.2f} polls/s over 30 s)   (goal ≤ 15 %)"
        )
        print(
            f"load average (1 min):     {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the lab's 50 apps included)"
        )
        print(
            f"runbook's manual checks:  {manual:.2f} s for the same fleet, one host at a time "
            f"({manual / res['warm_median_s']:.0f}× a warm snapshot)"
        )
    finally:
        if "--keep" in sys.argv:
            print(f"lab kept running: {d} on {claim.net}.0/24 (stop it with: python -m lab --dir {d} down)")
        else:
            if (d / "lab.json").exists():
                control.down(d)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--watch-cpu":
        import json

        print(json.dumps(asyncio.run(live_watch_cpu(Path(sys.argv[2])))))
    elif len(sys.argv) == 3 and sys.argv[1] == "--measure":
        import json

        r = asyncio.run(measure(Path(sys.argv[2])))
        r["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
    else:
        main()
