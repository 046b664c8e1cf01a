"""`dobby remote`: an interactive session on a real sshd host, driven from a tmux terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import BIN
from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost
from tests.fixtures.terminal import Terminal

pytestmark = pytest.mark.slow  # a terminal, a hub process and an sshd host

STAND_IN = BIN / "interactive-agent"


@pytest.fixture
def agent_bin() -> Iterator[Path]:
    """Return a world-readable directory with interactive stand-ins named claude and codex."""
    root = Path(tempfile.mkdtemp(prefix="dobby-interactive-"))
    root.chmod(0o755)
    for name in ("claude", "codex"):
        shutil.copyfile(STAND_IN, root / name)
        (root / name).chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost], agent_bin: Path) -> list[dict[str, Any]]:
    env = {"PATH": f"{agent_bin}:/usr/local/bin:/usr/bin:/bin"}
    return [ssh_hosts[0].inventory_entry(env=env)]


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(host.ssh_argv(command), capture_output=True, text=True, timeout=30).stdout


def test_remote_session_attach_detach_reattach_and_exit(
    tmp_path: Path, hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    project = make_git_project(tmp_path / "app")
    hub.cli("register", str(project), "--name", "app", check=True)
    # The user's own claude config: pre-seeding adds keys, never changes these.
    config = h1.home / ".claude.json"
    config.write_text(json.dumps({"theme": "light", "numStartups": 3}))
    uid, gid = h1.home.stat().st_uid, h1.home.stat().st_gid
    os.chown(config, uid, gid)
    term = Terminal(
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "TERM": "xterm-256color",
            "DOBBY_URL": hub.url,
            "DOBBY_HOME": str(hub.home),
        },
        cwd=str(tmp_path),
    )
    try:
        term.send("python3 -m dobby remote h1 --project app --backend claude")
        term.wait_for("claude> ")
        term.send("hello dobby")
        term.wait_for("you said: hello dobby")
        sessions = hub.client().remote_sessions()["sessions"]
        assert len(sessions) == 1
        task = sessions[0]
        assert (task["kind"], task["status"], task["host"]) == ("interactive", "running", "h1")
        term.send("C-b", "d", enter=False)  # detach the remote tmux: ssh and dobby end
        screen = term.wait_for("[detached")
        assert f"dobby-{task['id']}" in screen.split("[detached")[1]
        alive = ssh(h1, f"tmux has-session -t dobby-{task['id']} && echo alive").strip()
        assert alive == "alive"
        seen = ssh(h1, f"cat ~/.dobby/tasks/{task['id']}/interactive.txt")
        worktree = f"{h1.home}/.dobby/worktrees/{task['id']}"
        assert f"cwd={worktree}" in seen and "--permission-mode acceptEdits" in seen
        assert ssh(h1, f"cat {worktree}/README.md") == "# app\n"  # the project, delivered
        seeded = json.loads(config.read_text())
        assert seeded["theme"] == "light" and seeded["numStartups"] == 3
        assert seeded["hasCompletedOnboarding"] is True
        assert seeded["projects"][worktree] == {"hasTrustDialogAccepted": True}

        listing = hub.cli("remote", "--list", check=True).stdout
        assert task["id"] in listing and f"dobby attach {task['id']}" in listing
        assert any(t["kind"] == "interactive" for t in hub.client().tasks()["tasks"])
        hub.kill()  # a hub restart leaves the session alone and keeps watching it
        hub.start()
        assert [t["id"] for t in hub.client().remote_sessions()["sessions"]] == [task["id"]]

        term.send(f"python3 -m dobby attach {task['id']}")
        term.wait_for(f"[dobby-{task['id'][:3]}")  # the remote tmux's status line is back
        term.send("still there?")
        term.wait_for("you said: still there?")  # the same agent process, still running
        term.send("!echo notes > NOTES.md")
        term.wait_for("ran: echo notes > NOTES.md")
        term.send("/exit")
        done = hub.wait_status(task["id"], timeout=60)
        assert (done["status"], done["exit_code"]) == ("completed", 0)
        # The session's work comes back like a task's: branch dobby/<id> in the project.
        assert done["branch"] == f"dobby/{task['id']}"
        assert [f["path"] for f in done["diff_stat"]["files"]] == ["NOTES.md"]
        shown = subprocess.run(
            ["git", "-C", str(project), "show", f"{done['branch']}:NOTES.md"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout == "notes\n"
        gone = ssh(h1, f"tmux has-session -t dobby-{task['id']} 2>/dev/null || echo gone")
        assert gone.strip() == "gone"
        assert hub.client().remote_sessions()["sessions"] == []
        retry = hub.cli("retry", task["id"])
        assert retry.returncode == 1 and "interactive session" in retry.stderr
    finally:
        term.close()


def test_remote_rejects_bad_requests_and_prints_attach_command(hub: HubProcess) -> None:
    res = hub.cli("remote", "nohost")
    assert res.returncode == 1 and "unknown host 'nohost'" in res.stderr
    res = hub.cli("remote", "h1", "--project", "nope")
    assert res.returncode == 1 and "unknown project 'nope'" in res.stderr
    res = hub.cli("remote", "h1", "--backend", "shell", "--no-attach", check=True)
    command = res.stdout.strip()
    assert command.startswith("ssh -t") and command.endswith(
        "'tmux attach -t dobby-" + command.split("dobby-")[-1]
    )
    task_id = command.split("dobby-")[-1].rstrip("'")
    assert hub.client().task(task_id)["status"] == "running"
    assert hub.cli("cancel", task_id, check=True).returncode == 0
    assert hub.client().task(task_id)["status"] == "cancelled"
