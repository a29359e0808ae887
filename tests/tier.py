"""The two test tiers: `pytest -m "not lab"` (fast: no server starts) and the whole suite.

A test that starts a server (the lab, a database server, sshd, moto) must be marked `lab` (a module-level
`pytestmark = pytest.mark.lab`); in the fast tier, starting one fails the test with that instruction, so the
fast tier stays fast and never silently grows a server."""

from __future__ import annotations

import os

import pytest

FAST_TIER_ENV = "COCKPIT_FAST_TIER"


def servers_allowed(what: str) -> None:
    """Fail the running test if this is the fast tier: `what` (a server) would start in it."""
    if os.environ.get(FAST_TIER_ENV) == "1":
        pytest.fail(f"this test starts {what} but is not marked lab: add `pytestmark = pytest.mark.lab` to its module")
