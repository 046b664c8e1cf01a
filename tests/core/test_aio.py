"""Turns: work many tasks start at once runs in turns with the loop once its budget is spent."""

from __future__ import annotations

import asyncio

from dobby.core.aio import Turns


async def callers_through(turns: Turns, count: int) -> list[str]:
    """Let ``count`` tasks take a turn at once; return what ran in which order.

    After its turn, each caller schedules a callback as an answer read from a socket would be:
    whether it runs before the next caller's turn shows whether the loop got a turn between.
    """
    order: list[str] = []
    loop = asyncio.get_running_loop()

    async def caller(i: int) -> None:
        await turns.take()
        order.append(f"turn {i}")
        loop.call_soon(order.append, f"loop after {i}")

    await asyncio.gather(*(caller(i) for i in range(count)))
    await asyncio.sleep(0)
    return order


async def test_callers_past_the_budget_go_one_per_turn_of_the_loop() -> None:
    order = await callers_through(Turns(budget=0.0), 4)
    assert order == [x for i in range(4) for x in (f"turn {i}", f"loop after {i}")]


async def test_callers_within_the_budget_of_the_last_turn_go_at_once() -> None:
    turns = Turns(budget=3600.0)
    await turns.take()  # the first ever takes a turn
    order = await callers_through(turns, 3)
    assert order == ["turn 0", "turn 1", "turn 2", "loop after 0", "loop after 1", "loop after 2"]


async def test_a_cancelled_caller_does_not_hold_the_others() -> None:
    turns = Turns(budget=0.0)
    first = asyncio.ensure_future(turns.take())
    second = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)  # the first holds the turn, the second waits for it
    second.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(turns.take(), timeout=5)  # a cancelled waiter left no turn taken
