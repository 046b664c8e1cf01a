"""Races: start K attempts at one task, judge them by its check, stop the losers.

A race is stored on its own (``store.put_race``); its attempts are ordinary tasks carrying
``race_id`` and ``race_slot``. A settling loop re-judges each undecided race whenever one of
its tasks finishes (and now and then): it picks the winner by the race's rule
(:mod:`dobby.races.pick`), cancels what still runs of the other attempts (cancelled tasks keep
their work like any cancel), and marks the race *settled* once every attempt has ended. The
loop works from stored state only, so a hub killed at any moment resumes and decides the same
way after its restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dobby.backends import get_backend
from dobby.core.aio import wait_event
from dobby.core.config import Settings
from dobby.core.errors import Conflict, DobbyError, NotFound, ValidationError
from dobby.core.events import Event, EventBus
from dobby.core.models import Race, RaceStatus, Task
from dobby.core.ports import CancelTask
from dobby.core.shapes import validate_race
from dobby.core.timefmt import utcnow
from dobby.machines.hosts import HostManager
from dobby.races import compare, pick, spread
from dobby.results import gitback
from dobby.scheduler.capacity import eligible
from dobby.scheduler.intake import Intake
from dobby.store.db import Store

log = logging.getLogger("dobby.races")

SETTLE_EVERY = 5.0  # seconds between passes when no task of a race finished
MAX_LANE = 100  # tasks in one attempt's lane (a guard against a cycle in edited data)

Merge = Callable[[str], Awaitable[dict[str, Any]]]


class Races:
    """Create, judge, show, cancel and merge races."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        settings: Settings,
        hosts: HostManager,
        intake: Intake,
        cancel: CancelTask,
        merge: Merge,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.hosts = hosts
        self.intake = intake
        self._cancel = cancel
        self._merge = merge
        self._open: set[str] = set()  # races not settled yet
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Judge every unsettled race now (after a restart too), then whenever tasks finish."""
        self._open = {r.id for r in self.store.races() if not r.settled}
        self.bus.subscribe(self._on_event)
        self._loop = asyncio.ensure_future(self._run())
        self.kick()

    async def stop(self) -> None:
        """Stop judging (races stay stored; the next start goes on)."""
        self.bus.unsubscribe(self._on_event)
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    def kick(self) -> None:
        """Ask for a judging pass soon."""
        self._wake.set()

    def _on_event(self, event: Event) -> None:
        if event.type == "task.finished" and event.data.get("race_id") in self._open:
            self.kick()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            for race_id in sorted(self._open):
                try:
                    await self.settle(race_id)
                except Exception:  # noqa: BLE001 - one bad race must not stop the others
                    log.exception("judging race %s failed", race_id)
            await wait_event(self._wake, SETTLE_EVERY)

    # -- create --------------------------------------------------------------------------
    def create(self, body: Any) -> Race:
        """Validate a race and every attempt, then queue them all (or nothing)."""
        fields, task_body = validate_race(body, max_race=self.settings.max_race)
        slots = spread.slots(
            fields["k"], backends=fields["backends"], models=fields["models"], hosts=fields["hosts"]
        )
        tasks: list[Task] = []
        for slot in slots:
            attempt = dict(task_body)
            attempt.update(
                {
                    k: v
                    for k, v in (
                        ("backend", slot.backend),
                        ("model", slot.model),
                        ("host", slot.host),
                    )
                    if v
                }  # fmt: skip
            )
            try:
                task, _ = self.intake.build(attempt)
            except DobbyError as exc:
                raise type(exc)(f"attempt {slot.slot + 1}: {exc}") from None
            tasks.append(task)
        first = tasks[0]
        if not first.verify:
            raise ValidationError(
                "a race needs a check to judge its attempts: give 'verify' "
                "(or set the project's default_verify)"
            )
        race = Race(
            prompt=first.prompt,
            verify=first.verify,
            k=fields["k"],
            title=first.title,
            project=first.project,
            pick=fields["pick"],
        )
        race.attempts = [
            {"slot": s.slot, "backend": t.backend, "model": t.model, "host": s.host,
             "tasks": [t.id]}
            for s, t in zip(slots, tasks, strict=True)
        ]  # fmt: skip
        honours = {t.backend: "max_budget_usd" in get_backend(t.backend).limits for t in tasks}
        race.budget, warnings = spread.budget(tasks, honours=honours)
        race.warnings = warnings + self._capacity_warnings(race, tasks)
        for slot, task in zip(slots, tasks, strict=True):
            task.race_id, task.race_slot = race.id, slot.slot
        self.store.put_race(race)
        self._open.add(race.id)
        for task in tasks:
            self.intake.enqueue(task, "task.created")
        self.bus.publish("race.created", data=race.to_dict())
        log.info("race %s: %d attempts, pick %s", race.id, race.k, race.pick)
        return race

    def _capacity_warnings(self, race: Race, tasks: list[Task]) -> list[str]:
        limit = None
        if race.project:
            limit = self.store.get_project(race.project).max_concurrent
        names = {h.name for t in tasks for h in self.hosts.hosts.values() if eligible(t, h)}
        return spread.capacity_warnings(
            race.k,
            project=race.project,
            project_limit=limit,
            max_total=self.settings.max_concurrent_agents,
            hosts=len(names),
        )

    # -- read ----------------------------------------------------------------------------
    def get(self, race_id: str) -> Race:
        """Return a race by id or unique prefix."""
        return self.store.get_race(race_id)

    def lanes(self, race: Race) -> list[pick.Lane]:
        """Return each attempt's lane: its first task, then each fix round."""
        lanes = []
        for i, entry in enumerate(race.attempts):
            ids = list(entry.get("tasks") or [])
            tasks = [self.store.get_task(ids[0])]
            while tasks[-1].fix_task and len(tasks) < MAX_LANE:
                try:
                    nxt = self.store.get_task(tasks[-1].fix_task)
                except NotFound:
                    break
                if any(t.id == nxt.id for t in tasks):
                    break
                tasks.append(nxt)
            lanes.append(pick.Lane(slot=int(entry.get("slot", i)), tasks=tasks))
        return lanes

    def view(self, race_id: str) -> dict[str, Any]:
        """Return the race with one column per attempt (see :mod:`dobby.races.compare`)."""
        race = self.get(race_id)
        return compare.view(race, self.lanes(race))

    def recent(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Return races newest first, each with its columns."""
        races = self.store.races()
        races = races[:limit] if limit else races
        return [compare.view(r, self.lanes(r)) for r in races]

    # -- judge ---------------------------------------------------------------------------
    async def settle(self, race_id: str) -> None:
        """Judge one race from its tasks; stop the losers; mark it settled when all ended."""
        race = self.get(race_id)
        lanes = self.lanes(race)
        if race.status == RaceStatus.RUNNING.value:
            changed = await self._lane_diffs(race, lanes)
            race = self.get(race_id)  # a cancel may have come in while git ran
            if race.status == RaceStatus.RUNNING.value:
                if changed:
                    self._apply_diffs(race, changed)
                sizes = {lane.slot: _size(race, lane) for lane in lanes}
                decision = pick.decide(race.pick, lanes, sizes)
                if decision.winner is not None:
                    self._win(race, decision.winner)
                elif decision.failed:
                    self._fail(race, lanes)
                elif changed:
                    self.store.put_race(race)
                    self.bus.publish("race.updated", data=race.to_dict())
        if race.status == RaceStatus.RUNNING.value:
            return
        for lane in lanes:
            for task in lane.live:
                if race.winner_slot == lane.slot and race.status == RaceStatus.COMPLETED.value:
                    continue
                try:
                    await self._cancel(task.id)
                except (Conflict, NotFound):
                    pass  # it ended meanwhile
        lanes = self.lanes(race)
        if all(not lane.live for lane in lanes):
            race = self.get(race_id)
            race.settled = True
            self.store.put_race(race)
            self._open.discard(race.id)
            self.bus.publish("race.updated", data=compare.view(race, lanes))

    async def _lane_diffs(self, race: Race, lanes: list[pick.Lane]) -> dict[int, dict[str, Any]]:
        """Return the diff stat of each ended lane with fix rounds that is not known yet.

        A lane of one task has that task's diff stat; with fix rounds the lane's work is its
        first task's base to its last task's head.
        """
        out: dict[int, dict[str, Any]] = {}
        entries = {int(e.get("slot", i)): e for i, e in enumerate(race.attempts)}
        for lane in lanes:
            first, last = lane.tasks[0], lane.last
            entry = entries.get(lane.slot, {})
            if len(lane.tasks) < 2 or not lane.ended or not last.head_commit:
                continue
            if not first.base_commit or not race.project:
                continue
            if entry.get("diff_head") == last.head_commit:
                continue
            path = self.store.get_project(race.project).path
            try:
                stat = await gitback.diff_stat(path, first.base_commit, last.head_commit)
            except DobbyError as exc:
                log.warning("race %s: diff of attempt %d: %s", race.id, lane.slot + 1, exc)
                out[lane.slot] = {
                    "diff_stat": None,
                    "diff_error": str(exc),
                    "diff_head": last.head_commit,
                }
                continue
            out[lane.slot] = {"diff_stat": stat, "diff_head": last.head_commit}
        return out

    @staticmethod
    def _apply_diffs(race: Race, changed: dict[int, dict[str, Any]]) -> None:
        for i, entry in enumerate(race.attempts):
            slot = int(entry.get("slot", i))
            if slot in changed:
                race.attempts[i] = {**entry, **changed[slot]}

    def _win(self, race: Race, lane: pick.Lane) -> None:
        winner = lane.last
        race.status = RaceStatus.COMPLETED.value
        race.winner, race.winner_slot, race.branch = winner.id, lane.slot, winner.branch
        race.finished_at = utcnow()
        if not winner.branch:
            race.warnings = [*race.warnings, "the winner changed nothing: there is no branch"]
        self._finished(race)
        log.info("race %s: attempt %d (task %s) won", race.id, lane.slot + 1, winner.id)

    def _fail(self, race: Race, lanes: list[pick.Lane]) -> None:
        race.status = RaceStatus.FAILED.value
        race.reason = "no_verified"
        race.error = pick.failure_summary(lanes)
        race.finished_at = utcnow()
        self._finished(race)
        log.info("race %s failed: %s", race.id, race.error)

    def _finished(self, race: Race) -> None:
        self.store.put_race(race)
        view = compare.view(race, self.lanes(race))
        self.bus.publish("race.finished", data=view)

    # -- act -----------------------------------------------------------------------------
    async def cancel(self, race_id: str) -> Race:
        """Cancel a race and every attempt that has not ended."""
        race = self.get(race_id)
        if race.status != RaceStatus.RUNNING.value:
            raise Conflict(f"race {race.id} is already {race.status}")
        race.status = RaceStatus.CANCELLED.value
        race.reason = "cancelled"
        race.finished_at = utcnow()
        self._finished(race)
        await self.settle(race.id)
        return self.get(race.id)

    def allows_fix_round(self, task: Task) -> bool:
        """Return False when ``task``'s race is decided: a fix round would be cancelled anyway."""
        if not task.race_id:
            return True
        try:
            return self.get(task.race_id).status == RaceStatus.RUNNING.value
        except NotFound:
            return True

    async def merge(self, race_id: str) -> dict[str, Any]:
        """Merge the winner's branch into the project's checkout."""
        race = self.get(race_id)
        if race.status != RaceStatus.COMPLETED.value or not race.winner:
            why = race.error or race.status
            raise Conflict(f"race {race.id} has no winner to merge ({why})")
        return {"race_id": race.id, **await self._merge(race.winner)}


def _size(race: Race, lane: pick.Lane) -> int | None:
    """Return the lines a lane changed (added + deleted); None when unknown."""
    if len(lane.tasks) > 1:
        entry = next((e for e in race.attempts if int(e.get("slot", -1)) == lane.slot), {})
        stat = entry.get("diff_stat")
        if stat is None:
            return None  # not computed, or git failed
    else:
        if lane.last.collect_error:
            return None  # its work did not come back: its size is not known
        stat = lane.last.diff_stat or {}  # no diff stat: it changed nothing
    return int(stat.get("insertions") or 0) + int(stat.get("deletions") or 0)
