"""The REST API of a hub app in the test's event loop: status codes, JSON errors, SSE replay,
spokes, API keys."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import tornado.iostream

from dobby.hub.base import SSE_FLUSH_BYTES, SSEHandler
from tests.fixtures.app import AppHub, running_app
from tests.fixtures.hub import write_inventory


@pytest.fixture
def hub_hosts(local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**local_entry, "max_agents": 1}]  # one at a time: a second task stays pending


@pytest.mark.parametrize(
    ("method", "path", "body", "raw", "status", "code", "message"),
    [
        ("GET", "/nope", None, None, 404, "not_found", "no such route: /nope"),
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
async def test_errors_are_json_with_the_right_status(
    app_hub: AppHub,
    method: str,
    path: str,
    body: Any,
    raw: bytes | None,
    status: int,
    code: str,
    message: str,
) -> None:
    got_status, got = await app_hub.call(method, path, body, raw)
    assert got_status == status, got
    assert got["error"]["code"] == code
    assert message in got["error"]["message"]


async def test_patch_cancel_retry_transitions(app_hub: AppHub) -> None:
    _, blocker = await app_hub.call("POST", "/tasks", {"prompt": "sleep 60", "backend": "shell"})
    await app_hub.wait_status(blocker["id"], ("running",))
    _, queued = await app_hub.call("POST", "/tasks", {"prompt": "echo one", "backend": "shell"})
    assert queued["status"] == "pending"
    status, patched = await app_hub.call(
        "PATCH", f"/tasks/{queued['id']}", {"prompt": "echo two", "priority": "high"}
    )
    assert status == 200 and patched["prompt"] == "echo two" and patched["priority"] == "high"
    status, err = await app_hub.call("PATCH", f"/tasks/{blocker['id']}", {"prompt": "no"})
    assert status == 409 and "only draft or pending" in err["error"]["message"]
    status, err = await app_hub.call("PATCH", f"/tasks/{queued['id']}", {"status": "completed"})
    assert status == 400 and "cannot edit field(s) status" in err["error"]["message"]
    status, cancelled = await app_hub.call("POST", f"/tasks/{blocker['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    status, err = await app_hub.call("POST", f"/tasks/{blocker['id']}/cancel")
    assert status == 409
    assert (await app_hub.wait_status(queued["id"]))["summary"] == "two"
    status, err = await app_hub.call("POST", f"/tasks/{queued['id']}/retry")
    assert status == 409 and "only failed or cancelled" in err["error"]["message"]
    _, failing = await app_hub.call(
        "POST", "/tasks", {"prompt": "echo attempt; exit 3", "backend": "shell"}
    )
    first = await app_hub.wait_status(failing["id"])
    assert (first["status"], first["exit_code"]) == ("failed", 3)
    status, again = await app_hub.call("POST", f"/tasks/{failing['id']}/retry")
    assert status == 201 and again["attempt"] == 1 and again["status"] == "pending"
    second = await app_hub.wait_status(failing["id"])
    assert (second["status"], second["attempt"], second["exit_code"]) == ("failed", 1, 3)
    # the second attempt's log holds only its own output
    assert (await app_hub.call("GET", f"/tasks/{failing['id']}/logs"))[1]["text"] == "attempt\n"


async def test_task_ids_may_be_shortened(app_hub: AppHub) -> None:
    _, task = await app_hub.call("POST", "/tasks", {"prompt": "echo hi", "backend": "shell"})
    status, found = await app_hub.call("GET", f"/tasks/{task['id'][:5]}")
    assert status == 200 and found["id"] == task["id"]


async def test_events_replay_from_a_sequence_number(app_hub: AppHub) -> None:
    _, task = await app_hub.call("POST", "/tasks", {"prompt": "echo replay", "backend": "shell"})
    await app_hub.wait_status(task["id"])
    frames = await app_hub.read_sse("/events?since=0", "task.finished")
    types = [data["type"] for _, data in frames if data.get("task_id") == task["id"]]
    assert types[0] == "task.created" and "task.started" in types and types[-1] == "task.finished"
    seqs = [data["seq"] for _, data in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Last-Event-ID resumes after the given event, with nothing older
    cut = seqs[len(seqs) // 2]
    again = await app_hub.read_sse("/events", "task.finished", {"Last-Event-ID": str(cut)})
    assert [d["seq"] for _, d in again] == [s for s in seqs if s > cut]


async def test_events_of_the_types_asked_for_only(app_hub: AppHub) -> None:
    cut = app_hub.core.bus.last_seq
    _, task = await app_hub.call("POST", "/tasks", {"prompt": "echo typed", "backend": "shell"})
    await app_hub.wait_status(task["id"])
    app_hub.core.bus.publish("race.updated", data={"id": "r-1"})
    frames = await app_hub.read_sse(
        f"/events?since={cut}&types=task.finished,race.*", "race.updated"
    )
    assert [(d["type"], d["task_id"]) for _, d in frames] == [
        ("task.finished", task["id"]),
        ("race.updated", None),
    ]
    # Resuming counts from the events sent: nothing of the types asked for is skipped.
    again = await app_hub.read_sse(
        "/events?types=task.*", "task.finished", {"Last-Event-ID": str(cut)}
    )
    types = [d["type"] for _, d in again]
    assert types[0] == "task.created" and types[-1] == "task.finished"
    assert all(t.startswith("task.") for t in types)


@pytest.mark.parametrize("types", ["task.finish", "task.finished,,", "tasks.*", "*"])
async def test_an_unknown_event_type_is_one_line_naming_it(app_hub: AppHub, types: str) -> None:
    status, body = await app_hub.call("GET", f"/events?types={types}")
    message = body["error"]["message"]
    assert status == 400 and "\n" not in message
    assert message.startswith("query parameter 'types': unknown event type")
    assert "task.*" in message


async def test_events_waiting_for_a_stream_go_out_together(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch's 1,000 task.created events went out in one send each, which held the loop
    # (for 30 ms) before the batch's first tasks could start.
    bus = app_hub.core.bus
    cut = bus.last_seq
    count, size = 300, 1000  # 300 KB: more than SSE_FLUSH_BYTES, sent in two parts
    for i in range(count):
        kind = "project.updated" if i == count - 1 else "gpus.updated"  # the last is told apart
        bus.publish(kind, data={"i": i, "pad": "x" * size})
    flushes = 0
    flush = SSEHandler.flush

    def counting(self: SSEHandler, *args: Any, **kwargs: Any) -> Any:
        nonlocal flushes
        flushes += 1
        return flush(self, *args, **kwargs)

    monkeypatch.setattr(SSEHandler, "flush", counting)
    frames = await app_hub.read_sse(f"/events?since={cut}", "project.updated")
    assert [data["data"]["i"] for _, data in frames] == list(range(count))
    assert 300 * size // SSE_FLUSH_BYTES + 1 <= flushes <= 300 * size // SSE_FLUSH_BYTES + 2


@pytest.mark.parametrize("path", ["/events", "/tasks/{id}/events", "/ws"])
async def test_event_streams_send_each_frame_at_once(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # With Nagle's algorithm on, a frame written while the previous one waited for its ACK was
    # held until the client acknowledged it, up to 40 ms later: the p99 of a log line on
    # /events went from 7 to 43 ms (bench/logs.py) once frames went out in bursts.
    _, task = await app_hub.call("POST", "/tasks", {"prompt": "echo hi", "backend": "shell"})
    peers: dict[Any, bool] = {}
    set_nodelay = tornado.iostream.IOStream.set_nodelay

    def recording(self: tornado.iostream.IOStream, value: bool) -> None:
        if self.socket is not None:
            peers[self.socket.getpeername()] = value
        set_nodelay(self, value)

    monkeypatch.setattr(tornado.iostream.IOStream, "set_nodelay", recording)
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    target = path.format(id=task["id"])
    headers = upgrade if path == "/ws" else None
    reader, writer = await app_hub.send_get(target, headers, version="1.1")
    try:
        answer = await asyncio.wait_for(reader.readline(), timeout=30)
        assert b" 101 " in answer if path == "/ws" else b" 200 " in answer, answer
        assert peers.get(writer.get_extra_info("sockname")) is True
    finally:
        writer.close()


async def test_task_event_stream_ends_with_the_final_task(app_hub: AppHub) -> None:
    _, task = await app_hub.call(
        "POST", "/tasks", {"prompt": "printf 'a\\nb\\n'", "backend": "shell"}
    )
    frames = await app_hub.read_sse(f"/tasks/{task['id']}/events", "end")
    text = "".join(d["text"] for e, d in frames if e == "log")
    assert text == "a\nb\n"
    assert frames[-1][0] == "end" and frames[-1][1]["status"] == "completed"
    # resuming from an offset sends only what follows
    tail = await app_hub.read_sse(f"/tasks/{task['id']}/events?offset=2", "end")
    assert "".join(d["text"] for e, d in tail if e == "log") == "b\n"


async def test_openapi_lists_every_route(app_hub: AppHub) -> None:
    status, doc = await app_hub.call("GET", "/openapi.json")
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


async def test_api_key_is_required_except_for_health(tmp_path: Path, local_entry: dict) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    key = "sk-test-key"
    async with running_app(home=tmp_path / "home", inventory=inventory, api_key=key) as hub:
        hub.api_key = None  # send no key unless a test line does
        assert (await hub.call("GET", "/health"))[0] == 200
        status, err = await hub.call("GET", "/tasks")
        assert (status, err["error"]["code"]) == (401, "unauthorized")
        assert key not in err["error"]["message"]
        assert (await hub.call("GET", "/tasks", headers={"X-Dobby-Key": "wrong"}))[0] == 401
        assert (await hub.call("GET", "/tasks", headers={"X-Dobby-Key": key}))[0] == 200
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await hub.call("GET", "/tasks", headers=bearer))[0] == 200
        assert (await hub.call("POST", "/tasks", {"prompt": "x"}))[0] == 401


async def test_hosts_and_stats_list_the_running_tasks_the_store_holds(app_hub: AppHub) -> None:
    # /hosts and /stats take the running tasks from the scheduler's memory (building 1,000
    # from the store cost each call ~30 ms): the same ones the store says are running.
    core = app_hub.core
    ids = []
    for _ in range(2):  # the host takes one at a time: the second waits
        _, task = await app_hub.call("POST", "/tasks", {"prompt": "sleep 60", "backend": "shell"})
        ids.append(task["id"])
    for running, pending in ((ids[0], ids[1]), (ids[1], None)):
        await app_hub.wait_status(running, ("running",))
        assert (
            [t.id for t in core.running_tasks()]
            == [t.id for t in core.store.tasks(status="running")]
            == [running]
        )
        _, hosts = await app_hub.call("GET", "/hosts")
        assert {h["name"]: h["running"] for h in hosts["hosts"]} == {"local": [running]}
        _, stats = await app_hub.call("GET", "/stats")
        assert (stats["queue"]["running"], stats["queue"]["pending"]) == (1, int(bool(pending)))
        await app_hub.call("POST", f"/tasks/{running}/cancel")
    await app_hub.wait_status(ids[1])
    assert core.running_tasks() == []
