from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# The operator's AWS identity for the lab's moto server (any values work there); never let boto3
# look for instance metadata on the network.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lab-operator")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lab-operator")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Journals, recordings and locks of this run stay in this run: never the user's own state, never
# another test run's.
os.environ["XDG_STATE_HOME"] = _STATE = tempfile.mkdtemp(prefix="cockpit-test-state-")

from lab.topology import LabSpec
from tests.labkit import running_lab
from tests.tier import FAST_TIER_ENV

atexit.register(shutil.rmtree, _STATE, True)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabSpec]:
    """The shared lab for tests that need the real fleet (default shape) on a loopback net claimed for
    this run ($COCKPIT_TEST_NET forces one)."""
    with running_lab(net=os.environ.get("COCKPIT_TEST_NET") or None) as spec:
        yield spec


def pytest_configure(config: pytest.Config) -> None:
    """`-m "not lab"` is the fast tier: starting a server in it is a test marked wrongly (tests/tier.py)."""
    expr = str(config.getoption("markexpr") or "")
    if "not lab" in expr.replace("  ", " "):
        os.environ[FAST_TIER_ENV] = "1"


# fixtures that start servers (the lab, a moto server): a test that takes one is a lab test
SERVER_FIXTURES = frozenset({"lab", "iam_moto"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that takes a server fixture must be marked lab, or the fast tier would start servers."""
    unmarked = [
        i.nodeid
        for i in items
        if SERVER_FIXTURES & set(getattr(i, "fixturenames", ())) and i.get_closest_marker("lab") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use a server fixture but are not marked lab "
            "(add `pytestmark = pytest.mark.lab` to the module): " + ", ".join(unmarked[:5])
        )
