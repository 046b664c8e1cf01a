"""The test harness itself: real sshd hosts and the fake claude/codex executables."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from dobby.replay import install_fake_agents, playbook
from tests.fixtures.sshd import SshdCluster, SshHost, port_listening, user_processes

NASTY = "it's \"$(touch /tmp/dobby-pwned)\" `id`; echo $HOME & | > <\nline 2\n\n\t é ✓ 日本 \\ 'end"
CLAUDE = ["-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"]
CODEX = ["exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]


# -- sshd ----------------------------------------------------------------------------------


def test_openssh_client_logs_in_on_every_host(ssh_hosts: list[SshHost]) -> None:
    assert [h.address for h in ssh_hosts] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len({h.user for h in ssh_hosts}) == 3
    for host in ssh_hosts:
        assert host.is_running()
        assert stat.S_IMODE(host.identity_file.stat().st_mode) == 0o600
        assert host.known_hosts.read_text().startswith(f"[{host.address}]:{host.port} ssh-ed25519 ")
        done = subprocess.run(host.ssh_argv("true"), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        done = subprocess.run(
            host.ssh_argv('echo "$USER $SHELL $HOME"'), capture_output=True, text=True, timeout=30
        )
        assert done.stdout == f"{host.user} /bin/bash {host.home}\n"


async def test_asyncssh_connects_and_verifies_host_keys(ssh_hosts: list[SshHost]) -> None:
    for host in ssh_hosts:
        async with asyncssh.connect(**host.connect_options()) as conn:
            result = await conn.run("whoami", check=True)
            assert result.stdout == f"{host.user}\n"
            async with conn.start_sftp_client() as sftp:  # internal-sftp is configured
                assert await sftp.getcwd() == str(host.home)


async def test_wrong_host_key_is_refused(ssh_hosts: list[SshHost], tmp_path: Path) -> None:
    host = ssh_hosts[0]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k"], check=True
    )
    other = (tmp_path / "k.pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{host.address}]:{host.port} {other[0]} {other[1]}\n")
    argv = host.ssh_argv("true")
    argv[argv.index(f"UserKnownHostsFile={host.known_hosts}")] = f"UserKnownHostsFile={wrong}"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await asyncssh.connect(**{**host.connect_options(), "known_hosts": str(wrong)})


async def test_stop_cuts_connections_and_start_keeps_port_and_host_key(
    ssh_hosts: list[SshHost],
) -> None:
    host = ssh_hosts[1]
    port, known = host.port, host.known_hosts.read_text()
    conn = await asyncssh.connect(**host.connect_options())
    key = conn.get_server_host_key()
    assert key is not None
    host.stop()
    assert not host.is_running() and host.pid is None
    assert not port_listening(host.address, port)
    await asyncio.wait_for(conn.wait_closed(), 10)
    with pytest.raises(ConnectionRefusedError):
        await asyncssh.connect(**host.connect_options())
    host.start()
    assert host.is_running() and host.port == port and host.known_hosts.read_text() == known
    async with asyncssh.connect(**host.connect_options()) as again:
        new_key = again.get_server_host_key()
        assert new_key is not None
        assert new_key.export_public_key() == key.export_public_key()
        assert (await again.run("true")).exit_status == 0


def test_stop_can_keep_open_sessions(ssh_hosts: list[SshHost]) -> None:
    host = ssh_hosts[2]
    with subprocess.Popen(
        host.ssh_argv("read line; echo got $line"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        deadline = time.monotonic() + 30
        while "bash" not in _user_procs(host.user):  # the session is up, waiting in `read`
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        host.stop(drop_connections=False)
        assert not host.is_running()
        out, _ = proc.communicate("x\n", timeout=30)
    assert out == "got x\n"


def _user_procs(user: str) -> list[str]:
    """Return the names of the live processes of user."""
    return [name for _, name in user_processes(user)]


def test_reset_restarts_sshd_and_clears_user_state(sshd_cluster: SshdCluster) -> None:
    host = sshd_cluster.hosts[0]
    host.start()
    script = "mkdir -p ~/.dobby/old && tmux new-session -d -s leftover 'sleep 600'"
    subprocess.run(host.ssh_argv(script), check=True, timeout=30)
    assert "tmux: server" in _user_procs(host.user)
    host.stop()
    hosts = sshd_cluster.reset()
    assert all(h.is_running() for h in hosts)
    assert _user_procs(host.user) == []
    check = "test ! -e ~/.dobby && ! tmux has-session -t leftover 2>/dev/null"
    assert subprocess.run(host.ssh_argv(check), timeout=30).returncode == 0


def test_inventory_entry(ssh_hosts: list[SshHost], fake_bin: Path) -> None:
    host = ssh_hosts[0]
    entry = host.inventory_entry(labels=["x"], max_agents=2)
    assert entry["name"] == "h1" and entry["address"] == "127.0.0.2"
    assert (entry["port"], entry["user"]) == (host.port, host.user)
    assert entry["identity_file"] == str(host.identity_file)
    assert entry["known_hosts"] == str(host.known_hosts)
    assert entry["workdir"] == "~/.dobby" and entry["backends"] == ["claude", "codex", "shell"]
    assert entry["labels"] == ["x"] and entry["max_agents"] == 2
    assert entry["env"]["PATH"].split(":")[0] == str(fake_bin)


def test_fake_agents_run_as_the_test_user_over_ssh(ssh_hosts: list[SshHost]) -> None:
    host = ssh_hosts[0]
    path = host.inventory_entry()["env"]["PATH"]
    for agent, args in (("claude", CLAUDE), ("codex", CODEX)):
        task = f"~/.dobby/{agent}"
        argv = shlex.join([agent, *args, "--", NASTY])
        command = (
            f"mkdir -p {task} && cd {task} && PATH={path} DOBBY_TASK_DIR=$PWD {argv} </dev/null"
        )
        done = subprocess.run(host.ssh_argv(command), capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
        assert lines[-1]["type"] in ("result", "turn.completed")
        shown = subprocess.run(host.ssh_argv(f"cat {task}/fake-agent.json"), capture_output=True)
        assert json.loads(shown.stdout.decode())["prompt"] == NASTY
        shown = subprocess.run(host.ssh_argv(f"cat {task}/hello.txt"), capture_output=True)
        assert shown.stdout == b"hi\n"
    assert not Path("/tmp/dobby-pwned").exists()


# -- fake agents ---------------------------------------------------------------------------


def run_agent(
    fake_bin: Path, cwd: Path, agent: str, args: list[str], **env: str
) -> tuple[int, list[dict[str, Any]], str, dict[str, Any]]:
    """Run a fake agent; return exit status, JSON lines, stderr and its record."""
    task = cwd.parent / f"{cwd.name}-task"
    environ = {"PATH": os.environ["PATH"], "HOME": str(cwd.parent), "DOBBY_TASK_DIR": str(task)}
    environ["IS_SANDBOX"] = "1"
    environ.update(env)
    done = subprocess.run(
        [str(fake_bin / agent), *args], cwd=cwd, env=environ, capture_output=True,
        stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    record_file = task / "fake-agent.json"
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.exists() else {}
    return done.returncode, lines, done.stderr.decode(), record


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Return an empty working directory outside any git repository."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("agent", "scenario", "last_type", "subtype", "status"),
    [
        ("claude", "success", "result", "success", 0),
        ("claude", "api401", "result", "success", 1),
        ("claude", "api500", "result", "success", 1),
        ("claude", "max_turns", "result", "error_max_turns", 1),
        ("claude", "failed_command", "result", "success", 0),
        ("claude", "slow", "result", "success", 0),
        ("claude", "lines:5:1", "result", "success", 0),
        ("claude", "crash", "assistant", None, 3),
        ("codex", "success", "turn.completed", None, 0),
        ("codex", "api401", "turn.failed", None, 1),
        ("codex", "api500", "turn.failed", None, 1),
        ("codex", "failed_command", "turn.completed", None, 0),
        ("codex", "slow", "turn.completed", None, 0),
        ("codex", "lines:5:1", "turn.completed", None, 0),
        ("codex", "crash", "turn.started", None, 3),
    ],
)
def test_scenarios(
    fake_bin: Path, work: Path, agent: str, scenario: str, last_type: str,
    subtype: str | None, status: int,
) -> None:  # fmt: skip
    args = CLAUDE if agent == "claude" else CODEX
    prompt = f"make hello.txt [scenario:{scenario}]"
    code, lines, stderr, record = run_agent(
        fake_bin, work, agent, [*args, "--", prompt], FAKE_AGENT_DELAY="0.01"
    )
    assert code == status, stderr
    assert lines[-1]["type"] == last_type and lines[-1].get("subtype") == subtype
    assert record["scenario"] == scenario and record["prompt"] == prompt
    session = record["session_id"]
    assert session == lines[0].get("session_id", lines[0].get("thread_id"))
    if agent == "claude":
        assert {line["session_id"] for line in lines} == {session}
        assert lines[0]["cwd"] == str(work)
    if scenario.startswith("api"):
        assert lines[-1].get("is_error", True) is True
        assert lines[-1].get("api_error_status", int(scenario[3:])) == int(scenario[3:])
    if scenario == "crash":
        assert len(lines) == 2 and "Traceback" in stderr
    if scenario.startswith("lines"):
        texts = [_text(line) for line in lines if _text(line)]
        assert texts == [f"line {i}" for i in range(1, 6)]
    if scenario in ("success", "slow"):
        assert (work / "hello.txt").read_text() == "hi\n"
        assert (work / "notes.md").exists() == (agent == "codex")


def _text(line: dict[str, Any]) -> str | None:
    """Return the assistant text a claude or codex line carries, if any."""
    if line.get("type") == "assistant":
        block = line["message"]["content"][0]
        return block.get("text") if block["type"] == "text" else None
    item = line.get("item", {})
    return item.get("text") if item.get("type") == "agent_message" else None


def test_slow_waits_between_lines(fake_bin: Path, work: Path) -> None:
    started = time.monotonic()
    code, lines, _, _ = run_agent(
        fake_bin, work, "codex", [*CODEX, "--", "x"], FAKE_AGENT_SCENARIO="slow",
        FAKE_AGENT_DELAY="0.05",
    )  # fmt: skip
    assert code == 0 and time.monotonic() - started >= 0.05 * (len(lines) - 1)


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_hang_never_finishes(fake_bin: Path, work: Path, agent: str) -> None:
    args = CLAUDE if agent == "claude" else CODEX
    env = {"PATH": os.environ["PATH"], "IS_SANDBOX": "1", "FAKE_AGENT_HANG_INTERVAL": "0.02"}
    env["DOBBY_TASK_DIR"] = str(work)
    with subprocess.Popen(
        [str(fake_bin / agent), *args, "--", "[scenario:hang]"], cwd=work, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as proc:  # fmt: skip
        try:
            lines = _read_lines(proc, 1 if agent == "claude" else 4, timeout=30)
            assert proc.poll() is None
        finally:
            proc.kill()
    if agent == "claude":
        assert lines == [lines[0]] and lines[0]["subtype"] == "init"
    else:
        assert [line["type"] for line in lines] == [
            "thread.started",
            "turn.started",
            "error",
            "error",
        ]
        assert lines[2]["message"] == "Reconnecting... 1/5 (stream disconnected before completion)"


def _read_lines(proc: subprocess.Popen[bytes], count: int, *, timeout: float) -> list[Any]:
    """Read count JSON lines from a running process's stdout, failing after timeout."""
    assert proc.stdout is not None
    fd, data, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while data.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only got {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed after {data!r}"
            data += chunk
    return [json.loads(line) for line in data.splitlines()[:count]]


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_prompt_arrives_byte_identical(fake_bin: Path, work: Path, agent: str) -> None:
    args = CLAUDE if agent == "claude" else CODEX
    code, _, _, record = run_agent(fake_bin, work, agent, [*args, "--", NASTY], DOBBY_TASK_ID="t1")
    assert code == 0
    assert record["prompt"] == NASTY and record["argv"] == [*args, "--", NASTY]
    assert record["agent"] == agent and record["cwd"] == str(work)
    assert record["env"]["DOBBY_TASK_ID"] == "t1" and record["env"]["CUDA_VISIBLE_DEVICES"] is None
    assert not Path("/tmp/dobby-pwned").exists()


def test_record_falls_back_to_the_cwd(fake_bin: Path, work: Path) -> None:
    env = {"PATH": os.environ["PATH"], "IS_SANDBOX": "1"}
    argv = [str(fake_bin / "claude"), *CLAUDE, "é"]
    subprocess.run(
        argv, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True
    )
    assert json.loads((work / ".fake-agent.json").read_text(encoding="utf-8"))["prompt"] == "é"


def test_resume_keeps_the_session(fake_bin: Path, work: Path) -> None:
    sid = "802c3b37-c866-4274-9fc0-fc571667fa50"
    code, lines, _, record = run_agent(
        fake_bin, work, "claude", [*CLAUDE, "--resume", sid, "--", "more"]
    )
    assert code == 0 and record["resume"] == sid
    assert {line["session_id"] for line in lines} == {sid}
    assert lines[-1]["result"] == "Follow-up answered: hello.txt still exists."
    tid = "01a20f9c-09cc-7ba0-9634-93097ddc3e74"
    code, lines, _, record = run_agent(
        fake_bin, work, "codex", [*CODEX, "resume", tid, "--", "more"]
    )
    assert code == 0 and record["resume"] == tid
    assert lines[0] == {"type": "thread.started", "thread_id": tid}
    assert _text(lines[-2]) == "Follow-up answered: hello.txt still exists."


def test_each_run_gets_fresh_ids(fake_bin: Path, work: Path) -> None:
    runs = [run_agent(fake_bin, work, "claude", [*CLAUDE, "--", "x"])[1] for _ in range(2)]
    assert runs[0][0]["session_id"] != runs[1][0]["session_id"]
    assert runs[0][1]["message"]["id"] != runs[1][1]["message"]["id"]
    threads = [run_agent(fake_bin, work, "codex", [*CODEX, "--", "x"])[1][0] for _ in range(2)]
    assert threads[0]["thread_id"] != threads[1]["thread_id"]
    assert threads[0]["thread_id"][14] == "7"  # a UUIDv7, as codex writes them


@pytest.mark.parametrize(
    ("agent", "args", "env", "status", "message"),
    [
        ("claude", ["-p", "--output-format", "stream-json", "--", "x"], {}, 1,
         playbook.NEEDS_VERBOSE),
        ("claude", CLAUDE + ["--", "x"], {"IS_SANDBOX": ""}, 1, playbook.ROOT_REFUSAL),
        ("claude", ["-p", "--permission-mode", "bypassPermissions", "x"], {"IS_SANDBOX": "0"}, 1,
         playbook.ROOT_REFUSAL),
        ("claude", CLAUDE + ["two", "words"], {}, 1, "too many arguments"),
        ("claude", CLAUDE + ["--bogus", "x"], {}, 1, "unknown option '--bogus'"),
        ("claude", CLAUDE + ["--", "x"], {"FAKE_AGENT_SCENARIO": "nope"}, 2, "unknown scenario"),
        ("codex", ["exec", "--json", "--", "x"], {}, 1, playbook.UNTRUSTED_DIR),
        ("codex", CODEX + ["a", "b"], {}, 2, "unexpected argument 'b'"),
        ("codex", CODEX + ["--", "[scenario:max_turns]"], {}, 2, "unknown scenario"),
    ],
)  # fmt: skip
def test_rejected_command_lines(
    fake_bin: Path, work: Path, agent: str, args: list[str], env: dict[str, str], status: int,
    message: str,
) -> None:  # fmt: skip
    assert os.geteuid() == 0, "the harness runs as root (the root refusal depends on it)"
    code, lines, stderr, _ = run_agent(fake_bin, work, agent, args, **env)
    assert (code, lines) == (status, [])
    assert message in stderr


def test_claude_output_formats_and_max_turns(fake_bin: Path, work: Path) -> None:
    code, lines, _, _ = run_agent(fake_bin, work, "claude", ["-p", "--output-format", "json", "x"])
    assert code == 0 and len(lines) == 1 and lines[0]["result"] == "Done: created hello.txt"
    args = [*CLAUDE, "--max-turns", "2", "--model", "sonnet", "--", "x"]
    code, lines, _, record = run_agent(fake_bin, work, "claude", args)
    assert code == 1 and lines[-1]["subtype"] == "error_max_turns"
    assert lines[-1]["errors"] == ["Reached maximum number of turns (2)"]
    assert lines[0]["model"] == "sonnet" and record["model"] == "sonnet"


def test_codex_read_only_sandbox_changes_nothing(fake_bin: Path, work: Path) -> None:
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    code, lines, stderr, _ = run_agent(fake_bin, work, "codex", ["exec", "--json", "x"])
    assert code == 0 and lines[-1]["type"] == "turn.completed"
    assert not [ln for ln in lines if ln.get("item", {}).get("type") == "command_execution"]
    assert not (work / "hello.txt").exists() and not (work / "notes.md").exists()
    assert "Reading additional input from stdin..." in stderr


def test_versions_and_script_mode(fake_bin: Path) -> None:
    for agent in ("claude", "codex"):
        done = subprocess.run([fake_bin / agent, "--version"], capture_output=True, text=True)
        assert done.stdout == playbook.VERSIONS[agent] + "\n"
    script = Path(playbook.__file__).with_name("agent.py")
    done = subprocess.run(
        [sys.executable, script, "codex", "--version"], capture_output=True, text=True
    )
    assert done.stdout == "codex-cli 0.169.0\n"


def test_install_fake_agents_is_world_readable(tmp_path: Path) -> None:
    dest = install_fake_agents(tmp_path / "bin")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    for name in ("claude", "codex"):
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o755
    for path in [dest / "agent.py", dest / "playbook.py", *(dest / "transcripts").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert (dest / "transcripts" / "claude-stream-json.jsonl").exists()


# -- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "prompt", "resume", "opts"),
    [
        (["-p", "hi", "--output-format", "json"], "hi", None, {"output_format": "json"}),
        (["-p", "--verbose", "--output-format=stream-json", "--", "-x --y"], "-x --y", None, {}),
        (["-p", "--resume", "S1", "--model", "opus", "--", "go"], "go", "S1", {"model": "opus"}),
        (["-p", "--permission-mode", "acceptEdits", "--allowedTools", "Read,Edit", "Bash(git:*)",
          "--", "go"], "go", None, {"allowed_tools": ["Read,Edit", "Bash(git:*)"]}),
        (["-p", "--max-turns", "3", "--", "go"], "go", None, {"max_turns": 3}),
    ],
)  # fmt: skip
def test_parse_claude(
    args: list[str], prompt: str, resume: str | None, opts: dict[str, Any]
) -> None:
    inv = playbook.parse_claude(args)
    assert (inv.prompt, inv.resume) == (prompt, resume)
    assert opts.items() <= inv.opts.items()


@pytest.mark.parametrize(
    ("args", "prompt", "resume", "opts"),
    [
        (["exec", "--json", "-m", "gpt-5.5", "--sandbox", "workspace-write", "resume", "T1", "--",
          "go"], "go", "T1", {"model": "gpt-5.5", "sandbox": "workspace-write", "resume": True}),
        (["exec", "--json", "--", "resume"], "resume", None, {"json": True}),
        (["exec", "resume", "--last", "go"], "go", None, {"resume": True, "last": True}),
        (["exec", "-c", "a=1", "-c", "b=2", "go"], "go", None, {"config": ["a=1", "b=2"]}),
    ],
)  # fmt: skip
def test_parse_codex(
    args: list[str], prompt: str, resume: str | None, opts: dict[str, Any]
) -> None:
    inv = playbook.parse_codex(args)
    assert (inv.prompt, inv.resume) == (prompt, resume)
    assert opts.items() <= inv.opts.items()


@pytest.mark.parametrize(
    "args",
    [["review"], ["exec", "--sandbox", "nope", "x"], ["exec", "--model"], ["exec", "resume"]],
)
def test_parse_codex_rejects(args: list[str]) -> None:
    with pytest.raises(playbook.UsageError) as caught:
        playbook.parse_codex(args)
    assert caught.value.status == 2


@pytest.mark.parametrize(
    ("prompt", "env", "scenario"),
    [
        ("plain", {}, "success"),
        ("plain", {"FAKE_AGENT_SCENARIO": "api500"}, "api500"),
        ("a [scenario:lines:3:10] b", {"FAKE_AGENT_SCENARIO": "api500"}, "lines:3:10"),
        (None, {}, "success"),
    ],
)
def test_choose_scenario(prompt: str | None, env: dict[str, str], scenario: str) -> None:
    assert playbook.choose_scenario(prompt, env) == scenario
