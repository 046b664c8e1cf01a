"""Smoke tests of the real single-node Slurm cluster (tests/fixtures/slurm.py), used over a real
sshd by a non-root user the way Dobby's ``connection: slurm`` hosts will be.

Needs root and Slurm installed (``apt-get install -y slurmctld slurmd slurm-client munge``);
without Slurm these tests fail with that hint instead of being skipped.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.slurm import SlurmCluster, SlurmError, parse_fields
from tests.fixtures.sshd import SshdCluster, SshHost, user_processes

# run.sh inside tmux for the job's whole lifetime (see docs/SLURM-NOTES.md): a private tmux
# socket per job, the job waits while the session lives, and its EXIT trap ends the tmux server
# (proctrack/linuxproc does not track the daemonized server, so scancel alone would leave it).
JOB_SCRIPT = """#!/bin/bash
S="dobby-$SLURM_JOB_ID"
trap 'tmux -L "$S" kill-server 2>/dev/null' EXIT
trap 'exit 143' TERM INT HUP
tmux -L "$S" new-session -d -s "$S" -x 200 -y 50 \\
  "bash $HOME/run.sh > $HOME/run-$SLURM_JOB_ID.log 2>&1; echo \\$? > $HOME/exit-$SLURM_JOB_ID"
while tmux -L "$S" has-session -t "$S" 2>/dev/null; do sleep 1; done
exit "$(cat "$HOME/exit-$SLURM_JOB_ID" 2>/dev/null || echo 1)"
"""


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """Run the one-node Slurm cluster for the whole session."""
    try:
        cluster = SlurmCluster()
    except SlurmError as exc:
        problem = str(exc)  # failed outside the except block: no chained traceback
    else:
        with cluster:
            yield cluster
        return
    pytest.fail(f"cannot start the test Slurm cluster: {problem}", pytrace=False)


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


def ssh(host: SshHost, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run command on the login node as the test user over real SSH."""
    done = subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"ssh {command!r} exited {done.returncode}: {done.stderr}")
    return done


def write_job(host: SshHost, run_sh: str) -> None:
    """Put job.sh (JOB_SCRIPT) and run.sh into the user's home on the login node."""
    ssh(host, f"cat > job.sh <<'EOF'\n{JOB_SCRIPT}EOF\ncat > run.sh <<'EOF'\n{run_sh}EOF")


def job_state(host: SshHost, job: str) -> str:
    """Return the job's state as squeue shows it (finished jobs included)."""
    return ssh(host, f"squeue -h -t all -j {job} -o %T").stdout.strip()


def wait_state(host: SshHost, job: str, states: set[str], timeout: float = 60.0) -> str:
    """Poll until the job is in one of states; return that state."""
    deadline = time.monotonic() + timeout
    while (state := job_state(host, job)) not in states:
        assert time.monotonic() < deadline, f"job {job} still {state!r} after {timeout}s"
        time.sleep(0.3)
    return state


def test_gpu_job_over_ssh_runs_as_the_user_with_one_gpu(host: SshHost) -> None:
    submit = ssh(
        host,
        "sbatch --parsable --job-name=dobby-smoke --gres=gpu:1 --time=5 "
        "--output=smoke-%j.out --wrap 'echo CVD=$CUDA_VISIBLE_DEVICES; id -un; pwd'",
    )
    job = submit.stdout.strip()
    assert re.fullmatch(r"\d+", job), submit.stdout
    assert wait_state(host, job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}) == "COMPLETED"
    assert ssh(host, f"cat smoke-{job}.out").stdout.split() == ["CVD=0", host.user, str(host.home)]
    fields = parse_fields(ssh(host, f"scontrol show job -o {job}").stdout)
    assert fields["JobState"] == "COMPLETED"
    assert fields["ExitCode"] == "0:0"
    assert fields["JobName"] == "dobby-smoke"
    assert fields["UserId"].startswith(f"{host.user}(")


def test_tmux_session_lives_as_long_as_the_job_and_scancel_ends_it(
    host: SshHost, slurm: SlurmCluster
) -> None:
    write_job(host, "echo CVD=$CUDA_VISIBLE_DEVICES\nsleep 300\n")
    job = ssh(host, "sbatch --parsable --gres=gpu:1 job.sh").stdout.strip()
    wait_state(host, job, {"RUNNING"})
    session = f"dobby-{job}"
    deadline = time.monotonic() + 20
    while True:  # the batch script starts tmux a moment after the job turns RUNNING
        listed = ssh(host, f"srun --jobid {job} --overlap tmux -L {session} ls", check=False)
        if listed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert listed.stdout.startswith(f"{session}: 1 windows"), listed.stderr
    assert ssh(host, f"cat run-{job}.log").stdout == "CVD=0\n"
    time.sleep(2)  # the job does not end while run.sh still runs in tmux
    assert job_state(host, job) == "RUNNING"

    ssh(host, f"scancel {job}")
    assert wait_state(host, job, {"CANCELLED", "COMPLETED", "FAILED"}) == "CANCELLED"
    deadline = time.monotonic() + 15
    while any(name.startswith("tmux") for _, name in user_processes(host.user)):
        assert time.monotonic() < deadline, f"tmux survived: {user_processes(host.user)}"
        time.sleep(0.2)


def test_job_exit_code_follows_the_command_run_in_tmux(host: SshHost) -> None:
    write_job(host, "echo hello\nexit 3\n")
    job = ssh(host, "sbatch --parsable job.sh").stdout.strip()
    assert wait_state(host, job, {"COMPLETED", "FAILED", "CANCELLED"}) == "FAILED"
    fields = parse_fields(ssh(host, f"scontrol show job -o {job}").stdout)
    assert (fields["JobState"], fields["Reason"], fields["ExitCode"]) == (
        "FAILED",
        "NonZeroExitCode",
        "3:0",
    )
    assert ssh(host, f"cat run-{job}.log").stdout == "hello\n"


def test_a_tmux_server_started_in_a_job_outlives_it_until_reset(
    host: SshHost, slurm: SlurmCluster
) -> None:
    # proctrack/linuxproc loses the daemonized tmux server: the job completes, tmux lives on
    job = ssh(host, "sbatch --parsable --wrap 'tmux -L esc new -d \"sleep 300\"'").stdout.strip()
    assert wait_state(host, job, {"COMPLETED", "FAILED"}) == "COMPLETED"
    assert ssh(host, "tmux -L esc ls", check=False).stdout.startswith("0: 1 windows")
    slurm.reset()
    assert not any(name.startswith("tmux") for _, name in user_processes(host.user))


def test_second_cluster_fails_clearly_while_one_runs(slurm: SlurmCluster) -> None:
    with pytest.raises(SlurmError, match="another SlurmCluster is running"):
        SlurmCluster()
    assert slurm.node_state() == "idle"
