"""Pure builders of what Dobby runs on a Slurm login node: the job script, sbatch, queries.

A task on a ``connection: slurm`` host is one Slurm job. Its job script (``tasks/<id>/job.sh``
on the shared filesystem) starts the task's ``run.sh`` inside tmux on the compute node, with a
private tmux socket per job (``tmux -L dobby-$SLURM_JOB_ID``: a tmux server of the user
outside the job would otherwise host the session, without the job's GPUs), and lives exactly
as long as run.sh: it polls for the ``exit`` file run.sh writes last, or for the session to
end, and exits with run.sh's status. Its EXIT trap ends the tmux server, so ``scancel`` (TERM)
and the time limit reach the task too (see docs/SLURM-NOTES.md for why each part is needed).

Every word reaching a shell is quoted here; sbatch options come from the inventory as a list
of words and are never split or evaluated.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from dobby.core.slurm import SlurmSettings, minutes_for, parse_time_limit
from dobby.hostside.scripts import OUTPUT_FILES, RUN_FILES, TaskPaths

JOB_SCRIPT = "job.sh"
JOB_ID_FILE = "slurm_job"  # the job id sbatch answered, written on the login node at submit
NO_EXIT_CODE = 98  # the job's status when run.sh ended without writing its exit file
TMUX_FAILED = 96  # tmux could not start on the compute node
TIME_GRACE = 60.0  # seconds past a task's timeout before Slurm's limit: run.sh's timeout first
_JOB_ID = re.compile(r"^\d+(?:_\d+)?$")
# The query formats the parsers in dobby.machines.slurm read. squeue's reason may hold spaces
# and commas but no "|"; node names never do, so the reason sits between two fixed fields.
SQUEUE_FORMAT = "%i|%T|%r|%N"
SACCT_FIELDS = "JobIDRaw,State,ExitCode,NodeList"
SINFO_FIELDS = ("NodeList", "Partition", "StateLong", "Gres", "GresUsed", "CPUsState", "Reason")


def quote(word: str) -> str:
    """Quote one word for the login node's shell."""
    return shlex.quote(word)


def job_name(task_id: str) -> str:
    """Return the Slurm job name of a task (also its tmux session name)."""
    return f"dobby-{task_id}"


def tmux_socket(job_id: str) -> str:
    """Return the private tmux socket name (``tmux -L``) of a job."""
    return f"dobby-{check_job_id(job_id)}"


def check_job_id(job_id: str) -> str:
    """Return a Slurm job id, or raise ValueError if it is not one (it reaches a shell)."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"invalid Slurm job id {job_id!r}")
    return job_id


def pattern_safe(path: str) -> str:
    """Escape ``%`` so sbatch's ``--output`` pattern keeps a path as written."""
    return path.replace("%", "%%")


def job_time(timeout: float | None, limit: str | None) -> str | None:
    """Return sbatch's ``--time`` in minutes: the task's timeout plus grace, at most ``limit``.

    ``limit`` is the host's ``time_limit`` (a Slurm time; also the time of a task without a
    timeout). run.sh's own timeout(1) normally ends a task first; Slurm's limit is the
    backstop that also frees the allocation while the hub is away.
    """
    cap = None if limit is None else parse_time_limit(limit)
    if timeout:
        minutes = minutes_for(timeout + TIME_GRACE)
        return str(minutes if cap is None else min(minutes, minutes_for(cap)))
    if limit is None:
        return None
    return "UNLIMITED" if cap is None else str(minutes_for(cap))


def sbatch_argv(
    *,
    paths: TaskPaths,
    settings: SlurmSettings,
    timeout: float | None = None,
    gpus: int | None = None,
) -> list[str]:
    """Return the ``sbatch --parsable`` argv that submits a task's job script.

    ``gpus`` None takes the host's ``gpus_per_task``. ``extra_args`` come first so Dobby's
    own options, which later words override, keep the job name, files and directory Dobby
    relies on. (Dobby's ``--after`` chains submit a job once its dependency completed.)
    """
    argv = ["sbatch", "--parsable", *settings.extra_args]
    argv += [f"--job-name={job_name(paths.task_id)}", "--no-requeue"]
    if settings.partition:
        argv.append(f"--partition={settings.partition}")
    if settings.account:
        argv.append(f"--account={settings.account}")
    if settings.qos:
        argv.append(f"--qos={settings.qos}")
    time = job_time(timeout, settings.time_limit)
    if time:
        argv.append(f"--time={time}")
    count = settings.gpus_per_task if gpus is None else gpus
    if count:
        argv.append(f"--gpus={count}" if settings.gpu_request == "gpus" else f"--gres=gpu:{count}")
    if settings.constraint:
        argv.append(f"--constraint={settings.constraint}")
    task_dir = pattern_safe(paths.task_dir)
    argv += [
        f"--chdir={paths.worktree}",
        f"--output={task_dir}/slurm-%j.out",
        f"--error={task_dir}/slurm-%j.err",
        paths.file(JOB_SCRIPT),
    ]
    return argv


def render_job_script(*, paths: TaskPaths) -> str:
    """Return job.sh: run.sh in a private tmux session for the job's whole life."""
    d = quote(paths.task_dir)
    session = quote(paths.session)
    run = quote(f"bash {quote(paths.file('run.sh'))}")
    return f"""#!/bin/bash
# generated by dobby for task {paths.task_id}: run.sh in tmux, for as long as it runs
S="dobby-$SLURM_JOB_ID"
trap 'tmux -L "$S" kill-server 2>/dev/null' EXIT
trap 'exit 143' TERM INT HUP
tmux -L "$S" new-session -d -s {session} -x 200 -y 50 -c {quote(paths.worktree)} {run} || {{
  echo "dobby: tmux could not start a session on $(hostname)" >&2; exit {TMUX_FAILED}; }}
# Poll rather than tmux wait-for, which never returns if the session is killed otherwise;
# the exit file ends the wait even if a tmux option (remain-on-exit) keeps the pane open.
n=0
while [ ! -e {d}/exit ] && tmux -L "$S" has-session -t {session} 2>/dev/null; do
  if [ "$n" -lt 20 ]; then sleep 0.05; elif [ "$n" -lt 70 ]; then sleep 0.2; else sleep 1; fi
  n=$((n + 1))
done
rc=$(cat {d}/exit 2>/dev/null)
case "$rc" in
  ''|*[!0-9]*) echo "dobby: run.sh ended without an exit code" >&2; exit {NO_EXIT_CODE} ;;
esac
exit "$rc"
"""


def render_submit(
    *,
    paths: TaskPaths,
    argv: Sequence[str],
    prepare: str = "",
    reuse_job: bool = False,
    keep_output: bool = False,
) -> str:
    """Return the command that prepares the task's directories and submits its job.

    It prints the job id and writes it to ``tasks/<id>/slurm_job``. ``prepare`` (the worktree
    commands) runs first. With ``reuse_job`` a job already submitted for this attempt (its
    answer was lost) is printed again instead of submitting a second one. ``keep_output``: the
    job continues the task's output (the half after a usage limit).
    """
    d = quote(paths.task_dir)
    job_file = quote(paths.file(JOB_ID_FILE))
    lines = ["set -e", f"mkdir -p {d}"]
    if prepare:
        lines.append(prepare.rstrip("\n"))
    if reuse_job:
        lines.append(f"if [ -s {job_file} ]; then cat {job_file}; exit 0; fi")
    # A re-submitted task starts with no output, exit code or job id of its previous run.
    stale = [*(RUN_FILES if keep_output else OUTPUT_FILES), JOB_ID_FILE]
    lines.append("rm -f " + " ".join(quote(paths.file(name)) for name in stale))
    lines += [
        "job=$(" + " ".join(quote(word) for word in argv) + ")",
        'job="${job%%;*}"',  # a multi-cluster answer is "id;cluster"
        f"printf '%s\\n' \"$job\" >{job_file}.tmp && mv -f {job_file}.tmp {job_file}",
        "printf '%s\\n' \"$job\"",
    ]
    return "\n".join(lines) + "\n"


def render_cancel(job_id: str) -> str:
    """Return the command that cancels a job (its EXIT trap then ends the tmux session)."""
    return f"scancel {quote(check_job_id(job_id))}"


def render_job_query(job_ids: Sequence[str]) -> str:
    """Return the squeue command listing the jobs' states, finished ones included."""
    ids = ",".join(check_job_id(j) for j in job_ids)
    return f"squeue -h -t all -j {ids} -o {quote(SQUEUE_FORMAT)}"


def render_job_detail(job_id: str) -> str:
    """Return the scontrol command printing one job on one line, with its GPU indices."""
    return f"scontrol show job -d -o {check_job_id(job_id)}"


def render_sacct(job_ids: Sequence[str]) -> str:
    """Return the sacct command for the jobs' end states (fails without accounting storage)."""
    ids = ",".join(check_job_id(j) for j in job_ids)
    return f"sacct -n -P -X -j {ids} -o {SACCT_FIELDS}"


def render_capacity(partition: str | None) -> str:
    """Return the sinfo command listing each node of the partition(s) with GPUs and CPUs."""
    fields = ",".join(f"{name}:|" for name in SINFO_FIELDS)
    where = f" -p {quote(partition)}" if partition else ""
    return f"sinfo -h -N{where} -O {quote(fields)}"


DETAILS_MARK = "@@dobby-sacct"


def render_job_details(job_ids: Sequence[str], *, sacct: bool) -> str:
    """Return one command printing ``scontrol show job -d -o`` per job, then sacct's answer.

    For jobs that just ended: scontrol has the exit code and GPU indices while the job is
    within MinJobAge; sacct (when the cluster keeps accounting) has who cancelled it and ends
    older than that. The sacct part follows a marker line and ends with its exit status.
    """
    ids = [check_job_id(j) for j in job_ids]
    lines = [f'for j in {" ".join(ids)}; do scontrol show job -d -o "$j" 2>/dev/null; done']
    if sacct:
        lines += [f"echo {DETAILS_MARK}", f"{render_sacct(ids)} 2>&1", 'echo "rc=$?"']
    return "\n".join(lines) + "\n"


def render_find_job(paths: TaskPaths) -> str:
    """Return a command printing the job id of a task whose submission's answer was lost.

    The submit command writes ``slurm_job`` right after sbatch answers; a hub killed between
    the two finds the job by its name instead.
    """
    job_file = quote(paths.file(JOB_ID_FILE))
    name = quote(job_name(paths.task_id))
    return (
        f"cat {job_file} 2>/dev/null || "
        f'squeue -h -t all -u "$(id -un)" -n {name} -o %i 2>/dev/null | head -n 1'
    )
