"""A hub out of file descriptors waits for some to be free, and loses nothing meanwhile
(dobby.core.descriptors): real hub process, real sshd host, the hub's limit lowered with
prlimit(2) while a task runs."""

from __future__ import annotations

import resource
import threading
from pathlib import Path
from typing import Any

import pytest

from dobby.client.http import HubClient
from tests.fixtures.hub import HubProcess
from tests.fixtures.procs import out_of_descriptors
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process and an sshd host

LINES = 40


@pytest.fixture
def hub_hosts(h3: SshHost) -> list[dict[str, Any]]:
    return [h3.inventory_entry()]


def test_a_hub_out_of_descriptors_waits_and_loses_nothing(hub: HubProcess, h3: SshHost) -> None:
    assert hub.proc is not None
    pid = hub.proc.pid
    client = hub.client()
    go = h3.home / "go"
    go.unlink(missing_ok=True)  # the hosts' homes outlive a test
    # It prints only once told to: its output comes while the hub cannot open its copy.
    prompt = (
        f"until [ -e {go} ]; do sleep 0.05; done; "
        f"for i in $(seq 1 {LINES}); do printf 'line %d %0200d\\n' $i $i; done"
    )
    task = client.add_task(prompt=prompt, backend="shell")
    hub.wait_status(task["id"], ("running",))
    answers: list[dict[str, Any]] = []
    with out_of_descriptors(pid):
        go.write_text("")
        out = h3.home / f".dobby/tasks/{task['id']}"
        wait_until(lambda: (out / "exit").exists(), what="the task's run to end on its host")
        # A new client's connection cannot be accepted now: it waits, it does not fail.
        asking = threading.Thread(target=lambda: answers.append(HubClient(url=hub.url).health()))
        asking.start()
        wait_until(lambda: "out of file descriptors" in hub.log(), what="the hub to say so")
    asking.join(30)
    assert answers and answers[0]["pid"] == pid  # answered once descriptors were free
    wait_until(lambda: "the hub accepts connections again" in hub.log(), what="the hub to say so")
    go.unlink()
    done = hub.wait_status(task["id"])
    assert done["status"] == "completed", done
    original = (out / "out.jsonl").read_bytes()
    assert original.count(b"\n") == LINES
    assert (hub.home / "results" / task["id"] / "out.jsonl").read_bytes() == original
    log = hub.log()
    # The accept loop waited, once said, instead of failing for each waiting client in a loop;
    # the task's follower could not open its copy, and waited too, in one line.
    assert log.count("out of file descriptors") == 1, hub.log_tail()
    assert f"following {task['id']}: [Errno 24]" in log, hub.log_tail()
    assert "Traceback" not in log and "Exception in callback" not in log, hub.log_tail()
    assert log.count("inventory check failed") <= 1, hub.log_tail()


def test_the_hub_raises_its_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The hub starts with what most systems give a process (1,024 soft), and takes the rest.
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        hub = HubProcess(home=tmp_path / "home", inventory=None).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert hub.proc is not None
        assert resource.prlimit(hub.proc.pid, resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        hub.stop()
