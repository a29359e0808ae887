from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.topology import LabSpec
from tests.labkit import running_lab


@pytest.fixture(scope="session")
def lab() -> Iterator[LabSpec]:
    """The shared lab for tests that need the real fleet (default shape, net 127.0.20)."""
    with running_lab("127.0.20") as spec:
        yield spec
