"""Listings, Idempotency-Key and a full disk, on a real hub process over HTTP."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dobby.store.db import task_docs_on_disk
from tests.fixtures.disk import fill_disk, tmpfs
from tests.fixtures.hub import HubProcess, write_inventory

pytestmark = pytest.mark.slow  # hub processes

PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts


def call(
    hub: HubProcess, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(hub.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def test_pages_filters_and_totals(hub: HubProcess) -> None:
    for private in (hub.home, hub.home / "results"):  # prompts, output, the database
        assert private.stat().st_mode & 0o777 == 0o700
    ids = []
    for i in range(7):
        prompt = f"refactor the parser {i}" if i % 2 else f"update docs {i}"
        _, task, _ = call(hub, "POST", "/tasks", {"prompt": prompt, **PARKED})
        ids.append(task["id"])
    newest = ids[::-1]
    _, page, _ = call(hub, "GET", "/tasks?limit=3")
    assert [t["id"] for t in page["tasks"]] == newest[:3]
    assert page["total"] == 7 and page["next_before"] == newest[2]
    _, page2, _ = call(hub, "GET", f"/tasks?limit=3&before={page['next_before']}")
    assert [t["id"] for t in page2["tasks"]] == newest[3:6]
    _, page3, _ = call(hub, "GET", "/tasks?limit=3&offset=6")
    assert [t["id"] for t in page3["tasks"]] == newest[6:] and page3["next_before"] is None
    _, every, _ = call(hub, "GET", "/tasks")  # no limit: every task, streamed
    assert [t["id"] for t in every["tasks"]] == newest and every["total"] == 7
    _, oldest, _ = call(hub, "GET", "/tasks?sort=oldest&limit=3&offset=1")
    assert [t["id"] for t in oldest["tasks"]] == ids[1:4] and oldest["next_before"] is None
    status, bad, _ = call(hub, "GET", "/tasks?sort=title&limit=3")
    assert status == 400 and "unknown sort 'title'" in bad["error"]["message"]
    status, bad, _ = call(hub, "GET", f"/tasks?sort=cost&limit=3&before={ids[3]}")
    assert status == 400 and "newest first only" in bad["error"]["message"]
    _, found, _ = call(hub, "GET", "/tasks?q=the%20PARS&limit=50")
    assert {t["id"] for t in found["tasks"]} == set(ids[1::2]) and found["total"] == 3
    _, mixed, _ = call(hub, "GET", "/tasks?status=pending,running&backend=shell&limit=2")
    assert mixed["total"] == 7 and len(mixed["tasks"]) == 2
    assert call(hub, "GET", "/health")[1]["tasks"] == {"running": 0, "pending": 7, "draft": 0}
    _, none, _ = call(hub, "GET", "/tasks?host=elsewhere&limit=5")
    assert none == {"tasks": [], "total": 0, "limit": 5, "offset": 0, "next_before": None}
    status, err, _ = call(hub, "GET", "/tasks?project=nope")
    assert status == 404 and "unknown project" in err["error"]["message"]
    status, err, _ = call(hub, "GET", "/tasks?status=runing")
    assert status == 400 and "unknown status" in err["error"]["message"]
    _, results, _ = call(hub, "GET", "/results?limit=5&status=pending")
    assert len(results["results"]) == 5 and results["total"] == 7
    assert results["results"][0]["task_id"] == newest[0]


def test_idempotency_key_returns_the_first_answer_and_never_a_second_task(
    hub: HubProcess,
) -> None:
    body = {"prompt": "once", **PARKED}
    status, first, headers = call(hub, "POST", "/tasks", body, key="k-123")
    assert status == 201 and "Idempotent-Replayed" not in headers
    status, again, headers = call(hub, "POST", "/tasks", body, key="k-123")
    assert status == 201 and again == first and headers.get("Idempotent-Replayed") == "true"
    status, err, _ = call(hub, "POST", "/tasks", {"prompt": "other", **PARKED}, key="k-123")
    assert status == 409 and "different request body" in err["error"]["message"]
    status, err, _ = call(hub, "POST", "/tasks", body, key="bad key")
    assert status == 400 and "Idempotency-Key" in err["error"]["message"]
    batch = {"name": "b", "tasks": [{"name": "a", "prompt": "x", **PARKED}]}
    _, b1, _ = call(hub, "POST", "/batches", batch, key="k-123")  # keys are per route
    _, b2, _ = call(hub, "POST", "/batches", batch, key="k-123")
    assert b1["id"] == b2["id"]
    _, listing, _ = call(hub, "GET", "/tasks?limit=10")
    assert listing["total"] == 2  # one task, one batch task
    _, stored, _ = call(hub, "GET", f"/tasks/{first['id']}")
    assert list(stored) == list(first) and stored["created_at"] == first["created_at"]
    hub.kill()  # SIGKILL: an acknowledged answer and its key are on disk
    hub.start()
    status, replayed, headers = call(hub, "POST", "/tasks", body, key="k-123")
    assert status == 201 and replayed == first and headers.get("Idempotent-Replayed") == "true"
    _, listing, _ = call(hub, "GET", "/tasks?limit=10")
    assert listing["total"] == 2  # still no second task after a restart


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 6 MiB tmpfs."""
    with tmpfs("6m") as mount:
        yield mount


def test_a_full_disk_answers_503_fast_and_the_retry_gets_the_task(
    tmp_path: Path, small_disk: Path, local_entry: dict[str, Any]
) -> None:
    home = small_disk / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text("write_timeout: 2\n")
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    hub = HubProcess(home=home, inventory=inventory)
    hub.log_path = tmp_path / "hub.log"  # not in the home: it is on the small disk
    with hub:
        status, first, _ = call(hub, "POST", "/tasks", {"prompt": "before", **PARKED})
        assert status == 201
        filler = fill_disk(small_disk)
        body = {"prompt": "while full", **PARKED}
        began = time.monotonic()
        status, err, _ = call(hub, "POST", "/tasks", body, key="retry-me")
        assert time.monotonic() - began < 10  # answered, not hung for as long as it is full
        assert status == 503, err
        assert err["error"]["code"] == "storage_unavailable"
        assert "Idempotency-Key" in err["error"]["message"]
        os.unlink(filler)
        status, task, _ = call(hub, "POST", "/tasks", body, key="retry-me")
        assert status == 201 and task["prompt"] == "while full"
        _, listing, _ = call(hub, "GET", "/tasks?limit=10")
        assert [t["prompt"] for t in listing["tasks"]] == ["while full", "before"]
        hub.kill()
    on_disk = task_docs_on_disk(home / "dobby.db")
    assert {first["id"], task["id"]} <= set(on_disk) and len(on_disk) == 2
