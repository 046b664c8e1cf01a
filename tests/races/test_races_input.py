"""Bad races and checks are refused with a clear 400 before anything is queued (in process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dobby.core.raceshapes import RaceCreate, RaceList, RaceView
from tests.fixtures.app import AppHub
from tests.fixtures.hub import make_git_project
from tests.races.helpers import CHECK, FILES, PROMPT


@pytest.fixture
def hub_hosts(local_entry: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """Three hosts h1..h3 (this machine, each with its own workdir)."""
    return [
        {**local_entry, "name": f"h{i}", "workdir": str(tmp_path / f"work{i}")} for i in (1, 2, 3)
    ]


@pytest.fixture
async def hub(app_hub: AppHub, tmp_path: Path) -> AppHub:
    path = make_git_project(tmp_path / "app", FILES)
    status, body = await app_hub.call("POST", "/projects", {"name": "app", "path": str(path)})
    assert status in (200, 201), body
    return app_hub


async def refused(hub: AppHub, body: dict[str, Any], path: str = "/races", code: int = 400) -> str:
    """POST a body that must be refused; return the message."""
    status, answer = await hub.call("POST", path, body)
    assert status == code, answer
    return str(answer["error"]["message"])


BASE = {"prompt": PROMPT, "project": "app", "verify": CHECK}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"k": 0}, "'k' must be an integer >= 1, got 0"),
        ({"k": -2}, "'k' must be an integer >= 1"),
        ({"k": 9}, "'k' must be at most 8 (the hub's max_race), got 9"),
        ({}, "'k' is required"),
        ({"k": 2, "hosts": ["h1", "h1"]}, "duplicate host 'h1' in 'hosts'"),
        ({"k": 2, "host": "h1", "hosts": ["h2"]}, "give 'host' or 'hosts', not both"),
        ({"k": 2, "pick": "fastest"}, "invalid pick 'fastest' (choose first, smallest, cheapest)"),
        ({"k": 2, "backends": ["gemini"]}, "invalid backend 'gemini'"),
        ({"k": 2, "verify": ""}, "a race needs a check"),
        ({"k": 2, "resume": "abcd1234"}, "a race cannot be started with 'resume'"),
        ({"k": 2, "draft": True}, "a race cannot be started with 'draft'"),
        (
            {"k": 2, "backends": ["claude", "shell"], "fix_attempts": 1},
            "attempt 2: backend shell cannot run fix attempts",
        ),
    ],
)
async def test_bad_races_are_refused_with_a_clear_400(
    hub: AppHub, body: dict[str, Any], message: str
) -> None:
    assert message in await refused(hub, {**BASE, **body})
    assert (await hub.call("GET", "/races"))[1]["races"] == []
    assert (await hub.call("GET", "/tasks"))[1]["tasks"] == []  # all or nothing


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"backend": "shell", "fix_attempts": 1}, "backend shell cannot run fix attempts"),
        ({"project": None}, "a verify command runs in the task's git worktree"),
        ({"permissions": "plan"}, "a read-only planning run cannot be verified"),
        ({"verify": None, "fix_attempts": 2}, "'fix_attempts' and 'verify_timeout' need a"),
        ({"verify": "true\x00"}, "'verify' must not contain NUL bytes"),
        ({"verify": "x" * 70000}, "'verify' is longer than 65536 bytes"),
        ({"verify_timeout": "soon"}, "'verify_timeout': invalid duration 'soon'"),
        ({"fix_attempts": 11}, "'fix_attempts' must be at most 10"),
    ],
)
async def test_bad_checks_are_refused_with_a_clear_400(
    hub: AppHub, body: dict[str, Any], message: str
) -> None:
    fields = {**BASE, **body}
    sent = {k: v for k, v in fields.items() if v is not None}
    assert message in await refused(hub, sent, "/tasks")


async def test_an_unknown_host_is_not_found_like_a_task_s(hub: AppHub) -> None:
    body = {**BASE, "k": 2, "hosts": ["h1", "nope"]}
    assert "attempt 2: unknown host 'nope'" in await refused(hub, body, code=404)


async def test_the_race_routes_are_typed_in_openapi_and_answers_fit(hub: AppHub) -> None:
    status, doc = await hub.call("GET", "/openapi.json")
    assert status == 200
    post = doc["paths"]["/races"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RaceCreate"
    }
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RaceView"
    }
    schemas = doc["components"]["schemas"]
    assert schemas["RaceCreate"]["properties"]["k"]["minimum"] == 1
    assert schemas["RaceCreate"]["properties"]["pick"]["enum"] == ["first", "smallest", "cheapest"]
    assert set(schemas["RaceColumn"]["required"]) >= {"state", "verify", "diff_stat", "cost_usd"}
    view_ref = doc["paths"]["/races/{id}"]["get"]["responses"]["200"]["content"]
    assert view_ref["application/json"]["schema"]["$ref"].endswith("/RaceView")

    body = {**BASE, "k": 2, "hosts": ["h1", "h2"], "timeout": "5m"}
    RaceCreate.model_validate(body)  # what the API takes, the shape accepts
    status, race = await hub.call("POST", "/races", body)
    assert status == 201, race
    RaceView.model_validate(race)
    status, cancelled = await hub.call("POST", f"/races/{race['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    RaceView.model_validate(cancelled)
    status, listed = await hub.call("GET", "/races")
    RaceList.model_validate(listed)
    assert [r["id"] for r in listed["races"]] == [race["id"]]
