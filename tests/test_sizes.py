"""Budgets that keep the tree changeable: no product module over 600 lines, no function over 60 lines
(def line through the end of its body, docstring included). The failure names each offender."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("probes", "plans", "tui", "lab", "inventory", "session", "cli")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def too_long(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    rel = path.relative_to(root)
    out = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        out.append(f"{rel}: {lines} lines (budget {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{rel}:{node.lineno} {node.name}(): {n} lines (budget {MAX_FUNCTION_LINES})")
    return out


def test_every_module_and_function_is_within_budget() -> None:
    paths = sources()
    assert len(paths) > 50, "the product packages were not found"
    over = [o for p in paths for o in too_long(p)]
    assert not over, "over budget — split by responsibility:\n" + "\n".join(over)


def test_the_budget_check_can_fail(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    src = tmp_path / "big.py"
    src.write_text("def f() -> None:\n" + body + "\n")
    assert too_long(src, tmp_path) == [f"big.py:1 f(): {MAX_FUNCTION_LINES + 1} lines (budget {MAX_FUNCTION_LINES})"]


@pytest.mark.parametrize("limit", [MAX_MODULE_LINES])
def test_a_long_module_is_named(tmp_path: Path, limit: int) -> None:
    src = tmp_path / "long.py"
    src.write_text("x = 1\n" * (limit + 1))
    assert too_long(src, tmp_path) == [f"long.py: {limit + 1} lines (budget {limit})"]
