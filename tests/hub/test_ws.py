"""GET /ws: the event stream of GET /events over a WebSocket, with ?since= and the key check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests.fixtures.app import AppHub, running_app
from tests.fixtures.hub import write_inventory

KEY = "ws-test-key"


@pytest.fixture
async def keyed(tmp_path: Path, local_entry: dict[str, Any]) -> Any:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(home=tmp_path / "home", inventory=inventory, api_key=KEY) as hub:
        yield hub


async def connect(
    app: AppHub, query: str = "", headers: dict[str, str] | None = None
) -> tornado.websocket.WebSocketClientConnection:
    request = tornado.httpclient.HTTPRequest(
        f"ws://127.0.0.1:{app.port}/ws{query}", headers=headers or {}, request_timeout=10
    )
    return await tornado.websocket.websocket_connect(request)


async def next_event(
    conn: tornado.websocket.WebSocketClientConnection, type_: str
) -> dict[str, Any]:
    while True:
        message = await conn.read_message()
        assert message is not None, "the hub closed the WebSocket"
        event = json.loads(message)
        if event["type"] == type_:
            return event  # type: ignore[no-any-return]


async def test_ws_streams_new_events_and_replays_since(keyed: AppHub) -> None:
    conn = await connect(keyed, headers={"X-Dobby-Key": KEY})
    try:
        status, task = await keyed.call("POST", "/tasks", {"prompt": "echo hi", "backend": "shell"})
        assert status == 201, task
        created = await next_event(conn, "task.created")
        assert created["task_id"] == task["id"] and created["data"]["prompt"] == "echo hi"
        finished = await next_event(conn, "task.finished")
        assert finished["data"]["status"] == "completed"
    finally:
        conn.close()
    # Resume from before the task: the same events again, in order, numbered as on /events.
    replay = await connect(
        keyed, f"?since={created['seq'] - 1}", {"Authorization": f"Bearer {KEY}"}
    )
    try:
        again = await next_event(replay, "task.created")
        assert again == created
        assert (await next_event(replay, "task.finished"))["seq"] == finished["seq"]
    finally:
        replay.close()
    frames = await keyed.read_sse(f"/events?since={created['seq'] - 1}", until="task.created")
    assert frames[-1][1]["seq"] == created["seq"]


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {}, 401),  # no key
        ("", {"X-Dobby-Key": "wrong"}, 401),
        (f"?key={KEY}", {}, 401),  # a key in the URL is not accepted
        ("?since=x", {"X-Dobby-Key": KEY}, 400),
        ("", {"X-Dobby-Key": KEY, "Origin": "http://attacker.example"}, 403),
        ("", {"X-Dobby-Key": KEY, "Host": "attacker.example"}, 403),
    ],
)
async def test_ws_refuses_without_key_and_from_foreign_pages(
    keyed: AppHub, query: str, headers: dict[str, str], status: int
) -> None:
    with pytest.raises(tornado.httpclient.HTTPClientError) as err:
        await connect(keyed, query, headers)
    assert err.value.code == status


async def test_ws_of_a_keyless_hub_still_refuses_other_sites(app_hub: AppHub) -> None:
    # Browsers apply no CORS to WebSockets: without this any page could read every prompt.
    with pytest.raises(tornado.httpclient.HTTPClientError) as err:
        await connect(app_hub, headers={"Origin": "http://127.0.0.1:1"})
    assert err.value.code == 403
    conn = await connect(app_hub, headers={"Origin": app_hub.url})
    conn.close()
