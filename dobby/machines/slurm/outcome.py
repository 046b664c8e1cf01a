"""What a job's state means for its task.

COMPLETED and FAILED with run.sh's exit code are collected like any task; TIMEOUT,
OUT_OF_MEMORY, JobLaunchFailure, a cancel from outside Dobby and a lost node each get their own
reason, and NODE_FAIL / PREEMPTED / BOOT_FAIL are submitted again once. :func:`waiting_text`
turns a pending reason into words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dobby.core.models import Reason, TaskStatus
from dobby.hostside.slurm import NO_EXIT_CODE, TMUX_FAILED
from dobby.machines.slurm.jobs import LOST_NODE, JobInfo, JobPhase, phase_of

# -- what a job's state means for its task ---------------------------------------------------


class Action(StrEnum):
    """What the hub does with a job's state."""

    WAIT = "wait"  # pending in Slurm's queue: show the reason
    FOLLOW = "follow"  # running: follow its output
    COLLECT = "collect"  # ended with run.sh's exit code: collect like any task
    FINISH = "finish"  # ended without one: end the task with the outcome's status and reason
    RESUBMIT = "resubmit"  # lost with its node or preempted: submit again


@dataclass(frozen=True)
class Outcome:
    """The hub's answer to one job state."""

    action: Action
    status: TaskStatus | None = None
    reason: Reason | None = None
    message: str = ""
    exit_code: int | None = None  # for COLLECT: run.sh's exit code


def job_outcome(
    job: JobInfo, *, exit_code: int | None, resubmits_left: int = 1, time_limit: str | None = None
) -> Outcome:
    """Map a job's state (and run.sh's exit code, None if it wrote none) to the task's fate.

    Called for a job Dobby did not cancel itself: a CANCELLED job was cancelled by someone
    else. ``resubmits_left`` says whether a lost node or preemption may be retried.
    """
    state = job.state.split()[0].rstrip("+") if job.state.strip() else ""
    where = f" on {job.nodes}" if job.nodes else ""
    name = f"Slurm job {job.job_id}"
    phase = phase_of(state)
    if not state:  # Slurm no longer knows the job: purged after MinJobAge, or never known
        return Outcome(
            Action.FINISH, TaskStatus.FAILED, Reason.HOST_LOST,
            f"{name} is no longer known to Slurm and its task left no exit code",
        )  # fmt: skip
    if phase is JobPhase.QUEUED:
        if job.reason == "DependencyNeverSatisfied":
            return Outcome(
                Action.FINISH, TaskStatus.FAILED, Reason.DEPENDENCY_FAILED,
                f"{name} can never start: a job it depends on failed",
            )  # fmt: skip
        if state == "CONFIGURING":  # allocated; its nodes are still booting
            return Outcome(Action.WAIT, message="its nodes are being set up (CONFIGURING)")
        return Outcome(Action.WAIT, message=waiting_text(job.reason))
    if phase is JobPhase.RUNNING:
        return Outcome(Action.FOLLOW)
    if phase is JobPhase.UNKNOWN:
        return Outcome(Action.WAIT, message=f"{name} is in state {job.state or 'unknown'}")
    if state in ("TIMEOUT", "DEADLINE"):
        limit = f" ({time_limit})" if time_limit else ""
        what = "time limit" if state == "TIMEOUT" else "deadline"
        return Outcome(
            Action.FINISH, TaskStatus.FAILED, Reason.TIMEOUT,
            f"{name} reached its Slurm {what}{limit}{where} ({state})",
        )  # fmt: skip
    if state == "OUT_OF_MEMORY":
        return Outcome(
            Action.FINISH, TaskStatus.FAILED, Reason.EXIT_CODE,
            f"{name} ran out of memory{where}: Slurm killed it (OUT_OF_MEMORY); "
            "ask for more with slurm.extra_args such as --mem=16G",
        )  # fmt: skip
    if state in LOST_NODE:
        what = {
            "NODE_FAIL": f"its node failed{where}",
            "PREEMPTED": f"it was preempted{where}",
            "BOOT_FAIL": f"its node failed to boot{where}",
        }[state]
        if resubmits_left > 0:
            return Outcome(
                Action.RESUBMIT, message=f"{name} ended: {what} ({state}); submitted again"
            )
        return Outcome(
            Action.FINISH, TaskStatus.FAILED, Reason.HOST_LOST,
            f"{name} ended: {what} ({state}), after it had already been submitted again",
        )  # fmt: skip
    if state == "CANCELLED":
        if job.reason == "DependencyNeverSatisfied":
            return Outcome(
                Action.FINISH, TaskStatus.FAILED, Reason.DEPENDENCY_FAILED,
                f"{name} was cancelled by Slurm: a job it depends on failed",
            )  # fmt: skip
        by = f" by user {job.cancelled_by}" if job.cancelled_by else ""
        return Outcome(
            Action.FINISH, TaskStatus.CANCELLED, None,
            f"{name} was cancelled in Slurm outside Dobby{by} (scancel)",
        )  # fmt: skip
    if exit_code is not None and state in ("COMPLETED", "FAILED"):
        return Outcome(Action.COLLECT, exit_code=exit_code)
    if state == "FAILED" and job.reason in ("JobLaunchFailure", "BadConstraints", "SystemFailure"):
        signal = f", signal {job.signal}" if job.signal else ""
        hint = (
            "its batch script was killed (SIGKILL; where Slurm enforces memory limits, "
            "usually out of memory)"
            if job.signal == 9
            else "check that the host's slurm.workdir is on a filesystem the compute nodes "
            "share and writable there"
        )
        return Outcome(
            Action.FINISH, TaskStatus.FAILED, Reason.DISPATCH_ERROR,
            f"{name} failed to launch{where} ({job.reason}{signal}): {hint}",
        )  # fmt: skip
    # No exit file seen from the login node (a shared filesystem may show it late): the job's
    # own status is run.sh's, since job.sh exits with it, unless job.sh said it had none.
    status = 0 if state == "COMPLETED" and job.exit_status is None else job.exit_status
    if state in ("COMPLETED", "FAILED") and status not in (None, NO_EXIT_CODE, TMUX_FAILED):
        return Outcome(Action.COLLECT, exit_code=status)
    if status == TMUX_FAILED:
        detail = "tmux could not start on the compute node"
    elif status == NO_EXIT_CODE or status is None:
        detail = "run.sh left no exit code"
    else:
        detail = f"exit status {status}"
    return Outcome(
        Action.FINISH, TaskStatus.FAILED, Reason.EXIT_CODE,
        f"{name} ended {state}{where}: {detail}",
    )  # fmt: skip


# Pending reasons users meet most, in words; anything else is shown as Slurm wrote it.
_WAITING = {
    "None": "submitted; Slurm's scheduler has not looked at it yet",
    "": "submitted; Slurm's scheduler has not looked at it yet",
    "Priority": "queued behind jobs of higher priority",
    "Resources": "first in line, waiting for resources to free up",
    "Dependency": "waiting for the jobs it depends on",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by its user (scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "PartitionConfig": "asks for more than the partition has: it will not start as it is",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is above the partition's maximum",
    "PartitionNodeLimit": "asks for more nodes than the partition allows",
    "ReqNodeNotAvail": "a node it needs is not available (down, drained or reserved)",
    "Reservation": "waiting for its reservation",
    "Licenses": "waiting for licenses",
    "BadConstraints": "its constraints cannot be met",
    "launch failed requeued held": "its launch failed; Slurm holds it",
}
_LIMIT_PREFIXES = ("QOS", "Assoc", "MaxJobs", "MaxCpu", "MaxGRES")


def waiting_text(reason: str) -> str:
    """Return a pending job's reason in words, with Slurm's own word kept in parentheses."""
    reason = reason.strip()
    text = _WAITING.get(reason)
    if text is None and reason.startswith("Nodes required for job are DOWN"):
        text = "the nodes it needs are down, drained or kept for other partitions"
    if text is None and reason.startswith(_LIMIT_PREFIXES):
        text = "held by a limit of its QOS or account"
    if text is None:
        return f"pending in Slurm ({reason})" if reason else _WAITING[""]
    return f"{text} ({reason or 'None'})"
