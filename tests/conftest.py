from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The operator's AWS identity for the lab's moto server (any values work there); never let boto3
# look for instance metadata on the network.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "lab-operator")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "lab-operator")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from lab.topology import LabSpec
from tests.labkit import running_lab


@pytest.fixture(scope="session")
def lab() -> Iterator[LabSpec]:
    """The shared lab for tests that need the real fleet (default shape, net $COCKPIT_TEST_NET or 127.0.20)."""
    with running_lab(os.environ.get("COCKPIT_TEST_NET", "127.0.20")) as spec:
        yield spec
