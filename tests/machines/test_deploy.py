"""`dobby deploy`: install a hub on a loopback sshd host, reach it through `ssh -L`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from dobby.offline.deploy import build_wheel
from tests.fixtures.hub import free_port, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.sshd import free_port as free_port_on
from tests.fixtures.vultr import FakeVultr
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # deploys a hub over ssh: builds a wheel, makes a venv on the host


def dobby(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DOBBY_", "VULTR_"))}
    return subprocess.run(
        [sys.executable, "-m", "dobby", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=900,
    )


def test_wheel_holds_the_package_and_its_metadata(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "dobby/cli/main.py" in names and "dobby/hub/static/index.html" in names
        assert not any("__pycache__" in n for n in names)
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(info).decode()
        assert "Requires-Dist: asyncssh" in metadata and "pytest" not in metadata
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
        assert "dobby = dobby.cli.main:main" in entry_points


def test_deploy_then_reach_the_hub_through_a_port_forward(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h3 = ssh_hosts[2]
    shutil.rmtree(h3.home / ".dobby-deploy-test", ignore_errors=True)
    inv = write_inventory(tmp_path / "inv.yaml", [h3.inventory_entry()])
    remote_port, local_port = free_port_on("127.0.0.1"), free_port()
    common = ["--inventory", str(inv), "--port", str(remote_port), "--dir", "~/.dobby-deploy-test"]
    res = dobby("deploy", "h3", "--local-port", str(local_port), *common)
    assert res.returncode == 0, res.stdout + res.stderr
    forward_line = next(ln for ln in res.stdout.splitlines() if ln.strip().startswith("ssh "))
    forward = shlex.split(forward_line)
    assert forward[:3] == ["ssh", "-N", "-L"]
    assert forward[3] == f"{local_port}:127.0.0.1:{remote_port}"
    assert f"export DOBBY_URL=http://127.0.0.1:{local_port}" in res.stdout
    tunnel = subprocess.Popen(
        [*forward[:-1], "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", forward[-1]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def health_through_tunnel() -> Any:
            assert tunnel.poll() is None, tunnel.stderr.read() if tunnel.stderr else ""
            try:
                url = f"http://127.0.0.1:{local_port}/health"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return json.loads(resp.read())
            except (urllib.error.URLError, OSError):
                return None

        health = wait_until(
            health_through_tunnel, timeout=30, what="/health through the tunnel", interval=0.1
        )
        assert health is not None and health["ok"] is True and health["hosts"] == 1
        # No --port: status finds the port the hub was deployed with (recorded on the host).
        where = ["--inventory", str(inv), "--dir", "~/.dobby-deploy-test"]
        status = dobby("deploy", "status", "h3", *where)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "hub on h3: running" in status.stdout, status.stdout + status.stderr
        assert f"port {remote_port})" in status.stdout
        logs = dobby("deploy", "logs", "h3", *where)
        assert "dobby hub listening on http://127.0.0.1:" in logs.stdout
        # Upgrade in place: the hub restarts and answers again.
        again = dobby("deploy", "h3", *common)
        assert again.returncode == 0, again.stderr
        stopped = dobby("deploy", "stop", "h3", *common)
        assert "stopped the hub on h3" in stopped.stdout
        after = dobby("deploy", "status", "h3", *where)
        assert after.returncode == 1 and "hub on h3: stopped" in after.stdout
    finally:
        tunnel.terminate()
        tunnel.wait(10)
        if tunnel.stderr is not None:
            tunnel.stderr.close()
        dobby("deploy", "stop", "h3", *common)


def test_deploy_usage_errors(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", [{"name": "local", "connection": "local"}])
    res = dobby("deploy", "frobnicate", "x", "--inventory", str(inv))
    assert res.returncode == 2 and "usage: dobby deploy HOST" in res.stderr
    res = dobby("deploy", "local", "--inventory", str(inv))
    assert res.returncode == 1 and "not an ssh host" in res.stderr


def test_deploy_with_vultr_creates_the_instance_then_deploys(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h3 = ssh_hosts[2]
    api = FakeVultr(api_key="test-key", address=h3.address, pending_polls=2)
    known = tmp_path / "known_hosts"  # empty: the new machine's key is pinned on first contact
    inv_dir = tmp_path / "inventory"
    remote_port = free_port_on("127.0.0.1")
    common = ["--port", str(remote_port), "--dir", "~/.dobby-deploy-test"]
    env = {"VULTR_API_KEY": "test-key", "VULTR_API_URL": api.url}
    try:
        res = dobby(
            "deploy",
            "vhub",
            "--provider",
            "vultr",
            "--region",
            "fra",
            "--ssh-key",
            f"{h3.identity_file}.pub",
            "--user",
            h3.user,
            "--ssh-port",
            str(h3.port),
            "--known-hosts",
            str(known),
            "--inventory",
            str(inv_dir),
            *common,
            env=env,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        created = [b for m, p, b in api.calls if (m, p) == ("POST", "/v2/instances")]
        assert created == [
            {
                "region": "fra",
                "plan": "vc2-1c-1gb",
                "os_id": 2136,
                "label": "vhub",
                "hostname": "vhub",
                "sshkey_id": ["key-1"],
                "backups": "disabled",
            }
        ]
        assert api.keys[0]["ssh_key"] == Path(f"{h3.identity_file}.pub").read_text().strip()
        host = yaml.safe_load((inv_dir / "vhub.yaml").read_text())["hosts"]["vhub"]
        assert (host["address"], host["port"], host["trust_on_first_use"]) == (
            h3.address,
            h3.port,
            True,
        )
        assert f"[{h3.address}]:{h3.port} ssh-ed25519" in known.read_text()
        status = dobby("deploy", "status", "vhub", "--inventory", str(inv_dir), *common)
        assert "hub on vhub: running" in status.stdout, status.stdout + status.stderr
        # Again: the inventory has it, so no second instance is created.
        again = dobby(
            "deploy", "vhub", "--provider", "vultr", "--inventory", str(inv_dir), *common, env=env
        )
        assert again.returncode == 0, again.stderr
        assert len(api.instances) == 1
        bad = dobby(
            "deploy",
            "other",
            "--provider",
            "vultr",
            "--inventory",
            str(inv_dir),
            "--ssh-key",
            f"{h3.identity_file}.pub",
            *common,
            env={**env, "VULTR_API_KEY": "wrong"},
        )
        assert bad.returncode == 1 and "HTTP 401: Invalid API token." in bad.stderr
    finally:
        dobby("deploy", "stop", "vhub", "--inventory", str(inv_dir), *common)
        api.close()
