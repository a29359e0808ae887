"""Watch is read-only by construction below the UI too: the collector reaches hosts only through
`probes.ssh.readonly.ReadOnlyHosts`, which has no way to write a file, append to one or run an arbitrary
command — mypy rejects such a call — and only `plans/` holds the writing `SshPool`. Fast tier: no server
(an `SshPool` does no I/O until it is used)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.load import load_inventory
from inventory.model import Environment
from plans.collecting import collector_for
from plans.plan import default_plan
from probes.collect import Collector
from probes.ssh.pool import SshPool
from probes.ssh.readonly import ReadOnlyHosts, ReadOnlyPool

ROOT = Path(__file__).resolve().parent.parent
WRITERS = {"write_file_atomic", "append_file", "run"}  # SshPool's calls that change a host or run anything
READS = {
    "env",
    "connected",
    "connect",
    "connect_ms",
    "stat",
    "read_file",
    "read_head",
    "forward",
    "run_check",
    "aclose",
}


@pytest.fixture(scope="module")
def env() -> Environment:
    return load_inventory(ROOT / "docs" / "inventory.example.toml").env()


def public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_the_read_only_type_exposes_no_writing_method(env: Environment) -> None:
    assert WRITERS <= public(SshPool)  # the pool has them: the names checked here are the real ones
    assert public(ReadOnlyHosts) == READS
    view = ReadOnlyPool(SshPool(env))
    assert public(view) == READS
    assert not WRITERS & public(view)
    assert not hasattr(view, "__dict__")  # nothing can be attached to it either


def test_the_collector_holds_no_writing_pool(env: Environment) -> None:
    pool = SshPool(env)
    collector = Collector(env, hosts=ReadOnlyPool(pool), read_only=True)
    seen: list[object] = []

    def walk(obj: object, depth: int = 0) -> None:
        if depth > 3 or any(obj is s for s in seen):
            return
        seen.append(obj)
        assert not isinstance(obj, SshPool), f"the collector reaches an SshPool: {obj!r}"
        for value in getattr(obj, "__dict__", {}).values():
            if hasattr(value, "__dict__") or hasattr(value, "__slots__"):
                walk(value, depth + 1)

    walk(collector)
    assert isinstance(collector.hosts, ReadOnlyPool)


def test_only_plans_hold_the_pool(env: Environment) -> None:
    collector = collector_for(env, default_plan(), read_only=True)
    assert isinstance(collector.pool, SshPool) and isinstance(collector.hosts, ReadOnlyPool)
    for path in sorted((ROOT / "probes" / "collect").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "SshPool" not in names and "probes.ssh.pool" not in modules, path.name


def test_mypy_rejects_a_write_through_the_read_only_type(tmp_path: Path) -> None:
    snippet = tmp_path / "write_through_watch.py"
    snippet.write_text(
        "from probes.ssh.readonly import ReadOnlyHosts\n\n\n"
        "async def write(hosts: ReadOnlyHosts) -> None:\n"
        '    await hosts.write_file_atomic("h", "/etc/x", b"x")\n'
        '    await hosts.run("h", "rm -rf /srv")\n'
        '    await hosts.run_check("h", "running_check")\n'
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(snippet),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, r.stdout
    assert '"write_file_atomic"' in errors[0] and '"run"' in errors[1]
