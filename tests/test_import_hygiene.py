"""`probes` and `plans` stay headless: importing every module of both never loads textual, so
`cockpit status --json` and the engine run without a terminal (the harlequin pattern)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules(package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(ROOT / package)])]


def test_every_probes_and_plans_module_imports_without_textual() -> None:
    names = modules("probes") + modules("plans")
    assert {"probes.collect", "probes.ssh", "plans.engine", "plans.gates"} <= set(names)
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "sys.exit('textual loaded: ' + ', '.join(bad[:5]) if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr or r.stdout
