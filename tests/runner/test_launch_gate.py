"""A host runs a bounded number of launches at once, in the order they came."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dobby.core.models import Task
from dobby.runner.runner import LAUNCHES_PER_HOST
from tests.fixtures.app import AppHub


async def test_launches_on_one_host_wait_their_turn(app_hub: AppHub, tmp_path: Path) -> None:
    runner = app_hub.core.runner
    transport = runner.hosts.transport("local")
    marks, counts = tmp_path / "marks", tmp_path / "counts"
    marks.mkdir()
    counts.mkdir()
    launches = LAUNCHES_PER_HOST * 3

    async def launch(i: int) -> None:
        # Each launch notes how many launches run beside it, holds a moment, and leaves.
        command = (
            f"mkdir {marks}/{i}; ls {marks} | wc -l >{counts}/{i}; sleep 0.2; rmdir {marks}/{i}"
        )
        task = Task(prompt="x", backend="shell", host="local")
        res = await runner._run_launch(task, transport, command, None)
        assert res.ok, res.stderr

    await asyncio.gather(*(launch(i) for i in range(launches)))
    seen = [int((counts / str(i)).read_text()) for i in range(launches)]
    assert max(seen) <= LAUNCHES_PER_HOST, seen
