"""The host stream's tmux control client: task sessions start with no tmux process each.

Every test runs a real stream (a local bash) and real tmux, behind a ``tmux`` on PATH that
notes each time it runs and then is the real one (or, where a test says so, fails in control
mode).
"""

from __future__ import annotations

import asyncio
import shlex
import subprocess
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
        f'[ "$1" = -C ] && [ -e {shlex.quote(str(tmp_path / "no-control"))} ] && exit 1\n'
        f'[ "$1" = -C ] && [ -e {shlex.quote(str(tmp_path / "silent-control"))} ] &&'
        " exec cat >/dev/null\n"
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


def control_clients() -> list[int]:
    """Return the pids of live tmux control clients of Dobby's (by their command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-C" in argv and scripts.CONTROL_SESSION.encode() in argv:
            found.append(int(proc.name))
    return found


async def test_sessions_start_through_the_control_client_with_no_tmux_process_each(
    host: tuple[LocalTransport, HostStreams], calls: Path
) -> None:
    transport, streams = host
    await run_tasks(transport, streams, 6)
    wait_until(control_clients, what="the control client")
    # The first launch starts its session itself (the server it needs then exists); the
    # stream's control client starts every later one.
    assert tmux_calls(calls) == ["new-session", "-C"]


async def test_a_control_client_gone_leaves_launches_to_their_own_way_then_comes_back(
    host: tuple[LocalTransport, HostStreams], calls: Path
) -> None:
    transport, streams = host
    await run_tasks(transport, streams, 2)
    assert tmux_calls(calls) == ["new-session", "-C"]
    # A person ends the session it is attached to: the client goes with it.
    subprocess.run([REAL_TMUX, "kill-session", "-t", scripts.CONTROL_SESSION], check=True)
    wait_until(lambda: not control_clients(), what="the control client to end")
    await run_tasks(transport, streams, 3)
    # The launch that found it gone starts its session itself, as does the next one; that
    # one's success brings a new control client, which starts the third.
    assert tmux_calls(calls)[2:] == ["new-session", "new-session", "-C"]


async def test_a_tmux_whose_control_mode_fails_still_starts_every_session(
    host: tuple[LocalTransport, HostStreams], calls: Path, tmp_path: Path
) -> None:
    transport, streams = host
    (tmp_path / "no-control").touch()
    await run_tasks(transport, streams, 6)
    made = tmux_calls(calls)
    assert made.count("new-session") == 6
    assert made.count("-C") == 3  # then the stream stops asking for one


async def test_a_stream_that_ends_ends_its_control_client(
    host: tuple[LocalTransport, HostStreams], calls: Path
) -> None:
    transport, streams = host
    await run_tasks(transport, streams, 2)
    assert "-C" in tmux_calls(calls)
    wait_until(lambda: len(control_clients()) == 1, what="the control client to attach")
    await streams.close()
    wait_until(lambda: not control_clients(), what="the control client to end")
    await asyncio.sleep(0)


async def test_a_session_the_control_client_cannot_start_is_settled_the_launchs_own_way(
    host: tuple[LocalTransport, HostStreams], calls: Path
) -> None:
    """tmux refuses the command (the session exists: a launch repeated after its answer was
    lost): the launch goes on as it would without a control client, where has-session
    settles it."""
    transport, streams = host
    await run_tasks(transport, streams, 2)
    task_id = uuid.uuid4().hex[:16]
    paths = scripts.TaskPaths(workdir=transport.workdir, task_id=task_id)
    subprocess.run([REAL_TMUX, "new-session", "-d", "-s", paths.session, "sleep 60"], check=True)
    try:
        before = len(tmux_calls(calls))
        command = scripts.render_launch(paths=paths, project=None, base=None)  # no claim
        res = await streams.launch(transport, command)
        assert res is not None and res.ok, res
        made = tmux_calls(calls)[before:]
        assert made[0] == "has-session"  # the launch's own look (it keeps the session's files)
        assert made[1:] == ["new-session", "has-session"]  # after the control client's error
    finally:
        subprocess.run([REAL_TMUX, "kill-session", "-t", paths.session], check=False)


@pytest.mark.slow
async def test_a_control_client_that_never_answers_is_given_up_and_its_launches_go_on(
    host: tuple[LocalTransport, HostStreams], calls: Path, tmp_path: Path
) -> None:
    transport, streams = host
    (tmp_path / "silent-control").touch()  # a client that reads every command, answers none
    await start_task(transport, streams)
    ran = await start_task(transport, streams)  # answered once CONTROL_TIMEOUT is over
    wait_until(ran.exists, what="the task's session, started the launch's own way")
    assert tmux_calls(calls) == ["new-session", "-C", "new-session"]
    # Given up, it is closed; the next launch starts its session itself and asks again.
    (tmp_path / "silent-control").unlink()
    ran = await start_task(transport, streams)
    wait_until(ran.exists, what="the task's session")
    # (asked for right after the launch's answer)
    wait_until(lambda: tmux_calls(calls)[3:] == ["new-session", "-C"], what="a new client")


async def test_followed_tasks_are_read_while_an_answer_of_the_control_client_is_awaited(
    tmp_path: Path, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream looks for the client's answers every ms; the files it follows it still reads
    at their own pace meanwhile (a task's end is not held back by launches under way)."""
    monkeypatch.setattr(scripts, "CONTROL_TIMEOUT", 3600)  # a silent client is not given up
    (tmp_path / "silent-control").touch()
    transport = LocalTransport(
        host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
    )
    await transport.connect()
    streams = HostStreams()
    try:
        await start_task(transport, streams)
        wait_until(lambda: "-C" in tmux_calls(calls), what="the (silent) control client")
        pending = asyncio.ensure_future(start_task(transport, streams))  # no answer comes
        task_dir = Path(transport.workdir) / "tasks" / "followed"
        task_dir.mkdir(parents=True)
        feed = await streams.join(transport, "followed", str(task_dir), 0)
        assert feed is not None
        await asyncio.sleep(0.5)  # the stream waits on the client now
        (task_dir / "out.jsonl").write_text("line\n")
        (task_dir / "exit").write_text("0\n")
        data, end = await collect(feed)
        assert (data, end.exit) == (b"line\n", "0")
        assert not pending.done()
        pending.cancel()
    finally:
        await streams.close()
        await transport.close()
