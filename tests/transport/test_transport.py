"""One contract, run against both transports (local and a real sshd), plus SSH failure paths."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dobby.core.errors import HostUnreachable, TransportError
from dobby.core.models import Host
from dobby.transport import LocalTransport, RunResult, SshTransport, Transport
from dobby.transport.base import IDENT_COMMAND
from tests.fixtures.sshd import SshHost


def new_transport(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Transport:
    if kind == "local":
        return LocalTransport(
            host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
        )
    hosts = request.getfixturevalue("ssh_hosts")
    return SshTransport(host=hosts[0].host_model())


@pytest.fixture(params=["local", "ssh"])
async def unconnected(request, tmp_path: Path) -> AsyncIterator[Transport]:
    t = new_transport(request.param, request, tmp_path)
    yield t
    await t.close()


@pytest.fixture
async def transport(unconnected: Transport) -> Transport:
    await unconnected.connect()
    return unconnected


async def test_identity(transport: Transport) -> None:
    assert transport.home and transport.home.startswith("/")
    assert transport.uid is not None
    assert transport.expand("~/x") == transport.home.rstrip("/") + "/x"


async def test_run_exit_status_stdout_stderr(transport: Transport) -> None:
    res = await transport.run("echo out; echo err >&2; exit 3")
    assert (res.exit_status, res.stdout, res.stderr) == (3, "out\n", "err\n")
    res = await transport.run("cat", input="from stdin é\n")
    assert res.stdout == "from stdin é\n"
    res = await transport.run("cat; echo done")  # no input: stdin is /dev/null, never hangs
    assert res.stdout == "done\n"
    res = await transport.run("cat; echo done", input="", timeout=20)  # empty input: EOF too
    assert res.stdout == "done\n"


async def test_put_read_stat(transport: Transport) -> None:
    base = transport.expand("~/.dobby-transport-test")
    await transport.run(f"rm -rf {base}")
    path = f"{base}/a/b/secret"
    await transport.put(path, b"line1\nline2\n", mode=0o600)
    assert await transport.stat(path) == 12
    assert await transport.read_from(path, 0) == b"line1\nline2\n"
    assert await transport.read_from(path, 6) == b"line2\n"
    assert await transport.read_from(path, 6, 3) == b"lin"
    assert await transport.read_from(path, 12) == b""
    res = await transport.run(f"stat -c %a {path}")
    assert res.stdout.strip() == "600"
    await transport.run(f"printf 'line3\\n' >> {path}")  # grows after the handle was opened
    assert await transport.read_from(path, 12) == b"line3\n"
    assert await transport.read_from(f"{base}/missing", 0) is None
    assert await transport.stat(f"{base}/missing") is None
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"dobby-put-{os.getpid()}"
    local.write_bytes(b"\x00binary\xff")
    try:
        await transport.put_file(str(local), f"{base}/bin.dat")
    finally:
        local.unlink()
    assert await transport.read_from(f"{base}/bin.dat", 0) == b"\x00binary\xff"
    await transport.run(f"rm -rf {base}")


async def test_many_concurrent_commands_share_a_bounded_pool(transport: Transport) -> None:
    # sshd's MaxSessions is 10: 40 at once must queue, not fail.
    results = await asyncio.gather(*(transport.run(f"echo {i}") for i in range(40)))
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(40)]


async def test_ssh_reconnects_after_sshd_restart(ssh_hosts: list[SshHost]) -> None:
    h = ssh_hosts[0]
    t = SshTransport(host=h.host_model(), backoff_cap=0.5)
    await t.connect()
    assert (await t.run("echo a")).stdout == "a\n"
    h.stop()
    with pytest.raises(TransportError):
        await t.run("echo b")
    with pytest.raises(HostUnreachable, match="connection refused"):
        await t.connect()
    h.start()
    for _ in range(100):
        try:
            res = await t.run("echo c")
            break
        except HostUnreachable:
            await asyncio.sleep(0.1)
    assert res.stdout == "c\n"
    await t.close()


async def test_unknown_host_key_is_refused(ssh_hosts: list[SshHost], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SshTransport(host=ssh_hosts[0].host_model(known_hosts=str(empty)))
    with pytest.raises(HostUnreachable, match="host key not verified"):
        await t.connect()


async def test_wrong_host_key_is_refused_even_with_tofu(
    ssh_hosts: list[SshHost], tmp_path: Path
) -> None:
    h1, h2 = ssh_hosts[0], ssh_hosts[1]
    wrong = tmp_path / "known_hosts"
    key = h2.known_hosts.read_text().split(None, 1)[1]
    wrong.write_text(f"[{h1.address}]:{h1.port} {key}")
    t = SshTransport(
        host=h1.host_model(known_hosts=str(wrong), trust_on_first_use=True),
        tofu_known_hosts=str(wrong),
    )
    with pytest.raises(HostUnreachable, match="host key not verified"):
        await t.connect()


async def test_trust_on_first_use_pins_the_key(ssh_hosts: list[SshHost], tmp_path: Path) -> None:
    pinned = tmp_path / "pinned_known_hosts"
    h = ssh_hosts[0]
    t = SshTransport(
        host=h.host_model(known_hosts=str(pinned), trust_on_first_use=True),
        tofu_known_hosts=str(pinned),
    )
    await t.connect()
    await t.close()
    expected = h.known_hosts.read_text().split()[:3]
    assert pinned.read_text().split()[:3] == expected


async def test_wrong_client_key_is_a_clear_error(ssh_hosts: list[SshHost]) -> None:
    h1, h2 = ssh_hosts[0], ssh_hosts[1]
    t = SshTransport(host=h1.host_model(identity_file=str(h2.identity_file)))
    with pytest.raises(HostUnreachable, match="permission denied"):
        await t.connect()


async def test_connection_refused_names_the_host(ssh_hosts: list[SshHost]) -> None:
    h = ssh_hosts[0]
    t = SshTransport(host=h.host_model(port=1))
    with pytest.raises(HostUnreachable, match=r"^h1: connection refused"):
        await t.connect()
    # inside the backoff window the error comes at once, with the cause
    with pytest.raises(HostUnreachable, match="retrying in"):
        await t.connect()


async def test_a_caller_arriving_during_the_identity_probe_waits_for_it(
    ssh_hosts: list[SshHost],
) -> None:
    t = SshTransport(host=ssh_hosts[0].host_model())
    first = asyncio.ensure_future(t.connect())
    while t._conn is None:  # the SSH connection is up, the identity probe not yet done
        await asyncio.sleep(0)
    await t.connect()
    assert t.workdir == f"{ssh_hosts[0].home}/.dobby"  # raised "not connected" before
    await first
    await t.close()


def held_identity(t: SshTransport, fail: bool = False) -> asyncio.Event:
    """Hold ``t``'s identity probe until the event returned is set, then run it (or fail it)."""
    release = asyncio.Event()
    real = t._exec

    async def held(command: str, input: str | None, timeout: float | None) -> RunResult:
        if command == IDENT_COMMAND:
            await release.wait()
            if fail:
                raise TransportError("the probe failed", host=t.host.name)
        return await real(command, input, timeout)

    t._exec = held  # type: ignore[method-assign]
    return release


async def test_a_stream_opens_beside_the_identity_probe_not_after_it(
    ssh_hosts: list[SshHost],
) -> None:
    t = SshTransport(host=ssh_hosts[0].host_model())
    release = held_identity(t)
    stream = await asyncio.wait_for(t.open_stream("echo up; cat"), 30)
    assert t.home is None  # the probe is still held: the stream did not wait for it
    assert await stream.readline() == b"up\n"
    release.set()
    await t.connect()
    assert t.workdir == f"{ssh_hosts[0].home}/.dobby"
    await stream.close()
    await t.close()


async def test_a_stream_opened_beside_a_failing_identity_probe_ends_with_the_connection(
    ssh_hosts: list[SshHost],
) -> None:
    t = SshTransport(host=ssh_hosts[0].host_model())
    release = held_identity(t, fail=True)
    stream = await asyncio.wait_for(t.open_stream("echo up; cat"), 30)
    assert await stream.readline() == b"up\n"
    release.set()
    with pytest.raises(HostUnreachable, match="identity probe failed"):
        await t.connect()
    try:  # the connection was dropped: the stream ends, whichever way it says so
        assert await asyncio.wait_for(stream.readline(), 30) == b""
    except TransportError:
        pass
    with pytest.raises(HostUnreachable, match="retrying in"):
        await t.open_stream("true")  # a failed connect's backoff holds for streams too
    await t.close()


async def test_a_stream_opened_after_the_connection_was_lost_waits_for_the_next_one(
    ssh_hosts: list[SshHost],
) -> None:
    t = SshTransport(host=ssh_hosts[0].host_model())
    await t.connect()
    assert t._conn is not None
    t._conn.abort()  # the host dropped it: the transport learns so from the connection
    await asyncio.sleep(0.1)
    assert not t.connected
    stream = await asyncio.wait_for(t.open_stream("echo up; cat"), 30)
    assert await stream.readline() == b"up\n"
    await stream.close()
    await t.close()


async def test_callers_during_a_connect_share_it_and_go_on_together(unconnected: Transport) -> None:
    t = unconnected
    connects = 0
    real_connect = t._connect

    async def counted() -> None:
        nonlocal connects
        connects += 1
        await real_connect()

    t._connect = counted  # type: ignore[method-assign]
    callers = [asyncio.ensure_future(t.connect()) for _ in range(25)]
    await asyncio.wait(callers, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0)
    # Behind a lock the 25th went on 25 turns of the loop after the first.
    assert all(c.done() for c in callers)
    await asyncio.gather(*callers)
    assert connects == 1 and t.connected


async def test_a_close_during_a_connect_is_an_error_for_its_callers(unconnected: Transport) -> None:
    t = unconnected
    callers = [asyncio.ensure_future(t.connect()) for _ in range(3)]
    await asyncio.sleep(0)
    connecting = t._connecting
    await t.close()
    # Ended by the close itself: left to the loop, the local identity probe's bash outlived
    # a test whose loop closed first (a ResourceWarning in whichever test ran next).
    assert connecting is not None and connecting.done()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, HostUnreachable) for r in results), results
    assert "closed while connecting" in str(results[0]) and not t.connected
    await t.connect()  # the transport stays usable
    assert t.connected


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_the_identity_probe_reads_home_and_uid_in_any_login_shell(shell: str) -> None:
    # bash answers the uid from $EUID, dash (a POSIX sh, no $EUID) from `id -u`.
    env = {"HOME": "/home/someone", "PATH": os.environ["PATH"]}
    out = subprocess.run([shell, "-c", IDENT_COMMAND], env=env, capture_output=True, text=True)
    assert Transport._parse_ident(out.stdout) == ("/home/someone", os.geteuid())
