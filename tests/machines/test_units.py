"""Pure parts of the machines features: nvidia-smi parsing, free GPUs, placement, checks, seeds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dobby.backends import get_backend
from dobby.cli.init import parse_host_spec, render_env_file, render_hub_config
from dobby.core.errors import NotFound, ValidationError
from dobby.core.models import Host, Task
from dobby.machines import gpu
from dobby.machines.checks import FAIL, OK, SKIP, WARN, install_command, interpret, parse_facts
from dobby.runner.interactive import (
    seed_claude_json,
    seed_claude_settings,
    seed_codex_toml,
)
from dobby.scheduler.capacity import HostSlot, check_placeable, choose_session_host, eligible
from dobby.scheduler.plan import PlanInput, plan
from tests.fixtures import BIN

H100 = "NVIDIA H100 80GB HBM3"
U0 = "GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"
U1 = "GPU-9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"
STAND_IN = BIN / "nvidia-smi"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f"0, {U0}, {H100}, 0, 1, 81559, 31, 69.52",
            gpu.Gpu(0, U0, H100, 0.0, 1, 81559, 31.0, 69.52),
        ),
        (
            f"1, {U1}, NVIDIA GeForce RTX 3090, [N/A], 5, 24576, [N/A], [Not Supported]",
            gpu.Gpu(1, U1, "NVIDIA GeForce RTX 3090", None, 5, 24576, None, None),
        ),
        (
            f"3, {U1}, Tesla T4, 100, [N/A], [N/A], 80, 70.1",
            gpu.Gpu(3, U1, "Tesla T4", 100.0, None, None, 80.0, 70.1),
        ),
        ("garbage", None),
        ("", None),
        (f"x, {U0}, A, 1, 2, 3, 4, 5", None),
    ],
)
def test_parse_gpus_table(line: str, expected: gpu.Gpu | None) -> None:
    assert gpu.parse_gpus(line) == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12345, " + U0 + ", 40524", [gpu.GpuProcess(12345, U0, 40524)]),
        ("12345, " + U0 + ", [N/A]", [gpu.GpuProcess(12345, U0, None)]),
        ("", []),
        (
            "1, " + U0 + ", 10\n2, " + U1 + ", 20",
            [gpu.GpuProcess(1, U0, 10), gpu.GpuProcess(2, U1, 20)],
        ),
        ("no running processes found", []),
    ],
)
def test_parse_apps_table(text: str, expected: list[gpu.GpuProcess]) -> None:
    assert gpu.parse_apps(text) == expected


@pytest.mark.parametrize(
    ("rc", "reason"),
    [
        (127, "nvidia-smi is not installed (exit 127)"),
        (9, "the NVIDIA driver is not loaded (exit 9)"),
        (6, "no NVIDIA GPU found (exit 6)"),
        (4, "nvidia-smi failed (exit 4): boom"),
    ],
)
def test_probe_exit_statuses_mean_no_gpu(rc: int, reason: str) -> None:
    parsed = gpu.parse_gpu_probe(f"@rc {rc}\n@gpus\nboom\n")
    assert parsed.gpus == [] and parsed.reason == reason


def test_probe_matches_processes_to_tasks_by_session() -> None:
    text = (
        "@rc 0\n@gpus\n"
        f"0, {U0}, {H100}, 97, 40524, 81559, 71, 612.4\n"
        f"1, {U1}, {H100}, 0, 1, 81559, 31, 69.5\n"
        f"@apps\n4242, {U0}, 40514\n777, {U0}, 100\n"
        "@sids\n4242 4000\n777 9\n"
        "@tasks\n/home/u/.dobby/tasks/abcd1234/pid 4000\n"
    )
    parsed = gpu.parse_gpu_probe(text)
    assert [g.index for g in parsed.gpus] == [0, 1]
    assert [(p.pid, p.task_id) for p in parsed.processes] == [(4242, "abcd1234"), (777, None)]
    assert gpu.task_memory(parsed) == {"abcd1234": 40514}


def test_probe_script_runs_the_stand_in_in_every_mode(tmp_path: Path) -> None:
    """The probe, run by bash against the stand-in nvidia-smi, parses in every mode."""
    state = tmp_path / "state"
    state.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nvidia-smi").symlink_to(STAND_IN)
    task_dir = tmp_path / "work" / "tasks" / "t1"
    task_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["setsid", "sleep", "60"])
    try:
        (task_dir / "pid").write_text(f"{sleeper.pid}\n")  # setsid: its pid is its session
        (state / "busy").write_text(f"1 {task_dir / 'pid'}\n")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_NVIDIA_SMI_DIR": str(state)}
        probe = gpu.render_gpu_probe(env=env, workdir=str(tmp_path / "work"), task_ids=["t1"])

        def run() -> gpu.HostGpus:
            out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
            return gpu.parse_gpu_probe(out.stdout)

        ok = run()
        assert [(g.index, g.utilization, g.memory_used) for g in ok.gpus] == [
            (0, 0.0, 1),
            (1, 97.0, 40524),
        ]
        assert [(p.pid, p.gpu_uuid, p.task_id) for p in ok.processes] == [(sleeper.pid, U1, "t1")]
        assert gpu.gpus_free(ok, []) == [0]
        (state / "mode").write_text("na\n")
        na = run()
        assert na.gpus[0].utilization is None and na.gpus[0].power_draw is None
        for mode, rc in (("127", 127), ("9", 9), ("6", 6)):
            (state / "mode").write_text(mode)
            assert run().reason == gpu.NO_GPU_EXITS[rc]
        missing = dict(env, PATH="/usr/bin:/bin")
        probe = gpu.render_gpu_probe(env=missing, workdir="/x")
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        assert gpu.parse_gpu_probe(out.stdout).reason == gpu.NO_GPU_EXITS[127]
    finally:
        sleeper.kill()
        sleeper.wait()


def _g(index: int, util: float | None = 0, used: int | None = 1) -> gpu.Gpu:
    return gpu.Gpu(index, f"GPU-{index}", "G", util, used, 81559)


@pytest.mark.parametrize(
    ("gpus", "reserved", "free"),
    [
        ([_g(0), _g(1)], [], [0, 1]),
        ([_g(0), _g(1)], [0], [1]),
        ([_g(0, util=97), _g(1)], [], [1]),
        ([_g(0, used=40000), _g(1)], [], [1]),
        ([_g(0, util=None, used=None), _g(1, util=21)], [], [0]),
        ([_g(1), _g(0)], [], [0, 1]),
        ([], [], []),
    ],
)
def test_gpus_free_table(gpus: list[gpu.Gpu], reserved: list[int], free: list[int]) -> None:
    assert gpu.gpus_free(gpu.HostGpus(gpus=gpus), reserved) == free


def test_gpus_free_without_data_is_nothing() -> None:
    assert gpu.gpus_free(None, []) == []


def test_gpu_env_pins_pci_order() -> None:
    assert gpu.gpu_env([0, 2]) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0,2"}


def _host(name: str, gpus: bool | str = True, max_agents: int = 4) -> Host:
    return Host(name=name, connection="local", gpus=gpus, max_agents=max_agents)


def test_placement_respects_free_gpus_and_reserves_them() -> None:
    a = Task(prompt="a", backend="shell", gpus=1, created_at="2026-01-01T00:00:01Z")
    b = Task(prompt="b", backend="shell", gpus=2, created_at="2026-01-01T00:00:02Z")
    c = Task(prompt="c", backend="shell", gpus=1, created_at="2026-01-01T00:00:03Z")
    plain = Task(prompt="d", backend="shell", created_at="2026-01-01T00:00:04Z")
    slots = [HostSlot(host=_host("g1"), gpus_free=(0, 1)), HostSlot(host=_host("cpu", False))]
    out = plan(PlanInput(pending=[a, b, c, plain], hosts=slots, running_total=0, max_total=9))
    starts = {d.task_id: (d.host, d.gpus) for d in out.starts}
    assert starts[a.id] == ("g1", [0])
    assert b.id not in starts  # only one GPU left after a: the 2-GPU task waits
    assert starts[c.id] == ("g1", [1])
    assert starts[plain.id][1] == []


def test_slurm_hosts_queue_gpu_tasks_in_slurm_without_reserving_gpus() -> None:
    hpc = Host(name="hpc", connection="slurm", address="login", gpus=True, max_agents=3)
    tasks = [
        Task(prompt=str(n), backend="shell", gpus=2, created_at=f"2026-01-01T00:00:0{n}Z")
        for n in range(5)
    ]
    slot = HostSlot(host=hpc, gpus_free=())  # Slurm holds every GPU right now
    out = plan(PlanInput(pending=tasks, hosts=[slot], running_total=0, max_total=9))
    # Slurm queues the jobs until GPUs free up; max_agents caps Dobby's jobs in its queue
    assert [(d.host, d.gpus) for d in out.starts] == [("hpc", [])] * 3
    busy = HostSlot(host=hpc, running=3)  # three jobs queued or running already
    assert plan(PlanInput(pending=tasks, hosts=[busy], running_total=3, max_total=9)).starts == []


def test_gpu_tasks_need_a_gpu_host() -> None:
    task = Task(prompt="x", backend="shell", gpus=2)
    assert not eligible(task, _host("cpu", False))
    assert eligible(task, _host("gpu", "auto"))
    with pytest.raises(Exception, match="2 GPU"):
        check_placeable(task, [_host("cpu", False)])


# --- hosts check ------------------------------------------------------------------------------

GOOD = {
    "bash": "5.2.15(1)-release",
    "tmux": "tmux 3.3a",
    "git": "git version 2.39.2",
    "claude": "2.1.197 (Claude Code)",
    "codex": "codex-cli 0.169.0",
    "disk_kib": str(50 << 20),
    "writable": "1",
    "workdir_exists": "1",
    "gpu_rc": "0",
    "gpu_lines": [f"0, {U0}, {H100}, 0, 1, 81559, 31, 69.52"],
}


@pytest.mark.parametrize(
    ("changes", "host_kw", "name", "status", "part"),
    [
        ({}, {}, "tmux", OK, "3.3a"),
        ({"tmux": ""}, {}, "tmux", FAIL, "bootstrap"),
        ({"claude": ""}, {}, "claude", FAIL, "npm install -g @anthropic-ai/claude-code"),
        ({"claude": ""}, {"backends": ["shell"]}, "claude", SKIP, "not in"),
        ({"disk_kib": "1000"}, {}, "disk", FAIL, "free"),
        ({"writable": "0"}, {}, "workdir", FAIL, "permissions"),
        ({}, {"gpus": True}, "gpus", OK, f"1 × {H100}"),
        ({"gpu_rc": "127"}, {"gpus": True}, "gpus", FAIL, "not installed"),
        ({"gpu_rc": "9"}, {"gpus": "auto"}, "gpus", WARN, "driver"),
        ({}, {"gpus": False}, "gpus", SKIP, "gpus: false"),
    ],
)
def test_interpret_checks_table(
    changes: dict, host_kw: dict, name: str, status: str, part: str
) -> None:
    host = Host(name="h", address="a", **host_kw)
    checks = {c.name: c for c in interpret(host, {**GOOD, **changes}, shell_ms=3.0)}
    assert checks[name].status == status
    assert part in checks[name].message


@pytest.mark.parametrize(
    ("facts", "claude", "codex"),
    [
        ({}, "no credentials", "no credentials"),
        ({"cred_vars": "ANTHROPIC_API_KEY,OPENAI_API_KEY"}, "ANTHROPIC_API_KEY", "OPENAI_API_KEY"),
        ({"cred_vars": "CLAUDE_CODE_OAUTH_TOKEN"}, "CLAUDE_CODE_OAUTH_TOKEN", "no credentials"),
        ({"cred_claude_file": "1"}, "~/.claude/.credentials.json", "no credentials"),
        ({"cred_claude_helper": "1"}, "apiKeyHelper", "no credentials"),
        ({"cred_claude_keychain": "1"}, "Keychain", "no credentials"),
        ({"cred_vars": "CLAUDE_CODE_USE_BEDROCK"}, "CLAUDE_CODE_USE_BEDROCK", "no credentials"),
        ({"cred_codex_login": "chatgpt"}, "no credentials", "codex login (ChatGPT)"),
        ({"cred_codex_login": "api_key"}, "no credentials", "codex login (API key)"),
        ({"cred_codex_file": "1", "cred_codex_login": "unknown"}, "no", "~/.codex/auth.json"),
        ({"cred_codex_env_keys": "FAKE_KEY:1"}, "no", "FAKE_KEY (config.toml env_key)"),
        ({"cred_codex_env_keys": "FAKE_KEY:0"}, "no", "reads its key from FAKE_KEY, which is not"),
    ],
)
def test_credentials_table(facts: dict, claude: str, codex: str) -> None:
    checks = {c.name: c for c in interpret(Host(name="h", address="a"), {**GOOD, **facts})}
    for agent, part in (("claude", claude), ("codex", codex)):
        check = checks[f"{agent} credentials"]
        assert part in check.message
        assert check.status == (FAIL if check.message.startswith(("no ", "config")) else OK)


def test_credentials_are_checked_only_for_the_hosts_backends() -> None:
    checks = {c.name for c in interpret(Host(name="h", address="a", backends=["shell"]), GOOD)}
    assert not checks & {"claude credentials", "codex credentials"}


def test_interpret_flags_slow_shell_rc() -> None:
    checks = {c.name: c for c in interpret(Host(name="h", address="a"), GOOD, shell_ms=180.0)}
    assert checks["shell rc"].status == WARN and "~/.bashrc" in checks["shell rc"].message


def test_parse_facts_keeps_gpu_lines() -> None:
    facts = parse_facts("tmux=tmux 3.3a\ngpu_rc=0\ngpu_line=0, a, b\ngpu_line=1, c, d\n")
    assert facts["tmux"] == "tmux 3.3a" and facts["gpu_lines"] == ["0, a, b", "1, c, d"]


@pytest.mark.parametrize(
    ("pm", "root", "sudo", "expected"),
    [
        (
            "apt-get",
            True,
            False,
            "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tmux git",
        ),
        ("dnf", False, True, "sudo -n sh -c 'dnf install -y tmux git'"),
        ("dnf", False, False, None),
        ("brew", False, False, "brew install tmux git"),
        ("", True, True, None),
    ],
)
def test_install_command_table(pm: str, root: bool, sudo: bool, expected: str | None) -> None:
    assert install_command(pm, ["tmux", "git"], is_root=root, sudo=sudo) == expected


# --- remote: argv and pre-seeding -------------------------------------------------------------


def test_interactive_argv() -> None:
    from dobby.core.models import Permissions
    from dobby.hostside.scripts import PROMPT

    claude, codex, shell = (get_backend(name) for name in ("claude", "codex", "shell"))
    assert claude.interactive_argv(permissions=Permissions.EDITS, model=None, prompt=False) == [
        "claude",
        "--permission-mode",
        "acceptEdits",
    ]
    assert codex.interactive_argv(permissions=Permissions.BYPASS, model="gpt-5.5", prompt=True) == [
        "codex",
        "--dangerously-bypass-approvals-and-sandbox",
        "-m",
        "gpt-5.5",
        PROMPT,
    ]
    assert shell.interactive_argv(permissions=Permissions.PLAN, model=None, prompt=True) == ["bash"]


def test_seed_claude_json_adds_only_what_is_missing() -> None:
    fresh = seed_claude_json(None, worktree="/w/1", key_tail="k" * 20)
    assert fresh == {
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "customApiKeyResponses": {"approved": ["k" * 20]},
        "projects": {"/w/1": {"hasTrustDialogAccepted": True}},
    }
    mine = {
        "theme": "light",
        "hasCompletedOnboarding": False,
        "numStartups": 7,
        "projects": {"/w/1": {"hasTrustDialogAccepted": False, "x": 1}},
    }
    assert seed_claude_json(mine, worktree="/w/1", key_tail=None) is None  # nothing clobbered
    other = seed_claude_json(mine, worktree="/w/2", key_tail=None)
    assert other is not None and other["theme"] == "light" and other["numStartups"] == 7
    assert other["projects"]["/w/1"] == mine["projects"]["/w/1"]
    assert other["projects"]["/w/2"] == {"hasTrustDialogAccepted": True}
    assert seed_claude_settings({"skipDangerousModePermissionPrompt": False}) is None
    assert seed_claude_settings({"a": 1}) == {"a": 1, "skipDangerousModePermissionPrompt": True}


def test_seed_codex_toml_appends_trust_once() -> None:
    import tomllib

    first = seed_codex_toml('model = "gpt-5.5"', worktree="/w/1")
    assert first is not None
    assert tomllib.loads(first) == {
        "model": "gpt-5.5",
        "projects": {"/w/1": {"trust_level": "trusted"}},
    }
    assert seed_codex_toml(first, worktree="/w/1") is None
    second = seed_codex_toml(first, worktree="/w/2")
    assert second is not None and set(tomllib.loads(second)["projects"]) == {"/w/1", "/w/2"}


# --- init ----------------------------------------------------------------------------------------


def test_init_renderers() -> None:
    assert parse_host_spec("gpu-1=ubuntu@10.0.0.5:2222") == {
        "name": "gpu-1",
        "address": "10.0.0.5",
        "port": 2222,
        "user": "ubuntu",
    }
    assert parse_host_spec("b=box")["user"] is None
    with pytest.raises(Exception, match="NAME=USER@ADDRESS"):
        parse_host_spec("nonsense")
    env = render_env_file({"DOBBY_URL": "http://x", "SLACK_BOT_TOKEN": "it's", "EMPTY": None})
    assert "DOBBY_URL='http://x'" in env and "SLACK_BOT_TOKEN='it'\\''s'" in env
    assert "EMPTY" not in env
    out = subprocess.run(
        ["bash", "-c", env + 'printf %s "$SLACK_BOT_TOKEN"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "it's"
    config = render_hub_config(url="http://127.0.0.1:9000", inventory=Path("/i"), api_key=None)
    assert "port: 9000" in config and "inventory: /i" in config and "host:" not in config


def test_deploy_renderers() -> None:
    from dobby.hostside.deploy import render_start, render_unit

    unit = render_unit(base="/home/u/.dobby-deploy", port=8420)
    assert "ExecStart=/home/u/.dobby-deploy/venv/bin/dobby start --host 127.0.0.1 --port 8420" in (
        unit
    )
    assert "Environment=DOBBY_HOME=/home/u/.dobby-deploy/home" in unit
    assert "WantedBy=default.target" in unit
    systemd = render_start(base="/b", port=9, supervisor="systemd")
    assert "systemctl --user restart dobby-hub.service" in systemd and "new-session" not in systemd
    assert "tmux new-session -d -s dobby-hub" in render_start(base="/b", port=9)


def test_read_nvml_without_a_driver_says_so() -> None:
    from dobby.machines.gpumonitor import NvmlUnavailable, read_nvml

    with pytest.raises(NvmlUnavailable):  # no NVIDIA driver on the test machines
        read_nvml()


def test_read_nvml_maps_devices_and_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from dobby.machines.gpumonitor import read_nvml

    class NVMLError(Exception):
        pass

    def not_supported(*_: object) -> None:
        raise NVMLError("Not Supported")

    mib = 1 << 20
    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: [U0, U1][h],
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(
            used=40524 * mib, total=81559 * mib
        ),
        nvmlDeviceGetPowerUsage=lambda h: 612400 if h == 0 else not_supported(),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=97),
        nvmlDeviceGetTemperature=lambda h, sensor: 71,
        nvmlDeviceGetComputeRunningProcesses=lambda h: (
            [types.SimpleNamespace(pid=4242, usedGpuMemory=40514 * mib)] if h == 0 else []
        ),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus, procs = read_nvml()
    assert gpus[0] == gpu.Gpu(0, U0, H100, 97.0, 40524, 81559, 71.0, 612.4)
    assert gpus[1].power_draw is None and gpus[1].uuid == U1
    assert procs == [gpu.GpuProcess(4242, U0, 40514)]


def test_gpu_rows_show_users_and_reasons() -> None:
    from dobby.cli.machines import gpu_rows

    body = {
        "hosts": [
            {
                "host": "g",
                "gpus": [
                    {
                        "index": 0,
                        "name": H100,
                        "utilization": 97.0,
                        "memory_used": 40524,
                        "memory_total": 81559,
                        "temperature": 71.0,
                        "power_draw": 612.4,
                        "processes": [{"pid": 1, "task_id": "t1"}],
                        "tasks": ["t1"],
                        "reserved_by": "t1",
                        "busy": True,
                    },
                    {
                        "index": 1,
                        "name": H100,
                        "utilization": None,
                        "memory_used": 1,
                        "memory_total": 81559,
                        "temperature": None,
                        "power_draw": None,
                        "processes": [],
                        "tasks": [],
                        "reserved_by": "t2",
                        "busy": False,
                    },
                    {
                        "index": 2,
                        "name": H100,
                        "utilization": 50.0,
                        "memory_used": 9000,
                        "memory_total": 81559,
                        "temperature": 60.0,
                        "power_draw": 300.0,
                        "processes": [{"pid": 77, "task_id": None}],
                        "tasks": [],
                        "reserved_by": None,
                        "busy": True,
                    },
                ],
            },
            {"host": "cpu", "gpus": [], "reason": "nvidia-smi is not installed (exit 127)"},
        ]
    }
    rows = gpu_rows(body)
    assert rows[0] == ["g", "0", H100, "97%", "39.6/79.6 GiB", "71°C", "612 W", "task t1"]
    assert rows[1][3] == "-" and rows[1][-1] == "reserved t2"
    assert rows[2][-1] == "busy pid 77"
    assert rows[3] == [
        "cpu",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "no GPU: nvidia-smi is not installed (exit 127)",
    ]


# --- remote: which host a session starts on (scheduler.capacity, pure) -------------------------


def _slot(name: str, running: int = 0, reachable: bool | None = True, **kw: Any) -> HostSlot:
    return HostSlot(host=Host(name=name, **kw), running=running, reachable=reachable)


@pytest.mark.parametrize(
    ("slots", "backend", "wanted", "expected"),
    [
        ([_slot("a", 2), _slot("b", 1)], "claude", None, "b"),  # the least busy
        ([_slot("b", 1), _slot("a", 1)], "claude", None, "a"),  # ties by name
        ([_slot("a", 0, reachable=False), _slot("b", 5)], "claude", None, "b"),
        ([_slot("a", 0, reachable=None), _slot("b", 5)], "claude", None, "a"),  # not probed yet
        ([_slot("a", 0, backends=["shell"]), _slot("b", 3)], "codex", None, "b"),
        ([_slot("a", 0), _slot("b", 9, reachable=False)], "claude", "b", "b"),  # asked for
    ],
)
def test_choose_session_host(
    slots: list[HostSlot], backend: str, wanted: str | None, expected: str
) -> None:
    assert choose_session_host(Task(prompt="x", backend=backend), slots, wanted) == expected


def test_choose_session_host_says_why_not() -> None:
    task = Task(prompt="x", backend="codex")
    with pytest.raises(NotFound, match="unknown host 'zz'"):
        choose_session_host(task, [_slot("a")], "zz")
    with pytest.raises(ValidationError, match="host a does not run codex"):
        choose_session_host(task, [_slot("a", backends=["claude"])], "a")
    with pytest.raises(ValidationError, match="no reachable host runs codex"):
        choose_session_host(task, [_slot("a", reachable=False)], None)
