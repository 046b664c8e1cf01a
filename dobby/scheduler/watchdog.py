"""Stale tasks: a running task whose output has not grown for ``stale_timeout`` seconds.

What counts: the hub's copy of the task's output (``results_dir/<id>/out.jsonl``, appended by
the follower as lines arrive). Its last growth is its mtime; a task with no output yet counts
from its start, and a hub that just (re)started gives every task a full ``stale_timeout`` from
its own start, since it could not see output while it was down. A task on an unreachable host
is left alone: that is the follower's and recovery's case (``host_lost``), not staleness.

``stale_action: kill`` (default) kills the task's session and fails it with reason ``stale``;
``mark`` leaves it running, sets ``stale_since`` and publishes ``task.stale`` (cleared as soon
as output flows again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from dobby.core.config import Settings
from dobby.core.models import Reason, Task, TaskStatus
from dobby.core.ports import SaveTask
from dobby.core.timefmt import parse_time, utcnow
from dobby.machines.hosts import HostManager
from dobby.runner.interactive import KIND as INTERACTIVE  # `dobby remote` sessions
from dobby.store.db import Store
from dobby.store.tasklog import TaskLogs

log = logging.getLogger("dobby.scheduler")

STALE_ACTIONS = ("kill", "mark")


def last_activity(*, log_mtime: float | None, started: float | None, hub_started: float) -> float:
    """Return when a task last showed life, as far as this hub can tell (pure)."""
    seen = [t for t in (log_mtime, started) if t is not None]
    return max([hub_started, *seen])


def stale_tasks(
    tasks: Iterable[Task], *, activity: dict[str, float], now: float, timeout: float
) -> list[Task]:
    """Return the tasks whose last activity is older than ``timeout`` seconds (pure)."""
    return [t for t in tasks if now - activity.get(t.id, now) > timeout]


class Watchdog:
    """Check running tasks for staleness now and then; kill or mark the stale ones."""

    def __init__(
        self,
        *,
        store: Store,
        logs: TaskLogs,
        settings: Settings,
        hosts: HostManager,
        save: SaveTask,
        kill: Callable[[Task], Awaitable[None]],
    ) -> None:
        self.store = store
        self.logs = logs
        self.settings = settings
        self.hosts = hosts
        self._save = save
        self._kill = kill
        self.hub_started = time.time()
        self._last_check = 0.0
        # task id -> its last activity found: a lower bound for good (output only adds to it),
        # so a task seen active within the timeout is not looked at again until it could be
        # stale. Looking at each of 1,000 running tasks (a stat, a parse) held the loop 11-15
        # ms every check.
        self._seen: dict[str, float] = {}
        self._kills: set[asyncio.Task[None]] = set()  # kills in flight (the loop must not wait)

    @property
    def interval(self) -> float:
        """Return how often to check: often enough to act within ~10% of the timeout."""
        return max(0.2, min(5.0, self.settings.stale_timeout / 10))

    def due(self, now: float) -> bool:
        """Return True when a check is due."""
        return now - self._last_check >= self.interval

    def _activity(self, task: Task) -> float:
        mtime = self.logs.mtime(task.id)
        started = parse_time(task.started_at).timestamp() if task.started_at else None
        return last_activity(log_mtime=mtime, started=started, hub_started=self.hub_started)

    def check(self, running: Iterable[Task]) -> None:
        """Kill (or mark) the running tasks that went stale; clear marks that no longer hold."""
        now = time.time()
        self._last_check = now
        timeout = self.settings.stale_timeout
        action = self.settings.stale_action
        states = self.hosts.states
        live = [
            t
            for t in running
            if t.status == TaskStatus.RUNNING.value
            and t.kind != INTERACTIVE  # a person drives it (dobby remote): quiet is fine
            and getattr(states.get(t.host or ""), "reachable", None) is not False
        ]
        seen, self._seen = self._seen, {}
        activity = {}
        for t in live:
            known = seen.get(t.id)
            if known is None or now - known > timeout or t.stale_since is not None:
                known = self._activity(t)
            activity[t.id] = self._seen[t.id] = known
        stale = {t.id for t in stale_tasks(live, activity=activity, now=now, timeout=timeout)}
        for task in live:
            if task.id not in stale:
                if task.stale_since is not None:
                    current = self.store.get_task(task.id)
                    current.stale_since = None
                    self._save(current)
                continue
            current = self.store.get_task(task.id)
            if current.status != TaskStatus.RUNNING.value:
                continue
            quiet = now - activity[task.id]
            if action == "mark":
                if current.stale_since is None:
                    current.stale_since = utcnow()
                    log.warning("task %s has been silent for %.0fs", task.id, quiet)
                    self._save(current, "task.stale")
                continue
            log.warning("task %s silent for %.0fs: killing it as stale", task.id, quiet)
            current.reason = Reason.STALE.value
            current.error = (
                f"no output for {quiet:.0f}s (stale_timeout {timeout:g}s); killed on {current.host}"
            )
            current.end(TaskStatus.FAILED)
            # Failed first, then killed: the follower then stops instead of collecting.
            self._save(current, "task.finished")
            kill = asyncio.ensure_future(self._kill(current))
            self._kills.add(kill)
            kill.add_done_callback(self._kills.discard)
