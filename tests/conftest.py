"""Shared fixtures: real sshd hosts with non-root users, and the fake agent executables."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dobby.replay import install_fake_agents
from tests.fixtures.sshd import SshdCluster, SshHost


@pytest.fixture(scope="session")
def fake_bin() -> Iterator[Path]:
    """Return a world-readable directory holding the fake ``claude`` and ``codex``."""
    directory = Path(tempfile.mkdtemp(prefix="dobby-fake-bin-"))
    try:
        yield install_fake_agents(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_cluster(fake_bin: Path) -> Iterator[SshdCluster]:
    """Run three real sshd hosts h1..h3 on 127.0.0.2..4 for the whole session."""
    with SshdCluster(count=3, fake_bin=fake_bin) as cluster:
        yield cluster


@pytest.fixture
def ssh_hosts(sshd_cluster: SshdCluster) -> list[SshHost]:
    """Return the three hosts, each with sshd running, no user processes and no ~/.dobby."""
    return sshd_cluster.reset()
