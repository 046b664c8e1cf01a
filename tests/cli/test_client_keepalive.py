"""HubClient keeps a connection open for the next request (dobby.client.wire.Pool), against a
real HTTP/1.1 server on a socket whose every connection the test controls."""

from __future__ import annotations

import gc
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dobby.client import wire
from dobby.client.http import HubClient
from dobby.core.errors import HubError
from dobby.core.retry import Backoff
from tests.fixtures.hub import HubProcess
from tests.fixtures.keepalive import TASK, KeepAliveServer, self_signed, tls_server_context
from tests.fixtures.wait import wait_until

NO_RETRY = Backoff(tries=1)  # a second send can only come from the connection's own re-send


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    srv = KeepAliveServer()
    yield srv
    srv.stop()


def test_requests_share_one_kept_connection(server: KeepAliveServer) -> None:
    with HubClient(url=server.url) as client:
        for _ in range(3):
            assert client.task("abcd1234") == TASK
        client.add_task(prompt="hi")  # a creation carries its Idempotency-Key: safe to repeat
    assert [s.conn for s in server.seen] == [1, 1, 1, 1]
    assert all("Connection" not in s.headers for s in server.seen)
    wait_until(lambda: server.ended == [1], what="the closed client's connection to end")


def test_a_connection_the_hub_closed_while_idle_is_left(server: KeepAliveServer) -> None:
    server.plan = lambda conn, n: "close"  # answers as if it kept it, then closes
    with HubClient(url=server.url, retry=NO_RETRY) as client:
        assert client.task("abcd1234") == TASK
        assert server.closed.wait(5)
        assert client.task("abcd1234") == TASK
    assert [s.conn for s in server.seen] == [1, 2]  # never sent on the closed one


def test_a_request_the_hub_drops_on_a_kept_connection_goes_on_a_new_one(
    server: KeepAliveServer,
) -> None:
    # The hub closes the connection as the request arrives (its idle timeout, a restart):
    # nothing came back, so the request goes again, once, on a fresh connection.
    server.plan = lambda conn, n: "drop" if (conn, n) == (1, 2) else "keep"
    with HubClient(url=server.url, retry=NO_RETRY) as client:
        assert client.task("abcd1234") == TASK
        assert client.task("abcd1234") == TASK
    assert [(s.conn, s.path) for s in server.seen] == [
        (1, "/tasks/abcd1234"),
        (1, "/tasks/abcd1234"),
        (2, "/tasks/abcd1234"),
    ]


def test_a_request_that_may_not_be_repeated_never_takes_a_kept_connection(
    server: KeepAliveServer,
) -> None:
    with HubClient(url=server.url, retry=NO_RETRY) as client:
        assert client.task("abcd1234") == TASK
        client.cancel("abcd1234")  # a POST without an Idempotency-Key: sent once, ever
        assert client.task("abcd1234") == TASK
    assert [(s.conn, s.method) for s in server.seen] == [(1, "GET"), (2, "POST"), (2, "GET")]
    assert server.seen[1].headers.get("Connection") is None  # its connection is kept after


def test_an_answer_that_ends_the_connection_is_not_kept(server: KeepAliveServer) -> None:
    server.plan = lambda conn, n: "say-close"
    with HubClient(url=server.url, retry=NO_RETRY) as client:
        assert client.task("abcd1234") == TASK
        assert client.task("abcd1234") == TASK
    assert [s.conn for s in server.seen] == [1, 2]


def test_a_kept_connection_that_does_not_answer_times_out(server: KeepAliveServer) -> None:
    server.plan = lambda conn, n: "hang" if n == 2 else "keep"
    with HubClient(url=server.url, retry=NO_RETRY, timeout=0.3) as client:
        assert client.task("abcd1234") == TASK
        with pytest.raises(HubError) as err:
            client.task("abcd1234")
    assert err.value.code == "hub_timeout"
    assert [s.conn for s in server.seen] == [1, 1]  # a slow hub is not a closed connection


def test_a_client_nobody_closed_closes_its_connections_when_it_goes(
    server: KeepAliveServer,
) -> None:
    # A socket left to the garbage collector warns (an error here: filterwarnings).
    client = HubClient(url=server.url)
    assert client.task("abcd1234") == TASK
    del client
    gc.collect()
    wait_until(lambda: server.ended == [1], what="the dropped client's connection to end")


def test_the_pool_keeps_a_few_connections_and_closes_the_rest() -> None:
    pool = wire.Pool()
    pairs = [socket.socketpair() for _ in range(wire.Pool.KEEP + 2)]
    try:
        for mine, _ in pairs:
            pool.give(mine, mine.makefile("rb"))
        assert [mine.fileno() == -1 for mine, _ in pairs] == [False] * wire.Pool.KEEP + [True] * 2
        pairs[-3][1].close()  # the peer of the last kept one went: it is not handed out
        taken = pool.take()
        assert taken is not None and taken[0] is pairs[-4][0]
        assert pairs[-3][0].fileno() == -1
        pool.close()
        assert all(mine.fileno() == -1 for mine, _ in pairs if mine is not taken[0])
        taken[1].close()
        taken[0].close()
    finally:
        for mine, peer in pairs:
            mine.close()
            peer.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_kept_connection_outlives_a_hub_restart(tmp_path: Path, how: str) -> None:
    hub = HubProcess(home=tmp_path / "home", inventory=None).start()
    client = HubClient(url=hub.url, retry=NO_RETRY)
    try:
        task = client.add_task(prompt="true", backend="shell")
        assert client.task(task["id"])["id"] == task["id"]  # the connection is kept now
        hub.kill(getattr(signal, how))  # an idle kept connection holds up no stop
        hub.start()
        assert hub.proc is not None
        # The kept connection died with the hub: the request goes on a new one, no retry.
        assert client.task(task["id"])["id"] == task["id"]
        assert client.health()["pid"] == hub.proc.pid  # the new hub answered
    finally:
        client.close()
        hub.stop()
    assert "Traceback" not in hub.log(), hub.log_tail()


def test_a_hub_behind_tls_keeps_its_connection_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setattr(wire, "_TLS", [])  # the next request builds the context again...
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ...trusting this certificate
    # The 4th request is answered as if the connection were kept, then it is closed while idle.
    server = KeepAliveServer(
        plan=lambda conn, n: "close" if n == 4 else "keep", tls=tls_server_context(cert, key)
    )
    try:
        with HubClient(url=server.url, retry=NO_RETRY) as client:
            for _ in range(4):
                assert client.task("abcd1234") == TASK
            assert server.closed.wait(5)
            assert client.task("abcd1234") == TASK  # not sent into the closed one
            assert client.task("abcd1234") == TASK
        assert [s.conn for s in server.seen] == [1, 1, 1, 1, 2, 2]  # one handshake each
        wait_until(lambda: server.ended == [2], what="the closed client's connection to end")
    finally:
        server.stop()
