"""The tasks holding a slot (running or being launched), with what a pass needs summed up.

A scheduling pass asks how many tasks each host and each project runs, which schedules have
a run going and which GPUs are reserved. Counted afresh from every holder, that cost each pass
~1.5 ms at 1,000 running, and a pass runs for every submit and every end; here the counts
change as holders come and go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import ItemsView, Iterator, Mapping, ValuesView

from dobby.core.models import Task
from dobby.runner.interactive import KIND as INTERACTIVE  # `dobby remote` sessions


def _key(task: Task) -> tuple[str, str | None, str | None, bool]:
    """Return what a holder counts for: host, project, schedule, GPUs reserved."""
    project = task.project if task.kind != INTERACTIVE else None
    return task.host or "", project, task.schedule_id, bool(task.gpu_indices)


class Holders(Mapping[str, Task]):
    """Task id -> the task, as last saved; counts kept in step with every change."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        # What each was counted for: the task kept is a shallow copy, whose lists its saver
        # may still change (a recount from it could miss what to take back).
        self._keys: dict[str, tuple[str, str | None, str | None, bool]] = {}
        self.hosts: Counter[str] = Counter()  # host -> holders there
        # A person's interactive session uses a host slot but does not hold up the project.
        self.projects: Counter[str] = Counter()
        self.schedules: Counter[str] = Counter()  # schedule id -> its runs holding a slot
        self.gpu_holders: dict[str, Task] = {}  # the holders that reserved GPUs

    def __getitem__(self, task_id: str) -> Task:
        return self._tasks[task_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    # The dict's own views: Mapping's would look every task up again by its id.
    def values(self) -> ValuesView[Task]:
        return self._tasks.values()

    def items(self) -> ItemsView[str, Task]:
        return self._tasks.items()

    def get(self, task_id: str, default: Task | None = None) -> Task | None:  # type: ignore[override]
        return self._tasks.get(task_id, default)

    def put(self, task: Task) -> None:
        """Add or replace a holder (a task saved again may have changed host or GPUs)."""
        self.discard(task.id)
        host, project, schedule, gpus = key = _key(task)
        self._tasks[task.id] = task
        self._keys[task.id] = key
        self.hosts[host] += 1
        if project:
            self.projects[project] += 1
        if schedule:
            self.schedules[schedule] += 1
        if gpus:
            self.gpu_holders[task.id] = task

    def discard(self, task_id: str) -> None:
        """Remove a holder if it is one."""
        key = self._keys.pop(task_id, None)
        if key is None:
            return
        del self._tasks[task_id]
        host, project, schedule, _ = key
        _decrement(self.hosts, host)
        if project:
            _decrement(self.projects, project)
        if schedule:
            _decrement(self.schedules, schedule)
        self.gpu_holders.pop(task_id, None)


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
