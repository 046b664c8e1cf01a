"""The scheduler's REST routes on a real hub process: errors, schedules, batches, policies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, make_git_project, write_inventory

PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts


@pytest.fixture
def hub(tmp_path: Path, fake_bin: Path) -> Iterator[HubProcess]:
    local = {"name": "local", "connection": "local", "workdir": str(tmp_path / "w"),
             "env": {"PATH": f"{fake_bin}:$PATH"}}  # fmt: skip
    inventory = write_inventory(tmp_path / "inventory.yaml", [local])
    proc = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    yield proc
    proc.stop()


def call(hub: HubProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(hub.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/tasks", {"prompt": "x", "every": "5m"}, 400, "POST /schedules"),
        ("POST", "/tasks", {"prompt": "x", "after": [3]}, 400, "'after' must be a list"),
        ("POST", "/tasks", {"prompt": "x", "after": ["nope1234"]}, 400, "'after': nope1234"),
        ("POST", "/tasks", {"prompt": "x", "agent_plan": True, "backend": "shell"}, 400,
         "--agent-plan needs an agent backend"),
        ("POST", "/tasks", {"prompt": "x", "permissions": "bypass"}, 400, "only ask for 'plan'"),
        ("POST", "/schedules", {"prompt": "x", "backend": "shell"}, 400,
         "exactly one of 'cron' and 'every'"),
        ("POST", "/schedules", {"prompt": "x", "cron": "* * *", "backend": "shell"}, 400,
         "expected 5 fields"),
        ("POST", "/schedules", {"prompt": "x", "every": "1m", "overlap": "pile"}, 400,
         "invalid overlap 'pile'"),
        ("POST", "/schedules", {"prompt": "x", "every": ["1m"]}, 400, "'every' must be"),
        ("POST", "/schedules", {"prompt": "x", "cron": "@daily", "timezone": "Mars/Base"}, 400,
         "unknown time zone"),
        ("POST", "/schedules", {"prompt": "x", "every": "1m", "labels": ["gpu"],
                                "backend": "shell"}, 400, "no host matches labels gpu"),
        ("GET", "/schedules/s-ffffffff", None, 404, "unknown schedule"),
        ("POST", "/schedules/s-ffffffff/pause", None, 404, "unknown schedule"),
        ("GET", "/batches/b-ffffffff", None, 404, "unknown batch"),
        ("POST", "/batches", {"tasks": []}, 400, "'tasks' must be a non-empty list"),
        ("POST", "/batches", {"tasks": [{"prompt": "a", "after": ["b"]}]}, 400,
         "unknown task id(s) in 'after': b"),
        ("POST", "/batches", {"yaml": "tasks:\n  - prompt: x\n    labels: [gpu]\n"
                                      "    backend: shell\n", "file": "j.yaml"}, 400,
         "j.yaml:3: no host matches labels gpu"),
        ("POST", "/batches", {"yaml": "tasks:\n  - {name: a, prompt: x, after: [b]}\n"
                                      "  - {name: b, prompt: y, after: [a]}\n"}, 400,
         "<batch>:2: dependency cycle: a → b → a"),
        ("POST", "/tasks/ffffffff/approve", None, 404, "unknown task"),
        ("PATCH", "/projects/ghost", {"max_concurrent": 2}, 404, "unknown project"),
    ],
)  # fmt: skip
def test_scheduler_errors_are_json(hub: HubProcess, method: str, path: str, body: Any,
                                   status: int, message: str) -> None:  # fmt: skip
    got_status, got = call(hub, method, path, body)
    assert got_status == status, got
    assert message in got["error"]["message"], got


def test_schedule_lifecycle_over_the_api(hub: HubProcess) -> None:
    status, sched = call(hub, "POST", "/schedules",
                         {"cron": "0 3 * * *", "prompt": "nightly", **PARKED})  # fmt: skip
    assert status == 201 and sched["next_at"] and sched["cron"] == "0 3 * * *"
    assert call(hub, "GET", "/schedules")[1] == {"schedules": [sched]}
    paused = call(hub, "POST", f"/schedules/{sched['id']}/pause")[1]
    assert paused["paused"] is True and paused["next_at"] is None
    resumed = call(hub, "POST", f"/schedules/{sched['id'][:6]}/resume")[1]
    assert resumed["paused"] is False and resumed["next_at"] == sched["next_at"]
    assert call(hub, "DELETE", f"/schedules/{sched['id']}")[0] == 200
    assert call(hub, "GET", "/schedules")[1] == {"schedules": []}


def test_batch_json_policies_and_openapi(hub: HubProcess, tmp_path: Path) -> None:
    repo = make_git_project(tmp_path / "app")
    status, project = call(hub, "POST", "/projects",
                           {"name": "app", "path": str(repo), "max_concurrent": 3,
                            "default_priority": "high"})  # fmt: skip
    assert status == 201 and project["max_concurrent"] == 3
    status, patched = call(hub, "PATCH", "/projects/app",
                           {"auto_chain": "yes", "default_timeout": "10m"})  # fmt: skip
    assert status == 200 and patched["auto_chain"] is True and patched["default_timeout"] == 600
    status, bad = call(hub, "PATCH", "/projects/app", {"path": "/elsewhere"})
    assert status == 400 and "cannot set path" in bad["error"]["message"]
    status, batch = call(hub, "POST", "/batches", {
        "name": "json", "defaults": {"project": "app", **PARKED},
        "tasks": [{"name": "one", "prompt": "a"}, {"name": "two", "prompt": "b", "after": ["one"]}],
    })  # fmt: skip
    assert status == 201 and batch["total"] == 2 and batch["counts"] == {"pending": 2}
    one, two = batch["tasks"]
    assert (one["priority"], one["timeout"]) == ("high", 600.0)  # the project's defaults
    assert two["after"] == [one["id"]] and two["waiting_on"] == "dependencies"
    # auto_chain: a new task of the project waits for its newest unfinished task
    status, chained = call(hub, "POST", "/tasks", {"prompt": "c", "project": "app", **PARKED})
    assert chained["after"] == [two["id"]]
    listed = call(hub, "GET", "/batches")[1]["batches"]
    assert [b["id"] for b in listed] == [batch["id"]] and "tasks" not in listed[0]
    paths = call(hub, "GET", "/openapi.json")[1]["paths"]
    for path in ("/schedules", "/batches/{id}", "/tasks/{id}/approve", "/tasks/{id}/reject"):
        assert path in paths
    assert "patch" in paths["/projects/{id}"]


def test_acknowledged_task_is_already_on_disk(hub: HubProcess) -> None:
    status, task = call(hub, "POST", "/tasks", {"prompt": "durable", **PARKED})
    assert status == 201
    on_disk = json.loads((hub.home / "dobby.json").read_text())["tasks"]
    assert on_disk[task["id"]]["prompt"] == "durable"


def test_retry_and_approve_conflicts(hub: HubProcess) -> None:
    _, task = call(hub, "POST", "/tasks", {"prompt": "x", **PARKED})
    status, err = call(hub, "POST", f"/tasks/{task['id']}/retry", {"cascade": True})
    assert status == 409 and "only failed or cancelled" in err["error"]["message"]
    status, err = call(hub, "POST", f"/tasks/{task['id']}/approve")
    assert status == 409 and "only drafts can be approved" in err["error"]["message"]
    status, err = call(hub, "PATCH", f"/tasks/{task['id']}", {"plan": "x"})
    assert status == 409 and "only a draft's plan" in err["error"]["message"]
    _, draft = call(hub, "POST", "/tasks", {"prompt": "d", "draft": True, **PARKED})
    assert call(hub, "PATCH", f"/tasks/{draft['id']}", {"plan": "step 1"})[1]["plan"] == "step 1"
    status, err = call(hub, "POST", f"/tasks/{task['id']}/reject")
    assert status == 409 and "only drafts can be rejected" in err["error"]["message"]
