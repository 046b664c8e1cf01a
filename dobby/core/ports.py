"""The seams a service receives instead of the hub: plain callables, typed once.

The hub owns the state; each service gets only the few operations it uses (see
``dobby.hub.core.Hub``, where they are wired), so no package below the hub imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from dobby.core.models import Task

GetTask = Callable[[str], Task]  # a task by id or unique prefix (NotFound otherwise)
# A token for a live task's saved state, by exact id: a new one (never equal) after each save;
# None for a task that is not live. Lets a caller keep a task it read until it changes.
TaskRevision = Callable[[str], object | None]
Kick = Callable[[], None]  # ask the scheduler for a pass soon
# Hold other launches while this task's is in flight (None: no longer).
LaunchAlone = Callable[[str | None], None]
CancelTask = Callable[[str], Awaitable[Task]]  # cancel a task (killing it if it runs)
# A usage limit stopped this task's run (its half is recorded): decide its wait and save it.
LimitHit = Callable[[Task], None]


class SaveTask(Protocol):
    """Persist a task, then publish ``event`` (the one place tasks change)."""

    def __call__(self, task: Task, event: str = "task.updated") -> None: ...
