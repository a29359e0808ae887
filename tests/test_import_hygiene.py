"""The layers hold: the headless packages (probes, plans, session) never load textual (so `cockpit status
--json`, the engine, recordings and `replay --report` run without a terminal — the harlequin pattern),
import-linter's contracts (pyproject.toml) are kept, and no module imports itself back through others, not
even under `if TYPE_CHECKING:`.

This is the one import-hygiene test; it replaces the copies that lived in test_certs
(test_module_does_not_import_textual), test_plan (test_plans_never_import_textual), test_ssh
(test_probes_ssh_does_not_import_textual) and test_tui_recording (test_headless_modules_never_import_textual)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("inventory", "probes", "plans", "session", "tui", "cli", "lab")


def modules(package: str) -> list[str]:
    """Every module of `package`, subpackages included."""
    found = [package]
    for m in pkgutil.walk_packages([str(ROOT / package)], prefix=package + "."):
        found.append(m.name)
    return found


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(modules("probes"), id="probes"),
        pytest.param(modules("plans"), id="plans"),
        pytest.param(modules("inventory"), id="inventory"),
        pytest.param(modules("session"), id="session"),
    ],
)
def test_headless_package_never_imports_textual(names: list[str]) -> None:
    assert len(names) > 3, names  # the walk found the package
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "import plans.plan\n"
        "plans.plan.default_plan()\n"  # loading the runbook loads nothing of the UI either
        "bad = sorted(m for m in sys.modules if m in ('textual', 'rich') or m.startswith(('textual.', 'rich.')))\n"
        "sys.exit('textual loaded: ' + ', '.join(bad[:5]) if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr or r.stdout


def test_import_contracts_are_kept() -> None:
    """`lint-imports` (import-linter, contracts in pyproject.toml): cli → tui → session → plans → probes, lab
    apart, session headless."""
    tool = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(tool), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "broken" in r.stdout and " 0 broken" in r.stdout, r.stdout[-2000:]


def cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Import cycles among `package`'s modules: strongly connected components of more than one module, or a
    module that imports itself (Tarjan's algorithm over grimp's graph, TYPE_CHECKING imports included)."""
    nodes = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in nodes) for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", PRODUCT)
def test_no_import_cycles(package: str) -> None:
    graph = grimp.build_graph(package, include_external_packages=False, exclude_type_checking_imports=False)
    found = cycles(graph, package)
    assert not found, "import cycles (each line one cycle):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    """The finder itself can fail: a two-module package that imports itself round is reported."""
    pkg = tmp_path / "loopy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from loopy import b\n")
    (pkg / "b.py").write_text("from loopy import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("loopy", exclude_type_checking_imports=False)
        assert cycles(graph, "loopy") == [["loopy.a", "loopy.b"]]
    finally:
        sys.path.remove(str(tmp_path))
