"""Bad input over the real API: one-line 400s naming the field, and no permanent 500 from an
old bad record already in the store (issue 13, items 6-8)."""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dobby.core.models import Task, TaskStatus, utcnow
from tests.fixtures.app import AppHub
from tests.fixtures.hub import HubProcess, make_git_project, write_inventory

PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts


def body(**fields: Any) -> bytes:
    """Return JSON as Python writes it: NaN and Infinity literals, "\\udfff" escapes."""
    return json.dumps(fields).encode()


NAN, INF = float("nan"), float("inf")
DEEP = b'{"prompt": "x", "labels": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    ("method", "path", "raw", "message"),
    [
        ("POST", "/tasks", body(prompt="x", timeout=NAN, **PARKED),
         "'timeout' must be a positive number of seconds up to 2592000 (30d), got nan"),
        ("POST", "/tasks", body(prompt="x", timeout=INF, **PARKED), "(30d), got inf"),
        ("POST", "/tasks", body(prompt="x", timeout=1e308, **PARKED), "(30d), got 1e+308"),
        ("POST", "/tasks", b'{"prompt": "x", "timeout": 1e999}', "(30d), got inf"),
        ("POST", "/tasks", body(prompt="x", max_budget_usd=INF, **PARKED),
         "'max_budget_usd' must be a number of USD > 0 and <= 10000, got inf"),
        ("POST", "/tasks", body(prompt="x", max_turns=10**9, **PARKED),
         "'max_turns' must be an integer >= 1 and <= 10000, got 1000000000"),
        ("POST", "/tasks", body(prompt="x", gpus=10**20, **PARKED),
         "'gpus' must be an integer >= 0 and <= 64"),
        ("POST", "/tasks", body(prompt="x", title="\udfff", **PARKED),
         "'title' is not valid UTF-8 text (lone surrogate \\udfff at character 0)"),
        ("POST", "/tasks", body(prompt="ok\ud800", **PARKED), "'prompt' is not valid UTF-8 text"),
        ("POST", "/tasks", body(prompt="x" * ((10 << 20) + 1), **PARKED),
         "'prompt' is 10.0 MiB; the limit is 10 MiB (10485760 bytes)"),
        ("POST", "/tasks", DEEP, "nested too deeply"),
        ("POST", "/projects", body(name="b", path="/tmp", default_timeout=INF),
         "'default_timeout' must be a positive number of seconds up to 2592000"),
        ("PATCH", "/projects/app", body(default_timeout=NAN), "'default_timeout' must be a "
         "positive number of seconds up to 2592000 (30d), got nan"),
        ("PATCH", "/projects/app", body(auto_retry=1_000_000_000),
         "'auto_retry' must be an integer >= 0 and <= 10, got 1000000000"),
        ("PATCH", "/projects/app", body(max_concurrent=INF), "'max_concurrent' must be an integer"),
        ("POST", "/schedules", body(prompt="x", every=NAN, **PARKED), "'every' must be a duration"),
        ("POST", "/schedules", body(prompt="x", every="1h", timeout=INF, **PARKED),
         "'timeout' must be a positive number of seconds"),
        ("POST", "/batches", body(tasks=[{"prompt": "x", "timeout": NAN, **PARKED}]),
         "<request>:tasks[0].timeout: 'timeout' must be a positive number of seconds"),
        ("POST", "/batches", body(yaml="tasks:\n  - prompt: x\n    timeout: .inf\n", file="j.yaml"),
         "j.yaml:3: 'timeout' must be a positive number of seconds up to 2592000 (30d), got inf"),
        ("POST", "/batches", body(yaml="tasks:\n  - prompt: a\x8fb\n"),
         "<batch>:2: invalid YAML: unacceptable character #x008f"),
        ("POST", "/gc", body(older_than=INF), "'older_than' must be seconds >= 0"),
        ("POST", "/tasks/ffffffff/retry", body(cascade="maybe"), "'cascade' must be true or false"),
        ("POST", "/remote", body(prompt="\udfff"), "'prompt' is not valid UTF-8 text"),
        ("GET", "/tasks/ffffffff/logs?offset=491782034668449337180160", None,
         "query parameter 'offset' must be >= 0 and <= 9007199254740991"),
        ("GET", "/tasks?limit=99999999999999999999", None, "query parameter 'limit' must be"),
        ("GET", "/stats?since=999999d", None, "invalid since '999999d': that is too far back"),
        ("GET", "/export?since=999999999999d", None, "that is too far back"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else "-",  # short: tmp_path has it
)  # fmt: skip
async def test_bad_input_is_a_400_naming_the_field(
    app_hub: AppHub, tmp_path: Path, method: str, path: str, raw: bytes | None, message: str
) -> None:
    project = {"name": "app", "path": str(make_git_project(tmp_path / "app"))}
    assert (await app_hub.call("POST", "/projects", project))[0] == 201
    status, answer = await app_hub.call(method, path, raw=raw)
    assert status == 400, answer
    assert message in answer["error"]["message"], answer
    assert "\n" not in answer["error"]["message"]
    # nothing of it was stored
    status, listing = await app_hub.call("GET", "/tasks")
    assert status == 200 and listing["tasks"] == []
    status, project = await app_hub.call("GET", "/projects/app")
    assert (project["default_timeout"], project["auto_retry"]) == (None, 0)


async def test_import_is_checked_as_submits_all_or_nothing(app_hub: AppHub) -> None:
    async def call(method: str, path: str, raw: bytes) -> tuple[int, Any]:
        return await app_hub.call(method, path, raw=raw)

    def doc(tid: str, **changes: Any) -> dict[str, Any]:
        task = Task(prompt="p", id=tid, status=TaskStatus.COMPLETED, finished_at=utcnow())
        return {**task.to_dict(), **changes}

    export = "[\n" + ",\n".join(json.dumps(d) for d in [
        doc("imp00001"), doc("imp00002"), doc("imp00003", cost_usd="lots"),
    ]) + "\n]\n"  # fmt: skip
    status, answer = await call("POST", "/import", export.encode())
    assert status == 400
    assert answer["error"]["message"] == (
        "line 4: task imp00003: 'cost_usd' must be a finite number >= 0 and <= 1000000000, "
        "got 'lots'"
    )
    assert (await app_hub.call("GET", "/tasks/imp00001"))[0] == 404  # nothing of it was stored
    lines = "\n".join(json.dumps(d) for d in [doc("imp00004"), doc("imp00005", started_at="x")])
    status, answer = await call("POST", "/import", lines.encode())
    assert status == 400 and answer["error"]["message"].startswith(
        "line 2: task imp00005: 'started_at' must be an ISO-8601 time"
    )
    status, answer = await call("POST", "/import", body(tasks=[doc("imp00006", title="\udfff")]))
    assert status == 400 and "'title' is not valid UTF-8 text" in answer["error"]["message"]
    status, answer = await call("POST", "/import", json.dumps([doc("imp00007")]).encode())
    assert status == 200 and answer["imported"] == 1


# -- old bad records ----------------------------------------------------------------------------


def seed_old_hub(home: Path) -> list[str]:
    """Write the state of a hub from before these rules (TinyDB file and archive) with tasks
    its imports let in: junk values, NaN, an unknown status, a lone surrogate."""
    now = utcnow()
    archived = [
        {**Task(prompt="p", id="old00001", backend="claude", status=TaskStatus.COMPLETED,
                created_at=now, finished_at=now).to_dict(),
         "started_at": "not-a-date", "cost_usd": "lots", "tokens": {"input": "many"}},
        {**Task(prompt="p", id="old00002", status=TaskStatus.FAILED, created_at=now,
                finished_at=now).to_dict(),
         "timeout": float("nan"), "exit_code": "1", "status": "weird", "attempt": None},
    ]  # fmt: skip
    hot = Task(prompt="p", id="old00003", title="bad \udfff title", status=TaskStatus.CANCELLED)
    hot.finished_at, hot.started_at, hot.cost_usd = now, "yesterday", float("inf")
    (home / "archive").mkdir(parents=True)
    lines = "".join(json.dumps(doc) + "\n" for doc in archived)
    (home / "archive" / f"tasks-{now[:7]}.jsonl").write_text(lines)
    (home / "dobby.json").write_text(json.dumps({"tasks": {"1": hot.to_dict()}}))
    return ["old00001", "old00002", "old00003"]


@pytest.mark.slow
def test_old_bad_records_never_make_a_reader_fail(
    tmp_path: Path, hub_hosts: list[dict[str, Any]]
) -> None:
    ids = seed_old_hub(tmp_path / "home")
    inventory = write_inventory(tmp_path / "inventory.yaml", hub_hosts)
    with HubProcess(home=tmp_path / "home", inventory=inventory) as proc:

        def get(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(proc.url + path, timeout=60) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                with err:
                    return err.code, err.read()

        for path in [
            "/tasks", "/tasks?limit=2", "/tasks?q=p", "/results", "/results?limit=1", "/stats",
            "/stats?since=1d", "/export", "/export?format=json", "/dashboard/api/usage",
            "/dashboard/api/heatmap", "/dashboard/api/live", "/batches",
            *(f"/tasks/{tid}" for tid in ids), *(f"/results/{tid}" for tid in ids),
            *(f"/dashboard/api/tasks/{tid}/timeline" for tid in ids),
            *(f"/tasks/{tid}/detail-status" for tid in ids),
        ]:  # fmt: skip
            status, answer = get(path)
            assert status == 200, (path, answer)
        # Repaired once, as the SQLite store imported the old files: every listing agrees.
        tasks = {t["id"]: t for t in json.loads(get("/tasks")[1])["tasks"]}
        assert tasks["old00003"]["title"] == "bad \udfff title"  # kept, escaped in the JSON
        assert tasks["old00001"]["cost_usd"] is None and tasks["old00001"]["started_at"] is None
        assert tasks["old00001"]["tokens"]["input"] == 0
        assert tasks["old00002"]["status"] == "failed" and tasks["old00002"]["timeout"] is None
        assert json.loads(get("/tasks/old00003")[1])["cost_usd"] is None
        rows = list(csv.DictReader(io.StringIO(get("/export")[1].decode())))
        assert {r["id"] for r in rows} == set(ids)
        assert json.loads(get("/export?format=json")[1])  # a repaired export reads back as JSON
        usage = json.loads(get("/dashboard/api/usage")[1])
        assert usage["windows"][0]["backends"]
