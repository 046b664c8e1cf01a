"""The watch over interactive sessions outlives one session's fault (no host is reached)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dobby.core.models import Task
from dobby.runner import interactive
from dobby.runner.interactive import KIND, RemoteSessions
from dobby.store.db import Store


class Sessions:
    """The runner's answer about each session: a fault for one, an exit code for the other."""

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.faults = 0

    async def session_state(self, task: Task) -> dict[str, str]:
        if task.id == self.broken:
            self.faults += 1
            raise ValueError("a reply this hub cannot read")
        return {"session": "0", "exit": "0"}


async def test_one_sessions_fault_does_not_end_the_watch_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(interactive, "WATCH_EVERY", 0.01)
    store = Store(path=tmp_path / "dobby.db")
    broken = Task(prompt="", status="running", host="h1", kind=KIND, backend="claude")
    ending = Task(prompt="", status="running", host="h1", kind=KIND, backend="claude")
    store.put_task(ending)
    store.put_task(broken)
    saved: list[str] = []

    def save(task: Task, event: str = "task.updated", **kw: Any) -> None:
        store.put_task(task)
        saved.append(task.id)

    runner = Sessions(broken.id)
    sessions = RemoteSessions(
        store=store,
        hosts=None,  # type: ignore[arg-type]  # neither task has a project to bring back
        runner=runner,  # type: ignore[arg-type]
        save=save,
        choose_host=None,  # type: ignore[arg-type]
    )
    sessions.start()
    try:
        for _ in range(500):  # several rounds: the broken session is checked in each
            if store.get_task(ending.id).status != "running" and runner.faults >= 3:
                break
            await asyncio.sleep(0.01)
        assert store.get_task(ending.id).status == "completed"
        assert store.get_task(broken.id).status == "running"  # its host may answer later
        assert f"checking session {broken.id} failed" in caplog.text
        assert sessions._task is not None and not sessions._task.done()
    finally:
        await sessions.stop()
        await store.close()
