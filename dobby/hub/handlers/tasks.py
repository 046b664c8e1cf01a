"""The REST and SSE handlers; each is a thin adapter over :class:`dobby.hub.core.Hub`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.events import type_filter
from dobby.core.models import BackendName
from dobby.hub.base import BaseHandler, SSEHandler, int_arg, sse
from dobby.hub.core import Hub
from dobby.store import tasklog
from dobby.store.query import NEWEST, TaskFilter, order, statuses

PING_EVERY = 15.0


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send(self.dobby.health())


def task_filter(handler: BaseHandler, *, status: str | None = None) -> TaskFilter:
    """Return the filter of a listing's query (?status=a,b&project=&host=&backend=&q=)."""
    arg = handler.get_query_argument
    project = arg("project", None) or None
    if project is not None:
        handler.dobby.store.get_project(project)  # an unknown project is a 404, not []
    backend = arg("backend", None) or None
    if backend is not None and backend not in tuple(BackendName):
        # Like an unknown status: a typo is an error, not an empty listing.
        known = ", ".join(b.value for b in BackendName)
        raise ValidationError(f"unknown backend {backend!r} (known: {known})")
    return TaskFilter(
        status=statuses(arg("status", None) or status),
        project=project,
        host=arg("host", None) or None,
        backend=backend,
        batch_id=arg("batch", None) or None,
        q=arg("q", None) or None,
    )


async def stream_list(
    handler: BaseHandler, key: str, chunks: Iterator[list[str]], extra: dict[str, Any]
) -> None:
    """Answer ``{key: [...], **extra}`` with the items (JSON texts) written as they come."""
    handler.write(f'{{"{key}": [')
    first = True
    for chunk in chunks:
        if chunk:
            text = ("" if first else ",") + ",".join(chunk)
            # A lone surrogate of an old record is written as its escape, never a 500.
            handler.write(text.encode("utf-8", "backslashreplace"))
            first = False
            await handler.flush()
    tail = json.dumps(extra, ensure_ascii=False)[1:-1]
    handler.finish(f"]{', ' if tail else ''}{tail}}}")


class TasksHandler(BaseHandler):
    async def get(self) -> None:
        """List tasks newest first (or ?sort=): a page (?limit=&offset= or &before=ID), or all."""
        flt = task_filter(self)
        limit = int_arg(self, "limit")
        offset = int_arg(self, "offset", 0) or 0
        before = self.get_query_argument("before", None) or None
        sort = order(self.get_query_argument("sort", None))
        store = self.dobby.store
        total = store.count(flt)
        if limit is None and not offset and before is None and sort == NEWEST:
            # Every match: streamed from a snapshot, so memory stays flat at any history size.
            extra = {"total": total, "limit": None, "offset": 0, "next_before": None}
            await stream_list(self, "tasks", store.iter_task_json(flt), extra)
            return
        docs = store.page_json(
            flt, limit=limit, offset=offset, before=before, total=total, sort=sort
        )
        more = limit is not None and len(docs) == limit and offset + limit < total
        extra = {
            "total": total,
            "limit": limit,
            "offset": offset,
            # a cursor is stable under new tasks only in the newest-first order
            "next_before": json.loads(docs[-1])["id"] if more and docs and sort == NEWEST else None,
        }
        await stream_list(self, "tasks", iter([docs]), extra)

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
            if not await self._changed(task.id, seq) and not await self.emit(": ping\n\n"):
                return

    async def _changed(self, task_id: str, seq: int) -> bool:
        """Wait for an event of this task after ``seq``; False after PING_EVERY without one.

        Other tasks' events do not wake it: with many tasks printing, a stream does not
        re-read its log and its task for every line of others.
        """
        return await self.dobby.bus.wait(seq, PING_EVERY, task_id=task_id)


class EventsHandler(SSEHandler):
    """Stream the bus events (of ``?types=`` only, see type_filter); resume with
    Last-Event-ID or ?since=."""

    async def get(self) -> None:
        header = self.request.headers.get("Last-Event-ID")
        since = int_arg(self, "since", None)
        if since is None and header and header.isascii() and header.isdigit():
            since = int(header)
        wanted = type_filter(self.get_query_argument("types", None))
        bus = self.dobby.bus
        cursor = bus.last_seq if since is None else since
        self.start_stream()
        if not await self.emit(": connected\n\n"):
            return
        while not self.closed:
            events = bus.since(cursor)
            if events:
                chosen = events if wanted is None else [e for e in events if wanted(e.type)]
                if chosen and not await self.emit_all(event.to_sse() for event in chosen):
                    return
                cursor = events[-1].seq
            elif not await bus.wait(cursor, PING_EVERY):
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
