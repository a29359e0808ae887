"""The Textual privates the cockpit leans on exist in the installed Textual, and only tui/textual_internals.py
uses them: a Textual bump that renames or drops one fails here, by name, not in the screens at run time."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import textual

from tui.textual_internals import PRIVATE_NAMES

ROOT = Path(__file__).resolve().parent.parent
# Privates the tests and benchmarks use to look at the screen (not the product's): pinned the same way.
TEST_PRIVATE_NAMES = (
    ("textual.screen:Screen()", "_compositor"),  # tests/test_tui_support.py screen_text
    ("textual.screen:Screen", "_compositor_refresh"),  # bench/tui.py times each screen update
    ("textual.widgets:DataTable", "_render_line_in_row"),  # tests/test_tui_tables.py counts rendered lines
    ("textual.app:App()", "_notifications"),  # tests/test_tui_app.py last_said
)


def has_private(where: str, name: str) -> bool:
    """Whether `name` exists where `where` says: "module" (a name in a module), "module:Class" (a class
    attribute or method) or "module:Class()" (an attribute an instance gets in its constructor)."""
    module, _, owner = where.partition(":")
    mod = importlib.import_module(module)
    if not owner:
        return hasattr(mod, name)
    cls = getattr(mod, owner.removesuffix("()"))
    if not owner.endswith("()"):
        return hasattr(cls, name)
    return name in vars(cls()) or hasattr(cls, name)


@pytest.mark.parametrize(
    ("where", "name"),
    PRIVATE_NAMES + TEST_PRIVATE_NAMES,
    ids=[f"{w}.{n}" for w, n in PRIVATE_NAMES + TEST_PRIVATE_NAMES],
)
def test_each_private_exists_in_the_installed_textual(where: str, name: str) -> None:
    assert has_private(where, name), (
        f"textual {textual.__version__} has no {name} on {where}: "
        "tui/textual_internals.py must be brought up to date with it"
    )


@pytest.mark.parametrize("owner", ["textual.widget:Widget", "textual.scroll_view:ScrollView"])
def test_the_overridden_size_update_keeps_its_signature(owner: str) -> None:
    """SteadyScrollbars and LaidOutOnce override `_size_updated` and call it with these parameters."""
    module, _, cls = owner.partition(":")
    method = getattr(importlib.import_module(module), cls)._size_updated
    params = list(inspect.signature(method).parameters)
    assert params == ["self", "size", "virtual_size", "container_size", "layout"], params


def test_the_checker_can_fail() -> None:
    assert not has_private("textual.widget:Widget", "_no_such_private")
    assert not has_private("textual.widget:Widget()", "_no_such_private")
    assert not has_private("textual.widgets._tabs", "NoSuchTab")


def test_no_other_module_of_tui_uses_them() -> None:
    """Every use of a pinned private is in tui/textual_internals.py."""
    names = sorted({name for _, name in PRIVATE_NAMES if name.startswith("_")})
    pattern = re.compile(
        r"\.("
        + "|".join(map(re.escape, names))
        + r")\b|\bdef ("
        + "|".join(map(re.escape, names))
        + r")\b|textual\.widgets\._tabs"
    )
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sorted((ROOT / "tui").rglob("*.py"))
        if p.name != "textual_internals.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "Textual privates outside tui/textual_internals.py:\n" + "\n".join(found)
    assert len(names) > 10  # the list is the module's, not empty
