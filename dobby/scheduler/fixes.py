"""Fix rounds: a task whose check failed, with ``fix_attempts`` left, gets a follow-up (pure).

The follow-up resumes the agent's session in the same worktree (see
:mod:`dobby.results.followup`), with the check's output as its prompt and the same check;
each round spends one of the chain's ``fix_attempts``. The chain (``dobby results``) shows
every round.
"""

from __future__ import annotations

from dobby.core.models import Reason, Task, TaskStatus, VerifyStatus

TAIL_IN_PROMPT = 3000  # characters of the check's output given to the agent


def needs_fix_round(task: Task) -> bool:
    """Return True if ``task`` failed its check and may still try to fix it."""
    return (
        task.status == TaskStatus.FAILED.value
        and task.reason == Reason.VERIFY_FAILED.value
        and task.fix_attempts > 0
        and not task.fix_task
        and bool(task.verify)
    )


def fix_prompt(task: Task) -> str:
    """Return the prompt of the round that fixes ``task``'s failed check."""
    result = task.verify_result or {}
    code = result.get("exit_code")
    if result.get("status") == VerifyStatus.TIMEOUT.value:
        what = f"did not finish within {task.verify_timeout or 0:g}s (exit {code})"
    elif code is None:
        what = "left no result"
    else:
        what = f"failed (exit {code})"
    tail = str(result.get("tail") or "")[-TAIL_IN_PROMPT:].strip("\n")
    output = f"Its output ends with:\n\n```\n{tail}\n```\n\n" if tail else "It printed nothing.\n\n"
    return (
        f"The check of your work, `{task.verify}`, {what}.\n\n{output}"
        "Fix the code so that this check passes. Do not change or weaken the check itself."
    )


def fix_title(task: Task, root_title: str) -> str:
    """Return the title of fix round N: ``fix 1: <the first task's title>``."""
    return f"fix {task.fix_round + 1}: {root_title}"


def build_fix_round(task: Task, root_title: str) -> Task:
    """Return the (unsaved) follow-up that tries to fix ``task``'s failed check."""
    return Task(
        prompt=fix_prompt(task),
        title=fix_title(task, root_title),
        backend=task.backend,
        model=task.model,
        project=task.project,
        priority=task.priority,
        timeout=task.timeout,
        resume=task.id,
        want_host=task.host,  # the session and the worktree live there
        artifact_globs=list(task.artifact_globs),
        max_turns=task.max_turns,
        max_budget_usd=task.max_budget_usd,
        verify=task.verify,
        verify_timeout=task.verify_timeout,
        fix_attempts=task.fix_attempts - 1,
        fix_round=task.fix_round + 1,
        race_id=task.race_id,
        race_slot=task.race_slot,
        batch_id=task.batch_id,
    )
