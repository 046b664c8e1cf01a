"""``connection: slurm`` end to end: a hub process, the real one-node Slurm cluster
(tests/fixtures/slurm.py, 2 CPUs, 2 fake GPUs, partitions debug and gpu) and its login node,
a real sshd with a non-root user. Tasks run as Slurm jobs whose script keeps run.sh in tmux.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import SshdCluster, SshHost, user_processes
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process, sshd and a real Slurm cluster


@pytest.fixture(scope="module")
def login(fake_bin: Path) -> Iterator[SshHost]:
    """The cluster's login node: a real sshd with a non-root user and the fake agents."""
    with SshdCluster(count=1, user_prefix="dobbyslurm", fake_bin=fake_bin) as cluster:
        yield cluster.hosts[0]


def entry(login: SshHost, name: str, **slurm: Any) -> dict[str, Any]:
    """Return an inventory host for the login node with these ``slurm:`` settings."""
    return login.inventory_entry(
        name=name, connection="slurm", max_agents=60, gpus=True, labels=["hpc"],
        slurm={"partition": "debug", "time_limit": "5", **slurm},
    )  # fmt: skip


@pytest.fixture
def hub_hosts(slurm: SlurmCluster, login: SshHost) -> list[dict[str, Any]]:
    """Slurm hosts on the test cluster, which has an idle node and no job at the start."""
    slurm.reset()
    login.reset_user()
    return [
        entry(login, "hpc"),
        entry(login, "hpc-gpu", partition="gpu"),
        entry(login, "hpc-short", time_limit="1"),
        entry(login, "hpc-bad", partition="nope"),
        entry(login, "hpc-acct", account="no-such-account"),
        entry(login, "hpc-meta", extra_args=[f"--comment=$(touch {login.home}/pwned);`id`|x"]),
    ]


@pytest.fixture
def hub_env() -> dict[str, str]:
    return {"DOBBY_MAX_CONCURRENT_AGENTS": "100"}


def add(hub: HubProcess, prompt: str, host: str = "hpc", **fields: Any) -> str:
    body = {"prompt": prompt, "backend": "shell", "host": host, **fields}
    return str(hub.client().add_task(**body)["id"])


def wait_for(
    hub: HubProcess, task_id: str, check: Callable[[dict[str, Any]], object], what: str,
    timeout: float = 60,
) -> dict[str, Any]:  # fmt: skip
    """Poll the task until ``check(task)`` holds; return it."""
    seen: dict[str, Any] = {}

    def holds() -> dict[str, Any] | None:
        seen.update(hub.client().task(task_id))
        return dict(seen) if check(seen) else None

    return wait_until(
        holds, timeout=timeout, what=what,
        detail=lambda: f"{json.dumps(seen)[:1500]}\n{hub.log()[-3000:]}",
    )  # fmt: skip


def log_text(hub: HubProcess, task_id: str) -> str:
    return str(hub.client().logs(task_id).get("text", ""))


def ssh(host: SshHost, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def block_node(login: SshHost) -> str:
    """Take both CPUs of the node with a job outside Dobby; return its id."""
    done = ssh(login, "sbatch --parsable -c 2 --wrap 'sleep 600' --output=/dev/null")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def job_state(slurm: SlurmCluster, job: str) -> str:
    return slurm.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"]).stdout.strip()


def wait_job(slurm: SlurmCluster, job: str, state: str) -> None:
    wait_until(lambda: job_state(slurm, job) == state, what=f"job {job} to be {state}")


def no_tmux_left(login: SshHost) -> None:
    wait_until(
        lambda: not any(name.startswith("tmux") for _, name in user_processes(login.user)),
        what="tmux to end with its job", detail=lambda: user_processes(login.user),
    )  # fmt: skip


def test_a_shell_task_waits_in_slurms_queue_then_runs_and_completes(
    hub: HubProcess, login: SshHost, slurm: SlurmCluster
) -> None:
    blocker = block_node(login)
    task_id = add(hub, 'echo "job=$SLURM_JOB_ID node=$SLURM_JOB_NODELIST"; echo done')
    waiting = wait_for(
        hub, task_id, lambda t: "(Resources)" in (t.get("slurm_state") or ""),
        "the task pending in Slurm with Slurm's reason",
    )  # fmt: skip
    assert (waiting["status"], waiting["waiting_on"]) == ("pending", "slurm_queue")
    job = waiting["slurm_job"]
    assert job and job_state(slurm, job) == "PENDING"
    slurm.run(["scancel", blocker])
    task = hub.wait_status(task_id)
    assert task["status"] == "completed", task
    assert (task["exit_code"], task["slurm_job"], task["host"]) == (0, job, "hpc")
    assert task["slurm_state"].startswith("COMPLETED") or task["slurm_state"].startswith("RUNNING")
    assert log_text(hub, task_id) == f"job={job} node={slurm.node}\ndone\n"
    assert job_state(slurm, job) == "COMPLETED"
    no_tmux_left(login)


def test_a_replayed_claude_task_runs_as_a_job(hub: HubProcess) -> None:
    task_id = str(hub.client().add_task(prompt="say hi", backend="claude", host="hpc")["id"])
    task = hub.wait_status(task_id, timeout=90)
    assert task["status"] == "completed", task
    assert task["slurm_job"] and task["session_id"] and task["summary"]
    assert task["cost_usd"] is not None and task["cost_usd"] > 0


def test_gpus_come_from_slurm(hub: HubProcess, slurm: SlurmCluster) -> None:
    one = add(hub, 'echo "CVD=$CUDA_VISIBLE_DEVICES"; sleep 2', host="hpc-gpu", gpus=1)
    two = add(hub, 'echo "CVD=$CUDA_VISIBLE_DEVICES"', host="hpc-gpu", gpus=2)
    running = wait_for(hub, one, lambda t: t["gpu_indices"], "the GPU Slurm gave the task")
    assert running["gpu_indices"] == [0]  # scontrol show job -d: GRES=gpu:1(IDX:0)
    first = hub.wait_status(one, timeout=90)
    second = hub.wait_status(two, timeout=90)
    assert (first["status"], second["status"]) == ("completed", "completed")
    assert log_text(hub, one) == "CVD=0\n"
    assert log_text(hub, two) == "CVD=0,1\n"  # it waited in Slurm's queue for both GPUs
    shown = slurm.run(["scontrol", "show", "job", "-o", first["slurm_job"]]).stdout
    view = next(h for h in hub.client().gpus()["hosts"] if h["host"] == "hpc-gpu")
    assert (view["source"], len(view["gpus"]), view["slurm"]["partitions"]) == (
        "slurm", 2, ["gpu"],
    )  # fmt: skip
    assert "TresPerNode=gres:gpu:1" in shown and "Partition=gpu" in shown


def test_over_time_ends_with_slurms_timeout(hub: HubProcess, login: SshHost) -> None:
    task_id = add(hub, "echo start; sleep 300", host="hpc-short")
    task = hub.wait_status(task_id, timeout=180)
    assert (task["status"], task["reason"]) == ("failed", "timeout"), task
    assert "reached its Slurm time limit" in task["error"] and "TIMEOUT" in task["error"]
    assert log_text(hub, task_id) == "start\n"
    no_tmux_left(login)


def test_cancel_by_dobby_scancels_running_and_queued_jobs(
    hub: HubProcess, login: SshHost, slurm: SlurmCluster
) -> None:
    running = add(hub, "echo up; sleep 300", host="hpc", gpus=0)
    started = wait_for(hub, running, lambda t: t["status"] == "running", "the task running")
    blocker = block_node(login)  # the second task waits behind the first and the blocker
    queued = add(hub, "echo never")
    wait_for(
        hub, queued, lambda t: t.get("slurm_job") and t["waiting_on"] == "slurm_queue",
        "the second task in Slurm's queue",
    )  # fmt: skip
    for task_id in (running, queued):
        assert hub.client().cancel(task_id)["status"] == "cancelled"
    for task_id in (running, queued):
        wait_job(slurm, hub.client().task(task_id)["slurm_job"], "CANCELLED")
    assert started["slurm_job"]
    slurm.run(["scancel", blocker])
    no_tmux_left(login)
    assert log_text(hub, queued) == ""


def test_scancel_from_outside_cancels_the_task_and_says_so(
    hub: HubProcess, slurm: SlurmCluster
) -> None:
    task_id = add(hub, "echo up; sleep 300")
    task = wait_for(hub, task_id, lambda t: t["status"] == "running", "the task running")
    slurm.run(["scancel", task["slurm_job"]])  # an administrator, not Dobby
    task = hub.wait_status(task_id)
    assert task["status"] == "cancelled"
    assert "cancelled in Slurm outside Dobby" in task["error"]


def test_node_failure_submits_the_task_again_once(hub: HubProcess, slurm: SlurmCluster) -> None:
    task_id = add(hub, 'echo "run on $SLURM_JOB_ID"; sleep 3')
    first = wait_for(hub, task_id, lambda t: t["status"] == "running", "the task running")
    slurm.run(["scontrol", "update", f"nodename={slurm.node}", "state=down", "reason=dobby test"])
    task = hub.wait_status(task_id, timeout=120)
    assert task["status"] == "completed", task
    assert task["slurm_job"] != first["slurm_job"]
    (attempt,) = task["attempts"]
    assert attempt["slurm_job"] == first["slurm_job"] and attempt["reason"] == "host_lost"
    assert "NODE_FAIL" in attempt["error"] and attempt["requeued_by"] == "slurm"
    assert log_text(hub, task_id) == f"run on {task['slurm_job']}\n"


def test_hub_killed_while_jobs_wait_and_run_readopts_every_job(
    hub: HubProcess, login: SshHost, slurm: SlurmCluster
) -> None:
    ids = [add(hub, f"echo start {n}; sleep 4; echo end {n}") for n in range(5)]
    wait_for(
        hub, ids[0], lambda t: sum(
            hub.client().task(i)["status"] == "running" for i in ids
        ) == 2 and all(hub.client().task(i).get("slurm_job") for i in ids),
        "two tasks running and three queued in Slurm",
    )  # fmt: skip
    before = {i: hub.client().task(i) for i in ids}
    assert sorted(t["status"] for t in before.values()) == ["pending"] * 3 + ["running"] * 2
    hub.kill()
    hub.start()
    for n, task_id in enumerate(ids):
        task = hub.wait_status(task_id, timeout=120)
        assert task["status"] == "completed", task
        assert task["slurm_job"] == before[task_id]["slurm_job"]  # adopted, never resubmitted
        assert task["attempts"] == []
        assert log_text(hub, task_id) == f"start {n}\nend {n}\n"


def test_a_batch_of_fifty_becomes_fifty_jobs(hub: HubProcess, slurm: SlurmCluster) -> None:
    tasks = [{"name": f"t{n}", "prompt": f"echo {n}"} for n in range(50)]
    batch = hub.client().add_batch(
        name="fifty", tasks=tasks, defaults={"backend": "shell", "host": "hpc"}
    )
    ids = [t["id"] for t in hub.client().batch(batch["id"])["tasks"]]
    assert len(ids) == 50
    jobs = set()
    for n, task_id in enumerate(ids):
        task = hub.wait_status(task_id, timeout=300)
        assert task["status"] == "completed", task
        assert log_text(hub, task_id) == f"{n}\n"
        jobs.add(task["slurm_job"])
    assert len(jobs) == 50


def test_after_chains_run_in_order_on_slurm(hub: HubProcess) -> None:
    first = add(hub, "sleep 1; echo one")
    second = add(hub, "echo two", after=[first])
    done = hub.wait_status(second, timeout=90)
    assert done["status"] == "completed"
    assert done["started_at"] >= hub.client().task(first)["finished_at"]


def test_bad_input_fails_at_submit_or_executes_nothing(hub: HubProcess, login: SshHost) -> None:
    bad = hub.wait_status(add(hub, "echo hi", host="hpc-bad"))
    assert (bad["status"], bad["reason"]) == ("failed", "dispatch_error")
    assert "sbatch: error: invalid partition specified: nope" in bad["error"]
    # Without accounting storage this cluster accepts any account (a real one refuses it).
    account = hub.wait_status(add(hub, "echo hi", host="hpc-acct"))
    assert account["status"] == "completed"
    meta = hub.wait_status(add(hub, "echo hi", host="hpc-meta"))
    assert meta["status"] == "completed"
    assert not (login.home / "pwned").exists()


def test_attach_command_reaches_the_session_in_the_job(hub: HubProcess, login: SshHost) -> None:
    task_id = add(hub, "echo up; sleep 300")
    task = wait_for(hub, task_id, lambda t: t["status"] == "running", "the task running")
    job = task["slurm_job"]
    shown = hub.cli("attach", task_id, "--print", check=True).stdout.strip()
    assert shown.endswith(
        f"'srun --jobid={job} --overlap --pty tmux -L dobby-{job} attach -t dobby-{task_id}'"
    )
    listed = ssh(login, f"srun --jobid={job} --overlap tmux -L dobby-{job} ls")
    assert listed.stdout.startswith(f"dobby-{task_id}: 1 windows"), listed.stderr
    hub.client().cancel(task_id)


def test_project_results_branch_artifacts_and_follow_up(hub: HubProcess, tmp_path: Path) -> None:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    script = "echo hello > greeting.txt && mkdir -p out && echo '{\"ok\": 1}' > out/report.json"
    task_id = add(hub, script, project="app", artifacts=["out/*.json"])
    task = hub.wait_status(task_id, timeout=90)
    assert task["status"] == "completed", (task["error"], task["collect_error"])
    assert task["branch"] == f"dobby/{task_id}"
    assert [a["name"] for a in task["artifacts"]] == ["out/report.json"]
    assert [f["path"] for f in task["diff_stat"]["files"]] == ["greeting.txt", "out/report.json"]
    detail = hub.client().detail_status(task_id)
    assert detail["status"] == "completed"
    parent = hub.wait_status(
        str(hub.client().add_task(prompt="create hello", project="app", backend="claude",
                                  host="hpc")["id"]), timeout=90,
    )  # fmt: skip
    assert parent["status"] == "completed" and parent["session_id"], parent
    child = hub.wait_status(
        str(hub.client().add_task(prompt="now the edge cases", resume=parent["id"])["id"]),
        timeout=90,
    )
    assert child["status"] == "completed", child
    assert child["summary"] == "Follow-up answered: hello.txt still exists."
    assert (child["host"], child["session_id"]) == ("hpc", parent["session_id"])
    assert child["slurm_job"] not in (None, parent["slurm_job"])
    assert child["base_commit"] == parent["head_commit"]


def test_hub_killed_while_sbatch_answers_finds_the_job_by_its_name(
    hub: HubProcess, login: SshHost
) -> None:
    # The job exists, its answer never comes back: the hub dies first (and the submit command
    # after it, writing no slurm_job file)
    slow = login.home / "slowbin"
    slow.mkdir(exist_ok=True)
    (slow / "sbatch").write_text(
        '#!/bin/bash\n/usr/bin/sbatch "$@" >/dev/null || exit $?\ntouch "$HOME/submitted"\n'
        'sleep 3\ntouch "$HOME/answered"\nexit 1\n'
    )
    (slow / "sbatch").chmod(0o755)
    rc = login.home / ".bashrc"
    rc.write_text(f'export PATH="{slow}:$PATH"\n')
    try:
        task_id = add(hub, "echo adopted")
        wait_until((login.home / "submitted").exists, what="sbatch to run")
        hub.kill()
        wait_until((login.home / "answered").exists, what="the lost answer")
        assert not (login.home / ".dobby" / "tasks" / task_id / "slurm_job").exists()
    finally:
        rc.unlink()
        (login.home / "submitted").unlink(missing_ok=True)
        (login.home / "answered").unlink(missing_ok=True)
    hub.start()
    task = hub.wait_status(task_id, timeout=60)
    assert task["status"] == "completed", task
    assert task["attempts"] == [] and log_text(hub, task_id) == "adopted\n"
    names = ssh(login, "squeue -h -t all -o %j").stdout.split()
    assert names.count(f"dobby-{task_id}") == 1  # submitted once, adopted by its job name
