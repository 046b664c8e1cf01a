"""``Idempotency-Key`` on creating requests: a retried request gets the first answer again.

The answer is recorded in the same group commit as the change it answers, so a 2xx means both
are on disk; a retry after a timeout, a dropped connection or a 503 finds the record (waiting
until it is durable) instead of creating a second task. Records are kept for a day.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from dobby.core.errors import Conflict, ValidationError
from dobby.hub.base import BaseHandler, JsonText
from dobby.store.db import Store

Answer = tuple[int, Any]
Make = Callable[[], Answer | Awaitable[Answer]]
# Keys whose first request is still being answered (a batch is queued over several turns of
# the event loop): a retry arriving meanwhile waits for that answer instead of running twice.
_answering: weakref.WeakKeyDictionary[Store, dict[str, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)

HEADER = "Idempotency-Key"
MAX_KEY = 255


def _key(handler: BaseHandler) -> str | None:
    key = handler.request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY or not all(33 <= ord(c) < 127 for c in key):
        raise ValidationError(
            f"header {HEADER} must be 1 to {MAX_KEY} printable ASCII characters without spaces"
        )
    return key


async def _made(make: Make) -> Answer:
    made = make()
    return await made if inspect.isawaitable(made) else made


async def answer_once(handler: BaseHandler, make: Make) -> None:
    """Answer with ``make()`` once durable; with an Idempotency-Key, only the first time."""
    store = handler.dobby.store
    key = _key(handler)
    if key is None:
        status, answer = await _made(make)
        await store.durable()
        handler.send(answer, status)
        return
    scoped = f"{handler.request.method} {handler.request.path} {key}"
    fingerprint = hashlib.sha256(handler.request.body or b"").hexdigest()
    answering = _answering.setdefault(store, {})
    while (first := answering.get(scoped)) is not None:
        await asyncio.shield(first)  # a cancelled retry leaves the first request alone
    seen = store.idempotent(scoped)
    if seen is not None:
        first_fingerprint, status, answer = seen
        if first_fingerprint != fingerprint:
            raise Conflict(f"{HEADER} {key!r} was already used for a different request body")
        await store.durable()  # the first answer may still be on its way to the disk
        handler.set_header("Idempotent-Replayed", "true")
        handler.send(JsonText(answer), status)
        return
    done = answering[scoped] = asyncio.get_running_loop().create_future()
    try:
        status, answer = await _made(make)
        # Encoded once: the record and the answer are the same text (ASCII, as stored).
        if not isinstance(answer, JsonText):
            answer = JsonText(json.dumps(answer, separators=(",", ":")))
        store.remember(scoped, fingerprint=fingerprint, status=status, body=answer)
    finally:
        del answering[scoped]
        done.set_result(None)
    await store.durable()
    handler.send(answer, status)
