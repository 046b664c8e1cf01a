"""A listener out of the system's file table or of the kernel's socket memory (ENFILE, ENOBUFS,
ENOMEM from accept) waits as one out of its own descriptors does (dobby.core.descriptors):
one line naming what it lacks, no accept loop, every waiting client answered once accept
works again.

EMFILE is made for real in test_descriptors.py (the hub's limit lowered). These three cannot
be here: root is never refused by the file table, and the kernel short of memory would take
the machine down with it. So accept(2) of a real listening socket, served by a real Tornado
server and connected to by real clients, fails with them the given number of times.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Any

import pytest
import tornado.httpserver
import tornado.web

from dobby.core import descriptors

CLIENTS = 3
FAULTS = 3


class _Failing(socket.socket):
    """A socket whose next accepts fail with the errnos in ``faults``, counting every call."""

    faults: list[int]
    calls: int

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.faults:
            code = self.faults.pop(0)
            raise OSError(code, os.strerror(code))
        return super().accept()


class FailingListener(descriptors.Listener, _Failing):
    """The hub's Listener over a socket that fails as told (Listener.accept calls it)."""


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


async def ask(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("code", "lacks"),
    [(errno.ENFILE, "file descriptors"), (errno.ENOBUFS, "memory"), (errno.ENOMEM, "memory")],
    ids=["ENFILE", "ENOBUFS", "ENOMEM"],
)
async def test_a_listener_short_of_the_system_waits_says_so_once_and_answers_all(
    code: int, lacks: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dobby.hub")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    listener = FailingListener.wrap(sock)
    assert isinstance(listener, FailingListener)
    listener.faults, listener.calls = [code] * FAULTS, 0
    server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", Hello)]))
    server.add_sockets([listener])
    try:
        port = listener.getsockname()[1]
        answers = await asyncio.wait_for(
            asyncio.gather(*(ask(port) for _ in range(CLIENTS))), timeout=30
        )
    finally:
        server.stop()
        await server.close_all_connections()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhello"), answer
    said = [r.getMessage() for r in caplog.records if r.name == "dobby.hub"]
    assert said == [
        f"the hub is out of {lacks} ({os.strerror(code)}): new connections wait "
        f"{descriptors.ACCEPT_PAUSE:g}s at a time until there is room again",
        "the hub accepts connections again",
    ]
    assert not listener.faults
    # Each failure took the socket off the loop for a pause: a few accepts in all, where a
    # listener that let the error through (or only retried) is called again at once, for
    # as long as the shortage lasts.
    assert listener.calls <= FAULTS + 2 * CLIENTS + 2, listener.calls
