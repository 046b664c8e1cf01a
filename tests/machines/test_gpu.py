"""GPUs end to end: a stand-in nvidia-smi on a real sshd host, GET /gpus, placement."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import BIN
from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process polling GPUs on sshd hosts

STAND_IN = BIN / "nvidia-smi"


@pytest.fixture
def fake_smi() -> Iterator[Path]:
    """Return a world-readable dir with bin/nvidia-smi and a state/ dir the stand-in reads."""
    root = Path(tempfile.mkdtemp(prefix="dobby-fake-smi-"))
    root.chmod(0o755)
    (root / "bin").mkdir(mode=0o755)
    shutil.copyfile(STAND_IN, root / "bin" / "nvidia-smi")
    (root / "bin" / "nvidia-smi").chmod(0o755)
    (root / "state").mkdir(mode=0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def hub_hosts(
    tmp_path: Path, ssh_hosts: list[SshHost], fake_smi: Path, local_entry: dict[str, Any]
) -> list[dict[str, Any]]:
    h1, h2 = ssh_hosts[:2]
    h1_env = {
        "PATH": f"{fake_smi}/bin:{h1.fake_bin}:/usr/local/bin:/usr/bin:/bin",
        "FAKE_NVIDIA_SMI_DIR": str(fake_smi / "state"),
    }
    # The hub's machine: NVML finds no driver here, so the nvidia-smi probe answers.
    local = {k: v for k, v in local_entry.items() if k != "env"}
    return [
        h1.inventory_entry(gpus=True, env=h1_env),
        h2.inventory_entry(gpus=True),
        {**local, "gpus": "auto", "backends": ["shell"]},
    ]


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"DOBBY_GPU_POLL_INTERVAL": "0.3"}


def poll(what: str, probe: Callable[[], Any], hub: HubProcess | None = None) -> Any:
    """Return probe()'s first truthy answer within a minute (with the hub's log if not)."""
    detail = (lambda: hub.log()[-3000:]) if hub else None
    return wait_until(probe, timeout=60, what=what, detail=detail)


def by_host(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in body["hosts"]}


def add(hub: HubProcess, *args: str) -> dict[str, Any]:
    return json.loads(hub.cli("add", *args, "--json", check=True).stdout)


def ssh(host: SshHost, command: str) -> str:
    res = subprocess.run(host.ssh_argv(command), capture_output=True, text=True, timeout=30)
    return res.stdout


def test_gpus_are_polled_matched_to_tasks_and_placed(
    hub: HubProcess, ssh_hosts: list[SshHost], fake_smi: Path
) -> None:
    h1 = ssh_hosts[0]
    client = hub.client()
    first = poll(
        "every GPU host polled",
        lambda: len([h for h in client.gpus()["hosts"] if h["checked_at"]]) == 3 and client.gpus(),
        hub=hub,
    )
    hosts = by_host(first)
    assert [g["index"] for g in hosts["h1"]["gpus"]] == [0, 1]
    assert hosts["h1"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert hosts["h1"]["gpus"][0]["memory_total"] == 81559
    assert all(g["free"] for g in hosts["h1"]["gpus"])
    assert hosts["h2"]["gpus"] == []
    assert hosts["h2"]["reason"] == "nvidia-smi is not installed (exit 127)"
    assert hosts["local"]["gpus"] == [] and hosts["local"]["source"] == "nvidia-smi"
    assert hosts["local"]["reason"] == "nvidia-smi is not installed (exit 127)"

    # A long "training job" holding one GPU: gets GPU 0 and CUDA_VISIBLE_DEVICES=0.
    train = add(
        hub, "echo cvd=$CUDA_VISIBLE_DEVICES; sleep 600", "--backend", "shell", "--gpus", "1"
    )
    train = hub.wait_status(train["id"], ("running",))
    assert (train["host"], train["gpu_indices"], train["gpus"]) == ("h1", [0], 1)
    assert "export CUDA_VISIBLE_DEVICES=0\n" in ssh(h1, f"cat ~/.dobby/tasks/{train['id']}/env")
    # The stand-in now reports a process of the task's session computing on GPU 0.
    pid_file = f"{h1.home}/.dobby/tasks/{train['id']}/pid"
    (fake_smi / "state" / "busy").write_text(f"0 {pid_file}\n")

    def gpu0() -> Any:
        g = by_host(client.gpus())["h1"]["gpus"][0]
        return g["tasks"] == [train["id"]] and g["utilization"] == 97 and g

    busy = poll("GPU 0 busy with the training task", gpu0, hub=hub)
    assert busy["utilization"] == 97 and busy["reserved_by"] == train["id"]
    assert busy["processes"][0]["used_memory"] == 40514 and not busy["free"]
    poll("the task's GPU memory", lambda: client.task(train["id"])["gpu_memory_mib"] == 40514)

    table = hub.cli("gpus", check=True).stdout
    line0 = next(ln for ln in table.splitlines() if ln.startswith("h1") and " 0 " in ln)
    assert f"task {train['id']}" in line0 and "97%" in line0 and "39.6/79.6 GiB" in line0
    assert "no GPU: nvidia-smi is not installed (exit 127)" in table
    status = hub.cli("status", check=True).stdout
    assert "h1 gpu0 39.6GiB" in status

    # Two GPUs wanted, one free: it waits, through several GPU polls.
    pair = add(hub, "[scenario:success] train on two", "--backend", "claude", "--gpus", "2")
    polls = client.gpus()["polls"]
    poll("three more GPU polls", lambda: client.gpus()["polls"] >= polls + 6)
    assert client.task(pair["id"])["status"] == "pending"
    # One GPU wanted: it goes to the free GPU 1 and sees only that one.
    single = add(hub, "[scenario:success] train on one", "--backend", "claude", "--gpus", "1")
    done = hub.wait_status(single["id"])
    assert (done["status"], done["host"], done["gpu_indices"]) == ("completed", "h1", [1])
    seen = json.loads(ssh(h1, f"cat ~/.dobby/tasks/{single['id']}/fake-agent.json"))
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert client.task(pair["id"])["status"] == "pending"

    # The training job ends: its GPU is released and the 2-GPU task starts on both.
    hub.cli("cancel", train["id"], check=True)
    pair_done = hub.wait_status(pair["id"], timeout=90)
    assert (pair_done["status"], pair_done["gpu_indices"]) == ("completed", [0, 1])
    seen = json.loads(ssh(h1, f"cat ~/.dobby/tasks/{pair['id']}/fake-agent.json"))
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    history = by_host(client.gpus(history=True))["h1"]["history"]
    assert history and {g["index"] for g in history[-1]["gpus"]} == {0, 1}


def test_gpu_hosts_without_gpus_explain_why(hub: HubProcess, fake_smi: Path) -> None:
    client = hub.client()
    (fake_smi / "state" / "mode").write_text("9\n")
    reason = "the NVIDIA driver is not loaded (exit 9)"
    h1 = poll(
        "the driver error", lambda: (h := by_host(client.gpus())["h1"])["reason"] == reason and h
    )
    assert h1["gpus"] == []
    (fake_smi / "state" / "mode").write_text("na\n")
    gpus = poll("[N/A] fields", lambda: by_host(client.gpus())["h1"]["gpus"])
    assert gpus[0]["utilization"] is None and gpus[0]["power_draw"] is None
    assert gpus[0]["name"] == "NVIDIA GeForce RTX 3090" and gpus[0]["free"]
    # A GPU task for a host without GPUs waits (the host may get some); it never starts there.
    waiting = add(hub, "x", "--backend", "shell", "--gpus", "1", "--host", "local")
    polls = client.gpus()["polls"]
    poll("more GPU polls", lambda: client.gpus()["polls"] >= polls + 6)
    assert client.task(waiting["id"])["status"] == "pending"
    hub.cli("cancel", waiting["id"], check=True)
