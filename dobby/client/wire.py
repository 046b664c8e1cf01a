"""One HTTP exchange on the standard library's ``http.client``: a fresh connection per request.

The hub client sends a few small requests to one origin, so it needs no pool, proxy or HTTP/2;
what it needs is to start fast. httpx2 alone costs 50–90 ms to import (and its default transport
imports anyio and builds a TLS context before the first byte), more than the CLI's whole start
budget (``bench/cli_start.py``). ``http.client`` is a few milliseconds. Event streams put
httpx2's server-sent-events reader on top of a :class:`Reply` (:mod:`dobby.client.sse`).

Failures below HTTP are three exceptions the client maps to its own errors: :class:`ConnectFailed`
(nobody answered: refused, unresolvable), :class:`TimedOut` (connecting or reading took longer
than the timeout), :class:`Broken` (the connection failed after it opened: reset, cut mid-answer,
not HTTP).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping

CHUNK = 1 << 16


class WireError(Exception):
    """The exchange failed below HTTP: no usable answer came back."""


class ConnectFailed(WireError):
    """The connection could not be opened."""


class TimedOut(WireError):
    """Connecting, sending or reading took longer than the timeout."""


class Broken(WireError):
    """The connection failed after it opened."""


class Reply:
    """An answer whose body is read from its open connection; closing it closes both."""

    def __init__(self, *, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self.status: int = resp.status
        self.reason: str = resp.reason
        self.headers: list[tuple[str, str]] = resp.getheaders()

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """Yield the body as it arrives (an event stream must not wait for a full buffer)."""
        while True:
            try:
                chunk = self._resp.read1(CHUNK)
            except TimeoutError as exc:
                raise TimedOut(str(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                # IncompleteRead and friends: the connection ended mid-body.
                raise Broken(f"{type(exc).__name__}: {exc}") from exc
            if not chunk:
                # read1 ends quietly at EOF even when the body is shorter than announced.
                if self._resp.length:
                    raise Broken(f"the connection closed {self._resp.length} bytes before the end")
                return
            yield chunk

    def close(self) -> None:
        """Close the answer and its connection."""
        self._resp.close()
        self._conn.close()


_TLS: list[ssl.SSLContext] = []  # made once, on the first https:// request


def exchange(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    timeout: float | None = None,
) -> Reply:
    """Send one request on a new connection; return the answer with its body unread."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConnectFailed(f"bad URL {url!r}: {exc}") from None
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        if not _TLS:
            _TLS.append(ssl.create_default_context())
        conn = http.client.HTTPSConnection(host, port or 443, timeout=timeout, context=_TLS[0])
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(host, port or 80, timeout=timeout)
    else:
        raise ConnectFailed(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    target = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + parts.query
    try:
        conn.connect()
    except TimeoutError as exc:
        conn.close()
        raise TimedOut(str(exc)) from exc
    except OSError as exc:
        conn.close()
        raise ConnectFailed(str(exc)) from exc
    try:
        conn.request(method, target, body=body, headers=dict(headers))
        resp = conn.getresponse()
    except TimeoutError as exc:
        conn.close()
        raise TimedOut(str(exc)) from exc
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise Broken(f"{type(exc).__name__}: {exc}") from exc
    return Reply(conn=conn, resp=resp)
