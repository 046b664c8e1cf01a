"""The host's stream is woken, not only timed: by its commands, its launches and `tail -F`.

The stream (``scripts.render_follow``) waits on stdin until a task has been followed over a
second; then on one pipe. Its forwarder writes a byte there for each command from the hub, a
launch for its end, and a relay for what the stream's `tail -F` saw the followed files grow
by. These tests run the stream as a plain bash process and make its own looks rare (hours
apart), so that what arrives came through a wake.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from dobby.hostside import scripts
from tests.fixtures.procs import alive, live_pids, stream_helpers
from tests.fixtures.wait import wait_until

# Each test waits for the stream to start its `tail`, over a second after a task joins.
pytestmark = pytest.mark.slow

HOUR = 3600


class Stream:
    """A stream started here, its frames read by a thread into ``data`` and ``ends``."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", scripts.render_follow()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.stdout.readline() == scripts.FOLLOW_READY + b"\n"
        self.data: dict[str, bytes] = {}
        self.ends: dict[str, str] = {}
        self.launches: dict[str, tuple[int, bytes, bytes]] = {}
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while line := stdout.readline():
            kind, key, *rest = line.decode().rstrip("\n").split(" ")
            with self.changed:
                if kind == "D":
                    self.data[key] = self.data.get(key, b"") + read_exactly(stdout, int(rest[1]))
                elif kind == "X":
                    self.ends[key] = " ".join(rest)
                elif kind == "L":  # a launch's answer: RC OUTLEN ERRLEN, its stdout, its stderr
                    out = read_exactly(stdout, int(rest[1]))
                    err = read_exactly(stdout, int(rest[2]))
                    self.launches[key] = (int(rest[0]), out, err)
                self.changed.notify_all()

    def send(self, op: str, *words: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(scripts.stream_command(op, *words))

    def launch(self, *launches: tuple[str, str]) -> None:
        """Send launches (KEY, bash), all in one write."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            b"".join(
                scripts.stream_command("L", key, str(len(script.encode()))) + script.encode()
                for key, script in launches
            )
        )

    def wait_for(self, what: str, check: object, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(check, timeout), what  # type: ignore[arg-type]

    def helpers(self) -> dict[str, list[int]]:
        """Return the live processes the stream started, by role: its `tail`, and the bash
        processes of its own (the forwarder, the relay) outside it."""
        return stream_helpers(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.reader.join(10)
        self.proc.stdout.close()


def read_exactly(pipe: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = pipe.read(size - len(data))
        if not more:
            raise EOFError(f"the stream ended {size - len(data)} bytes into a frame")
        data += more
    return data


@pytest.fixture
def rare_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once `tail` watches every followed task, the stream's own looks are an hour apart, and
    so are its looks for the end of a launch."""
    monkeypatch.setattr(scripts, "WATCHED_WAIT", HOUR)
    monkeypatch.setattr(scripts, "FOLLOW_FAST", HOUR)


@pytest.fixture
def stream(rare_looks: None) -> Iterator[Stream]:
    s = Stream()
    yield s
    s.close()


def watched(stream: Stream, count: int = 1) -> None:
    """Wait until the stream's `tail` runs, and then past the stream's next look at it: the
    one that finds every followed task watched."""
    wait_until(lambda: len(stream.helpers()["tail"]) == count, what="the stream's tail")
    time.sleep(scripts.WATCH_AFTER + 0.5)


def follow_one(stream: Stream, tmp_path: Path) -> None:
    """Have the stream follow a quiet task until it watches it (its forwarder then runs)."""
    task = tmp_path / "quiet"
    task.mkdir(parents=True)
    (task / "out.jsonl").write_bytes(b"")
    stream.send("+", "quiet", "0", str(task))
    watched(stream)


def test_a_watched_task_is_read_as_it_grows_and_its_end_seen_with_no_look_of_its_own(
    tmp_path: Path, stream: Stream
) -> None:
    """With the stream's own looks an hour apart, every byte still arrives, exactly (NULs,
    torn lines, any byte), and the exit file that appears ends the task."""
    task = tmp_path / "t"
    task.mkdir()
    (task / "out.jsonl").write_bytes(b"first\n")
    stream.send("+", "k", "0", str(task))
    stream.wait_for("the first line", lambda: stream.data.get("k") == b"first\n")
    watched(stream)
    rng = random.Random(3)
    written = b"first\n"
    with (task / "out.jsonl").open("ab", buffering=0) as out:
        for _ in range(60):
            chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
            out.write(chunk)
            written += chunk
            time.sleep(rng.choice([0, 0, 0.0005, 0.002, 0.01]))
    stream.wait_for("every byte", lambda: stream.data.get("k", b"") == written)
    (task / "exit").write_text("0\n")
    stream.wait_for("the end", lambda: "k" in stream.ends)
    assert stream.ends["k"] == f"{len(written)} 0 0 0"
    assert stream.data["k"] == written


def test_what_tail_did_not_name_is_read_by_the_streams_own_look_every_few(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Once `tail` watches every followed task, the stream reads only the files it named, and
    all of them itself one look in WATCHED_LOOKS (a hint dropped): with its `tail` stopped
    (alive, silent), a line and the exit file still arrive, by those looks."""
    monkeypatch.setattr(scripts, "WATCHED_LOOKS", 2)
    stream = Stream()
    tail = None
    try:
        task = tmp_path / "t"
        task.mkdir()
        (task / "out.jsonl").write_bytes(b"")
        stream.send("+", "k", "0", str(task))
        watched(stream)
        (tail,) = stream.helpers()["tail"]
        os.kill(tail, signal.SIGSTOP)
        with (task / "out.jsonl").open("ab") as out:
            out.write(b"unnamed\n")
        (task / "exit").write_text("0\n")
        stream.wait_for("the end", lambda: "k" in stream.ends)
        assert stream.data["k"] == b"unnamed\n" and stream.ends["k"] == "8 0 0 0"
    finally:
        if tail is not None:
            os.kill(tail, signal.SIGCONT)
        stream.close()


def test_every_byte_arrives_while_the_hints_file_is_emptied_each_round(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The relay's hints file is emptied once it is big (here: every round); a hint written
    as it was lost has that round read every file: with no other look of the stream's own,
    every line and the end of two chatty tasks still arrive."""
    monkeypatch.setattr(scripts, "HINTS_FILE", 1)
    monkeypatch.setattr(scripts, "WATCHED_LOOKS", 10**6)
    monkeypatch.setattr(scripts, "WATCHED_WAIT", HOUR)
    monkeypatch.setattr(scripts, "FOLLOW_FAST", HOUR)
    stream = Stream()
    try:
        tasks = [tmp_path / name for name in ("a", "b")]
        for i, task in enumerate(tasks):
            task.mkdir()
            (task / "out.jsonl").write_bytes(b"")
            stream.send("+", f"k{i}", "0", str(task))
        watched(stream)
        outs = [(task / "out.jsonl").open("ab", buffering=0) for task in tasks]
        written = [b"", b""]
        for n in range(300):
            i = n % 2
            line = f"line {n}\n".encode()
            outs[i].write(line)
            written[i] += line
            time.sleep(0.001)
        for out, task in zip(outs, tasks, strict=True):
            out.close()
            (task / "exit").write_text("0\n")
        stream.wait_for("both ends", lambda: {"k0", "k1"} <= set(stream.ends))
        assert [stream.data["k0"], stream.data["k1"]] == written
    finally:
        stream.close()


def test_a_file_inotify_cannot_see_is_polled_by_tail_and_still_read_with_no_look_of_its_own(
    tmp_path: Path, stream: Stream
) -> None:
    """`tail -F` watches no file by inotify once one of them is out of its reach (on NFS, or a
    symbolic link, as here): it polls them all, silently. What it prints then still wakes the
    stream, whose own looks are an hour apart: every line arrives, and the end."""
    real = tmp_path / "elsewhere.jsonl"
    real.write_bytes(b"")
    task = tmp_path / "t"
    task.mkdir()
    (task / "out.jsonl").symlink_to(real)
    stream.send("+", "k", "0", str(task))
    watched(stream)
    written = b""
    with real.open("ab", buffering=0) as out:
        for n in range(5):
            line = f"polled line {n}\n".encode()
            out.write(line)
            written += line
            stream.wait_for(f"line {n}", lambda w=written: stream.data.get("k", b"") == w)
    (task / "exit").write_text("0\n")
    stream.wait_for("the end", lambda: "k" in stream.ends)
    assert stream.ends["k"] == f"{len(written)} 0 0 0"


def test_watched_tasks_are_each_read_as_they_grow_whichever_grows(
    tmp_path: Path, stream: Stream
) -> None:
    """With every task watched, a round woken by `tail` visits only the tasks it named: lines
    written to any of them, in any order and any bursts, all arrive exactly, and each task's
    exit file ends that task alone."""
    tasks = {f"k{i}": tmp_path / f"t{i}" for i in range(8)}
    for key, task in tasks.items():
        task.mkdir()
        (task / "out.jsonl").write_bytes(b"")
        stream.send("+", key, "0", str(task))
    watched(stream)
    rng = random.Random(5)
    written = dict.fromkeys(tasks, b"")
    outs = {key: (task / "out.jsonl").open("ab", buffering=0) for key, task in tasks.items()}
    try:
        for n in range(300):
            key = rng.choice(list(tasks))
            line = f"{key} line {n}\n".encode()
            outs[key].write(line)
            written[key] += line
            time.sleep(rng.choice([0, 0, 0.0002, 0.001, 0.005]))
    finally:
        for out in outs.values():
            out.close()
    stream.wait_for(
        "every byte", lambda: all(stream.data.get(k, b"") == w for k, w in written.items())
    )
    ending = sorted(tasks)[::2]
    for key in ending:
        (tasks[key] / "exit").write_text("0\n")
    stream.wait_for("their ends", lambda: set(stream.ends) == set(ending))
    assert stream.ends == {key: f"{len(written[key])} 0 0 0" for key in ending}
    with (tasks["k1"] / "out.jsonl").open("ab") as late:
        late.write(b"after the others ended\n")
    stream.wait_for("a line after", lambda: stream.data["k1"].endswith(b"ended\n"))


def test_tasks_that_ran_a_while_are_watched_as_soon_as_their_joins_are_in(
    tmp_path: Path, rare_looks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``W`` (the tasks a restarted hub adopts): what each wrote meanwhile comes at once, and
    `tail` watches them without the fast looks a task just started is given for a second or
    two. Those are an hour apart here: with ``+``, no `tail` would start, no line after
    arrive."""
    monkeypatch.setattr(scripts, "FOLLOW_BACKOFF", ((100, HOUR),))
    stream = Stream()
    try:
        tasks = {f"r{i}": tmp_path / f"r{i}" for i in range(3)}
        for i, (key, task) in enumerate(tasks.items()):
            task.mkdir()
            (task / "out.jsonl").write_bytes(b"before %d\n" % i)
            stream.send("W", key, "0", str(task))
        stream.wait_for(
            "what they wrote meanwhile",
            lambda: all(stream.data.get(k) == b"before %d\n" % i for i, k in enumerate(tasks)),
        )
        wait_until(lambda: len(stream.helpers()["tail"]) == 1, what="one tail for all three")
        for task in tasks.values():
            with (task / "out.jsonl").open("ab") as out:
                out.write(b"after\n")
        stream.wait_for(
            "the lines after",
            lambda: all(
                stream.data.get(k) == b"before %d\nafter\n" % i for i, k in enumerate(tasks)
            ),
        )
        (tasks["r1"] / "exit").write_text("0\n")
        stream.wait_for("its end", lambda: "r1" in stream.ends)
        assert stream.ends == {"r1": "15 0 0 0"}  # "before 1\nafter\n"
    finally:
        stream.close()


def test_commands_and_launches_wake_the_stream_at_once(tmp_path: Path, stream: Stream) -> None:
    """A command that comes, and a launch that ends, are taken while the stream waits its hour
    (and looks for the ends of launches under way only every hour too)."""
    task = tmp_path / "t"
    task.mkdir()
    (task / "out.jsonl").write_bytes(b"")
    stream.send("+", "k", "0", str(task))
    watched(stream)
    other = tmp_path / "u"
    other.mkdir()
    (other / "out.jsonl").write_bytes(b"joined\n")
    (other / "exit").write_text("0\n")
    stream.send("+", "j", "0", str(other))
    stream.wait_for("the join", lambda: stream.ends.get("j") == "7 0 0 0")
    stream.launch(("l1", "sleep 0.3; echo launched"))
    stream.wait_for("the launch", lambda: "l1" in stream.launches)
    assert stream.launches["l1"] == (0, b"launched\n", b"")
    (task / "out.jsonl").write_bytes(b"still read\n")
    stream.wait_for("a line after", lambda: stream.data.get("k") == b"still read\n")


def test_launches_are_answered_as_they_end_before_the_forwarder_runs(
    tmp_path: Path, stream: Stream
) -> None:
    """Before any task is watched the stream reads its commands from stdin itself; a launch
    under way is waited for on the wake pipe, which its end writes to. So each is answered as
    it ends though the stream looks for the ends of launches every hour, and a command that
    came during one is taken then (and its own launch answered as it ends too)."""
    assert stream.helpers() == {"tail": [], "bash": []}  # no forwarder yet
    for launch in (("a", "sleep 0.5; echo first"), ("b", "echo second >&2")):
        stream.launch(launch)
    stream.wait_for("both launches", lambda: {"a", "b"} <= set(stream.launches))
    assert stream.launches == {"a": (0, b"first\n", b""), "b": (0, b"", b"second\n")}
    task = tmp_path / "t"
    task.mkdir()
    (task / "out.jsonl").write_bytes(b"done\n")
    (task / "exit").write_text("0\n")
    script = "exit 3"
    assert stream.proc.stdin is not None  # the launch and the join in one write
    stream.proc.stdin.write(
        scripts.stream_command("L", "c", str(len(script)))
        + script.encode()
        + scripts.stream_command("+", "k", "0", str(task))
    )
    stream.wait_for(
        "the third launch and the join", lambda: "c" in stream.launches and "k" in stream.ends
    )
    assert stream.launches["c"] == (3, b"", b"")
    assert stream.ends["k"] == "5 0 0 0" and stream.data["k"] == b"done\n"
    assert stream.helpers() == {"tail": [], "bash": []}  # all of it without a forwarder


def test_a_command_that_comes_during_launches_is_taken_before_they_end(
    monkeypatch: pytest.MonkeyPatch, rare_looks: None, tmp_path: Path
) -> None:
    """...waiting a slice of the stream's look at most while commands come during launches:
    with looks an hour apart in slices of 36 ms, a quick launch sent while two slow ones run
    (the second came during the first) is answered first."""
    monkeypatch.setattr(scripts, "LAUNCH_SLICES", int(HOUR / 0.036))
    stream = Stream()
    started = tmp_path / "started"
    try:
        stream.launch(("slow", "sleep 5; echo slow"), ("slow2", f": >{started}; sleep 5"))
        wait_until(started.exists, what="the second slow launch")
        stream.launch(("quick", "echo quick"))
        stream.wait_for("the quick launch", lambda: "quick" in stream.launches)
        assert "slow" not in stream.launches and "slow2" not in stream.launches
        assert stream.launches["quick"] == (0, b"quick\n", b"")
        stream.wait_for("the slow launch", lambda: "slow" in stream.launches)
        assert stream.launches["slow"] == (0, b"slow\n", b"")
    finally:
        stream.close()


def test_a_launch_alone_is_waited_for_in_one_look(
    monkeypatch: pytest.MonkeyPatch, rare_looks: None, tmp_path: Path
) -> None:
    """A launch that came with none under way is waited for in one slice of the stream's look,
    stdin unread meanwhile (a host launching one task at a time looks at nothing else): with
    looks an hour apart, a command that comes during it is taken when it ends."""
    monkeypatch.setattr(scripts, "LAUNCH_SLICES", int(HOUR / 0.036))
    stream = Stream()
    started = tmp_path / "started"
    try:
        stream.launch(("slow", f": >{started}; sleep 2; echo slow"))
        wait_until(started.exists, what="the slow launch")
        stream.launch(("quick", "echo quick"))
        stream.wait_for("the quick launch", lambda: "quick" in stream.launches)
        assert list(stream.launches) == ["slow", "quick"]
        assert stream.launches["slow"] == (0, b"slow\n", b"")
    finally:
        stream.close()


def test_the_stream_ends_its_tail_and_relay(tmp_path: Path, stream: Stream) -> None:
    follow_one(stream, tmp_path)
    helpers = stream.helpers()
    assert len(helpers["bash"]) == 2, helpers  # the forwarder and the relay
    stream.close()
    started = {*helpers["tail"], *helpers["bash"]}
    wait_until(lambda: not set(live_pids()) & started, what="its helpers gone")


def test_a_stream_whose_forwarder_was_killed_ends(tmp_path: Path) -> None:
    """No command can come any more: the stream ends, as when the hub closes it (another
    stream's forwarder, of the same text, is not taken for its own)."""
    other = Stream()
    stream = Stream()
    try:
        follow_one(other, tmp_path / "other")
        assert stream.helpers()["bash"] == []  # commands on its own stdin until a task is watched
        follow_one(stream, tmp_path)
        forwarder = [
            pid
            for pid in stream.helpers()["bash"]
            if os.readlink(f"/proc/{pid}/fd/0").startswith("pipe:")  # the relay's is /dev/null
        ]
        assert len(forwarder) == 1
        os.kill(forwarder[0], 9)
        assert stream.proc.wait(30) == 0
        assert len(other.helpers()["bash"]) == 2  # the other stream's forwarder and relay
    finally:
        stream.close()
        other.close()


def test_the_forwarder_goes_on_in_new_files_and_the_stream_removes_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands (launches with their bash too) are never lost or cut across the forwarder's
    files, and only the file it writes now stays on disk."""
    monkeypatch.setattr(scripts, "FORWARD_FILE", 2000)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    stream = Stream(env=dict(os.environ))
    try:
        follow_one(stream, tmp_path)  # the forwarder takes the commands over from here
        for i in range(40):
            stream.send("-", f"gone{i}-" + "x" * 300)  # a leave of a key never joined
            stream.launch((f"l{i}", f"echo launch {i}; " + "# padding " * 30))
        stream.wait_for("every launch", lambda: len(stream.launches) == 40)
        assert all(
            stream.launches[f"l{i}"] == (0, f"launch {i}\n".encode(), b"") for i in range(40)
        )
        files = sorted(p.name for p in tmp_path.glob("dobby-stream.*/c.*"))
        assert len(files) == 1 and files[0] != "c.0", files  # 40 × ~650 bytes: many files
    finally:
        stream.close()


def test_a_task_printing_what_tail_prints_between_files_still_has_every_byte_sent(
    tmp_path: Path, stream: Stream
) -> None:
    """`tail` names a file when its output switches to it (==> PATH <==), and the stream reads
    only the files named: a task printing such lines makes it read every file instead."""
    task = tmp_path / "t"
    task.mkdir()
    (task / "out.jsonl").write_bytes(b"")
    stream.send("+", "k", "0", str(task))
    watched(stream)
    written = b""
    with (task / "out.jsonl").open("ab", buffering=0) as out:
        for i in range(20):
            line = f"\n==> /nowhere/{i}/out.jsonl <==\nline {i}\n".encode()
            if i % 3 == 0:
                line += b"==> /cut"  # a name that never ends
            out.write(line)
            written += line
            time.sleep(0.01)
    stream.wait_for("every byte", lambda: stream.data.get("k", b"") == written)


@pytest.mark.parametrize(
    ("shim", "starts"),
    [
        ("exit 1", scripts.WATCH_TRIES),  # no GNU tail: it dies each time
        # inotify refused: tail says so and polls; the stream's own looks are faster
        ('echo "tail: inotify cannot be used, reverting to polling" >&2; exec sleep 60', 1),
    ],
    ids=["tail-dies", "no-inotify"],
)
def test_without_a_tail_that_can_watch_the_stream_gives_up_and_keeps_its_own_looks(
    tmp_path: Path, shim: str, starts: int
) -> None:
    """A `tail` that dies is tried WATCH_TRIES times, one without inotify once (and stopped);
    lines still arrive, on the stream's own looks."""
    bin_dir, log = tmp_path / "bin", tmp_path / "tail.log"
    bin_dir.mkdir()
    (bin_dir / "tail").write_text(f"#!/bin/bash\necho $$ >>{log}\n{shim}\n")
    (bin_dir / "tail").chmod(0o755)
    stream = Stream(env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        task = tmp_path / "t"
        task.mkdir()
        (task / "out.jsonl").write_bytes(b"")
        stream.send("+", "k", "0", str(task))
        wait_until(lambda: log.exists(), what="a tail started")
        time.sleep(scripts.WATCH_AFTER + scripts.WATCH_TRIES + 1.5)  # a try a second, then none
        started = [int(pid) for pid in log.read_text().split()]
        assert len(started) == starts
        assert not [pid for pid in started if alive(pid)]  # the one without inotify was stopped
        with (task / "out.jsonl").open("ab") as out:
            out.write(b"still here\n")
        stream.wait_for("the line", lambda: stream.data.get("k") == b"still here\n")
    finally:
        stream.close()
