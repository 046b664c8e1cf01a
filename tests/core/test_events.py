"""Tests for dobby.events: numbering, cursors, waiting, listeners and SSE framing."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest

from dobby.core.events import Event, EventBus, EventType


def test_vocabulary_is_flat_and_dotted() -> None:
    assert {e.value for e in EventType} == {
        "task.created",
        "task.updated",
        "task.started",
        "task.log",
        "task.finished",
        "task.queued",
        "task.retried",
        "task.approved",
        "task.awaiting_approval",
        "task.stale",
        "schedule.created",
        "schedule.updated",
        "schedule.deleted",
        "batch.created",
        "race.created",
        "race.updated",
        "race.finished",
        "project.updated",
        "host.updated",
        "gpus.updated",
        "inventory.reloaded",
        "inventory.error",
        "project.created",
        "hub.started",
        "account.limited",
        "account.resumed",
    }


def test_seq_is_monotonic_and_continues_from_start() -> None:
    bus = EventBus(start_seq=41)
    assert bus.last_seq == 41
    a = bus.publish(EventType.TASK_CREATED, task_id="t1", data={"x": 1})
    b = bus.publish("task.updated", task_id="t1")
    assert (a.seq, b.seq) == (42, 43)
    assert bus.last_seq == 43
    assert a.type == "task.created" and type(a.type) is str
    assert b.data == {}
    assert a.ts.endswith("Z")


def test_unknown_type_is_rejected() -> None:
    bus = EventBus()
    with pytest.raises(ValueError):
        bus.publish("task.craeted")
    assert bus.last_seq == 0


def test_since_filters_by_seq_and_task() -> None:
    bus = EventBus()
    for i in range(10):
        bus.publish(EventType.TASK_LOG, task_id=f"t{i % 2}", data={"i": i})
    assert [e.seq for e in bus.since(7)] == [8, 9, 10]
    assert [e.seq for e in bus.since(0, task_id="t1")] == [2, 4, 6, 8, 10]
    assert [e.seq for e in bus.since(5, task_id="t0")] == [7, 9]
    assert bus.since(10) == []
    assert bus.since(99) == []


def test_ring_buffer_overflow_and_oldest_seq() -> None:
    bus = EventBus(capacity=5)
    assert bus.oldest_seq == 1 and not bus.missed(0)
    for _ in range(12):
        bus.publish(EventType.HOST_UPDATED)
    assert bus.oldest_seq == 8
    assert [e.seq for e in bus.since(0)] == [8, 9, 10, 11, 12]
    assert bus.missed(0) and bus.missed(6)
    assert not bus.missed(7) and not bus.missed(12)


def test_restart_gap_is_detectable() -> None:
    bus = EventBus(start_seq=500)
    assert bus.oldest_seq == 501
    assert bus.missed(10)  # a client from the previous run lost events 11..500
    assert not bus.missed(500)


async def test_wait_returns_immediately_if_newer_exists() -> None:
    bus = EventBus()
    bus.publish(EventType.HUB_STARTED)
    assert await bus.wait(0, timeout=5) is True


async def test_wait_wakes_on_publish() -> None:
    bus = EventBus()
    waiter = asyncio.create_task(bus.wait(0, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    loop = asyncio.get_running_loop()
    started = loop.time()
    bus.publish(EventType.TASK_STARTED, task_id="t1")
    assert await waiter is True
    assert loop.time() - started < 1
    assert bus.waiters == 0


async def test_wait_times_out() -> None:
    bus = EventBus()
    assert await bus.wait(0, timeout=0.02) is False


async def test_no_waiter_leak_after_timeouts_and_cancels() -> None:
    bus = EventBus()
    await asyncio.gather(*(bus.wait(0, timeout=0.01) for _ in range(200)))
    assert bus.waiters == 0
    tasks = [asyncio.create_task(bus.wait(0, timeout=10)) for _ in range(50)]
    await asyncio.sleep(0.01)
    assert bus.waiters == 50
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert bus.waiters == 0


async def test_a_waiter_for_one_task_wakes_for_its_events_alone() -> None:
    """Other tasks' events leave it waiting; its own, or events it missed, end the wait; it
    leaks nothing whether it ends by an event, a timeout or a cancel."""
    bus = EventBus(capacity=3)
    waiter = asyncio.create_task(bus.wait(0, timeout=3600, task_id="mine"))
    await asyncio.sleep(0.01)
    bus.publish(EventType.TASK_LOG, task_id="other")
    bus.publish(EventType.INVENTORY_RELOADED)
    await asyncio.sleep(0.01)
    assert not waiter.done()
    bus.publish(EventType.TASK_LOG, task_id="mine")
    assert await asyncio.wait_for(waiter, 30) is True  # woken, not timed out
    seq = bus.last_seq
    assert await bus.wait(seq - 1, timeout=5, task_id="mine") is True  # its event is there
    assert await bus.wait(seq, timeout=0.02, task_id="mine") is False
    bus.publish(EventType.TASK_LOG, task_id="other")
    assert await bus.wait(seq, timeout=0.02, task_id="mine") is False
    for _ in range(3):
        bus.publish(EventType.TASK_LOG, task_id="other")
    assert await bus.wait(seq, timeout=5, task_id="mine") is True  # it may have missed one
    cancelled = [asyncio.create_task(bus.wait(bus.last_seq, 10, task_id="mine")) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert bus.waiters == 3
    for task in cancelled:
        task.cancel()
    await asyncio.gather(*cancelled, return_exceptions=True)
    assert bus.waiters == 0 and not bus._task_waiters


async def test_many_waiters_all_wake() -> None:
    bus = EventBus()
    waiters = [asyncio.create_task(bus.wait(0, timeout=5)) for _ in range(20)]
    await asyncio.sleep(0.01)
    bus.publish(EventType.INVENTORY_RELOADED)
    assert await asyncio.gather(*waiters) == [True] * 20


def test_listeners_called_and_failures_contained(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[int] = []

    def boom(event: Event) -> None:
        raise RuntimeError("webhook down")

    bus.subscribe(boom)
    bus.subscribe(lambda e: seen.append(e.seq))
    with caplog.at_level(logging.ERROR, logger="dobby.core.events"):
        event = bus.publish(EventType.TASK_FINISHED, task_id="t1")
    assert event.seq == 1 and seen == [1]
    assert "webhook down" in caplog.text
    bus.unsubscribe(boom)
    bus.unsubscribe(boom)  # unknown: ignored
    bus.publish(EventType.TASK_FINISHED)
    assert seen == [1, 2]


def test_listener_may_unsubscribe_itself() -> None:
    bus = EventBus()
    calls: list[int] = []

    def once(event: Event) -> None:
        calls.append(event.seq)
        bus.unsubscribe(once)

    bus.subscribe(once)
    bus.publish(EventType.HOST_UPDATED)
    bus.publish(EventType.HOST_UPDATED)
    assert calls == [1]


async def test_async_listener_runs_as_task(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[str] = []

    async def hook(event: Event) -> None:
        await asyncio.sleep(0)
        got.append(event.type)

    async def bad_hook(event: Event) -> None:
        raise RuntimeError("slack down")

    bus.subscribe(hook)
    bus.subscribe(bad_hook)
    with caplog.at_level(logging.ERROR, logger="dobby.core.events"):
        bus.publish(EventType.PROJECT_CREATED)
        for _ in range(5):
            await asyncio.sleep(0)
    assert got == ["project.created"]
    assert "slack down" in caplog.text


def test_sse_frame_is_one_data_line() -> None:
    bus = EventBus(start_seq=6)
    event = bus.publish(
        EventType.TASK_LOG, task_id="t1", data={"text": "line one\nline two\r\n\n\u2028end"}
    )
    frame = event.to_sse()
    assert frame.startswith("id: 7\nevent: task.log\ndata: ")
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert len(lines) == 3
    payload = json.loads(lines[2].removeprefix("data: "))
    assert payload == event.to_dict()
    assert payload["data"]["text"] == "line one\nline two\r\n\n\u2028end"
    assert set(payload) == {"seq", "type", "ts", "task_id", "data"}


def test_an_event_is_encoded_once_for_every_stream_that_sends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each SSE and WebSocket client sends every event: the JSON is made once, not per client."""
    encoded: list[object] = []
    real = json.dumps
    monkeypatch.setattr(json, "dumps", lambda *a, **k: encoded.append(a[0]) or real(*a, **k))
    event = EventBus().publish(EventType.TASK_CREATED, task_id="t1", data={"prompt": "p"})
    frames = [event.to_sse() for _ in range(3)]  # three SSE clients
    messages = [event.json for _ in range(2)]  # two WebSocket clients
    assert len(encoded) == 1
    assert set(frames) == {f"id: {event.seq}\nevent: task.created\ndata: {messages[0]}\n\n"}
    assert json.loads(messages[1]) == event.to_dict()


def test_a_published_event_is_kept_as_its_text_and_its_listeners_saw_the_data() -> None:
    # The bus buffers 10,000 events: kept as dicts and lists, each full garbage collection
    # walked every task document in them.
    bus = EventBus()
    seen: list[dict[str, object]] = []
    bus.subscribe(lambda event: seen.append(event.data))
    doc = {"id": "t1", "after": ["a", "b"], "tokens": {"input": 3}, "status": "pending"}
    event = bus.publish(EventType.TASK_CREATED, task_id="t1", data=doc)
    assert seen == [doc] and seen[0] is not doc  # a copy: the caller may change its own
    held = gc.get_referents(event)
    assert not [x for x in held if isinstance(x, dict | list | tuple)], held
    assert event.data == doc and json.loads(event.json)["data"] == doc
    assert bus.since(0)[0].data == doc


def test_data_encoded_already_is_put_in_the_events_json_as_it_is() -> None:
    bus = EventBus()
    event = bus.publish(
        EventType.TASK_UPDATED, task_id='t"1', data={"a": [1, "é"]}, data_json='{"a":[1,"\\u00e9"]}'
    )
    assert event.json.endswith(', "data": {"a":[1,"\\u00e9"]}}')
    assert json.loads(event.json) == {
        "seq": 1,
        "type": "task.updated",
        "ts": event.ts,
        "task_id": 't"1',
        "data": {"a": [1, "é"]},
    }
    assert event.data == {"a": [1, "é"]}
