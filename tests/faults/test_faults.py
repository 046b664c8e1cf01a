"""The fault suite, short form: a real hub process and real sshd hosts under faults.

Each campaign (tests/faults/campaign.py) counts lost tasks, tasks launched twice, truncated
logs and tasks marked failed that ran to success; the goal for each is 0. bench/faults.py runs
the same campaigns long (200 tasks, many faults) and prints the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.campaign import (
    Figures,
    count,
    disk_full_campaign,
    hub_kill_campaign,
    kill_tmux_server,
    ssh_fault_campaign,
    submit,
)
from tests.fixtures.disk import tmpfs
from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.sshd import SshHost

pytestmark = pytest.mark.slow  # hub processes killed with -9, sshd hosts cut, minutes at most


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [host.inventory_entry() for host in ssh_hosts[:2]]


def no_broken_promise(figures: Figures) -> None:
    assert figures.bad() == 0, figures.line() + "\n" + "\n".join(figures.evidence)


def test_hub_killed_at_random_points_of_a_run(hub: HubProcess, ssh_hosts: list[SshHost]) -> None:
    figures = hub_kill_campaign(hub, ssh_hosts[:2], tasks=12, kills=4, seed=13)
    no_broken_promise(figures)
    assert figures.acknowledged >= 8 and figures.faults == 4, figures.line()
    assert figures.completed == figures.acknowledged, figures.evidence


def test_sshd_children_killed_and_sshd_down_mid_run(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    figures = ssh_fault_campaign(hub, ssh_hosts[:2], tasks=8, rounds=4, seed=13)
    no_broken_promise(figures)
    assert figures.completed == figures.acknowledged == 8, figures.evidence


def test_tmux_server_killed_ends_its_tasks_as_failed(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    figures = Figures()
    ids = [
        task_id
        for n in range(3)
        if (task_id := submit(hub, f"[scenario:hang] waits {n}", figures, host="h1"))
    ]
    for task_id in ids:
        hub.wait_status(task_id, ("running",))
    kill_tmux_server(ssh_hosts[0])
    count(hub, ssh_hosts[:2], ids, figures, timeout=120, may_fail=lambda task: True)
    no_broken_promise(figures)
    assert figures.failed == 3, figures.line()
    reasons = {hub.client().task(task_id)["reason"] for task_id in ids}
    assert reasons == {"host_lost"}, reasons


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs for the hub's home."""
    with tmpfs("2m") as mount:
        yield mount


def test_hub_disk_full_while_tasks_run_and_clients_submit(
    tmp_path: Path, ssh_hosts: list[SshHost], small_disk: Path
) -> None:
    home = small_disk / "home"  # the database and every task's log copy
    home.mkdir()
    (home / "dobby.yaml").write_text("write_timeout: 2\n")
    inventory = write_inventory(
        tmp_path / "inventory.yaml", [h.inventory_entry() for h in ssh_hosts[:2]]
    )
    hub = HubProcess(home=home, inventory=inventory)
    hub.log_path = tmp_path / "hub.log"  # not on the small disk
    with hub:
        figures = disk_full_campaign(
            hub, ssh_hosts[:2], small_disk, tasks=4, posts=3, write_timeout=2
        )
        no_broken_promise(figures)
        assert figures.refused >= 1, figures.line()  # the disk was full for the submits
        assert figures.completed == figures.acknowledged == 7, figures.line()
        assert "No space left on device" in hub.log()
