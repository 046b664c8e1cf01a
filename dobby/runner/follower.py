"""Follow running tasks: their output by byte offset into the hub's copy, until proof ends them.

A follower never gives up on a task that may be alive. Every fault on the way — the host
dropping or refusing connections, a failed probe, the host leaving the inventory, the hub's
own disk full — is retried with backoff, and the copy catches up from the host's byte offset
afterwards. Only proof ends a task: its exit file (then it is collected), its tmux session
gone without one (``host_lost``), its timeout, or a person or the watchdog ending it.

Output arrives through the host's log stream (:mod:`dobby.runner.streams`: one long-lived
reader per host, frames with byte offsets) where the host has one; elsewhere, and for Slurm
jobs, it is polled by byte offset. Either way the copy is appended from its own size, so a
fault anywhere resumes with no gap and no duplicate. Liveness probes are batched per host.
Live output is appended to the copy on the event loop (a write to the page cache, no fsync);
a catch-up of more than INLINE_APPEND bytes, opening the copy and its fsync at the end run on
one writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dobby.core.aio import bounded, retrieved, stop_tasks, wait_event
from dobby.core.errors import TransportError
from dobby.core.models import Reason, Task, TaskStatus
from dobby.core.ports import GetTask, LimitHit, SaveTask, TaskRevision
from dobby.core.retry import Backoff, Retry
from dobby.core.timefmt import parse_time
from dobby.hostside import scripts
from dobby.machines.slurm.outcome import Action, job_outcome
from dobby.runner import verify
from dobby.runner.collector import Collector, Left, parse_exit
from dobby.runner.slurm import SlurmJobs, resubmits_left
from dobby.runner.streams import Feed, Frame, HostStreams, Probes
from dobby.store import tasklog
from dobby.store.tasklog import LogWriter, TaskLogs
from dobby.transport import Transport

log = logging.getLogger("dobby.runner")

READ_LIMIT = 1 << 20
TIMEOUT_GRACE = 30.0  # run.sh's own timeout(1) normally ends the task first
PROBE_EVERY = 5.0
# A streamed task's session is probed when its stream says its run.sh ended with no exit code
# (scripts.render_follow, G), and this often besides: for what the stream cannot see (a pid
# file never written, a pid taken again within a second). Every PROBE_EVERY, 1,000 running
# over 100 hosts cost a fork and a tmux client per host every 5 s: a fifth of a core of the
# hosts' and 5% of the hub's, nothing printed.
STREAMED_PROBE_EVERY = 30.0
STOPPING_PROBE_EVERY = 0.5  # a stopped agent ends within its grace: notice it soon
FAST_POLL = 0.02
FOLLOW_BACKOFF = Backoff(first=0.2, cap=5.0)  # after any fault while following
# Bytes appended on the event loop: a small write to the page cache costs ~10 us, while a hop
# to the writer thread and back waited for the GIL under load (p99 +7 ms on live lines).
INLINE_APPEND = 64 * 1024
CLOSE_WAIT = 0.5  # the followers get this long to end at a stop (tasks go on on their hosts)
# A streamed task is looked at this often when quiet (status, timeout): a cancel or a new
# launch of it pokes it at once, and so does its stream's word that its run.sh is gone. Once
# a second, 1,000 running tasks cost the hub 6% of a core of wake-ups and timers, nothing
# printed.
STREAM_WAKE = 5.0
ADOPT_PROBE_AFTER = 0.5  # an adopted streamed task's session is asked about this soon
STATUS_EVERY = 2.0  # ...and its record read again at most this often (a cancel pokes it)
# A task the hub keeps failing to follow or collect for a reason of its own side (not its
# host's, not a resource that frees up: those pass) ends failed once this many tries over at
# least this many seconds failed, where it stayed running for good.
FAULT_TRIES = 5
FAULT_PATIENCE = 10.0
GIVE_UP_STOP = 60.0  # seconds the stop of a run given up on may take
# The hub's disk full, or it out of descriptors or memory under load: they free up, so wait.
WAITS_OUT = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM)

Locate = Callable[[Task], Awaitable[tuple[Transport, scripts.TaskPaths]]]
Record = Callable[..., None]  # HostManager.record(name, ok=..., error=...)
Kill = Callable[[Task, Transport, scripts.TaskPaths], Awaitable[None]]


def next_poll(previous: float, idle: float) -> float:
    """Return the wait before the next read: fast while output flows, backing off when quiet.

    Each poll costs the host an SFTP round trip; doubling while idle keeps a host with dozens
    of quiet agents cheap, and any new output snaps back to FAST_POLL.
    """
    if idle < 0.5:
        return FAST_POLL  # output is flowing: the next line is likely close
    cap = 0.25 if idle < 60 else 1.0
    return min(cap, max(FAST_POLL, previous) * 2)


def host_phase(host: str) -> float:
    """Return where in each probe period a host's tasks probe, as a fraction of the period.

    Tasks of one host share a grid, so one command answers for all of them; each host has its
    own offset on it, so a hundred hosts' probes (and the wake-ups that go with them) spread
    over the period instead of landing on the event loop in the same instant.
    """
    return zlib.crc32(host.encode()) / 2**32


def probe_time(now: float, every: float, phase: float = 0.0) -> float:
    """Return the next point after ``now`` of the grid of step ``every`` shifted by ``phase``
    (a fraction of ``every``): the tasks of a host probe together (see streams.Probes)."""
    offset = phase * every
    return ((now - offset) // every + 1) * every + offset


class Ended(Exception):
    """Internal: the follow loop is done (the task ended or is no longer ours)."""


class Relaunched(Exception):
    """Internal: the task was launched again meanwhile (a retry): follow the new run afresh."""


class Uncollected(Exception):
    """Internal: collecting a run that ended raised (its ``__cause__``)."""

    def __init__(self, exit_code: int | None) -> None:
        super().__init__(f"collecting failed (exit code {exit_code})")
        self.exit_code = exit_code


def _cause(exc: Exception) -> BaseException:
    """Return what a fault is about: for a failed collection, what the collector raised."""
    return exc.__cause__ or exc if isinstance(exc, Uncollected) else exc


def _waited_out(exc: Exception) -> bool:
    """Return True for a fault that passes by itself: a host out of reach keeps the run's
    files, and a full disk or a hub out of descriptors or memory frees up."""
    cause = _cause(exc)
    return isinstance(cause, TransportError) or (
        isinstance(cause, OSError) and cause.errno in WAITS_OUT
    )


class Followers:
    """One follow loop per running task."""

    def __init__(
        self,
        *,
        logs: TaskLogs,
        get_task: GetTask,
        save: SaveTask,
        publish_log: Callable[[Task, dict[str, Any]], None],
        locate: Locate,
        record: Record,
        collector: Collector,
        kill: Kill,
        on_limit: LimitHit | None = None,
        revision: TaskRevision | None = None,
    ) -> None:
        self.logs = logs
        self._on_limit = on_limit
        self._get_task = get_task
        # Each follower looks at its task every STATUS_EVERY s and before each probe: with
        # ``revision`` it builds the task again only after a save (500 followed tasks spent
        # 14% of the hub's CPU building unchanged ones).
        self._revision = revision
        self._known: dict[str, tuple[object, Task]] = {}
        self._save = save
        self._publish_log = publish_log
        self._locate = locate
        self._record = record
        self._collector = collector
        self._kill = kill
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reading: dict[str, tuple[Transport, scripts.TaskPaths]] = {}  # follower's files
        self.slurm: SlurmJobs | None = None  # set by the runner: jobs on Slurm hosts
        # Cancelled tasks whose agent is being stopped, then collected (see Runner.cancel).
        self._stopping: set[str] = set()
        self._unsent: set[str] = set()  # ...whose stop did not reach the host yet
        self._adopting: set[str] = set()  # adopted, not yet reading (see adoption)
        # Faults of the hub's own side so far, per task: how many, since when (monotonic).
        self._faults: dict[str, tuple[int, float]] = {}
        self._adopted = asyncio.Event()
        self._adopted.set()
        # One thread for what may block: large catch-ups, fsyncs, opening and closing copies.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dobby-log")
        self._closed = False  # stopping: every loop ends at its next turn
        self.streams = HostStreams()  # the runner launches through them too
        self._probes = Probes(self.streams)  # on the streams, where hosts have them
        self._feeds: dict[str, Feed] = {}  # streamed tasks: poked when the hub's side changes

    def follow(self, task: Task, *, adopt: bool = False) -> None:
        """Start following a running task (``adopt``: after a hub restart or a fault)."""
        if self._closed:
            return
        if task.id in self._tasks and not self._tasks[task.id].done():
            feed = self._feeds.get(task.id)
            if feed is not None:
                feed.poke()  # it looks at the task now: a new launch of it is followed afresh
            return
        if adopt:
            self._adopting.add(task.id)
            self._adopted.clear()
        self._tasks[task.id] = asyncio.ensure_future(self._follow(task.id, adopt))

    async def adoption(self, limit: float) -> None:
        """Return once every adopted task reads its host again (or failed once), or after
        ``limit`` s.

        After a restart the first host probes wait for this: a probe (a login shell, the
        tools' versions) on every host at once took the CPU the streams needed to start. 500
        tasks on 20 loopback hosts flowed again 2.6-2.9 s after a restart, 1.2 s once the
        probes waited.
        """
        await wait_event(self._adopted, limit)

    def _reads_again(self, task_id: str) -> None:
        """Note that an adopted task reads its host again (or will not soon: it failed)."""
        if self._adopting:
            self._adopting.discard(task_id)
            if not self._adopting:
                self._adopted.set()

    def stop(self, task_id: str) -> None:
        """Stop following a task (it was killed on purpose)."""
        self._stopping.discard(task_id)
        self._unsent.discard(task_id)
        follower = self._tasks.pop(task_id, None)
        if follower is not None:
            follower.cancel()

    def cancel(self, task: Task) -> None:
        """Follow a cancelled task until its agent has stopped, then collect it."""
        self._stopping.add(task.id)
        self._unsent.add(task.id)
        self.follow(task, adopt=True)
        feed = self._feeds.get(task.id)
        if feed is not None:
            feed.poke()

    def stop_sent(self, task_id: str) -> None:
        """Note that the stop of a cancelled task reached its host."""
        self._unsent.discard(task_id)

    def hosts(self) -> dict[str, int]:
        """Return how many followed tasks each host has."""
        count: dict[str, int] = {}
        for task_id, follower in self._tasks.items():
            if not follower.done():
                try:
                    host = self._get_task(task_id).host or ""
                except Exception:  # noqa: BLE001 - deleted meanwhile
                    continue
                count[host] = count.get(host, 0) + 1
        return count

    @property
    def following(self) -> int:
        return sum(1 for f in self._tasks.values() if not f.done())

    async def close(self) -> None:
        """Stop every follower (tasks keep running on their hosts)."""
        self._closed = True
        await stop_tasks(self._tasks.values(), timeout=CLOSE_WAIT, what="the followers")
        await bounded(self.streams.close(), timeout=CLOSE_WAIT, what="the host log streams")
        # Appends still queued are dropped: a copy's size is its offset, so the next start
        # reads the rest from the host again.
        self._writer.shutdown(wait=False, cancel_futures=True)

    # -- the loop ------------------------------------------------------------------------
    async def _follow(self, task_id: str, adopt: bool) -> None:
        retry = Retry(FOLLOW_BACKOFF)
        try:
            while True:
                try:
                    await self._follow_once(task_id, adopt, retry)
                    return
                except Ended:
                    return
                except Relaunched:
                    adopt = False
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - anything may be passing: try again
                    self._reads_again(task_id)
                    if self._gives_up(task_id, exc):
                        with contextlib.suppress(Ended):
                            await self._give_up(task_id, exc)
                        return
                    wait = retry.next_delay() or FOLLOW_BACKOFF.cap
                    self._fault(task_id, exc, wait, retry.failures)
                    await asyncio.sleep(wait)
                    adopt = True  # look at its session soon: it may have ended meanwhile
        finally:
            self._reads_again(task_id)
            if self._tasks.get(task_id) is asyncio.current_task():
                self._tasks.pop(task_id, None)
                self._known.pop(task_id, None)
                self._faults.pop(task_id, None)
                self._stopping.discard(task_id)
                self._unsent.discard(task_id)
            reading = self._reading.pop(task_id, None)
            if reading is not None:
                # A retried or re-submitted task writes new files under the same names: a
                # handle kept on the old ones would read the previous attempt's output.
                transport, paths = reading
                for name in ("out.jsonl", "exit"):
                    transport.release(paths.file(name))

    def _fault(self, task_id: str, exc: Exception, wait: float, failures: int) -> None:
        """Log a fault while following (the first of a streak loudly) and note the host.

        A fault that is waited out is one line: every followed task meets it at once, and its
        traceback says nothing (a hub out of descriptors logged 40 lines per task).
        """
        cause = _cause(exc)
        if isinstance(cause, TransportError) and cause.host:
            self._record(cause.host, ok=False, error=str(cause).removeprefix(f"{cause.host}: "))
        if _waited_out(exc):
            level = logging.WARNING if failures == 1 else logging.DEBUG
            log.log(level, "following %s: %s; again in %.1fs", task_id, cause, wait)
        elif failures == 1:
            log.warning("following %s failed; again in %.1fs", task_id, wait, exc_info=exc)
        else:
            log.debug("following %s: %s; again in %.1fs", task_id, exc, wait)

    def _current(self, task_id: str, *, fresh: bool = True) -> Task:
        """Return the task while it is followed (else raise Ended).

        ``fresh=False``: the task read last, if no save came since — only for a look, never
        for a task about to be changed and saved.
        """
        if self._closed:  # a cancellation swallowed on the way (asyncssh's wait_for)
            raise Ended
        revision = self._revision(task_id) if self._revision is not None else None
        known = self._known.get(task_id)
        if not fresh and revision is not None and known is not None and known[0] is revision:
            task = known[1]
        else:
            task = self._get_task(task_id)
            if revision is not None:
                self._known[task_id] = (revision, task)
        if task.status == TaskStatus.RUNNING.value:
            return task
        if task.status == TaskStatus.CANCELLED.value and task_id in self._stopping:
            return task
        raise Ended

    async def _follow_once(self, task_id: str, adopt: bool, retry: Retry) -> None:
        # Opened on the loop, as live lines are appended: a mkdir and an open, where a hop to
        # the writer thread and back held the loop longer (the GIL handed over twice a task).
        with self.logs.writer(task_id) as sink:
            task = self._current(task_id)
            transport, paths = await self._locate(task)
            if not task.slurm_job:
                feed = await self.streams.join(
                    transport, task_id, paths.task_dir, sink.size, ran=adopt
                )
                if feed is not None:
                    self._feeds[task_id] = feed
                    try:
                        await self._streamed(task_id, sink, feed, adopt, retry)
                        return
                    finally:
                        if self._feeds.get(task_id) is feed:
                            del self._feeds[task_id]
                        self.streams.leave(feed)
            await self._polled(task_id, sink, adopt, retry)

    async def _streamed(
        self, task_id: str, sink: LogWriter, feed: Feed, adopt: bool, retry: Retry
    ) -> None:
        """Follow a task through its host's log stream until it ends."""
        self._reads_again(task_id)
        task = first = self._current(task_id)
        transport, paths = await self._locate(task)
        retry.reset()  # the host answered: its stream is up
        self._record(task.host or "", ok=True)
        checked = time.monotonic()
        phase = host_phase(task.host or "")
        # Adopted (after a restart or a fault): the session may have ended meanwhile, but the
        # stream first sends what the task wrote since (and its end, if it wrote an exit
        # code). Asked first, the host held that output back by a command's round trip,
        # over a second on a hub re-adopting 500 tasks.
        next_probe = (
            checked + ADOPT_PROBE_AFTER
            if adopt
            else probe_time(checked, STREAMED_PROBE_EVERY, phase)
        )
        pending = b""  # the start of a line not written whole yet: held here, not re-read
        # The session's probe runs beside the feed, not in its place: it waits for the host's
        # other tasks (PROBE_GATHER), then for its answer, and lines that came meanwhile waited
        # with it (for every task of the host).
        probing: asyncio.Future[dict[str, str] | None] | None = None
        try:
            while True:
                now = time.monotonic()
                if feed.poked or now - checked >= STATUS_EVERY:
                    feed.poked = False
                    task, checked = self._current(task_id, fresh=False), now
                    if (task.launch_id, task.started_at) != (first.launch_id, first.started_at):
                        raise Relaunched
                stopping = task_id in self._stopping
                if task_id in self._unsent:
                    await self._kill(task, transport, paths)
                    self._unsent.discard(task_id)
                every = STOPPING_PROBE_EVERY if stopping else STREAMED_PROBE_EVERY
                next_probe = min(next_probe, probe_time(now, every, phase))
                # A probe under way wakes the loop with its answer: until then, the next one's
                # time is no reason to look (one slower than the period would spin the loop).
                wait = STREAM_WAKE if probing else min(STREAM_WAKE, max(0.0, next_probe - now))
                frames = await feed.next(wait)
                if feed.asked:  # the stream saw its run.sh end with no exit code: ask now
                    feed.asked, next_probe = False, 0.0
                data, ended = self._joined(frames, sink.size + len(pending))
                if data:
                    pending = await self._append(task, sink, pending + data, final=False)
                if ended is not None:
                    task = self._current(task_id)
                    self._reading[task_id] = (transport, paths)
                    if ended.offset == sink.size + len(pending):
                        # The stream sent the file up to its end (run.sh writes exit after tee
                        # closed it): only a last line without its newline is left to write.
                        if pending:
                            await self._append(task, sink, pending, final=True)
                    else:
                        await self._catch_up(task, transport, paths, sink, final=True)
                    code = parse_exit(ended.exit or "")
                    await self._collect(
                        task,
                        transport,
                        paths,
                        sink,
                        code,
                        cancelled=stopping,
                        left=Left(stderr=ended.stderr, artifacts=ended.artifacts),
                    )
                    return
                now = time.monotonic()
                if probing is None and now >= next_probe:
                    next_probe = probe_time(now, every, phase)
                    task, checked = self._current(task_id, fresh=False), now
                    probing = asyncio.ensure_future(self._gone(task, transport, paths))
                    probing.add_done_callback(lambda _: feed.poke())  # its answer wakes the loop
                if probing is not None and probing.done():
                    gone, probing = probing.result(), None
                    if gone is not None:
                        self._reading[task_id] = (transport, paths)
                        task = self._current(task_id)
                        await self._ended_without_exit(task, transport, paths, sink, stopping, gone)
                        return
                if not stopping and self._timed_out(task):
                    await self._time_out(self._current(task_id), transport, paths)
                    return
        finally:
            if probing is not None and not probing.done():
                probing.cancel()
            elif probing is not None:
                retrieved(probing)  # the task ended: what its probe raised is of no use

    async def _ended_without_exit(
        self,
        task: Task,
        transport: Transport,
        paths: scripts.TaskPaths,
        sink: LogWriter,
        stopping: bool,
        state: dict[str, str],
    ) -> None:
        """End a task whose session is gone without an exit code (``state``: the probe's
        answer): cancelled, or lost."""
        if stopping:  # stopped for good before it could write its exit code
            await self._catch_up(task, transport, paths, sink, final=True)
            await self._collect(task, transport, paths, sink, None, cancelled=True)
        else:
            self._lost(task, paths, no_server=state.get("session") == scripts.NO_SERVER)

    @staticmethod
    def _joined(frames: list[Frame], expected: int) -> tuple[bytes, Frame | None]:
        """Return the bytes of ``frames`` from offset ``expected`` on, and the end frame if any.

        Raise TransportError on a gap: the follower then starts again from its copy's size.
        """
        parts: list[bytes] = []
        for frame in frames:
            if frame.offset != expected:
                raise TransportError(f"log stream jumped from byte {expected} to {frame.offset}")
            if frame.exit is not None:
                return b"".join(parts), frame
            parts.append(frame.data)
            expected += len(frame.data)
        return b"".join(parts), None

    async def _catch_up(
        self,
        task: Task,
        transport: Transport,
        paths: scripts.TaskPaths,
        sink: LogWriter,
        *,
        final: bool,
    ) -> None:
        """Read the host's out.jsonl from the copy's size to its end, by offset."""
        while True:
            data = await transport.read_from(paths.file("out.jsonl"), sink.size, READ_LIMIT)
            if data:
                await self._append(task, sink, data, final=final)
            if not data or len(data) < READ_LIMIT:
                return

    async def _time_out(self, task: Task, transport: Transport, paths: scripts.TaskPaths) -> None:
        await self._kill(task, transport, paths)
        self.finish(task, TaskStatus.FAILED, Reason.TIMEOUT, f"timed out after {task.timeout:g}s")

    async def _polled(self, task_id: str, sink: LogWriter, adopt: bool, retry: Retry) -> None:
        """Follow a task by reading its files by offset, fast while output flows."""
        self._reads_again(task_id)
        last_data = time.monotonic()
        interval = FAST_POLL
        last_probe = 0.0 if adopt else time.monotonic()
        draining = False  # exit seen: one more read, issued after it, gets the last lines
        while True:
            task = self._current(task_id)
            stopping = task_id in self._stopping
            transport, paths = await self._locate(task)
            self._reading[task_id] = (transport, paths)
            if task_id in self._unsent:
                await self._kill(task, transport, paths)
                self._unsent.discard(task_id)
            data, exit_text = await asyncio.gather(
                transport.read_from(paths.file("out.jsonl"), sink.size, READ_LIMIT),
                transport.read_from(paths.file("exit"), 0, 64),
            )
            if retry.failures:
                retry.reset()
            self._record(task.host or "", ok=True)
            now = time.monotonic()
            if data:
                await self._append(task, sink, data, final=draining)
                if len(data) >= READ_LIMIT:
                    continue
                last_data = now
                interval = FAST_POLL
            if exit_text is not None and exit_text.strip():
                if not draining:
                    draining = True
                    continue
                code = parse_exit(exit_text)
                await self._collect(task, transport, paths, sink, code, cancelled=stopping)
                return
            if task.slurm_job:
                if await self._slurm_ended(task, transport, paths, sink):
                    return
            elif now - last_probe >= (STOPPING_PROBE_EVERY if stopping else PROBE_EVERY):
                last_probe = now
                state = await self._gone(task, transport, paths)
                if state is not None:
                    await self._ended_without_exit(task, transport, paths, sink, stopping, state)
                    return
            if not stopping and self._timed_out(task):
                await self._time_out(task, transport, paths)
                return
            interval = next_poll(interval, now - last_data)
            await asyncio.sleep(interval)

    # -- the copy ------------------------------------------------------------------------
    async def _in_writer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the writer thread; a cancelled caller still waits for it to finish."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The file must not be closed under a write in flight (its fd could be reused).
            await asyncio.wait([future])
            raise

    async def _append(self, task: Task, sink: LogWriter, data: bytes, *, final: bool) -> bytes:
        """Append the whole lines of ``data`` to the hub's copy and publish their events;
        return the rest (a line not ended yet, unless ``final``)."""
        offset = sink.size
        if len(data) <= INLINE_APPEND:
            chunk = sink.append(data, final=final)
        else:
            chunk = await self._in_writer(sink.append, data, final=final)
        if chunk:
            if self._faults:  # the copy grows again: what failed before has passed
                self._faults.pop(task.id, None)
            events = tasklog.events(task.backend, chunk)
            self._publish_log(task, {"offset": offset, "next_offset": sink.size, "events": events})
        return data[len(chunk) :]

    # -- endings -------------------------------------------------------------------------
    def _timed_out(self, task: Task) -> bool:
        if not task.timeout or not task.started_at:
            return False
        started = parse_time(task.started_at).timestamp()
        limit = task.timeout + TIMEOUT_GRACE + verify.extra_seconds(task)
        return time.time() - started > limit

    async def _gone(
        self, task: Task, transport: Transport, paths: scripts.TaskPaths
    ) -> dict[str, str] | None:
        """Return the probe's answer if the task's session is gone without an exit code, else
        None (batched per host)."""
        state = await self._probes.probe(transport, paths)
        return None if state.get("session") == "1" or state.get("exit") else state

    async def _slurm_ended(
        self, task: Task, transport: Transport, paths: scripts.TaskPaths, sink: LogWriter
    ) -> bool:
        """Return True (and end the task) if its Slurm job ended and no exit file explains it."""
        info = self.slurm.ended(task.id) if self.slurm is not None else None
        if info is None or self.slurm is None:
            return False
        outcome = job_outcome(info, exit_code=None, resubmits_left=resubmits_left(task))
        if outcome.action is Action.COLLECT:  # the job's status is run.sh's (see job.sh)
            await self._collect(task, transport, paths, sink, outcome.exit_code)
        elif outcome.action in (Action.FINISH, Action.RESUBMIT):
            self.slurm.settle(task, outcome)
        else:
            return False
        return True

    def _lost(self, task: Task, paths: scripts.TaskPaths, *, no_server: bool) -> None:
        error = f"tmux session {paths.session} is gone and left no exit code on {task.host}"
        if no_server:  # every task of the host ends so: say why, not only that
            error += (
                "; no tmux server runs there any more (it crashed or was killed, and every "
                "session on it ended with it)"
            )
        self.finish(task, TaskStatus.FAILED, Reason.HOST_LOST, error)

    async def _collect(
        self,
        task: Task,
        transport: Transport,
        paths: scripts.TaskPaths,
        sink: LogWriter,
        exit_code: int | None,
        *,
        cancelled: bool = False,
        left: Left | None = None,
    ) -> None:
        if sink.dirty:  # a copy this hub wrote nothing to has nothing of its own to flush
            await self._in_writer(sink.sync)
        try:
            done = await self._collector.collect(
                task, transport, paths, exit_code, cancelled=cancelled, left=left
            )
        except Exception as exc:
            raise Uncollected(exit_code) from exc
        if done is None:
            return
        if cancelled:
            self._stopping.discard(task.id)
            self._save(done, "task.updated")  # still cancelled, now with what the run left
        elif (
            done.reason == Reason.USAGE_LIMIT.value
            and done.quota is not None
            and self._on_limit is not None
        ):
            await self._wait_out(done, transport, paths)
        else:
            self.finish(done, TaskStatus(done.status), None, done.error, keep_reason=True)

    def _gives_up(self, task_id: str, exc: Exception, now: float | None = None) -> bool:
        """Count a fault; return True once following the task should end in failure.

        A host out of reach keeps the run's files, and a full disk or a hub out of
        descriptors frees up: those are waited out. Anything else on the hub's side (a
        results directory that cannot be made, a bug) fails the same way every time, and
        ends the task after FAULT_TRIES over FAULT_PATIENCE s.
        """
        if _waited_out(exc):
            return False
        now = time.monotonic() if now is None else now
        faults, first = self._faults.get(task_id, (0, now))
        self._faults[task_id] = (faults + 1, first)
        return faults + 1 >= FAULT_TRIES and now - first >= FAULT_PATIENCE

    async def _give_up(self, task_id: str, exc: Exception) -> None:
        """End a task the hub cannot follow or collect: stopped if it may run, then failed."""
        cause = _cause(exc)
        faults = self._faults.get(task_id, (0, 0.0))[0]
        log.error("giving up on %s after %d tries", task_id, faults, exc_info=cause)
        task = self._current(task_id)
        stopping = task_id in self._stopping
        if isinstance(exc, Uncollected):
            task.exit_code = exc.exit_code
            ended = "its run ended"
            if exc.exit_code is not None:
                ended += f" with exit code {exc.exit_code}"
            failed = "collect its result"
        else:  # it may still run: left so, it would go on with nobody following it
            ended, failed = await self._stop_run(task), "follow its output"
        task.error = (
            f"{ended}: the hub could not {failed} ({faults} tries over "
            f"{FAULT_PATIENCE:g} s or more): {type(cause).__name__}: {cause}"
        )
        if stopping:
            self._save(task, "task.updated")  # it stays cancelled, with why nothing came back
        else:
            self.finish(task, TaskStatus.FAILED, Reason.COLLECT_ERROR, task.error)

    async def _stop_run(self, task: Task) -> str:
        """Stop a run the hub gives up on; return what became of it, for the task's error."""
        try:
            async with asyncio.timeout(GIVE_UP_STOP):
                transport, paths = await self._locate(task)
                await self._kill(task, transport, paths)
        except Exception as exc:  # noqa: BLE001 - the task ends failed all the same
            log.warning("stopping %s: %s", task.id, exc)
            return f"it could not be stopped ({exc or type(exc).__name__}) and may still run"
        return "it was stopped"

    async def _wait_out(self, task: Task, transport: Transport, paths: scripts.TaskPaths) -> None:
        """Hand a run a usage limit stopped to the hub: the task waits, it does not fail."""
        assert self._on_limit is not None
        try:
            self._on_limit(task)  # saves the task pending (waiting_on usage_limit)
        except Exception:  # noqa: BLE001 - a bad decision must not leave the task running
            log.exception("usage-limit handling of %s failed", task.id)
            self.finish(task, TaskStatus.FAILED, Reason.USAGE_LIMIT, task.error)
            return
        try:  # the next launch must not take this run's exit code for its own
            await transport.run(scripts.render_clear_run(paths=paths), timeout=30)
        except TransportError as exc:
            log.warning("could not clear the run files of %s: %s", task.id, exc)

    def finish(
        self,
        task: Task,
        status: TaskStatus,
        reason: Reason | None,
        error: str | None,
        *,
        keep_reason: bool = False,
    ) -> None:
        """End a task with ``status`` (and ``reason``, unless ``keep_reason``) and save it."""
        if not keep_reason:
            task.reason = reason.value if reason else None
        task.error = error
        task.end(status)
        self._save(task, "task.finished")
