"""Usage limits end to end: a real hub, real sshd hosts, tmux, the fake agents' quota scenarios.

Each sshd host's user is one account for the fake agents (their limit lives under its HOME),
as it is for the hub by default (one account per host and backend). Every launch of claude on
a host goes through a shim that logs the task id, so the tests count launches exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dobby.core.timefmt import parse_time
from tests.fixtures.hub import HubProcess, make_git_project, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # hub processes and agents on sshd hosts

RESET = 40  # seconds from the limit to its reset: long enough to watch the wait on a busy box


@pytest.fixture
def shim(fake_bin: Path) -> Iterator[Path]:
    """Return a directory whose ``claude``/``codex`` log each launch, then run the fakes."""
    directory = Path(tempfile.mkdtemp(prefix="dobby-quota-shim-"))
    directory.chmod(0o755)
    log = directory / "launches.log"
    log.touch()
    log.chmod(0o666)
    for agent in ("claude", "codex"):
        script = directory / agent
        script.write_text(
            "#!/bin/sh\n"  # host probes run `claude --version` outside any task: not counted
            f'[ -z "$DOBBY_TASK_ID" ] || echo "$DOBBY_TASK_ID {agent}" >> {log}\n'
            # A scenario for one agent only (a prompt's token would hold for both).
            f"[ -f {directory}/{agent}.scenario ] && "
            f"FAKE_AGENT_SCENARIO=$(cat {directory}/{agent}.scenario) && "
            "export FAKE_AGENT_SCENARIO\n"
            f'exec {fake_bin}/{agent} "$@"\n'
        )
        script.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def launches(shim: Path) -> Counter[str]:
    """Return how many times each task's agent was started."""
    return Counter(line.split()[0] for line in (shim / "launches.log").read_text().splitlines())


def start_hub(tmp_path: Path, ssh_hosts: list[SshHost], shim: Path, **settings: Any) -> HubProcess:
    entries = [
        h.inventory_entry(env={"PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin"})
        for h in ssh_hosts[:2]
    ]
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    config = {"quota_grace": 1, "quota_backoff": 3600, **settings}
    (home / "dobby.yaml").write_text(yaml.safe_dump(config))
    inventory = write_inventory(tmp_path / "inv.yaml", entries)
    return HubProcess(home=home, inventory=inventory).start()


@pytest.fixture
def hub(tmp_path: Path, ssh_hosts: list[SshHost], shim: Path) -> Iterator[HubProcess]:
    proc = start_hub(tmp_path, ssh_hosts, shim)
    yield proc
    proc.stop()


def add(hub: HubProcess, prompt: str, *args: str) -> str:
    return str(json.loads(hub.cli("add", prompt, *args, "--json", check=True).stdout)["id"])


def ssh(host: SshHost, command: str) -> str:
    done = subprocess.run(host.ssh_argv(command), capture_output=True, text=True, timeout=60)
    return done.stdout


def wait_task(hub: HubProcess, task_id: str, check: Any, timeout: float = 90) -> dict[str, Any]:
    """Poll a task until ``check(task)`` holds; return it."""
    client = hub.client()
    last: dict[str, Any] = {}

    def matched() -> dict[str, Any] | None:
        last.update(client.task(task_id))
        return dict(last) if check(last) else None

    return wait_until(
        matched,
        timeout=timeout,
        what=f"task {task_id} to match",
        detail=lambda: json.dumps(last)[:1500],
    )


def git_files(repo: Path, branch: str) -> set[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", branch],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_a_limit_holds_the_account_the_cut_task_resumes_its_session_and_all_complete(
    tmp_path: Path, ssh_hosts: list[SshHost], shim: Path
) -> None:
    hub = start_hub(tmp_path, ssh_hosts, shim)
    try:
        app = make_git_project(tmp_path / "app")
        hub.cli("register", str(app), "--name", "app", check=True)
        side = make_git_project(tmp_path / "side")
        hub.cli("register", str(side), "--name", "side", check=True)
        # Six claude tasks on h1's account, one at a time (the project's cap); the second one
        # trips the account's 5-hour limit half-way, after writing hello.txt.
        prompts = ["one", f"two [scenario:quota_mid:{RESET}]", "three", "four", "five", "six"]
        ids = [add(hub, p, "--project", "app", "--host", "h1") for p in prompts]
        cut = ids[1]
        waiting = wait_task(hub, cut, lambda t: t["waiting_on"] == "usage_limit")
        assert waiting["status"] == "pending" and waiting["not_before"]
        assert "resumes session" in waiting["wait_reason"] and "claude/h1" in waiting["wait_reason"]
        assert waiting["account"] == "claude/h1" and waiting["session_id"]
        (half,) = waiting["attempts"]
        assert (half["kind"], half["host"], half["quota"]["window"]) == (
            "usage_limit", "h1", "five_hour"
        )  # fmt: skip
        assert half["cost_usd"] > 0 and half["quota"]["worked"] is True
        usage = json.loads(hub.cli("usage", "--json", check=True).stdout)
        account = next(a for a in usage["accounts"] if a["account"] == "claude/h1")
        assert account["limited"] and account["hosts"] == ["h1"] and cut in account["waiting"]
        other = next(a for a in usage["accounts"] if a["account"] == "claude/h2")
        assert not other["limited"]
        shown = hub.cli("usage", check=True).stdout
        assert "claude/h1  [h1]  LIMITED until" in shown
        status = hub.cli("status", "app", check=True).stdout
        assert "pending usage_limit" in status and "resumes in" in status
        assert "countdown:" in hub.cli("show", cut, check=True).stdout
        # A hub killed during the wait loses nothing and launches nothing twice.
        hub.kill()
        hub.start()
        after = hub.client().task(cut)
        assert (after["status"], after["waiting_on"], after["not_before"]) == (
            "pending", "usage_limit", waiting["not_before"]
        )  # fmt: skip
        # The queued ones wait on the account, not launched.
        for tid in ids[2:]:
            wait_task(hub, tid, lambda t: t["waiting_on"] == "usage_limit")
        # Another account (h2) keeps working meanwhile.
        client = hub.client()
        others = [
            client.add_task(prompt=f"side {n}", project="side", host="h2")["id"] for n in (1, 2)
        ]
        for tid in others:
            assert hub.wait_status(tid, timeout=90)["status"] == "completed"
        done = [hub.wait_status(tid, timeout=240) for tid in ids]
        assert [t["status"] for t in done] == ["completed"] * 6, [t["error"] for t in done]
        count = launches(shim)
        assert count == Counter({**dict.fromkeys(ids + others, 1), cut: 2}), count
        resumed = done[1]
        reset = resumed["attempts"][0]["quota"]["resets_at"]
        for task in done[2:]:  # no queued task was launched before the reset
            assert parse_time(task["started_at"]).timestamp() > reset
            assert task["attempts"] == [] and task["attempt"] == 0
        for task_id in others:  # while h2's tasks ran during the limit
            assert parse_time(hub.client().task(task_id)["started_at"]).timestamp() < reset
        # The cut task went on in the same session and worktree: both halves' work on its
        # branch, its cost and log adding up.
        assert resumed["session_id"] == waiting["session_id"] and resumed["attempt"] == 1
        seen = json.loads(ssh(ssh_hosts[0], f"cat ~/.dobby/tasks/{cut}/fake-agent.json"))
        assert seen["resume"] == waiting["session_id"] and "--resume" in seen["argv"]
        assert "Continue the task from where you left off" in seen["prompt"]
        assert {"hello.txt", "continued.txt"} <= git_files(app, f"dobby/{cut}")
        assert resumed["cost_usd"] > half["cost_usd"] > 0
        cut_sessions = ssh(ssh_hosts[0], "ls ~/.fake-agent/sessions").split()
        assert cut_sessions == [f"{waiting['session_id']}.json"]  # one launch hit the wall
        log = hub.cli("logs", cut, check=True).stdout
        assert "session limit" in log and log.count("claude session started") == 2
    finally:
        hub.stop()


@pytest.mark.parametrize(
    ("scenario", "why"),
    [
        ("quota_noreset:600", "rate limited with no reset time"),
        ("quota_start:-120", "is in the past"),
        ("quota_start:864000", "is more than 7 days away"),
    ],
)
def test_a_reset_that_cannot_be_believed_backs_off_without_relaunching(
    hub: HubProcess, shim: Path, scenario: str, why: str
) -> None:
    stuck = add(hub, f"go [scenario:{scenario}]", "--host", "h1")
    task = wait_task(hub, stuck, lambda t: t["waiting_on"] == "usage_limit" and t["not_before"])
    # Queued once the account is known limited (both would start in the same pass after
    # h1's first probe otherwise: placement waits for a host's CLIs to be known).
    queued = add(hub, "next", "--host", "h1")
    assert why in task["wait_reason"] and "backoff 1" in task["wait_reason"]
    assert task["attempts"][0]["quota"]["worked"] is False
    usage = hub.client().usage()
    account = next(a for a in usage["accounts"] if a["account"] == "claude/h1")
    assert account["limited"] and account["limit"]["source"] == "backoff"
    # Many scheduling passes later (h2 runs a task meanwhile), nothing was launched on h1 again.
    assert hub.wait_status(add(hub, "elsewhere", "--host", "h2"))["status"] == "completed"
    assert launches(shim)[stuck] == 1 and launches(shim)[queued] == 0
    assert hub.client().task(queued)["waiting_on"] == "usage_limit"
    hub.cli("cancel", stuck, check=True)
    hub.cli("cancel", queued, check=True)


def test_a_limit_before_any_work_requeues_and_other_accounts_take_the_queue(
    hub: HubProcess, shim: Path
) -> None:
    # h1's account hits its limit at the very start of a run: with no work done, the task goes
    # back to the queue (a fresh start, no session kept), and queued work for claude goes to
    # the account that has room (h2's) instead of waiting.
    wall = add(hub, f"go [scenario:quota_start:{RESET * 30}]", "--host", "h1")
    task = wait_task(hub, wall, lambda t: t["waiting_on"] == "usage_limit" and t["not_before"])
    assert task["resume_session"] is None and task["attempts"][0]["quota"]["worked"] is False
    # Pinned to h1, it waits for that account's reset, which it shows.
    assert (
        "every account that can run it is at its usage limit (claude/h1 until"
        in (task["wait_reason"])
    )
    account = next(a for a in hub.client().usage()["accounts"] if a["account"] == "claude/h1")
    assert task["not_before"] == account["limited_until"]
    anywhere = [add(hub, f"any {n}", "--label", "test") for n in range(3)]
    for task_id in anywhere:
        done = hub.wait_status(task_id, timeout=90)
        assert (done["status"], done["host"]) == ("completed", "h2")
    assert launches(shim)[wall] == 1
    hub.cli("cancel", wall, check=True)


def commits(repo: Path, base: str, branch: str) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%s", f"{base}..{branch}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def test_codex_resumes_its_thread_and_webhooks_tell_of_the_limit_and_the_resume(
    tmp_path: Path, ssh_hosts: list[SshHost], shim: Path
) -> None:
    from tests.hub.test_webhook import Receiver

    with Receiver() as receiver:
        hub = start_hub(tmp_path, ssh_hosts, shim, webhook_url=receiver.url)
        try:
            repo = make_git_project(tmp_path / "app")
            hub.cli("register", str(repo), "--name", "app", check=True)
            cut = add(
                hub, f"go [scenario:quota_mid:{RESET // 2}]", "--backend", "codex",
                "--model", "gpt-5.5", "--project", "app", "--host", "h2",
            )  # fmt: skip
            waiting = wait_task(hub, cut, lambda t: t["waiting_on"] == "usage_limit")
            (half,) = waiting["attempts"]
            assert half["quota"]["source"] == "rollout" and waiting["account"] == "codex/h2"
            done = hub.wait_status(cut, timeout=180)
            assert done["status"] == "completed" and done["session_id"] == waiting["session_id"]
            seen = json.loads(ssh(ssh_hosts[1], f"cat ~/.dobby/tasks/{cut}/fake-agent.json"))
            assert seen["argv"][-3:] == ["resume", waiting["session_id"], "-"]
            # The thread's tokens are cumulative: the task counts each half's own once.
            assert done["tokens"]["input"] > half["tokens"]["input"] > 0
            assert done["cost_usd"] == pytest.approx(
                half["cost_usd"] + (done["cost_usd"] - half["cost_usd"])
            )
            assert len(commits(repo, done["base_commit"], f"dobby/{cut}")) == 2  # both halves
            kinds = [json.loads(d["body"])["event"] for d in receiver.wait(3)]
            assert kinds[:2] == ["account.limited", "account.resumed"]
            limited = json.loads(receiver.received[0]["body"])["account"]
            assert limited["account"] == "codex/h2" and limited["limit"]["source"] == "rollout"
            resumed = json.loads(receiver.received[1]["body"])["account"]
            assert resumed["tasks"] == [cut] and kinds[2] == "task.finished"
            assert launches(shim)[cut] == 2
        finally:
            hub.stop()


def test_a_wait_longer_than_max_quota_wait_goes_on_with_the_fallback_backend(
    tmp_path: Path, ssh_hosts: list[SshHost], shim: Path
) -> None:
    (shim / "claude.scenario").write_text("quota_mid:3600")  # claude's account runs dry
    hub = start_hub(tmp_path, ssh_hosts, shim, max_quota_wait=60)
    try:
        repo = make_git_project(tmp_path / "app")
        hub.cli("register", str(repo), "--name", "app", check=True)
        task_id = add(hub, "go", "--project", "app", "--host", "h1", "--fallback-backend", "codex")
        done = hub.wait_status(task_id, timeout=120)
        assert (done["status"], done["backend"], done["fallback_from"]) == (
            "completed", "codex", "claude"
        )  # fmt: skip
        note = "a usage limit stopped its claude run; it went on with codex instead (a new session)"
        assert note in done["warnings"]
        assert done["attempts"][0]["backend"] == "claude"
        assert done["session_id"] != done["attempts"][0]["session_id"]
        seen = json.loads(ssh(ssh_hosts[0], f"cat ~/.dobby/tasks/{task_id}/fake-agent.json"))
        assert seen["agent"] == "codex" and "stopped by a usage limit" in seen["prompt"]
        assert {"hello.txt", "notes.md"} <= git_files(repo, f"dobby/{task_id}")
        assert len(commits(repo, done["base_commit"], f"dobby/{task_id}")) == 2
        shown = hub.cli("results", task_id, check=True).stdout
        assert "it went on with codex instead" in shown
        # A queued task that would wait as long moves before it ever launches.
        queued = add(hub, "later", "--host", "h1", "--fallback-backend", "codex")
        moved = hub.wait_status(queued, timeout=120)
        assert (moved["status"], moved["backend"], moved["fallback_from"]) == (
            "completed", "codex", "claude"
        )  # fmt: skip
        assert launches(shim)[queued] == 1 and moved["attempts"] == []
    finally:
        hub.stop()


def test_a_full_budget_holds_agent_tasks_until_it_is_raised(
    hub: HubProcess, tmp_path: Path
) -> None:
    repo = make_git_project(tmp_path / "app")
    hub.cli("register", str(repo), "--name", "app", check=True)
    refused = hub.cli("projects", "set", "app", "budget_usd=day:0")
    assert refused.returncode == 1
    assert "error: 'budget_usd': day must be a positive number of USD, got 0" in refused.stderr
    refused = hub.cli("projects", "set", "app", "budget_usd=day:-3")
    assert "day must be a positive number of USD, got -3" in refused.stderr
    hub.cli("projects", "set", "app", "budget_usd=day:0.0001", "max_concurrent=4", check=True)
    first = add(hub, "spend", "--project", "app", "--host", "h1")
    assert hub.wait_status(first)["cost_usd"] > 0.0001
    held = add(hub, "more", "--project", "app", "--host", "h1")
    shell = add(hub, "echo free", "--backend", "shell", "--project", "app", "--host", "h1")
    assert hub.wait_status(shell)["status"] == "completed"  # spends nothing: never held
    task = wait_task(hub, held, lambda t: t["waiting_on"] == "budget")
    assert task["wait_reason"].startswith("project app spent $")
    assert "of its $0.00 day budget; waits until" in task["wait_reason"]
    usage = hub.client().usage()
    assert usage["budget_waiting"] == [held] and usage["budgets"][0]["over"]
    assert "pending budget" in hub.cli("status", "app", check=True).stdout
    hub.cli("projects", "set", "app", "budget_usd=day:100", check=True)
    assert hub.wait_status(held)["status"] == "completed"
