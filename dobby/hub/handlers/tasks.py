"""The REST and SSE handlers; each is a thin adapter over :class:`dobby.hub.core.Hub`."""

from __future__ import annotations

from typing import Any

from dobby.core.errors import ValidationError
from dobby.hub.base import BaseHandler, SSEHandler, int_arg, sse
from dobby.hub.core import Hub
from dobby.store import tasklog

PING_EVERY = 15.0


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send(self.dobby.health())


class TasksHandler(BaseHandler):
    def get(self) -> None:
        tasks = self.dobby.tasks(
            project=self.get_query_argument("project", None) or None,
            status=self.get_query_argument("status", None) or None,
            limit=int_arg(self, "limit"),
        )
        self.send({"tasks": [t.to_dict() for t in tasks]})

    async def post(self) -> None:
        task = self.dobby.submit(self.body_json())
        await self.send_durable(task.to_dict(), 201)


class TaskHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        self.send(self.dobby.get_task(task_id).to_dict())

    async def patch(self, task_id: str) -> None:
        body = self.body_json()
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        await self.send_durable(self.dobby.patch(task_id, body).to_dict())


class TaskCancelHandler(BaseHandler):
    async def post(self, task_id: str) -> None:
        task = await self.dobby.cancel(task_id)
        await self.send_durable(task.to_dict())


class TaskRetryHandler(BaseHandler):
    async def post(self, task_id: str) -> None:
        await self.send_durable(self.dobby.retry(task_id).to_dict(), 201)


def log_chunk(dobby: Hub, task_id: str, offset: int) -> dict[str, Any]:
    """Return the log bytes from ``offset`` as text plus rendered events."""
    task = dobby.get_task(task_id)
    data, next_offset = dobby.logs.read(task.id, offset)
    text = data.decode("utf-8", "replace")
    events = tasklog.events(task.backend, data)
    return {
        "task_id": task.id,
        "offset": offset,
        "next_offset": next_offset,
        "text": text,
        "events": events,
        "status": task.status,
        "done": task.state.finished and next_offset >= dobby.logs.size(task.id),
    }


class TaskLogsHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        self.send(log_chunk(self.dobby, task_id, int_arg(self, "offset", 0) or 0))


class TaskEventsHandler(SSEHandler):
    """Stream one task: its log from an offset, status changes, and a final ``end``."""

    async def get(self, task_id: str) -> None:
        task = self.dobby.get_task(task_id)
        offset = int_arg(self, "offset", 0) or 0
        self.start_stream()
        bus = self.dobby.bus
        if not await self.emit(sse("status", task.to_dict())):
            return
        status = task.status
        while not self.closed:
            seq = bus.last_seq
            chunk = log_chunk(self.dobby, task.id, offset)
            if chunk["next_offset"] > offset:
                offset = chunk["next_offset"]
                chunk.pop("status")
                chunk.pop("done")
                if not await self.emit(sse("log", chunk)):
                    return
                continue
            current = self.dobby.get_task(task.id)
            if current.status != status:
                status = current.status
                if not await self.emit(sse("status", current.to_dict())):
                    return
            if current.state.finished:
                await self.emit(sse("end", current.to_dict()))
                self.finish()
                return
            if not await bus.wait(seq, PING_EVERY) and not await self.emit(": ping\n\n"):
                return


class EventsHandler(SSEHandler):
    """Stream every bus event; resume with Last-Event-ID or ?since=."""

    async def get(self) -> None:
        header = self.request.headers.get("Last-Event-ID")
        since = int_arg(self, "since", None)
        if since is None and header and header.isdigit():
            since = int(header)
        bus = self.dobby.bus
        cursor = bus.last_seq if since is None else since
        self.start_stream()
        if not await self.emit(": connected\n\n"):
            return
        while not self.closed:
            events = bus.since(cursor)
            for event in events:
                if not await self.emit(event.to_sse()):
                    return
                cursor = event.seq
            if not events and not await bus.wait(cursor, PING_EVERY):
                if not await self.emit(": ping\n\n"):
                    return


class ProjectsHandler(BaseHandler):
    def get(self) -> None:
        self.send({"projects": [p.to_dict() for p in self.dobby.store.projects()]})

    async def post(self) -> None:
        await self.send_durable(self.dobby.register_project(self.body_json()).to_dict(), 201)


class ProjectHandler(BaseHandler):
    def get(self, name: str) -> None:
        self.send(self.dobby.store.get_project(name).to_dict())


class HostsHandler(BaseHandler):
    def get(self) -> None:
        self.send(self.dobby.hosts_view())


class SpokesRegisterHandler(BaseHandler):
    async def post(self) -> None:
        body = self.body_json()
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        await self.send_durable(self.dobby.register_spoke(body), 201)


class SpokesHandler(BaseHandler):
    def get(self) -> None:
        self.send({"spokes": self.dobby.spokes()})
