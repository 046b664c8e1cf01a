"""The hub dies or loses a task's session: every task still ends in a true state."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process killed with -9 and restarted


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [ssh_hosts[2].inventory_entry()]


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


def add(hub: HubProcess, prompt: str, backend: str = "claude") -> str:
    res = hub.cli("add", prompt, "--backend", backend, "--host", "h3", "--json", check=True)
    return json.loads(res.stdout)["id"]


def wait_host_file(host: SshHost, task_id: str, name: str, timeout: float = 30) -> None:
    wait_until(
        lambda: ssh(host, f"test -e ~/.dobby/tasks/{task_id}/{name} && echo y || true").strip(),
        timeout=timeout,
        what=f"{name} of {task_id} to appear on {host.name}",
        interval=0.1,
    )


def test_task_that_finished_while_the_hub_was_down_is_collected(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h3 = ssh_hosts[2]
    task_id = add(hub, "[scenario:lines:10:100] work while nobody watches")
    hub.wait_status(task_id, ("running",))
    hub.kill()
    wait_host_file(h3, task_id, "exit")  # the agent finished with no hub around
    hub.start()
    task = hub.wait_status(task_id)
    assert task["status"] == "completed"
    assert task["summary"]
    log = hub.client().logs(task_id)["text"]
    assert log == ssh(h3, f"cat ~/.dobby/tasks/{task_id}/out.jsonl")


def test_task_whose_session_vanished_while_the_hub_was_down_is_host_lost(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h3 = ssh_hosts[2]
    task_id = add(hub, "[scenario:hang] stuck")
    hub.wait_status(task_id, ("running",))
    hub.kill()
    ssh(
        h3,
        f"pkill -KILL -s $(cat ~/.dobby/tasks/{task_id}/pid); tmux kill-session -t "
        f"dobby-{task_id} 2>/dev/null; true",
    )
    hub.start()
    task = hub.wait_status(task_id)
    assert (task["status"], task["reason"]) == ("failed", "host_lost")
    assert f"dobby-{task_id}" in task["error"]


def test_session_killed_under_a_running_task_fails_it(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h3 = ssh_hosts[2]
    task_id = add(hub, "sleep 600", backend="shell")
    hub.wait_status(task_id, ("running",))
    wait_host_file(h3, task_id, "pid")
    ssh(
        h3,
        f"tmux kill-session -t dobby-{task_id}; pkill -KILL -s "
        f"$(cat ~/.dobby/tasks/{task_id}/pid) 2>/dev/null; true",
    )
    task = hub.wait_status(task_id, timeout=60)
    assert (task["status"], task["reason"]) == ("failed", "host_lost")


def test_tasks_of_a_tmux_server_that_crashed_are_host_lost_and_say_why(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    """A tmux server that dies (tmux before 3.7 crashed so under control clients) ends every
    session on it: each task fails host_lost, and its error says the server is gone."""
    h3 = ssh_hosts[2]
    ids = [add(hub, "sleep 600", backend="shell") for _ in range(2)]
    for task_id in ids:
        hub.wait_status(task_id, ("running",))
        wait_host_file(h3, task_id, "pid")
    ssh(h3, "pkill -SEGV -u $(id -u) -x 'tmux: server'; true")  # its name (comm)
    for task_id in ids:
        task = hub.wait_status(task_id, timeout=60)
        assert (task["status"], task["reason"]) == ("failed", "host_lost")
        assert f"dobby-{task_id}" in task["error"] and "no tmux server runs there" in task["error"]


def test_other_tasks_survive_a_restart_untouched(hub: HubProcess) -> None:
    done = add(hub, "echo done", backend="shell")
    assert hub.wait_status(done)["status"] == "completed"
    before = hub.client().task(done)
    running = add(hub, "[scenario:lines:20:100] going")
    hub.wait_status(running, ("running",))
    hub.kill()
    hub.start()
    assert hub.wait_status(running)["status"] == "completed"
    assert hub.client().task(done) == before


def test_tasks_of_a_batch_the_hub_died_storing_are_cancelled_at_the_next_start(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    # A batch is stored after its tasks (dobby/scheduler/batches.py): a hub killed between
    # the two leaves tasks on disk, some launched, whose submit was never answered. The disk
    # here is what such a kill leaves: the batch's record deleted after its tasks ran.
    h3 = ssh_hosts[2]
    parked = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}
    client = hub.client()
    lost = client.add_batch(
        name="lost",
        tasks=[
            {"name": "runs", "prompt": "[scenario:hang] stuck", "backend": "claude", "host": "h3"},
            {"name": "waits", "prompt": "x", **parked},
        ],
    )
    kept = client.add_batch(name="kept", tasks=[{"name": "waits", "prompt": "y", **parked}])
    runs, waits = (t["id"] for t in lost["tasks"])
    hub.wait_status(runs, ("running",))
    hub.kill()
    db = sqlite3.connect(hub.home / "dobby.db")
    with db:
        db.execute("DELETE FROM docs WHERE kind = 'batches' AND key = ?", (lost["id"],))
    db.close()
    hub.start()
    for task_id in (runs, waits):
        task = hub.wait_status(task_id)
        assert task["status"] == "cancelled", task
        assert "its batch was never stored whole" in task["error"]
    wait_until(
        lambda: "gone" in ssh(h3, f"tmux has-session -t dobby-{runs} 2>/dev/null || echo gone"),
        timeout=30,
        what="the agent of the unacknowledged batch to be stopped",
    )
    assert hub.client().task(kept["tasks"][0]["id"])["status"] == "pending"
    assert hub.client().batch(kept["id"])["total"] == 1
