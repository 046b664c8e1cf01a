"""`dobby init` driven through a real terminal (tmux send-keys / capture-pane), then a hub."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.hub import HubProcess, free_port, make_git_project
from tests.fixtures.sshd import SshHost
from tests.fixtures.terminal import Terminal

pytestmark = pytest.mark.slow  # the wizard in a terminal, a hub process


def test_init_wizard_end_to_end_and_rerun_keeps_files(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    project = make_git_project(tmp_path / "app")
    hub_home = tmp_path / "hubhome"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": "xterm-256color",
        "DOBBY_HOME": str(hub_home),
        # The code under test (a work tree run with PYTHONPATH, not the installed copy).
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    term = Terminal(env=env, cwd=str(project))
    init = f"python3 -m dobby init --known-hosts {h1.known_hosts}"
    try:
        term.send(init)
        term.wait_for("Hub URL [http://127.0.0.1:8420]: ")
        term.send(url)
        term.wait_for("Connect Slack? [y/N]: ")
        term.send("y")
        term.wait_for("Slack bot token (xoxb-…): ")
        term.send("xoxb-test-123")
        term.wait_for("empty: HTTP mode): ")
        term.send("")
        term.wait_for("Slack signing secret (for the HTTP Events mode): ")
        term.send("s3cr3t-signing")
        term.wait_for("Add an SSH host to the inventory? [y/N]: ")
        term.send("y")
        for prompt, answer in (
            ("Host name: ", "h1"),
            ("Address (name or IP): ", h1.address),
            ("SSH port [22]: ", str(h1.port)),
            ("User [", h1.user),
            ("Identity file (empty: your ssh agent / default keys): ", str(h1.identity_file)),
        ):
            term.wait_for(prompt)
            term.send(answer)
        term.wait_for("Add another SSH host? [y/N]: ")
        term.send("")
        screen = term.wait_for("Register ")
        assert "✓ tmux" in screen and "✓ ssh" in screen  # the new host was checked
        term.send("")
        term.wait_for("Project name [app]: ")
        term.send("")
        screen = term.wait_for("Next: `dobby start`")
        assert "no hub answers at" in screen and "recorded in" in screen
        assert '"mcpServers"' in screen
        assert "xoxb-test-123" not in screen and "s3cr3t" not in screen  # secrets never echo

        dotenv = project / ".env"
        assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
        text = dotenv.read_text()
        assert f"DOBBY_URL='{url}'" in text and "SLACK_BOT_TOKEN='xoxb-test-123'" in text
        assert "SLACK_SIGNING_SECRET='s3cr3t-signing'" in text and "SLACK_APP_TOKEN" not in text
        inventory = yaml.safe_load((project / "inventory" / "hosts.yaml").read_text())
        assert inventory["hosts"]["local"] == {"connection": "local"}
        assert inventory["hosts"]["h1"]["address"] == h1.address
        assert inventory["hosts"]["h1"]["port"] == h1.port
        config = yaml.safe_load((hub_home / "dobby.yaml").read_text())
        assert config == {"port": port, "inventory": str(project / "inventory")}
        before = {p: p.read_bytes() for p in (dotenv, project / "inventory" / "hosts.yaml")}

        # Again, answering differently: every changed file is offered, and kept on "no".
        # Every wait looks past the first run's text (`after`): its prompts are still on screen.
        screen = term.screen()
        mark, rerun = screen.count("Hub URL"), len(screen)
        term.send(init)
        screen = term.wait_for(f"Hub URL [{url}]: ", after=rerun)  # the default comes from .env
        assert screen.count("Hub URL") == mark + 1
        term.send("")
        for prompt, answer in (
            ("Connect Slack? [y/N]: ", "n"),
            ("Add an SSH host to the inventory? [y/N]: ", "n"),
            (".env exists. Overwrite it? [y/N]: ", "n"),
            ("hosts.yaml exists. Overwrite it? [y/N]: ", ""),
        ):
            term.wait_for(prompt, after=rerun)
            term.send(answer)
        screen = term.wait_for("Register ", after=rerun)
        assert f"unchanged {hub_home / 'dobby.yaml'}" in screen[rerun:]
        assert f"kept {dotenv}" in screen[rerun:]
        term.send("")
        term.wait_for("Project name [app]: ", after=rerun)
        term.send("")
        term.wait_for("Next: `dobby start`", timeout=30, after=rerun)
        assert {p: p.read_bytes() for p in before} == before
    finally:
        term.close()

    # The hub starts with the wizard's config and registers the recorded project.
    hub = HubProcess(home=hub_home, inventory=None, port=port).start()
    try:
        projects = hub.client().projects()["projects"]
        assert [(p["name"], p["path"]) for p in projects] == [("app", str(project))]
        assert not (hub_home / "pending-projects.yaml").exists()
        assert {h["name"] for h in hub.client().hosts()["hosts"]} == {"local", "h1"}
    finally:
        hub.stop()


def test_init_non_interactive_registers_with_a_running_hub(tmp_path: Path) -> None:
    hub = HubProcess(home=tmp_path / "home", inventory=None).start()
    project = make_git_project(tmp_path / "svc")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "dobby",
                "init",
                "--yes",
                "--hub-url",
                hub.url,
                "--home",
                str(hub.home),
                "--host",
                "gpu-1=ubuntu@10.0.0.5:2222",
                "--no-check",
                "--project",
                "svc",
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert f"registered project svc → {project}" in res.stdout
        assert f"kept {hub.home / 'dobby.yaml'}" not in res.stdout
        assert json.loads(res.stdout[res.stdout.index("{") : res.stdout.rindex("}") + 1])
        hosts = yaml.safe_load((project / "inventory" / "hosts.yaml").read_text())["hosts"]
        assert hosts["gpu-1"] == {"address": "10.0.0.5", "port": 2222, "user": "ubuntu"}
        again = subprocess.run(
            [sys.executable, "-m", "dobby", "init", "--yes", "--no-project"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 0, again.stderr
        assert f"kept {project / 'inventory' / 'hosts.yaml'} (exists; --force replaces it)" in (
            again.stdout
        )
        assert "gpu-1" in (project / "inventory" / "hosts.yaml").read_text()
    finally:
        hub.stop()
