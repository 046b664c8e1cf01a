"""One log stream per host, and one liveness probe per host at a time.

A stream is one long-lived command on the host (:func:`scripts.render_follow`) that follows
every running task's out.jsonl there and sends what each file grew by, framed with the task
and the byte offset. The hub demultiplexes the frames into one :class:`Feed` per followed
task. A task joins at the offset of the hub's copy and leaves when it is done; a fault ends
the stream and fails every feed on it, and each follower joins a new one from its own copy's
offset, so nothing is lost or repeated. Frames carry offsets: a follower checks each against
its copy and resynchronises on any gap. Launches ride on the stream too (``L`` commands, see
:func:`scripts.render_follow`): one fork on the host each, not an SSH session.

:class:`Probes` batches liveness probes: the tasks of a host asking in the same moment
share one command (after a hub restart, one per host instead of one per task). That command
rides on the host's stream as a launch does, where there is one: one fork on the host, where
an exec costs sshd a session and a login shell (a launch: 8.6-9.5 against 9.5-10.5 ms of CPU
in all, bench/dispatch.py part 5).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dobby.core.aio import retrieved
from dobby.core.errors import ConnectionLost, TransportError
from dobby.hostside import scripts
from dobby.transport import RunResult, Transport
from dobby.transport.base import Stream

log = logging.getLogger("dobby.runner")

UNSUPPORTED_FOR = 60.0  # a host whose stream would not start is polled, and tried again later
PROBE_GATHER = 0.02  # seconds a probe waits for others of the same host to share its command
# Tasks per probe command: its text stays far below ARG_MAX, and its answer (~25 bytes a task)
# within what the stream sends back of a launch's output (LAUNCH_OUTPUT).
PROBE_BATCH = 100
PROBE_TIMEOUT = 20.0
# Seconds a probe on the stream may take before it is asked again by an exec (an answer comes
# in ms; a stream that does not answer is not left to hold every follower of its host).
STREAM_PROBE_TIMEOUT = 5.0
# Seconds a feed a launch joined waits for its task's follower (which comes within ms, unless
# the task was cancelled meanwhile): then it is left, so none is kept for ever.
JOINED_KEPT = 300.0


@dataclass(frozen=True)
class Frame:
    """What the stream said about one task: bytes from ``offset``, or its end."""

    offset: int
    data: bytes = b""
    exit: str | None = None  # the exit file's text: the task ended, its output all sent
    # With ``exit``: did the run leave anything in its artifacts directory, a non-empty err.log?
    artifacts: bool = True
    stderr: bool = True


class Feed:
    """One task's frames, in order, or the fault that ended its stream."""

    def __init__(self, *, key: str, stream: HostStream) -> None:
        self.key = key
        self.stream = stream
        self._frames: list[Frame] = []
        self._error: TransportError | None = None
        self._wake = asyncio.Event()
        self.poked = False  # the hub's side changed (a cancel): look at the task again
        self.asked = False  # the host's side changed (its run.sh is gone): probe the session

    def put(self, frame: Frame) -> None:
        """Queue a frame."""
        self._frames.append(frame)
        self._wake.set()

    def fail(self, error: TransportError) -> None:
        """End the feed: its stream is gone."""
        self._error = error
        self._wake.set()

    def poke(self) -> None:
        """Wake the follower now (something changed on the hub's side)."""
        self.poked = True
        self._wake.set()

    def ask(self) -> None:
        """Wake the follower to probe its task's session now (its run.sh ended, no exit code)."""
        self.asked = True
        self._wake.set()

    async def next(self, timeout: float) -> list[Frame]:
        """Return the frames queued, waiting up to ``timeout`` for one; raise the stream's fault."""
        if not self._frames and self._error is None:
            if timeout <= 0:
                await asyncio.sleep(0)  # a caller looping on it still lets the loop turn
            else:
                try:
                    async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for
                        await self._wake.wait()
                except TimeoutError:
                    pass
        self._wake.clear()
        frames, self._frames = self._frames, []
        if not frames and self._error is not None:
            raise self._error
        return frames


class HostStream:
    """The stream of one transport: writes commands, reads frames into feeds."""

    def __init__(self, *, transport: Transport, stream: Stream) -> None:
        self.transport = transport
        self.feeds: dict[str, Feed] = {}
        self.launches: dict[str, asyncio.Future[RunResult]] = {}
        # task id -> the feed its launch joined (see HostStreams.launch), until its follower
        # takes it: (feed, task dir, offset, when)
        self.joined: dict[str, tuple[Feed, str, int, float]] = {}
        self.error: TransportError | None = None
        self._stream = stream
        self._reader: asyncio.Task[None] | None = None
        # Commands sent in this turn of the loop after its first, written at its end; None: no
        # command went out in this turn yet.
        self._out: list[bytes] | None = None

    def start(self) -> None:
        """Start reading frames."""
        self._reader = asyncio.ensure_future(self._read())

    def send(self, op: str, *words: str) -> None:
        """Send one command; a stream already gone fails the caller's feed soon."""
        self._send(scripts.stream_command(op, *words))

    def _send(self, data: bytes) -> None:
        """Write a command: the first of a turn of the event loop at once, the others of that
        turn together at its end.

        After a restart the 500 followers of 20 hosts join in the same turns: two SSH packets
        per host instead of one per task, on the hub, in sshd and in the stream, which reads
        them in one round instead of waking for each. A launch alone in its turn waits for
        nothing. A fault in the write ends the stream, which fails the feeds and launches that
        were waiting on it.
        """
        if self.error is not None:
            return
        if self._out is not None:
            self._out.append(data)
            return
        self._out = []
        asyncio.get_running_loop().call_soon(self._flush)
        self._write(data)

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out:
            self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self._stream.write(data)
        except TransportError as exc:
            self._end(exc)

    async def launch(self, key: str, command: str, follow: str = "") -> RunResult:
        """Run ``command`` as a launch in a subshell of the stream (see render_follow).

        ``follow`` (``FKEY OFFSET TASK_DIR``): the stream follows that task once the launch
        exits 0.
        """
        answer: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self.launches[key] = answer
        try:
            text = command.encode("utf-8", "surrogateescape")
            words = (key, str(len(text)), *((follow,) if follow else ()))
            self._send(scripts.stream_command("L", *words) + text)
            if self.error is not None:
                raise self.error
            return await answer
        finally:
            self.launches.pop(key, None)

    async def _read(self) -> None:
        host = self.transport.host.name
        try:
            while True:
                head = await self._stream.readline()
                if not head.endswith(b"\n"):
                    raise ConnectionLost("log stream ended", host=host)
                kind, key, offset, rest = head.decode("utf-8", "replace").rstrip("\n").split(" ", 3)
                if kind == "D":
                    data = await self._stream.readexactly(int(rest))
                    feed = self.feeds.get(key)
                    if feed is not None:
                        feed.put(Frame(int(offset), data))
                elif kind == "X":
                    feed = self.feeds.pop(key, None)
                    if feed is not None:
                        artifacts, stderr, code = rest.split(" ", 2)
                        feed.put(
                            Frame(
                                int(offset),
                                exit=code,
                                artifacts=artifacts == "1",
                                stderr=stderr == "1",
                            )
                        )
                elif kind == "G":
                    feed = self.feeds.get(key)
                    if feed is not None:
                        feed.ask()
                elif kind == "L":
                    out_len, err_len = (int(n) for n in rest.split(" "))
                    out = await self._stream.readexactly(out_len)
                    err = await self._stream.readexactly(err_len)
                    answer = self.launches.pop(key, None)
                    if answer is not None and not answer.done():
                        answer.set_result(
                            RunResult(
                                exit_status=int(offset),
                                stdout=out.decode("utf-8", "replace"),
                                stderr=err.decode("utf-8", "replace"),
                            )
                        )
                else:
                    raise TransportError(f"log stream said {head[:80]!r}", host=host)
        except asyncio.CancelledError:
            raise
        except TransportError as exc:
            self._end(exc)
        except Exception as exc:  # noqa: BLE001 - a frame it could not parse ends the stream
            self._end(TransportError(f"log stream: {exc!r}", host=host))

    def _end(self, error: TransportError) -> None:
        if self.error is None:
            self.error = error
        for feed in self.feeds.values():
            feed.fail(error)
        self.feeds.clear()
        for answer in self.launches.values():
            if not answer.done():
                answer.set_exception(error)
        self.launches.clear()

    async def close(self) -> None:
        """End the stream on the host and stop reading."""
        self._end(ConnectionLost("log stream closed", host=self.transport.host.name))
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._stream.close()


class HostStreams:
    """One :class:`HostStream` per transport, started on first use."""

    def __init__(self) -> None:
        self._streams: dict[Transport, HostStream] = {}
        self._starting: dict[Transport, asyncio.Future[HostStream | None]] = {}
        self._unsupported: dict[Transport, float] = {}
        self._keys = itertools.count(1)
        self._closed = False

    async def join(
        self, transport: Transport, task_id: str, task_dir: str, offset: int, *, ran: bool = False
    ) -> Feed | None:
        """Follow a task's out.jsonl from ``offset``; None when this host cannot stream.

        A task whose launch joined it already (see :meth:`launch`) gets that feed, frames
        and all, when it is the same file from the same offset on the stream still up.
        ``ran``: the task has run a while (adopted, or joined again after a fault): the
        stream watches it with `tail -F` as soon as its host's joins are in, without the
        fast looks of a task just started (see render_follow's ``W``).
        """
        stream = await self._stream(transport)
        if stream is None:
            return None
        joined = stream.joined.pop(task_id, None)
        if joined is not None:
            feed, joined_dir, joined_offset, _ = joined
            if (joined_dir, joined_offset) == (task_dir, offset):
                return feed
            self.leave(feed)
        feed = self._feed(stream, task_id)
        stream.send("W" if ran else "+", feed.key, str(int(offset)), task_dir)
        if stream.error is not None:
            feed.fail(stream.error)
        return feed

    async def launch(
        self,
        transport: Transport,
        command: str,
        *,
        follow: tuple[str, str, int] | None = None,
    ) -> RunResult | None:
        """Run a launch through the host's stream, or return None having sent nothing.

        None: this host cannot stream, or its stream would not start (the launch then goes
        another way, which meets the same fault if there is one). TransportError: the launch
        may have reached the host and its answer was lost with the stream.

        ``follow`` (task id, task dir, offset): a launch that exits 0 joins that task on the
        stream as well, and :meth:`join` hands its feed to the task's follower: a task
        started costs no command of its own to join (one SSH write fewer per task, on the
        hub, in sshd and in the stream).
        """
        try:
            stream = await self._stream(transport)
        except TransportError:
            return None
        if stream is None:
            return None
        if follow is None:
            return await stream.launch(f"L{next(self._keys)}", command)
        task_id, task_dir, offset = follow
        feed = self._feed(stream, task_id)
        try:
            res = await stream.launch(
                f"L{next(self._keys)}", command, f"{feed.key} {int(offset)} {task_dir}"
            )
        except BaseException:
            stream.feeds.pop(feed.key, None)  # an answer lost: the follower joins as it would
            raise
        if res.exit_status != 0:
            stream.feeds.pop(feed.key, None)  # the stream follows only a launch that exits 0
            return res
        now = time.monotonic()
        for stale in [t for t, j in stream.joined.items() if now - j[3] > JOINED_KEPT]:
            self.leave(stream.joined.pop(stale)[0])  # its follower never came for it
        old = stream.joined.get(task_id)
        if old is not None:
            self.leave(old[0])
        stream.joined[task_id] = (feed, task_dir, int(offset), now)
        return res

    def _feed(self, stream: HostStream, task_id: str) -> Feed:
        """Return a new feed of ``stream`` for a task, under a key never used before."""
        key = f"{task_id}.{next(self._keys)}"  # a rejoin never receives the old frames
        feed = Feed(key=key, stream=stream)
        stream.feeds[key] = feed
        return feed

    def leave(self, feed: Feed) -> None:
        """Stop following a feed's task (its frames still on the way are dropped)."""
        if feed.stream.feeds.pop(feed.key, None) is not None:
            feed.stream.send("-", feed.key)

    def warm(self, transport: Transport) -> None:
        """Start the host's stream now if none is up or starting, without waiting for it.

        For a transport about to connect: the stream's channel then opens as soon as the SSH
        handshake is done, beside the identity probe (see SshTransport.open_stream), where
        its first user would open it only after the probe. A start that fails is started
        again by the next user, who sees its fault.
        """
        starting = None if self._closed else self._starts(transport)
        if starting is not None:
            starting.add_done_callback(retrieved)

    async def _stream(self, transport: Transport) -> HostStream | None:
        stream = self._streams.get(transport)
        if stream is not None and stream.error is None:
            return stream
        starting = self._starts(transport)
        return None if starting is None else await asyncio.shield(starting)

    def _starts(self, transport: Transport) -> asyncio.Future[HostStream | None] | None:
        """Return the start of the host's stream under way, begun now if there is none;
        None when the host cannot stream (or its stream is up: see _stream)."""
        stream = self._streams.get(transport)
        if stream is not None:
            if stream.error is None:
                return None
            self._streams.pop(transport, None)
            asyncio.ensure_future(stream.close())
        until = self._unsupported.get(transport)
        if not transport.streams or (until is not None and time.monotonic() < until):
            return None
        starting = self._starting.get(transport)
        if starting is None:
            starting = asyncio.ensure_future(self._start(transport))
            self._starting[transport] = starting
            starting.add_done_callback(lambda _: self._starting.pop(transport, None))
        return starting

    async def _start(self, transport: Transport) -> HostStream | None:
        if self._closed:
            raise ConnectionLost("the hub is stopping", host=transport.host.name)
        remote = await transport.open_stream(scripts.render_follow())
        try:
            ready = await asyncio.wait_for(remote.readline(), PROBE_TIMEOUT)
        except BaseException:
            await remote.close()
            raise
        if ready.rstrip(b"\n") != scripts.FOLLOW_READY:
            await remote.close()
            if ready:  # something answered, but not our reader: this host is polled
                log.warning(
                    "%s: log stream did not start (%r); polling its tasks",
                    transport.host.name,
                    ready[:200],
                )
                self._unsupported[transport] = time.monotonic() + UNSUPPORTED_FOR
                return None
            raise ConnectionLost("log stream ended at its start", host=transport.host.name)
        stream = HostStream(transport=transport, stream=remote)
        stream.start()
        self._streams[transport] = stream
        self._unsupported.pop(transport, None)
        return stream

    async def close(self) -> None:
        """End every stream."""
        self._closed = True
        streams, self._streams = list(self._streams.values()), {}
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)


_Asker = tuple[scripts.TaskPaths, "asyncio.Future[dict[str, str]]"]


class Probes:
    """Liveness probes, batched per host: one command answers for every task asking at once.

    The command goes through the host's stream (``streams``) where it can, else as an exec.
    """

    def __init__(self, streams: HostStreams | None = None) -> None:
        self._waiting: dict[Transport, list[_Asker]] = {}
        self._streams = streams

    async def probe(self, transport: Transport, paths: scripts.TaskPaths) -> dict[str, str]:
        """Return ``{"session", "started", "exit"}`` of a task; raise TransportError on faults."""
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        batch = self._waiting.get(transport)
        if batch is None:
            batch = self._waiting[transport] = []
            asyncio.ensure_future(self._run(transport))
        batch.append((paths, future))
        return await future

    async def _run(self, transport: Transport) -> None:
        await asyncio.sleep(PROBE_GATHER)
        batch = self._waiting.pop(transport, [])
        for start in range(0, len(batch), PROBE_BATCH):
            part = batch[start : start + PROBE_BATCH]
            try:
                await self._one(transport, part)
            except Exception as exc:  # noqa: BLE001 - every asker gets the fault
                error = (
                    exc
                    if isinstance(exc, TransportError)
                    else TransportError(f"liveness probe failed: {exc!r}", host=transport.host.name)
                )
                for _, future in part:
                    if not future.done():
                        future.set_exception(error)

    async def _one(self, transport: Transport, part: Sequence[_Asker]) -> None:
        command = scripts.render_probe_many([paths for paths, _ in part])
        states = await self._on_stream(transport, command, {paths.task_id for paths, _ in part})
        if states is not None:
            for paths, future in part:
                if not future.done():
                    future.set_result(states[paths.task_id])
            return
        res = await transport.run(command, timeout=PROBE_TIMEOUT)
        states = scripts.parse_probe_many(res.stdout) if res.ok else {}
        for paths, future in part:
            state = states.get(paths.task_id)
            if future.done():
                continue
            if state is None:
                future.set_exception(
                    TransportError(
                        f"liveness probe failed (exit {res.exit_status}): "
                        f"{res.stderr.strip()[-300:]}",
                        host=transport.host.name,
                    )
                )
            else:
                future.set_result(state)

    async def _on_stream(
        self, transport: Transport, command: str, ids: set[str]
    ) -> dict[str, dict[str, str]] | None:
        """Run a probe through the host's stream; None when it gave no whole answer.

        None sends the probe as an exec, which answers as it always did: the host cannot
        stream, its stream failed or did not answer in time, the probe failed, or its answer
        lacks a task (cut to LAUNCH_OUTPUT by an odd exit file). A probe only reads, so one
        that ran anyway does no harm.
        """
        if self._streams is None:
            return None
        try:
            async with asyncio.timeout(STREAM_PROBE_TIMEOUT):
                res = await self._streams.launch(transport, command)
        except (TransportError, TimeoutError):
            return None
        if res is None or not res.ok:
            return None
        states = scripts.parse_probe_many(res.stdout)
        return states if ids <= states.keys() else None
