"""Fixtures of the races tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.hub import HubProcess


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[HubProcess]]:
    """Collect the hubs a test starts and stop them all at its end."""
    hubs: list[HubProcess] = []
    yield hubs
    for hub in hubs:
        hub.stop()
