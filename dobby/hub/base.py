"""BaseHandler: browser-safety and API-key checks in prepare(), JSON bodies and errors, SSE."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from typing import Any

import tornado.web
from tornado.iostream import IOStream, StreamClosedError

from dobby.core.errors import AuthError, DobbyError, ValidationError
from dobby.core.fields import check_text
from dobby.hub.core import Hub
from dobby.hub.guard import Guard, check_json_body, redact_uri

log = logging.getLogger("dobby.hub")

ID = r"([A-Za-z0-9_-]+)"  # a task, batch, schedule or project id in a route
SSE_FLUSH_BYTES = 256 * 1024  # written to a stream before it is flushed (see emit_all)
MAX_QUERY_INT = 2**53 - 1  # offsets, limits, cursors: what any client (JavaScript too) can say


class JsonText(str):
    """An answer already encoded as JSON (a stored task document): sent as it is."""


class BaseHandler(tornado.web.RequestHandler):
    """Common behaviour of every API route."""

    public = False  # True: no API key needed (only /health)

    def initialize(self, dobby: Hub) -> None:
        self.dobby = dobby

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        request = self.request
        guard_of(self).check(
            method=request.method or "GET", headers=request.headers, host=request.host
        )
        if not self.public:
            check_key(self, self.dobby.settings.api_key)
        if request.body:
            check_json_body(request.headers.get("Content-Type"))

    def body_json(self) -> Any:
        """Return the request body parsed as JSON (``{}`` when empty); its text must be valid."""
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}") from exc
        except RecursionError:
            raise ValidationError("request body is not valid JSON: nested too deeply") from None
        check_text(body)
        return body

    def send(self, data: Any, status: int = 200) -> None:
        """Write a JSON answer."""
        self.set_status(status)
        if isinstance(data, JsonText):
            self.finish(data.encode("utf-8", "backslashreplace"))
        else:
            self.finish(json_bytes(data))

    async def send_durable(self, data: Any, status: int = 200) -> None:
        """Answer only once the change is on disk: a 2xx survives a hub killed right after."""
        await self.dobby.store.durable()
        self.send(data, status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DobbyError):
            code, message = exc.code, exc.message
        elif isinstance(exc, tornado.web.HTTPError):
            code = "not_found" if status_code == 404 else "http_error"
            # log_message is a %-format string; its args are only applied when tornado logs it.
            raw = exc.log_message or self._reason
            message = raw % exc.args if exc.log_message and exc.args else raw
        else:
            code, message = "internal_error", "internal error (see the hub log)"
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json_bytes({"error": {"code": code, "message": message}}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, DobbyError):
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)  # type: ignore[arg-type]

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        if isinstance(value, DobbyError):
            return
        super().log_exception(typ, value, tb)


def guard_of(handler: tornado.web.RequestHandler) -> Guard:
    """Return the app's Guard (see dobby.hub.guard), built once per application."""
    found = handler.application.settings.get("guard")
    if not isinstance(found, Guard):
        raise RuntimeError("the hub's app was built without a guard (use make_app)")
    return found


def check_key(handler: tornado.web.RequestHandler, key: str | None) -> None:
    """Raise AuthError unless the request carries ``key`` (when the hub has one)."""
    if not key:
        return
    given = handler.request.headers.get("X-Dobby-Key", "")
    auth = handler.request.headers.get("Authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if hmac.compare_digest(given.encode(), key.encode()):
        return
    if not given and handler.get_query_argument("key", None) is not None:
        raise AuthError("send the API key in the X-Dobby-Key header; ?key= is not accepted")
    raise AuthError("missing or wrong API key (send it as X-Dobby-Key)")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Write one access-log line, like Tornado's, with key-like query values masked."""
    status = handler.get_status()
    access = logging.getLogger("tornado.access")
    level = access.info if status < 400 else access.warning if status < 500 else access.error
    request = handler.request
    level(
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        redact_uri(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def int_arg(
    handler: tornado.web.RequestHandler, name: str, default: int | None = None
) -> int | None:
    """Return a non-negative integer query parameter (``default`` when absent or empty)."""
    raw = handler.get_query_argument(name, None)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"query parameter '{name}' must be an integer") from None
    if not 0 <= value <= MAX_QUERY_INT:
        raise ValidationError(f"query parameter '{name}' must be >= 0 and <= {MAX_QUERY_INT}")
    return value


class SSEHandler(BaseHandler):
    """A handler that streams Server-Sent Events."""

    closed = False

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        # No Nagle: a frame written while the one before waits for its ACK would wait too, as
        # long as the client delays that ACK (up to 40 ms on Linux).
        stream = getattr(self.request.connection, "stream", None)  # HTTP/1: the socket's
        if isinstance(stream, IOStream):
            stream.set_nodelay(True)

    async def emit(self, frame: str) -> bool:
        """Send one SSE frame; return False if the client is gone."""
        return await self.emit_all((frame,))

    async def emit_all(self, frames: Iterable[str]) -> bool:
        """Send SSE frames, flushed together; return False if the client is gone.

        One send for the lot, not one each: the 1,000 events of a batch went out in 1,000
        system calls that held the loop for 30 ms, before it could start the batch's tasks.
        """
        if self.closed:
            return False
        try:
            pending = 0
            for frame in frames:
                data = frame.encode("utf-8", "backslashreplace")
                self.write(data)
                pending += len(data)
                if pending >= SSE_FLUSH_BYTES:  # a client far behind is not sent all in one
                    await self.flush()
                    pending = 0
            await self.flush()
            return True
        except StreamClosedError:
            self.closed = True
            return False

    def on_connection_close(self) -> None:
        self.closed = True


def json_bytes(data: Any) -> bytes:
    """Return ``data`` as JSON text in ASCII (valid UTF-8): every other character is escaped,
    a lone surrogate in an old record too."""
    # ASCII, not UTF-8: the encoder's escapes cost less than the UTF-8 pass after it (GET
    # /hosts at 100 hosts, 101 KiB: 1.7 against 2.5 ms), and the store's pages are ASCII too.
    return json.dumps(data).encode("ascii")


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """Return one SSE frame (data is JSON on one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class NotFoundHandler(BaseHandler):
    """JSON 404 for unknown routes."""

    public = True

    def prepare(self) -> None:
        request = self.request
        guard_of(self).check(
            method=request.method or "GET", headers=request.headers, host=request.host
        )
        raise tornado.web.HTTPError(404, "no such route: %s", self.request.path)
