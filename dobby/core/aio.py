"""Wait and stop in asyncio with a bound, never mistaking a cancellation for a wake-up.

Python 3.11's ``asyncio.wait_for`` returns the inner result when the cancellation arrives just
as the inner awaitable finishes (asyncssh's ``run(timeout=...)`` uses it too). A background loop
waiting with ``wait_for(event.wait(), t)`` that is cancelled right after a ``kick()`` takes the
cancellation for the kick and goes on for good; whoever awaits it to stop — the hub's stop —
waits for ever. So loops wait with :func:`wait_event`, end on a flag of their own as well as on
cancellation, and every stop is bounded with :func:`stop_task` / :func:`bounded`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

log = logging.getLogger("dobby.core.aio")


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; return whether it is set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)  # lets a cancellation through, always
    finally:
        waiter.cancel()
    return event.is_set()


def retrieved(future: asyncio.Future[Any]) -> None:
    """Done-callback for a future nobody awaits: its fault is retrieved (no "never
    retrieved" warning); whoever needs the outcome asks again and meets the fault anew."""
    if not future.cancelled():
        future.exception()


async def stop_task(task: asyncio.Future[Any] | None, *, timeout: float, what: str) -> bool:
    """Cancel ``task`` and wait at most ``timeout`` s for it to end; return whether it ended."""
    if task is None:
        return True
    return await stop_tasks([task], timeout=timeout, what=what)


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]], *, timeout: float, what: str) -> bool:
    """Cancel ``tasks`` and wait at most ``timeout`` s for all of them; return whether they ended.

    One that is still running afterwards is logged with where it waits, and left behind.
    """
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=timeout)
    for task in tasks:
        if task.done():
            retrieved(task)  # an error on the way out is no "never retrieved"
    if pending:
        log.error(
            "%s: %d job(s) did not stop within %gs:%s", what, len(pending), timeout, stacks(pending)
        )
        return False
    return True


async def bounded(step: Awaitable[Any], *, timeout: float, what: str) -> bool:
    """Await ``step`` for at most ``timeout`` s (then cancel it); return whether it finished.

    An error in the step is logged, not raised: a stop goes on with its next step.
    """
    job = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({job}, timeout=timeout)
    if not done:
        await stop_task(job, timeout=0.2, what=what)
        log.error("%s took longer than %gs: cut short", what, timeout)
        return False
    if not job.cancelled() and (exc := job.exception()) is not None:
        log.error("%s failed", what, exc_info=exc)
    return True


def stacks(tasks: Iterable[asyncio.Future[Any]]) -> str:
    """Return where each of ``tasks`` waits (for a log line about a stop that hangs)."""
    out = io.StringIO()
    for task in tasks:
        out.write("\n")
        if isinstance(task, asyncio.Task):
            task.print_stack(limit=8, file=out)
        else:
            out.write(repr(task))
    return out.getvalue()


class Turns:
    """Let callers through one per turn of the loop, except within ``budget`` of the last turn.

    Work that many tasks start at once (a batch's first launches) would otherwise run in one
    go, and nothing the loop has to read — their answers — is read until the last one ran.
    Taking turns, the loop polls its I/O between two of them. A caller that finds no one
    waiting within ``budget`` seconds of the last turn goes at once: work that comes one at a
    time does not wait for the loop.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self._lock = asyncio.Lock()
        self._last = float("-inf")  # when the last turn was taken

    async def take(self) -> None:
        """Return when it is this caller's turn."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last < self.budget and not self._lock.locked():
            return
        async with self._lock:
            await asyncio.sleep(0)  # the next caller waits for this turn of the loop to end
        self._last = loop.time()
