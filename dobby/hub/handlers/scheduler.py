"""Scheduler routes: drafts, retry --cascade, schedules, batches, policies, usage limits.

Operations that create or re-queue work answer only once it is on disk (``store.durable``,
a group commit shared by concurrent requests): a 201 survives a hub crash.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.shapes import RetryBody, parse
from dobby.hub import dashboard_data
from dobby.hub.base import BaseHandler, JsonText
from dobby.hub.core import Hub
from dobby.hub.handlers import tasks as h
from dobby.hub.idempotency import answer_once
from dobby.store import aggregates


def _object(handler: BaseHandler) -> dict[str, Any]:
    body = handler.body_json()
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


class TasksHandler(h.TasksHandler):
    """``GET /tasks`` as before; ``POST /tasks`` answers once durable (``Idempotency-Key``)."""

    async def post(self) -> None:  # type: ignore[override]
        await answer_once(self, self._submit)

    def _submit(self) -> tuple[int, JsonText]:
        task = self.dobby.submit(self.body_json())
        return 201, JsonText(self.dobby.store.task_json(task.id))  # encoded once, as stored


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
        await answer_once(self, self._submit)

    async def _submit(self) -> tuple[int, JsonText]:
        return 201, JsonText(await self.dobby.batches.submit(self.body_json()))  # encoded once


class BatchHandler(BaseHandler):
    def get(self, batch_id: str) -> None:
        self.send(JsonText(self.dobby.batches.view(batch_id)))


class ProjectHandler(h.ProjectHandler):
    """``GET /projects/{name}`` as before; ``PATCH`` sets policies."""

    def patch(self, name: str) -> None:
        self.send(self.dobby.update_project(name, _object(self)).to_dict())


# The configured guesses (usage_limits) by the window names the agents report.
_GUESSED_WINDOWS = {"5h": "five_hour", "7d": "seven_day"}


def usage_view(dobby: Hub) -> dict[str, Any]:
    """Return ``GET /usage``: accounts' windows and limits, budgets, waiting tasks.

    A window an agent never reported, for a backend with ``usage_limits`` configured, shows
    the configured guess (``source: configured``) instead; real figures always replace it.
    """
    view = dobby.usage.view()
    limits = dobby.settings.usage_limits or {}
    if not limits:
        return view
    now = _dt.datetime.now(_dt.UTC)
    conn, end = dobby.store.sql(), now.timestamp()
    per_window = {}
    for name, hours in dashboard_data.USAGE_WINDOWS:  # sums in SQL: no task is read
        start = (now - _dt.timedelta(hours=hours)).timestamp()
        per_window[name] = {
            b: dashboard_data.usage_row(b, n, cost or 0.0, tokens)
            for b, n, cost, *tokens in aggregates.usage_window(conn, start=start, end=end)
        }
    backends = sorted({b for rows in per_window.values() for b in rows} | set(limits))
    sums = dashboard_data.usage_sums(
        per_window, [], backends=backends, now=now, days=1, limits=limits
    )
    guesses: dict[tuple[str, str], float] = {}
    for window in sums["windows"]:
        for row in window["backends"]:
            fractions = [v for k, v in (row.get("limit") or {}).items() if k.endswith("_used")]
            if fractions:
                name = _GUESSED_WINDOWS.get(window["name"], window["name"])
                guesses[(row["backend"], name)] = max(fractions)
    for account in view["accounts"]:
        seen = {w.get("window") for w in account["windows"]}
        for (backend, name), fraction in sorted(guesses.items()):
            if backend == account["backend"] and name not in seen:
                account["windows"].append(
                    {
                        "window": name,
                        "utilization": fraction,
                        "status": None,
                        "source": "configured",
                    }
                )
    return view


class UsageHandler(BaseHandler):
    def get(self) -> None:
        self.send(usage_view(self.dobby))
