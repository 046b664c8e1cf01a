"""How launches through the host stream start their tmux sessions: each with a tmux client of
its own, never through a control client (``tmux -C``).

A control client that is still connecting kills every tmux server before 3.7 when a session
starts or ends meanwhile (tmux sends it a notification before it has a control state: a NULL
dereference, fixed by tmux commit e5a2a25). A stream that kept one took down all the
sessions of a host: its first tasks ended "gone without an exit code" about once in ten runs.

Every test runs a real stream (a local bash) and real tmux, behind a ``tmux`` on PATH that
notes each time it runs and then is the real one.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dobby.core.models import Host
from dobby.hostside import scripts
from dobby.runner.streams import HostStreams
from dobby.transport import LocalTransport
from tests.fixtures.wait import wait_until
from tests.runner.test_streams import collect

REAL_TMUX = subprocess.run(
    ["bash", "-c", "command -v tmux"], capture_output=True, text=True, check=True
).stdout.strip()


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put a noting ``tmux`` first on PATH; return the file where it notes its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tmux-calls"
    log.touch()
    shim = bin_dir / "tmux"
    shim.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "$*" >>{shlex.quote(str(log))}\n'
        f'exec {shlex.quote(REAL_TMUX)} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(REAL_TMUX).parent}:/usr/bin:/bin")
    yield log


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[tuple[LocalTransport, HostStreams]]:
    transport = LocalTransport(
        host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
    )
    await transport.connect()
    streams = HostStreams()
    yield transport, streams
    await streams.close()
    await transport.close()


async def start_task(transport: LocalTransport, streams: HostStreams) -> Path:
    """Launch a task through the stream as the runner does; return the file its run writes."""
    task_id = uuid.uuid4().hex[:16]  # one tmux server for the whole test run: unique names
    paths = scripts.TaskPaths(workdir=transport.workdir, task_id=task_id)
    ran = Path(paths.task_dir) / "ran"
    run_sh = f"echo ran >{shlex.quote(str(ran))}\n"
    command = scripts.render_launch(
        paths=paths,
        project=None,
        base=None,
        claim=scripts.claim_name(task_id),
        files=[("run.sh", len(run_sh.encode()), 0o600)],
        texts={"run.sh": run_sh},
    )
    res = await streams.launch(transport, command)
    assert res is not None and res.ok, res
    return ran


async def run_tasks(transport: LocalTransport, streams: HostStreams, count: int) -> None:
    """Launch ``count`` tasks one after another; wait until each one's session ran it."""
    ran = [await start_task(transport, streams) for _ in range(count)]
    for path in ran:
        wait_until(path.exists, what=f"{path} written by the task's session")


def tmux_calls(log: Path) -> list[str]:
    """Return what the noting tmux was asked, one word for each call: its command."""
    return [line.split()[0] if line.split() else "" for line in log.read_text().splitlines()]


def tmux_servers(sockets: Path) -> list[str]:
    """Return the sockets in ``sockets`` (a TMUX_TMPDIR) that a live tmux server answers on."""
    live = []
    for socket in sorted(sockets.glob("tmux-*/*")):
        done = subprocess.run([REAL_TMUX, "-S", str(socket), "ls"], capture_output=True)
        if done.returncode == 0:
            live.append(socket.name)
    return live


async def test_every_session_starts_with_a_tmux_client_of_its_own_never_a_control_client(
    host: tuple[LocalTransport, HostStreams], calls: Path
) -> None:
    transport, streams = host
    await run_tasks(transport, streams, 6)
    assert tmux_calls(calls) == ["new-session"] * 6


async def test_launches_that_start_a_host_s_tmux_server_together_all_start_their_sessions(
    tmp_path: Path, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first launches on a host race to start its tmux server (two run at once per host,
    more through several streams): tmux's own lock lets one start it and the others join, and
    every session starts, on the one server, which stays up once they end."""
    sockets = Path(tempfile.mkdtemp(prefix="tmx", dir="/tmp"))  # short: sockets have 108 bytes
    monkeypatch.setenv("TMUX_TMPDIR", str(sockets))
    transport = LocalTransport(
        host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
    )
    await transport.connect()
    streams = [HostStreams(), HostStreams()]  # two hubs' streams, say, or a retried one
    try:
        ran = await asyncio.gather(*(start_task(transport, s) for s in streams for _ in range(3)))
        for path in ran:
            wait_until(path.exists, what=f"{path} written by the task's session")
        assert tmux_calls(calls) == ["new-session"] * 6
        assert tmux_servers(sockets) == ["default"]
    finally:
        for stream in streams:
            await stream.close()
        await transport.close()
        subprocess.run([REAL_TMUX, "kill-server"], capture_output=True, check=False)
        shutil.rmtree(sockets, ignore_errors=True)


async def test_followed_tasks_are_read_while_a_launch_is_under_way(
    tmp_path: Path, calls: Path
) -> None:
    """A launch that takes long (a git worktree, a slow disk) holds no task's end back: the
    stream reads the files it follows at their own pace meanwhile."""
    transport = LocalTransport(
        host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
    )
    await transport.connect()
    streams = HostStreams()
    gate = tmp_path / "gate"
    try:
        pending = asyncio.ensure_future(
            streams.launch(
                transport, f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done"
            )
        )
        task_dir = Path(transport.workdir) / "tasks" / "followed"
        task_dir.mkdir(parents=True)
        feed = await streams.join(transport, "followed", str(task_dir), 0)
        assert feed is not None
        await asyncio.sleep(0.3)  # the launch is under way
        (task_dir / "out.jsonl").write_text("line\n")
        (task_dir / "exit").write_text("0\n")
        data, end = await collect(feed)
        assert (data, end.exit) == (b"line\n", "0")
        assert not pending.done()
        gate.touch()
        res = await pending
        assert res is not None and res.ok, res
    finally:
        await streams.close()
        await transport.close()
