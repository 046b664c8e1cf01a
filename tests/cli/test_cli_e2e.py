"""The CLI against a real hub process: what a newcomer meets in the first hour (issue 14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.hub import HubProcess, free_port, make_git_project

pytestmark = pytest.mark.slow  # hub processes

ROOT = Path(__file__).resolve().parents[2]


def dobby(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would: its own process, a chosen directory and environment."""
    return subprocess.run(
        [sys.executable, "-m", "dobby", *args],
        env=env,
        cwd=cwd,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    env["PYTHONPATH"] = str(ROOT)  # this work tree's dobby, wherever the command runs
    return {**env, **extra}


def test_start_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = dobby(
            "start", "--port", str(port), env=user_env(DOBBY_HOME=str(tmp_path)), cwd=tmp_path
        )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: port {port} on 127.0.0.1 is already in use")
    assert last.endswith(f"use another port: --port {port + 1}")


def test_start_prints_the_dashboard_url(tmp_path: Path) -> None:
    hub = HubProcess(home=tmp_path / "home", inventory=None).start()
    try:
        hub.wait_healthy()
        assert f"Dashboard: http://127.0.0.1:{hub.port}/dashboard" in hub.log()
    finally:
        hub.stop()


def test_register_again_keeps_the_settings_and_says_what_changed(tmp_path: Path) -> None:
    hub = HubProcess(home=tmp_path / "home", inventory=None).start()
    first, moved = make_git_project(tmp_path / "proj"), make_git_project(tmp_path / "moved")
    try:
        hub.cli("register", str(first), "--name", "proj", check=True)
        hub.cli(
            "projects", "set", "proj", "max_concurrent=2", "context=be brief",
            "auto_chain=true", "default_priority=high", check=True,
        )  # fmt: skip
        again = hub.cli("register", str(first), "--name", "proj", check=True)
        assert again.stdout.strip() == f"project proj already registered → {first}; nothing changed"
        move = hub.cli("register", str(moved), "--name", "proj", check=True)
        assert move.stdout.strip() == (
            f"updated project proj: path {str(first)!r} → {str(moved)!r} "
            "(its other settings are kept)"
        )
        (project,) = json.loads(hub.cli("projects", "--json", check=True).stdout)["projects"]
        assert project["path"] == str(moved)
        assert (project["max_concurrent"], project["context"]) == (2, "be brief")
        assert (project["auto_chain"], project["default_priority"]) == (True, "high")
        context = hub.cli("register", str(moved), "--name", "proj", "--context", "", check=True)
        assert "context 'be brief' → ''" in context.stdout
    finally:
        hub.stop()


@pytest.fixture
def hub_home(tmp_path: Path) -> Path:
    """A hub home whose dobby.yaml names an inventory of two hosts (this machine, twice)."""
    inventory = tmp_path / "elsewhere" / "hosts.yaml"
    inventory.parent.mkdir()
    hosts = {
        name: {"connection": "local", "workdir": str(tmp_path / name), "backends": ["shell"]}
        for name in ("local", "nb1")
    }
    inventory.write_text(yaml.safe_dump({"hosts": hosts}), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text(f"inventory: {inventory}\n", encoding="utf-8")
    return home


def test_hosts_check_and_bootstrap_use_the_hubs_inventory(tmp_path: Path, hub_home: Path) -> None:
    # From a directory with no ./inventory, with the hub running, then without one.
    somewhere = tmp_path / "somewhere"
    somewhere.mkdir()
    hub = HubProcess(home=hub_home, inventory=None).start()
    env = user_env(DOBBY_HOME=str(hub_home), DOBBY_URL=hub.url)
    try:
        res = dobby("hosts", "check", env=env, cwd=somewhere)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "2/2 hosts ready" in res.stdout and "no hub answers" not in res.stderr
        res = dobby("hosts", "bootstrap", "nb1", env=env, cwd=somewhere)
        assert res.returncode == 0, res.stderr
        assert f"✓ {tmp_path / 'nb1'} ready" in res.stdout
        assert (tmp_path / "nb1" / "tasks").is_dir()
    finally:
        hub.stop()
    res = dobby("hosts", "check", "--json", env=env, cwd=somewhere)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"no hub answers at {hub.url}: working from this machine" in res.stderr
    assert [r["host"] for r in json.loads(res.stdout)["hosts"]] == ["local", "nb1"]
    res = dobby("hosts", "bootstrap", "local", env=env, cwd=somewhere)
    assert res.returncode == 0 and (tmp_path / "local" / "repos").is_dir()
    res = dobby("hosts", "check", "--hub", env=env, cwd=somewhere)
    assert res.returncode == 1 and "cannot reach the hub" in res.stderr


def test_hosts_check_with_no_hub_reads_dobby_inventory(tmp_path: Path, hub_home: Path) -> None:
    # DOBBY_INVENTORY wins over dobby.yaml, as for `dobby start`.
    only = tmp_path / "only.yaml"
    only.write_text(
        yaml.safe_dump({"hosts": {"solo": {"connection": "local", "backends": ["shell"]}}}),
        encoding="utf-8",
    )
    env = user_env(
        DOBBY_HOME=str(hub_home),
        DOBBY_INVENTORY=str(only),
        DOBBY_URL=f"http://127.0.0.1:{free_port()}",
    )
    res = dobby("hosts", "check", "--json", env=env, cwd=tmp_path)
    assert [r["host"] for r in json.loads(res.stdout)["hosts"]] == ["solo"], res.stderr
