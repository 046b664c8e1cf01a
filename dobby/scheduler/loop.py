"""The scheduler's I/O loop: fetch state, call the pure planner, apply its decisions.

The loop keeps the pending queue and the tasks holding a slot (running or being launched) in
memory, updated by :meth:`SchedulerLoop.observe` on every task save, so a pass costs what the
planner costs, not a scan of the database. Each pass also fires due schedules, fails tasks
whose dependencies broke, attaches finished planning runs to their drafts, and now and then
looks for stale tasks.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from dobby.core.aio import stop_task, stop_tasks, wait_event
from dobby.core.config import Settings
from dobby.core.errors import (
    DispatchError,
    LaunchUnknown,
    NotFound,
    StorageError,
    TransportError,
    ValidationError,
)
from dobby.core.models import Reason, Task, TaskStatus
from dobby.core.ports import SaveTask
from dobby.core.retry import Backoff, Retry
from dobby.core.timefmt import maybe_time, parse_time, utcnow
from dobby.machines.hosts import HostManager, HostState
from dobby.machines.slurm.outcome import waiting_text
from dobby.results.halves import CONTINUE_PROMPT, fallback_prompt
from dobby.runner import settle
from dobby.runner.interactive import KIND as INTERACTIVE  # `dobby remote` sessions
from dobby.runner.runner import Runner
from dobby.runner.slurm import QUEUED, holds_slot
from dobby.scheduler import deps
from dobby.scheduler.batches import UNACCEPTED
from dobby.scheduler.holders import Holders
from dobby.scheduler.intake import Intake
from dobby.scheduler.plan import HostSlot, Plan, PlanInput, plan
from dobby.scheduler.queue import PendingQueue, Signature, signature
from dobby.scheduler.schedules import Schedules
from dobby.scheduler.usage import BUDGET, USAGE_LIMIT, Usage
from dobby.scheduler.watchdog import Watchdog
from dobby.store.db import Store
from dobby.store.query import LIVE

log = logging.getLogger("dobby.scheduler")

PENDING, RUNNING = TaskStatus.PENDING, TaskStatus.RUNNING
IDLE_WAIT = 1.0  # the longest the loop sleeps without a kick (staleness, schedules)
SETTLE_BACKOFF = Backoff(first=0.25, cap=5.0)  # asking a host about a launch it may have run
HELD = (USAGE_LIMIT, BUDGET)  # waits only a pass that looks at the task may end
KEPT = (*HELD, "host")  # what a task not reached by a pass keeps showing
MAX_SIGNATURES = 4096  # remembered answers per placement signature
STOP_WAIT = 0.5  # the loop and the launches in flight each get this long to end at a stop
ALONE_MAX = 0.1  # seconds a launch may hold back the others (see launch_alone)


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
        self.active = Holders()  # running or being launched: each holds a slot
        self.timed: dict[str, float] = {}  # queued task id -> its not_before (epoch)
        self._timers: list[tuple[float, str]] = []  # (not_before, id): when a hold ends
        # Why each signature's skipped tasks last waited, as saved on them: a pass saves
        # them all again only when that changes (see _update_waiting).
        self._closed_as: dict[Signature, str] = {}
        # The signatures the last pass found no host for: a new task placed alike is first
        # saved waiting on "host", so the pass after it has nothing to save again.
        self._no_host: set[Signature] = set()
        self._guessed: set[str] = set()  # queued with that guess, not yet looked at by a pass
        intake.first_wait = self.first_wait
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
        self._closed = False  # stopping: no new launches, settles or passes
        self._alone: tuple[str, float] | None = None  # (task id, until): see launch_alone

    def kick(self) -> None:
        """Ask for a scheduling pass soon (a task was added or finished, a host changed)."""
        self._wake.set()

    def place_now(self) -> None:
        """Run a pass now, before the caller waits for the disk (a batch was just queued).

        Its placements then reach the disk in the same group commit as the batch, and its
        first launches wait for one commit and fsync, not for a second one after it (tens of
        ms with a thousand tasks). Does nothing until the loop runs (recovery comes first).
        """
        if self._task is None or self._task.done() or self._closed:
            return
        try:
            self.schedule_once()
        except Exception:  # noqa: BLE001 - the batch is queued; the loop's next pass retries
            log.exception("scheduling pass failed")

    def launch_alone(self, task_id: str | None) -> None:
        """Start no other launch while ``task_id``'s is in flight, for ALONE_MAX at most.

        For a batch's first task: placed as the rest was queued, the next 160 launches shared
        the hosts' cores with its own, which took 36-50 ms; alone (and with a turn of the loop
        every 5 tasks queued, see Batches) 21-31 ms (traced, 1,000 tasks over 20 loopback
        hosts). ``None`` ends the hold.
        """
        if task_id is None or task_id not in self.dispatching:
            self._alone = None
            self.kick()
            return
        self._alone = (task_id, time.monotonic() + ALONE_MAX)

    def _held_back(self) -> bool:
        if self._alone is None:
            return False
        task_id, until = self._alone
        if task_id in self.dispatching and time.monotonic() < until:
            return True
        self._alone = None
        return False

    def observe(self, task: Task) -> None:
        """Track a task just saved: queue membership, slot holders, finished ones."""
        # A copy: the caller may keep changing its object (unsaved) or answer with it later.
        task = task.copy()
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
            at = not_before.timestamp()
            if self.timed.get(task.id) != at:
                heapq.heappush(self._timers, (at, task.id))
            self.timed[task.id] = at
        else:
            self.timed.pop(task.id, None)
        self._hold(task.id, time.time())
        if holds_slot(task) or task.id in self.dispatching:
            self.active.put(task)
        else:
            self.active.discard(task.id)
        if TaskStatus(task.status).finished:
            self._finished.append(task)
            self.deps.changed(task.id)

    async def start(self) -> None:
        """Load the queue, re-adopt tasks from before a restart, then start the loop."""
        for task in self.store.tasks(status=(PENDING, RUNNING)):
            self.observe(task)
        await self._recover()
        self._drop_unaccepted()
        self._task = asyncio.ensure_future(self._schedule_loop())

    async def stop(self) -> None:
        """Stop the loop and launches in flight (tasks keep running on their hosts).

        A launch cut short here is settled with its host at the next start.
        """
        self._closed = True
        await stop_task(self._task, timeout=STOP_WAIT, what="the scheduling loop")
        # A launch may start another job as it ends (a settle after a lost answer): none
        # starts once closed, so one round stops every one started before.
        await stop_tasks(self._launches, timeout=STOP_WAIT, what="the launches in flight")

    # -- scheduling --------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        while not self._closed:  # a cancellation swallowed on the way still ends it
            self._wake.clear()
            try:
                self.schedule_once()
                if self.watchdog.due(time.time()):
                    self.watchdog.check(self.active.values())  # it keeps the running ones
            except Exception:  # noqa: BLE001 - the loop must survive a bad decision
                log.exception("scheduling pass failed")
            await wait_event(self._wake, self._idle_wait())

    def _idle_wait(self) -> float:
        due = self.schedules.next_due()
        if due is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.005, due - time.time()))

    def schedule_once(self) -> Plan | None:
        """Fire schedules, settle dependencies, decide what starts now and launch it."""
        if self._closed:
            return None
        self._settle_finished()
        now = time.time()
        self.usage.tick(now)
        due = self.schedules.next_due()
        if due is not None and due <= now:
            self.schedules.tick()
        if not len(self.queue) or self._held_back():
            return None
        self._settle_holds(now)
        fresh = self.queue.take_fresh()
        result = plan(self._plan_input(self.queue.held, now))
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
            task.launch_id = secrets.token_hex(6)
            task.not_before = task.wait_reason = None
            self.dispatching.add(task.id)
            self._save(task)
            started.add(task.id)
            self._spawn(self._dispatch(task.id))
        self._update_waiting(result, started, now, fresh)
        return result

    def _plan_input(self, blocked: Mapping[str, str], now: float) -> PlanInput:
        holders = self.active
        load = holders.hosts
        # GPUs held by running or launching tasks stay reserved (dobby.machines.gpu); freed at
        # the end.
        gpus_free = self._free_gpus(holders.gpu_holders.values())
        states = {n: self.hosts.states.get(n) or HostState() for n in self.hosts.hosts}
        over_hub, over_projects = self.usage.overruns(now)
        slots = [
            HostSlot(
                host=h,
                running=load.get(n, 0),
                reachable=states[n].reachable,
                gpus_free=gpus_free.get(n, ()),
                clis=states[n].clis,
            )
            for n, h in self.hosts.hosts.items()
        ]
        return PlanInput(
            pending=self.queue,
            hosts=slots,
            running_total=len(holders),
            max_total=self.settings.max_concurrent_agents,
            busy_projects=holders.projects,
            project_limits={p.name: p.max_concurrent for p in self.store.projects()},
            blocked=blocked,
            busy_schedules=holders.schedules.keys(),
            now=now,
            aging=self.settings.priority_aging,
            limited=self.usage.limited_hosts(now),
            over_budget=set(over_projects),
            hub_over_budget=over_hub is not None,
        )

    def _settle_holds(self, now: float) -> None:
        """Fail tasks whose dependencies broke (transitively); hold or release the others.

        Only what changed is looked at: tasks whose dependencies finished, and timers due.
        """
        while doomed := self.deps.settle(self.store.task_status):
            for tid, blocked in doomed.items():
                task = self.queue.get(tid)
                if task is not None:  # failing it makes its own dependents due a check
                    self._fail(task, Reason.DEPENDENCY_FAILED, deps.failure_message(blocked))
        for tid in self.deps.checked:
            self._hold(tid, now)
        while self._timers and self._timers[0][0] <= now:
            at, tid = heapq.heappop(self._timers)
            if self.timed.get(tid) == at:
                self._hold(tid, now)

    def _hold(self, task_id: str, now: float) -> None:
        """Keep a queued task out of passes while it waits for dependencies or a timer."""
        task = self.queue.get(task_id)
        if task is None:
            return
        why: str | None = None
        if task_id in self.deps.waiting:
            why = "dependencies"
        elif self.timed.get(task_id, 0.0) > now:  # a usage limit's reset not reached yet
            why = task.waiting_on or USAGE_LIMIT
        self.queue.hold(task_id, why)

    def first_wait(self, task: Task) -> str:
        """Return what a new task with no dependencies waits on until a pass looks at it."""
        if signature(task) in self._no_host:
            self._guessed.add(task.id)
            return "host"
        return "capacity"

    def _update_waiting(self, result: Plan, started: set[str], now: float, fresh: set[str]) -> None:
        """Save ``waiting_on`` where it changed (tasks never reached keep theirs).

        Only tasks that may have changed are looked at: the ones this pass examined, the ones
        put or released since the last pass, the ones whose dependencies were re-checked,
        the few waiting on a schedule, a usage limit or a budget, and — only when the answer
        for their signature changed — the tasks skipped because one placed alike found no
        host. The thousands that simply wait their turn cost nothing.
        """
        ids = {*result.waiting, *self.deps.checked, *fresh}
        ids.update(t.id for t in self.queue.flagged())
        self.deps.checked.clear()
        guessed, self._guessed = self._guessed, set()
        self._no_host = {sig for sig, why in result.closed.items() if why == "host"}
        if len(self._closed_as) > MAX_SIGNATURES:
            self._closed_as.clear()  # forgotten answers only cost one more look
        for sig, why in result.closed.items():
            if self._closed_as.get(sig) != why:
                self._closed_as[sig] = why
                ids.update(self.queue.of_signature(sig))
        for tid in ids:
            task = self.queue.get(tid)
            if task is None or tid in started:
                continue
            want = self.queue.held.get(tid) or result.reason(task)
            if want is None:  # never reached (the hub filled up first): a hold stays as it was
                kept = task.waiting_on in KEPT and tid not in guessed  # a guess is no hold
                want = task.waiting_on if kept and task.waiting_on else "capacity"
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
        task.reason = reason.value
        self._end(task, TaskStatus.FAILED, error)

    def _end(self, task: Task, status: TaskStatus, error: str) -> None:
        """End a task that will not run (again) with ``status`` and ``error``, and save it."""
        task.error = error
        task.end(status)
        self._save(task, "task.finished")

    def _release(self, task_id: str) -> None:
        """Forget a launch: the task no longer holds a slot unless it is running."""
        self.dispatching.discard(task_id)
        held = self.active.get(task_id)
        if held is not None and not holds_slot(held):
            self.active.discard(task_id)

    async def _dispatch(self, task_id: str) -> None:
        settling = False
        try:
            # Write-ahead: the host assignment is on disk before the launch, so a hub killed
            # mid-launch finds it (recovery checks the host) instead of launching it twice.
            # A full disk holds the launch back until there is room (it stays placed here).
            await self._durable(task_id)
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
            except LaunchUnknown as exc:
                # It may run: only the host can say, and until it does the task stays put.
                log.warning("launch of %s: %s; asking the host", task_id, exc)
                settling = True
                self._spawn(self._settle(task_id, str(exc)))
                return
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
                await self.runner.cancel(current)  # cancelled while launching: stop, collect
                return
            current.base_commit = task.base_commit
            current.resume = task.resume
            current.log_base = task.log_base
            if current.slurm_job:  # in its cluster's queue: it starts when Slurm runs it
                self._queued(current)
                return
            self._start(current)
        finally:
            if not settling:
                self._release(task_id)
            self.kick()

    async def _durable(self, task_id: str) -> None:
        """Return once the store is on disk, waiting out a disk that is full or failing."""
        retry = Retry(SETTLE_BACKOFF)
        while True:
            try:
                await self.store.durable()
                return
            except StorageError as exc:
                wait = retry.next_delay() or SETTLE_BACKOFF.cap
                if retry.failures == 1:
                    log.warning("launch of %s waits for the disk: %s", task_id, exc)
                await asyncio.sleep(wait)

    def _start(self, task: Task, *, adopt: bool = False) -> None:
        """Mark a launched (or re-adopted) task running and follow it."""
        task.status = RUNNING
        task.waiting_on = None
        task.wait_reason = None
        # Re-adopted: it started before. Launched: now (a half after a usage limit too, so its
        # timeout counts from this run, not from before the wait).
        task.started_at = (task.started_at if adopt else None) or utcnow()
        self._save(task, "task.started")
        self.runner.follow(task, adopt=adopt)

    def _queued(self, task: Task) -> None:
        """Mark a task whose job Slurm accepted as queued there, and watch the job."""
        task.waiting_on = QUEUED
        task.wait_reason = None
        task.slurm_state = waiting_text("")
        self._save(task)
        self.runner.watch(task)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a launch-side job the loop awaits when it stops (none once it is stopping)."""
        if self._closed:
            coro.close()  # its task is settled with its host at the next start
            return
        job = asyncio.ensure_future(coro)
        self._launches.add(job)
        job.add_done_callback(self._launches.discard)

    async def _recover(self) -> None:
        """Re-adopt tasks that were running (or being launched) when the hub stopped."""
        adopted: dict[str, list[str]] = {}
        for task in list(self.active.values()):
            if task.kind == INTERACTIVE:
                continue  # no output to follow: runner/interactive.py watches its session
            if task.status == PENDING:  # its job waits in a Slurm queue
                log.info("re-adopting Slurm job %s of task %s", task.slurm_job, task.id)
                self.runner.watch(task)
                continue
            adopted.setdefault(task.host or "", []).append(task.id)
            self.runner.follow(task, adopt=True)
        for host, ids in adopted.items():  # a line per host: 500 took 4-8 ms of a restart
            log.info("re-adopting %d running task(s) on %s: %s", len(ids), host, " ".join(ids))
        for task in self.queue.tasks():
            if task.waiting_on in ("dispatch", "host") and task.host:
                self.dispatching.add(task.id)
                self.observe(task)  # holds its slot (and stays out of the queue) while we look
                self._spawn(self._settle(task.id, "the hub restarted during its launch"))

    def _drop_unaccepted(self) -> None:
        """Cancel the tasks of a batch the hub stopped storing: it was never acknowledged.

        After ``_recover``: one whose launch may have begun is being settled with its host,
        which stops it if it started; a running one is stopped here.
        """
        for task in self.store.tasks(status=LIVE):
            if not task.batch_id or self.store.has_batch(task.batch_id):
                continue
            ran = task.status == RUNNING or bool(task.slurm_job)
            log.warning("task %s: %s", task.id, UNACCEPTED)
            self._end(task, TaskStatus.CANCELLED, UNACCEPTED)
            if ran:
                self._spawn(self.runner.cancel(task))

    async def _settle(self, task_id: str, why: str) -> None:
        """Find out from its host what became of a launch that may have started.

        Until the host answers, the task waits for it (``waiting_on: host``) holding its slot
        there: it is never placed elsewhere on a guess. The host's answer decides (see
        :mod:`dobby.runner.settle`): adopt it, re-queue it (the launch provably never began),
        or fail it ``host_lost`` (it began, and died without an exit code).
        """
        retry = Retry(SETTLE_BACKOFF)
        claimed_since: float | None = None
        try:
            while True:
                try:
                    task = self.store.get_task(task_id)
                except NotFound:
                    return  # deleted meanwhile
                if task.status not in (PENDING, TaskStatus.CANCELLED.value):
                    return
                try:
                    state = await self.runner.settle_launch(task)
                except Exception as exc:  # noqa: BLE001 - the host's answer decides: ask again
                    if not isinstance(exc, TransportError | NotFound | TimeoutError):
                        # Not the host's fault (a reply this hub cannot read, a bug): still only
                        # its answer can say whether the launch began, so the task waits for it.
                        log.error("settling the launch of %s failed", task_id, exc_info=exc)
                    self._wait_for_host(task, exc)
                    await asyncio.sleep(retry.next_delay() or SETTLE_BACKOFF.cap)
                    continue
                if state.get("job"):  # submitted to Slurm before we lost track: adopt its job
                    self._release(task_id)
                    task = self.store.get_task(task_id)
                    task.slurm_job = state["job"]
                    if task.status == PENDING:
                        self._queued(task)
                    else:  # cancelled meanwhile
                        self._spawn(self.runner.kill(task))
                    return
                now = time.monotonic()
                if claimed_since is None:
                    claimed_since = now
                found = settle.verdict(state, claimed_for=now - claimed_since)
                if found is settle.Verdict.WAIT:
                    await asyncio.sleep(retry.next_delay() or SETTLE_BACKOFF.cap)
                    continue
                self._release(task_id)  # before the save: a re-queued task must join the queue
                self._settled(self.store.get_task(task_id), found, why)
                return
        finally:
            self._release(task_id)
            self.kick()

    def _wait_for_host(self, task: Task, exc: Exception) -> None:
        """Show that a task waits for its host to answer (saved only when it changes)."""
        detail = str(exc).removeprefix(f"{task.host}: ") or type(exc).__name__
        reason = (
            f"waiting for host {task.host} ({detail}): its launch may have started there, "
            "so it will not be started elsewhere"
        )
        if task.status == PENDING and (task.waiting_on, task.wait_reason) != ("host", reason):
            log.warning("task %s: %s", task.id, reason)
            task.waiting_on = "host"
            task.wait_reason = reason
            self._save(task)

    def _settled(self, task: Task, found: settle.Verdict, why: str) -> None:
        """Apply the host's answer about a launch that may have started."""
        log.info("launch of %s on %s (%s): %s", task.id, task.host, why, found.value)
        if task.status == TaskStatus.CANCELLED.value:
            if found is settle.Verdict.ADOPT:
                self._spawn(self.runner.cancel(task))  # cancelled while we could not tell
            return
        if found is settle.Verdict.ADOPT:
            self._start(task, adopt=True)
        elif found is settle.Verdict.LOST:
            task.wait_reason = None
            self._fail(
                task,
                Reason.HOST_LOST,
                f"tmux session dobby-{task.id} is gone and left no exit code on {task.host}",
            )
        else:
            task.waiting_on = "capacity"
            task.wait_reason = None
            task.host = None
            self._save(task)
