"""Store additions for the scheduler: durable(), batches and schedules tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dobby.core.errors import NotFound, ValidationError
from dobby.core.models import Batch, Schedule, Task
from dobby.store.db import Store, task_docs_on_disk


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(path=tmp_path / "dobby.db")
    yield s
    asyncio.run(s.close())


async def test_durable_returns_once_the_change_is_on_disk(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "dobby.db", flush_interval=5.0)  # a long batching pause
    store.start()
    try:
        store.put_task(Task(prompt="first", id="aaaa0001"))
        await store.durable()
        store.put_task(Task(prompt="second", id="aaaa0002"))
        await asyncio.wait_for(store.durable(), 2.0)  # does not sit out the 5 s pause
        on_disk = task_docs_on_disk(store.path)
        assert set(on_disk) == {"aaaa0001", "aaaa0002"}
        await store.durable()  # nothing new: returns at once
    finally:
        await store.close()


def test_batches_and_schedules_tables(store: Store) -> None:
    # Every field set: a field that to_dict forgot would come back as its default.
    batch = Batch(name="b", file="b.yaml", created_at="2026-01-02T03:04:05.000000Z",
                  tasks=[{"name": "x", "id": "t1"}])  # fmt: skip
    store.put_batch(batch)
    assert store.get_batch(batch.id[:6]) == batch
    assert store.batches() == [batch]
    schedule = Schedule(template={"prompt": "x"}, cron="0 3 * * *")
    store.put_schedule(schedule)
    assert store.get_schedule(schedule.id).cron == "0 3 * * *"
    store.delete_schedule(schedule.id[:5])
    assert store.schedules() == []
    with pytest.raises(NotFound, match="unknown schedule"):
        store.get_schedule(schedule.id)
    store.put_batch(Batch(id="b-aaaa1111"))
    store.put_batch(Batch(id="b-aaaa2222"))
    with pytest.raises(ValidationError, match="ambiguous batch id prefix"):
        store.get_batch("b-aaaa")


def test_task_status_without_building_the_task(store: Store) -> None:
    store.put_task(Task(prompt="x", id="cafe0001", status="running"))
    assert store.task_status("cafe0001") == "running"
    assert store.task_status("cafe") is None  # exact ids only
    assert store.task_status("nope") is None
