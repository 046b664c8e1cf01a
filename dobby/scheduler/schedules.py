"""Recurring tasks: create, list, pause/resume/delete schedules, and fire them on time.

A schedule holds a validated task template and spawns a task from it at each fire time
(``cron.tick`` decides; see ``cron.py`` for the no-burst rule). Overlap policy: ``skip``
(default) does not fire while the previous run is unfinished; ``queue`` spawns the task anyway
and the planner holds it (``waiting_on: schedule``) until the previous run ends.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Any

from dobby.core.config import Settings
from dobby.core.errors import DobbyError
from dobby.core.events import EventBus
from dobby.core.models import Schedule, TaskStatus
from dobby.core.shapes import SCHEDULE_KEYS, ScheduleCreate, parse
from dobby.core.timefmt import iso, parse_time
from dobby.scheduler import cron
from dobby.scheduler.intake import Intake
from dobby.store.db import Store

log = logging.getLogger("dobby.scheduler")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class Schedules:
    """The hub's schedules and their firing."""

    def __init__(self, *, store: Store, bus: EventBus, settings: Settings, intake: Intake) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.intake = intake
        self._due: float | None = None
        self._due_known = False  # the loop asks every pass: recompute only after a change

    # -- CRUD --------------------------------------------------------------------------
    def create(self, body: Any) -> Schedule:
        """Validate a POST /schedules body (schedule keys + a task) and store the schedule."""
        shape = parse(ScheduleCreate, body)
        template = {k: v for k, v in body.items() if k not in SCHEDULE_KEYS}
        schedule = Schedule(template=template)
        if shape.cron is not None:
            schedule.cron = cron.check_cron(shape.cron)
            schedule.timezone = shape.timezone or self.settings.timezone
            cron.zone(schedule.timezone)  # validate the zone name now
        else:
            assert shape.every is not None  # the shape wants exactly one of cron and every
            schedule.every_s = cron.parse_every(shape.every)
            schedule.every = str(body["every"])
        schedule.overlap = shape.overlap or "skip"
        schedule.paused = shape.paused
        self.intake.build(template)  # the template must make a valid, placeable task
        if not schedule.paused:
            schedule.next_at = iso(cron.next_fire(schedule, _now()))
        self._save(schedule, "schedule.created")
        return schedule

    def list(self) -> list[dict[str, Any]]:
        """Return every schedule as JSON."""
        return [s.to_dict() for s in self.store.schedules()]

    def get(self, schedule_id: str) -> Schedule:
        """Return one schedule."""
        return self.store.get_schedule(schedule_id)

    def pause(self, schedule_id: str) -> Schedule:
        """Stop firing (the next fire time is forgotten)."""
        schedule = self.get(schedule_id)
        schedule.paused = True
        schedule.next_at = None
        self._save(schedule, "schedule.updated")
        return schedule

    def resume(self, schedule_id: str) -> Schedule:
        """Fire again from the next fire time after now (paused time is not caught up)."""
        schedule = self.get(schedule_id)
        schedule.paused = False
        schedule.next_at = iso(cron.next_fire(schedule, _now()))
        self._save(schedule, "schedule.updated")
        return schedule

    def delete(self, schedule_id: str) -> Schedule:
        """Remove a schedule (tasks it spawned stay)."""
        schedule = self.get(schedule_id)
        self.store.delete_schedule(schedule.id)
        self._due_known = False
        self.bus.publish("schedule.deleted", data=schedule.to_dict())
        return schedule

    def _save(self, schedule: Schedule, event: str) -> None:
        self._due_known = False
        self.store.put_schedule(schedule)
        self.bus.publish(event, data=schedule.to_dict())

    # -- firing ------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """Return the epoch time of the earliest next fire, if any schedule is active."""
        if not self._due_known:
            times = [s.next_at for s in self.store.schedules() if s.next_at and not s.paused]
            self._due = min(parse_time(t).timestamp() for t in times) if times else None
            self._due_known = True
        return self._due

    def tick(self, now: _dt.datetime | None = None) -> int:
        """Fire every due schedule once; return how many tasks were spawned."""
        now = now or _now()
        spawned = 0
        for schedule in self.store.schedules():
            decision = cron.tick(schedule, now)
            if not decision.fire:
                continue
            schedule.next_at = iso(decision.next_at) if decision.next_at else None
            schedule.last_fire_at = iso(now)
            if self._previous_running(schedule) and schedule.overlap == "skip":
                schedule.skipped += 1
                log.info("schedule %s: previous run %s unfinished, skipped", schedule.id,
                         schedule.last_task_id)  # fmt: skip
                self._save(schedule, "schedule.updated")
                continue
            try:
                task, _ = self.intake.build(schedule.template)
            except DobbyError as exc:  # e.g. its host left the inventory: keep the schedule
                schedule.last_error = str(exc)
                log.warning("schedule %s could not spawn a task: %s", schedule.id, exc)
                self._save(schedule, "schedule.updated")
                continue
            task.schedule_id = schedule.id
            task.cron, task.every = schedule.cron, schedule.every
            self.intake.enqueue(task, "task.created")
            schedule.fires += 1
            schedule.last_task_id = task.id
            schedule.last_error = None
            self._save(schedule, "schedule.updated")
            spawned += 1
        return spawned

    def _previous_running(self, schedule: Schedule) -> bool:
        if not schedule.last_task_id:
            return False
        status = self.store.task_status(schedule.last_task_id)
        return status is not None and not TaskStatus(status).finished
