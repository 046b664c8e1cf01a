"""The host's log stream and the batched probes, against both transports (local, real sshd)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import shlex
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from dobby.core.errors import TransportError
from dobby.core.models import Host
from dobby.hostside import scripts
from dobby.runner import streams as streams_module
from dobby.runner.follower import Followers, host_phase, probe_time
from dobby.runner.streams import Feed, Frame, HostStream, HostStreams, Probes
from dobby.transport import LocalTransport, RunResult, SshTransport, Transport
from tests.fixtures.execs import count_runs
from tests.fixtures.procs import stream_helpers
from tests.fixtures.sshd import SshHost
from tests.transport.test_transport import held_identity


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.slow)])
async def transport(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Transport]:
    if request.param == "local":
        t: Transport = LocalTransport(
            host=Host(name="local", connection="local", workdir=str(tmp_path / "w"))
        )
    else:
        hosts: list[SshHost] = request.getfixturevalue("ssh_hosts")
        t = SshTransport(host=hosts[0].host_model())
    await t.connect()
    yield t
    await t.close()


@pytest.fixture
async def streams() -> AsyncIterator[HostStreams]:
    """Return a HostStreams of the test's own, every stream of it ended afterwards."""
    hub_side = HostStreams()
    yield hub_side
    await hub_side.close()


async def put(transport: Transport, path: str, data: bytes, *, append: bool = True) -> None:
    """Write or append ``data`` on the host, as a task's tee would (never truncating)."""
    op = ">>" if append else ">"
    folder = shlex.quote(os.path.dirname(path))
    # Any byte, NULs too, travels base64-encoded through text stdin; never empty stdin, which
    # asyncssh would not close.
    res = await transport.run(
        f"mkdir -p {folder} && base64 -d {op} {shlex.quote(path)}",
        input=base64.b64encode(data).decode() + "\n",
    )
    assert res.ok, res.stderr


async def collect(feed: Feed, timeout: float = 30) -> tuple[bytes, Frame]:
    """Return the bytes of a feed up to its end frame, checking each frame's offset."""
    data = b""
    start: int | None = None
    async with asyncio.timeout(timeout):
        while True:
            for frame in await feed.next(1.0):
                if start is None:
                    start = frame.offset
                assert frame.offset == start + len(data)
                if frame.exit is not None:
                    return data, frame
                data += frame.data


def recorded_writes(host_stream: HostStream) -> list[bytes]:
    """Return the list every write to the host's stream is appended to from now on."""
    writes: list[bytes] = []
    write = host_stream._stream.write

    def recording(data: bytes) -> None:
        writes.append(data)
        write(data)

    host_stream._stream.write = recording  # type: ignore[method-assign]
    return writes


async def test_stream_sends_each_task_byte_for_byte_from_its_offset(
    transport: Transport, streams: HostStreams
) -> None:
    root = f"{transport.workdir}/tasks"
    a, b = f"{root}/a", f"{root}/b"
    head = b"x" * 100 + b"\x00first line\n"
    await put(transport, f"{a}/out.jsonl", head, append=False)
    fa = await streams.join(transport, "a", a, 50)
    fb = await streams.join(transport, "b", b, 0)  # out.jsonl not there yet
    assert fa is not None and fb is not None
    rng = random.Random(7)
    written = b""
    for _ in range(30):  # torn lines, NULs, any byte: all arrive exactly
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        await put(transport, f"{b}/out.jsonl", chunk)
        written += chunk
    await put(transport, f"{b}/exit", b"3\n", append=False)
    data, end = await collect(fb)
    assert data == written
    assert (end.offset, end.exit) == (len(written), "3")
    await put(transport, f"{a}/out.jsonl", b"second line\n")
    await put(transport, f"{a}/exit", b"0\n", append=False)
    data, end = await collect(fa)
    assert data == head[50:] + b"second line\n"
    assert end.offset == len(head) + len(b"second line\n")


async def test_an_exit_file_still_empty_does_not_end_the_task(
    transport: Transport, streams: HostStreams
) -> None:
    d = f"{transport.workdir}/tasks/f"
    await put(transport, f"{d}/out.jsonl", b"one\n", append=False)
    await put(transport, f"{d}/exit", b"", append=False)  # created; its code not written yet
    feed = await streams.join(transport, "f", d, 0)
    assert feed is not None
    frames: list[Frame] = []
    async with asyncio.timeout(10):
        while not frames:
            frames = await feed.next(1.0)
    await asyncio.sleep(0.3)  # dozens of the stream's rounds
    frames += await feed.next(0)
    assert [(f.data, f.exit) for f in frames] == [(b"one\n", None)]
    await put(transport, f"{d}/exit", b"4\n", append=False)
    data, end = await collect(feed)
    assert (data, end.offset, end.exit) == (b"", 4, "4")


async def test_a_task_that_left_gets_no_frames_and_a_rejoin_starts_fresh(
    transport: Transport, streams: HostStreams
) -> None:
    d = f"{transport.workdir}/tasks/c"
    await put(transport, f"{d}/out.jsonl", b"one\n", append=False)
    first = await streams.join(transport, "c", d, 0)
    assert first is not None
    frames = []
    async with asyncio.timeout(30):
        while not frames:
            frames = await first.next(1.0)
    streams.leave(first)
    await put(transport, f"{d}/out.jsonl", b"two\n")
    second = await streams.join(transport, "c", d, 4)
    assert second is not None and second.key != first.key
    await put(transport, f"{d}/exit", b"0\n", append=False)
    data, _ = await collect(second)
    assert data == b"two\n"
    assert await first.next(0) == []  # nothing more for the feed that left


async def test_a_stream_that_dies_fails_its_feeds_and_a_new_one_starts(
    transport: Transport, streams: HostStreams
) -> None:
    d = f"{transport.workdir}/tasks/e"
    await put(transport, f"{d}/out.jsonl", b"", append=False)
    feed = await streams.join(transport, "e", d, 0)
    assert feed is not None
    await feed.stream._stream.close()  # the command on the host ends under the hub
    with pytest.raises(TransportError):
        async with asyncio.timeout(30):
            while True:
                await feed.next(1.0)
    again = await streams.join(transport, "e", d, 0)
    assert again is not None and again.stream is not feed.stream
    await put(transport, f"{d}/out.jsonl", b"after\n")
    await put(transport, f"{d}/exit", b"0\n", append=False)
    data, _ = await collect(again)
    assert data == b"after\n"


async def test_the_joins_of_one_turn_go_out_in_one_write_and_each_is_followed(
    transport: Transport, streams: HostStreams
) -> None:
    dirs = [f"{transport.workdir}/tasks/j{i}" for i in range(30)]
    for i, d in enumerate(dirs):
        await put(transport, f"{d}/out.jsonl", f"line {i}\n".encode(), append=False)
    first = await streams.join(transport, "j0", dirs[0], 0)
    assert first is not None
    await asyncio.sleep(0.05)  # its join written, and its turn over
    writes = recorded_writes(first.stream)
    # As the followers of a restarted hub join: each its own task, all in the same turn.
    rest = await asyncio.gather(
        *(streams.join(transport, f"j{i}", d, 0) for i, d in enumerate(dirs[1:], 1))
    )
    await asyncio.sleep(0.05)
    # The first at once, the other 28 together at the end of the turn.
    assert [w.count(b"\n") for w in writes] == [1, 28]
    for d in dirs:
        await put(transport, f"{d}/exit", b"0\n", append=False)
    for i, feed in enumerate([first, *rest]):
        assert feed is not None
        data, end = await collect(feed)
        assert (data, end.exit) == (f"line {i}\n".encode(), "0")


async def test_a_task_that_ran_a_while_joins_to_be_watched_at_once(
    transport: Transport, streams: HostStreams
) -> None:
    """An adopted task's join (``ran``) is a ``W``: the stream sends it like any other."""
    d = f"{transport.workdir}/tasks/r"
    await put(transport, f"{d}/out.jsonl", b"0123456789", append=False)
    first = await streams.join(transport, "warm-up", d, 10)  # the stream is up
    assert first is not None
    streams.leave(first)
    await asyncio.sleep(0.05)  # its leave written, and its turn over
    writes = recorded_writes(first.stream)
    feed = await streams.join(transport, "r", d, 4, ran=True)
    assert feed is not None
    assert writes == [scripts.stream_command("W", feed.key, "4", d)]
    await put(transport, f"{d}/out.jsonl", b"ab\n")
    await put(transport, f"{d}/exit", b"0\n", append=False)
    data, end = await collect(feed)
    assert (data, end.exit, end.offset) == (b"456789ab\n", "0", 13)


async def test_a_warmed_stream_starts_before_the_identity_probe_answers(
    ssh_hosts: list[SshHost], streams: HostStreams
) -> None:
    t = SshTransport(host=ssh_hosts[0].host_model())
    release = held_identity(t)
    streams.warm(t)  # as the runner does for a host it is about to connect
    streams.warm(t)  # a second caller finds the start under way
    async with asyncio.timeout(30):
        while t not in streams._streams:
            await asyncio.sleep(0.01)
    assert t.home is None  # the probe is still held: the stream did not wait for it
    release.set()
    await t.connect()
    d = f"{t.workdir}/tasks/w"
    await put(t, f"{d}/out.jsonl", b"warm\n", append=False)
    feed = await streams.join(t, "w", d, 0)
    assert feed is not None and feed.stream is streams._streams[t]
    await put(t, f"{d}/exit", b"0\n", append=False)
    data, _ = await collect(feed)
    assert data == b"warm\n"
    await t.close()


async def test_probes_of_one_host_share_one_command(transport: Transport) -> None:
    paths = [scripts.TaskPaths(workdir=transport.workdir, task_id=t) for t in ("p1", "p2", "p3")]
    await put(transport, paths[1].file("pid"), b"1\n", append=False)
    await put(transport, paths[2].file("pid"), b"1\n", append=False)
    await put(transport, paths[2].file("exit"), b"7\n", append=False)
    commands = count_runs(transport)
    probes = Probes()
    states = await asyncio.gather(*(probes.probe(transport, p) for p in paths))
    assert len(commands) == 1
    assert gone(states) == [
        {"started": "0", "exit": ""},
        {"started": "1", "exit": ""},
        {"started": "1", "exit": "7"},
    ]


def gone(states: list[dict[str, str]]) -> list[dict[str, str]]:
    """Return the probes' answers without their SESSION, once each says the session is gone
    (0, or NO_SERVER when no tmux server runs there: that depends on the tests run before)."""
    assert all(s["session"] in ("0", scripts.NO_SERVER) for s in states), states
    return [{k: v for k, v in s.items() if k != "session"} for s in states]


async def probe_tasks(
    transport: Transport, probes: Probes, exits: dict[str, bytes]
) -> list[dict[str, str]]:
    """Probe three started tasks p1..p3 at once, writing ``exits`` (task -> exit file) first."""
    paths = [scripts.TaskPaths(workdir=transport.workdir, task_id=t) for t in ("p1", "p2", "p3")]
    for p in paths:
        await put(transport, p.file("pid"), b"1\n", append=False)
        if p.task_id in exits:
            await put(transport, p.file("exit"), exits[p.task_id], append=False)
    return await asyncio.gather(*(probes.probe(transport, p) for p in paths))


async def test_probes_ride_on_the_hosts_stream_with_no_exec(
    transport: Transport, streams: HostStreams
) -> None:
    # An exec of its own made sshd set up a session while the stream's lines waited.
    commands = count_runs(transport)
    states = await probe_tasks(transport, Probes(streams), {"p2": b"7\n"})
    assert [c for c in commands if "probe()" in c] == []
    assert gone(states) == [
        {"started": "1", "exit": ""},
        {"started": "1", "exit": "7"},
        {"started": "1", "exit": ""},
    ]


async def test_a_probe_the_stream_answers_in_part_is_asked_again_by_an_exec(
    transport: Transport, streams: HostStreams
) -> None:
    # An exit file with an odd first line: the stream sends back the last LAUNCH_OUTPUT bytes
    # of the answer, which then lacks the tasks probed before it.
    odd = b"x" * (scripts.LAUNCH_OUTPUT + 100)
    commands = count_runs(transport)
    states = await probe_tasks(transport, Probes(streams), {"p2": odd + b"\n", "p3": b"0\n"})
    assert len([c for c in commands if "probe()" in c]) == 1
    assert [s["exit"] for s in states] == ["", odd.decode(), "0"]


async def test_a_probe_the_stream_does_not_answer_in_time_goes_as_an_exec(
    transport: Transport, streams: HostStreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = count_runs(transport)
    monkeypatch.setattr(streams_module, "STREAM_PROBE_TIMEOUT", 0)
    states = await probe_tasks(transport, Probes(streams), {"p1": b"3\n"})
    assert [s["exit"] for s in states] == ["3", "", ""]
    assert len([c for c in commands if "probe()" in c]) == 1


async def test_a_host_that_cannot_stream_is_probed_by_an_exec(
    transport: Transport, streams: HostStreams
) -> None:
    transport.streams = False  # type: ignore[misc]
    commands = count_runs(transport)
    states = await probe_tasks(transport, Probes(streams), {"p1": b"4\n"})
    assert [s["exit"] for s in states] == ["4", "", ""]
    assert len([c for c in commands if "probe()" in c]) == 1


def test_a_probe_says_when_no_tmux_server_answers_at_all(tmp_path: Path) -> None:
    """A tmux server that crashed (or was killed) took every session with it: the probe says
    so, apart from a session that alone is gone, so the hub can tell the user why."""
    paths = [scripts.TaskPaths(workdir=str(tmp_path), task_id=t) for t in ("t1", "t2")]
    (tmp_path / "tasks" / "t1").mkdir(parents=True)
    (tmp_path / "tasks" / "t1" / "pid").write_text("1\n")
    sockets = tmp_path / "tmx"  # no server has ever run here
    sockets.mkdir()
    env = {**os.environ, "TMUX_TMPDIR": str(sockets)}
    out = subprocess.run(
        ["bash", "-c", scripts.render_probe_many(paths)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    states = scripts.parse_probe_many(out)
    assert states == {
        "t1": {"session": scripts.NO_SERVER, "started": "1", "exit": ""},
        "t2": {"session": scripts.NO_SERVER, "started": "0", "exit": ""},
    }
    # A server that runs, without those sessions (its one session named like the mark): each
    # is simply gone.
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", scripts.NO_SERVER, "sleep 30"], env=env, check=True
    )
    try:
        out = subprocess.run(
            ["bash", "-c", scripts.render_probe_many(paths)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert [s["session"] for s in scripts.parse_probe_many(out).values()] == ["0", "0"]
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, check=False)


def test_parse_probe_many() -> None:
    text = "a 1 1 \nb 0 1 0\nnoise\n"
    assert scripts.parse_probe_many(text) == {
        "a": {"session": "1", "started": "1", "exit": ""},
        "b": {"session": "0", "started": "1", "exit": "0"},
    }


@pytest.mark.parametrize(
    ("now", "every", "due"),
    [(0.0, 5.0, 5.0), (4.99, 5.0, 5.0), (5.0, 5.0, 10.0), (12.3, 0.5, 12.5)],
)
def test_probe_time_is_on_a_grid_shared_by_every_task(now: float, every: float, due: float) -> None:
    assert probe_time(now, every) == pytest.approx(due)


@pytest.mark.parametrize(
    ("now", "every", "phase", "due"),
    [(0.0, 5.0, 0.5, 2.5), (2.5, 5.0, 0.5, 7.5), (7.4, 5.0, 0.5, 7.5), (12.3, 0.5, 0.2, 12.6)],
)
def test_probe_time_is_shifted_by_the_phase(
    now: float, every: float, phase: float, due: float
) -> None:
    assert probe_time(now, every, phase) == pytest.approx(due)


def test_the_tasks_of_a_host_share_a_probe_time_and_hosts_spread_over_the_period() -> None:
    # One host: one probe command for all its tasks. A hundred hosts: their probes (and the
    # wake-ups of their followers) spread over the period instead of all in one instant.
    assert host_phase("h7") == host_phase("h7")
    due = sorted(probe_time(1000.0, 5.0, host_phase(f"h{i}")) for i in range(1, 101))
    assert all(1000.0 < t <= 1005.0 for t in due)
    assert max(Counter(round(t, 1) for t in due).values()) <= 5  # no crowd in any 100 ms
    assert max(b - a for a, b in itertools.pairwise(due)) < 1.0


def test_frames_join_in_order_and_a_gap_is_a_fault() -> None:
    frames = [Frame(10, b"ab"), Frame(12, b"cd"), Frame(14, exit="0"), Frame(14, b"zz")]
    data, end = Followers._joined(frames, 10)
    assert (data, end) == (b"abcd", Frame(14, exit="0"))
    with pytest.raises(TransportError, match="jumped from byte 10 to 11"):
        Followers._joined([Frame(11, b"x")], 10)


def test_follow_script_is_bash_syntax(tmp_path: Path) -> None:
    script = tmp_path / "follow.sh"
    script.write_text(scripts.render_follow())
    assert os.system(f"bash -n {script}") == 0


def start_follow() -> subprocess.Popen[bytes]:
    """Start the host's stream here, as a plain bash process, and wait until it is ready."""
    follow = subprocess.Popen(
        ["bash", "-c", scripts.render_follow()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert follow.stdin is not None and follow.stdout is not None
    assert follow.stdout.readline() == scripts.FOLLOW_READY + b"\n"
    return follow


def test_every_join_gets_its_end_whenever_it_arrives(tmp_path: Path) -> None:
    """Joins land in the stream's timed one-byte wait at every moment, also as it times out."""
    follow = start_follow()
    assert follow.stdin is not None and follow.stdout is not None
    stdout = follow.stdout
    ended: dict[str, str] = {}
    all_seen = threading.Event()
    count = 200

    def read() -> None:
        while line := stdout.readline():
            kind, key, _, rest = line.decode().rstrip("\n").split(" ", 3)
            if kind == "D":
                stdout.read(int(rest))
            elif kind == "X":
                ended[key] = rest
                if len(ended) == count:
                    all_seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rng = random.Random(7)
    try:
        for i in range(count):
            task_dir = tmp_path / f"t{i}"
            task_dir.mkdir()
            follow.stdin.write(scripts.stream_command("+", f"k{i}", "0", str(task_dir)))
            # Around the stream's 10 ms wait: before, during and as it times out.
            time.sleep(rng.choice([0, 0, 0.001, 0.005, 0.0099, 0.01, 0.02]))
            (task_dir / "out.jsonl").write_text("line\n")
            (task_dir / "exit").write_text("0\n")
        assert all_seen.wait(60), sorted(set(f"k{i}" for i in range(count)) - set(ended))
        assert set(ended.values()) == {"0 0 0"}  # no artifacts dir, no stderr, exit 0
    finally:
        follow.stdin.close()
        follow.wait(10)
        reader.join(10)
        stdout.close()


def read_frames(stdout: IO[bytes], until: float) -> list[tuple[float, str]]:
    """Return the frames' head lines the stream writes until ``until`` (monotonic), each with
    when it came; a D frame's bytes are read and left out."""
    seen: list[tuple[float, str]] = []

    def read() -> None:
        while line := stdout.readline():
            head = line.decode().rstrip("\n")
            seen.append((time.monotonic(), head))
            if head.startswith("D "):
                stdout.read(int(head.split(" ")[3]))

    threading.Thread(target=read, daemon=True).start()
    time.sleep(max(0.0, until - time.monotonic()))
    return list(seen)


def test_a_run_sh_gone_without_an_exit_code_is_said_once(tmp_path: Path) -> None:
    """The stream tells the hub when a task's run.sh (the pid in its pid file) ended without
    writing its exit code, once, so the hub probes that session then and no other one."""
    follow = start_follow()
    assert follow.stdin is not None and follow.stdout is not None
    runs = {name: subprocess.Popen(["sleep", "600"]) for name in ("killed", "ended", "lives")}
    # A run.sh whose tmux server died: its parent does not reap it (nor does init on some
    # machines), so it stays a zombie, which `kill -0` still finds.
    reaper = subprocess.Popen(
        ["bash", "-c", "sleep 600 & echo $!; exec sleep 600"], stdout=subprocess.PIPE, text=True
    )
    assert reaper.stdout is not None
    zombie = int(reaper.stdout.readline())
    pids = {**{name: run.pid for name, run in runs.items()}, "zombie": zombie}
    try:
        for name, pid in pids.items():
            task_dir = tmp_path / name
            task_dir.mkdir()
            (task_dir / "out.jsonl").write_text("line\n")
            (task_dir / "pid").write_text(f"{pid}\n")
            follow.stdin.write(scripts.stream_command("+", name, "0", str(task_dir)))
        unstarted = tmp_path / "unstarted"  # no pid file yet: nothing to say
        unstarted.mkdir()
        follow.stdin.write(scripts.stream_command("+", "unstarted", "0", str(unstarted)))
        time.sleep(0.3)
        runs["killed"].kill()  # as a SIGKILL of run.sh, or its session's end, would
        runs["killed"].wait()
        os.kill(zombie, 9)
        (tmp_path / "ended" / "exit").write_text("0\n")  # run.sh writes its code, then ends
        runs["ended"].kill()
        runs["ended"].wait()
        killed_at = time.monotonic()
        # Looked at once a second, a zombie every LIVES_FULL looks.
        frames = read_frames(follow.stdout, killed_at + scripts.LIVES_FULL + 2.5)
        gone = [(at - killed_at, head) for at, head in frames if head.startswith("G ")]
        # Not the one alive, nor the unstarted; the killed one within a look or two.
        assert [head for _, head in gone] == ["G killed 5 ended", "G zombie 5 ended"], frames
        assert gone[0][0] < 2.5, gone
        assert "X ended 5 0 0 0" in [head for _, head in frames]
    finally:
        for run in [*runs.values(), reaper]:
            run.kill()
            run.wait()
        reaper.stdout.close()
        follow.stdin.close()
        follow.wait(10)
        follow.stdout.close()


def _proc_count(pid: int, file: str, name: str) -> int:
    """Return a counter of a process from /proc/PID/FILE (the line ``NAME: N``)."""
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/{file}")


def _wakeups(pid: int) -> int:
    """Return how many times a process has gone to sleep and woken up (voluntarily) so far."""
    return _proc_count(pid, "status", "voluntary_ctxt_switches")


def test_a_stream_with_nothing_to_follow_sleeps_until_a_command_comes(tmp_path: Path) -> None:
    """No timed polls while no task is followed and no launch is under way (a host's stream
    between tasks, or a hub with nothing running there): each would cost a round of bash."""
    follow = start_follow()
    assert follow.stdin is not None and follow.stdout is not None
    try:
        for round_ in range(2):
            before = _wakeups(follow.pid)
            time.sleep(0.3)  # the fast rounds alone would wake it 60 times in this
            assert _wakeups(follow.pid) - before <= 1, f"round {round_}"
            # A command still ends the wait at once, and the task it follows is seen to its end.
            task_dir = tmp_path / f"t{round_}"
            task_dir.mkdir()
            (task_dir / "out.jsonl").write_text("line\n")
            (task_dir / "exit").write_text("0\n")
            follow.stdin.write(scripts.stream_command("+", f"k{round_}", "0", str(task_dir)))
            assert follow.stdout.readline() == f"D k{round_} 0 5\n".encode()
            assert follow.stdout.read(5) == b"line\n"
            assert follow.stdout.readline() == f"X k{round_} 5 0 0 0\n".encode()
    finally:
        follow.stdin.close()
        follow.wait(10)
        follow.stdout.close()


def _reads(pid: int) -> int:
    """Return how many read system calls the stream ``pid`` and its forwarder (the reader of
    its commands) have made so far."""
    total = _proc_count(pid, "io", "syscr")
    for helper in stream_helpers(pid)["bash"]:
        try:
            total += _proc_count(helper, "io", "syscr")
        except FileNotFoundError:  # a fork of the stream's that ended since it was listed
            continue
    return total


def test_commands_are_read_whole_whatever_their_words_hold(tmp_path: Path) -> None:
    """A command's words (a task dir with spaces, quotes, `$()`) come through as sent, several
    commands in one write too, and reading one costs a few system calls, not one per byte."""
    follow = start_follow()
    assert follow.stdin is not None and follow.stdout is not None
    odd = tmp_path / ("a dir with 'quotes' \"and\" $(echo no) `x` " + "long" * 40)
    try:
        for round_ in range(2):
            task_dir = odd / f"t{round_}"
            task_dir.mkdir(parents=True)
            (task_dir / "out.jsonl").write_text("line\n")
            (task_dir / "exit").write_text("0\n")
            before = _reads(follow.pid)
            # A leave for a key never joined, then the join: one write, two commands.
            follow.stdin.write(
                scripts.stream_command("-", "nobody")
                + scripts.stream_command("+", f"k{round_}", "0", str(task_dir))
            )
            assert follow.stdout.readline() == f"D k{round_} 0 5\n".encode()
            assert follow.stdout.read(5) == b"line\n"
            assert follow.stdout.readline() == f"X k{round_} 5 0 0 0\n".encode()
            # Read a byte at a time, the join alone took over 200 reads (its line's length).
            assert _reads(follow.pid) - before < 40, f"round {round_}"
    finally:
        follow.stdin.close()
        follow.wait(10)
        follow.stdout.close()


def test_a_command_too_long_for_its_length_field_is_refused() -> None:
    with pytest.raises(ValueError, match="not a stream command"):
        scripts.stream_command("+", "k", "0", "d" * 10_000)
    assert scripts.stream_command("-", "k") == b"-0003 k\n"


async def test_launches_through_the_stream_answer_their_exit_stdout_and_stderr(
    transport: Transport, streams: HostStreams
) -> None:
    d = f"{transport.workdir}/tasks/g"
    await put(transport, f"{d}/out.jsonl", b"followed\n", append=False)
    feed = await streams.join(transport, "g", d, 0)  # a followed file stays the stream's
    assert feed is not None
    tail = "e" * (scripts.LAUNCH_OUTPUT + 10) + "END"
    plain, failed, errexit, long_err, quoted = await asyncio.gather(
        streams.launch(transport, "echo out; echo err >&2"),
        streams.launch(transport, f"echo {scripts.NEED_BUNDLE_EXIT}; exit 42"),
        streams.launch(transport, "set -e\nprintf x\nfalse\necho never"),
        streams.launch(transport, f"printf %s {tail} >&2; exit 3"),
        streams.launch(transport, "printf '%s' \"$1\" 'a b' \"it's\" $'\\n' '$(x)' `echo ok`"),
    )
    assert plain == RunResult(0, "out\n", "err\n")
    assert failed == RunResult(42, "42\n", "")
    assert errexit == RunResult(1, "x", "")  # set -e ends the launch, not the stream
    assert long_err == RunResult(3, "", tail[-scripts.LAUNCH_OUTPUT :])
    assert quoted == RunResult(0, "a bit's\n$(x)ok", "")
    assert await collect_until(feed, b"followed\n") == b"followed\n"


def sent_lines(streams: HostStreams, transport: Transport) -> list[bytes]:
    """Record the command lines the hub sends on the transport's stream from now on."""
    stream = streams._streams[transport]
    sent: list[bytes] = []
    write = stream._send

    def record(data: bytes) -> None:
        sent.append(data.split(b"\n", 1)[0])
        write(data)

    stream._send = record  # type: ignore[method-assign]
    return sent


async def test_a_launch_that_began_hands_its_task_to_the_follower_with_no_join_sent(
    transport: Transport, streams: HostStreams
) -> None:
    """The launch joins its task on the stream; what the task wrote before its follower came
    (all of it, and its end) waits in the feed the follower gets."""
    assert await streams.launch(transport, "true") is not None  # the stream is up
    sent = sent_lines(streams, transport)
    d = f"{transport.workdir}/tasks/j"
    quick = f"mkdir -p {d}; printf 'all\\n' >{d}/out.jsonl; echo 0 >{d}/exit"
    res = await streams.launch(transport, quick, follow=("j", d, 0))
    assert res == RunResult(0, "", "")
    feed = await streams.join(transport, "j", d, 0)
    assert feed is not None
    assert await collect(feed) == (b"all\n", Frame(4, exit="0", artifacts=False, stderr=False))
    assert [line[:1] for line in sent] == [b"L"]  # no `+`


async def test_a_launch_that_failed_or_a_join_elsewhere_follows_as_a_join_does(
    transport: Transport, streams: HostStreams
) -> None:
    assert await streams.launch(transport, "true") is not None
    sent = sent_lines(streams, transport)
    root = f"{transport.workdir}/tasks"
    for tid in ("f", "o"):
        await put(transport, f"{root}/{tid}/out.jsonl", b"0123456789\n", append=False)
    # A launch that exits non-zero started nothing: its task is not followed for it.
    res = await streams.launch(transport, "exit 3", follow=("f", f"{root}/f", 0))
    assert res is not None and res.exit_status == 3
    # A join from another offset than the launch's: the launch's feed is left.
    res = await streams.launch(transport, "true", follow=("o", f"{root}/o", 0))
    assert res == RunResult(0, "", "")
    feeds = [await streams.join(transport, t, f"{root}/{t}", 4) for t in ("f", "o")]
    assert [line[:1] for line in sent] == [b"L", b"L", b"+", b"-", b"+"]
    for tid, feed in zip(("f", "o"), feeds, strict=True):
        assert feed is not None
        assert await collect_until(feed, b"9\n") == b"456789\n"
        await put(transport, f"{root}/{tid}/exit", b"0\n", append=False)
        assert (await collect(feed))[1].exit == "0"


async def collect_until(feed: Feed, want: bytes) -> bytes:
    """Return a feed's bytes once they hold ``want``."""
    data = b""
    async with asyncio.timeout(30):
        while want not in data:
            for frame in await feed.next(1.0):
                data += frame.data
    return data


# A launch that kills its own stream (its parent) and outlives it a moment.
KILL_ITS_STREAM = "read -r _ _ _ up _ </proc/$BASHPID/stat; kill -9 $up; sleep 1"


async def kill_stream(streams: HostStreams, transport: Transport) -> None:
    """Kill the transport's stream from a launch; the launch's answer is lost with it."""
    with pytest.raises(TransportError):
        async with asyncio.timeout(30):
            await streams.launch(transport, KILL_ITS_STREAM)


async def test_a_launch_through_the_stream_gets_what_an_exec_gets(
    transport: Transport, streams: HostStreams
) -> None:
    """Its locale and shell options are the login's, and nothing of the stream is left to it
    but its functions, under names no command has (``_``): a process it starts (a tmux server)
    holds neither the stream's channel nor its files."""
    d = f"{transport.workdir}/tasks/h"
    await put(transport, f"{d}/out.jsonl", b"x\n", append=False)
    look = 'printf "%s|%s|" "${LC_ALL-unset}" "$(shopt -p nullglob dotglob | tr "\\n" " ")"'
    assert await streams.join(transport, "h", d, 0) is not None
    res = await streams.launch(transport, f"{look}; sleep 30 </dev/null & echo $!")
    assert res is not None and res.exit_status == 0, res
    *seen, pid = res.stdout.split("|")
    exec_seen = (await transport.run(look)).stdout.split("|")[:2]
    assert seen == exec_seen and "shopt -u nullglob" in seen[1]
    functions = "compgen -A function"
    launched = await streams.launch(transport, functions)
    assert launched is not None
    extra = set(launched.stdout.split()) - set((await transport.run(functions)).stdout.split())
    assert extra and all(name.startswith("_") for name in extra), extra
    fds = Path(f"/proc/{pid.strip()}/fd")
    try:
        assert sorted(int(n) for n in os.listdir(fds)) == [0, 1, 2]
        targets = [os.readlink(fds / n) for n in ("1", "2")]
        assert not any(t.startswith(("pipe:", "socket:")) for t in targets), targets
    finally:
        os.kill(int(pid), 9)


async def test_a_launch_whose_stream_dies_is_an_error_and_the_next_one_runs(
    transport: Transport, streams: HostStreams
) -> None:
    await kill_stream(streams, transport)
    assert await streams.launch(transport, "echo again") == RunResult(0, "again\n", "")


async def test_a_claim_taken_through_the_stream_names_the_launch_not_the_stream(
    transport: Transport, streams: HostStreams
) -> None:
    """A settle probe must see the launch itself die, while the stream lives on."""
    paths = scripts.TaskPaths(workdir=transport.workdir, task_id="claim1")
    claim = scripts.claim_name("via-stream")
    command = f"mkdir -p {paths.task_dir}\n{scripts._take_claim(paths.file(claim))}\nsleep 30"
    settle = scripts.render_settle(paths=paths, claim=claim)
    launch = asyncio.ensure_future(streams.launch(transport, command))
    async with asyncio.timeout(30):
        while not (await transport.run(f"cat {paths.file(claim)}")).stdout.endswith("\n"):
            await asyncio.sleep(0.05)
    assert scripts.parse_kv((await transport.run(settle)).stdout)["launcher"] == "1"
    owner = (await transport.run(f"cat {paths.file(claim)}")).stdout.split()[0]
    os.kill(int(owner), 9)
    res = await asyncio.wait_for(launch, 30)
    assert res is not None and res.exit_status != 0
    assert scripts.parse_kv((await transport.run(settle)).stdout)["launcher"] == "0"
    assert await streams.launch(transport, "echo alive") == RunResult(0, "alive\n", "")


async def test_the_answers_of_a_stream_killed_outright_are_cleared_by_the_next_one(
    transport: Transport, streams: HostStreams
) -> None:
    where = 'echo "${rcfile%/*}"'  # the stream's directory of answers
    first = await streams.launch(transport, where)
    assert first is not None and first.exit_status == 0
    old = first.stdout.strip()
    # A SIGKILL runs no exit trap: the stream's directory stays behind...
    await kill_stream(streams, transport)
    assert (await transport.run(f"test -d {old}")).ok
    # ...until the next stream starts, which keeps its own.
    second = await streams.launch(transport, where)
    assert second is not None and second.stdout.strip() != old
    assert not (await transport.run(f"test -e {old}")).ok
    assert (await transport.run(f"test -d {second.stdout.strip()}")).ok
