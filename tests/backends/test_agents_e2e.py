"""The backends end to end: a real hub, real sshd hosts, tmux, the fake agents.

Prompts of any size reach the agents byte for byte on stdin; a codex run is priced from the
model its session file records; limits, denials and API statuses land on the task and in
``dobby results`` / ``dobby logs``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from dobby.backends.shell import MAX_COMMAND_BYTES
from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

GPT55_HELLO = (1500 * 1.50 + 3000 * 0.15 + 150 * 12.00) / 1e6  # the recorded run, at gpt-5.5


pytestmark = pytest.mark.slow  # a hub process and agents on sshd hosts


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [h.inventory_entry(max_agents=8) for h in ssh_hosts[:2]]


@pytest.fixture
def project(tmp_path: Path, hub: HubProcess) -> Path:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    return path


def add(hub: HubProcess, prompt: str, *args: str) -> str:
    """Submit a task; the prompt goes through stdin (``dobby add -``), whatever its size."""
    done = hub.cli("add", "-", *args, "--json", input=prompt, check=True, timeout=120)
    return str(json.loads(done.stdout)["id"])


def ssh(host: SshHost, command: str) -> str:
    done = subprocess.run(host.ssh_argv(command), capture_output=True, timeout=60, check=True)
    return done.stdout.decode("utf-8", "surrogateescape")


def test_a_1_mib_prompt_reaches_claude_and_codex_byte_identical(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    # Every byte value a prompt may hold (no NUL), quotes, options, lines: 1 MiB in all.
    unit = "é ✓ 日本 'q' \"dq\" $(touch /tmp/dobby-pwned) `id` \\ -- --flag\n\t\r"
    prompt = unit * (1 + (1 << 20) // len(unit.encode()))
    prompt = prompt.encode()[: 1 << 20].decode("utf-8", "ignore")
    assert len(prompt.encode()) > 1_000_000
    ids = {b: add(hub, prompt, "--backend", b, "--host", "h1") for b in ("claude", "codex")}
    for backend, task_id in ids.items():
        task = hub.wait_status(task_id, timeout=120)
        assert task["status"] == "completed", task
        seen = json.loads(ssh(ssh_hosts[0], f"cat ~/.dobby/tasks/{task_id}/fake-agent.json"))
        assert seen["prompt"] == prompt, backend
        assert prompt not in " ".join(seen["argv"])  # on stdin, never an argument
    assert not Path("/tmp/dobby-pwned").exists()


def test_a_shell_command_may_be_as_long_as_one_argument(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    longest = "true " + "#" * (MAX_COMMAND_BYTES - 5)  # a comment pads it to the limit
    fits = hub.wait_status(add(hub, longest, "--backend", "shell", "--host", "h1"))
    assert fits["status"] == "completed", fits
    over = hub.wait_status(add(hub, longest + "#", "--backend", "shell", "--host", "h1"))
    assert (over["status"], over["reason"]) == ("failed", "dispatch_error")
    assert f"the most one argument may hold is {MAX_COMMAND_BYTES}" in over["error"]


def test_codex_is_priced_from_the_model_its_session_recorded(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h1, h2 = ssh_hosts[0], ssh_hosts[1]
    ssh(h1, "mkdir -p ~/.codex && printf 'model = \"gpt-5.5\"\\n' > ~/.codex/config.toml")
    ssh(h2, "mkdir -p ~/.codex && printf 'model = \"gpt-9-turbo\"\\n' > ~/.codex/config.toml")
    priced = add(hub, "make hello", "--backend", "codex", "--host", "h1")
    unpriced = add(hub, "make hello", "--backend", "codex", "--host", "h2")
    failed = add(hub, "x [scenario:api401]", "--backend", "codex", "--host", "h2")
    task = hub.wait_status(priced)
    assert task["status"] == "completed" and task["models"] == ["gpt-5.5"]
    assert task["cost_usd"] == pytest.approx(GPT55_HELLO) and task["warnings"] == []
    assert task["duration_ms"] is not None  # codex's own time, from its session file
    task = hub.wait_status(unpriced)
    assert task["cost_usd"] is None and task["models"] == ["gpt-9-turbo"]
    (warning,) = task["warnings"]
    assert "model 'gpt-9-turbo' has no price" in warning and "prices: {gpt-9-turbo:" in warning
    shown = hub.cli("results", unpriced, check=True).stdout
    assert "! cost unknown: model 'gpt-9-turbo' has no price" in shown
    task = hub.wait_status(failed)  # a failure with no usage costs nothing, whatever the model
    assert (task["status"], task["cost_usd"]) == ("failed", 0.0)
    stats = json.loads(hub.cli("stats", "--json", check=True).stdout)
    assert stats["cost_unknown"] == 1


def test_usage_limits_denials_and_api_status_land_on_the_task(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    before = time.time()
    claude = add(hub, "go [scenario:quota_mid:900]", "--project", "app", "--host", "h1")
    codex = add(
        hub, "go [scenario:quota_mid:900]", "--project", "app", "--backend", "codex",
        "--model", "gpt-5.5", "--host", "h2",
    )  # fmt: skip
    denied = add(hub, "go [scenario:denied]", "--host", "h2")
    for task_id, source in ((claude, "event"), (codex, "rollout")):
        # A usage limit is a wait, not a failure (tests/scheduler/test_quota_e2e.py): the run
        # that hit it is the task's first half.
        task = wait_until(
            lambda tid=task_id: (t := hub.client().task(tid))["attempts"] and t,
            timeout=60,
            what=f"the first half of {task_id}",
        )
        assert (task["status"], task["waiting_on"]) == ("pending", "usage_limit"), task
        assert task["api_error_status"] == 429 and task["session_id"]
        quota = task["quota"]
        assert (quota["kind"], quota["window"], quota["source"]) == (
            "usage_limit", "five_hour", source
        )  # fmt: skip
        assert quota["worked"] is True and before + 840 <= quota["resets_at"] <= time.time() + 900
        assert task["branch"] == f"dobby/{task_id}"  # the work before the limit came back
        assert task["cost_usd"] and task["cost_usd"] > 0
        shown = hub.cli("results", task_id, check=True).stdout
        assert "limit:" in shown and "usage limit (five_hour), resets" in shown
        assert "api status: 429" in shown
    task = hub.wait_status(denied)
    assert task["status"] == "completed"
    # the target as the user reads it: relative to the task's worktree
    assert task["permission_denials"] == [{"tool": "Write", "target": "hello.txt"}]
    assert task["warnings"][0].startswith("1 action(s) denied by the host's permissions: Write")
    shown = hub.cli("results", denied, check=True).stdout
    assert "! 1 action(s) denied" in shown and "denied:" in shown
    exported = hub.cli("export", "--format", "csv", check=True).stdout.splitlines()[0].split(",")
    start = exported.index("max_turns")
    assert exported[start : start + 7] == [
        "max_turns", "max_budget_usd", "api_error_status", "duration_ms", "permission_denials",
        "warnings", "quota",
    ]  # fmt: skip
    # wait_reason came earlier (placement's waits), the usage-limit fields after it
    waits = [exported.index(name) for name in ("wait_reason", "account", "not_before")]
    assert start + 7 <= waits[0] and waits == sorted(waits)  # appended, never inserted


def test_codex_commands_show_once_in_logs_with_exit_code_and_output(hub: HubProcess) -> None:
    task_id = add(hub, "make hello", "--backend", "codex", "--host", "h1")
    assert hub.wait_status(task_id)["status"] == "completed"
    out = hub.cli("logs", task_id, check=True).stdout
    assert out.count("echo hi > hello.txt && cat hello.txt") == 1
    assert "→ $ echo hi > hello.txt && cat hello.txt\n← exit 0: hi\n" in out
    assert "/bin/bash -lc" not in out
