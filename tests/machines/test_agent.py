"""`dobby agent --reverse`: a machine "behind NAT" joins through a reverse SSH tunnel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dobby.offline.tunnel import parse_target, reverse_argv
from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.sshd import SshHost, free_port


def test_reverse_argv() -> None:
    assert parse_target("me@hub.example:2200") == ("me", "hub.example", 2200)
    assert parse_target("hub") == (None, "hub", 22)
    argv = reverse_argv(
        target="me@hub:2200",
        remote_port=2222,
        local_address="localhost",
        local_port=22,
        identity_file="/k",
        known_hosts="/kh",
    )
    assert argv[:5] == ["ssh", "-T", "-p", "2200", "-R"]
    assert argv[5] == "127.0.0.1:2222:localhost:22"
    assert "ExitOnForwardFailure=yes" in argv and argv[-2] == "me@hub"
    assert "UserKnownHostsFile=/kh" in argv and "/k" in argv


@pytest.mark.slow  # a hub process
def test_agent_reverse_registers_and_the_hub_runs_tasks_through_the_tunnel(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    gateway, spoke = ssh_hosts[0], ssh_hosts[1]  # gateway: an SSH server on the hub's side
    # The hub authenticates to the spoke with its user's default key (~/.ssh/id_ed25519).
    hub_user = tmp_path / "hubuser"
    (hub_user / ".ssh").mkdir(parents=True)
    shutil.copyfile(spoke.identity_file, hub_user / ".ssh" / "id_ed25519")
    (hub_user / ".ssh" / "id_ed25519").chmod(0o600)
    inv = write_inventory(tmp_path / "inv.yaml", [{"name": "local", "connection": "local"}])
    hub = HubProcess(
        home=tmp_path / "home",
        inventory=inv,
        api_key="agent-test-key",  # a hub pins a host key sent over HTTP only with a key
        extra_env={"HOME": str(hub_user), "SSH_AUTH_SOCK": ""},
    ).start()
    rport = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    env["DOBBY_API_KEY"] = "agent-test-key"
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dobby",
            "agent",
            "--hub",
            hub.url,
            "--id",
            "natbox",
            "--address",
            spoke.address,
            "--port",
            str(spoke.port),
            "--user",
            spoke.user,
            "--host-key",
            f"{spoke.host_key}.pub",
            "--label",
            "nat",
            "--reverse",
            f"{gateway.user}@{gateway.address}:{gateway.port}",
            "--reverse-port",
            str(rport),
            "--reverse-identity",
            str(gateway.identity_file),
            "--reverse-known-hosts",
            str(gateway.known_hosts),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        assert f"registered natbox ({spoke.user}@127.0.0.1:{rport})" in line, line
        spokes = hub.client().spokes()["spokes"]
        assert [(s["name"], s["address"], s["port"]) for s in spokes] == [
            ("natbox", "127.0.0.1", rport)
        ]
        task = hub.client().add_task(prompt="whoami", backend="shell", host="natbox")
        done = hub.wait_status(task["id"], timeout=60)
        assert (done["status"], done["summary"]) == ("completed", spoke.user), (
            done["error"],
            hub.log()[-2000:],
        )
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(10)
        if agent.stdout is not None:
            agent.stdout.close()
        hub.stop()
