"""Slack event dedupe: one event (by ``event_id``) is handled once, however often it arrives.

Slack re-sends an event it thinks was not acknowledged in time, and anyone who captured a
signed request can replay it while its timestamp is fresh (Bolt accepts five minutes). Either
way the same ``event_id`` comes again; the second copy is acknowledged and dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt import BoltResponse

# Slack retries within minutes and a replay must fit Bolt's 5-minute window: a few thousand
# ids cover that at any realistic event rate, in well under a megabyte.
DEFAULT_CAPACITY = 4096


class SeenEvents:
    """Remember the last ``capacity`` event ids (oldest forgotten first); thread-safe."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, event_id: str) -> bool:
        """Record ``event_id``; tell whether it was new."""
        with self._lock:
            if event_id in self._ids:
                self._ids.move_to_end(event_id)
                return False
            self._ids[event_id] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


def event_id_of(body: Mapping[str, Any]) -> str | None:
    """Return the ``event_id`` of an Events API envelope, or None for other requests."""
    found = body.get("event_id")
    return found if isinstance(found, str) and found else None


def dedupe_middleware(seen: SeenEvents) -> Callable[..., BoltResponse | None]:
    """Return a Bolt global middleware that acknowledges a repeated event without handling it."""

    def dedupe(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002 - Bolt injects by name
        event_id = event_id_of(body)
        if event_id is not None and not seen.first_time(event_id):
            return BoltResponse(status=200, body="")  # acknowledged: Slack stops retrying
        next()
        return None

    return dedupe
