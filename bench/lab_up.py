"""Time `lab up` for the default fleet and for 50 app instances (issue #2's goal: default ≤ 20 s).

.venv/bin/python bench/lab_up.py            # both sizes, each on a claimed net and directory (lab.netclaim)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import control
from lab.netclaim import claimed
from lab.topology import LabSpec, parse_instances

FIFTY = "api=15,web=5,voice=15,ops=5,telpro=10"


def one(instances: str) -> tuple[int, float, dict[str, float]]:
    with claimed("cockpit-bench-lab-") as (net, d):  # a net and a directory no other lab uses
        spec = LabSpec(dir=str(d), net=net, instances=parse_instances(instances))
        t0 = time.monotonic()
        try:
            phases = control.up(spec)
            total = time.monotonic() - t0
            t1 = time.monotonic()
            control.up(spec)  # the second `up` finds everything running
            phases["second_up"] = time.monotonic() - t1
        finally:
            if (d / "lab.json").exists():
                left = control.down(d)
                assert not left, left
    return len(spec.app_hosts()), total, phases


def main() -> None:
    print(f"{'app instances':>13} {'lab up (s)':>10}  phases (cumulative s)")
    for inst in ("", FIFTY):
        n, total, phases = one(inst)
        print(f"{n:>13} {total:>10.1f}  " + ", ".join(f"{k}={v:.1f}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
