"""A task whose launch may have started is never launched a second time (issue 13.3).

The launches are held on the host at a chosen point by wrappers placed in the test user's
PATH (through ~/.bashrc, which bash reads for sshd commands): the hub is killed there, the
host is stopped, and the hub comes back with other hosts free to take the tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dobby.runner.runner import LAUNCHES_PER_HOST
from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.sshd import SshHost

pytestmark = pytest.mark.slow  # real sshd hosts, hub processes killed with -9

# Holds `tmux new-session` after it created the session (run.sh runs, the launch never answers).
TMUX_WRAPPER = """#!/bin/bash
/usr/bin/tmux "$@"; rc=$?
case " $* " in *" new-session "*) while [ -e "$HOME/.hold-launch" ]; do sleep 0.05; done;; esac
exit $rc
"""
# Holds a launch at its `mkdir` of the task's directories, the last process it starts before
# it takes its claim (a builtin), until released: the claim is not taken yet.
MKDIR_WRAPPER = """#!/bin/bash
case "$*" in
  *"/.dobby/tasks/"*/artifacts*)
    if rm "$HOME/.hold-claim" 2>/dev/null; then
      touch "$HOME/.claim-held"
      while [ ! -e "$HOME/.release-claim" ]; do sleep 0.05; done
    fi;;
esac
exec /bin/mkdir "$@"
"""


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


def as_user(host: SshHost, path: Path) -> None:
    st = os.stat(host.home)
    os.chown(path, st.st_uid, st.st_gid)


@pytest.fixture
def wrapped(ssh_hosts: list[SshHost]) -> Iterator[SshHost]:
    """Put tmux and mkdir wrappers first in h3's PATH for sshd commands; undo afterwards."""
    h3 = ssh_hosts[2]
    bashrc = h3.home / ".bashrc"
    original = bashrc.read_bytes() if bashrc.exists() else None
    bin_dir = h3.home / ".hold-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("tmux", TMUX_WRAPPER), ("mkdir", MKDIR_WRAPPER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    as_user(h3, bin_dir)
    bashrc.write_bytes(f'export PATH="{bin_dir}:$PATH"\n'.encode() + (original or b""))
    try:
        yield h3
    finally:
        if original is None:
            bashrc.unlink(missing_ok=True)
        else:
            bashrc.write_bytes(original)
        shutil.rmtree(bin_dir, ignore_errors=True)
        for name in (".hold-launch", ".hold-claim", ".claim-held", ".release-claim"):
            (h3.home / name).unlink(missing_ok=True)


@pytest.fixture
def runs_dir() -> Iterator[Path]:
    """A directory every test user can append to: one line per run of each task."""
    path = Path(tempfile.mkdtemp(prefix="dobby-once-"))
    path.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO | stat.S_ISVTX)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def counting_prompt(runs: Path, seconds: float) -> str:
    return f'echo "$(hostname) $$" >> {runs}/"$DOBBY_TASK_ID"; sleep {seconds}; echo done'


def run_count(runs: Path, task_id: str) -> int:
    path = runs / task_id
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_launch_cut_by_hub_kill_waits_for_its_stopped_host_and_runs_once(
    tmp_path: Path, ssh_hosts: list[SshHost], wrapped: SshHost, runs_dir: Path
) -> None:
    h1, h2, h3 = ssh_hosts
    inventory = tmp_path / "inventory.yaml"
    write_inventory(inventory, [h3.inventory_entry(max_agents=8)])
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    try:
        (h3.home / ".hold-launch").touch()
        client = hub.client()
        ids = [  # as many as the host runs launches at once: each of them held inside tmux
            client.add_task(prompt=counting_prompt(runs_dir, 2), backend="shell")["id"]
            for _ in range(LAUNCHES_PER_HOST)
        ]
        # Each launch started its session (run.sh wrote its pid) and never answered.
        for tid in ids:
            wait_until(lambda t=tid: (h3.home / f".dobby/tasks/{t}/pid").exists(), f"pid of {tid}")
        assert {client.task(t)["waiting_on"] for t in ids} == {"dispatch"}
        hub.kill()
        h3.stop()
        (h3.home / ".hold-launch").unlink()
        write_inventory(inventory, [h.inventory_entry(max_agents=8) for h in (h1, h2, h3)])
        hub.start()
        for tid in ids:
            wait_until(
                lambda t=tid: client.task(t)["waiting_on"] == "host", f"{tid} waiting for h3"
            )
        task = client.task(ids[0])
        assert task["status"] == "pending" and task["host"] == "h3"
        assert "h3" in task["wait_reason"]
        # The scheduler is live (another task runs on h1) and still leaves them alone.
        other = client.add_task(prompt="true", backend="shell", host="h1")["id"]
        assert hub.wait_status(other)["status"] == "completed"
        assert {client.task(t)["status"] for t in ids} == {"pending"}
        h3.start()
        for tid in ids:
            done = hub.wait_status(tid, timeout=90)
            assert (done["status"], done["host"]) == ("completed", "h3"), json.dumps(done)
            assert done["wait_reason"] is None
            assert run_count(runs_dir, tid) == 1
            assert client.logs(tid)["text"] == "done\n"
        for host in (h1, h2):
            assert not any((host.home / f".dobby/tasks/{t}").exists() for t in ids)
    finally:
        hub.stop()


def test_launch_that_never_began_is_fenced_and_placed_again_once(
    tmp_path: Path, ssh_hosts: list[SshHost], wrapped: SshHost, runs_dir: Path
) -> None:
    h3 = wrapped
    inventory = write_inventory(tmp_path / "inventory.yaml", [h3.inventory_entry()])
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    try:
        (h3.home / ".hold-claim").touch()
        client = hub.client()
        tid = client.add_task(prompt=counting_prompt(runs_dir, 0), backend="shell")["id"]
        wait_until((h3.home / ".claim-held").exists, "the launch to reach its claim")
        first_launch = client.task(tid)["launch_id"]
        hub.kill()  # the held launch lives on, unclaimed, as a launch cut off by sshd may
        hub.start()
        done = hub.wait_status(tid)
        assert done["status"] == "completed"
        assert done["launch_id"] != first_launch
        (h3.home / ".release-claim").touch()  # the old launch finds its claim taken
        wait_until(lambda: not _held(h3), "the old launch to end")
        assert (h3.home / f".dobby/tasks/{tid}/claim.{first_launch}").is_file()
        assert run_count(runs_dir, tid) == 1
        assert "tmux" not in ssh(h3, f"tmux has-session -t dobby-{tid} 2>&1 && echo tmux; true")
    finally:
        hub.stop()


def _held(host: SshHost) -> bool:
    """Tell whether a held mkdir wrapper still runs on the host."""
    out = subprocess.run(["pgrep", "-u", host.user, "-f", "hold-bin/mkdir"], capture_output=True)
    return out.returncode == 0


def test_launch_cut_by_hub_kill_whose_session_then_died_is_host_lost(
    tmp_path: Path, ssh_hosts: list[SshHost], wrapped: SshHost, runs_dir: Path
) -> None:
    h1, _, h3 = ssh_hosts
    inventory = tmp_path / "inventory.yaml"
    write_inventory(inventory, [h3.inventory_entry()])
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    try:
        (h3.home / ".hold-launch").touch()
        client = hub.client()
        tid = client.add_task(prompt=counting_prompt(runs_dir, 600), backend="shell")["id"]
        pid_file = h3.home / f".dobby/tasks/{tid}/pid"
        wait_until(pid_file.exists, "run.sh's pid")
        hub.kill()
        (h3.home / ".hold-launch").unlink()
        sid = pid_file.read_text().strip()
        subprocess.run(["pkill", "-KILL", "-s", sid], check=False)  # its session ends with it
        write_inventory(inventory, [h.inventory_entry() for h in (h1, h3)])
        hub.start()
        task = hub.wait_status(tid)
        assert (task["status"], task["reason"], task["host"]) == ("failed", "host_lost", "h3")
        assert run_count(runs_dir, tid) == 1
        assert not (h1.home / f".dobby/tasks/{tid}").exists()
    finally:
        hub.stop()


def test_launch_whose_answer_is_lost_waits_for_the_host_and_is_adopted(
    tmp_path: Path, ssh_hosts: list[SshHost], wrapped: SshHost, runs_dir: Path
) -> None:
    h1, _, h3 = ssh_hosts
    inventory = tmp_path / "inventory.yaml"
    write_inventory(inventory, [h3.inventory_entry(), h1.inventory_entry(labels=["spare"])])
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    try:
        (h3.home / ".hold-launch").touch()
        client = hub.client()
        tid = client.add_task(prompt=counting_prompt(runs_dir, 1), backend="shell", host="h3")["id"]
        wait_until((h3.home / f".dobby/tasks/{tid}/pid").exists, "run.sh's pid")
        h3.stop()  # the connection drops while the launch command runs: its answer is lost
        (h3.home / ".hold-launch").unlink()
        wait_until(lambda: client.task(tid)["waiting_on"] == "host", "the task to wait for h3")
        h3.start()
        done = hub.wait_status(tid)
        assert (done["status"], done["host"]) == ("completed", "h3")
        assert run_count(runs_dir, tid) == 1
    finally:
        hub.stop()
