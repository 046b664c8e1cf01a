"""One HTTP/1.1 exchange on a plain socket: a fresh connection, or an idle one kept open.

The hub client sends small requests to one origin, so it needs no proxy or HTTP/2; what it
needs is to start fast (``bench/cli_start.py``). httpx2 costs 50–90 ms to import (its default
transport imports anyio and builds a TLS context before the first byte), and even
``http.client`` pulls in the ``email`` package and ``ssl`` (≈ 15 ms): more than a third of what
``dobby status`` may spend on top of Python's own start. This module speaks the little HTTP the
hub needs — a request, then an answer framed by Content-Length, chunked transfer coding, or the
connection's end — and imports ``ssl`` only for an ``https://`` hub. Event streams put httpx2's
server-sent-events reader on top of a :class:`Reply` (:mod:`dobby.client.sse`). A :class:`Pool`
keeps the connections of answers read to their end for the next requests (see its docstring).

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


class Pool:
    """Idle connections to one hub, each kept open after an answer read to its end.

    On a kept connection the hub spent 0.33–0.48 ms of CPU on a small request where a fresh
    one cost it 0.45–0.66 ms (accepting, socket options, a new HTTP connection object), and
    this client 0.15–0.22 ms instead of 0.24–0.37 (GET /health, 3 x 3,000 each way, from one
    thread and from four): a thousand submits or an MCP session's calls pay the setup once.
    The hub may close an idle connection whenever it likes; a connection it closed is seen
    before it is used (readable while idle) or as the answer's very first byte (the end), and
    the request then goes on a fresh one (:func:`exchange`). That sends it twice if the hub
    read it and died before answering: only requests safe to repeat take an idle connection.

    ``list.pop`` and ``append`` are atomic: threads sharing a client need no lock.
    """

    KEEP = 4  # idle connections kept at most (one per thread of a client, the usual case)

    def __init__(self) -> None:
        self._idle: list[tuple[socket.socket, io.BufferedReader]] = []

    def take(self) -> tuple[socket.socket, io.BufferedReader] | None:
        """Return an idle connection the hub has not closed, or None."""
        while True:
            try:
                sock, stream = self._idle.pop()
            except IndexError:
                return None
            import select  # here: a one-shot command (most of the CLI) never pays for it

            try:
                # Readable while idle: the hub closed it (or sent what nobody asked for).
                # poll, not select: a process holding over 1,024 descriptors may ask too.
                watch = select.poll()
                watch.register(sock, select.POLLIN)
                if not watch.poll(0):
                    return sock, stream
            except (OSError, ValueError):
                pass
            _close(sock, stream)

    def give(self, sock: socket.socket, stream: io.BufferedReader) -> None:
        """Keep a connection whose answer was read to its end, or close it if enough are kept."""
        if len(self._idle) < self.KEEP:
            self._idle.append((sock, stream))
        else:
            _close(sock, stream)

    def close(self) -> None:
        """Close every idle connection."""
        while True:
            try:
                _close(*self._idle.pop())
            except IndexError:
                return


def _close(sock: socket.socket, stream: io.BufferedReader) -> None:
    stream.close()
    sock.close()


class Reply:
    """An answer whose body is read from its open connection.

    Closing it closes the connection too, unless a ``pool`` was given and may keep it: the body
    was read to its end and the hub said nothing against keeping the connection.
    """

    def __init__(
        self,
        *,
        sock: socket.socket,
        stream: io.BufferedReader,
        method: str,
        pool: Pool | None = None,
    ) -> None:
        self._sock = sock
        self._stream = stream
        self._closed = False
        version, self.status, self.reason = _status_line(_line(stream))
        while 100 <= self.status < 200:  # an interim answer (100 Continue…): the real one follows
            _headers(stream)
            version, self.status, self.reason = _status_line(_line(stream))
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
        # A body that ends with the connection cannot leave it for another request.
        keeps = version == "HTTP/1.1" and "close" not in fields.get("connection", "").lower()
        self._pool = pool if keeps and (self._chunked or self._left is not None) else None
        self._read_all = False  # the body was read to its end

    def read(self) -> bytes:
        """Return the whole body."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """Yield the body as it arrives (an event stream must not wait for a full buffer)."""
        try:
            if self._chunked:
                yield from self._chunked_body()
                self._read_all = True
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
            self._read_all = True
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
        """Close the answer, and its connection unless its pool keeps it; once is enough."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None and self._read_all:
            self._pool.give(self._sock, self._stream)
        else:
            _close(self._sock, self._stream)


def _line(stream: io.BufferedReader) -> bytes:
    """Return one CRLF-ended line without its end; Broken when the connection ended first."""
    line = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise Broken("an answer line is too long")
    if not line.endswith(b"\n"):
        raise Broken("the connection closed in the middle of the answer")
    return line.rstrip(b"\r\n")


def _status_line(line: bytes) -> tuple[str, int, str]:
    """Return (version, status, reason) of ``HTTP/1.1 200 OK``."""
    version, _, rest = line.decode("latin-1").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
        raise Broken(f"not an HTTP answer: {line[:60]!r}")
    return version, int(code), reason.strip()


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
    pool: Pool | None = None,
    reuse: bool = False,
) -> Reply:
    """Send one request; return the answer with its body unread.

    With a ``pool`` the connection may be kept for the next request once the answer was read
    (:meth:`Reply.close`); ``reuse``: the request is safe to repeat, and may go on an idle
    connection of the pool (sent again on a new one if the hub had closed that).
    """
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
    head = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    if pool is None:
        head.append("Connection: close")
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0"):
            # An API key pasted with its newline must not become a second header.
            raise ValueError(f"invalid character in the {name} header")
        head.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    idle = pool.take() if pool is not None and reuse else None
    if pool is not None and idle is not None:
        reply = _on_idle(*idle, request, method=method, timeout=timeout, pool=pool)
        if reply is not None:
            return reply
    sock = _connect(parts.scheme, host, port, timeout)
    return _answer(sock, sock.makefile("rb"), method=method, pool=pool, send=request)


def _on_idle(
    sock: socket.socket,
    stream: io.BufferedReader,
    request: bytes,
    *,
    method: str,
    timeout: float | None,
    pool: Pool,
) -> Reply | None:
    """Send ``request`` on a kept connection and return its answer; None if the hub had closed
    the connection (nothing came back: the caller sends it on a new one)."""
    try:
        sock.settimeout(timeout)
        sock.sendall(request)
        began = stream.peek(1)  # waits for the answer's first byte, or the connection's end
    except TimeoutError as exc:
        _close(sock, stream)
        raise TimedOut(str(exc)) from exc
    except OSError:  # reset, broken pipe: closed under us
        began = b""
    if not began:
        _close(sock, stream)
        return None
    return _answer(sock, stream, method=method, pool=pool)


def _answer(
    sock: socket.socket,
    stream: io.BufferedReader,
    *,
    method: str,
    pool: Pool | None,
    send: bytes = b"",
) -> Reply:
    """Send ``send`` and return the answer that comes back; the connection closes on a failure."""
    try:
        if send:
            sock.sendall(send)
        return Reply(sock=sock, stream=stream, method=method, pool=pool)
    except TimeoutError as exc:
        _close(sock, stream)
        raise TimedOut(str(exc)) from exc
    except (OSError, WireError) as exc:
        _close(sock, stream)
        if isinstance(exc, WireError):
            raise
        raise Broken(f"{type(exc).__name__}: {exc}") from exc
