"""Pure placement: which pending task starts on which host now.

State in, decisions out; no I/O. The loop in ``dobby.scheduler.loop`` fetches the state, calls
:func:`plan`, and applies the decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dobby.errors import NoEligibleHost, NotFound
from dobby.models import Host, Priority, Task

PRIORITY_RANK = {
    Priority.URGENT.value: 0,
    Priority.HIGH.value: 1,
    Priority.NORMAL.value: 2,
    Priority.LOW.value: 3,
}


@dataclass(frozen=True)
class HostSlot:
    """What the planner needs to know about one host."""

    host: Host
    running: int = 0
    reachable: bool | None = None  # None = not probed yet


@dataclass
class Decision:
    """Start ``task_id`` on ``host`` (or fail it with ``error`` when no host can ever run it)."""

    task_id: str
    host: str | None
    error: str | None = None


@dataclass
class PlanInput:
    pending: Sequence[Task]
    hosts: Sequence[HostSlot]
    running_total: int
    max_total: int
    busy_projects: Mapping[str, int] = field(default_factory=dict)


def eligible(task: Task, host: Host) -> bool:
    """Return True if ``host`` could ever run ``task`` (ignoring load)."""
    if task.want_host and task.want_host != host.name:
        return False
    if task.backend not in host.backends:
        return False
    return all(label in host.labels for label in task.host_selector)


def check_placeable(task: Task, hosts: Iterable[Host]) -> None:
    """Raise a clear error at submit if no inventory host can ever run ``task``."""
    hosts = list(hosts)
    names = [h.name for h in hosts]
    if task.want_host and task.want_host not in names:
        raise NotFound(f"unknown host '{task.want_host}' (hosts: {', '.join(names) or 'none'})")
    if not any(eligible(task, h) for h in hosts):
        want = []
        if task.want_host:
            want.append(f"host {task.want_host}")
        if task.host_selector:
            want.append("labels " + ",".join(task.host_selector))
        want.append(f"backend {task.backend}")
        raise NoEligibleHost(f"no host matches {' + '.join(want)}")


def order_key(task: Task) -> tuple[int, str]:
    """Sort key: priority first, then FIFO."""
    return (PRIORITY_RANK.get(task.priority, 2), task.created_at)


def plan(state: PlanInput) -> list[Decision]:
    """Return the tasks to start now and where, respecting every capacity limit."""
    decisions: list[Decision] = []
    load = {slot.host.name: slot.running for slot in state.hosts}
    room = state.max_total - state.running_total
    for task in sorted(state.pending, key=order_key):
        if room <= 0:
            break
        candidates = [s for s in state.hosts if eligible(task, s.host)]
        if not candidates:
            decisions.append(Decision(task.id, None, "no host in the inventory matches any more"))
            continue
        # Unreachable hosts are used only when no other candidate is left: the launch is then
        # a fresh connection attempt, and its error (not a stale one) fails the task.
        reachable = [s for s in candidates if s.reachable is not False] or candidates
        free = [s for s in reachable if load[s.host.name] < s.host.max_agents]
        if not free:
            continue
        best = min(free, key=lambda s: (load[s.host.name], s.host.name))
        load[best.host.name] += 1
        room -= 1
        decisions.append(Decision(task.id, best.host.name))
    return decisions
