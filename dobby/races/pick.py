"""Judge a race from its attempts' tasks: who is still running, who passed, who wins (pure).

An attempt is a *lane*: its first task and the fix rounds that followed it (each round's
``fix_task`` links to the next). The lane's last task says where it stands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dobby.core.models import Pick, Task, TaskStatus, VerifyStatus

WAITING, RUNNING, PASSED, FAILED, CANCELLED = "pending", "running", "passed", "failed", "cancelled"
ENDED = (PASSED, FAILED, CANCELLED)


@dataclass
class Lane:
    """One attempt of a race: its tasks, first run first, then each fix round."""

    slot: int
    tasks: list[Task]

    @property
    def last(self) -> Task:
        return self.tasks[-1]

    @property
    def state(self) -> str:
        """Return pending, running, passed, failed or cancelled."""
        last = self.last
        if not TaskStatus(last.status).finished:
            return WAITING if last.status in ("pending", "draft") else RUNNING
        if last.status == TaskStatus.CANCELLED.value:
            return CANCELLED
        result = last.verify_result or {}
        if last.status == TaskStatus.COMPLETED.value and result.get("status") == "passed":
            return PASSED
        return FAILED

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def live(self) -> list[Task]:
        """Return the lane's tasks that have not finished (what cancelling it must stop)."""
        return [t for t in self.tasks if not TaskStatus(t.status).finished]

    @property
    def cost_usd(self) -> float | None:
        """Return what the lane spent (earlier retries included); None when any run is unpriced."""
        total = 0.0
        for task in self.tasks:
            if task.cost_usd is None and TaskStatus(task.status).finished and task.started_at:
                return None  # it ran, and its model has no price
            runs = [task.cost_usd, *(a.get("cost_usd") for a in task.attempts)]
            total += sum(c for c in runs if isinstance(c, int | float))
        return round(total, 6)

    @property
    def finished_at(self) -> str:
        return self.last.finished_at or ""

    def why(self) -> str:
        """Return the one line saying how the lane ended (its check's result or its error)."""
        last = self.last
        result = last.verify_result or {}
        if result.get("status") in (VerifyStatus.FAILED.value, VerifyStatus.TIMEOUT.value):
            return last.error or f"verify {result.get('status')}"
        if last.status == TaskStatus.CANCELLED.value:
            return "cancelled"
        return last.error or last.reason or last.status


@dataclass(frozen=True)
class Decision:
    """What a race should do now: wait, declare ``winner``, or fail (no attempt passed)."""

    winner: Lane | None = None
    failed: bool = False

    @property
    def wait(self) -> bool:
        return self.winner is None and not self.failed


def decide(pick: str, lanes: Sequence[Lane], sizes: Mapping[int, int | None]) -> Decision:
    """Return the race's decision under ``pick``; ``sizes`` maps slot → lines changed."""
    passed = [lane for lane in lanes if lane.state == PASSED]
    everyone_ended = all(lane.ended for lane in lanes)
    if pick == Pick.FIRST.value:
        if passed:
            return Decision(winner=min(passed, key=lambda ln: (ln.finished_at, ln.slot)))
        return Decision(failed=everyone_ended)
    if not everyone_ended:
        return Decision()
    if not passed:
        return Decision(failed=True)
    if pick == Pick.SMALLEST.value:

        def smaller(lane: Lane) -> tuple[float, str, int]:
            size = sizes.get(lane.slot)
            return (math.inf if size is None else size, lane.finished_at, lane.slot)

        return Decision(winner=min(passed, key=smaller))

    def cheaper(lane: Lane) -> tuple[float, str, int]:
        cost = lane.cost_usd
        return (math.inf if cost is None else cost, lane.finished_at, lane.slot)

    return Decision(winner=min(passed, key=cheaper))


def failure_summary(lanes: Sequence[Lane]) -> str:
    """Return the error of a race no attempt won: each attempt's one line."""
    parts = [
        f"#{lane.slot + 1} {lane.last.backend} on {lane.last.host or '?'}: {lane.why()}"
        for lane in lanes
    ]
    return "no attempt passed its check: " + "; ".join(parts)
