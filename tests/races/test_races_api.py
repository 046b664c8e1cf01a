"""Races over the CLI and API on real sshd hosts: caps and budgets are respected and said,
cancelling a race cancels every attempt, a project's default check judges a race."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.races.helpers import CHECK, PROMPT, hub_for, race, settled, wait_race

pytestmark = pytest.mark.slow


@pytest.fixture
def hub(tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]) -> HubProcess:
    plays = [{"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "30"}] * 3
    started.append(hub_for(tmp_path, ssh_hosts, plays))
    return started[-1]


def test_cli_race_options_need_race(hub: HubProcess) -> None:
    res = hub.cli("add", PROMPT, "--project", "app", "--hosts", "h1,h2")
    assert res.returncode == 1 and "--hosts only apply to a race: add --race K" in res.stderr
    res = hub.cli("add", PROMPT, "--project", "app", "--verify", CHECK, "--race", "0")
    assert res.returncode == 1 and "'k' must be an integer >= 1" in res.stderr


def test_project_default_check_and_verify_timeout(hub: HubProcess) -> None:
    hub.cli("projects", "set", "app", f"default_verify={CHECK}", check=True)
    task = hub.client().add_task(prompt="[scenario:hang] x", project="app", host="h1")
    assert task["verify"] == CHECK and task["verify_timeout"] == 600
    none = hub.client().add_task(prompt="x", project="app", host="h1", verify="")
    assert none["verify"] is None  # "" opts out of the project's check
    body = hub.client().add_race(prompt=PROMPT, project="app", k=2)  # the default judges it
    assert body["verify"] == CHECK
    hub.client().cancel_race(body["id"])
    for t in (task, none):
        hub.client().cancel(t["id"])


def test_attempts_respect_the_project_cap_and_the_race_says_so(hub: HubProcess) -> None:
    hub.cli("projects", "set", "app", "max_concurrent=1", check=True)
    body = hub.client().add_race(prompt=PROMPT, project="app", verify=CHECK, k=3)
    assert any("runs 1 task(s) at a time (max_concurrent)" in w for w in body["warnings"])
    assert body["budget"] == {"per_run_usd": None, "max_runs": 3, "max_usd": None}
    ids = [c["task_id"] for c in body["attempts"]]
    hub.wait_status(ids[0], ("running",))
    time.sleep(1)  # a pass or two: the others must still wait for the project's one slot
    waiting = [hub.client().task(t) for t in ids[1:]]
    assert [(t["status"], t["waiting_on"]) for t in waiting] == [("pending", "capacity")] * 2
    cancelled = json.loads(hub.cli("cancel", body["id"], "--json", check=True).stdout)
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled"
    view = wait_race(hub, body["id"], settled)
    assert [c["state"] for c in view["attempts"]] == ["cancelled"] * 3
    for tid in ids:
        assert hub.client().task(tid)["status"] == "cancelled"
    again = hub.cli("cancel", body["id"])
    assert again.returncode == 1 and "is already cancelled" in again.stderr


def test_cancelling_a_race_cancels_every_running_attempt(hub: HubProcess) -> None:
    body = race(hub, "--race", "3", "--hosts", "h1,h2,h3")
    ids = [c["task_id"] for c in body["attempts"]]
    for tid in ids:
        hub.wait_status(tid, ("running",))
    hub.client().cancel_race(body["id"])
    view = wait_race(hub, body["id"], settled)
    assert view["status"] == "cancelled" and view["winner"] is None
    assert [hub.client().task(t)["status"] for t in ids] == ["cancelled"] * 3
    shown = hub.cli("races", check=True).stdout
    assert body["id"] in shown and "#1:cancelled" in shown
