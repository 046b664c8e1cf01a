"""A streamed task's session probe runs beside its feed: its lines do not wait for the probe."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dobby.hostside import scripts
from dobby.runner import follower
from dobby.runner.streams import Feed, Frame, Probes
from dobby.transport import Transport
from tests.fixtures.app import running_app
from tests.fixtures.hub import write_inventory
from tests.fixtures.wait import wait_until_async


async def test_lines_reach_the_copy_while_the_sessions_probe_waits(
    tmp_path: Path, local_entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe waited for the host's other tasks, then for its answer: every probe period,
    # every task of the host held its lines back that long (25-30 ms at p99.9, over 5 hosts).
    monkeypatch.setattr(follower, "STREAMED_PROBE_EVERY", 0.2)
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    chatty = "for i in $(seq 6000); do echo line $i; sleep 0.02; done"
    held: dict[str, Any] = {}
    real_probe = Probes.probe

    async def probe(self: Probes, transport: Transport, paths: scripts.TaskPaths) -> dict[str, str]:
        if paths.task_id == held.get("id"):
            held["asked"].set()
            await held["release"].wait()  # held until the test has seen lines go on
        return await real_probe(self, transport, paths)

    monkeypatch.setattr(Probes, "probe", probe)
    async with running_app(home=tmp_path / "home", inventory=inventory) as app:
        held.update(asked=asyncio.Event(), release=asyncio.Event())
        tid = (await app.call("POST", "/tasks", {"prompt": chatty, "backend": "shell"}))[1]["id"]
        held["id"] = tid
        await app.wait_status(tid, ("running",))
        looks = 0
        real_next = Feed.next

        async def counted(self: Feed, timeout: float) -> list[Frame]:
            nonlocal looks
            looks += 1
            return await real_next(self, timeout)

        try:
            async with asyncio.timeout(30):
                await held["asked"].wait()
            at_probe = app.core.logs.size(tid)
            monkeypatch.setattr(Feed, "next", counted)
            # ~1.2 s of lines (~60): the probe waits over several periods, as a slow
            # host's may; the loop looks once a line or so, and does not spin meanwhile.
            await wait_until_async(
                lambda: app.core.logs.size(tid) > at_probe + 600,
                what="the task's lines copied while its probe waits",
            )
            assert not held["release"].is_set()  # the probe is still waiting
            assert looks < 1000
        finally:
            held["release"].set()
        # The probe's answer still counts: the session is there, the task runs on.
        await asyncio.sleep(0.5)
        assert (await app.call("GET", f"/tasks/{tid}"))[1]["status"] == "running"
        await app.call("POST", f"/tasks/{tid}/cancel")
        await app.wait_status(tid, ("cancelled",))


async def test_a_session_ended_without_an_exit_code_is_found_when_the_stream_says_so(
    tmp_path: Path, local_entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No periodic probe in this test's time: only the stream's word that run.sh is gone
    # (scripts.render_follow, G) can make the hub look at the session.
    monkeypatch.setattr(follower, "STREAMED_PROBE_EVERY", 3600.0)
    monkeypatch.setattr(follower, "PROBE_EVERY", 3600.0)  # the tasks polled (none here)
    asked: list[str] = []
    real_probe = Probes.probe

    async def probe(self: Probes, transport: Transport, paths: scripts.TaskPaths) -> dict[str, str]:
        asked.append(paths.task_id)
        return await real_probe(self, transport, paths)

    monkeypatch.setattr(Probes, "probe", probe)
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(home=tmp_path / "home", inventory=inventory) as app:
        ids = [
            (await app.call("POST", "/tasks", {"prompt": "sleep 600", "backend": "shell"}))[1]["id"]
            for _ in range(2)
        ]
        pid_files = [Path(local_entry["workdir"]) / "tasks" / tid / "pid" for tid in ids]
        for tid, pid_file in zip(ids, pid_files, strict=True):
            await app.wait_status(tid, ("running",))
            await wait_until_async(lambda f=pid_file: f.exists() and f.read_text().strip())
        killed, spared = ids
        subprocess.run(["tmux", "kill-session", "-t", f"dobby-{killed}"], check=True)
        task = await app.wait_status(killed, timeout=30)
        assert (task["status"], task["reason"]) == ("failed", "host_lost")
        assert f"dobby-{killed}" in task["error"]
        await asyncio.sleep(1.5)  # the stream's next look: the other task still lives
        assert asked == [killed]
        assert (await app.call("GET", f"/tasks/{spared}"))[1]["status"] == "running"
        await app.call("POST", f"/tasks/{spared}/cancel")
        await app.wait_status(spared, ("cancelled",))
