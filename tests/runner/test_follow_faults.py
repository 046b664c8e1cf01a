"""A follower never gives up on a task that may be alive (issue 13.4).

Each test injects one fault while a task prints lines (half of each line written, then the
rest: reads often end mid-line) and checks that the task still ends ``completed`` with the
hub's copy of its output byte-identical to the host's ``out.jsonl``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.disk import fill_disk, tmpfs
from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.sshd import SshHost, descendants, signal_all

pytestmark = pytest.mark.slow  # real sshd hosts and a hub process, faults injected mid-run

# ~8 s of output, each line written in two parts.
PRINTER = (
    "for i in $(seq 1 {lines}); do printf 'line %d part' $i; sleep 0.01; "
    "printf ' and the rest %0300d\\n' $i; sleep {pause}; done"
)


def printer(lines: int = 200, pause: float = 0.03) -> str:
    return PRINTER.format(lines=lines, pause=pause)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def host_copy(host: SshHost, task_id: str) -> bytes:
    return (host.home / f".dobby/tasks/{task_id}/out.jsonl").read_bytes()


def hub_copy(results: Path, task_id: str) -> bytes:
    return (results / task_id / "out.jsonl").read_bytes()


def assert_completed_and_identical(
    hub: HubProcess, host: SshHost, results: Path, task_id: str, timeout: float = 120
) -> None:
    task = hub.wait_status(task_id, timeout=timeout)
    assert task["status"] == "completed", task
    original = host_copy(host, task_id)
    assert original.count(b"\n") == 200
    assert hub_copy(results, task_id) == original  # cmp: byte for byte


def started_printing(results: Path, task_id: str) -> Callable[[], bool]:
    path = results / task_id / "out.jsonl"
    return lambda: path.exists() and path.stat().st_size > 2000


@pytest.fixture
def hub_hosts(h3: SshHost) -> list[dict[str, Any]]:
    return [h3.inventory_entry()]


def session_processes(host: SshHost) -> list[int]:
    """Return the sshd processes serving open connections to the host (not the listener)."""
    assert host.pid is not None
    return descendants(host.pid)


def test_sshd_child_serving_the_connection_killed_mid_run(hub: HubProcess, h3: SshHost) -> None:
    results = hub.home / "results"
    tid = hub.client().add_task(prompt=printer(), backend="shell")["id"]
    wait_until(started_printing(results, tid), "output to flow")
    for _ in range(3):  # three times, a second apart
        # Killing a connection's sshd ends its children too, and a short call (a probe) may
        # end by itself between the listing and the kill: gone is what we want.
        signal_all(session_processes(h3), signal.SIGKILL)
        time.sleep(1)
    assert_completed_and_identical(hub, h3, results, tid)


def test_sshd_down_20s_with_the_connection_half_dead(hub: HubProcess, h3: SshHost) -> None:
    results = hub.home / "results"
    tid = hub.client().add_task(prompt=printer(), backend="shell")["id"]
    wait_until(started_printing(results, tid), "output to flow")
    serving = session_processes(h3)
    # The connection stays open and answers nothing (a probe's short call ended: gone is fine).
    signal_all(serving, signal.SIGSTOP)
    h3.stop(drop_connections=False)  # and no new connection is accepted
    time.sleep(20)  # the task ends meanwhile, with nobody watching
    signal_all(serving, signal.SIGKILL)
    h3.start()
    assert_completed_and_identical(hub, h3, results, tid)


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    with tmpfs("2m") as mount:
        yield mount


def test_hub_disk_full_mid_run(tmp_path: Path, h3: SshHost, small_tmpfs: Path) -> None:
    results = small_tmpfs / "results"
    home = tmp_path / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text(f"results_dir: {results}\n")
    inventory = write_inventory(tmp_path / "inventory.yaml", [h3.inventory_entry()])
    hub = HubProcess(home=home, inventory=inventory).start()
    try:
        tid = hub.client().add_task(prompt=printer(), backend="shell")["id"]
        wait_until(started_printing(results, tid), "output to flow")
        filler = fill_disk(small_tmpfs)
        time.sleep(5)  # the task goes on printing; the hub can't write a byte of it
        held = hub_copy(results, tid)
        assert held.endswith(b"\n")  # never a torn line, even while the disk is full
        filler.unlink()
        assert_completed_and_identical(hub, h3, results, tid)
        assert "No space left on device" in hub.log()
    finally:
        hub.stop()


def test_a_result_the_hub_cannot_write_ends_the_task_failed(hub: HubProcess, h3: SshHost) -> None:
    """Not a fault that passes (the host is fine, the disk has room): the follower used to
    try again for ever and the task stayed ``running``."""
    results = hub.home / "results"
    go = h3.home / "go"
    prompt = "until [ -e ~/go ]; do sleep 0.05; done; echo out; echo 'boom' >&2; exit 3"
    tid = hub.client().add_task(prompt=prompt, backend="shell")["id"]
    hub.wait_status(tid, ("running",))
    (results / tid / "err.log").mkdir(parents=True)  # where its stderr goes: a directory
    go.touch()
    try:
        task = hub.wait_status(tid, timeout=90)
    finally:
        go.unlink()
    assert (task["status"], task["reason"], task["exit_code"]) == ("failed", "collect_error", 3)
    assert task["error"].startswith("its run ended with exit code 3: the hub could not collect")
    assert f"{tid}/err.log" in task["error"], task["error"]
    assert hub_copy(results, tid) == host_copy(h3, tid) == b"out\n"
    assert "giving up on " + tid in hub.log()
    # The hub goes on: the next task runs and is collected.
    other = hub.client().add_task(prompt="echo fine", backend="shell")["id"]
    assert hub.wait_status(other)["status"] == "completed"


def test_output_the_hub_cannot_copy_stops_the_task_and_fails_it(
    hub: HubProcess, h3: SshHost
) -> None:
    results = hub.home / "results"
    go = h3.home / "go"
    prompt = "until [ -e ~/go ]; do sleep 0.05; done; echo out; exec sleep 612"
    tid = hub.client().add_task(prompt=prompt, backend="shell")["id"]
    hub.wait_status(tid, ("running",))
    results.mkdir(parents=True, exist_ok=True)
    (results / tid).write_text("")  # where its copy goes: a file, not a directory
    go.touch()
    try:
        task = hub.wait_status(tid, timeout=90)
    finally:
        go.unlink()
    assert (task["status"], task["reason"]) == ("failed", "collect_error")
    assert task["error"].startswith("it was stopped: the hub could not follow its output")
    wait_until(lambda: not _running(h3, "sleep 612"), "the stopped task's process to end")
    assert (results / tid).read_text() == ""  # nothing was made of it


def _running(host: SshHost, command: str) -> bool:
    found = subprocess.run(["pgrep", "-u", host.user, "-f", command], capture_output=True)
    return found.returncode == 0


def test_inventory_emptied_for_1_5s_then_restored(hub: HubProcess, h3: SshHost) -> None:
    results = hub.home / "results"
    assert hub.inventory is not None
    original = hub.inventory.read_bytes()
    tid = hub.client().add_task(prompt=printer(), backend="shell")["id"]
    wait_until(started_printing(results, tid), "output to flow")
    hub.inventory.write_bytes(b"")  # an editor saving: truncate, then write
    # An inventory that defines no hosts is an error: the hub keeps the hosts it had.
    wait_until(lambda: _inventory_error(hub), "the hub to see the empty inventory")
    time.sleep(1.5)
    assert not _removed(hub, "h3")
    hub.inventory.write_bytes(original)
    wait_until(lambda: not _inventory_error(hub), "the hub to read the inventory again")
    assert_completed_and_identical(hub, h3, results, tid)


def _inventory_error(hub: HubProcess) -> str | None:
    return hub.client().hosts()["inventory"]["error"]  # type: ignore[no-any-return]


def _removed(hub: HubProcess, name: str) -> bool:
    hosts = {h["name"]: h for h in hub.client().hosts()["hosts"]}
    return name not in hosts or bool(hosts[name].get("removed"))


def test_host_removed_with_a_task_running(
    tmp_path: Path, ssh_hosts: list[SshHost], h3: SshHost
) -> None:
    h1 = ssh_hosts[0]
    inventory = write_inventory(
        tmp_path / "inventory.yaml", [h1.inventory_entry(), h3.inventory_entry()]
    )
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    try:
        results = hub.home / "results"
        client = hub.client()
        tid = client.add_task(prompt=printer(), backend="shell", host="h3")["id"]
        wait_until(started_printing(results, tid), "output to flow")
        write_inventory(inventory, [h1.inventory_entry()])
        wait_until(lambda: _removed(hub, "h3"), "h3 to leave the inventory")
        h3_view = {h["name"]: h for h in client.hosts()["hosts"]}["h3"]
        assert h3_view["note"] == "removed, 1 task(s) still running"
        assert h3_view["running"] == [tid]
        # It takes no new task.
        with pytest.raises(Exception, match="h3"):
            client.add_task(prompt="true", backend="shell", host="h3")
        assert_completed_and_identical(hub, h3, results, tid)
        wait_until(
            lambda: "h3" not in {h["name"] for h in client.hosts()["hosts"]},
            "h3 to go once its task ended",
        )
    finally:
        hub.stop()
