"""Placement by the backends each host's probe detected, and the API status of a failed run
shown everywhere, on real sshd hosts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process and agents on sshd hosts


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    h1, h2 = ssh_hosts[:2]
    # h1 lists claude in its backends, but no claude is on its PATH (`claude --version` empty).
    bare = h1.inventory_entry(env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    return [bare, h2.inventory_entry()]


def add(hub: HubProcess, prompt: str, *args: str) -> str:
    done = hub.cli("add", prompt, *args, "--json", check=True)
    return str(json.loads(done.stdout)["id"])


def probed(hub: HubProcess) -> dict[str, Any]:
    client = hub.client()

    def both() -> dict[str, Any] | None:
        hosts = {h["name"]: h for h in client.hosts()["hosts"]}
        ready = all(
            h.get("reachable") and h.get("versions", {}).get("tmux") for h in hosts.values()
        )
        return hosts if ready else None

    return wait_until(both, timeout=60, what="both hosts probed")


def test_agent_tasks_go_only_to_hosts_where_their_cli_was_detected(hub: HubProcess) -> None:
    # Submitted at once, maybe before the first probe answered: they wait for it, never guess.
    ids = [add(hub, f"task {n}", "--label", "test") for n in range(3)]
    for task_id in ids:
        task = hub.wait_status(task_id)
        assert (task["status"], task["host"]) == ("completed", "h2"), task
    hosts = probed(hub)
    assert "claude" not in hosts["h1"]["versions"] and hosts["h2"]["versions"]["claude"]
    refused = hub.cli("add", "go", "--host", "h1")
    assert refused.returncode == 1
    assert "no host has claude installed: `claude --version` printed nothing on h1" in (
        refused.stderr
    )
    shell = hub.wait_status(add(hub, "echo fine", "--backend", "shell", "--host", "h1"))
    assert (shell["status"], shell["host"]) == ("completed", "h1")  # shell needs only bash


def test_the_api_error_status_is_shown_by_results_show_and_logs(hub: HubProcess) -> None:
    task_id = add(hub, "go [scenario:api401]", "--host", "h2")
    task = hub.wait_status(task_id)
    assert (task["status"], task["api_error_status"]) == ("failed", 401), task
    assert "api status: 401" in hub.cli("results", task_id, check=True).stdout
    assert "! API error status 401" in hub.cli("show", task_id, check=True).stdout
    logs = hub.cli("logs", task_id, "-f")  # exit status 1: the task failed
    assert logs.returncode == 1 and " · API 401 · " in logs.stdout
