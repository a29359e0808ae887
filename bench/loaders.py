"""How long the loaders take on large input: plan validation at 800 and 8000 steps (it used to be
super-linear: 800 steps took 16 s), a 1000-host inventory, and the refusal of hostile files.

    .venv/bin/python bench/loaders.py                  # the loaders of this checkout
    .venv/bin/python bench/loaders.py --before 62741e6 # and plans/plan.py of that commit, on the same plans

The generated plan has 8 tracks (chains), a cross-track `after` every 7th step, one step in 5 per
service, and each track re-setting its own 4 variables, so every rollback is checked against an
earlier step. 8000 such steps are ~2 MB, over the loaders' 1 MiB limit: that size is timed with the
limit lifted (`max_bytes=`), and the script shows that the limit refuses it otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inventory.load import parse_inventory
from inventory.model import InventoryError
from plans.plan import PlanError, parse_plan

TRACKS = 8
VARS_PER_TRACK = 4


def plan_text(n_steps: int) -> str:
    """A valid plan of `n_steps` steps (see the module docstring)."""
    db_vars = [f"D{t}_{k}" for t in range(TRACKS) for k in range(VARS_PER_TRACK)]
    svc_vars = [f"S{t}_{k}" for t in range(TRACKS) for k in range(VARS_PER_TRACK)]
    out = [
        "version = 1",
        'name = "bench"',
        'services = ["api", "web", "voice"]',
        "[scopes.database]",
        f"variables = {db_vars!r}".replace("'", '"'),
        "[scopes.service]",
        f"variables = {svc_vars!r}".replace("'", '"'),
    ]
    for t in range(TRACKS):
        out += ["[[tracks]]", f'id = "t{t}"']
    last_value: dict[tuple[str, str], str] = {}  # (scope, var) -> the value its last setter set
    for i in range(n_steps):
        t = i % TRACKS
        service = i % 5 == 4
        scope = "service" if service else "database"
        var = f"{'S' if service else 'D'}{t}_{(i // TRACKS) % VARS_PER_TRACK}"
        out += [
            "[[steps]]",
            f'id = "s{i}"',
            f'track = "t{t}"',
            f'scope = "{scope}"',
            f'verify = "{"service_postgres_tls" if service else "postgres_tls_verifies"}"',
            f'live = "{"instance_db_tls" if service else "postgres_ssl"}"',
            "deadline = 300",
        ]
        if service:
            out.append('order = ["api", "web", "others"]')
        if i % 7 == 6 and i >= TRACKS:
            out.append(f'after = ["s{i - 3}"]')  # an earlier step of another track
        value = str(i)
        prev = last_value.get((scope, var))
        out += ["[[steps.changes]]", f'var = "{var}"', f'value = "{value}"']
        out.append(f'rollback.value = "{prev}"' if prev is not None else "rollback.unset = true")
        last_value[(scope, var)] = value
    return "\n".join(out) + "\n"


def inventory_text(n_hosts: int) -> str:
    out = [
        "version = 1",
        "[environments.bench]",
        'namespace = "voiceai/bench"',
        "[environments.bench.database]",
        'host = "db"',
        'dns_name = "db.internal"',
        "[[environments.bench.hosts]]",
        'name = "db"',
        'address = "127.0.0.2"',
        'service = "database"',
    ]
    for i in range(n_hosts):
        out += [
            "[[environments.bench.hosts]]",
            f'name = "app-{i}"',
            f'address = "127.1.{i // 250}.{i % 250 + 1}"',
            f'service = "svc{i % 20}"',
        ]
    return "\n".join(out) + "\n"


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, max) seconds over `runs` calls."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def plan_module_at(ref: str) -> ModuleType:
    """plans/plan.py as it was at git `ref`, imported under another name (its imports are today's)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{ref}:plans/plan.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "plan_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("plan_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plan_before"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REF", help="also time plans/plan.py of this git commit (≤ 800 steps)")
    args = parser.parse_args()
    print(f"{'input':<44} {'size':>9} {'median':>9} {'max':>9}")

    def row(name: str, text: str, fn: Callable[[], object], runs: int) -> None:
        med, mx = timed(fn, runs)
        print(f"{name:<44} {len(text.encode()) / 1024:>7.0f} KiB {med * 1000:>7.1f} ms {mx * 1000:>7.1f} ms")

    if args.before:
        before = plan_module_at(args.before)
        for n in (200, 400, 800):
            text = plan_text(n)
            row(f"plan, {n} steps: parse_plan at {args.before}", text, lambda t=text: before.parse_plan(t, "b"), 1)
            row(f"plan, {n} steps: parse_plan now", text, lambda t=text: parse_plan(t, "b"), 3)
    for n, runs in ((800, 9), (8000, 5)):
        text = plan_text(n)
        size = len(text.encode())
        plan = parse_plan(text, "bench.toml", max_bytes=size)
        assert len(plan.steps) == n
        row(f"plan, {n} steps: tomllib.loads alone", text, lambda text=text: tomllib.loads(text), runs)
        row(
            f"plan, {n} steps: parse_plan (all of it)",
            text,
            lambda text=text, size=size: parse_plan(text, "bench.toml", max_bytes=size),
            runs,
        )
        if size > 1 << 20:
            try:
                parse_plan(text, "bench.toml")
            except PlanError as e:
                print(f"    with the default limit: {e}")
    inv = inventory_text(1000)
    assert len(parse_inventory(inv, "bench.toml").env().hosts) == 1001
    row("inventory, 1000 hosts: parse_inventory", inv, lambda: parse_inventory(inv, "bench.toml"), 9)

    hostile = {
        "refused: version = 2, then 1 MiB of garbage": "version = 2\n" + "\x00[{" * 349_000,
        "refused: 1 MiB nested arrays": "version = 1\na = " + "[" * (1 << 20),
        "refused: 1 MiB of dotted keys (too deep)": "version = 1\n" + ".".join(["a"] * 500_000) + " = 1\n",
    }
    for name, text in hostile.items():

        def refuse(text: str = text) -> None:
            try:
                parse_plan(text, "bench.toml")
            except PlanError:
                pass
            try:
                parse_inventory(text, "bench.toml")
            except InventoryError:
                pass

        row(name + " (both loaders)", text, refuse, 5)


if __name__ == "__main__":
    main()
