"""Each runbook step on the lab: time from confirmation to verified, how much of it is
`update.sh` itself, and the cockpit's own share per instance (issue #4's goal: ≤ 1 s).

    .venv/bin/python bench/steps.py          # a default lab on a claimed net (lab.netclaim): fresh → done → fresh
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lab-operator")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lab-operator")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from inventory.load import load_inventory
from lab import control, scenarios
from lab.netclaim import claimed
from lab.topology import LabSpec
from plans.collecting import collector_for
from plans.engine import Engine
from plans.journal import Journal
from plans.plan import default_plan
from plans.position import next_action_in


async def run(inv: Path, journal_dir: Path) -> list[tuple[str, str, int, float, float, float]]:
    env = load_inventory(inv).env(None)
    plan = default_plan()
    collector = collector_for(env, plan)
    engine = Engine(env, plan, collector, journal=Journal(env, collector.pool, local_dir=journal_dir))
    rows: list[tuple[str, str, int, float, float, float]] = []
    done: list[tuple[str, str | None]] = []

    async def one(step: str, service: str | None, direction: str) -> None:
        await engine.acquire_lock(step)
        try:
            p = await engine.preview(step, service, direction=direction)
            t0 = time.monotonic()  # the operator confirms here
            assert p.open, p.closed_reasons
            out = await engine.apply(p, reason="benchmark")
            total = time.monotonic() - t0
            assert out.ok, out.reason
            upd = sum(i.update_ms for i in out.instances) / 1000
            n = max(len(out.instances), 1)
            rows.append((f"{direction} {step}", p.service or "", len(out.instances), total, upd, (total - upd) / n))
        finally:
            await engine.release_lock()

    try:
        while True:
            nxt = next_action_in(engine.position(await engine.snapshot()))
            if nxt is None:
                break
            step, service = nxt[0].id, (nxt[1] if nxt[0].per_service else None)
            await one(step, service, "advance")
            done.append((step, service))
        for step, service in reversed(done):
            await one(step, service, "rollback")
    finally:
        await collector.aclose()
    return rows


def main() -> None:
    with claimed("cockpit-bench-steps-") as (net, d):
        run_on(LabSpec(dir=str(d), net=net))


def run_on(spec: LabSpec) -> None:
    d = spec.path
    try:
        control.up(spec)
        scenarios.apply(spec, "fresh")
        rows = asyncio.run(run(d / "inventory.toml", d / "journal"))
        print(
            f"{'step':<20} {'service':<9} {'inst':>4} {'confirm→verified s':>18} {'update.sh s':>11} "
            f"{'cockpit s/inst':>14}"
        )
        for name, svc, n, total, upd, own in rows:
            print(f"{name:<20} {svc:<9} {n:>4} {total:>18.2f} {upd:>11.2f} {own:>14.2f}")
        owns = [r[5] for r in rows if r[2]]
        print(
            f"cockpit's own share per instance: median {sorted(owns)[len(owns) // 2]:.2f} s, max {max(owns):.2f} s"
            " (goal ≤ 1 s)"
        )
        ms = control.meters(spec)
        print("failed requests during the benchmark:", sum(m["requests_failed"] for m in ms.values()))
    finally:
        if (d / "lab.json").exists():
            control.down(d)


if __name__ == "__main__":
    main()
