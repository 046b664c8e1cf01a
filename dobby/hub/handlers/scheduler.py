"""Scheduler routes: drafts (approve/reject), retry --cascade, schedules, batches, policies.

Operations that create or re-queue work answer only once it is on disk (``store.durable``,
a group commit shared by concurrent requests): a 201 survives a hub crash.
"""

from __future__ import annotations

from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.shapes import RetryBody, parse
from dobby.hub.base import BaseHandler
from dobby.hub.handlers import tasks as h
from dobby.hub.idempotency import answer_once


def _object(handler: BaseHandler) -> dict[str, Any]:
    body = handler.body_json()
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


class TasksHandler(h.TasksHandler):
    """``GET /tasks`` as before; ``POST /tasks`` answers once durable (``Idempotency-Key``)."""

    async def post(self) -> None:  # type: ignore[override]
        await answer_once(self, lambda: (201, self.dobby.submit(self.body_json()).to_dict()))


class TaskRetryHandler(BaseHandler):
    """``POST /tasks/{id}/retry`` with optional ``{"cascade": true}``."""

    async def post(self, task_id: str) -> None:
        cascade = parse(RetryBody, self.body_json()).cascade
        task, requeued = self.dobby.intake.retry(task_id, cascade=cascade)
        await self.dobby.store.durable()
        out = task.to_dict()
        if cascade:
            out["requeued"] = requeued
        self.send(out, 201)


class TaskApproveHandler(BaseHandler):
    async def post(self, task_id: str) -> None:
        task = self.dobby.intake.approve(task_id)
        await self.dobby.store.durable()
        self.send(task.to_dict())


class TaskRejectHandler(BaseHandler):
    async def post(self, task_id: str) -> None:
        task = await self.dobby.intake.reject(task_id)
        self.send(task.to_dict())


class SchedulesHandler(BaseHandler):
    def get(self) -> None:
        self.send({"schedules": self.dobby.schedules.list()})

    async def post(self) -> None:
        schedule = self.dobby.schedules.create(self.body_json())
        await self.dobby.store.durable()
        self.dobby.scheduler.kick()
        self.send(schedule.to_dict(), 201)


class ScheduleHandler(BaseHandler):
    def get(self, schedule_id: str) -> None:
        self.send(self.dobby.schedules.get(schedule_id).to_dict())

    def delete(self, schedule_id: str) -> None:
        self.send(self.dobby.schedules.delete(schedule_id).to_dict())


class SchedulePauseHandler(BaseHandler):
    def post(self, schedule_id: str) -> None:
        self.send(self.dobby.schedules.pause(schedule_id).to_dict())


class ScheduleResumeHandler(BaseHandler):
    def post(self, schedule_id: str) -> None:
        schedule = self.dobby.schedules.resume(schedule_id)
        self.dobby.scheduler.kick()
        self.send(schedule.to_dict())


class BatchesHandler(BaseHandler):
    def get(self) -> None:
        self.send({"batches": self.dobby.batches.list()})

    async def post(self) -> None:
        await answer_once(self, lambda: (201, self.dobby.batches.submit(self.body_json())))


class BatchHandler(BaseHandler):
    def get(self, batch_id: str) -> None:
        self.send(self.dobby.batches.view(batch_id))


class ProjectHandler(h.ProjectHandler):
    """``GET /projects/{name}`` as before; ``PATCH`` sets policies."""

    def patch(self, name: str) -> None:
        self.send(self.dobby.update_project(name, _object(self)).to_dict())
