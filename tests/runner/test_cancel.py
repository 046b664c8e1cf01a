"""Cancel keeps the work (issue 12.2): the agent is stopped, then collected like any ending.

A cancelled task keeps its session id, tokens and cost so far, and its partial work as the
branch ``dobby/<id>`` in the project; ``dobby add --resume`` continues the same session in
the same worktree. Fake agents replay genuine transcripts and stall mid-stream.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost, descendants, signal_all, user_processes
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def hub_hosts(h3: SshHost) -> list[dict[str, Any]]:
    return [h3.inventory_entry()]


def project(hub: HubProcess, tmp_path: Path) -> Path:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    return path


def add(hub: HubProcess, *args: str) -> str:
    return json.loads(hub.cli("add", *args, "--json", check=True).stdout)["id"]


def task_processes(host: SshHost, task_id: str) -> list[int]:
    """Return the host user's live processes that belong to the task (by their environment)."""
    found = []
    for pid, _ in user_processes(host.user):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"DOBBY_TASK_ID={task_id}".encode() in env:
            found.append(pid)
    return found


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("backend", "model", "first_line"),
    [("claude", "claude-opus-4-8", '"init"'), ("codex", "gpt-5.5", "thread.started")],
)
def test_cancel_keeps_session_tokens_cost_and_partial_work_then_resume_continues(
    hub: HubProcess, h3: SshHost, tmp_path: Path, backend: str, model: str, first_line: str
) -> None:
    repo = project(hub, tmp_path)
    wrote = "hello.txt"  # what both transcripts write before they stall
    tid = add(
        hub, "[scenario:stall] make hello.txt", "--backend", backend, "--model", model,
        "--project", "app",
    )  # fmt: skip
    client = hub.client()
    # Mid-stream: the agent wrote its file and now waits on a model that never answers.
    wait_until(
        lambda: (h3.home / f".dobby/worktrees/{tid}/{wrote}").exists(), what="the agent's file"
    )
    wait_until(lambda: first_line in client.logs(tid)["text"], what="the stream's first line")
    out = hub.cli("cancel", tid, check=True)
    assert "cancelled" in out.stdout, out.stdout
    task = wait_until(
        lambda: (t := client.task(tid))["branch"] and t, what="the cancelled task's work"
    )
    assert task["status"] == "cancelled" and task["reason"] is None
    assert task["session_id"]
    assert task["session_id"] in client.logs(tid)["text"]  # the one the stream announced
    tokens = task["tokens"]
    assert tokens["input"] + tokens["output"] > 0, tokens
    assert task["cost_usd"] is not None and task["cost_usd"] > 0, json.dumps(task)
    assert task["branch"] == f"dobby/{tid}"
    assert wrote in git(repo, "show", "--name-only", "--format=", task["branch"])
    assert task["diff_stat"]["files_changed"] >= 1
    # The agent is gone: nothing of the task runs on the host any more.
    wait_until(lambda: not task_processes(h3, tid), what="every process of the task to end")

    follow = add(hub, "go on", "--resume", tid)
    done = hub.wait_status(follow)
    assert done["status"] == "completed", done
    assert done["session_id"] == task["session_id"]
    seen = json.loads((h3.home / f".dobby/tasks/{follow}/fake-agent.json").read_text())
    assert seen["resume"] == task["session_id"]
    assert seen["cwd"] == str(h3.home / f".dobby/worktrees/{tid}")  # the same worktree


def test_cancel_answers_while_the_host_is_frozen_and_the_stop_follows(
    hub: HubProcess, h3: SshHost
) -> None:
    task_id = add(hub, "sleep 600", "--backend", "shell")
    hub.wait_status(task_id, ("running",))
    wait_until(lambda: task_processes(h3, task_id), what="the agent to run")
    assert h3.pid is not None
    frozen = descendants(h3.pid)  # the sshd serving the hub's connection: it answers nothing
    answer: dict[str, Any] = {}
    # (one that ended since it was listed needs no freezing: a launch's short-lived helpers)
    signal_all(frozen, signal.SIGSTOP)
    try:
        caller = threading.Thread(target=lambda: answer.update(hub.client().cancel(task_id)))
        caller.start()
        # Answered while the host is still frozen, well before the stop's own timeout (10 s).
        caller.join(timeout=8)
        assert answer.get("status") == "cancelled", answer
    finally:
        signal_all(frozen, signal.SIGCONT)
    # The stop reaches the host once it answers again; the run is collected as any ending.
    task = wait_until(
        lambda: (t := hub.client().task(task_id))["exit_code"] is not None and t,
        what="the stopped run to be collected",
        timeout=60,
    )
    assert task["status"] == "cancelled"
    wait_until(lambda: not task_processes(h3, task_id), what="the agent to be gone")
