"""Parse Slurm's job answers: sbatch, squeue, scontrol show job, sacct."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from dobby.machines.slurm.text import gpu_indices, none_to_empty, parse_fields

# Job states (squeue %T, scontrol JobState, sacct State) by what they mean for a task.
QUEUED = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
)
ACTIVE = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)
ENDED = frozenset(
    {
        "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL",
        "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    }
)  # fmt: skip
LOST_NODE = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})  # re-submitted once
ACCOUNTING_DISABLED = "accounting storage is disabled"
INVALID_JOB_ID = "Invalid job id specified"


class JobPhase(StrEnum):
    """Where a job is in its life, as far as a task cares."""

    QUEUED = "queued"
    RUNNING = "running"
    ENDED = "ended"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class JobInfo:
    """One job as Slurm reports it; fields a source does not give stay empty or None."""

    job_id: str
    state: str  # the state word: PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str = ""  # Slurm's reason; "" for None
    nodes: str = ""
    exit_status: int | None = None  # ExitCode before the colon
    signal: int | None = None  # ExitCode after the colon
    cancelled_by: str | None = None  # sacct's "CANCELLED by UID"
    gpu_indices: tuple[int, ...] = ()  # scontrol -d: GRES=gpu:2(IDX:0-1)
    name: str = ""

    @property
    def phase(self) -> JobPhase:
        """Return whether the job waits, runs or has ended."""
        return phase_of(self.state)


def phase_of(state: str) -> JobPhase:
    """Return the phase of a job state word."""
    word = state.split()[0].rstrip("+") if state.strip() else ""
    if word in QUEUED:
        return JobPhase.QUEUED
    if word in ACTIVE:
        return JobPhase.RUNNING
    if word in ENDED:
        return JobPhase.ENDED
    return JobPhase.UNKNOWN


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """Return (status, signal) from Slurm's ``ExitCode`` ``3:0``."""
    status, _, signal = text.strip().partition(":")
    try:
        return int(status), int(signal) if signal else 0
    except ValueError:
        return None, None


def parse_submit(stdout: str) -> str:
    """Return the job id ``sbatch --parsable`` printed (``12`` or ``12;cluster``)."""
    first = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
    job = first.split(";", 1)[0]
    if not re.fullmatch(r"\d+(?:_\d+)?", job):
        raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return job


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """Parse ``squeue -h -t all -o '%i|%T|%r|%N'``: job id → state, reason, nodes."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        head = line.split("|", 2)
        if len(head) < 3 or not head[0].strip():
            continue
        reason, _, nodes = head[2].rpartition("|")
        job = head[0].strip()
        jobs[job] = JobInfo(
            job_id=job, state=head[1].strip(), reason=none_to_empty(reason), nodes=nodes.strip()
        )
    return jobs


def parse_scontrol_jobs(text: str) -> dict[str, JobInfo]:
    """Parse ``scontrol show job -d -o``: one line per job."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        fields = parse_fields(line)
        job = fields.get("JobId")
        if not job:
            continue
        status, signal = parse_exit_code(fields.get("ExitCode", ""))
        jobs[job] = JobInfo(
            job_id=job,
            state=fields.get("JobState", ""),
            reason=none_to_empty(fields.get("Reason", "")),
            nodes=none_to_empty(fields.get("NodeList", "")),
            exit_status=status,
            signal=signal,
            gpu_indices=gpu_indices(fields.get("GRES", "")),
            name=fields.get("JobName", ""),
        )
    return jobs


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """Parse ``sacct -n -P -X -o JobIDRaw,State,ExitCode,NodeList`` (steps are skipped)."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 4 or "." in parts[0] or not parts[0].strip():
            continue
        job, state, code, nodes = (p.strip() for p in parts[:4])
        word, _, rest = state.partition(" ")
        by = rest[3:].strip() if rest.startswith("by ") else None
        status, signal = parse_exit_code(code)
        jobs[job] = JobInfo(
            job_id=job,
            state=word,
            nodes="" if nodes in ("None assigned", "(null)") else nodes,
            exit_status=status,
            signal=signal,
            cancelled_by=by,
        )
    return jobs


def sacct_unavailable(stderr: str) -> bool:
    """Tell whether sacct failed because the cluster keeps no accounting."""
    return ACCOUNTING_DISABLED in stderr.lower()


def jobs_purged(stderr: str) -> bool:
    """Tell whether squeue/scontrol failed because the job ids are unknown (purged)."""
    return INVALID_JOB_ID.lower() in stderr.lower()


def merge(*sources: dict[str, JobInfo]) -> dict[str, JobInfo]:
    """Combine answers about the same jobs: later sources fill what earlier ones left empty."""
    out: dict[str, JobInfo] = {}
    for source in sources:
        for job, info in source.items():
            have = out.get(job)
            if have is None:
                out[job] = info
                continue
            out[job] = JobInfo(
                job_id=job,
                state=have.state or info.state,
                reason=have.reason or info.reason,
                nodes=have.nodes or info.nodes,
                exit_status=have.exit_status if have.exit_status is not None else info.exit_status,
                signal=have.signal if have.signal is not None else info.signal,
                cancelled_by=have.cancelled_by or info.cancelled_by,
                gpu_indices=have.gpu_indices or info.gpu_indices,
                name=have.name or info.name,
            )
    return out


def parse_job_details(text: str, mark: str) -> tuple[dict[str, JobInfo], bool | None]:
    """Parse the answer to ``hostside.slurm.render_job_details``: the jobs, and whether sacct
    works on this cluster (None when it was not asked or failed for another reason)."""
    head, found, tail = text.partition(mark + "\n")
    jobs = parse_scontrol_jobs(head)
    if not found:
        return jobs, None
    body, _, rc = tail.rpartition("rc=")
    if rc.strip() != "0":
        return jobs, False if sacct_unavailable(body) else None
    return merge(jobs, parse_sacct(body)), True
