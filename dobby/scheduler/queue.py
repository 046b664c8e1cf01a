"""Pure queue order: priority first, FIFO within a priority, aging so nothing starves.

Order key of a pending task at time ``now``: ``(effective rank, queued time, id)`` where

    effective rank = max(0, base rank - floor(waited / aging))

with base ranks urgent 0, high 1, normal 2, low 3, and ``waited`` the seconds since the task
was queued (``queued_at``: submit, approval or retry). So a task moves up one level for every
``aging`` seconds it waits (default 600 s: a low task ranks with urgent ones after 30 min).

Starvation bound: once a task has waited ``base rank × aging`` seconds its key is
``(0, queued time)``, and every task queued after it has a larger key: from then on no newer
task is placed ahead of it when both could run. Aging ``0`` turns aging off.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from dobby.core.models import Priority, Task
from dobby.core.timefmt import parse_time

PRIORITY_RANK = {
    Priority.URGENT.value: 0,
    Priority.HIGH.value: 1,
    Priority.NORMAL.value: 2,
    Priority.LOW.value: 3,
}
DEFAULT_RANK = PRIORITY_RANK[Priority.NORMAL.value]
DEFAULT_AGING = 600.0

OrderKey = tuple[int, float, str]


@lru_cache(maxsize=65536)
def _ts(value: str) -> float:
    return parse_time(value).timestamp()


def queued_ts(task: Task) -> float:
    """Return when the task joined the queue, as epoch seconds."""
    return _ts(task.queued_at or task.created_at)


def base_rank(priority: str) -> int:
    """Return the rank of a priority name (unknown names count as normal)."""
    return PRIORITY_RANK.get(priority, DEFAULT_RANK)


def effective_rank(rank: int, waited: float, aging: float) -> int:
    """Return ``rank`` lowered one level per ``aging`` seconds waited, never below 0."""
    if aging <= 0 or waited <= 0:
        return rank
    return max(0, rank - math.floor(waited / aging))


def aging_bound(priority: str, aging: float) -> float:
    """Return the seconds after which a task of ``priority`` is overtaken by no newer task."""
    return base_rank(priority) * aging


def order_key(task: Task, now: float | None = None, aging: float = DEFAULT_AGING) -> OrderKey:
    """Return the sort key of ``task`` at time ``now`` (None: no aging)."""
    ts = queued_ts(task)
    waited = 0.0 if now is None else now - ts
    return (effective_rank(base_rank(task.priority), waited, aging), ts, task.id)


def ordered(
    tasks: Iterable[Task], now: float | None = None, aging: float = DEFAULT_AGING
) -> list[Task]:
    """Return ``tasks`` in the order the scheduler considers them at ``now``."""
    return sorted(tasks, key=lambda t: order_key(t, now, aging))


Signature = tuple[object, ...]
BucketKey = tuple[str | None, int, Signature]
# Waits a pass may end without looking at the task itself (the loop re-checks these).
REVISIT = ("schedule", "usage_limit", "budget")


def signature(task: Task) -> Signature:
    """Return what the placement of ``task`` depends on: tasks alike are placed alike."""
    return (
        task.want_host,
        task.backend,
        tuple(sorted(task.host_selector)),
        tuple(sorted(task.avoid_hosts)),
        task.wait_for_host,
        task.gpus,
        task.resume_host,
    )


class PendingQueue:
    """Pending tasks in buckets per (project, priority, placement signature), in queue order.

    Within a bucket the order key never decreases (older tasks have aged at least as much),
    so the global order is a lazy k-way merge of the buckets (:class:`Cursor`), and a whole
    project — or every task placed alike — can be skipped at once when it has no room: a pass
    over a 10,000-task queue costs what it starts and the few tasks it must look at, not a
    sort of everything. A *held* task (waiting for dependencies or a timer) stays queued but
    out of every bucket: passes never see it until it is released. Every put marks the task
    *fresh* until the loop takes the marks (:meth:`take_fresh`): what changed since a pass.
    """

    def __init__(self, *, aging: float = DEFAULT_AGING) -> None:
        self.aging = aging
        self._buckets: dict[BucketKey, list[tuple[float, str]]] = {}
        self._projects: dict[str | None, set[BucketKey]] = {}  # a project's buckets
        self._where: dict[str, tuple[BucketKey, float]] = {}
        self._tasks: dict[str, Task] = {}
        self._flagged: set[str] = set()  # waiting on one of REVISIT
        self._fresh: set[str] = set()
        self.held: dict[str, str] = {}  # task id -> what it waits for (out of the buckets)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def get(self, task_id: str) -> Task | None:
        """Return the queued task with this id, if any."""
        return self._tasks.get(task_id)

    def tasks(self) -> list[Task]:
        """Return every queued task (no particular order)."""
        return list(self._tasks.values())

    def flagged(self) -> list[Task]:
        """Return the queued tasks waiting on a schedule, a usage limit or a budget."""
        return [self._tasks[t] for t in self._flagged]

    def take_fresh(self) -> set[str]:
        """Return the ids of the tasks put since the last call, and forget them."""
        fresh, self._fresh = self._fresh, set()
        return {t for t in fresh if t in self._tasks}

    def of_signature(self, sig: Signature) -> list[str]:
        """Return the ids of the queued (not held) tasks placed by ``sig``."""
        return [tid for key, b in self._buckets.items() if key[2] == sig for _, tid in b]

    def put(self, task: Task) -> None:
        """Add a task, or replace it (its priority, project or queue time may have changed)."""
        where = ((task.project, base_rank(task.priority), signature(task)), queued_ts(task))
        old = self._where.get(task.id)
        if old != where:
            if old is not None and task.id not in self.held:
                self._unbucket(task.id, old)
            self._where[task.id] = where
            if task.id not in self.held:
                self._bucket(task.id, where)
        self._tasks[task.id] = task
        self._fresh.add(task.id)
        _mark(self._flagged, task.id, task.waiting_on in REVISIT)

    def hold(self, task_id: str, why: str | None) -> None:
        """Keep a queued task out of every pass while ``why`` (None: back in its bucket)."""
        where = self._where.get(task_id)
        if where is None:
            return
        if why is None:
            if self.held.pop(task_id, None) is not None:
                self._bucket(task_id, where)
                self._fresh.add(task_id)  # what it waits for now is the next pass's to say
            return
        if task_id not in self.held:
            self._unbucket(task_id, where)
        self.held[task_id] = why

    def discard(self, task_id: str) -> None:
        """Remove a task if it is queued."""
        where = self._where.pop(task_id, None)
        self._tasks.pop(task_id, None)
        self._flagged.discard(task_id)
        self._fresh.discard(task_id)
        if where is None:
            return
        if self.held.pop(task_id, None) is None:
            self._unbucket(task_id, where)

    def _bucket(self, task_id: str, where: tuple[BucketKey, float]) -> None:
        key = where[0]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = []
            self._projects.setdefault(key[0], set()).add(key)
        bisect.insort(bucket, (where[1], task_id))

    def _unbucket(self, task_id: str, where: tuple[BucketKey, float]) -> None:
        key = where[0]
        bucket = self._buckets[key]
        i = bisect.bisect_left(bucket, (where[1], task_id))
        if i < len(bucket) and bucket[i] == (where[1], task_id):
            del bucket[i]
        if not bucket:
            del self._buckets[key]
            keys = self._projects[key[0]]
            keys.discard(key)
            if not keys:
                del self._projects[key[0]]

    def cursor(
        self, now: float | None = None, skip: Callable[[str | None], bool] | None = None
    ) -> Cursor:
        """Return a walk over the queue (held tasks aside) in scheduling order at ``now``.

        ``skip``: projects whose tasks the walk leaves out from the start (full ones).
        """
        return Cursor(self, now, skip)

    def ordered(self, now: float | None = None) -> Iterator[Task]:
        """Yield queued tasks in scheduling order at ``now``; don't change the queue meanwhile."""
        return iter(self.cursor(now))


def _mark(found: set[str], task_id: str, flag: bool) -> None:
    if flag:
        found.add(task_id)
    else:
        found.discard(task_id)


class Cursor:
    """Yield queued tasks in order; skip every later task of a project or a signature at once.

    :attr:`signature` is the placement signature of the task yielded last.
    """

    def __init__(
        self,
        queue: PendingQueue,
        now: float | None,
        skip: Callable[[str | None], bool] | None = None,
    ) -> None:
        self._queue = queue
        self._now = now
        self._dropped: set[str | None] = set()
        self._closed: set[Signature] = set()
        self.signature: Signature = ()
        # One heap entry per bucket: (order key..., bucket, position). Task ids are unique, so
        # the comparison never reaches the bucket part.
        self._heap: list[tuple[int, float, str, BucketKey, int]] = []
        buckets = queue._buckets
        for project, keys in queue._projects.items():
            if skip is not None and skip(project):
                self._dropped.add(project)
                continue
            for key in keys:
                self._heap.append(self._entry(key, buckets[key], 0))
        heapq.heapify(self._heap)

    def _entry(
        self, key: BucketKey, bucket: list[tuple[float, str]], pos: int
    ) -> tuple[int, float, str, BucketKey, int]:
        ts, tid = bucket[pos]
        waited = 0.0 if self._now is None else self._now - ts
        return (effective_rank(key[1], waited, self._queue.aging), ts, tid, key, pos)

    def drop(self, project: str | None) -> None:
        """Skip the remaining tasks of ``project`` (None: the tasks without a project)."""
        self._dropped.add(project)

    def close(self, sig: Signature) -> None:
        """Skip the remaining tasks placed by ``sig`` (none of them can start this pass)."""
        self._closed.add(sig)

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Task:
        heap = self._heap
        while heap:
            _rank, _ts, tid, key, pos = heapq.heappop(heap)
            if key[0] in self._dropped or key[2] in self._closed:
                continue  # the bucket leaves the merge for good
            bucket = self._queue._buckets[key]
            if pos + 1 < len(bucket):
                heapq.heappush(heap, self._entry(key, bucket, pos + 1))
            self.signature = key[2]
            return self._queue._tasks[tid]
        raise StopIteration
