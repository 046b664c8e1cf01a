"""After a restart the re-adopted tasks come first: the host probes wait for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dobby.core.models import Task
from dobby.hostside import scripts
from dobby.hub.core import Hub
from dobby.machines.hosts import HostManager, HostState
from dobby.runner.streams import Probes
from dobby.store.db import Store
from dobby.transport import Transport
from tests.fixtures.app import running_app
from tests.fixtures.hub import write_inventory
from tests.fixtures.wait import wait_until_async


def _watch_start(monkeypatch: pytest.MonkeyPatch) -> dict[str, Hub]:
    """Keep the hub core that starts next, for a probe to look at its followers."""
    started: dict[str, Hub] = {}
    real_start = Hub.start

    async def start(self: Hub) -> None:
        started["core"] = self
        await real_start(self)

    monkeypatch.setattr(Hub, "start", start)
    return started


async def test_the_first_host_probe_after_a_restart_waits_for_the_adopted_tasks(
    tmp_path: Path, local_entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    home = tmp_path / "home"
    async with running_app(home=home, inventory=inventory) as app:
        ids = [
            (await app.call("POST", "/tasks", {"prompt": "sleep 60", "backend": "shell"}))[1]["id"]
            for _ in range(3)
        ]
        for tid in ids:
            await app.wait_status(tid, ("running",))
    # The hub stopped; its tasks run on. The next one re-adopts them.
    started = _watch_start(monkeypatch)
    reading_at_probe: list[set[str]] = []
    real_probe = HostManager.probe

    async def probe(self: HostManager, name: str) -> HostState:
        reading_at_probe.append(set(started["core"].runner.followers._feeds))
        return await real_probe(self, name)

    monkeypatch.setattr(HostManager, "probe", probe)
    async with running_app(home=home, inventory=inventory) as app:
        await wait_until_async(lambda: reading_at_probe, what="the first host probe")
        assert reading_at_probe[0] == set(ids)  # every adopted task read its stream first
        for tid in ids:
            await app.call("POST", f"/tasks/{tid}/cancel")
            await app.wait_status(tid, ("cancelled",))


async def test_an_adopted_task_on_a_host_that_is_down_does_not_hold_the_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    down = {"name": "down", "address": "127.0.0.1", "port": 1, "user": "nobody"}
    inventory = write_inventory(tmp_path / "inventory.yaml", [down])
    store = Store(path=home / "dobby.db")
    store.put_task(Task(id="adopted0000000001", prompt="p", status="running", host="down"))
    await store.close()
    started = _watch_start(monkeypatch)
    async with running_app(home=home, inventory=inventory) as app:
        followers = started["core"].runner.followers
        # Its first connect failed: the probes go on (and find the host down) at once,
        # not after the bound, while the follower keeps trying.
        await wait_until_async(followers._adopted.is_set, what="the adoption to be over")
        await wait_until_async(
            lambda: app.core.hosts.states.get("down", HostState()).reachable is False,
            what="the host probe to find the host down",
        )
        assert (await app.task("adopted0000000001"))["status"] == "running"


async def test_an_adopted_task_sends_what_it_wrote_meanwhile_before_its_session_is_probed(
    tmp_path: Path, local_entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probed first, the task's output waited for that command's round trip (over a second
    # for a hub re-adopting 500 tasks).
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    home = tmp_path / "home"
    chatty = "for i in $(seq 600); do echo line $i; sleep 0.05; done"
    async with running_app(home=home, inventory=inventory) as app:
        tid = (await app.call("POST", "/tasks", {"prompt": chatty, "backend": "shell"}))[1]["id"]
        await app.wait_status(tid, ("running",))
        logs = app.core.logs
    copied = logs.size(tid)
    on_host = Path(local_entry["workdir"]) / "tasks" / tid / "out.jsonl"
    await wait_until_async(
        lambda: on_host.exists() and on_host.stat().st_size > copied, what="output while down"
    )
    copy_at_probe: list[int] = []
    real_probe = Probes.probe

    async def probe(self: Probes, transport: Transport, paths: scripts.TaskPaths) -> dict[str, str]:
        if paths.task_id == tid:
            copy_at_probe.append(logs.size(tid))
        return await real_probe(self, transport, paths)

    monkeypatch.setattr(Probes, "probe", probe)
    async with running_app(home=home, inventory=inventory) as app:
        await wait_until_async(lambda: copy_at_probe, what="the adopted task's first probe")
        assert copy_at_probe[0] > copied  # what it wrote meanwhile came first
        await app.call("POST", f"/tasks/{tid}/cancel")
        await app.wait_status(tid, ("cancelled",))
