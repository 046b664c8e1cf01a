"""Retention of host leftovers: which task directories and worktrees may go (pure).

A finished task's ``tasks/<id>`` may go once it is older than the retention. A worktree is
shared by a follow-up chain, so it goes only when no task of its chain is unfinished and every
task of its chain goes now or went before. Tasks not finished are never candidates.
"""

from __future__ import annotations

from collections.abc import Iterable

from dobby.core.models import Task
from dobby.core.timefmt import parse_time
from dobby.hostside.results import GcItem
from dobby.results.followup import MAX_CHAIN


def _root(task: Task, by_id: dict[str, Task]) -> str:
    current, seen = task, {task.id}
    while current.resume and current.resume in by_id and len(seen) < MAX_CHAIN:
        current = by_id[current.resume]
        if current.id in seen:
            break
        seen.add(current.id)
    return current.id


def cleaned(task: Task) -> bool:
    """Return whether the host copy of the task's last attempt was removed."""
    # A retried task runs again after a cleanup: only a cleanup after its end counts.
    return bool(task.host_cleaned_at) and (task.host_cleaned_at or "") >= (task.finished_at or "")


def plan(tasks: Iterable[Task], *, now: float, older_than: float) -> list[GcItem]:
    """Return what to free: one item per finished, uncleaned task past the retention."""
    all_tasks = list(tasks)
    by_id = {t.id: t for t in all_tasks}
    chains: dict[str, list[Task]] = {}
    for task in all_tasks:
        chains.setdefault(_root(task, by_id), []).append(task)
    chosen: set[str] = set()
    for task in all_tasks:
        if not task.host or cleaned(task) or not task.state.finished:
            continue
        try:
            finished = parse_time(task.finished_at or "").timestamp()
        except ValueError:
            continue
        if finished <= now - older_than:
            chosen.add(task.id)
    items: list[GcItem] = []
    for root, members in chains.items():
        goes = [t for t in members if t.id in chosen]
        if not goes:
            continue
        # The worktree goes with the chain's last task to go: all others are gone already.
        whole = all(t.id in chosen or cleaned(t) for t in members)
        last = max(goes, key=lambda t: (t.finished_at or "", t.id)) if whole else None
        for task in sorted(goes, key=lambda t: t.id):
            items.append(
                GcItem(
                    task_id=task.id,
                    host=task.host or "",
                    project=task.project,
                    worktree=root if task is last else None,
                )
            )
    return items
