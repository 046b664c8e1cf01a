"""One HTTP/1.1 exchange on a plain socket: a fresh connection per request, closed after it.

The hub client sends a few small requests to one origin, so it needs no pool, proxy or HTTP/2;
what it needs is to start fast (``bench/cli_start.py``). httpx2 costs 50–90 ms to import (its
default transport imports anyio and builds a TLS context before the first byte), and even
``http.client`` pulls in the ``email`` package and ``ssl`` (≈ 15 ms): more than a third of what
``dobby status`` may spend on top of Python's own start. This module speaks the little HTTP the
hub needs — a request with ``Connection: close``, then an answer framed by Content-Length,
chunked transfer coding, or the connection's end — and imports ``ssl`` only for an ``https://``
hub. Event streams put httpx2's server-sent-events reader on top of a :class:`Reply`
(:mod:`dobby.client.sse`).

Failures below HTTP are three exceptions the client maps to its own errors: :class:`ConnectFailed`
(nobody answered: refused, unresolvable, TLS refused), :class:`TimedOut` (connecting or reading
took longer than the timeout), :class:`Broken` (the connection failed after it opened: reset,
cut mid-answer, not HTTP).
"""

from __future__ import annotations

import io
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

CHUNK = 1 << 16
MAX_LINE = 1 << 16  # a status or header line longer than this is not a hub's answer
MAX_HEADERS = 200


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

    def __init__(self, *, sock: socket.socket, stream: io.BufferedReader, method: str) -> None:
        self._sock = sock
        self._stream = stream
        self.status, self.reason = _status_line(_line(stream))
        while 100 <= self.status < 200:  # an interim answer (100 Continue…): the real one follows
            _headers(stream)
            self.status, self.reason = _status_line(_line(stream))
        self.headers: list[tuple[str, str]] = _headers(stream)
        fields = {name.lower(): value for name, value in self.headers}
        self._chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes of the body still to come; None: until the end
        if method == "HEAD" or self.status in (204, 304):
            self._left = 0
        elif not self._chunked and "content-length" in fields:
            try:
                self._left = int(fields["content-length"])
            except ValueError:
                raise Broken(f"bad Content-Length {fields['content-length']!r}") from None

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """Yield the body as it arrives (an event stream must not wait for a full buffer)."""
        try:
            if self._chunked:
                yield from self._chunked_body()
                return
            while self._left is None or self._left > 0:
                data = self._stream.read1(CHUNK if self._left is None else min(CHUNK, self._left))
                if not data:
                    if self._left:
                        raise Broken(f"the connection closed {self._left} bytes before the end")
                    return
                if self._left is not None:
                    self._left -= len(data)
                yield data
        except TimeoutError as exc:
            raise TimedOut(str(exc)) from exc
        except OSError as exc:
            raise Broken(f"{type(exc).__name__}: {exc}") from exc

    def _chunked_body(self) -> Iterator[bytes]:
        """Yield the chunks of a chunked body, each as soon as it is whole."""
        while True:
            size_text = _line(self._stream).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Broken(f"bad chunk size {size_text[:40]!r}") from None
            if size == 0:
                while _line(self._stream):  # trailer fields, up to the blank line
                    pass
                return
            data = self._stream.read(size)
            if len(data) < size or _line(self._stream):
                raise Broken("the connection closed in the middle of a chunk")
            yield data

    def close(self) -> None:
        """Close the answer and its connection."""
        self._stream.close()
        self._sock.close()


def _line(stream: io.BufferedReader) -> bytes:
    """Return one CRLF-ended line without its end; Broken when the connection ended first."""
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise Broken("an answer line is too long")
    if not line.endswith(b"\n"):
        raise Broken("the connection closed in the middle of the answer")
    return line.rstrip(b"\r\n")


def _status_line(line: bytes) -> tuple[int, str]:
    """Return (status, reason) of ``HTTP/1.1 200 OK``."""
    version, _, rest = line.decode("latin-1").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
        raise Broken(f"not an HTTP answer: {line[:60]!r}")
    return int(code), reason.strip()


def _headers(stream: io.BufferedReader) -> list[tuple[str, str]]:
    """Return the header fields up to the blank line."""
    fields: list[tuple[str, str]] = []
    while line := _line(stream):
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or len(fields) >= MAX_HEADERS:
            raise Broken(f"bad header line {line[:60]!r}")
        fields.append((name.strip(), value.strip()))
    return fields


_TLS: list[Any] = []  # the ssl.SSLContext, made once, on the first https:// request


def _connect(scheme: str, host: str, port: int, timeout: float | None) -> socket.socket:
    """Open the connection (TLS for https); ConnectFailed or TimedOut when it can't."""
    try:
        # An ASCII name as bytes: the resolver then skips the idna codec (and its import).
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((name, port), timeout=timeout)  # type: ignore[arg-type]
    except TimeoutError as exc:
        raise TimedOut(str(exc)) from exc
    except OSError as exc:
        raise ConnectFailed(str(exc)) from exc
    if scheme != "https":
        return sock
    import ssl  # only an https:// hub pays for it

    if not _TLS:
        _TLS.append(ssl.create_default_context())
    try:
        return _TLS[0].wrap_socket(sock, server_hostname=host)  # type: ignore[no-any-return]
    except TimeoutError as exc:
        sock.close()
        raise TimedOut(str(exc)) from exc
    except OSError as exc:  # ssl.SSLError and ssl.CertificateError are OSErrors
        sock.close()
        raise ConnectFailed(str(exc)) from exc


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
    if parts.scheme not in ("http", "https"):
        raise ConnectFailed(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConnectFailed(f"bad URL {url!r}: {exc}") from None
    host = parts.hostname or ""
    target = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + parts.query
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{parts.port}"
    head = [f"{method} {target} HTTP/1.1", f"Host: {authority}", "Connection: close"]
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0"):
            # An API key pasted with its newline must not become a second header.
            raise ValueError(f"invalid character in the {name} header")
        head.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    sock = _connect(parts.scheme, host, port, timeout)
    stream = sock.makefile("rb")
    try:
        sock.sendall(request)
        return Reply(sock=sock, stream=stream, method=method)
    except TimeoutError as exc:
        stream.close()
        sock.close()
        raise TimedOut(str(exc)) from exc
    except (OSError, WireError) as exc:
        stream.close()
        sock.close()
        if isinstance(exc, WireError):
            raise
        raise Broken(f"{type(exc).__name__}: {exc}") from exc
