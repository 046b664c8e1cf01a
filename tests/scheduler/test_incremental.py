"""Passes that cost what changed: signatures closed at once, held tasks out of sight."""

from __future__ import annotations

from dobby.scheduler.plan import PlanInput, plan
from dobby.scheduler.queue import PendingQueue, signature
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
