"""What lives through a full collection of the hub's heap is left out of the next ones, and a
reference cycle frozen alive is still freed once it is garbage (dobby.hub.heap)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dobby.hub.heap import OldHeap


class Node:
    """An object in a reference cycle (itself): only the collector can free it."""

    def __init__(self) -> None:
        self.me = self


@contextmanager
def started(loop: asyncio.AbstractEventLoop | None = None) -> Iterator[OldHeap]:
    """An OldHeap started on a collected heap; the collector as it was afterwards."""
    enabled = gc.isenabled()
    gc.collect()
    old = OldHeap()
    old.start(loop)
    try:
        yield old
    finally:
        old.stop()
        gc.unfreeze()
        gc.collect()
        if not enabled:
            gc.disable()


@pytest.fixture
def heap() -> Iterator[OldHeap]:
    with started() as old:
        yield old


def test_what_lived_through_a_full_collection_is_not_walked_by_the_next(heap: OldHeap) -> None:
    kept = [[i] for i in range(20_000)]  # long-lived, like a running task's objects
    gc.collect()
    # The collector's generations hold what came since, not the 20,000 lists (nor the rest
    # of this process): a full collection walks only that.
    assert len(gc.get_objects()) < 5_000
    assert gc.get_freeze_count() >= heap.base >= 20_000
    made = [[i] for i in range(1_000)]
    assert len(gc.get_objects()) >= len(made)  # what is new is collected as usual
    del kept, made


def test_a_cycle_frozen_alive_is_freed_once_the_frozen_heap_grew(heap: OldHeap) -> None:
    nodes = [Node() for _ in range(100)]
    refs = [weakref.ref(n) for n in nodes]
    gc.collect()  # they live through it: frozen
    del nodes  # garbage now, each a cycle of its own
    gc.collect()
    assert all(r() is not None for r in refs)  # no collection looks at what is frozen...
    assert heap.walks == 1
    grown = [[i] for i in range(int(heap.base * heap.regrow) + 1_000)]
    gc.collect()  # ...until the frozen part grew by more than regrow
    assert all(r() is not None for r in refs)
    gc.collect()  # this one walks everything
    assert all(r() is None for r in refs)
    assert heap.walks == 2
    assert heap.base >= len(grown)  # what lives on is frozen again
    del grown


def test_a_stopped_heap_freezes_nothing_more(heap: OldHeap) -> None:
    heap.stop()
    frozen = gc.get_freeze_count()
    kept = [[i] for i in range(5_000)]
    gc.collect()
    assert gc.get_freeze_count() == frozen
    del kept


async def test_a_walk_of_everything_runs_on_the_loop_as_soon_as_it_is_due() -> None:
    """Not at the collector's next full collection, which may come in some request much later."""
    with started(asyncio.get_running_loop()) as heap:
        nodes = [Node() for _ in range(100)]
        refs = [weakref.ref(n) for n in nodes]
        gc.collect()  # they live through it: frozen
        del nodes  # garbage now, each a cycle of its own
        grown = [[i] for i in range(int(heap.base * heap.regrow) + 1_000)]
        gc.collect()  # the frozen part grew by more than regrow: a walk is due
        assert heap.walks == 1
        assert all(r() is not None for r in refs)
        await asyncio.sleep(0)  # one turn of the loop, no collection of the test's own
        assert heap.walks == 2
        assert all(r() is None for r in refs)
        assert heap.base >= len(grown)
        del grown
