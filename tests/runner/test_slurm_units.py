"""The pure parts of the Slurm watcher: slot holding, re-submission policy, words for states."""

from __future__ import annotations

import pytest

from dobby.core.models import Task
from dobby.machines.slurm.jobs import JobInfo
from dobby.runner.slurm import _best, describe, holds_slot, resubmits_left


@pytest.mark.parametrize(
    ("status", "waiting_on", "holds"),
    [
        ("running", None, True),
        ("pending", "slurm_queue", True),  # its job waits in Slurm: it counts on the host
        ("pending", "capacity", False),
        ("pending", "dispatch", False),
        ("completed", None, False),
    ],
)
def test_holds_slot(status: str, waiting_on: str | None, holds: bool) -> None:
    assert holds_slot(Task(prompt="x", status=status, waiting_on=waiting_on)) is holds


def test_a_lost_job_is_resubmitted_once_per_task() -> None:
    task = Task(prompt="x")
    assert resubmits_left(task) == 1
    task.attempts = [{"slurm_job": "7", "reason": "exit_code"}]  # an ordinary retry
    assert resubmits_left(task) == 1
    task.attempts.append({"slurm_job": "8", "reason": "host_lost", "requeued_by": "slurm"})
    assert resubmits_left(task) == 0


@pytest.mark.parametrize(
    ("info", "words"),
    [
        (JobInfo("4", "PENDING", reason="Priority"), "queued behind jobs of higher priority"),
        (JobInfo("4", "RUNNING", nodes="node7"), "RUNNING on node7"),
        (JobInfo("4", "TIMEOUT", reason="TimeLimit", nodes="vm"), "TIMEOUT on vm (TimeLimit)"),
        (JobInfo("4", "COMPLETED", nodes="vm"), "COMPLETED on vm"),
        (JobInfo("4", ""), "job 4 no longer known to Slurm"),
    ],
)
def test_describe(info: JobInfo, words: str) -> None:
    assert describe(info).startswith(words)


def test_best_combines_squeue_and_details() -> None:
    squeue = JobInfo("5", "CANCELLED", nodes="vm")
    detail = JobInfo("5", "CANCELLED", exit_status=0, signal=15, cancelled_by="1004")
    both = _best("5", squeue, detail)
    assert (both.state, both.nodes, both.signal, both.cancelled_by) == (
        "CANCELLED",
        "vm",
        15,
        "1004",
    )
    assert _best("5", None, None) == JobInfo("5", "")
    assert _best("5", None, detail) is detail
