"""The REST API of a real hub process: status codes, JSON errors, SSE replay, spokes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess, write_inventory
from tests.fixtures.sshd import SshHost


@pytest.fixture
def hub(tmp_path: Path, fake_bin: Path) -> Iterator[HubProcess]:
    local = {
        "name": "local",
        "connection": "local",
        "workdir": str(tmp_path / "w"),
        "max_agents": 1,
        "env": {"PATH": f"{fake_bin}:$PATH"},
    }
    inventory = write_inventory(tmp_path / "inventory.yaml", [local])
    proc = HubProcess(home=tmp_path / "home", inventory=inventory).start()
    yield proc
    proc.stop()


def call(
    hub: HubProcess, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        hub.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "code", "message"),
    [
        ("GET", "/nope", None, None, 404, "not_found", "no such route"),
        ("GET", "/tasks/deadbeef", None, None, 404, "not_found", "unknown task 'deadbeef'"),
        ("POST", "/tasks", None, b"{not json", 400, "bad_request", "not valid JSON"),
        ("POST", "/tasks", [1], None, 400, "bad_request", "must be a JSON object"),
        ("POST", "/tasks", {"prompt": ""}, None, 400, "bad_request", "must not be empty"),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "colour": 1},
            None,
            400,
            "bad_request",
            "unknown field(s) colour",
        ),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "backend": "gpt"},
            None,
            400,
            "bad_request",
            "invalid backend 'gpt'",
        ),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "priority": "asap"},
            None,
            400,
            "bad_request",
            "invalid priority 'asap'",
        ),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "timeout": -1},
            None,
            400,
            "bad_request",
            "positive number",
        ),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "project": "ghost"},
            None,
            404,
            "not_found",
            "unknown project 'ghost'",
        ),
        (
            "POST",
            "/tasks",
            {"prompt": "x", "host": "mars"},
            None,
            404,
            "not_found",
            "unknown host 'mars'",
        ),
        ("GET", "/tasks?limit=x", None, None, 400, "bad_request", "must be an integer"),
        (
            "POST",
            "/projects",
            {"name": "../x", "path": "/tmp"},
            None,
            400,
            "bad_request",
            "invalid project name",
        ),
        ("GET", "/projects/ghost", None, None, 404, "not_found", "unknown project 'ghost'"),
        ("GET", "/results/deadbeef", None, None, 404, "not_found", "unknown task"),
    ],
)
def test_errors_are_json_with_the_right_status(
    hub: HubProcess,
    method: str,
    path: str,
    body: Any,
    raw: bytes | None,
    status: int,
    code: str,
    message: str,
) -> None:
    got_status, got = call(hub, method, path, body, raw)
    assert got_status == status, got
    assert got["error"]["code"] == code
    assert message in got["error"]["message"]


def test_patch_cancel_retry_transitions(hub: HubProcess) -> None:
    _, blocker = call(hub, "POST", "/tasks", {"prompt": "sleep 60", "backend": "shell"})
    hub.wait_status(blocker["id"], ("running",))
    _, queued = call(hub, "POST", "/tasks", {"prompt": "echo one", "backend": "shell"})
    assert queued["status"] == "pending"
    status, patched = call(
        hub, "PATCH", f"/tasks/{queued['id']}", {"prompt": "echo two", "priority": "high"}
    )
    assert status == 200 and patched["prompt"] == "echo two" and patched["priority"] == "high"
    status, err = call(hub, "PATCH", f"/tasks/{blocker['id']}", {"prompt": "no"})
    assert status == 409 and "only draft or pending" in err["error"]["message"]
    status, err = call(hub, "PATCH", f"/tasks/{queued['id']}", {"status": "completed"})
    assert status == 400 and "cannot edit field(s) status" in err["error"]["message"]
    status, cancelled = call(hub, "POST", f"/tasks/{blocker['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    status, err = call(hub, "POST", f"/tasks/{blocker['id']}/cancel")
    assert status == 409
    assert hub.wait_status(queued["id"])["summary"] == "two"
    status, err = call(hub, "POST", f"/tasks/{queued['id']}/retry")
    assert status == 409 and "only failed or cancelled" in err["error"]["message"]
    _, failing = call(hub, "POST", "/tasks", {"prompt": "echo attempt; exit 3", "backend": "shell"})
    first = hub.wait_status(failing["id"])
    assert (first["status"], first["exit_code"]) == ("failed", 3)
    status, again = call(hub, "POST", f"/tasks/{failing['id']}/retry")
    assert status == 201 and again["attempt"] == 1 and again["status"] == "pending"
    second = hub.wait_status(failing["id"])
    assert (second["status"], second["attempt"], second["exit_code"]) == ("failed", 1, 3)
    # the second attempt's log holds only its own output
    assert hub.client().logs(failing["id"])["text"] == "attempt\n"


def test_task_ids_may_be_shortened(hub: HubProcess) -> None:
    _, task = call(hub, "POST", "/tasks", {"prompt": "echo hi", "backend": "shell"})
    status, found = call(hub, "GET", f"/tasks/{task['id'][:5]}")
    assert status == 200 and found["id"] == task["id"]


def read_sse(
    hub: HubProcess,
    path: str,
    until: str,
    headers: dict[str, str] | None = None,
) -> list[tuple[str, dict]]:
    req = urllib.request.Request(hub.url + path, headers=headers or {})
    frames: list[tuple[str, dict]] = []
    with urllib.request.urlopen(req, timeout=30) as resp:
        event, data = "message", []
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and data:
                frames.append((event, json.loads("\n".join(data))))
                if event == until or frames[-1][1].get("type") == until:
                    return frames
                event, data = "message", []
    return frames


def test_events_replay_from_a_sequence_number(hub: HubProcess) -> None:
    _, task = call(hub, "POST", "/tasks", {"prompt": "echo replay", "backend": "shell"})
    hub.wait_status(task["id"])
    frames = read_sse(hub, "/events?since=0", "task.finished")
    types = [data["type"] for _, data in frames if data.get("task_id") == task["id"]]
    assert types[0] == "task.created" and "task.started" in types and types[-1] == "task.finished"
    seqs = [data["seq"] for _, data in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Last-Event-ID resumes after the given event, with nothing older
    cut = seqs[len(seqs) // 2]
    again = read_sse(hub, "/events", "task.finished", {"Last-Event-ID": str(cut)})
    assert [d["seq"] for _, d in again] == [s for s in seqs if s > cut]


def test_task_event_stream_ends_with_the_final_task(hub: HubProcess) -> None:
    _, task = call(hub, "POST", "/tasks", {"prompt": "printf 'a\\nb\\n'", "backend": "shell"})
    frames = read_sse(hub, f"/tasks/{task['id']}/events", "end")
    text = "".join(d["text"] for e, d in frames if e == "log")
    assert text == "a\nb\n"
    assert frames[-1][0] == "end" and frames[-1][1]["status"] == "completed"
    # resuming from an offset sends only what follows
    tail = read_sse(hub, f"/tasks/{task['id']}/events?offset=2", "end")
    assert "".join(d["text"] for e, d in tail if e == "log") == "b\n"


def test_openapi_lists_every_route(hub: HubProcess) -> None:
    status, doc = call(hub, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for path in (
        "/tasks",
        "/tasks/{id}",
        "/tasks/{id}/cancel",
        "/tasks/{id}/events",
        "/events",
        "/hosts",
        "/spokes/register",
        "/health",
        "/results/{id}",
    ):
        assert path in doc["paths"], path


def test_spoke_registration_adds_a_host_that_runs_tasks(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    h = ssh_hosts[0]
    key_line = h.known_hosts.read_text().split(None, 1)[1].strip()
    body = {
        "name": "spoke-1",
        "address": h.address,
        "port": h.port,
        "user": h.user,
        "identity_file": str(h.identity_file),
        "labels": ["spoke"],
        "env": {"PATH": "/usr/bin:/bin"},
        "host_key": key_line,
    }
    status, host = call(hub, "POST", "/spokes/register", body)
    assert status == 201, host
    assert host["name"] == "spoke-1" and host["env"] == {"PATH": "***"}
    _, spokes = call(hub, "GET", "/spokes")
    assert [s["name"] for s in spokes["spokes"]] == ["spoke-1"]
    _, hosts = call(hub, "GET", "/hosts")
    assert "spoke-1" in {x["name"] for x in hosts["hosts"]}
    _, task = call(
        hub, "POST", "/tasks", {"prompt": "whoami", "backend": "shell", "labels": ["spoke"]}
    )
    done = hub.wait_status(task["id"])
    assert (done["status"], done["host"], done["summary"]) == ("completed", "spoke-1", h.user)
    status, err = call(hub, "POST", "/spokes/register", {**body, "name": "local"})
    assert status == 409 or status == 400
    status, err = call(hub, "POST", "/spokes/register", {**body, "name": "bad", "host_key": "x"})
    assert status == 400 and "host_key" in err["error"]["message"]
