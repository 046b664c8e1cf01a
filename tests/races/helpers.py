"""Races test helpers: a hub whose sshd hosts each play one patch scenario of the replay agent,
a project whose tests want ``mul``, and waiting on a race."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.hub import HubProcess, make_git_project, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

CHECK = "python3 -m unittest -q test_calc"
TESTS = """import unittest

from calc import add, mul


class Calc(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(mul(2, 3), 6)
"""
FILES = {"calc.py": "def add(a, b):\n    return a + b\n", "test_calc.py": TESTS}
PROMPT = "add mul(a, b) to calc.py so that test_calc passes"
SHOWN = ("id", "status", "reason", "error", "collect_error", "diff_stat", "head_commit")


def hub_for(tmp_path: Path, hosts: list[SshHost], plays: list[dict[str, str]]) -> HubProcess:
    """Start a hub whose hosts play the given scenarios; register project app (3 at a time)."""
    entries = []
    for host, env in zip(hosts, plays, strict=True):
        path = f"{host.fake_bin}:/usr/local/bin:/usr/bin:/bin"
        entries.append(host.inventory_entry(env={"PATH": path, **env}))
    inventory = write_inventory(tmp_path / "inventory.yaml", entries)
    hub = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    project = make_git_project(tmp_path / "app", FILES)
    hub.cli("register", str(project), "--name", "app", check=True)
    hub.cli("projects", "set", "app", "max_concurrent=3", check=True)
    return hub


def race(hub: HubProcess, *args: str) -> dict[str, Any]:
    out = hub.cli("add", PROMPT, "--project", "app", "--verify", CHECK, *args, "--json", check=True)
    return json.loads(out.stdout)


def wait_race(
    hub: HubProcess, race_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    """Poll the race until ``done(view)`` holds; return the view."""
    seen: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        seen.update(hub.client().race(race_id))
        return dict(seen) if done(seen) else None

    return wait_until(  # type: ignore[no-any-return]
        reached,
        timeout=timeout,
        what=f"race {race_id} to get there",
        detail=lambda: f"last seen: {json.dumps(seen)[:3000]}\n{hub.log()[-3000:]}",
    )


def settled(view: dict[str, Any]) -> bool:
    return bool(view["settled"])
