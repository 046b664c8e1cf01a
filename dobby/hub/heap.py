"""The hub's heap and the garbage collector: what has lived through a full collection is left
out of the next ones, and looked at again only once that part of the heap grew by half.

With 1,000 tasks running the hub holds ~85,000 objects the collector tracks (their models,
coroutines, timers, log writers), nearly all of them there for as long as their task runs. A
full collection walked every one of them each time the heap had grown by a quarter: 46-77 ms
of CPU, every half minute or so, a pause of the whole hub in the middle of whatever request it
was serving (the slowest answers of `bench/hosts100.py`). Frozen after each full collection
(``gc.freeze``), they are no longer walked; the next full collections walk only what came since.

What a frozen object is part of when it becomes garbage is freed by reference counting as
always; only a reference cycle through it waits (no collection looks at it) until the frozen
heap has grown by REGROW over its size after the last full walk: the next full collection then
walks everything once more. So cyclic garbage is bounded by half of what the last such walk
left, never lost for good (the start's frozen heap is walked too, then: 100-210 ms once, after
a burst of 1,000 submits, where the default collector made several 50-140 ms pauses of it).

That walk is made on the hub's event loop as soon as it is due, in the burst that grew the
heap: left to the collector's own count, it came tens of seconds later, in whatever request
happened to allocate then (113 ms of CPU inside a `POST /tasks` of `bench/hosts100.py`, 27 s
after it came due amid its 1,000 submits). A request that comes during the walk still waits.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

REGROW = 0.5  # growth of the frozen heap (a fraction of it) that brings a walk of all of it


class OldHeap:
    """Keep what survives full collections out of later ones (see the module's docstring)."""

    def __init__(self, regrow: float = REGROW) -> None:
        self.regrow = regrow
        self.base = 0  # objects frozen after the last walk of everything
        self.walks = 0  # full collections that walked everything (the start's included)
        self._walking = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Freeze what exists now (the hub just built) and collect from then on.

        With ``loop``, a walk of everything runs on it as soon as it is due (see the module).
        """
        self._loop = loop
        # Frozen without a collection first: the cycles the start left (1,230 objects,
        # restarted with 500 tasks) stay, once, where collecting them took 23-25 ms of the
        # restart; the first walk of everything frees them.
        gc.freeze()
        self.base = gc.get_freeze_count()
        self.walks = 1
        if self._collected not in gc.callbacks:
            gc.callbacks.append(self._collected)
        gc.enable()

    def stop(self) -> None:
        """Stop freezing survivors (what is frozen stays so: the process is ending)."""
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        # Called by the collector itself, in whichever thread made it collect: gc.freeze and
        # gc.unfreeze only move the collector's lists, and the young generations are empty
        # right after a full collection, so what is frozen here is what survived it.
        if phase != "stop" or info["generation"] != 2:
            return
        gc.freeze()
        if self._walking:  # this one walked everything
            self._walking = False
            self.walks += 1
            self.base = gc.get_freeze_count()
        elif gc.get_freeze_count() > self.base * (1 + self.regrow):
            # Back with the rest: the next full collection (soon: the collector counts the
            # oldest generation as it was before this) walks all of it.
            gc.unfreeze()
            self._walking = True
            if self._loop is not None:
                try:  # not from here: the collector is running, and may be in any thread
                    self._loop.call_soon_threadsafe(self._walk)
                except RuntimeError:  # the loop is closed: the next full collection walks
                    pass

    def _walk(self) -> None:
        if self._walking:  # the collector did not walk everything meanwhile
            gc.collect()
