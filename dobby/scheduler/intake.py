"""Requests in, tasks out: submit, drafts and agent plans, edits, approve/reject, retry.

The hub's operations on tasks that the scheduler owns. Every input is validated in full before
anything is stored, and every change goes through ``save`` (store write, then event).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dobby.core.config import Settings
from dobby.core.errors import Conflict, NotFound, ValidationError
from dobby.core.events import EventBus
from dobby.core.models import Host, Project, Reason, Task, TaskStatus, make_title
from dobby.core.ports import CancelTask, Kick, SaveTask
from dobby.core.shapes import PromptAndTitle, TaskPatch, parse, validate_submit
from dobby.core.timefmt import utcnow
from dobby.machines.hosts import HostManager
from dobby.results import followup
from dobby.scheduler import deps, fixes
from dobby.scheduler.capacity import HostSlot, check_placeable
from dobby.scheduler.drafts import execution_prompt, planning_prompt, planning_title
from dobby.store.db import Store
from dobby.store.query import TaskFilter
from dobby.store.tasklog import TaskLogs

log = logging.getLogger("dobby.scheduler")

# What may differ between bodies that make the same task otherwise (see Intake.one_look).
OWN_TEXT = tuple(PromptAndTitle.model_fields)

PENDING, DRAFT = TaskStatus.PENDING, TaskStatus.DRAFT
RETRYABLE = (TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
EDITABLE = tuple(TaskPatch.model_fields)
# What a run leaves on a task; cleared (and kept in ``attempts``) when it is queued again.
RUN_FIELDS = (
    "reason", "error", "started_at", "finished_at", "exit_code", "summary", "host",
    "slurm_job", "slurm_state",
)  # fmt: skip
ATTEMPT_FIELDS = (*RUN_FIELDS, "status", "cost_usd", "session_id")
# A wait a usage limit or budget imposed; a retry starts over without it.
WAIT_FIELDS = ("not_before", "wait_reason", "resume_session", "resume_host")
AUTO_RETRY_REASONS = (Reason.HOST_LOST.value, Reason.DISPATCH_ERROR.value)


class Intake:
    """Create, edit, approve and re-queue tasks."""

    def __init__(
        self,
        *,
        store: Store,
        logs: TaskLogs,
        bus: EventBus,
        settings: Settings,
        hosts: HostManager,
        save: SaveTask,
        kick: Kick,
        is_dispatching: Callable[[str], bool],
        cancel: CancelTask,
    ) -> None:
        self.store = store
        self.logs = logs
        self.bus = bus
        self.settings = settings
        self.hosts = hosts
        self._save = save
        self._kick = kick
        self._is_dispatching = is_dispatching
        self._cancel = cancel
        # What a new task first waits on (the scheduler loop sets its guess: "host" when
        # tasks placed alike found none in the last pass), saved once instead of twice.
        self.first_wait: Callable[[Task], str] = lambda task: "capacity"
        self._hosts_seen: tuple[list[Host], list[HostSlot]] | None = None  # see one_look
        self._alike: dict[tuple[tuple[str, str], ...], Task] | None = None  # see one_look

    # -- building ----------------------------------------------------------------------
    def _project(self, body: Any) -> Project | None:
        name = body.get("project") if isinstance(body, dict) else None
        return self.store.get_project(name) if isinstance(name, str) and name else None

    def build(self, body: Any) -> tuple[Task, dict[str, Any]]:
        """Validate a POST /tasks body into an unsaved task (+ draft flags); check placement."""
        key = _alike_key(body) if self._alike is not None else None
        if key is None or self._alike is None:
            return self._build(body)
        proto = self._alike.get(key)
        if proto is not None:
            return self._like(proto, body), {}
        task, flags = self._build(body)
        if not flags:
            self._alike[key] = task.clone()
        return task, flags

    def _like(self, proto: Task, body: dict[str, Any]) -> Task:
        """Return a task like ``proto`` (built from a body differing in prompt and title only)."""
        shape = parse(PromptAndTitle, {k: body[k] for k in OWN_TEXT if k in body})
        task = proto.clone()
        task.prompt = shape.prompt
        task.title = shape.title or make_title(shape.prompt)
        task.id = self.store.unused_task_id()
        task.created_at = utcnow()
        return task

    def _build(self, body: Any) -> tuple[Task, dict[str, Any]]:
        project = self._project(body)
        default_timeout = self.settings.default_timeout
        if project is not None and project.default_timeout:
            default_timeout = project.default_timeout
        fields = validate_submit(
            body,
            default_timeout=default_timeout,
            default_backend=project.default_backend if project else None,
        )
        keys = ("resume_task", "draft", "agent_plan")
        flags: dict[str, Any] = {k: fields.pop(k) for k in keys if k in fields}
        if "priority" not in fields and project is not None and project.default_priority:
            fields["priority"] = project.default_priority
        for key in ("model", "max_turns", "max_budget_usd"):  # the project's task defaults
            if fields.get(key) is None and project is not None and getattr(project, key):
                fields[key] = getattr(project, key)
        if project is not None and project.commit_ignore:
            fields["commit_ignore"] = list(project.commit_ignore)
        task = Task(**fields)
        task.id = self.store.unused_task_id()  # ids are random: make sure it is free
        if flags.get("resume_task"):
            parent = self.store.get_task(flags["resume_task"])
            if not parent.session_id:
                raise ValidationError(f"task {parent.id} has no agent session to resume")
            task.resume = parent.id
            task.want_host = parent.host
            task.project = task.project or parent.project
            task.backend = parent.backend
        task.after = self.resolve_ids(task.after)
        if flags.get("agent_plan") and task.backend == "shell":
            raise ValidationError("--agent-plan needs an agent backend (claude or codex)")
        self._check_verify(task, project, explicit="verify" in fields)
        self.check_placement(task)
        return task, flags

    def _check_verify(self, task: Task, project: Project | None, *, explicit: bool) -> None:
        """Apply the project's default check and the hub's verify_timeout; refuse what can't run.

        The check runs in the task's git worktree, after an agent that may change it, and a
        fix round resumes the agent's session: each needs what the task may not have.
        """
        if not explicit and project is not None and project.default_verify:
            task.verify = project.default_verify
        task.verify = task.verify or None
        if not task.verify:
            if task.fix_attempts or task.verify_timeout is not None:
                raise ValidationError("'fix_attempts' and 'verify_timeout' need a 'verify' command")
            return
        if not task.project:
            raise ValidationError(
                "a verify command runs in the task's git worktree: give the task a project"
            )
        if task.permissions == "plan":
            raise ValidationError(
                "a read-only planning run cannot be verified: it changes nothing to check"
            )
        if task.fix_attempts and task.backend == "shell":
            raise ValidationError(
                "backend shell cannot run fix attempts: a fix round resumes the agent's session "
                "(use claude or codex, or drop 'fix_attempts')"
            )
        if task.verify_timeout is None:
            task.verify_timeout = self.settings.verify_timeout

    def check_placement(self, task: Task) -> None:
        """Fail now if no inventory host can run ``task`` (unless it waits for one)."""
        if task.wait_for_host:
            return
        if self._hosts_seen is not None:
            check_placeable(task, *self._hosts_seen)
        else:  # the slots made as they are read: most tasks are settled by the first host
            check_placeable(task, self.hosts.hosts.values(), self._slots())

    def _slots(self) -> Iterator[HostSlot]:
        states = self.hosts.states
        for name, host in self.hosts.hosts.items():
            state = states.get(name)
            if state is not None:
                yield HostSlot(host=host, reachable=state.reachable, clis=state.clis)

    def _look_at_hosts(self) -> tuple[list[Host], list[HostSlot]]:
        return list(self.hosts.hosts.values()), list(self._slots())

    @contextlib.contextmanager
    def one_look(self) -> Iterator[None]:
        """Build many tasks in one go against one look at the hosts, the store and projects.

        For a batch, built without an await: no host, project or task can change meanwhile.
        A look per task (a slot per host) was 15% of a 1,000-task batch over 20 hosts. And a
        body that differs from one built before only in its prompt and title makes the same
        task but for those: only they are checked (``_like``). Checking every entry of a
        1,000-task batch in full took 30-60 ms before its first task could start.
        """
        self._hosts_seen = self._look_at_hosts()
        self._alike = {}
        try:
            yield
        finally:
            self._hosts_seen = self._alike = None

    def resolve_ids(self, ids: Iterable[str]) -> list[str]:
        """Return full task ids for ids or prefixes; name every unknown one in one error."""
        found: list[str] = []
        unknown: list[str] = []
        for ref in ids:
            try:
                tid = self.store.get_task(ref).id
            except NotFound:
                unknown.append(ref)
                continue
            if tid not in found:
                found.append(tid)
        if unknown:
            raise ValidationError(f"unknown task id(s) in 'after': {', '.join(unknown)}")
        return found

    # -- submit ------------------------------------------------------------------------
    def submit(self, body: Any) -> Task:
        """Validate and queue a task, or store it as a draft (with a planning run)."""
        task, flags = self.build(body)
        if flags.get("draft") or flags.get("agent_plan"):
            return self._draft(task, agent_plan=bool(flags.get("agent_plan")))
        self.enqueue(task, "task.created")
        return task

    def enqueue(self, task: Task, event: str) -> None:
        """Put a task in the queue (project auto_chain applies here) and save it."""
        if task.project and not task.resume and not task.plan_for:
            project = self.store.get_project(task.project)
            if project.auto_chain:
                latest = self.latest_unfinished(task.project, exclude=task.id, race=task.race_id)
                if latest and latest not in task.after:
                    task.after = [*task.after, latest]
        task.status = PENDING
        task.queued_at = utcnow()
        waiting = any(self.store.task_status(d) != "completed" for d in task.after)
        task.waiting_on = "dependencies" if waiting else self.first_wait(task)
        self._save(task, event)
        self._kick()

    def latest_unfinished(
        self, project: str, *, exclude: str, race: str | None = None
    ) -> str | None:
        """Return the newest pending or running task of ``project`` (what auto_chain waits for).

        The attempts of one race (``race``) run side by side: none waits for another.
        """
        live = self.store.tasks(project=project, status=(PENDING, "running"))
        live = [
            t
            for t in live
            if t.id != exclude and not t.plan_for and (race is None or t.race_id != race)
        ]
        return max(live, key=lambda t: (t.queued_at or t.created_at, t.id)).id if live else None

    def _draft(self, task: Task, *, agent_plan: bool) -> Task:
        task.status = DRAFT
        task.waiting_on = "approval"
        planner = None
        if agent_plan:
            planner = Task(
                prompt=planning_prompt(task.prompt),
                title=planning_title(task.title),
                backend=task.backend,
                project=task.project,
                model=task.model,
                priority=task.priority,
                want_host=task.want_host,
                host_selector=list(task.host_selector),
                timeout=task.timeout,
                wait_for_host=task.wait_for_host,
                permissions="plan",
                plan_for=task.id,
            )
            task.plan_task = planner.id
        self._save(task, "task.created")
        if planner is not None:
            self.enqueue(planner, "task.created")
        else:
            self.bus.publish("task.awaiting_approval", task_id=task.id, data=task.to_dict())
        return task

    def plan_finished(self, planner: Task) -> None:
        """Attach a finished planning run's result to its draft."""
        try:
            draft = self.store.get_task(planner.plan_for or "")
        except NotFound:
            return
        if draft.status != DRAFT or draft.plan_task != planner.id:
            return
        if planner.status == TaskStatus.COMPLETED.value and (planner.summary or "").strip():
            draft.plan = planner.summary
            draft.error = None
            self._save(draft, "task.awaiting_approval")
            return
        why = planner.error or ("no plan in its output" if planner.status == "completed" else "")
        draft.error = f"planning run {planner.id} {planner.status}: {why}".rstrip(": ")
        self._save(draft, "task.awaiting_approval")

    # -- fix rounds --------------------------------------------------------------------
    def fix_round(self, task: Task) -> Task | None:
        """Queue the follow-up that fixes a failed check, if the task has rounds left."""
        if not fixes.needs_fix_round(task):
            return None
        current = self.store.get_task(task.id)
        if not current.session_id:
            current.fix_attempts = 0
            current.warnings = [
                *current.warnings,
                "no fix round: the agent left no session to resume",
            ]
            self._save(current)
            return None
        first = followup.chain(current, self.store.get_task)[0]
        root = current if first == current.id else self.store.get_task(first)
        fix = fixes.build_fix_round(current, root.title)
        self.enqueue(fix, "task.created")
        current.fix_task = fix.id  # saved in the same commit as the round itself
        self._save(current)
        log.info("verify of %s failed: fix round %d is task %s", task.id, fix.fix_round, fix.id)
        return fix

    # -- drafts ------------------------------------------------------------------------
    def approve(self, task_id: str) -> Task:
        """Queue a draft; with an agent plan, the execution prompt carries the approved plan."""
        task = self.store.get_task(task_id)
        if task.status != DRAFT:
            raise Conflict(f"task {task.id} is {task.status}: only drafts can be approved")
        if task.plan_task and not (task.plan or "").strip():
            planner_status = self.store.task_status(task.plan_task)
            if planner_status in (PENDING, "running"):
                raise Conflict(
                    f"the plan of {task.id} is still being written by task {task.plan_task} "
                    f"({planner_status}); approve once it is attached, or reject"
                )
            raise Conflict(
                f"draft {task.id} has no plan: planning task {task.plan_task} {planner_status} "
                f"(`dobby retry {task.plan_task}`, or write one: `dobby edit {task.id} --plan -`)"
            )
        self.check_placement(task)
        task.prompt = execution_prompt(task.prompt, task.plan)
        task.error = None
        self.enqueue(task, "task.approved")
        return task

    async def reject(self, task_id: str) -> Task:
        """Drop a draft (cancelled, error ``rejected``); stop its planning run if it runs."""
        task = self.store.get_task(task_id)
        if task.status != DRAFT:
            raise Conflict(f"task {task.id} is {task.status}: only drafts can be rejected")
        task.error = "rejected"
        task.end(TaskStatus.CANCELLED)
        self._save(task, "task.finished")
        status = self.store.task_status(task.plan_task) if task.plan_task else None
        if task.plan_task and status in (PENDING, "running"):
            await self._cancel(task.plan_task)
        return task

    # -- edit --------------------------------------------------------------------------
    def patch(self, task_id: str, body: dict[str, Any]) -> Task:
        """Edit a draft or a task that has not started."""
        task = self.store.get_task(task_id)
        if task.slurm_job and task.status == PENDING:
            raise Conflict(
                f"task {task.id} waits in Slurm's queue as job {task.slurm_job}: "
                "cancel it and submit it again to change it"
            )
        if task.status not in (DRAFT, PENDING) or self._is_dispatching(task.id):
            raise Conflict(
                f"task {task.id} is {task.status}: only draft or pending tasks can be edited"
            )
        parse(TaskPatch, body)  # names the first bad field; the merged task is checked below
        if "plan" in body and task.status != DRAFT:
            raise Conflict(f"task {task.id} is {task.status}: only a draft's plan can be edited")
        plan = body.get("plan", task.plan)
        merged = {
            "prompt": task.prompt,
            "backend": task.backend,
            "priority": task.priority,
            "host": task.want_host,
            "labels": task.host_selector,
            "timeout": task.timeout,
            "model": task.model,
            "title": task.title,
            "after": task.after,
            "wait_for_host": task.wait_for_host,
            **{k: v for k, v in body.items() if k != "plan"},
        }
        fields = validate_submit(merged, default_timeout=task.timeout)
        fields["after"] = self.resolve_ids(fields.get("after", []))
        if task.id in fields["after"]:
            raise ValidationError(f"dependency cycle: {task.id} → {task.id}")
        self._check_cycle(task.id, fields["after"])
        backend = task.backend
        for key in EDITABLE:
            name = {"host": "want_host", "labels": "host_selector"}.get(key, key)
            if key in body and name in fields:
                setattr(task, name, fields[name])
        if "host" in body and not body["host"]:
            task.want_host = None
        if "plan" in body:
            task.plan = plan
        moved = task.want_host and task.want_host != task.resume_host
        if task.resume_session and (task.backend != backend or moved):
            # Sent elsewhere: the session a usage limit cut cannot go on there.
            task.resume_session = task.resume_host = task.not_before = None
        self.check_placement(task)
        self._save(task)
        self._kick()
        return task

    def _check_cycle(self, task_id: str, after: list[str]) -> None:
        """Reject ``after`` if it makes ``task_id`` wait (transitively) for itself."""
        graph: dict[str, list[str]] = {task_id: list(after)}
        frontier = list(after)
        while frontier:
            tid = frontier.pop()
            if tid in graph:
                continue
            try:
                graph[tid] = list(self.store.get_task(tid).after)
            except NotFound:
                graph[tid] = []
            frontier.extend(graph[tid])
        deps.check_no_cycle(graph, start=task_id)

    # -- retry -------------------------------------------------------------------------
    def retry(self, task_id: str, *, cascade: bool = False) -> tuple[Task, list[str]]:
        """Re-queue a failed/cancelled task (and, with ``cascade``, what failed because of it)."""
        task = self.store.get_task(task_id)
        if task.kind == "interactive":  # a `dobby remote` session is not a queued task
            raise Conflict(
                f"task {task.id} is an interactive session: open another with `dobby remote`"
            )
        if task.status not in RETRYABLE:
            raise Conflict(
                f"task {task.id} is {task.status}: only failed or cancelled tasks can be retried"
            )
        if not cascade:
            broken = [d for d in task.after if self.store.task_status(d) in deps.BROKEN]
            if broken and task.reason == Reason.DEPENDENCY_FAILED.value:
                raise Conflict(
                    f"task {task.id} waits for {', '.join(broken)}, which failed: retry that "
                    f"with --cascade (`dobby retry {broken[0]} --cascade`)"
                )
            self.requeue(task)
            return task, [task.id]
        # What a cascade can reach: tasks that failed for a dependency, and their dependencies.
        failed = TaskFilter(
            status=frozenset({TaskStatus.FAILED.value}), reason=Reason.DEPENDENCY_FAILED.value
        )
        everything = {d["id"]: Task.from_dict(d) for d in self.store.page(failed, limit=None)}
        everything[task.id] = task
        for dependent in list(everything.values()):
            for dep in dependent.after:
                if dep not in everything and self.store.has_task(dep):
                    everything[dep] = self.store.get_task(dep)
        ids = deps.cascade(task.id, everything)
        for tid in ids:
            self.requeue(everything[tid] if tid != task.id else task)
        return task, ids

    def requeue(
        self, task: Task, *, avoid_host: str | None = None, note: dict[str, Any] | None = None
    ) -> None:
        """Record the finished attempt (plus ``note``), clear its result and queue it again."""
        # New lists, not appends: the task's lists may be shared with the stored document.
        record = {"attempt": task.attempt, **{k: getattr(task, k) for k in ATTEMPT_FIELDS}}
        record.update(note or {})
        task.attempts = [*task.attempts, record]
        if avoid_host and avoid_host not in task.avoid_hosts:
            task.avoid_hosts = [*task.avoid_hosts, avoid_host]
        task.attempt += 1
        for name in (*RUN_FIELDS, *WAIT_FIELDS, "cost_usd", "stale_since", "verify_result"):
            setattr(task, name, None)
        self.logs.reset(task.id)
        self.enqueue(task, "task.retried")

    def auto_retry(self, task: Task) -> bool:
        """Re-queue a task lost with its host, per its project's ``auto_retry``; say if it did."""
        if task.status != TaskStatus.FAILED.value or task.reason not in AUTO_RETRY_REASONS:
            return False
        if not task.project or not task.host:
            return False
        try:
            project = self.store.get_project(task.project)
        except NotFound:
            return False
        automatic = sum(1 for a in task.attempts if a.get("reason") in AUTO_RETRY_REASONS)
        if automatic >= project.auto_retry:
            return False
        log.info("auto-retrying %s (%s on %s)", task.id, task.reason, task.host)
        self.requeue(task, avoid_host=task.host)
        return True


def _alike_key(body: Any) -> tuple[tuple[str, str], ...] | None:
    """Return what a body says besides its prompt and title, comparable; None if it can't be.

    Bodies are JSON or YAML values: their ``repr`` tells any two different ones apart.
    """
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        return None
    return tuple(sorted((k, repr(v)) for k, v in body.items() if k not in OWN_TEXT))
