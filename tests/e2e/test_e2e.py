"""End to end: the real CLI → a real hub process → real sshd hosts, tmux, git, fake agents."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, git_commit, make_git_project, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # the CLI, a hub process and agents on several sshd hosts; kill -9

NASTY = (
    'Fix it\'s "quoted" $(touch /tmp/dobby-e2e-pwned) `touch /tmp/dobby-e2e-pwned2`; '
    "rm -rf ~ ;\nsecond line\twith tab\n  indented é ✓ 日本語 \\n $HOME ${PATH} \n\n"
)


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost], local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [h.inventory_entry() for h in ssh_hosts[:2]] + [local_entry]


@pytest.fixture
def project(tmp_path: Path, hub: HubProcess) -> Path:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", "--context", "web backend", check=True)
    return path


def add(hub: HubProcess, *args: str, input: str | None = None) -> str:
    res = hub.cli("add", *args, "--json", input=input, check=True)
    return json.loads(res.stdout)["id"]


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


def host_file(host: SshHost, task_id: str, name: str) -> str:
    return ssh(host, f"cat ~/.dobby/tasks/{task_id}/{name}")


# --- the main path ---------------------------------------------------------------------------


def test_shell_claude_codex_on_two_ssh_hosts_and_local(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    h2 = ssh_hosts[1]
    ids = {
        "shell-h1": add(
            hub,
            "git log --oneline | wc -l; ls",
            "--project",
            "app",
            "--backend",
            "shell",
            "--host",
            "h1",
        ),
        "claude-h2": add(
            hub,
            "write unit tests for the auth module",
            "--project",
            "app",
            "--backend",
            "claude",
            "--host",
            "h2",
        ),
        "codex-h1": add(
            hub,
            "refactor the app",
            "--project",
            "app",
            "--backend",
            "codex",
            "--host",
            "h1",
            "--model",
            "gpt-5.5",
        ),
        "claude-local": add(
            hub, "document the code", "--project", "app", "--backend", "claude", "--host", "local"
        ),
        "shell-label": add(
            hub, "echo on $(hostname) as $(whoami)", "--backend", "shell", "--label", "h2"
        ),
    }
    tasks = {k: hub.wait_status(v) for k, v in ids.items()}
    assert {k: t["status"] for k, t in tasks.items()} == dict.fromkeys(ids, "completed")
    assert tasks["shell-h1"]["host"] == "h1"
    assert tasks["shell-h1"]["summary"].splitlines()[0] == "1"
    assert "README.md" in tasks["shell-h1"]["summary"]
    assert tasks["shell-label"]["host"] == "h2"
    assert tasks["shell-label"]["summary"].endswith(f"as {h2.user}")

    claude = tasks["claude-h2"]
    assert claude["summary"] == "Done: created hello.txt"
    assert claude["cost_usd"] == pytest.approx(0.0437)
    assert claude["tokens"] == {
        "input": 4800,
        "output": 168,
        "cache_read": 16000,
        "cache_write": 1200,
    }
    assert claude["session_id"] and claude["branch"] == f"dobby/{claude['id']}"
    # the agent really worked in a git worktree of the project, on the task's branch
    wt = f"~/.dobby/worktrees/{claude['id']}"
    assert ssh(h2, f"cat {wt}/hello.txt") == "hi\n"
    assert ssh(h2, f"git -C {wt} rev-parse --abbrev-ref HEAD").strip() == claude["branch"]
    assert ssh(h2, f"cat {wt}/README.md") == "# app\n"
    # edits permissions by default: no bypass, no IS_SANDBOX
    seen = json.loads(host_file(h2, claude["id"], "fake-agent.json"))
    assert "--dangerously-skip-permissions" not in seen["argv"]
    assert "acceptEdits" in seen["argv"]
    assert seen["prompt"] == "write unit tests for the auth module"

    codex = tasks["codex-h1"]
    assert codex["summary"] == "Done: created hello.txt"
    assert codex["tokens"]["input"] == 4500 and codex["cost_usd"] is not None

    local = tasks["claude-local"]
    assert local["host"] == "local" and local["summary"] == "Done: created hello.txt"

    # CLI views agree with the API
    status = hub.cli("status", "--all", "--json", check=True)
    assert json.loads(status.stdout) == hub.client().tasks()
    table = hub.cli("status", "app", check=True).stdout
    assert all(ids[k] in table for k in ("shell-h1", "claude-h2", "codex-h1"))
    results = hub.cli("results", claude["id"], check=True).stdout
    assert "Done: created hello.txt" in results and "0.0437" in results
    assert (
        json.loads(hub.cli("results", claude["id"], "--json", check=True).stdout)["session_id"]
        == claude["session_id"]
    )
    logs = hub.cli("logs", claude["id"], check=True).stdout
    assert "hello.txt" in logs
    raw = hub.cli("logs", claude["id"], "--raw", check=True).stdout
    assert raw == host_file(h2, claude["id"], "out.jsonl")
    hosts = json.loads(hub.cli("hosts", "--json", check=True).stdout)
    by_name = {h["name"]: h for h in hosts["hosts"]}
    assert by_name["h1"]["reachable"] is True
    assert by_name["h1"]["versions"]["tmux"].startswith("tmux")
    assert "claude" in by_name["h1"]["versions"]
    assert by_name["h1"]["env"] == {"PATH": "***"}
    attach = hub.cli("attach", claude["id"], "--print").stdout
    assert f"tmux attach -t dobby-{claude['id']}" in attach and h2.address in attach


def test_project_delivery_is_incremental(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    first = hub.wait_status(
        add(hub, "git log --format=%s", "--project", "app", "--backend", "shell", "--host", "h1")
    )
    assert first["summary"] == "init"
    head = git_commit(project, "app.py", "print('v2')\n", "second")
    second = hub.wait_status(
        add(
            hub,
            "git log --format=%s; cat app.py",
            "--project",
            "app",
            "--backend",
            "shell",
            "--host",
            "h1",
        )
    )
    assert second["summary"] == "second\ninit\nprint('v2')"
    assert second["base_commit"] == head
    # the mirror on the host holds both commits, fed by two bundles
    log = ssh(h1, "git -C ~/.dobby/repos/app.git log --format=%s refs/dobby/sent")
    assert log.split() == ["second", "init"]


def test_logs_follow_streams_until_the_end(hub: HubProcess) -> None:
    task_id = add(
        hub, "[scenario:lines:15:100] stream please", "--backend", "claude", "--host", "h1"
    )
    res = hub.cli("logs", task_id, "-f", timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, 16)] or lines == [f"line {i}" for i in range(15)]
    assert "completed" in (res.stdout + res.stderr)


def test_prompt_arrives_byte_identical_and_executes_nothing(
    hub: HubProcess, project: Path, ssh_hosts: list[SshHost]
) -> None:
    for marker in ("/tmp/dobby-e2e-pwned", "/tmp/dobby-e2e-pwned2"):
        if os.path.exists(marker):
            os.unlink(marker)
    task_id = add(hub, "-", "--project", "app", "--backend", "claude", "--host", "h1", input=NASTY)
    task = hub.wait_status(task_id)
    assert task["status"] == "completed"
    assert task["prompt"] == NASTY
    seen = json.loads(host_file(ssh_hosts[0], task_id, "fake-agent.json"))
    assert seen["prompt"] == NASTY
    assert host_file(ssh_hosts[0], task_id, "prompt.md") == NASTY
    assert not os.path.exists("/tmp/dobby-e2e-pwned")
    assert not os.path.exists("/tmp/dobby-e2e-pwned2")
    assert (
        ssh(ssh_hosts[0], "ls /tmp/dobby-e2e-pwned /tmp/dobby-e2e-pwned2 2>/dev/null || true") == ""
    )
    # a shell task's "prompt" is its command line: it runs as written, quoting intact
    shell_id = add(
        hub,
        "-",
        "--backend",
        "shell",
        "--host",
        "h1",
        input="printf '%s|' \"it's\" 'a \"b\"' $'\\x41'",
    )
    assert hub.wait_status(shell_id)["summary"] == 'it\'s|a "b"|A|'


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "scenario", "reason", "error_part"),
    [
        ("claude", "api401", "agent_error", "401"),
        ("claude", "api500", "agent_error", "500"),
        ("claude", "max_turns", "max_turns", "max_turns"),
        ("claude", "crash", "exit_code", "no result"),
        ("codex", "api500", "agent_error", "high demand"),
        ("shell", None, "exit_code", "exit code 3"),
    ],
)
def test_agent_failures_end_failed_with_the_reason(
    hub: HubProcess, backend: str, scenario: str | None, reason: str, error_part: str
) -> None:
    prompt = f"[scenario:{scenario}] do it" if scenario else "echo boom >&2; exit 3"
    task = hub.wait_status(add(hub, prompt, "--backend", backend, "--host", "h2"))
    assert task["status"] == "failed"
    assert task["reason"] == reason
    assert error_part.lower() in (task["error"] or "").lower()
    assert task["exit_code"] not in (0, None)
    if backend == "shell":  # its stderr, brought back for a run that printed nothing else
        assert "boom" in task["error"]


def test_cancel_kills_the_session_and_its_processes(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    task_id = add(hub, "sleep 300 & sleep 301; wait", "--backend", "shell", "--host", "h1")
    hub.wait_status(task_id, ("running",))
    ssh(h1, "for i in $(seq 50); do pgrep -u $(id -u) -f '[s]leep 301' && break; sleep 0.1; done")
    res = hub.cli("cancel", task_id, "--json", check=True)
    assert json.loads(res.stdout)["status"] == "cancelled"
    # Answered once the stop is sent: the session and its processes end a moment later.
    wait_until(
        lambda: (
            ssh(
                h1, f"tmux has-session -t dobby-{task_id} 2>/dev/null && echo alive || echo gone"
            ).strip()
            == "gone"
        ),
        what="the session to end",
    )
    wait_until(
        lambda: ssh(h1, "pgrep -u $(id -u) -f '[s]leep 30[01]' || echo none").strip() == "none",
        what="its processes to end",
    )
    again = hub.cli("cancel", task_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr


def test_timeout_ends_a_hung_agent(hub: HubProcess, ssh_hosts: list[SshHost]) -> None:
    task_id = add(
        hub, "[scenario:hang] wait forever", "--backend", "codex", "--host", "h1", "--timeout", "2"
    )
    task = hub.wait_status(task_id, timeout=60)
    assert (task["status"], task["reason"]) == ("failed", "timeout")
    assert "timed out after 2s" in task["error"]
    assert ssh(ssh_hosts[0], "pgrep -u $(id -u) -f '[a]gent.py' || echo none").strip() == "none"


def test_hub_kill_9_mid_run_then_restart(hub: HubProcess, ssh_hosts: list[SshHost]) -> None:
    task_id = add(hub, "[scenario:lines:40:100] long", "--backend", "claude", "--host", "h1")
    hub.wait_status(task_id, ("running",))
    client = hub.client()
    wait_until(lambda: len(client.logs(task_id)["text"]) >= 200, timeout=20, what="some output")
    hub.kill()  # SIGKILL: no cleanup at all
    time.sleep(1.0)  # the agent keeps writing while the hub is gone
    hub.start()
    task = hub.wait_status(task_id, timeout=60)
    assert task["status"] == "completed", task
    host_log = host_file(ssh_hosts[0], task_id, "out.jsonl")
    hub_log = hub.client().logs(task_id)["text"]
    assert hub_log == host_log  # no gap, no duplicate line
    assert len(host_log.splitlines()) == 42  # init + 40 lines + result


def test_sshd_restart_mid_run(hub: HubProcess, ssh_hosts: list[SshHost]) -> None:
    h2 = ssh_hosts[1]
    task_id = add(hub, "[scenario:lines:30:100] keep going", "--backend", "claude", "--host", "h2")
    hub.wait_status(task_id, ("running",))
    time.sleep(0.5)
    h2.stop()  # cuts the hub's connection; the task goes on inside tmux
    time.sleep(1.5)
    assert hub.client().task(task_id)["status"] == "running"
    h2.start()
    task = hub.wait_status(task_id, timeout=60)
    assert task["status"] == "completed"
    assert hub.client().logs(task_id)["text"] == host_file(h2, task_id, "out.jsonl")


def test_host_down_at_dispatch_fails_clearly_and_spares_others(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    ok = add(hub, "echo fine", "--backend", "shell", "--host", "h2")
    assert hub.wait_status(ok)["status"] == "completed"
    ssh_hosts[0].stop()
    task = hub.wait_status(add(hub, "echo never", "--backend", "shell", "--host", "h1"))
    assert (task["status"], task["reason"]) == ("failed", "dispatch_error")
    assert "h1" in task["error"] and "refused" in task["error"]
    other = hub.wait_status(add(hub, "echo still fine", "--backend", "shell", "--host", "h2"))
    assert other["status"] == "completed"
    assert hub.client().task(ok)["status"] == "completed"


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_gets_one_line_errors(hub: HubProcess, project: Path) -> None:
    cases = [
        (["add", "x", "--project", "nope"], "unknown project 'nope'"),
        (["add", "x", "--host", "nohost", "--backend", "shell"], "unknown host 'nohost'"),
        (["add", "x", "--label", "gpu", "--backend", "shell"], "no host matches labels gpu"),
        (["results", "ffffffff"], "unknown task 'ffffffff'"),
        (["register", "/nonexistent", "--name", "z"], "not a directory"),
    ]
    before = hub.client().tasks()
    for args, message in cases:
        res = hub.cli(*args)
        assert res.returncode != 0, args
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = hub.cli("add", "x", "--backend", "shell", "--timeout", "soon")  # a click usage error
    assert res.returncode == 2
    assert "Invalid value for '--timeout': invalid duration 'soon'" in res.stderr
    assert hub.client().tasks() == before


def test_malformed_inventory_at_start_names_file_and_line(tmp_path: Path) -> None:
    inv = tmp_path / "bad.yaml"
    inv.write_text("hosts:\n  box:\n    adress: 10.0.0.1\n")
    hub = HubProcess(home=tmp_path / "home", inventory=inv)
    hub.start(wait=False)
    assert hub.proc is not None
    assert hub.proc.wait(30) != 0
    assert f"{inv}:3: unknown field 'adress'" in hub.log()


@pytest.mark.parametrize("kind", ["empty", "nested"])
def test_empty_or_nested_inventory_at_start_is_one_line(tmp_path: Path, kind: str) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text("" if kind == "empty" else "hosts: " + "[" * 5000 + "]" * 5000 + "\n")
    hub = HubProcess(home=tmp_path / "home", inventory=inv)
    hub.start(wait=False)
    assert hub.proc is not None
    assert hub.proc.wait(30) != 0
    why = "defines no hosts" if kind == "empty" else "invalid YAML: nested too deeply"
    assert f"{inv}: {why}" in hub.log()
    assert "Traceback" not in hub.log()


def test_inventory_hot_reload_keeps_last_good(hub: HubProcess, tmp_path: Path) -> None:
    inv = hub.inventory
    assert inv is not None
    good = inv.read_text()
    inv.write_text(good + "  broken:\n    port: seventy\n")
    client = hub.client()
    view = wait_until(
        lambda: (v := client.hosts())["inventory"]["error"] and v,
        timeout=15,
        what="the inventory error",
    )
    assert view["inventory"]["error"].startswith(f"{inv}:")
    assert "port" in view["inventory"]["error"]
    assert {h["name"] for h in view["hosts"]} == {"h1", "h2", "local"}
    assert "inventory error" in hub.cli("hosts").stdout + hub.cli("hosts").stderr
    inv.write_text(good.replace("h2:", "h2b:", 1) if "h2:" in good else good)
    view = wait_until(
        lambda: (v := client.hosts())["inventory"]["error"] is None and v,
        timeout=15,
        what="the inventory to load again",
    )
    assert view["inventory"]["error"] is None


def test_api_key_is_required_when_set(tmp_path: Path, local_entry: dict) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", [local_entry])
    hub = HubProcess(home=tmp_path / "home", inventory=inv, api_key="s3cret-key").start()
    try:
        import urllib.error
        import urllib.request

        with urllib.request.urlopen(hub.url + "/health") as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(hub.url + "/tasks")
        assert err.value.code == 401
        body = json.loads(err.value.read())
        assert body["error"]["code"] == "unauthorized"
        assert hub.cli("status", check=True).returncode == 0  # the CLI sends DOBBY_API_KEY
        assert "s3cret-key" not in hub.log()
    finally:
        hub.stop()


def test_non_loopback_bind_without_key_is_refused(tmp_path: Path) -> None:
    res = subprocess.run(
        ["python3", "-m", "dobby", "start", "--host", "0.0.0.0", "--port", "1"],
        env={**os.environ, "DOBBY_HOME": str(tmp_path / "h")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode != 0
    assert "refusing to bind 0.0.0.0 without api_key" in res.stderr
