"""Server-sent events read from a :class:`~dobby.client.wire.Reply` by httpx2's SSE reader.

Only event streams (``dobby logs -f``, the Slack notifier, MCP's waits) import httpx2; a quick
command's request never does (see :mod:`dobby.client.wire`).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

from dobby.client.wire import Broken, Reply


class _Body(httpx2.SyncByteStream):
    """The reply's body as httpx2 reads a stream."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def __iter__(self) -> Iterator[bytes]:
        return self._reply.chunks()

    def close(self) -> None:
        self._reply.close()


def events(reply: Reply, url: str) -> Iterator[tuple[str, str, str]]:
    """Yield ``(event, data, id)`` of each event; raise a WireError when the stream fails."""
    response = httpx2.Response(
        status_code=reply.status,
        headers=reply.headers,
        stream=_Body(reply),
        request=httpx2.Request("GET", url),
    )
    try:
        for sse in httpx2.EventSource(response, max_event_size=None):
            yield sse.event, sse.data, sse.id
    except httpx2.HTTPError as exc:  # not an event stream, or httpx2's own decoding failed
        raise Broken(f"{type(exc).__name__}: {exc}") from exc
