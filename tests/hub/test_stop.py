"""The hub's stop is bounded: no background loop can take its cancellation for a wake-up.

Python 3.11's ``asyncio.wait_for`` returns normally when the cancellation meets a wake-up (a
``kick()`` just before the stop): the loops that waited that way went on for ever, and the
hub's stop awaited them for ever (a hub that never logged "stopped" after SIGTERM).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dobby.core.aio import bounded, stop_task, wait_event
from dobby.core.config import load_settings
from dobby.hub.core import Hub
from tests.fixtures.hub import write_inventory

BOUND = 10.0  # far above a stop's real cost; main hung for ever here


def kick_everything(hub: Hub) -> None:
    """Wake every background loop of the hub, as busy hosts and tasks do all the time."""
    hub.scheduler.kick()
    hub.hosts._wake.set()
    hub.races.kick()
    hub.results._wake.set()
    hub.store._wake.set()
    hub.store._urgent.set()


@pytest.mark.parametrize("spins", [0, 1, 2, 3])
async def test_a_kick_just_before_the_stop_does_not_hang_it(
    tmp_path: Path, local_entry: dict[str, Any], spins: int
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    settings = load_settings(
        home=tmp_path / "home", overrides={"inventory": str(inventory)}, environ={}
    )
    hub = Hub(settings=settings)
    await hub.start()
    await asyncio.sleep(0.05)  # every loop waits for its next wake-up
    kick_everything(hub)
    for _ in range(spins):  # the wake-up reaches the loop's waiter, not the loop yet
        await asyncio.sleep(0)
    async with asyncio.timeout(BOUND):
        await hub.stop()


async def test_wait_event_lets_a_cancellation_through_a_wake_up() -> None:
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            event.clear()
            rounds += 1
            await wait_event(event, 0.05)

    job = asyncio.ensure_future(loop())
    await asyncio.sleep(0.01)
    for spins in range(3):
        event.set()
        for _ in range(spins):
            await asyncio.sleep(0)
        job.cancel()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(job, return_exceptions=True)
        assert job.cancelled()
        job = asyncio.ensure_future(loop())
        await asyncio.sleep(0.01)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)


async def test_wait_event_answers_whether_the_event_is_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, None) is True


async def test_a_job_that_ignores_cancellation_is_left_behind_not_awaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # what a swallowed cancellation looks like from outside

    job = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    assert await stop_task(job, timeout=0.05, what="stubborn") is False
    assert "did not stop within" in caplog.text and "stubborn" in caplog.text
    assert await bounded(asyncio.sleep(3600), timeout=0.05, what="a long step") is False
    assert await bounded(asyncio.sleep(0), timeout=1, what="a short step") is True
    release.set()
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
