"""An httpx2 transport on the standard library's ``http.client``: one connection per request.

httpx2's default transport (httpcore2) imports anyio — and trio when it is installed — and
builds a TLS context when a client is made: 80–300 ms before the first byte, which alone would
break the CLI's start budget (``bench/cli_start.py``). A hub client sends a few small requests
to one origin, so this transport keeps none of that: a fresh ``HTTPConnection`` per request,
closed with its response; TLS set up only for an ``https://`` hub. Everything above it — URLs,
headers, JSON, streaming, server-sent events, errors — is httpx2's.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from typing import Any

import httpx2

CHUNK = 1 << 16


class StdlibTransport(httpx2.BaseTransport):
    """Send each request on its own ``http.client`` connection (no pool, no proxy)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context

    def _connection(self, url: httpx2.URL, timeout: float | None) -> http.client.HTTPConnection:
        host, port = url.host, url.port
        if url.scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            return http.client.HTTPSConnection(
                host, port or 443, timeout=timeout, context=self._ssl_context
            )
        if url.scheme != "http":
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        return http.client.HTTPConnection(host, port or 80, timeout=timeout)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request``; return a response whose body streams from the open connection."""
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        conn = self._connection(request.url, timeouts.get("connect"))
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx2.ConnectTimeout(str(exc), request=request) from exc
        except OSError as exc:
            conn.close()
            raise httpx2.ConnectError(str(exc), request=request) from exc
        try:
            if conn.sock is not None:
                conn.sock.settimeout(timeouts.get("read"))
            conn.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
            conn.endheaders(request.read() or None)
            resp = conn.getresponse()
        except TimeoutError as exc:
            conn.close()
            raise httpx2.ReadTimeout(str(exc), request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx2.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx2.Response(
            status_code=resp.status,
            headers=resp.getheaders(),
            stream=_Body(conn, resp, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason.encode()},
        )


class _Body(httpx2.SyncByteStream):
    """A response body read from its connection as it arrives; closing it closes both."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        request: httpx2.Request,
    ) -> None:
        self._conn = conn
        self._resp = resp
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                # read1: what has arrived, at once — an event stream must not wait for a
                # full buffer.
                chunk = self._resp.read1(CHUNK)
            except TimeoutError as exc:
                raise httpx2.ReadTimeout(str(exc), request=self._request) from exc
            except (OSError, http.client.HTTPException) as exc:
                # IncompleteRead and friends: the connection ended mid-body.
                raise httpx2.RemoteProtocolError(
                    f"{type(exc).__name__}: {exc}", request=self._request
                ) from exc
            if not chunk:
                # read1 ends quietly at EOF even when the body is shorter than announced.
                if self._resp.length:
                    raise httpx2.RemoteProtocolError(
                        f"the connection closed {self._resp.length} bytes before the body's end",
                        request=self._request,
                    )
                return
            yield chunk

    def close(self) -> None:
        self._resp.close()
        self._conn.close()
