"""GET /ws: the hub's event stream (the one of GET /events) over a WebSocket."""

from __future__ import annotations

import asyncio
import json

import tornado.websocket

from dobby.core.errors import DobbyError
from dobby.hub.base import check_key, guard_of, int_arg
from dobby.hub.core import Hub

PING_EVERY = 15.0


class EventsSocket(tornado.websocket.WebSocketHandler):
    """Send every bus event as one JSON text message; ``?since=SEQ`` replays what followed SEQ.

    The checks of every route apply before the handshake: a foreign Host or Origin is a 403
    (browsers do not apply CORS to WebSockets, so this is what keeps other sites out) and the
    API key, when the hub has one, must come as X-Dobby-Key or ``Authorization: Bearer``.
    """

    def initialize(self, dobby: Hub) -> None:
        self.dobby = dobby
        self._cursor = 0
        self._pump: asyncio.Task[None] | None = None

    def prepare(self) -> None:
        request = self.request
        try:
            # The Origin is checked by check_origin() during the handshake; Host and key here.
            guard_of(self).check_host(request.host)
            check_key(self, self.dobby.settings.api_key)
            since = int_arg(self, "since", None)
        except DobbyError as exc:
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
            return
        bus = self.dobby.bus
        self._cursor = bus.last_seq if since is None else since

    def check_origin(self, origin: str) -> bool:
        return guard_of(self).origin_allowed(origin, host=self.request.host)

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)  # each event at once, as on the SSE streams (see SSEHandler)
        self._pump = asyncio.ensure_future(self._send_events())

    async def _send_events(self) -> None:
        bus = self.dobby.bus
        try:
            while True:
                events = bus.since(self._cursor)
                for event in events:
                    await self.write_message(event.json)
                    self._cursor = event.seq
                if not events and not await bus.wait(self._cursor, PING_EVERY):
                    self.ping()
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        pass  # the stream is one-way; anything the client sends is ignored

    def on_close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
