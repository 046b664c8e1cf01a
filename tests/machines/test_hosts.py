"""`dobby hosts check` and `dobby hosts bootstrap` against real sshd hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import write_inventory
from tests.fixtures.sshd import SshHost

pytestmark = pytest.mark.slow  # the CLI checking sshd hosts


def dobby(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    return subprocess.run(
        [sys.executable, "-m", "dobby", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_check_good_down_and_unknown_key_hosts(tmp_path: Path, ssh_hosts: list[SshHost]) -> None:
    h1, h2, h3 = ssh_hosts
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inv = write_inventory(
        tmp_path / "inv.yaml",
        [
            h1.inventory_entry(
                gpus="auto",
                env={
                    "PATH": f"{h1.fake_bin}:/usr/local/bin:/usr/bin:/bin",
                    "ANTHROPIC_API_KEY": "sk-ant-test",
                    "OPENAI_API_KEY": "sk-test",
                },
            ),
            h2.inventory_entry(),
            h3.inventory_entry(known_hosts=str(empty), backends=["shell"]),
        ],
    )
    h2.stop()
    res = dobby("hosts", "check", "--inventory", str(inv), "--json")
    assert res.returncode == 1, res.stderr
    reports = {r["host"]: r for r in json.loads(res.stdout)["hosts"]}
    good = checks(reports["h1"])
    assert reports["h1"]["ok"] is True
    assert {
        n: good[n]["status"] for n in ("ssh", "bash", "tmux", "git", "claude", "codex", "disk")
    } == dict.fromkeys(("ssh", "bash", "tmux", "git", "claude", "codex", "disk"), "ok")
    assert good["claude"]["message"].startswith("2.1.197")
    assert good["claude credentials"] == {
        "name": "claude credentials", "status": "ok", "message": "credentials: ANTHROPIC_API_KEY"
    }  # fmt: skip
    assert good["codex credentials"]["message"] == "credentials: OPENAI_API_KEY"
    assert good["gpus"]["status"] == "warn" and "not installed" in good["gpus"]["message"]
    assert good["shell rc"]["status"] in ("ok", "warn")

    down = checks(reports["h2"])
    assert reports["h2"]["ok"] is False
    assert down["ssh"]["status"] == "fail"
    assert "connection refused" in down["ssh"]["message"]
    assert f"sshd listening on port {h2.port}" in down["ssh"]["message"]

    unknown = checks(reports["h3"])
    assert reports["h3"]["ok"] is False and list(unknown) == ["host key"]
    message = unknown["host key"]["message"]
    assert f"[{h3.address}]:{h3.port}" in message and "SHA256:" in message
    assert f"ssh-keyscan -p {h3.port} {h3.address} >> {empty}" in message

    text = dobby("hosts", "check", "h1", "h2", "--inventory", str(inv))
    assert text.returncode == 1
    assert "✓ tmux" in text.stdout and "✗ ssh" in text.stdout
    assert "1/2 hosts ready; fix: h2" in text.stdout
    assert dobby("hosts", "check", "h1", "--inventory", str(inv)).returncode == 0


def test_check_warns_about_a_slow_bashrc(tmp_path: Path, ssh_hosts: list[SshHost]) -> None:
    h1 = ssh_hosts[0]
    rc = h1.home / ".bashrc"
    before = rc.read_bytes() if rc.exists() else None
    rc.write_text("sleep 0.3\n" + (before or b"").decode())
    try:
        inv = write_inventory(tmp_path / "inv.yaml", [h1.inventory_entry(backends=["shell"])])
        res = dobby("hosts", "check", "--inventory", str(inv), "--json")
        shell = checks(json.loads(res.stdout)["hosts"][0])["shell rc"]
        assert shell["status"] == "warn" and "[[ $- == *i* ]] || return" in shell["message"]
        assert res.returncode == 0  # a warning is not a failure
    finally:
        if before is None:
            rc.unlink()
        else:
            rc.write_bytes(before)


def test_bootstrap_creates_the_workdir_and_never_installs_silently(
    tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    tools = tmp_path / "tools"  # a PATH with bash and coreutils but no tmux and no git
    tools.mkdir()
    tools.chmod(0o755)
    for name in (
        "bash",
        "mkdir",
        "chmod",
        "dirname",
        "df",
        "awk",
        "id",
        "head",
        "sed",
        "sudo",
        "apt-get",
        "printf",
        "echo",
    ):
        found = subprocess.run(
            ["bash", "-c", f"command -v {name}"], capture_output=True, text=True
        ).stdout.strip()
        if found.startswith("/"):
            (tools / name).symlink_to(found)
    inv = write_inventory(
        tmp_path / "inv.yaml",
        [
            h1.inventory_entry(workdir="~/work/dobby"),
            h1.inventory_entry(name="bare", workdir="~/bare", env={"PATH": str(tools)}),
        ],
    )
    res = dobby("hosts", "bootstrap", "h1", "--inventory", str(inv))
    assert res.returncode == 0, res.stderr
    assert "✓ ~/work/dobby ready" in res.stdout and "tmux and git present" in res.stdout
    for sub in ("tasks", "repos", "worktrees"):
        assert (h1.home / "work" / "dobby" / sub).is_dir()
    assert oct((h1.home / "work" / "dobby").stat().st_mode & 0o777) == "0o700"

    bare = dobby("hosts", "bootstrap", "bare", "--inventory", str(inv))
    # Not root, no passwordless sudo: nothing Dobby may run; it says so and installs nothing.
    assert bare.returncode == 1
    assert "missing tmux git" in bare.stdout and "install them by hand" in bare.stdout


@pytest.mark.parametrize("args", [["hosts", "check", "nope"], ["hosts", "bootstrap", "nope"]])
def test_unknown_host_is_one_line_error(tmp_path: Path, args: list[str]) -> None:
    inv = write_inventory(tmp_path / "inv.yaml", [{"name": "local", "connection": "local"}])
    res = dobby(*args, "--inventory", str(inv))
    assert res.returncode == 1 and res.stderr.strip() == "error: unknown host 'nope'"


def test_check_through_the_hub(tmp_path: Path, ssh_hosts: list[SshHost]) -> None:
    from tests.fixtures.hub import HubProcess

    h1, h2 = ssh_hosts[:2]
    inv = write_inventory(
        tmp_path / "inv.yaml", [h1.inventory_entry(backends=["shell"]), h2.inventory_entry()]
    )
    h2.stop()
    hub = HubProcess(home=tmp_path / "home", inventory=inv).start()
    try:
        res = hub.cli("hosts", "check", "--hub", "--json")
        assert res.returncode == 1, res.stderr
        reports = {r["host"]: r for r in json.loads(res.stdout)["hosts"]}
        assert reports["h1"]["ok"] and checks(reports["h1"])["tmux"]["status"] == "ok"
        assert "connection refused" in checks(reports["h2"])["ssh"]["message"]
        one = hub.cli("hosts", "check", "--hub", "h1")
        assert one.returncode == 0 and "1/1 hosts ready" in one.stdout
        missing = hub.cli("hosts", "check", "--hub", "nope")
        assert missing.returncode == 1 and "unknown host 'nope'" in missing.stderr
    finally:
        hub.stop()
