"""Pure placement: which pending task starts on which host now, and why the others wait.

State in, decisions out; no I/O. The loop in ``dobby.scheduler.loop`` fetches the state, calls
:func:`plan`, and applies the result. Tasks are considered in queue order (priority with
aging, then FIFO: see ``queue.py``); a task that cannot start (its dependencies, its project's
``max_concurrent``, no host with room) is skipped, so the tasks behind it still may start.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from dobby.core.models import Task
from dobby.machines.gpu import take_gpus
from dobby.scheduler.capacity import (
    NEVER,
    WAIT_CAPACITY,
    Capacity,
    HostIndex,
    HostSlot,
    check_placeable,
    eligible,
    never_reason,
)
from dobby.scheduler.queue import (
    DEFAULT_AGING,
    PRIORITY_RANK,
    Cursor,
    PendingQueue,
    Signature,
    order_key,
    signature,
)

__all__ = [
    "PRIORITY_RANK",
    "Decision",
    "HostSlot",
    "Plan",
    "PlanInput",
    "check_placeable",
    "eligible",
    "order_key",
    "plan",
]

NO_HOST_ANY_MORE = "no host in the inventory matches any more"
WAIT_BUDGET = "budget"
NO_SPEND = ("shell",)  # backends that spend nothing: a full budget never holds them


@dataclass
class Decision:
    """Start ``task_id`` on ``host`` (or fail it with ``error`` when no host can ever run it)."""

    task_id: str
    host: str | None
    error: str | None = None
    gpus: list[int] = field(default_factory=list)  # GPU indices reserved for the task


@dataclass
class PlanInput:
    """Everything one planning pass looks at."""

    pending: PendingQueue | Iterable[Task]
    hosts: list[HostSlot]
    running_total: int
    max_total: int
    busy_projects: Mapping[str, int] = field(default_factory=dict)  # running per project
    project_limits: Mapping[str, int] = field(default_factory=dict)  # max_concurrent
    blocked: Mapping[str, str] = field(default_factory=dict)  # task id -> waiting_on
    busy_schedules: Collection[str] = ()  # schedules with an unfinished run (overlap: queue)
    now: float | None = None  # epoch seconds, for aging; None: no aging
    aging: float = DEFAULT_AGING
    limited: Mapping[str, Collection[str]] = field(default_factory=dict)  # backend -> hosts
    over_budget: Collection[str] = ()  # projects whose spend budget is full
    hub_over_budget: bool = False  # the hub-wide budget is full: no agent task starts


@dataclass
class Plan:
    """The pass's decisions (starts and failures) and why each examined task waits.

    ``closed`` holds the signatures (``queue.signature``) found unable to start anything this
    pass, and why: the rest of their tasks were skipped, not examined one by one.
    """

    decisions: list[Decision] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # task id -> waiting_on
    examined: int = 0
    closed: dict[Signature, str] = field(default_factory=dict)
    explain: Callable[[Task], str | None] | None = field(default=None, repr=False)

    def reason(self, task: Task) -> str | None:
        """Return why ``task`` waits after this pass (None: the pass never reached it)."""
        found = self.waiting.get(task.id)
        if found is None and self.explain is not None:
            found = self.explain(task)
        return found

    @property
    def starts(self) -> list[Decision]:
        return [d for d in self.decisions if d.host is not None]


def _cursor(state: PlanInput, cap: Capacity) -> Cursor:
    pending = state.pending
    if isinstance(pending, PendingQueue):
        queue = pending
    else:
        queue = PendingQueue(aging=state.aging)
        for task in pending:
            queue.put(task)
    return queue.cursor(state.now, skip=cap.project_full)  # full projects: not a task starts


def plan(state: PlanInput) -> Plan:
    """Return the tasks to start now and where, respecting every capacity limit.

    Tasks not examined (the pass stops once the hub or every host is full) wait on capacity;
    once one task of a signature finds no host, the others of that signature are skipped
    (:meth:`Plan.reason` tells why any of them waits).
    """
    out = Plan()
    cap = Capacity(
        max_total=state.max_total,
        running_total=state.running_total,
        project_running=dict(state.busy_projects),
        project_limits=state.project_limits,
        host_load={s.host.name: s.running for s in state.hosts},
    )
    index = HostIndex(state.hosts, state.limited)
    over_budget = set(state.over_budget)
    free_hosts = sum(1 for s in state.hosts if s.running < s.host.max_agents)
    busy_schedules = set(state.busy_schedules)
    cursor = _cursor(state, cap)

    def held_back(task: Task) -> str | None:
        """Return why ``task`` cannot start whatever the hosts (None: it could)."""
        reason = state.blocked.get(task.id)
        if reason is None and task.schedule_id and task.schedule_id in busy_schedules:
            reason = "schedule"
        if (
            reason is None
            and task.backend not in NO_SPEND
            and (state.hub_over_budget or task.project in over_budget)
        ):
            reason = WAIT_BUDGET
        if reason is None and cap.project_full(task.project):
            reason = WAIT_CAPACITY
        return reason

    # Over ``out.closed``, not ``out``: the plan holds this function, and a cycle through it
    # was left to the garbage collector (~25 objects a pass: a 13 ms collection per ~1,000
    # submits, in the middle of a request).
    closed = out.closed

    def explain(task: Task) -> str | None:
        return held_back(task) or closed.get(signature(task))

    out.explain = explain
    for task in cursor:
        if cap.room <= 0 or free_hosts <= 0:
            break  # nothing more can start: the rest waits on capacity
        out.examined += 1
        reason = held_back(task)
        if reason == WAIT_CAPACITY and cap.project_full(task.project):
            cursor.drop(task.project)  # the project's later tasks wait too: skip them all
        if reason is not None:
            out.waiting[task.id] = reason
            continue
        sig = cursor.signature
        slot, why = index.pick(task, cap.host_load, sig)
        if slot is None:
            if why == NEVER:
                error = never_reason(task, state.hosts, NO_HOST_ANY_MORE)
                out.decisions.append(Decision(task.id, None, error))
            else:
                out.waiting[task.id] = why
                out.closed[sig] = why
                cursor.close(sig)  # tasks placed alike find no host either
            continue
        name = slot.host.name
        cap.take(task, name)
        if cap.project_full(task.project):
            cursor.drop(task.project)
        if cap.host_load[name] >= slot.host.max_agents:
            free_hosts -= 1
        if task.schedule_id:
            busy_schedules.add(task.schedule_id)
        # Slurm gives a job its GPUs itself; elsewhere Dobby reserves them (dobby.machines.gpu).
        slurm = slot.host.connection == "slurm"
        gpus = [] if slurm else take_gpus(index.gpu_room, name, task.gpus)
        out.decisions.append(Decision(task.id, name, gpus=gpus))
    return out
