"""The Slurm scripts and parsers against the real one-node cluster (tests/fixtures/slurm.py),
reached over a real sshd by a non-root user the way a ``connection: slurm`` host is."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dobby.core.slurm import SlurmSettings
from dobby.hostside import scripts
from dobby.hostside import slurm as hs
from dobby.hostside.scripts import PROMPT
from dobby.machines.slurm.capacity import capacity, parse_sinfo
from dobby.machines.slurm.jobs import (
    JobInfo,
    jobs_purged,
    parse_scontrol_jobs,
    parse_squeue,
    parse_submit,
    sacct_unavailable,
)
from dobby.machines.slurm.outcome import Action, job_outcome
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import SshdCluster, SshHost, user_processes
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a real Slurm cluster's daemons and jobs, over sshd


@pytest.fixture(scope="module")
def login() -> Iterator[SshHost]:
    """A real sshd (the cluster's login node) with a non-root user of its own."""
    with SshdCluster(count=1, user_prefix="dobbyslurm") as cluster:
        yield cluster.hosts[0]


@pytest.fixture
def host(slurm: SlurmCluster, login: SshHost) -> SshHost:
    """The login host with an empty queue, an idle node and no leftover user processes."""
    slurm.reset()
    login.reset_user()
    return login


def ssh(host: SshHost, command: str) -> subprocess.CompletedProcess[str]:
    """Run command on the login node as the test user over real SSH."""
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def bundle(host: SshHost, task_id: str, command: str) -> scripts.TaskPaths:
    """Write a shell task's prompt, env, run.sh and job.sh as the runner would."""
    paths = scripts.TaskPaths(workdir=str(host.home / ".dobby"), task_id=task_id)
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    Path(paths.worktree).mkdir(parents=True)
    (task_dir / "prompt.md").write_text(command)
    (task_dir / "env").write_text(scripts.render_env({"GREETING": "hi"}))
    argv = ["bash", "-c", PROMPT]
    run_sh = scripts.render_run_sh(paths=paths, argv=argv, timeout=None, cwd=paths.worktree)
    (task_dir / "run.sh").write_text(run_sh)
    (task_dir / hs.JOB_SCRIPT).write_text(hs.render_job_script(paths=paths))
    user = pwd.getpwnam(host.user)
    for root, dirs, files in os.walk(host.home / ".dobby"):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, user.pw_uid, user.pw_gid)
    return paths


def submit(host: SshHost, paths: scripts.TaskPaths, settings: SlurmSettings, **kw: object) -> str:
    argv = hs.sbatch_argv(paths=paths, settings=settings, **kw)  # type: ignore[arg-type]
    done = ssh(host, hs.render_submit(paths=paths, argv=argv))
    assert done.returncode == 0, done.stderr
    return parse_submit(done.stdout)


def squeue(host: SshHost, *jobs: str) -> dict[str, JobInfo]:
    done = ssh(host, hs.render_job_query(jobs))
    assert done.returncode == 0, done.stderr
    return parse_squeue(done.stdout)


def wait_state(host: SshHost, job: str, states: set[str], timeout: float = 60) -> JobInfo:
    def reached() -> JobInfo | None:
        info = squeue(host, job).get(job)
        return info if info is not None and info.state in states else None

    return wait_until(reached, timeout=timeout, what=f"job {job} to be {' or '.join(states)}")


def detail(host: SshHost, job: str) -> JobInfo:
    done = ssh(host, hs.render_job_detail(job))
    assert done.returncode == 0, done.stderr
    return parse_scontrol_jobs(done.stdout)[job]


def test_a_gpu_task_runs_in_its_job_and_ends_with_run_sh_status(host: SshHost) -> None:
    # The job holds its GPU until the test has looked at it (a sleep could end first under load).
    wait = "until [ -e $PWD/../go ]; do sleep 0.1; done"
    command = f'echo "CVD=$CUDA_VISIBLE_DEVICES $GREETING $PWD"; {wait}; exit 3'
    paths = bundle(host, "t1", command)
    job = submit(host, paths, SlurmSettings(partition="gpu", time_limit="5"), gpus=1)
    assert Path(paths.file("slurm_job")).read_text() == f"{job}\n"
    running = wait_state(host, job, {"RUNNING"})
    assert running.nodes and detail(host, job).gpu_indices == (0,)
    Path(paths.worktree, "..", "go").touch()
    ended = wait_state(host, job, {"FAILED", "COMPLETED"})
    assert (ended.state, ended.reason) == ("FAILED", "NonZeroExitCode")
    info = detail(host, job)
    assert (info.exit_status, info.name) == (3, "dobby-t1")
    assert Path(paths.file("out.jsonl")).read_text() == f"CVD=0 hi {paths.worktree}\n"
    exit_code = int(Path(paths.file("exit")).read_text())
    outcome = job_outcome(info, exit_code=exit_code)
    assert (outcome.action, outcome.exit_code) == (Action.COLLECT, 3)
    assert not any(name.startswith("tmux") for _, name in user_processes(host.user))


def test_pending_reasons_capacity_and_scancel(host: SshHost, slurm: SlurmCluster) -> None:
    settings = SlurmSettings(gpus_per_task=2, time_limit="5")
    jobs = []
    for name in ("p1", "p2", "p3"):
        jobs.append(submit(host, bundle(host, name, "echo up; sleep 300"), settings))
    wait_state(host, jobs[0], {"RUNNING"})
    # the scheduler gives each waiting job its reason within a second or two
    states = wait_until(
        lambda: (
            (q := squeue(host, *jobs))
            and [q[j].reason for j in jobs[1:]] == ["Resources", "Priority"]
            and q
        ),
        what="the waiting jobs' reasons Resources and Priority",
    )
    waiting = job_outcome(states[jobs[2]], exit_code=None)
    assert waiting.action is Action.WAIT
    assert waiting.message == "queued behind jobs of higher priority (Priority)"

    done = ssh(host, hs.render_capacity("gpu"))
    assert done.returncode == 0, done.stderr
    room = capacity(parse_sinfo(done.stdout), "gpu")
    assert (room.nodes, room.gpus, room.gpus_free, room.max_gpus_per_node) == (1, 2, 0, 2)

    for job in reversed(jobs):  # the waiting ones first: none of them starts meanwhile
        assert ssh(host, hs.render_cancel(job)).returncode == 0
    for job in jobs:
        wait_state(host, job, {"CANCELLED"})
    outcome = job_outcome(detail(host, jobs[0]), exit_code=None)
    assert (outcome.action, outcome.status) == (Action.FINISH, "cancelled")
    wait_until(
        lambda: not any(name.startswith("tmux") for _, name in user_processes(host.user)),
        what="tmux to end with its cancelled job",
    )


def test_extra_args_with_metacharacters_reach_slurm_verbatim(host: SshHost) -> None:
    marker = host.home / "pwned"
    words = (f"--comment=$(touch {marker})`touch {marker}`;touch {marker}",)
    paths = bundle(host, "m1", "true")
    job = submit(host, paths, SlurmSettings(extra_args=words))
    wait_state(host, job, {"COMPLETED"})
    shown = ssh(host, f"scontrol show job -o {job}").stdout
    assert f"Comment=$(touch {marker})`touch {marker}`;touch {marker}" in shown
    assert not marker.exists()


def test_an_unknown_partition_fails_at_submit_with_slurms_message(host: SshHost) -> None:
    paths = bundle(host, "u1", "true")
    argv = hs.sbatch_argv(paths=paths, settings=SlurmSettings(partition="nope"))
    done = ssh(host, hs.render_submit(paths=paths, argv=argv))
    assert done.returncode == 1 and done.stdout == ""
    assert "sbatch: error: invalid partition specified: nope" in done.stderr
    assert not Path(paths.file("slurm_job")).exists()


def test_without_accounting_sacct_says_so_and_purged_ids_are_recognised(host: SshHost) -> None:
    done = ssh(host, hs.render_sacct(["1"]))
    assert done.returncode == 1 and sacct_unavailable(done.stderr)
    done = ssh(host, hs.render_job_query(["999999"]))
    assert done.returncode == 1 and jobs_purged(done.stderr)


def test_a_job_whose_answer_was_lost_is_found_by_file_or_name(host: SshHost) -> None:
    paths = bundle(host, "f1", "sleep 30")
    assert ssh(host, hs.render_find_job(paths)).stdout == ""  # never submitted
    job = submit(host, paths, SlurmSettings())
    assert ssh(host, hs.render_find_job(paths)).stdout.strip() == job  # from slurm_job
    Path(paths.file(hs.JOB_ID_FILE)).unlink()  # killed between sbatch and writing the file
    assert ssh(host, hs.render_find_job(paths)).stdout.strip() == job  # by its name
    assert ssh(host, hs.render_cancel(job)).returncode == 0
