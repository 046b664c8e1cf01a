"""The scheduler's I/O loop: fetch state, call the pure planner, apply its decisions.

The loop keeps the pending queue and the tasks holding a slot (running or being launched) in
memory, updated by :meth:`SchedulerLoop.observe` on every task save, so a pass costs what the
planner costs, not a scan of the database. Each pass also fires due schedules, fails tasks
whose dependencies broke, attaches finished planning runs to their drafts, and now and then
looks for stale tasks.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from dobby.core.config import Settings
from dobby.core.errors import DispatchError, NotFound, TransportError, ValidationError
from dobby.core.models import Reason, Task, TaskStatus
from dobby.core.ports import SaveTask
from dobby.core.timefmt import maybe_time, parse_time, utcnow
from dobby.machines.hosts import HostManager, HostState
from dobby.machines.slurm.outcome import waiting_text
from dobby.results.halves import CONTINUE_PROMPT, fallback_prompt
from dobby.runner.runner import Runner
from dobby.runner.slurm import QUEUED, holds_slot
from dobby.scheduler import deps
from dobby.scheduler.intake import Intake
from dobby.scheduler.plan import HostSlot, Plan, PlanInput, plan
from dobby.scheduler.queue import PendingQueue
from dobby.scheduler.schedules import Schedules
from dobby.scheduler.usage import BUDGET, USAGE_LIMIT, Usage
from dobby.scheduler.watchdog import Watchdog
from dobby.store.db import Store

log = logging.getLogger("dobby.scheduler")

PENDING, RUNNING = TaskStatus.PENDING.value, TaskStatus.RUNNING.value
IDLE_WAIT = 1.0  # the longest the loop sleeps without a kick (staleness, schedules)
INTERACTIVE = "interactive"  # `dobby remote` sessions (runner/interactive.py watches those)
HELD = (USAGE_LIMIT, BUDGET)  # waits only a pass that looks at the task may end


class SchedulerLoop:
    """Start pending tasks when capacity allows; re-adopt running ones after a restart."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        hosts: HostManager,
        runner: Runner,
        intake: Intake,
        schedules: Schedules,
        save: SaveTask,
        free_gpus: Callable[[Iterable[Task]], Mapping[str, tuple[int, ...]]],
        usage: Usage,
    ) -> None:
        self.store = store
        self.usage = usage
        self.settings = settings
        self.hosts = hosts
        self.runner = runner
        self.intake = intake
        self.schedules = schedules
        self._save = save
        self._free_gpus = free_gpus
        self.dispatching: set[str] = set()
        self.queue = PendingQueue(aging=settings.priority_aging)
        self.deps = deps.Tracker()  # which queued tasks wait for dependencies
        self.active: dict[str, Task] = {}  # running or being launched: each holds a slot
        self.timed: dict[str, float] = {}  # queued task id -> its not_before (epoch)
        self.watchdog = Watchdog(
            store=store,
            logs=runner.logs,
            settings=settings,
            hosts=hosts,
            save=save,
            kill=runner.kill,
        )
        self._finished: list[Task] = []  # finished since the last pass (drafts, auto-retry)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._launches: set[asyncio.Task[None]] = set()

    def kick(self) -> None:
        """Ask for a scheduling pass soon (a task was added or finished, a host changed)."""
        self._wake.set()

    def observe(self, task: Task) -> None:
        """Track a task just saved: queue membership, slot holders, finished ones."""
        # A copy: the caller may keep changing its object (unsaved) or answer with it later.
        task = copy.copy(task)
        # A task whose job waits in a Slurm queue is not Dobby's to place any more, but it
        # holds its host's slot like a running one (max_agents caps Dobby's jobs there).
        if task.status == PENDING and task.id not in self.dispatching and not holds_slot(task):
            self.queue.put(task)
            self.deps.put(task)
        else:
            self.queue.discard(task.id)
            self.deps.discard(task.id)
        not_before = maybe_time(task.not_before) if task.status == PENDING else None
        if not_before is not None:
            self.timed[task.id] = not_before.timestamp()
        else:
            self.timed.pop(task.id, None)
        if holds_slot(task) or task.id in self.dispatching:
            self.active[task.id] = task
        else:
            self.active.pop(task.id, None)
        if TaskStatus(task.status).finished:
            self._finished.append(task)
            self.deps.changed(task.id)

    async def start(self) -> None:
        """Load the queue, re-adopt tasks from before a restart, then start the loop."""
        for task in self.store.tasks(status=(PENDING, RUNNING)):
            self.observe(task)
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
                if self.watchdog.due(time.time()):
                    self.watchdog.check(
                        [
                            t
                            for t in self.active.values()
                            if t.status == RUNNING and t.kind != INTERACTIVE
                        ]
                    )
            except Exception:  # noqa: BLE001 - the loop must survive a bad decision
                log.exception("scheduling pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self._idle_wait())
            except TimeoutError:
                pass

    def _idle_wait(self) -> float:
        due = self.schedules.next_due()
        if due is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.005, due - time.time()))

    def schedule_once(self) -> Plan | None:
        """Fire schedules, settle dependencies, decide what starts now and launch it."""
        self._settle_finished()
        now = time.time()
        self.usage.tick(now)
        due = self.schedules.next_due()
        if due is not None and due <= now:
            self.schedules.tick()
        if not len(self.queue):
            return None
        blocked = self._blocked()
        for tid, at in self.timed.items():  # a usage limit's reset not reached yet
            held = self.queue.get(tid)
            if at > now and held is not None and tid not in blocked:
                blocked[tid] = held.waiting_on or USAGE_LIMIT
        result = plan(self._plan_input(blocked, now))
        started = set()
        for decision in result.decisions:
            try:
                task = self.store.get_task(decision.task_id)
            except NotFound:  # deleted behind the scheduler's back
                self.queue.discard(decision.task_id)
                continue
            if decision.host is None:
                self._fail(task, Reason.DISPATCH_ERROR, decision.error or "no host")
                continue
            task.host = decision.host
            task.gpu_indices = decision.gpus
            task.account = self.usage.account_of(decision.host, task.backend)
            task.waiting_on = "dispatch"
            task.not_before = task.wait_reason = None
            self.dispatching.add(task.id)
            self._save(task)
            started.add(task.id)
            launch = asyncio.ensure_future(self._dispatch(task.id))
            self._launches.add(launch)
            launch.add_done_callback(self._launches.discard)
        self._update_waiting(result, blocked, started, now)
        return result

    def _plan_input(self, blocked: dict[str, str], now: float) -> PlanInput:
        holders = list(self.active.values())
        load: dict[str, int] = {}
        projects: dict[str, int] = {}
        for task in holders:
            load[task.host or ""] = load.get(task.host or "", 0) + 1
            # A person's interactive session uses a host slot but does not hold up the
            # project's queue.
            if task.project and task.kind != INTERACTIVE:
                projects[task.project] = projects.get(task.project, 0) + 1
        # GPUs held by running or launching tasks stay reserved (dobby.machines.gpu); freed at
        # the end.
        gpus_free = self._free_gpus(holders)
        over_hub, over_projects = self.usage.overruns(now)
        slots = [
            HostSlot(
                host=h,
                running=load.get(n, 0),
                reachable=(self.hosts.states.get(n) or HostState()).reachable,
                gpus_free=gpus_free.get(n, ()),
            )
            for n, h in self.hosts.hosts.items()
        ]
        return PlanInput(
            pending=self.queue,
            hosts=slots,
            running_total=len(holders),
            max_total=self.settings.max_concurrent_agents,
            busy_projects=projects,
            project_limits={p.name: p.max_concurrent for p in self.store.projects()},
            blocked=blocked,
            busy_schedules={t.schedule_id for t in holders if t.schedule_id},
            now=now,
            aging=self.settings.priority_aging,
            limited=self.usage.limited_hosts(now),
            over_budget=set(over_projects),
            hub_over_budget=over_hub is not None,
        )

    def _blocked(self) -> dict[str, str]:
        """Fail tasks whose dependencies broke (transitively); return the ones still waiting."""
        while doomed := self.deps.settle(self.store.task_status):
            for tid, blocked in doomed.items():
                task = self.queue.get(tid)
                if task is not None:  # failing it makes its own dependents due a check
                    self._fail(task, Reason.DEPENDENCY_FAILED, deps.failure_message(blocked))
        return dict.fromkeys(self.deps.waiting, "dependencies")

    def _update_waiting(
        self, result: Plan, blocked: dict[str, str], started: set[str], now: float
    ) -> None:
        """Save ``waiting_on`` where it changed (tasks not examined wait on capacity).

        Only tasks that may have changed are looked at: the ones this pass examined, the ones
        whose dependencies were re-checked, and the few waiting on a host, a schedule, a usage
        limit or a budget. The thousands that simply wait their turn cost nothing.
        """
        ids = {*result.waiting, *self.deps.checked} | {t.id for t in self.queue.flagged()}
        self.deps.checked.clear()
        for tid in ids:
            task = self.queue.get(tid)
            if task is None or tid in started:
                continue
            want = blocked.get(tid) or result.waiting.get(tid)
            if want is None:  # not examined (the hub filled up first): a hold stays as it was
                want = task.waiting_on if task.waiting_on in HELD else "capacity"
            want, reason, not_before = self._why(task, want, now)
            if want == USAGE_LIMIT and not_before is not None:
                until = parse_time(not_before).timestamp()
                why = reason or "its accounts are at their usage limit"
                if self.usage.fall_back(task, until=until, now=now, why=why):
                    self._save(task)  # back in the queue on its fallback backend
                    self.kick()
                    continue
            if (task.waiting_on, task.wait_reason, task.not_before) != (want, reason, not_before):
                was = task.waiting_on
                task.waiting_on, task.wait_reason, task.not_before = want, reason, not_before
                event = "task.queued" if was == "dependencies" else "task.updated"
                self._save(task, event)

    def _why(self, task: Task, want: str, now: float) -> tuple[str, str | None, str | None]:
        """Return (waiting_on, wait_reason, not_before) of a task found waiting on ``want``.

        A hold whose cause is gone (the budget has room, no account is limited) is a wait for
        capacity: the task was not looked at because the hub filled up first.
        """
        if want == BUDGET:
            hub, projects = self.usage.overruns(now)
            over = projects.get(task.project or "") or hub
            if over is None:
                return "capacity", None, None
            return want, over.text(self.usage.tz), None
        if want != USAGE_LIMIT:
            return want, None, None
        held = self.timed.get(task.id)
        if held is not None and held > now:
            return want, task.wait_reason, task.not_before  # its own reset, set at the limit
        reason, not_before = self.usage.explain(task, now)
        if not_before is None:
            return "capacity", None, None
        if task.resume_session:
            reason += f"; then resumes session {task.resume_session} on {task.resume_host}"
        return want, reason, not_before

    def _settle_finished(self) -> None:
        """React to tasks that finished since the last pass: plans, automatic retries."""
        finished, self._finished = self._finished, []
        for task in finished:
            try:
                if task.plan_for:
                    self.intake.plan_finished(task)
                self.intake.auto_retry(task)
            except Exception:  # noqa: BLE001 - one bad task must not stop the others
                log.exception("settling finished task %s failed", task.id)

    def _fail(self, task: Task, reason: Reason, error: str) -> None:
        task.status = TaskStatus.FAILED.value
        task.reason = reason.value
        task.error = error
        task.waiting_on = None
        task.finished_at = utcnow()
        self._save(task, "task.finished")

    def _release(self, task_id: str) -> None:
        """Forget a launch: the task no longer holds a slot unless it is running."""
        self.dispatching.discard(task_id)
        held = self.active.get(task_id)
        if held is not None and not holds_slot(held):
            self.active.pop(task_id, None)

    async def _dispatch(self, task_id: str) -> None:
        try:
            # Write-ahead: the host assignment is on disk before the launch, so a hub killed
            # mid-launch finds it (recovery checks the host) instead of launching it twice.
            await self.store.durable()
            task = self.store.get_task(task_id)
            if task.status != PENDING:
                return  # cancelled before the launch began
            resume_session = prompt = None
            if task.resume_session:  # the half after a usage limit: the same session goes on
                resume_session, prompt = task.resume_session, CONTINUE_PROMPT
            elif task.resume:
                resume_session = self.store.get_task(task.resume).session_id
            elif task.fallback_from:
                prompt = fallback_prompt(task.prompt, task.fallback_from)
            try:
                await self.runner.launch(task, resume_session=resume_session, prompt=prompt)
            except Exception as exc:  # noqa: BLE001 - a launch must never leave a task stuck
                if not isinstance(exc, DispatchError | TransportError | NotFound | ValidationError):
                    log.exception("launch of %s failed unexpectedly", task_id)
                current = self.store.get_task(task_id)
                if current.status == PENDING:
                    self._release(task_id)
                    self._fail(current, Reason.DISPATCH_ERROR, str(exc) or type(exc).__name__)
                return
            current = self.store.get_task(task_id)
            current.slurm_job = task.slurm_job
            if current.status != PENDING:
                await self.runner.kill(current)  # cancelled while launching
                return
            current.base_commit = task.base_commit
            current.resume = task.resume
            current.log_base = task.log_base
            if current.slurm_job:  # in its cluster's queue: it starts when Slurm runs it
                current.waiting_on = QUEUED
                current.slurm_state = waiting_text("")
                self._save(current)
                self.runner.watch(current)
                return
            current.status = RUNNING
            current.waiting_on = None
            current.started_at = utcnow()
            self._save(current, "task.started")
            self.runner.follow(current)
        finally:
            self._release(task_id)
            self.kick()

    async def _recover(self) -> None:
        """Re-adopt tasks that were running (or being launched) when the hub stopped."""
        for task in list(self.active.values()):
            if task.kind == INTERACTIVE:
                continue  # no output to follow: runner/interactive.py watches its session
            if task.status == PENDING:  # its job waits in a Slurm queue
                log.info("re-adopting Slurm job %s of task %s", task.slurm_job, task.id)
                self.runner.watch(task)
                continue
            log.info("re-adopting running task %s on %s", task.id, task.host)
            self.runner.follow(task, adopt=True)
        for task in self.queue.tasks():
            if task.waiting_on == "dispatch" and task.host:
                self.dispatching.add(task.id)
                self.observe(task)  # holds its slot while we look
                asyncio.ensure_future(self._recover_dispatch(task))

    async def _recover_dispatch(self, task: Task) -> None:
        try:
            state = await self.runner.session_state(task)
        except (TransportError, NotFound) as exc:
            log.warning("cannot check %s on %s: %s; re-queueing", task.id, task.host, exc)
            state = {}
        finally:
            self._release(task.id)
        if state.get("job"):  # submitted to Slurm before the hub stopped: adopt its job
            task.slurm_job = state["job"]
            task.waiting_on = QUEUED
            task.slurm_state = waiting_text("")
            self._save(task)
            self.runner.watch(task)
        elif state.get("session") == "1" or state.get("exit"):
            task.status = RUNNING
            task.waiting_on = None
            task.started_at = task.started_at or utcnow()
            self._save(task, "task.started")
            self.runner.follow(task, adopt=True)
        elif state.get("started") == "1":
            # It did start, and its session died with no exit code: launching it again
            # would run the work twice.
            self._fail(
                task,
                Reason.HOST_LOST,
                f"tmux session dobby-{task.id} is gone and left no exit code on {task.host}",
            )
        else:
            task.waiting_on = "capacity"
            task.host = None
            self._save(task)
        self.kick()
