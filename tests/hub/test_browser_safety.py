"""Browser safety (dobby/hub/guard.py): foreign Hosts, foreign origins and non-JSON bodies are
refused with or without an API key; the hub's own clients keep working; keys stay out of logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from dobby.hub.guard import Guard, host_name, origin_key, redact_uri
from tests.fixtures.app import AppHub, running_app
from tests.fixtures.hub import write_inventory

KEY = "s3cret-key-for-tests"


# -- the pure checks ------------------------------------------------------------------------------


def guard(**kw: Any) -> Guard:
    return Guard.build(
        bind=kw.pop("bind", "127.0.0.1"), hub_url=kw.pop("hub_url", "http://127.0.0.1:8420"), **kw
    )


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("127.0.0.1:8420", "127.0.0.1"),
        ("LOCALHOST:8420", "localhost"),
        ("[::1]:8420", "::1"),
        ("[::1]", "::1"),
        ("example.com.", "example.com"),
        ("example.com", "example.com"),
        ("", ""),
    ],
)
def test_host_name(host: str, name: str) -> None:
    assert host_name(host) == name


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8420", True),
        ("localhost:8420", True),
        ("[::1]:8420", True),
        ("10.1.2.3:8420", True),  # an IP literal: rebinding needs a name the attacker owns
        ("dashboard.localhost:8420", True),
        ("attacker.example", False),
        ("attacker.example:8420", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.attacker.example", False),
        ("", False),
    ],
)
def test_host_allowed_by_default(host: str, allowed: bool) -> None:
    assert guard().host_allowed(host) is allowed


def test_host_allowed_by_settings() -> None:
    g = guard(hub_url="https://dobby.example.com", allowed_hosts=["Dobby.LAN."])
    assert g.host_allowed("dobby.example.com")
    assert g.host_allowed("dobby.lan:8420")
    assert not g.host_allowed("other.example.com")
    assert guard(bind="gpu-box.internal").host_allowed("gpu-box.internal:8420")
    assert guard(allowed_hosts=["*"]).host_allowed("anything.example")


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8420", "127.0.0.1:8420", True),  # the dashboard itself
        ("http://localhost:8420", "localhost:8420", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8420", False),  # another local server
        ("http://localhost:8420", "127.0.0.1:8420", True),  # hub_url's origin
        ("http://attacker.example", "127.0.0.1:8420", False),
        ("http://attacker.example:8420", "attacker.example:8420", True),  # Host check refuses it
        ("null", "127.0.0.1:8420", False),
        ("file://", "127.0.0.1:8420", False),
        ("https://dobby.example.com", "dobby.example.com", True),  # behind a TLS proxy
        ("https://dobby.example.com", "127.0.0.1:8420", False),
    ],
)
def test_origin_allowed(origin: str, host: str, allowed: bool) -> None:
    g = guard(hub_url="http://localhost:8420")
    assert g.origin_allowed(origin, host=host) is allowed


def test_allowed_origins_setting() -> None:
    g = guard(allowed_origins=["https://dobby.example.com/", "http://tools.lan:3000"])
    assert g.origin_allowed("https://dobby.example.com", host="127.0.0.1:8420")
    assert g.origin_allowed("http://tools.lan:3000", host="127.0.0.1:8420")
    assert not g.origin_allowed("http://tools.lan:3001", host="127.0.0.1:8420")
    assert origin_key("https://A.example.com:443") == ("https", "a.example.com", 443)


@pytest.mark.parametrize(
    ("headers", "foreign"),
    [
        ({}, False),  # curl, the CLI, Slack, MCP: no browser headers at all
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({"Sec-Fetch-Site": "none"}, False),  # typed in the address bar
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),  # another port on 127.0.0.1 is "same-site"
        ({"Origin": "http://127.0.0.1:8420", "Sec-Fetch-Site": "same-origin"}, False),
        ({"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}, True),
        ({"Origin": "null"}, True),
    ],
)
def test_foreign(headers: dict[str, str], foreign: bool) -> None:
    assert (guard().foreign(headers, host="127.0.0.1:8420") is not None) is foreign


def test_redact_uri() -> None:
    assert redact_uri("/tasks?key=abc&limit=2") == "/tasks?key=***&limit=2"
    assert redact_uri("/events?since=3&api_key=abc") == "/events?since=3&api_key=***"
    assert redact_uri("/tasks?monkey=1") == "/tasks?monkey=1"


# -- through the hub's app ------------------------------------------------------------------------


@pytest.fixture(params=[None, KEY], ids=["keyless", "key"])
async def app(request: pytest.FixtureRequest, tmp_path: Path, local_entry: dict[str, Any]) -> Any:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(
        home=tmp_path / "home", inventory=inventory, api_key=request.param
    ) as hub:
        yield hub


async def count_tasks(app: AppHub) -> int:
    status, body = await app.call("GET", "/tasks")
    assert status == 200, body
    return len(body["tasks"])


TASK = b'{"prompt": "echo pwned", "backend": "shell"}'


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
        ({"Content-Type": "multipart/form-data; boundary=y"}, 400, "http_error"),  # not multipart
        ({"Content-Type": ""}, 415, "unsupported_media_type"),
        ({"Origin": "http://attacker.example"}, 403, "forbidden"),
        ({"Origin": "null"}, 403, "forbidden"),
        ({"Origin": "http://127.0.0.1:1"}, 403, "forbidden"),
        ({"Sec-Fetch-Site": "cross-site"}, 403, "forbidden"),
        ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"}, 403, "forbidden"),
        ({"Host": "attacker.example"}, 403, "forbidden"),
    ],
)
async def test_foreign_or_non_json_submits_are_refused_and_store_nothing(
    app: AppHub, headers: dict[str, str], status: int, code: str
) -> None:
    # A form body browsers could send (for the malformed one Tornado answers 400 first).
    multipart = b'--x\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nls\r\n--x--\r\n'
    raw = multipart if "boundary=x" in headers.get("Content-Type", "") else TASK
    got, body = await app.call("POST", "/tasks", raw=raw, headers=headers)
    assert (got, body["error"]["code"]) == (status, code), body
    assert "\n" not in body["error"]["message"]
    assert await count_tasks(app) == 0


async def test_the_dashboards_own_requests_pass(app: AppHub) -> None:
    own = {"Origin": app.url, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    status, task = await app.call("POST", "/tasks", raw=TASK, headers=own)
    assert status == 201, task
    status, _ = await app.call("GET", "/tasks", headers={"Sec-Fetch-Site": "same-origin"})
    assert status == 200
    # A body-less POST (the dashboard's cancel button) needs no Content-Type.
    status, body = await app.call("POST", f"/tasks/{task['id']}/cancel", raw=b"", headers={
        **own, "Content-Type": ""})  # fmt: skip
    assert status in (200, 409), body
    # JSON with a charset is JSON.
    status, _ = await app.call(
        "POST", "/tasks", raw=TASK, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert status == 201


@pytest.mark.parametrize("path", ["/tasks", "/health", "/events", "/openapi.json", "/nope"])
async def test_a_foreign_host_is_refused_even_for_reads(app: AppHub, path: str) -> None:
    status, body = await app.call("GET", path, headers={"Host": "attacker.example:80"})
    assert (status, body["error"]["code"]) == (403, "forbidden"), body
    assert "allowed_hosts" in body["error"]["message"]


async def test_the_dashboard_page_refuses_a_foreign_host_but_not_a_link(app: AppHub) -> None:
    resp = await app.http.fetch(
        app.url + "/dashboard", headers={"Host": "attacker.example"}, raise_error=False
    )
    assert resp.code == 403
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    resp = await app.http.fetch(app.url + "/dashboard", headers=link, raise_error=False)
    assert resp.code == 200


async def test_cross_site_reads_are_refused_unless_navigations(app: AppHub) -> None:
    cors = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
    status, body = await app.call("GET", "/tasks", headers=cors)
    assert status == 403, body
    img = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    assert (await app.call("GET", "/events", headers=img))[0] == 403
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    status, _ = await app.call("GET", "/health", headers=link)
    assert status == 200


async def test_settings_allow_more_hosts_and_origins(
    tmp_path: Path, local_entry: dict[str, Any]
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(
        home=tmp_path / "home",
        inventory=inventory,
        allowed_hosts=["dobby.lan"],
        allowed_origins=["https://dobby.example.com"],
    ) as app:
        status, _ = await app.call("GET", "/tasks", headers={"Host": "dobby.lan:8420"})
        assert status == 200
        proxy = {"Origin": "https://dobby.example.com", "Sec-Fetch-Site": "cross-site"}
        status, body = await app.call("POST", "/tasks", raw=TASK, headers=proxy)
        assert status == 201, body
        status, _ = await app.call("GET", "/tasks", headers={"Host": "other.lan"})
        assert status == 403


async def test_the_key_in_a_query_is_refused_and_never_logged(
    tmp_path: Path, local_entry: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(home=tmp_path / "home", inventory=inventory, api_key=KEY) as app:
        app.api_key = None  # send no header: only the query carries the key
        with caplog.at_level(logging.INFO, logger="tornado.access"):
            status, body = await app.call("GET", f"/tasks?key={KEY}&limit=1")
            status2, _ = await app.call("GET", f"/health?key={KEY}")
        assert status == 401 and "X-Dobby-Key header" in body["error"]["message"]
        assert status2 == 200
        lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
        assert any("/tasks?key=***&limit=1" in line for line in lines), lines
        assert not any(KEY in line for line in lines), lines


async def test_openapi_needs_the_key_like_every_route_but_health(
    tmp_path: Path, local_entry: dict[str, Any]
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    async with running_app(home=tmp_path / "home", inventory=inventory, api_key=KEY) as app:
        assert (await app.call("GET", "/openapi.json"))[0] == 200
        app.api_key = None
        assert (await app.call("GET", "/openapi.json"))[0] == 401
        assert (await app.call("GET", "/health"))[0] == 200
