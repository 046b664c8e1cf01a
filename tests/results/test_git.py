"""Results end to end, git side: branches back to the hub, diff, merge, follow-ups, gc.

Real sshd hosts, tmux and git, a real hub process, the fake agents.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, make_git_project, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process and agents on sshd hosts, git both sides


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [h.inventory_entry() for h in ssh_hosts[:2]]


@pytest.fixture
def project(tmp_path: Path, hub: HubProcess) -> Path:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    return path


def add(hub: HubProcess, *args: str) -> str:
    return json.loads(hub.cli("add", *args, "--json", check=True).stdout)["id"]


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def test_a_projects_commit_ignore_keeps_its_patterns_out_of_the_branch(
    hub: HubProcess, project: Path
) -> None:
    hub.cli("projects", "set", "app", "commit_ignore=*.log,data/", check=True)
    task = hub.wait_status(
        add(
            hub,
            "echo k > keep.txt; echo l > run.log; mkdir -p data __pycache__; "
            "echo d > data/big.bin; echo c > __pycache__/m.pyc",
            "--project",
            "app",
            "--backend",
            "shell",
            "--host",
            "h1",
        )  # fmt: skip
    )
    assert task["status"] == "completed", task
    # the project's patterns and the built-in junk list both stay out
    assert {f["path"] for f in task["diff_stat"]["files"]} == {"keep.txt"}
    tree = git(project, "ls-tree", "-r", "--name-only", task["branch"]).split()
    assert tree == ["README.md", "app.py", "keep.txt"]


def test_parallel_tasks_come_back_as_branches_merge_and_conflict(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    base = git(project, "rev-parse", "HEAD").strip()
    # Two tasks on one project at once, each in its own worktree; neither commits.
    one = add(hub, "sleep 0.5; echo one > app.py; echo x > one.txt", "--project", "app",
              "--backend", "shell", "--host", "h1")  # fmt: skip
    two = add(hub, "echo two > app.py; mkdir -p d; echo y > 'd/two file.txt'", "--project",
              "app", "--backend", "shell", "--host", "h1")  # fmt: skip
    first, second = hub.wait_status(one), hub.wait_status(two)
    assert first["status"] == second["status"] == "completed"
    for task, files in ((first, {"app.py", "one.txt"}), (second, {"app.py", "d/two file.txt"})):
        assert task["branch"] == f"dobby/{task['id']}"
        assert task["base_commit"] == base and task["head_commit"] != base
        assert task["collect_error"] is None
        assert {f["path"] for f in task["diff_stat"]["files"]} == files
        # the branch is in the hub's repository, on top of base, with Dobby's commit
        assert git(project, "rev-parse", task["branch"]).strip() == task["head_commit"]
        assert git(project, "rev-parse", f"{task['branch']}^").strip() == base
        message = git(project, "log", "-1", "--format=%an <%ae>%n%B", task["branch"])
        assert message.startswith("Dobby <dobby@localhost>\ndobby: uncommitted work of task")
    stat = {f["path"]: f for f in second["diff_stat"]["files"]}
    assert stat["app.py"] == {"path": "app.py", "status": "M", "added": 1, "deleted": 1}
    assert stat["d/two file.txt"]["status"] == "A"
    assert (second["diff_stat"]["insertions"], second["diff_stat"]["deletions"]) == (2, 1)
    # the user's checkout was never touched
    assert git(project, "status", "--porcelain") == ""
    assert (project / "app.py").read_text() == "print('hi')\n"

    diff = hub.cli("diff", one, check=True).stdout
    assert "-print('hi')" in diff and "+one" in diff and "one.txt" in diff
    assert "2 files +2 -1" in hub.cli("diff", two, "--stat", check=True).stdout

    # dirty checkout: refused, nothing changes
    (project / "README.md").write_text("edited by the user\n")
    res = hub.cli("merge", one)
    assert res.returncode == 1 and "uncommitted changes" in res.stderr and "README.md" in res.stderr
    git(project, "checkout", "README.md")

    merged = json.loads(hub.cli("merge", one, "--json", check=True).stdout)
    assert merged["merged"] and merged["into"] == "main" and not merged["already"]
    assert (project / "app.py").read_text() == "one\n"
    assert git(project, "rev-parse", "HEAD^2").strip() == first["head_commit"]
    assert hub.client().result(one)["merge_commit"] == merged["commit"]
    again = json.loads(hub.cli("merge", one, "--json", check=True).stdout)
    assert again["already"] is True

    res = hub.cli("merge", two)
    assert res.returncode == 1
    assert "conflicts in app.py" in res.stderr
    # the conflicting merge left nothing behind
    assert git(project, "status", "--porcelain") == ""
    assert git(project, "rev-parse", "HEAD").strip() == merged["commit"]

    # the agent's own commits come back too, and a task without changes has no branch
    committed = hub.wait_status(add(
        hub, "echo c > c.txt && git add c.txt && git -c user.name=A -c user.email=a@b "
        "commit -qm 'agent commit' && echo left > left.txt",
        "--project", "app", "--backend", "shell", "--host", "h2",
    ))  # fmt: skip
    log = git(project, "log", "--format=%s", committed["branch"]).split("\n")
    assert log[:2] == [f"dobby: uncommitted work of task {committed['id']}", "agent commit"]
    nothing = hub.wait_status(add(hub, "git status", "--project", "app", "--backend", "shell"))
    assert nothing["branch"] is None and nothing["head_commit"] == nothing["base_commit"]
    assert nothing["diff_stat"] is None


def test_claude_work_comes_back_and_results_list(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    task = hub.wait_status(add(hub, "create hello", "--project", "app", "--host", "h2"))
    assert task["status"] == "completed" and task["branch"] == f"dobby/{task['id']}"
    assert git(project, "show", f"{task['branch']}:hello.txt") == "hi\n"
    shown = hub.cli("results", task["id"], check=True).stdout
    assert "1 file +1 -0" in shown and "A hello.txt" in shown
    listing = json.loads(hub.cli("results", "app", "--json", check=True).stdout)
    assert [r["task_id"] for r in listing["results"]] == [task["id"]]
    assert task["id"] in hub.cli("results", "app", check=True).stdout


def test_follow_ups_resume_the_session_in_the_same_worktree(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    for backend, extra in (("claude", ()), ("codex", ("--model", "gpt-5.5"))):
        parent = hub.wait_status(
            add(hub, "create hello", "--project", "app", "--backend", backend, *extra)
        )
        assert parent["status"] == "completed" and parent["session_id"]
        child_id = add(hub, "now also cover the edge cases", "--resume", parent["id"])
        child = hub.wait_status(child_id)
        assert child["status"] == "completed", child
        assert child["summary"] == "Follow-up answered: hello.txt still exists."
        assert (child["host"], child["backend"], child["project"]) == (
            parent["host"], backend, "app"
        )  # fmt: skip
        host = next(h for h in ssh_hosts if h.name == child["host"])
        seen = json.loads(ssh(host, f"cat ~/.dobby/tasks/{child_id}/fake-agent.json"))
        assert seen["resume"] == parent["session_id"]
        if backend == "claude":
            assert seen["argv"][seen["argv"].index("--resume") + 1] == parent["session_id"]
        else:
            assert seen["argv"][seen["argv"].index("resume") + 1] == parent["session_id"]
        assert seen["cwd"] == f"{host.home}/.dobby/worktrees/{parent['id']}"
        assert child["session_id"] == parent["session_id"]
        # its own branch, starting where the parent's work ended
        assert child["base_commit"] == parent["head_commit"]
        assert child["resume"] == parent["id"]
        result = hub.client().result(child_id)
        assert result["chain"] == [parent["id"], child_id]
        assert result["parent"] == parent["id"]
        assert hub.client().result(parent["id"])["followups"] == [child_id]
        assert f"{parent['id']} → {child_id}" in hub.cli("results", child_id, check=True).stdout
        if backend == "codex":
            # codex counts tokens over the whole thread: the follow-up pays only its own
            assert child["tokens"]["input"] == 6000 - 4500
            assert child["cost_usd"] is not None and child["cost_usd"] < parent["cost_usd"]
    assert h1  # both hosts may have been used


def test_gc_frees_finished_tasks_and_never_a_running_one(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    done = hub.wait_status(add(hub, "echo done > d.txt", "--project", "app", "--backend",
                               "shell", "--host", "h1"))  # fmt: skip
    running = add(hub, "sleep 300", "--project", "app", "--backend", "shell", "--host", "h1")
    hub.wait_status(running, ("running",))
    dry = json.loads(hub.cli("gc", "--older-than", "0", "--dry-run", "--json", check=True).stdout)
    assert [t["task_id"] for t in dry["tasks"]] == [done["id"]] and dry["freed_bytes"] > 0
    assert ssh(h1, f"ls ~/.dobby/worktrees/{done['id']}/d.txt").strip()
    report = json.loads(hub.cli("gc", "--older-than", "0", "--json", check=True).stdout)
    assert [t["task_id"] for t in report["tasks"]] == [done["id"]]
    left = ssh(h1, "ls ~/.dobby/tasks ~/.dobby/worktrees").split()
    assert done["id"] not in left and left.count(running) == 2
    assert hub.client().task(done["id"])["host_cleaned_at"]
    # the branch on the hub and the hub's copy of the log outlive the host's copy
    assert git(project, "show", f"{done['branch']}:d.txt") == "done\n"
    assert hub.cli("logs", done["id"], check=True).returncode == 0
    again = json.loads(hub.cli("gc", "--older-than", "0", "--json", check=True).stdout)
    assert again["tasks"] == []
    hub.cli("cancel", running, check=True)


def test_retention_zero_cleans_after_collection_and_follow_ups_still_work(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    home = tmp_path / "home0"
    home.mkdir()
    (home / "dobby.yaml").write_text("host_retention: 0\n")
    inventory = write_inventory(tmp_path / "inv0.yaml", [h1.inventory_entry()])
    hub = HubProcess(home=home, inventory=inventory).start()
    try:
        path = make_git_project(tmp_path / "app0")
        hub.cli("register", str(path), "--name", "app", check=True)
        parent = hub.wait_status(add(hub, "create hello", "--project", "app"))
        wait_until(lambda: hub.client().task(parent["id"])["host_cleaned_at"], what="the cleanup")
        assert ssh(h1, "ls ~/.dobby/tasks ~/.dobby/worktrees").split() == [
            f"{h1.home}/.dobby/tasks:", f"{h1.home}/.dobby/worktrees:"
        ]  # fmt: skip
        # the follow-up recreates the worktree at the same path, where the parent's work ended
        child = hub.wait_status(add(hub, "[scenario:slow] and the edge cases", "--resume",
                                    parent["id"]))  # fmt: skip
        assert child["status"] == "completed", child
        assert child["base_commit"] == parent["head_commit"]
        seen_cwd = json.loads(hub.client().logs(child["id"])["text"].splitlines()[0])["cwd"]
        assert seen_cwd == f"{h1.home}/.dobby/worktrees/{parent['id']}"
        assert git(path, "show", f"{parent['branch']}:hello.txt") == "hi\n"
        assert hub.cli("logs", parent["id"], check=True).stdout  # still on the hub
    finally:
        hub.stop()
