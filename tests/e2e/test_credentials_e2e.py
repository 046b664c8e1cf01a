"""Credentials that always arrive, on real sshd hosts: profile files read at every launch, and
``dobby hosts check`` naming each backend's missing credentials."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.hostside.test_login_env import debian_home

pytestmark = pytest.mark.slow  # a hub process and tasks on sshd hosts

SHOW = (
    'printf "above=%s below=%s profile=%s stale=%s wins=%s\\n" "$DOBBY_T_ABOVE" '
    '"$DOBBY_T_BELOW" "$DOBBY_T_PROFILE" "$DOBBY_T_STALE" "$DOBBY_T_WINS"'
)


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    h1, h2 = ssh_hosts[:2]
    path = {"PATH": f"{h1.fake_bin}:/usr/local/bin:/usr/bin:/bin"}
    return [
        h1.inventory_entry(env={**path, "DOBBY_T_WINS": "inventory"}),
        h2.inventory_entry(env=path),
    ]


def ssh(host: SshHost, command: str) -> str:
    done = subprocess.run(host.ssh_argv(command), capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


def add(hub: HubProcess, command: str) -> str:
    done = hub.cli("add", command, "--backend", "shell", "--host", "h1", "--json", check=True)
    return str(json.loads(done.stdout)["id"])


def output(host: SshHost, task_id: str) -> str:
    return (host.home / ".dobby" / "tasks" / task_id / "out.jsonl").read_text()


def own(host: SshHost, *names: str) -> None:
    subprocess.run(["chown", host.user, *(str(host.home / n) for n in names)], check=True)


def test_profile_files_written_after_the_tmux_server_started_reach_a_task(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    # The first task starts the user's tmux server while ~/.bashrc exports an old value,
    # which the server keeps (exit-empty off) and gives every later session.
    debian_home(h1.home, above="export DOBBY_T_STALE=old\n")
    own(h1, ".bashrc", ".profile")
    first = add(hub, SHOW)
    assert hub.wait_status(first)["status"] == "completed"
    assert "stale=old" in output(h1, first)
    server = ssh(h1, "tmux display-message -p '#{pid}'").strip()
    assert "DOBBY_T_STALE=old" in ssh(h1, "tmux show-environment -g")
    # Then the user writes credentials: above and below Debian's interactive guard, and in
    # ~/.profile (which also sets a value the inventory env overrides).
    debian_home(
        h1.home,
        above="export DOBBY_T_ABOVE=a1 DOBBY_T_STALE=new\n",
        below="export DOBBY_T_BELOW=b2\n",
        profile="export DOBBY_T_PROFILE=p3 DOBBY_T_WINS=profile\n",
    )
    own(h1, ".bashrc", ".profile")
    second = add(hub, SHOW)
    assert hub.wait_status(second)["status"] == "completed"
    assert "above=a1 below=b2 profile=p3 stale=new wins=inventory" in output(h1, second)
    assert ssh(h1, "tmux display-message -p '#{pid}'").strip() == server  # the same server


def test_hosts_check_names_the_missing_credentials_per_host(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h1, h2 = ssh_hosts[:2]
    # h1: a claude key below the guard of ~/.bashrc, nothing for codex.
    debian_home(h1.home, below="export ANTHROPIC_API_KEY=sk-ant-test-below-the-guard\n")
    own(h1, ".bashrc", ".profile")
    # h2: no claude credentials; codex logged in (its auth.json).
    ssh(h2, 'mkdir -p ~/.codex && printf \'{"tokens": {"id_token": "x"}}\' >~/.codex/auth.json')
    done = hub.cli("hosts", "check", "--hub", "--json")
    assert done.returncode == 1, done.stderr
    reports = {
        r["host"]: {c["name"]: c for c in r["checks"]} for r in json.loads(done.stdout)["hosts"]
    }
    one, two = reports["h1"], reports["h2"]
    assert one["claude credentials"]["status"] == "ok"
    assert one["claude credentials"]["message"] == "credentials: ANTHROPIC_API_KEY"
    assert one["codex credentials"]["status"] == "fail"
    assert "`codex login status` says not logged in" in one["codex credentials"]["message"]
    assert two["claude credentials"]["status"] == "fail"
    assert "CLAUDE_CODE_OAUTH_TOKEN" in two["claude credentials"]["message"]
    assert "claude setup-token" in two["claude credentials"]["message"]
    assert two["codex credentials"] == {
        "name": "codex credentials", "status": "ok", "message": "credentials: codex login (ChatGPT)"
    }  # fmt: skip
    assert "sk-ant-test" not in done.stdout  # names only, never a value
    text = hub.cli("hosts", "check", "--hub").stdout
    assert "✗ claude credentials" in text and "0/2 hosts ready; fix: h1, h2" in text
    assert Path(h1.home / ".bashrc").read_text().count("ANTHROPIC_API_KEY") == 1
