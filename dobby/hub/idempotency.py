"""``Idempotency-Key`` on creating requests: a retried request gets the first answer again.

The answer is recorded in the same group commit as the change it answers, so a 2xx means both
are on disk; a retry after a timeout, a dropped connection or a 503 finds the record (waiting
until it is durable) instead of creating a second task. Records are kept for a day.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from dobby.core.errors import Conflict, ValidationError
from dobby.hub.base import BaseHandler, JsonText

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


async def answer_once(handler: BaseHandler, make: Callable[[], tuple[int, Any]]) -> None:
    """Answer with ``make()`` once durable; with an Idempotency-Key, only the first time."""
    store = handler.dobby.store
    key = _key(handler)
    if key is None:
        status, answer = make()
        await store.durable()
        handler.send(answer, status)
        return
    scoped = f"{handler.request.method} {handler.request.path} {key}"
    fingerprint = hashlib.sha256(handler.request.body or b"").hexdigest()
    seen = store.idempotent(scoped)
    if seen is not None:
        first_fingerprint, status, answer = seen
        if first_fingerprint != fingerprint:
            raise Conflict(f"{HEADER} {key!r} was already used for a different request body")
        await store.durable()  # the first answer may still be on its way to the disk
        handler.set_header("Idempotent-Replayed", "true")
        handler.send(JsonText(answer), status)
        return
    status, answer = make()
    # Encoded once: the record and the answer are the same text (ASCII, as stored).
    if not isinstance(answer, JsonText):
        answer = JsonText(json.dumps(answer, separators=(",", ":")))
    store.remember(scoped, fingerprint=fingerprint, status=status, body=answer)
    await store.durable()
    handler.send(answer, status)
