"""The scheduler's I/O loop: fetch state, call the pure planner, apply its decisions."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dobby.errors import DispatchError, NotFound, TransportError, ValidationError
from dobby.hosts import HostState
from dobby.models import Reason, Task, TaskStatus, utcnow
from dobby.scheduler.plan import HostSlot, PlanInput, plan

if TYPE_CHECKING:
    from dobby.service import Dobby

log = logging.getLogger("dobby.scheduler")


class SchedulerLoop:
    """Start pending tasks when capacity allows; re-adopt running ones after a restart."""

    def __init__(self, *, dobby: Dobby) -> None:
        self.dobby = dobby
        self.dispatching: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Ask for a scheduling pass soon (a task was added or finished, a host changed)."""
        self._wake.set()

    async def start(self) -> None:
        """Re-adopt tasks from before a restart, then start the loop."""
        await self._recover()
        self._task = asyncio.ensure_future(self._schedule_loop())

    async def stop(self) -> None:
        """Stop the loop (tasks keep running on their hosts)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- scheduling --------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.schedule_once()
            except Exception:  # noqa: BLE001 - the loop must survive a bad decision
                log.exception("scheduling pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass

    def schedule_once(self) -> None:
        """Decide what starts now and launch it."""
        pending = [
            t
            for t in self.dobby.store.tasks(status=TaskStatus.PENDING.value)
            if t.id not in self.dispatching
        ]
        if not pending:
            return
        running = self.dobby.store.tasks(status=TaskStatus.RUNNING.value)
        load: dict[str, int] = {}
        for task in running:
            load[task.host or ""] = load.get(task.host or "", 0) + 1
        for task_id in self.dispatching:
            host = self.dobby.get_task(task_id).host or ""
            load[host] = load.get(host, 0) + 1
        slots = [
            HostSlot(
                host=h,
                running=load.get(n, 0),
                reachable=(self.dobby.hosts.states.get(n) or HostState()).reachable,
            )
            for n, h in self.dobby.hosts.hosts.items()
        ]
        decisions = plan(
            PlanInput(
                pending=pending,
                hosts=slots,
                running_total=len(running) + len(self.dispatching),
                max_total=self.dobby.settings.max_concurrent_agents,
            )
        )
        for decision in decisions:
            task = self.dobby.get_task(decision.task_id)
            if decision.host is None:
                self._fail(task, Reason.DISPATCH_ERROR, decision.error or "no host")
                continue
            task.host = decision.host
            task.waiting_on = "dispatch"
            self.dobby.save(task)
            self.dispatching.add(task.id)
            asyncio.ensure_future(self._dispatch(task.id))

    def _fail(self, task: Task, reason: Reason, error: str) -> None:
        task.status = TaskStatus.FAILED.value
        task.reason = reason.value
        task.error = error
        task.waiting_on = None
        task.finished_at = utcnow()
        self.dobby.save(task, "task.finished")

    async def _dispatch(self, task_id: str) -> None:
        try:
            task = self.dobby.get_task(task_id)
            resume_session = None
            if task.resume:
                resume_session = self.dobby.get_task(task.resume).session_id
            try:
                await self.dobby.runner.launch(task, resume_session=resume_session)
            except (DispatchError, TransportError, NotFound, ValidationError) as exc:
                current = self.dobby.get_task(task_id)
                if current.status == TaskStatus.PENDING.value:
                    self._fail(current, Reason.DISPATCH_ERROR, str(exc))
                return
            current = self.dobby.get_task(task_id)
            if current.status != TaskStatus.PENDING.value:
                await self.dobby.runner.kill(current)  # cancelled while launching
                return
            current.base_commit = task.base_commit
            current.resume = task.resume
            current.status = TaskStatus.RUNNING.value
            current.waiting_on = None
            current.started_at = utcnow()
            self.dobby.save(current, "task.started")
            self.dobby.runner.follow(current)
        finally:
            self.dispatching.discard(task_id)
            self.kick()

    async def _recover(self) -> None:
        """Re-adopt tasks that were running (or being launched) when the hub stopped."""
        for task in self.dobby.store.tasks(status=TaskStatus.RUNNING.value):
            log.info("re-adopting running task %s on %s", task.id, task.host)
            self.dobby.runner.follow(task, adopt=True)
        for task in self.dobby.store.tasks(status=TaskStatus.PENDING.value):
            if task.waiting_on == "dispatch" and task.host:
                asyncio.ensure_future(self._recover_dispatch(task))

    async def _recover_dispatch(self, task: Task) -> None:
        self.dispatching.add(task.id)
        try:
            state = await self.dobby.runner.session_state(task)
        except (TransportError, NotFound) as exc:
            log.warning("cannot check %s on %s: %s; re-queueing", task.id, task.host, exc)
            state = {}
        finally:
            self.dispatching.discard(task.id)
        if state.get("session") == "1" or state.get("exit"):
            task.status = TaskStatus.RUNNING.value
            task.waiting_on = None
            task.started_at = task.started_at or utcnow()
            self.dobby.save(task, "task.started")
            self.dobby.runner.follow(task, adopt=True)
        else:
            task.waiting_on = "capacity"
            task.host = None
            self.dobby.save(task)
        self.kick()
