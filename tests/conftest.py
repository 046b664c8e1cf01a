"""Shared fixtures: real sshd hosts with non-root users, the fake agent executables, and hubs
(a separate process, or the app in the test's own event loop) over an inventory of those hosts.

A module changes what its hubs run on by overriding ``hub_hosts`` (and ``hub_env``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dobby.replay import install_fake_agents
from tests.fixtures.app import AppHub, running_app
from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.slurm import SlurmCluster, SlurmError
from tests.fixtures.sshd import SshdCluster, SshHost

SLURM_LOCK_WAIT = 1800.0  # seconds a Slurm test module waits for another run's cluster


@pytest.fixture(scope="session", autouse=True)
def private_tmux() -> Iterator[None]:
    """Give the run's tasks on this machine a tmux server of their own, ended after the run.

    A launch keeps its tmux server up between tasks (exit-empty off): on the user's own socket
    the run would leave one behind (and could disturb a server the user works in).
    """
    sockets = tempfile.mkdtemp(prefix="tmx", dir="/tmp")  # short: a socket path has 108 bytes
    saved = {name: os.environ.pop(name, None) for name in ("TMUX_TMPDIR", "TMUX", "TMUX_PANE")}
    os.environ["TMUX_TMPDIR"] = sockets
    try:
        yield
    finally:
        subprocess.run(["tmux", "kill-server"], capture_output=True, check=False)
        os.environ.pop("TMUX_TMPDIR", None)
        os.environ.update({name: value for name, value in saved.items() if value is not None})
        shutil.rmtree(sockets, ignore_errors=True)


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


@pytest.fixture
def h3(ssh_hosts: list[SshHost]) -> SshHost:
    """Return the third host (the one most tests with one remote host use)."""
    return ssh_hosts[2]


@pytest.fixture
def local_entry(tmp_path: Path, fake_bin: Path) -> dict[str, Any]:
    """Return the inventory entry of this machine as host ``local``, running the fake agents."""
    return {
        "name": "local",
        "connection": "local",
        "workdir": str(tmp_path / "localwork"),
        "labels": ["hub"],
        "env": {"PATH": f"{fake_bin}:$PATH"},
    }


@pytest.fixture
def hub_hosts(local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the inventory of ``hub`` and ``app_hub`` (default: ``local`` alone)."""
    return [local_entry]


@pytest.fixture
def hub_env() -> dict[str, str]:
    """Return extra environment for the ``hub`` process (e.g. ``DOBBY_*`` settings)."""
    return {}


@pytest.fixture
def hub(
    tmp_path: Path, hub_hosts: list[dict[str, Any]], hub_env: dict[str, str]
) -> Iterator[HubProcess]:
    """Run a hub process (``python -m dobby start``) on ``hub_hosts``; stop it after the test."""
    inventory = write_inventory(tmp_path / "inventory.yaml", hub_hosts)
    with HubProcess(home=tmp_path / "home", inventory=inventory, extra_env=hub_env) as proc:
        yield proc


@pytest.fixture
async def app_hub(tmp_path: Path, hub_hosts: list[dict[str, Any]]) -> AsyncIterator[AppHub]:
    """Run the hub's app in the test's event loop on ``hub_hosts``; stop it after the test."""
    inventory = write_inventory(tmp_path / "inventory.yaml", hub_hosts)
    async with running_app(home=tmp_path / "home", inventory=inventory) as app:
        yield app


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """Run the one-node Slurm cluster (tests/fixtures/slurm.py) for one test module.

    Per module, since it starts in ~0.3 s: the machine-wide lock is held only while Slurm tests
    run, and a session that finds it taken (another test run on this machine) waits its turn.
    """
    deadline = time.monotonic() + SLURM_LOCK_WAIT
    while True:
        try:
            cluster = SlurmCluster()
        except SlurmError as exc:
            if "another SlurmCluster is running" in str(exc) and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            problem = str(exc)  # failed outside the except block: no chained traceback
            break
        with cluster:
            yield cluster
        return
    pytest.fail(f"cannot start the test Slurm cluster: {problem}", pytrace=False)
