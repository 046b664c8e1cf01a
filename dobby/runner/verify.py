"""The runner's verify phase: what a task with ``--verify`` adds to its launch and collection.

At launch the check goes to the host as a file and run.sh gains the phase that runs it after
the agent (:mod:`dobby.hostside.verify`). At collection the phase's result is read from the
host, the agent's output is told apart from the check's section of the log, and the outcome
decides the task's status: a completed agent whose check did not pass ends ``failed`` with
reason ``verify_failed`` (its work is collected and kept on its branch like any other).
"""

from __future__ import annotations

from dataclasses import dataclass

from dobby.core.models import Reason, Task, TaskStatus, VerifyResult, VerifyStatus
from dobby.hostside import verify as phase
from dobby.hostside.results import COMMIT_JUNK
from dobby.hostside.scripts import TaskPaths
from dobby.results.gitback import commit_message
from dobby.store.tasklog import TaskLogs
from dobby.transport import Transport

DEFAULT_TIMEOUT = 600.0  # tasks stored before the hub resolved verify_timeout at submit


def run_sh_block(task: Task, paths: TaskPaths) -> str:
    """Return the verify phase for run.sh ("" for a task without a check)."""
    if not task.verify:
        return ""
    return phase.render_verify_phase(
        paths=paths,
        timeout=task.verify_timeout or DEFAULT_TIMEOUT,
        ignore=(*COMMIT_JUNK, *task.commit_ignore),
    )


def files(task: Task) -> dict[str, bytes]:
    """Return the files the phase needs on the host: the check itself and the commit message."""
    if not task.verify:
        return {}
    return {
        phase.SCRIPT_FILE: task.verify.encode("utf-8") + b"\n",
        phase.COMMIT_MESSAGE_FILE: commit_message(task).encode("utf-8"),
    }


def extra_seconds(task: Task) -> float:
    """Return how much longer than its timeout a task with a check may run."""
    return phase.phase_seconds(task.verify_timeout or DEFAULT_TIMEOUT) if task.verify else 0.0


def run_seconds(task: Task) -> float | None:
    """Return the longest a task's run.sh may take: its timeout and its verify phase."""
    return task.timeout + extra_seconds(task) if task.timeout else None


@dataclass(frozen=True)
class Outcome:
    """The check's result (None: no check) and where the agent's own output ends in the log."""

    result: VerifyResult | None = None
    agent_end: int | None = None  # byte offset of the check's section; None: the whole log


async def read_outcome(
    task: Task, transport: Transport, paths: TaskPaths, logs: TaskLogs, exit_code: int | None
) -> Outcome:
    """Read the phase's result from the host, with the end of the check's output."""
    if not task.verify:
        return Outcome()
    text = await transport.read_from(paths.file(phase.RESULT_FILE), 0, 256)
    transport.release(paths.file(phase.RESULT_FILE))
    parsed = phase.parse_result(text)
    if parsed is None:
        # The agent failed (nothing to check), or the phase died before writing its result.
        status = VerifyStatus.SKIPPED if exit_code != 0 else VerifyStatus.FAILED
        return Outcome(VerifyResult(status=status.value))
    start = parsed.offset if parsed.offset is not None else logs.size(task.id)
    data, _ = logs.read(task.id, start, max(0, logs.size(task.id) - start))
    result = VerifyResult(
        status=parsed.status,
        exit_code=parsed.exit_code,
        duration_ms=parsed.duration_ms,
        tail=phase.section_tail(data),
        offset=parsed.offset,
    )
    return Outcome(result, parsed.offset)


def judge(
    task: Task,
    status: TaskStatus,
    reason: Reason | None,
    error: str | None,
    outcome: Outcome,
) -> tuple[TaskStatus, Reason | None, str | None]:
    """Record the check on the task; return the task's status, reason and error after it."""
    result = outcome.result
    if result is None:
        return status, reason, error
    task.verify_result = result.to_dict()
    if status != TaskStatus.COMPLETED or result.passed:
        return status, reason, error
    return TaskStatus.FAILED, Reason.VERIFY_FAILED, failure_message(result)


def failure_message(result: VerifyResult) -> str:
    """Return the one-line error of a check that did not pass."""
    if result.status == VerifyStatus.TIMEOUT.value:
        what = f"verify timed out (exit {result.exit_code})"
    elif result.exit_code is None:
        what = "verify left no result (its phase did not finish)"
    else:
        what = f"verify failed (exit {result.exit_code})"
    last = next((ln.strip() for ln in reversed(result.tail.splitlines()) if ln.strip()), "")
    return f"{what}: {last[:300]}" if last else what
