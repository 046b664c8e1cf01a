"""Follow-up chains: a task submitted with ``resume`` continues its parent's agent session.

A follow-up runs in the worktree of the first task of its chain (claude keys its sessions by
working directory, so the directory must stay the same), on a branch of its own that starts
where its parent's work ended. Codex reports tokens cumulated over the whole thread, so a
follow-up's own usage is what its thread used minus what its parent's had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from dobby.backends.pricing import ModelPrice, cost, price_for
from dobby.core.errors import NotFound
from dobby.core.models import Task, Tokens

MAX_CHAIN = 1000  # guards against a cycle in hand-edited or imported data

GetTask = Callable[[str], Task]


def chain(task: Task, get_task: GetTask) -> list[str]:
    """Return the ids from the chain's first task down to ``task``."""
    ids = [task.id]
    current = task
    while current.resume and len(ids) < MAX_CHAIN:
        try:
            current = get_task(current.resume)
        except NotFound:
            break
        if current.id in ids:
            break
        ids.append(current.id)
    ids.reverse()
    return ids


def worktree_id(task: Task, get_task: GetTask) -> str:
    """Return the id whose ``worktrees/<id>`` directory the task works in."""
    return chain(task, get_task)[0] if task.resume else task.id


def parent_of(task: Task, get_task: GetTask) -> Task | None:
    """Return the task this one follows up, or None."""
    if not task.resume:
        return None
    try:
        return get_task(task.resume)
    except NotFound:
        return None


def followup_base(task: Task, get_task: GetTask) -> str | None:
    """Return the commit a follow-up starts from: where its parent's work ended."""
    parent = parent_of(task, get_task)
    if parent is None or not parent.project or parent.project != task.project:
        return None
    return parent.head_commit or parent.base_commit


def children(tasks: Iterable[Task]) -> dict[str, list[str]]:
    """Return parent id → ids of its direct follow-ups, oldest first."""
    found: dict[str, list[tuple[str, str]]] = {}
    for task in tasks:
        if task.resume:
            found.setdefault(task.resume, []).append((task.created_at, task.id))
    return {k: [i for _, i in sorted(v)] for k, v in found.items()}


def own_tokens(task: Task, parent: Task | None) -> Tokens:
    """Return a codex follow-up's own tokens: its thread's totals minus its parent's."""
    if parent is None or task.backend != "codex" or parent.backend != "codex":
        return task.tokens
    if not parent.session_id or parent.session_id != task.session_id:
        return task.tokens
    return minus(task.tokens, parent.tokens)


def minus(tokens: Tokens, baseline: Tokens | None) -> Tokens:
    """Return ``tokens - baseline`` count by count, never below zero."""
    if baseline is None:
        return tokens
    return Tokens(
        input=max(tokens.input - baseline.input, 0),
        output=max(tokens.output - baseline.output, 0),
        cache_read=max(tokens.cache_read - baseline.cache_read, 0),
        cache_write=max(tokens.cache_write - baseline.cache_write, 0),
    )


def codex_cost(tokens: Tokens, model: str | None, prices: Mapping[str, ModelPrice]) -> float | None:
    """Return the cost of codex tokens (input includes the cached ones), None if unpriced."""
    price = price_for(model, prices)
    if price is None:
        return None
    fresh = max(tokens.input - tokens.cache_read - tokens.cache_write, 0)
    return cost(
        Tokens(
            input=fresh,
            output=tokens.output,
            cache_read=tokens.cache_read,
            cache_write=tokens.cache_write,
        ),
        price,
    )


def settle_usage(task: Task, get_task: GetTask, prices: Mapping[str, ModelPrice]) -> None:
    """Make a collected codex follow-up count only its own tokens, priced like its thread."""
    parent = parent_of(task, get_task)
    tokens = own_tokens(task, parent)
    if parent is None or tokens is task.tokens:
        return
    # The model the run really used (the rollout's), else the one asked for, else the thread's.
    model = (task.models[0] if task.models else None) or task.model or parent.model
    task.tokens = tokens
    task.models = task.models or ([model] if model else [])
    task.cost_usd = codex_cost(tokens, model, prices)
