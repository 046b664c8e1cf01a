"""A task a usage limit cut runs in halves: one task, one log, totals that add up.

Each half that a limit ended is recorded in the task's ``attempts`` (``kind: usage_limit``)
with what it alone cost and used; the task's ``cost_usd`` and ``tokens`` are always the sum
over its halves since its last retry. Codex reports the tokens of a whole thread, so a half
that resumed the thread counts only what it added to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dobby.backends.pricing import ModelPrice
from dobby.core.models import Task, Tokens
from dobby.results.followup import codex_cost, minus

HALF = "usage_limit"  # the ``kind`` of an attempts record a usage limit ended

CONTINUE_PROMPT = (
    "Your previous run in this session was stopped by a usage limit before you finished; the "
    "limit has reset now. Continue the task from where you left off, and finish it.\n"
)


def fallback_prompt(prompt: str, previous: str) -> str:
    """Return the prompt of a run that takes over from ``previous`` (another backend)."""
    return (
        f"A {previous} agent started this task in this repository and was stopped by a usage "
        "limit; whatever it committed is already here. Check what is done, then finish the "
        f"task:\n\n{prompt}"
    )


@dataclass(frozen=True)
class HalfUsage:
    """What one run of a task used by itself."""

    cost_usd: float | None
    tokens: Tokens
    thread_tokens: Tokens  # as the agent reported them (codex: the thread's totals)


def halves(task: Task) -> list[dict[str, Any]]:
    """Return the records of the halves since the task's last retry, oldest first."""
    out: list[dict[str, Any]] = []
    for record in task.attempts:
        if record.get("kind") == HALF:
            out.append(record)
        else:
            out = []  # a retry starts the totals again
    return out


def _tokens(value: Any) -> Tokens:
    if isinstance(value, Tokens):
        return value
    if isinstance(value, dict):
        known = {k: int(v) for k, v in value.items() if k in Tokens.__dataclass_fields__}
        return Tokens(**known)
    return Tokens()


def _plus(a: Tokens, b: Tokens) -> Tokens:
    return Tokens(
        input=a.input + b.input,
        output=a.output + b.output,
        cache_read=a.cache_read + b.cache_read,
        cache_write=a.cache_write + b.cache_write,
    )


def settle(task: Task, *, prices: Mapping[str, ModelPrice]) -> HalfUsage:
    """Make the task's cost and tokens the totals over its halves; return this run's own.

    Call it once per collected run, after the run's own figures are on the task.
    """
    earlier = halves(task)
    reported = task.tokens
    own_tokens, own_cost = reported, task.cost_usd
    last = earlier[-1] if earlier else None
    if (
        last is not None
        and task.backend == "codex"
        and last.get("backend", task.backend) == "codex"
        and task.session_id
        and last.get("session_id") == task.session_id
    ):
        own_tokens = minus(reported, _tokens(last.get("thread_tokens")))
        model = (task.models[0] if task.models else None) or task.model
        own_cost = codex_cost(own_tokens, model, prices) if own_tokens != Tokens() else 0.0
    own = HalfUsage(cost_usd=own_cost, tokens=own_tokens, thread_tokens=reported)
    total_tokens, total_cost = own_tokens, own_cost
    for record in earlier:
        total_tokens = _plus(total_tokens, _tokens(record.get("tokens")))
        cost = record.get("cost_usd")
        total_cost = None if total_cost is None or cost is None else round(total_cost + cost, 6)
    task.tokens, task.cost_usd = total_tokens, total_cost
    if task.fallback_from and earlier:
        note = fallback_note(task)
        if note not in task.warnings:
            task.warnings = [*task.warnings, note]
    return own


def fallback_note(task: Task) -> str:
    """Return the warning a run on a fallback backend carries (its chain says so)."""
    return (
        f"a usage limit stopped its {task.fallback_from} run; it went on with {task.backend} "
        "instead (a new session)"
    )


def record_half(task: Task, own: HalfUsage, *, finished_at: str) -> dict[str, Any]:
    """Append the run a usage limit just ended to the task's attempts; return the record."""
    record = {
        "attempt": task.attempt,
        "kind": HALF,
        "status": "interrupted",
        "reason": HALF,
        "backend": task.backend,
        "host": task.host,
        "account": task.account,
        "session_id": task.session_id,
        "started_at": task.started_at,
        "finished_at": finished_at,
        "cost_usd": own.cost_usd,
        "tokens": own.tokens.to_dict(),
        "thread_tokens": own.thread_tokens.to_dict(),
        "summary": task.summary,
        "quota": task.quota,
        "log_offset": task.log_base,
    }
    task.attempts = [*task.attempts, record]  # a new list: the stored one may be shared
    return record
