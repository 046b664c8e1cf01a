"""The Slurm job script, sbatch argv and submit command, run for real with bash and tmux.

Slurm itself is not needed here: the job script runs under bash with ``SLURM_JOB_ID`` set, the
way slurmd would start it, and the submit command meets a stand-in ``sbatch`` that records its
argv. The same scripts meet the real cluster in tests/e2e.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from dobby.core.slurm import SlurmSettings, attach_command
from dobby.hostside import scripts
from dobby.hostside import slurm as hs
from dobby.hostside.scripts import PROMPT
from tests.fixtures.wait import wait_until

TASK = "abcd1234"


def make_paths(tmp_path: Path) -> scripts.TaskPaths:
    return scripts.TaskPaths(workdir=str(tmp_path / "shared w%"), task_id=TASK)


def test_sbatch_argv_carries_every_setting_and_ends_with_the_job_script(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    settings = SlurmSettings(
        partition="gpu", account="acme", qos="high", time_limit="2:00:00", gpus_per_task=1,
        constraint="a100&ib", extra_args=("--mem=8G", "--comment=x y"),
    )  # fmt: skip
    argv = hs.sbatch_argv(paths=paths, settings=settings, timeout=None, gpus=2)
    d = paths.task_dir.replace("%", "%%")
    assert argv == [
        "sbatch", "--parsable", "--mem=8G", "--comment=x y", f"--job-name=dobby-{TASK}",
        "--no-requeue", "--partition=gpu", "--account=acme", "--qos=high", "--time=120",
        "--gres=gpu:2", "--constraint=a100&ib", f"--chdir={paths.worktree}",
        f"--output={d}/slurm-%j.out", f"--error={d}/slurm-%j.err", paths.file("job.sh"),
    ]  # fmt: skip


def test_sbatch_argv_defaults_and_gpus_flag() -> None:
    paths = scripts.TaskPaths(workdir="/w", task_id=TASK)
    plain = hs.sbatch_argv(paths=paths, settings=SlurmSettings())
    assert not any(w.startswith(("--partition", "--time", "--gres", "--gpus")) for w in plain)
    per_task = SlurmSettings(gpus_per_task=2, gpu_request="gpus")
    assert "--gpus=2" in hs.sbatch_argv(paths=paths, settings=per_task)
    assert "--gpus=1" in hs.sbatch_argv(paths=paths, settings=per_task, gpus=1)
    assert not any("gpu" in w for w in hs.sbatch_argv(paths=paths, settings=per_task, gpus=0))


@pytest.mark.parametrize(
    ("timeout", "limit", "expected"),
    [
        (None, None, None),
        (5, None, "2"),  # 5 s + 60 s grace → 2 minutes
        (3600, "10", "10"),  # the host's limit caps the task's timeout
        (300, "10", "6"),  # a shorter timeout wins
        (300, "UNLIMITED", "6"),
        (None, "10", "10"),
        (None, "1:30:00", "90"),
        (None, "0:01", "1"),  # Slurm rounds seconds up to a minute too
        (None, "2-00", "2880"),
        (None, "UNLIMITED", "UNLIMITED"),
    ],
)
def test_job_time(timeout: float | None, limit: str | None, expected: str | None) -> None:
    assert hs.job_time(timeout, limit) == expected


@pytest.mark.parametrize("bad", ["12a", "1;2", "", "$(id)", "1 2"])
def test_job_ids_reaching_a_shell_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid Slurm job id"):
        hs.render_cancel(bad)
    with pytest.raises(ValueError, match="invalid Slurm job id"):
        hs.render_job_query(["1", bad])


def test_queries_and_attach() -> None:
    assert hs.render_cancel("42") == "scancel 42"
    assert hs.render_job_query(["4", "5_1"]) == "squeue -h -t all -j 4,5_1 -o '%i|%T|%r|%N'"
    assert hs.render_job_detail("4") == "scontrol show job -d -o 4"
    assert hs.render_sacct(["4"]) == "sacct -n -P -X -j 4 -o JobIDRaw,State,ExitCode,NodeList"
    assert hs.render_capacity("gpu") == (
        "sinfo -h -N -p gpu -O 'NodeList:|,Partition:|,StateLong:|,Gres:|,GresUsed:|,"
        "CPUsState:|,Reason:|'"
    )
    assert attach_command(job_id="42", task_id=TASK) == [
        "srun", "--jobid=42", "--overlap", "--pty", "tmux", "-L", "dobby-42", "attach",
        "-t", f"dobby-{TASK}",
    ]  # fmt: skip


# -- the submit command against a stand-in sbatch --------------------------------------------

FAKE_SBATCH = """#!/bin/bash
printf '%s\\0' "$@" > "$SBATCH_LOG"
if [ -n "$SBATCH_FAIL" ]; then
  echo "sbatch: error: invalid partition specified: nope" >&2
  echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
  exit 1
fi
echo "${SBATCH_ANSWER:-4242}"
"""


def run_submit(
    tmp_path: Path, script: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "sbatch"
    fake.write_text(FAKE_SBATCH)
    fake.chmod(0o755)
    log = tmp_path / "sbatch.argv"
    log.unlink(missing_ok=True)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SBATCH_LOG": str(log), **env},
    )  # fmt: skip
    argv = log.read_bytes().decode().split("\0")[:-1] if log.exists() else []
    return done, argv


METACHARACTERS = (
    "--comment=$(touch {p}/sub)",
    "--comment=`touch {p}/tick`",
    "--mem=1G; touch {p}/semi",
    "--x=a && touch {p}/and",
    "--y=| touch {p}/pipe",
    "--z=$HOME\n",
    "'--q=\"quoted\"'",
)


def test_extra_args_with_shell_metacharacters_reach_sbatch_verbatim(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    words = tuple(w.format(p=tmp_path).rstrip("\n") for w in METACHARACTERS)
    argv = hs.sbatch_argv(paths=paths, settings=SlurmSettings(extra_args=words), timeout=30)
    done, seen = run_submit(tmp_path, hs.render_submit(paths=paths, argv=argv))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4242\n"
    assert seen == argv[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "sbatch.argv", "shared w%"]
    assert (Path(paths.task_dir) / "slurm_job").read_text() == "4242\n"


def test_submit_clears_the_previous_run_and_reuses_a_job_only_when_asked(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    for name in ("out.jsonl", "exit", "err.log", "slurm_job"):
        (task_dir / name).write_text("old\n" if name != "slurm_job" else "77\n")
    argv = hs.sbatch_argv(paths=paths, settings=SlurmSettings())
    done, seen = run_submit(tmp_path, hs.render_submit(paths=paths, argv=argv, reuse_job=True))
    assert (done.stdout, seen) == ("77\n", [])  # the answer was lost: no second job
    assert (task_dir / "out.jsonl").exists()
    done, seen = run_submit(
        tmp_path, hs.render_submit(paths=paths, argv=argv, prepare="echo prepared >&2"),
        SBATCH_ANSWER="78;cluster2",
    )  # fmt: skip
    assert done.stdout == "78\n" and "prepared" in done.stderr
    assert sorted(p.name for p in task_dir.iterdir()) == ["slurm_job"]
    assert (task_dir / "slurm_job").read_text() == "78\n"


def test_a_rejected_submission_fails_with_sbatchs_own_message(tmp_path: Path) -> None:
    paths = make_paths(tmp_path)
    argv = hs.sbatch_argv(paths=paths, settings=SlurmSettings(partition="nope"))
    done, _ = run_submit(tmp_path, hs.render_submit(paths=paths, argv=argv), SBATCH_FAIL="1")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Invalid partition name specified" in done.stderr
    assert not (Path(paths.task_dir) / "slurm_job").exists()


# -- the job script, started the way slurmd starts it ----------------------------------------


def write_bundle(tmp_path: Path, command: str) -> tuple[scripts.TaskPaths, Path]:
    paths = make_paths(tmp_path)
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    Path(paths.worktree).mkdir(parents=True)
    (task_dir / "prompt.md").write_text(command)
    (task_dir / "env").write_text(scripts.render_env({}))
    run_sh = scripts.render_run_sh(
        paths=paths, argv=["bash", "-c", PROMPT], timeout=None, cwd=paths.worktree
    )
    (task_dir / "run.sh").write_text(run_sh)
    (task_dir / "job.sh").write_text(hs.render_job_script(paths=paths))
    return paths, task_dir


def start_job(task_dir: Path, job_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SLURM_JOB_ID": job_id}
    env.pop("TMUX", None)
    with (task_dir / "slurm.err").open("wb") as err:  # where slurmd puts the job's stderr
        return subprocess.Popen(
            ["bash", str(task_dir / "job.sh")], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )  # fmt: skip


def tmux_alive(socket: str) -> bool:
    done = subprocess.run(["tmux", "-L", socket, "ls"], capture_output=True)
    return done.returncode == 0


def test_job_script_runs_run_sh_in_its_own_tmux_and_exits_with_its_status(tmp_path: Path) -> None:
    paths, task_dir = write_bundle(tmp_path, 'echo "job=$SLURM_JOB_ID in $PWD"; exit 3')
    job = start_job(task_dir, "9101")
    assert job.wait(timeout=30) == 3
    assert (task_dir / "out.jsonl").read_text() == f"job=9101 in {paths.worktree}\n"
    assert (task_dir / "exit").read_text() == "3\n"
    assert not tmux_alive("dobby-9101")


def test_job_script_ends_tmux_and_the_task_on_sigterm(tmp_path: Path) -> None:
    paths, task_dir = write_bundle(tmp_path, "echo started; sleep 300")
    job = start_job(task_dir, "9102")
    try:
        wait_until((task_dir / "out.jsonl").exists, what="run.sh to start")
        assert tmux_alive("dobby-9102")
        assert job.poll() is None  # the job lives as long as run.sh
        os.killpg(job.pid, signal.SIGTERM)  # what scancel and the time limit send
        assert job.wait(timeout=30) == 143
        wait_until(lambda: not tmux_alive("dobby-9102"), what="the tmux server to end")
        pid = (task_dir / "pid").read_text().strip()
        wait_until(lambda: not _alive_session(pid), what="run.sh's processes to end")
    finally:
        subprocess.run(["tmux", "-L", "dobby-9102", "kill-server"], capture_output=True)


def _alive_session(sid: str) -> bool:
    out = subprocess.run(["ps", "-o", "stat=", "-s", sid], capture_output=True, text=True)
    return any("Z" not in stat for stat in out.stdout.split())


def test_job_script_without_an_exit_file_says_so(tmp_path: Path) -> None:
    _, task_dir = write_bundle(tmp_path, "true")
    # run.sh killed before it could write its exit file: the session ends, no exit code
    (task_dir / "run.sh").write_text("#!/bin/bash\nkill -9 $$\n")
    job = start_job(task_dir, "9103")
    assert job.wait(timeout=30) == hs.NO_EXIT_CODE
    assert "run.sh ended without an exit code" in (task_dir / "slurm.err").read_text()
