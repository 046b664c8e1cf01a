"""Passes that cost what changed: signatures closed at once, held tasks out of sight, slot
holders counted as they come and go, stale checks that look only at what could be stale."""

from __future__ import annotations

import datetime as _dt
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from dobby.core.config import Settings
from dobby.core.models import Task, TaskStatus
from dobby.core.timefmt import iso
from dobby.machines.gpu import reservations
from dobby.machines.hosts import HostManager
from dobby.scheduler import watchdog as watchdog_module
from dobby.scheduler.holders import Holders
from dobby.scheduler.plan import PlanInput, plan
from dobby.scheduler.queue import PendingQueue, signature
from dobby.scheduler.watchdog import Watchdog
from dobby.store.db import Store
from dobby.store.tasklog import TaskLogs
from tests.scheduler.test_pure import T0, host, slot, task


def test_tasks_placed_alike_are_skipped_once_one_finds_no_host() -> None:
    queue = PendingQueue()
    for i in range(5000):
        queue.put(task(f"w{i:04d}", at=i, labels=("nowhere",), wait=True))
    queue.put(task("late", at=9999))
    queue.put(task("full", at=1, host="busy"))
    queue.put(task("full2", at=2, host="busy"))
    slots = [slot(host("h")), slot(host("busy", max_agents=1), running=1)]
    result = plan(PlanInput(pending=queue, hosts=slots, running_total=1, max_total=10, now=T0))
    assert [(d.task_id, d.host) for d in result.decisions] == [("late", "h")]
    assert result.examined == 3  # one per signature, not one per task
    waiting = queue.get("w4999")
    assert waiting is not None and result.reason(waiting) == "host"
    full2 = queue.get("full2")
    assert full2 is not None and result.reason(full2) == "capacity"
    assert result.closed == {
        signature(waiting): "host",
        signature(full2): "capacity",
    }


def test_a_held_task_stays_queued_but_out_of_every_pass() -> None:
    queue = PendingQueue()
    queue.put(task("a", at=1))
    queue.put(task("b", at=2))
    assert queue.take_fresh() == {"a", "b"}
    queue.hold("a", "dependencies")
    queue.put(task("a", at=1, priority="urgent"))  # changed while held: still held
    assert [t.id for t in queue.ordered(T0)] == ["b"]
    assert "a" in queue and queue.held == {"a": "dependencies"}
    queue.take_fresh()
    queue.hold("a", None)
    assert queue.take_fresh() == {"a"}  # released: the next pass looks at it again
    assert [t.id for t in queue.ordered(T0)] == ["a", "b"]
    assert sorted(queue.of_signature(signature(task("x")))) == ["a", "b"]
    queue.hold("b", "usage_limit")
    queue.discard("b")
    assert queue.held == {} and [t.id for t in queue.ordered(T0)] == ["a"]


def test_a_full_project_is_left_out_of_the_walk() -> None:
    queue = PendingQueue()
    for i in range(100):
        queue.put(task(f"p{i:03d}", at=i, project="web"))
    queue.put(task("free", at=500, project="api"))
    result = plan(
        PlanInput(pending=queue, hosts=[slot(host("h"))], running_total=1, max_total=10,
                  busy_projects={"web": 1}, project_limits={"web": 1}, now=T0)
    )  # fmt: skip
    assert [d.task_id for d in result.decisions] == ["free"] and result.examined == 1
    web = queue.get("p050")
    assert web is not None and result.reason(web) == "capacity"


# --- slot holders ------------------------------------------------------------------------------


def _recount(tasks: list[Task]) -> tuple[Counter[str], Counter[str], set[str], dict[str, set[int]]]:
    """Count holders from scratch, as a pass did before Holders kept the counts."""
    hosts = Counter(t.host or "" for t in tasks)
    projects = Counter(t.project for t in tasks if t.project and t.kind != "interactive")
    schedules = {t.schedule_id for t in tasks if t.schedule_id}
    return hosts, projects, schedules, reservations(tasks)


def test_holders_counts_stay_those_of_a_recount_through_any_changes() -> None:
    rng = random.Random(15)
    holders = Holders()
    for step in range(3000):
        tid = f"t{rng.randrange(60):02d}"
        if rng.random() < 0.3:
            holders.discard(tid)
        else:  # a new holder, or one saved again: moved, its GPUs or project changed
            holders.put(
                Task(
                    prompt="x",
                    id=tid,
                    host=rng.choice(["a", "b", "c", None]),
                    project=rng.choice(["web", "api", None]),
                    kind=rng.choice(["task", "task", "interactive"]),
                    schedule_id=rng.choice(["s1", "s2", None, None]),
                    gpu_indices=rng.choice([[], [], [0], [1, 2]]),
                )
            )
        tasks = list(holders.values())
        hosts, projects, schedules, gpus = _recount(tasks)
        assert holders.hosts == hosts, step
        assert holders.projects == projects, step
        assert set(holders.schedules) == schedules, step
        assert reservations(holders.gpu_holders.values()) == gpus, step
        assert len(holders) == len(tasks) and all(holders[t.id] is t for t in tasks)
    # Nothing left counted once every holder is gone (no key kept at zero).
    for tid in list(holders):
        holders.discard(tid)
    assert (holders.hosts, holders.projects, holders.schedules) == (Counter(), Counter(), Counter())
    assert holders.gpu_holders == {} and len(holders) == 0


# --- stale checks ------------------------------------------------------------------------------


class CountingLogs(TaskLogs):
    """The hub's task logs, counting how often a copy's age is looked at."""

    def __init__(self, *, root: Path) -> None:
        super().__init__(root=root)
        self.looks: Counter[str] = Counter()

    def mtime(self, task_id: str) -> float | None:
        self.looks[task_id] += 1
        return super().mtime(task_id)


def test_a_stale_check_looks_again_only_at_tasks_that_could_have_gone_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.time()]
    monkeypatch.setattr(watchdog_module.time, "time", lambda: clock[0])
    store = Store(path=tmp_path / "dobby.db")
    logs = CountingLogs(root=tmp_path / "results")
    saved: list[tuple[Task, str | None]] = []

    def save(t: Task, event: str | None = None) -> None:
        store.put_task(t)
        saved.append((t, event))

    dog = Watchdog(
        store=store,
        logs=logs,
        settings=Settings(home=str(tmp_path), stale_timeout=60, stale_action="mark"),
        hosts=HostManager(on_change=lambda name, state: None),
        save=save,
        kill=lambda t: None,  # type: ignore[arg-type,return-value]
    )
    running = []
    for i in range(20):
        t = Task(prompt="x", id=f"r{i:02d}", host="h")
        t.status = TaskStatus.RUNNING
        t.started_at = iso(_dt.datetime.fromtimestamp(clock[0], _dt.UTC))
        store.put_task(t)
        running.append(t)
    chatty, silent = running[0], running[1]

    def write(t: Task, at: float) -> None:
        path = logs.path(t.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write("line\n")
        os.utime(path, (at, at))

    dog.check(running)
    assert set(logs.looks) == {t.id for t in running}  # the first check looks at every one
    for _ in range(10):  # checks within the timeout look at none again
        clock[0] += 5
        dog.check(running)
    assert max(logs.looks.values()) == 1
    clock[0] += 20  # 70 s since the start: every task could be stale now
    write(chatty, clock[0] - 1)
    dog.check(running)
    assert all(logs.looks[t.id] == 2 for t in running)
    stale = {t.id for t, event in saved if event == "task.stale"}
    assert stale == {t.id for t in running} - {chatty.id}, "the one that printed is not stale"
    # A marked task is looked at every check (output clears its mark at once), the others
    # not until they could be stale again.
    marked = [store.get_task(t.id) for t in running]
    saved.clear()
    clock[0] += 5
    write(silent, clock[0])
    dog.check(marked)
    assert [t.id for t, _ in saved] == [silent.id] and saved[0][0].stale_since is None
    assert logs.looks[chatty.id] == 2 and logs.looks[silent.id] == 3
