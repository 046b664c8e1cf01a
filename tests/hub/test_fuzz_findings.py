"""What the API fuzzer (tests/faults/test_fuzz.py) found, and the same faults next to them in
the code it pointed at (other inputs int() refuses), each fixed at its cause."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dobby.hub.app import openapi
from tests.fixtures.app import AppHub
from tests.fixtures.hub import make_git_project

PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts


async def raw_get(hub: AppHub, path: str, headers: dict[str, str]) -> str:
    """Send a GET with headers as given (Latin-1 on the wire); return the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        lines = [f"GET {path} HTTP/1.0", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        async with asyncio.timeout(30):
            return (await reader.readline()).decode("latin-1").strip()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("path", ["/tasks?backend=nope", "/results?backend=nope"])
async def test_an_unknown_backend_filter_is_refused_like_an_unknown_status(
    app_hub: AppHub, path: str
) -> None:
    # The document says backend is one of claude/codex/shell; the hub answered [] for others.
    status, answer = await app_hub.call("GET", path)
    assert status == 400, answer
    assert answer["error"]["message"] == "unknown backend 'nope' (known: claude, codex, shell)"
    assert (await app_hub.call("GET", path.replace("nope", "shell")))[0] == 200
    assert (await app_hub.call("GET", path.replace("nope", "")))[0] == 200  # empty: any


@pytest.mark.parametrize("path", ["/dashboard/api/heatmap", "/dashboard/api/usage"])
async def test_days_in_non_ascii_digits_is_a_400_not_a_500(app_hub: AppHub, path: str) -> None:
    # "²".isdigit() is true and int("²") raises: the handler answered 500.
    status, answer = await app_hub.call("GET", path + "?days=%C2%B2")
    assert status == 400, answer
    assert "'days' must be an integer from 1 to" in answer["error"]["message"]


async def test_headers_with_non_ascii_digits_are_no_500(app_hub: AppHub) -> None:
    host = f"127.0.0.1:{app_hub.port}"
    # Last-Event-ID "²" is no event number: the stream starts from now, as with none.
    line = await raw_get(app_hub, "/events", {"Host": host, "Last-Event-ID": "\u00b2"})
    assert line.split()[1] == "200", line
    # A Host port "²" is no port (Tornado refuses the request itself), never a 500.
    line = await raw_get(app_hub, "/health", {"Host": "127.0.0.1:\u00b2"})
    assert line.split()[1] in ("200", "400", "403"), line


async def test_a_project_name_ending_in_a_newline_is_refused(
    app_hub: AppHub, tmp_path: Path
) -> None:
    # NAME_RE.match took "app\n" ($ matches before a final newline); the document's pattern
    # (ECMA-262, as JSON Schema reads it) does not.
    repo = make_git_project(tmp_path / "app")
    status, answer = await app_hub.call("POST", "/projects", {"name": "app\n", "path": str(repo)})
    assert status == 400, answer
    assert answer["error"]["message"].startswith("invalid project name 'app\n'")
    pattern = openapi()["components"]["schemas"]["ProjectCreate"]["properties"]["name"]["pattern"]
    assert pattern == "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@pytest.mark.parametrize(
    ("field", "value", "kept"),
    [("max_turns", 173.0, 173), ("gpus", 0.0, 0)],
)
async def test_an_integer_written_as_a_float_is_that_integer(
    app_hub: AppHub, field: str, value: float, kept: int
) -> None:
    # JSON Schema's "integer" (what /openapi.json says) includes 173.0; the hub refused it.
    body: dict[str, Any] = {"prompt": "x", field: value, **PARKED}
    status, task = await app_hub.call("POST", "/tasks", body)
    assert status == 201, task
    assert task[field] == kept and isinstance(task[field], int)
    status, answer = await app_hub.call("POST", "/tasks", {**body, field: value + 0.5})
    assert status == 400 and f"'{field}' must be" in answer["error"]["message"], answer


def test_the_document_says_what_the_hub_checks() -> None:
    doc = openapi()
    params = {
        path: doc["paths"][path]["get"]["parameters"][0]["schema"]["anyOf"][0]
        for path in ("/dashboard/api/heatmap", "/dashboard/api/usage")
    }
    assert params["/dashboard/api/heatmap"]["maximum"] == 3660
    assert params["/dashboard/api/usage"]["maximum"] == 366
    spoke = doc["components"]["schemas"]["SpokeRegister"]["properties"]["name"]
    assert spoke["pattern"] == "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
    # Bootstrap works on the host itself: an unreachable one is a documented 502.
    assert "502" in doc["paths"]["/hosts/{name}/bootstrap"]["post"]["responses"]


async def test_an_empty_query_value_is_absent_and_the_document_says_so(app_hub: AppHub) -> None:
    # The hub always read ?limit= (empty) as no limit; the document said "integer" only.
    for path in ("/tasks?limit=&offset=&sort=&backend=", "/stats?since=", "/gpus?history="):
        assert (await app_hub.call("GET", path))[0] == 200, path
    headers = {"Host": f"127.0.0.1:{app_hub.port}"}
    assert (await raw_get(app_hub, "/export?format=", headers)).split()[1] == "200"
    limit = next(
        p["schema"]
        for p in openapi()["paths"]["/tasks"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert {"type": "string", "maxLength": 0} in limit["anyOf"]


async def test_an_unknown_diff_format_is_refused_not_answered_as_json(app_hub: AppHub) -> None:
    status, answer = await app_hub.call("GET", "/tasks/nosuch/diff?format=patch")
    assert status == 400, answer
    assert answer["error"]["message"] == "invalid format 'patch' (choose json, text)"
    assert (await app_hub.call("GET", "/tasks/nosuch/diff?format="))[0] == 404
