"""The webhook: POST each finished task, each draft awaiting approval and each usage-limit
notice (an account hit its limit / its tasks go on) to ``webhook_url``.

Request: ``POST webhook_url`` with a JSON body
``{"event": "task.finished" | "task.awaiting_approval", "seq", "ts", "task": {...},
"result": {...}}``, or for ``account.limited`` / ``account.resumed``
``{"event", "seq", "ts", "account": {account, hosts, limited_until, limit, windows, …}}``
(``account.resumed`` adds the ids of the tasks that go on, ``tasks``), and the headers
``X-Dobby-Event``, ``X-Dobby-Delivery`` (the event's seq: the same on every retry, so a
receiver can drop duplicates) and, when ``webhook_secret`` is set,
``X-Dobby-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed by the secret>``.
A receiver verifies it with ``hmac.compare_digest(header, "sha256=" + hexdigest)``.

Delivery never blocks the hub: events go to a bounded queue drained by one worker, in order.
A failed attempt (connection error, timeout, non-2xx answer) is retried after 1, 2, 4, 8 and
16 s; then the event is dropped and the failure logged. The URL is never logged (it may hold
a token).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections import deque
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from dobby.core.config import Settings
from dobby.core.events import Event, EventBus
from dobby.core.retry import Backoff
from dobby.core.timefmt import seconds_between

log = logging.getLogger("dobby.hub.webhook")

EVENTS = ("task.finished", "task.awaiting_approval", "account.limited", "account.resumed")
ACCOUNT_EVENTS = ("account.limited", "account.resumed")
# Six tries: the first at once, then after about 1, 2, 4, 8 and 16 s.
RETRY = Backoff(first=1.0, factor=2.0, cap=16.0, jitter=0.1, tries=6)
RESULT_KEYS = (
    "status",
    "reason",
    "summary",
    "error",
    "exit_code",
    "cost_usd",
    "tokens",
    "branch",
    "host",
    "started_at",
    "finished_at",
)


def sign(secret: str, body: bytes) -> str:
    """Return the ``X-Dobby-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(event: Event) -> bytes:
    """Return the JSON body posted for ``event``."""
    if event.type in ACCOUNT_EVENTS:
        notice = {"event": event.type, "seq": event.seq, "ts": event.ts, "account": event.data}
        return json.dumps(notice, default=str, ensure_ascii=False).encode()
    task = dict(event.data)
    result: dict[str, Any] = {k: task.get(k) for k in RESULT_KEYS}
    result["duration_s"] = seconds_between(task.get("started_at"), task.get("finished_at"))
    body = {
        "event": event.type,
        "seq": event.seq,
        "ts": event.ts,
        "task": task,
        "result": result,
    }
    return json.dumps(body, default=str, ensure_ascii=False).encode("utf-8", "backslashreplace")


class Webhook:
    """Deliver selected bus events to one URL, signed, retried, in order."""

    def __init__(
        self,
        *,
        url: str | None,
        secret: str | None = None,
        retry: Backoff = RETRY,
        timeout: float = 10.0,
        capacity: int = 1000,
    ) -> None:
        self.url = url
        self.secret = secret
        self.retry = retry
        self.timeout = timeout
        self._queue: deque[tuple[Event, bytes]] = deque(maxlen=capacity)
        self._ready = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._bus: EventBus | None = None
        self.delivered = 0
        self.failed = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Webhook:
        """Return the hub's webhook (inactive when ``webhook_url`` is unset)."""
        return cls(url=settings.webhook_url, secret=settings.webhook_secret)

    def start(self, bus: EventBus) -> None:
        """Listen to ``bus`` and start delivering (nothing happens without a URL)."""
        if not self.url:
            return
        self._bus = bus
        bus.subscribe(self.enqueue)
        self._worker = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop listening and delivering; undelivered events are logged, not kept."""
        if self._bus is not None:
            self._bus.unsubscribe(self.enqueue)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._queue:
            log.warning("webhook: %d event(s) not delivered before shutdown", len(self._queue))

    def enqueue(self, event: Event) -> None:
        """Queue ``event`` for delivery if it is one the webhook sends (a bus listener)."""
        if event.type not in EVENTS:
            return
        if len(self._queue) == self._queue.maxlen:
            dropped, _ = self._queue[0]
            log.warning("webhook queue full: dropping %s #%d", dropped.type, dropped.seq)
        self._queue.append((event, payload(event)))
        self._ready.set()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            event, body = self._queue.popleft()
            try:
                ok = await self.deliver(event, body)
            except Exception:  # noqa: BLE001 - the worker must outlive any one delivery
                log.exception("webhook delivery of %s #%d crashed", event.type, event.seq)
                ok = False
            if ok:
                self.delivered += 1
            else:
                self.failed += 1

    def headers(self, event: Event, body: bytes) -> dict[str, str]:
        """Return the request headers of one delivery."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dobby-webhook",
            "X-Dobby-Event": event.type,
            "X-Dobby-Delivery": str(event.seq),
        }
        if self.secret:
            headers["X-Dobby-Signature"] = sign(self.secret, body)
        return headers

    async def deliver(self, event: Event, body: bytes) -> bool:
        """POST one event, retrying with backoff; return whether it was accepted."""
        assert self.url is not None
        request = HTTPRequest(
            self.url,
            method="POST",
            body=body,
            headers=self.headers(event, body),
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        client = AsyncHTTPClient()
        problem = ""
        for attempt, delay in enumerate((0.0, *self.retry.delays())):
            if delay:
                await asyncio.sleep(delay)
            try:
                response = await client.fetch(request, raise_error=False)
            except (TimeoutError, OSError, HTTPClientError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.code < 300:
                    return True
                problem = f"HTTP {response.code}"
            log.warning(
                "webhook delivery of %s #%d failed (attempt %d): %s",
                event.type,
                event.seq,
                attempt + 1,
                problem,
            )
        log.error("webhook gave up on %s #%d: %s", event.type, event.seq, problem)
        return False
