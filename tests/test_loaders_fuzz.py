"""Fuzzing both loaders: valid inventories and plans, mutated (lines deleted, duplicated, swapped;
characters flipped; values replaced by wrong types, `inf`, huge strings and arrays, deep nesting,
unicode; bytes flipped on disk), are either accepted or refused with the loader's own error, whose
message starts with `<source>:<line>: ` or `<source>: ` — never another exception, never a hang."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inventory.load import load_inventory, parse_inventory
from inventory.model import InventoryError
from plans.plan import PlanError, load_plan, parse_plan
from tests.test_inventory import BASE, FLEET

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = [(ROOT / "docs" / "inventory.example.toml").read_text(encoding="utf-8"), BASE, FLEET]
PLANS = [(ROOT / "plans" / "runbook.toml").read_text(encoding="utf-8")]
SOURCE = "fuzz.toml"
LOCATED = re.compile(r"fuzz\.toml(:[0-9]+)?: \S")

# what a value may be replaced with: wrong types, non-finite numbers, and sizes no person writes
VALUES = [
    "inf",
    "-inf",
    "nan",
    "+nan",
    "0",
    "-1",
    "0.0",
    "1e999",
    "-1e999",
    "9" * 5000,
    "9223372036854775808",
    "true",
    "[]",
    "{}",
    '""',
    '"  "',
    "1979-05-27T07:32:00Z",
    "07:32:00",
    '"\\u0000"',
    '"../../../etc/passwd"',
    '"aws/x"',
    '"é☃😀"',
    '"a//b"',
    '"{root} $(touch x) {nope}"',
    '"' + "x" * 200_000 + '"',
    "[" + "1, " * 30_000 + "]",
    "[" + '"s", ' * 20_000 + "]",
    "[" * 40 + "]" * 40,
    "{a = {b = {c = {d = {e = 1}}}}}",
    "[{a = 1}, {b = [2, [3, [4]]]}]",
    '"""\nmulti\nline\n"""',
    "'''literal'''",
]
DEEP_LINES = [
    "x = " + "[" * 17 + "]" * 17,
    "x = " + "{ a = " * 17 + "1" + " }" * 17,
    ".".join(["k"] * 20) + " = 1",
    "[" + ".".join(["t"] * 20) + "]",
    "[[" + ".".join(["t"] * 20) + "]]",
    "x = " + "[" * 5000,
    ".".join(["k"] * 5000) + " = 1",
]
OPS = ("delete", "duplicate", "swap", "flip", "value", "deep", "insert", "truncate", "version")


@st.composite
def mutated(draw: st.DrawFn, texts: list[str]) -> str:
    """One of `texts` with 1 to 4 mutations."""
    lines = draw(st.sampled_from(texts)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPS))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if not lines:
            lines = [""]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "flip" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            c = draw(st.characters(codec="utf-8") | st.sampled_from("[]{}\"'=.#\\,\n"))
            lines[i] = lines[i][:k] + c + lines[i][k + 1 :]
        elif op == "value" and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(st.sampled_from(VALUES))
        elif op == "deep":
            lines.insert(i, draw(st.sampled_from(DEEP_LINES)))
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=40)))
        elif op == "truncate":
            lines = lines[:i]
        elif op == "version":
            lines.insert(i, f"version = {draw(st.sampled_from(['1', '2', '0', '1.0', 'true', '-1']))}")
    return "\n".join(lines)


FUZZ = settings(
    max_examples=150,
    deadline=5000,  # ms per example: a hang fails here, long before the pytest timeout
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def refused_cleanly(parse: Callable[[], object], error: type[Exception]) -> None:
    try:
        parse()
    except error as e:
        assert LOCATED.match(str(e)), str(e)[:300]


@pytest.mark.timeout(120)
@FUZZ
@given(mutated(INVENTORIES))
def test_inventory_texts(text: str) -> None:
    refused_cleanly(lambda: parse_inventory(text, SOURCE), InventoryError)


@pytest.mark.timeout(120)
@FUZZ
@given(mutated(PLANS))
def test_plan_texts(text: str) -> None:
    refused_cleanly(lambda: parse_plan(text, SOURCE), PlanError)


@pytest.mark.timeout(120)
@FUZZ
@given(mutated(INVENTORIES + PLANS))
def test_each_loader_on_the_others_files(text: str) -> None:
    refused_cleanly(lambda: parse_inventory(text, SOURCE), InventoryError)
    refused_cleanly(lambda: parse_plan(text, SOURCE), PlanError)


@st.composite
def flipped_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(INVENTORIES + PLANS)).encode("utf-8"))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data += b"#" * draw(st.sampled_from([0, 1 << 20]))  # over the size limit
    return bytes(data)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=60)
@given(flipped_bytes())
def test_files_with_flipped_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / SOURCE
        path.write_bytes(data)
        inv_source, plan_source = str(path), str(path)

        def located(e: Exception, source: str) -> None:
            assert re.match(re.escape(source) + r"(:[0-9]+)?: \S", str(e)), str(e)[:300]

        try:
            load_inventory(path)
        except InventoryError as e:
            located(e, inv_source)
        try:
            load_plan(path)
        except PlanError as e:
            located(e, plan_source)
