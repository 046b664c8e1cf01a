"""Per-task agent limits from the CLI on a real sshd host: the outcome names the limit and the
partial work comes back on the task's branch; bad limits are a clear 400."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost

pytestmark = pytest.mark.slow  # a hub process and the fake claude on an sshd host


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [ssh_hosts[0].inventory_entry()]


def add(hub: HubProcess, *args: str) -> dict[str, Any]:
    return dict(json.loads(hub.cli("add", *args, "--json", check=True).stdout))


def argv_seen(host: SshHost, task_id: str) -> list[str]:
    path = host.home / ".dobby" / "tasks" / task_id / "fake-agent.json"
    return list(json.loads(path.read_text())["argv"])


def test_max_turns_and_budget_stop_claude_and_keep_the_work(
    hub: HubProcess, ssh_hosts: list[SshHost], tmp_path: Path
) -> None:
    h1 = ssh_hosts[0]
    repo = make_git_project(tmp_path / "app")
    hub.cli("register", str(repo), "--name", "app", check=True)
    turns = add(hub, "make hello", "--project", "app", "--max-turns", "1")
    budget = add(hub, "make hello", "--project", "app", "--max-budget-usd", "0.015")
    assert (turns["max_turns"], budget["max_budget_usd"]) == (1, 0.015)
    for task, reason, flag in (
        (turns, "max_turns", ["--max-turns", "1"]),
        (budget, "budget", ["--max-budget-usd", "0.015"]),
    ):
        done = hub.wait_status(task["id"], timeout=120)
        assert (done["status"], done["reason"]) == ("failed", reason), done
        argv = argv_seen(h1, task["id"])
        assert argv[argv.index(flag[0]) : argv.index(flag[0]) + 2] == flag
        assert done["branch"] == f"dobby/{task['id']}"  # the partial work came back
        shown = hub.cli("results", task["id"], check=True).stdout
        assert f"failed ({reason})" in shown
    files = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", f"dobby/{budget['id']}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "hello.txt" in files


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-turns", "0", "max_turns"),
        ("--max-budget-usd", "-1", "max_budget_usd"),
        ("--max-budget-usd", "0", "max_budget_usd"),
    ],
)
def test_bad_limits_are_refused(hub: HubProcess, flag: str, value: str, message: str) -> None:
    res = hub.cli("add", "x", flag, value)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1  # one line


def test_project_policies_give_tasks_their_model_and_limits(
    hub: HubProcess, ssh_hosts: list[SshHost], tmp_path: Path
) -> None:
    repo = make_git_project(tmp_path / "app")
    hub.cli("register", str(repo), "--name", "app", check=True)
    hub.cli(
        "projects", "set", "app", "model=claude-sonnet-4-5", "max_turns=1",
        "max_budget_usd=2.5", check=True,
    )  # fmt: skip
    task = add(hub, "make hello", "--project", "app")
    assert (task["model"], task["max_turns"], task["max_budget_usd"]) == (
        "claude-sonnet-4-5", 1, 2.5,
    )  # fmt: skip
    own = add(hub, "make hello", "--project", "app", "--max-turns", "7", "--model", "opus")
    assert (own["model"], own["max_turns"]) == ("opus", 7)  # the task's own values win
    done = hub.wait_status(task["id"], timeout=120)
    assert done["reason"] == "max_turns"
    argv = argv_seen(ssh_hosts[0], task["id"])
    assert argv[argv.index("--model") + 1] == "claude-sonnet-4-5"
    bad = hub.cli("projects", "set", "app", "max_turns=0")
    assert bad.returncode == 1 and "max_turns" in bad.stderr
    hub.cli("projects", "set", "app", "max_turns=none", check=True)
    assert add(hub, "x", "--project", "app", "--backend", "shell")["max_turns"] is None


@pytest.mark.parametrize("model", ["", "hello world", "gpt'5", "--", "a" * 201, "123"])
def test_a_garbage_model_name_is_refused(hub: HubProcess, model: str) -> None:
    res = hub.cli("add", "x", "--model", model)
    assert res.returncode == 1 and "model" in res.stderr, res.stderr


def test_a_plausible_model_without_a_price_is_accepted(hub: HubProcess) -> None:
    for model in ("claude-opus-4-8[1m]", "us.anthropic.claude-sonnet-4-5-v1:0", "gpt-9-turbo"):
        assert add(hub, "x", "--model", model, "--backend", "shell")["model"] == model


class TestHostModels:
    @pytest.fixture
    def hub_hosts(self, ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
        return [ssh_hosts[0].inventory_entry(models={"claude": "claude-haiku-4-5"})]

    def test_the_hosts_default_model_is_used_unless_the_task_names_one(
        self, hub: HubProcess, ssh_hosts: list[SshHost]
    ) -> None:
        default = add(hub, "make hello")
        named = add(hub, "make hello", "--model", "opus")
        for task, model in ((default, "claude-haiku-4-5"), (named, "opus")):
            assert hub.wait_status(task["id"], timeout=120)["status"] == "completed"
            argv = argv_seen(ssh_hosts[0], task["id"])
            assert argv[argv.index("--model") + 1] == model
        assert hub.client().task(default["id"])["model"] is None  # the host's, not the task's
