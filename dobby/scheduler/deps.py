"""Pure dependency logic: ``after`` edges between tasks, cycles, failure propagation, cascade.

A task with ``after: [A, B]`` runs only once A and B have *completed*. If one of them fails
or is cancelled (or vanished), the task fails with reason ``dependency_failed``, and so do
its own dependents, transitively. ``retry --cascade`` re-queues a task and every dependent
that failed because of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from dobby.core.errors import ValidationError
from dobby.core.models import Reason, Task, TaskStatus

COMPLETED = TaskStatus.COMPLETED.value
BROKEN = frozenset({TaskStatus.FAILED.value, TaskStatus.CANCELLED.value})

StatusOf = Callable[[str], "str | None"]  # task id -> status, None for an unknown id


def find_cycle(graph: Mapping[str, Sequence[str]], start: str | None = None) -> list[str] | None:
    """Return one cycle of ``graph`` (node -> nodes it waits for) as ``[a, b, …, a]``, or None.

    The search begins at ``start`` when given, so a cycle through it is told from there.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    roots = sorted(graph)
    if start is not None and start in graph:
        roots.remove(start)
        roots.insert(0, start)
    for root in roots:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(graph.get(root, ()))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            mark = state.get(nxt)
            if mark == 1:
                return path[path.index(nxt) :] + [nxt]
            if mark is None:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph.get(nxt, ())))
    return None


def check_no_cycle(graph: Mapping[str, Sequence[str]], start: str | None = None) -> None:
    """Raise ValidationError naming the ids of a dependency cycle in ``graph``."""
    cycle = find_cycle(graph, start)
    if cycle:
        raise ValidationError("dependency cycle: " + " → ".join(cycle))


@dataclass(frozen=True)
class Blocked:
    """A pending task that cannot run: waiting for ``after`` tasks, or doomed by ``failed_dep``."""

    task_id: str
    failed_dep: str | None = None  # set: the task must fail (dependency_failed)
    dep_status: str | None = None


def classify(task: Task, status_of: StatusOf) -> Blocked | None:
    """Return None if every dependency completed, else why ``task`` cannot start."""
    waiting = False
    for dep in task.after:
        status = status_of(dep)
        if status == COMPLETED:
            continue
        if status is None or status in BROKEN:
            return Blocked(task.id, dep, status or "missing")
        waiting = True
    return Blocked(task.id) if waiting else None


def resolve(tasks: Iterable[Task], status_of: StatusOf) -> dict[str, Blocked]:
    """Return every task of ``tasks`` that cannot start, failures propagated transitively.

    A task doomed here counts as failed for the tasks that wait for it, in the same call:
    a chain A → B → C where A failed dooms both B and C at once.
    """
    pending = [t for t in tasks if t.after]
    doomed: dict[str, str] = {}

    def status(task_id: str) -> str | None:
        return TaskStatus.FAILED.value if task_id in doomed else status_of(task_id)

    out: dict[str, Blocked] = {}
    changed = True
    while changed:
        changed = False
        for task in pending:
            if task.id in doomed:
                continue
            blocked = classify(task, status)
            if blocked is None:
                out.pop(task.id, None)
                continue
            out[task.id] = blocked
            if blocked.failed_dep is not None:
                doomed[task.id] = blocked.failed_dep
                changed = True
    return out


class Tracker:
    """Which queued tasks wait for dependencies, re-checked only when something changed.

    A task is checked when it is queued (or its ``after`` changes) and again whenever one of
    the tasks it waits for finishes; a pass over a queue of thousands of waiting tasks costs
    only the few whose dependencies moved.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._dependents: dict[str, set[str]] = {}
        self._recheck: set[str] = set()
        self.waiting: set[str] = set()
        self.checked: set[str] = set()  # checked since the caller last cleared it

    def put(self, task: Task) -> None:
        """Track a queued task (one without ``after`` is simply forgotten)."""
        old = self._tasks.get(task.id)
        if not task.after:
            self.discard(task.id)
            return
        if old is None or old.after != task.after:
            self.discard(task.id)
            for dep in task.after:
                self._dependents.setdefault(dep, set()).add(task.id)
            self._recheck.add(task.id)
        self._tasks[task.id] = task

    def discard(self, task_id: str) -> None:
        """Forget a task that left the queue."""
        task = self._tasks.pop(task_id, None)
        self._recheck.discard(task_id)
        self.waiting.discard(task_id)
        for dep in task.after if task is not None else ():
            found = self._dependents.get(dep)
            if found is not None:
                found.discard(task_id)
                if not found:
                    del self._dependents[dep]

    def changed(self, task_id: str) -> None:
        """Note that ``task_id`` finished: the tasks waiting for it need a new look."""
        self._recheck.update(self._dependents.get(task_id, ()))

    def settle(self, status_of: StatusOf) -> dict[str, Blocked]:
        """Re-check what changed; return the tasks that must fail (``failed_dep`` set)."""
        tasks = [self._tasks[t] for t in self._recheck if t in self._tasks]
        self._recheck.clear()
        self.checked.update(t.id for t in tasks)
        found = resolve(tasks, status_of)
        doomed: dict[str, Blocked] = {}
        for task in tasks:
            blocked = found.get(task.id)
            if blocked is None:
                self.waiting.discard(task.id)
            elif blocked.failed_dep is None:
                self.waiting.add(task.id)
            else:
                self.waiting.discard(task.id)
                doomed[task.id] = blocked
        return doomed


def failure_message(blocked: Blocked) -> str:
    """Return the error of a task failed because of ``blocked.failed_dep``."""
    if blocked.dep_status == "missing":
        return f"dependency {blocked.failed_dep} no longer exists"
    return f"dependency {blocked.failed_dep} {blocked.dep_status}"


def cascade(root: str, tasks: Mapping[str, Task]) -> list[str]:
    """Return ``root`` and every dependent that failed because of it, in dependency order.

    A dependent is included when it failed with ``dependency_failed`` and every one of its
    own dependencies either is in the set or is not broken: a task that also waits for some
    other failed task would only fail again, so it stays as it is.
    """
    dependents: dict[str, list[str]] = {}
    for task in tasks.values():
        for dep in task.after:
            dependents.setdefault(dep, []).append(task.id)
    reached: list[str] = []
    seen = {root}
    frontier = [root]
    while frontier:
        nxt: list[str] = []
        for tid in frontier:
            for dep_id in sorted(dependents.get(tid, ())):
                child = tasks[dep_id]
                failed = child.status == TaskStatus.FAILED.value
                if dep_id not in seen and failed and child.reason == Reason.DEPENDENCY_FAILED.value:
                    seen.add(dep_id)
                    reached.append(dep_id)
                    nxt.append(dep_id)
        frontier = nxt
    chosen = {root, *reached}
    changed = True
    while changed:
        changed = False
        for tid in list(chosen - {root}):
            for dep in tasks[tid].after:
                other = tasks.get(dep)
                if dep not in chosen and (other is None or other.status in BROKEN):
                    chosen.discard(tid)
                    changed = True
                    break
    # Keep only what is still connected to the root through chosen tasks.
    linked = {root}
    for tid in reached:
        if tid in chosen and any(d in linked for d in tasks[tid].after):
            linked.add(tid)
    return [root] + [t for t in reached if t in linked]
