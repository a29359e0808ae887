"""Helpers to drive the engine against a lab, in process or through the `cockpit` CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from inventory.load import load_inventory
from lab.topology import LabSpec
from plans.collecting import collector_for
from plans.engine import Engine
from plans.journal import Journal
from plans.plan import Plan, default_plan

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def cockpit(
    spec: LabSpec, *args: str, timeout: float = 600, state_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if state_dir is not None:
        env["XDG_STATE_HOME"] = str(state_dir)
    inv = str(Path(spec.dir) / "inventory.toml")
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--inventory", inv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def with_engine(
    spec: LabSpec,
    fn: Callable[[Engine], Awaitable[T]],
    *,
    local_dir: Path | None = None,
    inventory: Path | None = None,
    plan: Plan | None = None,
) -> T:
    """Run `fn` with an engine on the lab (the shipped runbook unless `plan`), reading what the plan declares;
    the lock is released and the sessions closed afterwards."""
    env = load_inventory(inventory or Path(spec.dir) / "inventory.toml").env(None)
    plan = plan or default_plan()

    async def go() -> T:
        collector = collector_for(env, plan)
        engine = Engine(
            env, plan, collector, journal=Journal(env, collector.pool, local_dir=local_dir) if local_dir else None
        )
        try:
            return await fn(engine)
        finally:
            if engine.lock.held is not None:
                await engine.release_lock()
            await collector.aclose()

    return asyncio.run(go())
