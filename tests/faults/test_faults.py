"""The fault suite, short form: a real hub process and real sshd hosts under faults.

Each campaign (tests/faults/campaign.py) counts lost tasks, tasks launched twice, truncated
logs and tasks marked failed that ran to success; the goal for each is 0. bench/faults.py runs
the same campaigns long (200 tasks, many faults) and prints the figures.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.campaign import (
    Figures,
    count,
    hub_kill_campaign,
    kill_tmux_server,
    ssh_fault_campaign,
    submit,
)
from tests.fixtures.hub import HubProcess
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
