"""Tasks on ``connection: slurm`` hosts: Dobby's jobs in each cluster's queue, watched.

The runner writes a task's bundle to the shared workdir over the login node's SSH connection
and submits ``job.sh`` with sbatch (:mod:`dobby.hostside.slurm`). The task then stays
``pending`` with ``waiting_on: slurm_queue`` and Slurm's reason in ``slurm_state`` until the
job runs; from then on it is ``running`` and followed by byte offset like any task, its exit
file ending it.

:class:`SlurmJobs` asks each Slurm host about every Dobby job there with one ``squeue`` per
round (often while something just changed, rarely when all is quiet) and acts on what Slurm
says (:func:`dobby.machines.slurm.outcome.job_outcome`): a queued job's reason is shown, a
job that runs makes its task running, a job that ended before running ends its task with
Slurm's reason. Jobs that just ended are looked at once more with ``scontrol`` (exit code,
GPU indices) and ``sacct`` when the cluster keeps accounting (who cancelled it). Of a running
task the follower asks :meth:`SlurmJobs.ended` for an end the exit file does not explain
(time limit, scancel from outside, node failure).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from dobby.core.aio import wait_event
from dobby.core.errors import NotFound, TransportError
from dobby.core.models import Reason, Task, TaskStatus
from dobby.core.ports import GetTask, SaveTask
from dobby.core.timefmt import utcnow
from dobby.hostside import slurm as hs
from dobby.hostside.scripts import TaskPaths
from dobby.machines.hosts import HostManager
from dobby.machines.slurm.jobs import (
    JobInfo,
    JobPhase,
    jobs_purged,
    parse_job_details,
    parse_squeue,
)
from dobby.machines.slurm.outcome import Action, Outcome, job_outcome, waiting_text
from dobby.transport import Transport

log = logging.getLogger("dobby.runner.slurm")

QUEUED = "slurm_queue"  # waiting_on of a task whose job waits in Slurm's queue
# Seconds between rounds: after a change, while a job waits, when all is quiet. One squeue per
# host and round, whatever the number of jobs: a light load on slurmctld.
FAST, MEDIUM, SLOW = 0.5, 1.0, 3.0
LIVELY = 10.0  # seconds after a change (or a submit) during which rounds stay fast
ENDED_GRACE = 2.0  # a job ended this long with no exit file seen: its end is Slurm's
MAX_RESUBMITS = 1  # a job lost with its node or preempted is submitted again once
QUERY_TIMEOUT = 40.0  # squeue/scontrol take 9-18 s to fail when slurmctld is down

Finish = Callable[[Task, TaskStatus, Reason | None, str | None], None]


def is_slurm(task: Task) -> bool:
    """Tell whether a task has a Slurm job (submitted for its current attempt)."""
    return bool(task.slurm_job)


def holds_slot(task: Task) -> bool:
    """Tell whether a task counts against its host's ``max_agents``: running, or queued in
    Slurm (Dobby's jobs in a cluster's queue are capped like running tasks)."""
    if task.status == TaskStatus.RUNNING.value:
        return True
    return task.status == TaskStatus.PENDING.value and task.waiting_on == QUEUED


def resubmits_left(task: Task) -> int:
    """Return how many more times a lost job of ``task`` is submitted again by policy."""
    used = sum(1 for a in task.attempts if a.get("slurm_job") and a.get("requeued_by") == "slurm")
    return max(0, MAX_RESUBMITS - used)


class SlurmJobs:
    """Watch Dobby's Slurm jobs and move their tasks along with what Slurm says."""

    def __init__(
        self,
        *,
        hosts: HostManager,
        get_task: GetTask,
        save: SaveTask,
        follow: Callable[[Task], None],
        finish: Finish,
        requeue: Callable[[Task], None],
    ) -> None:
        self.hosts = hosts
        self._get_task = get_task
        self._save = save
        self._follow = follow
        self._finish = finish
        self._requeue = requeue
        self._watched: set[str] = set()  # task ids
        self._info: dict[str, JobInfo] = {}  # task id -> what Slurm said last
        self._ended: dict[str, float] = {}  # task id -> when its job was first seen ended
        self._accounting: dict[str, bool] = {}  # host -> whether sacct answers there
        self._gpus_seen: set[str] = set()  # task ids whose job's GPU indices were asked for
        self._changed = 0.0  # monotonic time of the last change seen (or submit)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- registry ----------------------------------------------------------------------
    def watch(self, task: Task) -> None:
        """Follow a task's job in its cluster's queue (after a submit, or on re-adoption)."""
        if not task.slurm_job:
            return
        self._watched.add(task.id)
        self._changed = time.monotonic()
        self._wake.set()

    def forget(self, task_id: str) -> None:
        """Stop watching a task's job."""
        self._watched.discard(task_id)
        self._gpus_seen.discard(task_id)
        self._info.pop(task_id, None)
        self._ended.pop(task_id, None)

    def info(self, task_id: str) -> JobInfo | None:
        """Return what Slurm said last about a task's job."""
        return self._info.get(task_id)

    def ended(self, task_id: str) -> JobInfo | None:
        """Return the job of a running task if it ended at least ENDED_GRACE ago, else None.

        The grace lets a shared filesystem show the exit file job.sh waited for: an exit file
        ends a task the ordinary way, and only an end without one is Slurm's to explain.
        """
        since = self._ended.get(task_id)
        if since is None or time.monotonic() - since < ENDED_GRACE:
            return None
        return self._info.get(task_id)

    # -- commands on the login node ---------------------------------------------------
    async def cancel(self, task: Task, transport: Transport) -> None:
        """scancel the task's job (its EXIT trap ends the tmux session on the compute node)."""
        self.forget(task.id)
        if not task.slurm_job:
            return
        res = await transport.run(hs.render_cancel(task.slurm_job), timeout=QUERY_TIMEOUT)
        if not res.ok:
            log.warning("scancel %s of %s: %s", task.slurm_job, task.id, res.stderr.strip())

    async def find_job(self, transport: Transport, paths: TaskPaths) -> str | None:
        """Return the job of a task whose submission's answer was lost (hub killed), if any."""
        res = await transport.run(hs.render_find_job(paths), timeout=QUERY_TIMEOUT)
        job = res.stdout.strip().splitlines()[0].strip() if res.stdout.strip() else ""
        try:
            return hs.check_job_id(job)
        except ValueError:
            return None

    # -- the watch loop ----------------------------------------------------------------
    def start(self) -> None:
        """Start watching in the background."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop watching (jobs go on in their clusters)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _interval(self) -> float:
        if time.monotonic() - self._changed < LIVELY:
            return FAST
        queued = any((i := self._info.get(t)) and i.phase is JobPhase.QUEUED for t in self._watched)
        return MEDIUM if queued else SLOW

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad round
                log.exception("watching Slurm jobs failed")
            await wait_event(self._wake, self._interval())

    async def poll(self) -> None:
        """Ask each Slurm host once about all its watched jobs, and act on the answers."""
        by_host: dict[str, list[Task]] = {}
        for task_id in list(self._watched):
            try:
                task = self._get_task(task_id)
            except NotFound:
                self.forget(task_id)
                continue
            if TaskStatus(task.status).finished or not task.slurm_job or not task.host:
                self.forget(task_id)
                continue
            by_host.setdefault(task.host, []).append(task)
        await asyncio.gather(*(self._poll_host(h, tasks) for h, tasks in by_host.items()))

    async def _poll_host(self, name: str, tasks: list[Task]) -> None:
        # A job seen ended was explained then (scontrol, sacct): nothing more will come.
        tasks = [t for t in tasks if t.id not in self._ended and t.slurm_job]
        if not tasks:
            return
        try:
            transport = self.hosts.transport(name)
            await transport.connect()
            jobs = [t.slurm_job or "" for t in tasks]
            res = await transport.run(hs.render_job_query(jobs), timeout=QUERY_TIMEOUT)
            if not res.ok and not jobs_purged(res.stderr):
                log.warning("squeue on %s failed: %s", name, res.stderr.strip()[-300:])
                return
            states = parse_squeue(res.stdout) if res.ok else {}
            ended = [j for j in jobs if j not in states or states[j].phase is JobPhase.ENDED]
            # scontrol -d alone tells which GPUs a job holds: asked once as a GPU job starts
            started = [
                t.slurm_job
                for t in tasks
                if t.slurm_job in states
                and states[t.slurm_job].phase is JobPhase.RUNNING
                and self._wants_gpus(t)
                and t.id not in self._gpus_seen
            ]
            look = [j for j in jobs if j in ended or j in started]
            details = await self._details(name, transport, look) if look else {}
            self._gpus_seen.update(t.id for t in tasks if t.slurm_job in started)
        except TransportError as exc:
            self.hosts.record(name, ok=False, error=str(exc))
            return
        for task in tasks:
            job = task.slurm_job or ""
            self._apply(task, _best(job, states.get(job), details.get(job)))

    async def _details(
        self, name: str, transport: Transport, jobs: list[str]
    ) -> dict[str, JobInfo]:
        """Return scontrol's (and sacct's, when it answers here) view of jobs that ended."""
        sacct = self._accounting.get(name, True)
        res = await transport.run(hs.render_job_details(jobs, sacct=sacct), timeout=QUERY_TIMEOUT)
        found, accounting = parse_job_details(res.stdout, hs.DETAILS_MARK)
        if accounting is not None and self._accounting.get(name) != accounting:
            self._accounting[name] = accounting
            log.info("Slurm accounting (sacct) on %s: %s", name, "yes" if accounting else "no")
        return found

    def _wants_gpus(self, task: Task) -> bool:
        if task.gpus:
            return True
        try:
            settings = self.hosts.get(task.host or "").slurm
        except NotFound:
            return False
        return bool(settings and settings.gpus_per_task)

    def _apply(self, task: Task, info: JobInfo) -> None:
        """Move a task along with its job's state."""
        try:
            current = self._get_task(task.id)
        except NotFound:
            self.forget(task.id)
            return
        if TaskStatus(current.status).finished or current.slurm_job != info.job_id:
            self.forget(task.id)
            return
        before = self._info.get(task.id)
        self._info[task.id] = info
        if before is None or (before.state, before.reason) != (info.state, info.reason):
            self._changed = time.monotonic()
        ended = info.phase is JobPhase.ENDED or not info.state
        if ended:
            self._ended.setdefault(task.id, time.monotonic())
        if current.status == TaskStatus.PENDING.value and current.waiting_on == QUEUED:
            self._queued(current, info)
        elif current.status == TaskStatus.RUNNING.value:
            state = describe(info)
            gpus = list(info.gpu_indices) or current.gpu_indices
            if (current.slurm_state, current.gpu_indices) != (state, gpus):
                current.slurm_state, current.gpu_indices = state, gpus
                self._save(current)

    def _queued(self, task: Task, info: JobInfo) -> None:
        """Act on the job of a task that Slurm had not started yet, as far as Dobby knew."""
        outcome = job_outcome(info, exit_code=None, resubmits_left=resubmits_left(task))
        if outcome.action is Action.WAIT:
            if task.slurm_state != outcome.message:
                task.slurm_state = outcome.message
                self._save(task)
        elif outcome.action in (Action.FOLLOW, Action.COLLECT) or not info.state:
            # Running, or ended with run.sh's exit code (or gone from Slurm's memory, which
            # the exit file may still explain): the follower takes it from here.
            task.status = TaskStatus.RUNNING
            task.waiting_on = None
            task.started_at = task.started_at or utcnow()
            task.slurm_state = describe(info)
            if info.gpu_indices:
                task.gpu_indices = list(info.gpu_indices)
            self._save(task, "task.started")
            self._follow(task)
        else:
            self.settle(task, outcome)

    def settle(self, task: Task, outcome: Outcome) -> None:
        """End a task as its job's end says (FINISH), or submit it again (RESUBMIT)."""
        info = self._info.get(task.id)
        self.forget(task.id)
        task.slurm_state = outcome.message if info is None else describe(info)
        if outcome.action is Action.RESUBMIT:
            log.warning("task %s: %s", task.id, outcome.message)
            task.reason = Reason.HOST_LOST.value
            task.error = outcome.message
            task.end(TaskStatus.FAILED)
            self._requeue(task)  # recorded in attempts (requeued_by: slurm), queued again
            return
        assert outcome.status is not None
        self._finish(task, outcome.status, outcome.reason, outcome.message)


def describe(info: JobInfo) -> str:
    """Return a job's state in a few words: ``RUNNING on node7``, ``TIMEOUT on vm``…"""
    if not info.state:
        return f"job {info.job_id} no longer known to Slurm"
    if info.phase is JobPhase.QUEUED:
        return waiting_text(info.reason)
    where = f" on {info.nodes}" if info.nodes else ""
    why = f" ({info.reason})" if info.reason and info.phase is JobPhase.ENDED else ""
    return f"{info.state}{where}{why}"


def _best(job: str, squeue: JobInfo | None, detail: JobInfo | None) -> JobInfo:
    """Combine squeue's line and the details of a job (squeue's state wins while it has one);
    a job neither knows is gone from Slurm's memory (state "")."""
    if squeue is not None and detail is not None:
        return JobInfo(
            job_id=job,
            state=squeue.state,
            reason=squeue.reason or detail.reason,
            nodes=squeue.nodes or detail.nodes,
            exit_status=detail.exit_status,
            signal=detail.signal,
            cancelled_by=detail.cancelled_by,
            gpu_indices=detail.gpu_indices,
            name=detail.name,
        )
    return squeue or detail or JobInfo(job_id=job, state="")
