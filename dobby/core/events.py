"""The one flat event vocabulary of Dobby and the in-memory bus that carries it.

Events are published once, after the store write, and read three ways: by cursor
(``since(seq)``, for SSE/websocket clients resuming with ``Last-Event-ID``), by long-poll
(``await wait(seq, timeout)``), and by sync listeners (webhook, Slack) called on each publish.
The bus keeps the last ``capacity`` events; a client whose cursor fell behind
``oldest_seq`` has missed events and should reload state (see ``EventBus.missed``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.timefmt import utcnow

log = logging.getLogger(__name__)


class EventType(StrEnum):
    TASK_CREATED = "task.created"
    TASK_UPDATED = "task.updated"
    TASK_STARTED = "task.started"
    TASK_LOG = "task.log"  # new log bytes / parsed agent events of a task
    TASK_FINISHED = "task.finished"
    # Scheduler (dobby/scheduler/): queue transitions, drafts, staleness, schedules, batches.
    TASK_QUEUED = "task.queued"  # a waiting task's dependencies completed: it joins the queue
    TASK_RETRIED = "task.retried"
    TASK_APPROVED = "task.approved"
    TASK_AWAITING_APPROVAL = "task.awaiting_approval"  # a draft (and its plan) is ready
    TASK_STALE = "task.stale"  # no output for stale_timeout (stale_action: mark)
    SCHEDULE_CREATED = "schedule.created"
    SCHEDULE_UPDATED = "schedule.updated"  # paused, resumed, fired, skipped
    SCHEDULE_DELETED = "schedule.deleted"
    BATCH_CREATED = "batch.created"
    PROJECT_UPDATED = "project.updated"
    HOST_UPDATED = "host.updated"
    GPUS_UPDATED = "gpus.updated"  # a GPU host's GPUs changed: count, no-GPU reason, users
    INVENTORY_RELOADED = "inventory.reloaded"
    INVENTORY_ERROR = "inventory.error"
    PROJECT_CREATED = "project.created"
    # Races (dobby/races/): K attempts at one task, judged by its check.
    RACE_CREATED = "race.created"
    RACE_UPDATED = "race.updated"  # an attempt's state changed (a lane diff computed, …)
    RACE_FINISHED = "race.finished"  # a winner was picked, no attempt passed, or cancelled
    # Usage limits (dobby/scheduler/usage.py): an account's quota ran out / its tasks go on.
    ACCOUNT_LIMITED = "account.limited"
    ACCOUNT_RESUMED = "account.resumed"
    HUB_STARTED = "hub.started"


def type_filter(raw: str | None) -> Callable[[str], bool] | None:
    """Return whether an event type is one ``raw`` asks for; None: every type.

    ``raw`` (``?types=`` of GET /events): comma-separated event types, or families such as
    ``race.*``. A follower that needs a few kinds is not sent the rest: every output chunk of
    every task is a ``task.log`` event, 500 a second with 100 chatty tasks. An unknown name
    is a ValidationError naming it (a typo would otherwise be a stream that stays silent).
    """
    if raw is None or not raw.strip():
        return None
    known = {t.value for t in EventType}
    families = {t.split(".", 1)[0] for t in known}
    exact: set[str] = set()
    prefixes: list[str] = []
    for name in (part.strip() for part in raw.split(",")):
        if name in known:
            exact.add(name)
        elif name.endswith(".*") and name[:-2] in families:
            prefixes.append(name[:-1])
        else:
            examples = ", ".join(sorted(f"{family}.*" for family in families))
            raise ValidationError(
                f"query parameter 'types': unknown event type {name[:80]!r} "
                f"(a type such as task.finished, or a family: {examples})"
            )
    starts = tuple(prefixes)
    return lambda kind: kind in exact or kind.startswith(starts)


class Event:
    """One thing that happened, numbered by the bus.

    Once published, an event is kept as its JSON text alone (``seal``): the bus buffers the
    last 10,000, and as dicts and lists the garbage collector walked every one of them in
    each full collection (a task's document is some 15 lists). After a few thousand tasks
    that was 150,000 objects and 44-47 ms pauses of the whole hub; 14,000 and 3.5-6 ms with
    the texts alone.
    """

    __slots__ = ("seq", "type", "ts", "task_id", "_data", "_data_json", "_json", "_sse")

    def __init__(
        self,
        *,
        seq: int,
        type: str,
        ts: str | None = None,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
        data_json: str | None = None,
    ) -> None:
        self.seq = seq
        self.type = type
        self.ts = ts if ts is not None else utcnow()
        self.task_id = task_id
        self._data: dict[str, Any] | None = data if data is not None else {}
        self._data_json = data_json  # ``data`` as JSON text already (a stored task's document)
        self._json: str | None = None
        self._sse: str | None = None

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, type={self.type!r}, task_id={self.task_id!r})"

    @property
    def data(self) -> dict[str, Any]:
        """Return what the event carries (read back from its text once it is sealed)."""
        if self._data is None:
            data: dict[str, Any] = json.loads(self.json)["data"]
            return data
        return self._data

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready data."""
        return {
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "task_id": self.task_id,
            "data": self.data,
        }

    @property
    def json(self) -> str:
        """Return the event as one line of JSON, encoded once for every stream that sends it.

        Each SSE and WebSocket client sends every event: encoded per client, a task's document
        was encoded again for each open dashboard and watcher (the event never changes).
        """
        if self._json is None and self._data_json is not None:
            head = json.dumps(self.to_dict() | {"data": None}, default=str)
            self._json = f"{head[: -len('null}')]}{self._data_json}}}"
        elif self._json is None:
            # json.dumps escapes newlines inside strings and never adds its own without
            # indent; default=str keeps one odd value (a Path, a datetime) from breaking
            # every stream.
            self._json = json.dumps(self.to_dict(), default=str)
        return self._json

    @property
    def sse(self) -> str:
        """Return the event as one Server-Sent Events frame (one ``data:`` line), made once."""
        if self._sse is None:
            self._sse = f"id: {self.seq}\nevent: {self.type}\ndata: {self.json}\n\n"
        return self._sse

    def to_sse(self) -> str:
        """Return one Server-Sent Events frame; the JSON is one line, so one ``data:`` line."""
        return self.sse

    def seal(self) -> None:
        """Keep the event as its JSON text alone (see the class); ``data`` reads it back."""
        self.json  # noqa: B018 - encoded now, while the data is still here
        self._data = self._data_json = None


Listener = Callable[[Event], Any]


class EventBus:
    """Number events, keep the latest in a ring buffer, wake waiters and call listeners."""

    def __init__(self, *, capacity: int = 10000, start_seq: int = 0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._buffer: deque[Event] = deque(maxlen=capacity)
        self._seq = start_seq
        self._waiters: set[asyncio.Future[None]] = set()
        self._task_waiters: dict[str, set[asyncio.Future[None]]] = {}  # by task id
        self._listeners: list[Listener] = []
        self._pending: set[asyncio.Task[Any]] = set()  # async listener calls in flight

    @property
    def last_seq(self) -> int:
        """Return the seq of the newest event (``start_seq`` before any publish)."""
        return self._seq

    @property
    def oldest_seq(self) -> int:
        """Return the seq of the oldest buffered event (``last_seq + 1`` when empty)."""
        return self._buffer[0].seq if self._buffer else self._seq + 1

    def missed(self, seq: int) -> bool:
        """Return True if events after ``seq`` fell out of the buffer (or predate this run)."""
        return seq < self.oldest_seq - 1

    def publish(
        self,
        type: str,
        *,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
        data_json: str | None = None,
    ) -> Event:
        """Record an event, wake waiters and call listeners; call from the loop's thread.

        ``data_json``: ``data`` encoded already (a task's document as the store wrote it),
        put in the event's JSON as it is instead of encoding the document a second time.
        """
        kind = EventType(type).value  # a typo is a bug: fail here, not in every client
        self._seq += 1
        event = Event(
            seq=self._seq, type=kind, task_id=task_id, data=dict(data or {}), data_json=data_json
        )
        self._buffer.append(event)
        waiters, self._waiters = self._waiters, set()
        if task_id is not None and task_id in self._task_waiters:
            waiters |= self._task_waiters.pop(task_id)
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for listener in list(self._listeners):  # a copy: listeners may unsubscribe themselves
            self._call(listener, event)
        event.seal()  # what a listener reads later (an async one) is read back from the text
        return event

    def _call(self, listener: Listener, event: Event) -> None:
        try:
            result = listener(event)
            if result is not None and inspect.isawaitable(result):  # most listeners are sync
                # Async listeners (an HTTP webhook) run as tasks; publish stays O(1) and sync.
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    if inspect.iscoroutine(result):
                        result.close()  # never awaited: close it rather than warn later
                    raise
                task = asyncio.ensure_future(result, loop=loop)
                self._pending.add(task)
                task.add_done_callback(self._async_done)
        except Exception:
            log.exception("event listener %r failed on %s #%d", listener, event.type, event.seq)

    def _async_done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async event listener failed", exc_info=task.exception())

    def since(self, seq: int, *, task_id: str | None = None) -> list[Event]:
        """Return buffered events newer than ``seq``, oldest first, optionally for one task."""
        newer: list[Event] = []
        # Walk from the newest end: a client that is nearly caught up costs O(new events).
        for event in reversed(self._buffer):
            if event.seq <= seq:
                break
            if task_id is None or event.task_id == task_id:
                newer.append(event)
        newer.reverse()
        return newer

    async def wait(self, seq: int, timeout: float, *, task_id: str | None = None) -> bool:
        """Wait until an event newer than ``seq`` exists; return False on timeout.

        With ``task_id``: an event of that task, or events missed (fallen out of the buffer).
        A stream of one task is not woken by every other task's line: 5 of them woke 2,500
        times a second for 100 chatty tasks, and each publish queued them all ahead of the
        next line's follower.
        """
        if self._newer(seq, task_id):
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = (
            self._waiters if task_id is None else self._task_waiters.setdefault(task_id, set())
        )
        waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return self._newer(seq, task_id)
        finally:
            waiters.discard(fut)  # also on cancel: no waiter outlives its caller
            if task_id is not None and not waiters and self._task_waiters.get(task_id) is waiters:
                del self._task_waiters[task_id]
        return True

    def _newer(self, seq: int, task_id: str | None) -> bool:
        if task_id is None or self._seq <= seq:
            return self._seq > seq
        return self.missed(seq) or bool(self.since(seq, task_id=task_id))

    @property
    def waiters(self) -> int:
        """Return how many ``wait`` calls are pending (tests check nothing leaks)."""
        return len(self._waiters) + sum(len(w) for w in self._task_waiters.values())

    def subscribe(self, callback: Listener) -> None:
        """Call ``callback(event)`` after each publish; an awaitable result runs as a task."""
        if callback not in self._listeners:
            self._listeners.append(callback)

    def unsubscribe(self, callback: Listener) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        if callback in self._listeners:
            self._listeners.remove(callback)
