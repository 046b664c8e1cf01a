"""The scheduler's REST routes on a hub app in the test's event loop: errors, schedules, batches,
policies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dobby.core.errors import DobbyError, NoEligibleHost, ValidationError
from dobby.core.models import Task
from dobby.core.timefmt import utcnow
from dobby.hub.idempotency import answer_once
from dobby.scheduler import batches
from dobby.scheduler import loop as scheduler_loop
from dobby.store.db import task_docs_on_disk
from tests.fixtures.app import AppHub, running_app
from tests.fixtures.hub import make_git_project, write_inventory
from tests.fixtures.wait import wait_until_async

PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts


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
        ("POST", "/tasks", {"prompt": "x", "fallback_backends": ["gemini"]}, 400,
         "invalid fallback_backends 'gemini' (choose claude, codex, shell)"),
        ("POST", "/tasks", {"prompt": "x", "fallback_backends": [3]}, 400,
         "'fallback_backends' must be a list of non-empty strings"),
    ],
)  # fmt: skip
async def test_scheduler_errors_are_json(app_hub: AppHub, method: str, path: str, body: Any,
                                   status: int, message: str) -> None:  # fmt: skip
    got_status, got = await app_hub.call(method, path, body)
    assert got_status == status, got
    assert message in got["error"]["message"], got


async def test_schedule_lifecycle_over_the_api(app_hub: AppHub) -> None:
    status, sched = await app_hub.call("POST", "/schedules",
                         {"cron": "0 3 * * *", "prompt": "nightly", **PARKED})  # fmt: skip
    assert status == 201 and sched["next_at"] and sched["cron"] == "0 3 * * *"
    assert (await app_hub.call("GET", "/schedules"))[1] == {"schedules": [sched]}
    paused = (await app_hub.call("POST", f"/schedules/{sched['id']}/pause"))[1]
    assert paused["paused"] is True and paused["next_at"] is None
    resumed = (await app_hub.call("POST", f"/schedules/{sched['id'][:6]}/resume"))[1]
    assert resumed["paused"] is False and resumed["next_at"] == sched["next_at"]
    assert (await app_hub.call("DELETE", f"/schedules/{sched['id']}"))[0] == 200
    assert (await app_hub.call("GET", "/schedules"))[1] == {"schedules": []}


async def test_a_batch_answer_is_what_the_batch_shows_later(app_hub: AppHub) -> None:
    # The answer is put together from the stored task texts: names that JSON must escape
    # and keys held once (call() refuses an answer that holds one twice).
    odd = 'b "quoted" \\ ñ \u2028'
    status, batch = await app_hub.call("POST", "/batches", {
        "name": "same", "defaults": PARKED,
        "tasks": [{"name": "a", "prompt": "a $(x) `y`"},
                  {"name": odd, "prompt": "ü", "draft": True}],
    })  # fmt: skip
    assert status == 201 and batch["counts"] == {"pending": 1, "draft": 1}
    assert [t["name"] for t in batch["tasks"]] == ["a", odd]
    assert [t["prompt"] for t in batch["tasks"]] == ["a $(x) `y`", "ü"]
    assert batch["tasks"][0]["id"] == (await app_hub.task(batch["tasks"][0]["id"]))["id"]
    status, shown = await app_hub.call("GET", f"/batches/{batch['id']}")
    assert status == 200
    for answered in (batch, shown):  # the scheduler's pass since says what they wait for now
        for task in answered["tasks"]:
            task.pop("waiting_on"), task.pop("wait_reason")
    assert shown == batch


async def test_a_batch_looks_at_the_hosts_once_and_only_while_it_is_built(
    app_hub: AppHub,
) -> None:
    intake, hosts = app_hub.core.intake, app_hub.core.hosts.hosts
    task = Task(prompt="x", backend="shell", host_selector=["gpu"])
    with pytest.raises(NoEligibleHost):
        intake.check_placement(task)
    name = next(iter(hosts))
    with intake.one_look():
        hosts[name] = dataclasses.replace(hosts[name], labels=["gpu"])
        with pytest.raises(NoEligibleHost):  # the look taken when the batch began
            intake.check_placement(task)
    intake.check_placement(task)  # a task on its own looks again: the gpu host is there
    with pytest.raises(ValidationError), intake.one_look():
        raise ValidationError("a bad entry")
    hosts[name] = dataclasses.replace(hosts[name], labels=[])
    with pytest.raises(NoEligibleHost):  # the look ended with the failed batch
        intake.check_placement(task)


async def test_tasks_of_a_batch_alike_but_for_their_text_are_checked_once_and_share_nothing(
    app_hub: AppHub,
) -> None:
    intake = app_hub.core.intake
    alike = {"backend": "shell", "labels": [], "artifacts": ["*.txt"], "timeout": "5m",
             "fallback_backends": ["codex"], **PARKED}  # fmt: skip
    with intake.one_look():
        one, _ = intake.build({"prompt": "first", **alike})
        two, flags = intake.build({**alike, "prompt": "second\nline", "title": "Two"})
        three, _ = intake.build({**alike, "prompt": "third"})
        bad = {
            "empty prompt": {**alike, "prompt": "  "},
            "NUL": {**alike, "prompt": "a\x00b"},
            "bad title": {**alike, "prompt": "ok", "title": 5},
            "bad timeout": {**alike, "prompt": "ok", "timeout": "soon"},
        }
        inside = {}
        for what, body in bad.items():
            with pytest.raises(DobbyError) as caught:
                intake.build(body)
            inside[what] = str(caught.value)
    assert flags == {}
    assert (two.prompt, two.title, three.title) == ("second\nline", "Two", "third")
    assert len({one.id, two.id, three.id}) == 3
    made_alone, _ = intake.build({**alike, "prompt": "second\nline", "title": "Two"})
    own = ("id", "created_at")
    assert {k: v for k, v in two.to_dict().items() if k not in own} == {
        k: v for k, v in made_alone.to_dict().items() if k not in own
    }
    for name, value in vars(two).items():  # a change to one task's list is its own
        if isinstance(value, list | dict) or dataclasses.is_dataclass(value):
            assert value is not vars(one)[name] and value is not vars(three)[name], name
    for what, body in bad.items():  # the same message as a task checked on its own
        with pytest.raises(DobbyError) as caught:
            intake.build(body)
        assert inside[what] == str(caught.value), what


async def test_batch_json_policies_and_openapi(app_hub: AppHub, tmp_path: Path) -> None:
    repo = make_git_project(tmp_path / "app")
    status, project = await app_hub.call("POST", "/projects",
                           {"name": "app", "path": str(repo), "max_concurrent": 3,
                            "default_priority": "high"})  # fmt: skip
    assert status == 201 and project["max_concurrent"] == 3
    status, patched = await app_hub.call("PATCH", "/projects/app",
                           {"auto_chain": "yes", "default_timeout": "10m"})  # fmt: skip
    assert status == 200 and patched["auto_chain"] is True and patched["default_timeout"] == 600
    status, bad = await app_hub.call("PATCH", "/projects/app", {"path": "/elsewhere"})
    assert status == 400 and "cannot set path" in bad["error"]["message"]
    for budget, why in (
        ({"day": 0}, "'budget_usd': day must be a positive number of USD, got 0"),
        ({"month": -1}, "'budget_usd': month must be a positive number of USD, got -1"),
        ("day:x", "'budget_usd': day must be a positive number of USD, got 'x'"),
        ({"hour": 5}, "'budget_usd': unknown window 'hour' (use day, week, month)"),
    ):
        status, bad = await app_hub.call("PATCH", "/projects/app", {"budget_usd": budget})
        assert (status, bad["error"]["message"]) == (400, why)
    status, patched = await app_hub.call(
        "PATCH",
        "/projects/app",
        {"budget_usd": "day:20,month:300", "fallback_backends": "codex"},
    )
    assert status == 200 and patched["budget_usd"] == {"day": 20.0, "month": 300.0}
    assert patched["fallback_backends"] == ["codex"]
    status, patched = await app_hub.call("PATCH", "/projects/app", {"budget_usd": None})
    assert status == 200 and patched["budget_usd"] is None
    status, bad = await app_hub.call("PATCH", "/projects/app", {"commit_ignore": ["a\nb"]})
    assert status == 400 and "invalid commit_ignore pattern 'a\\nb'" in bad["error"]["message"]
    status, patched = await app_hub.call(
        "PATCH", "/projects/app", {"commit_ignore": "*.log, data/,*.log"}
    )
    assert status == 200 and patched["commit_ignore"] == ["*.log", "data/"]
    status, batch = await app_hub.call("POST", "/batches", {
        "name": "json", "defaults": {"project": "app", **PARKED},
        "tasks": [{"name": "one", "prompt": "a"}, {"name": "two", "prompt": "b", "after": ["one"]}],
    })  # fmt: skip
    assert status == 201 and batch["total"] == 2 and batch["counts"] == {"pending": 2}
    one, two = batch["tasks"]
    assert (one["priority"], one["timeout"]) == ("high", 600.0)  # the project's defaults
    assert one["commit_ignore"] == ["*.log", "data/"]  # its project's, when it was queued
    assert two["after"] == [one["id"]] and two["waiting_on"] == "dependencies"
    # auto_chain: a new task of the project waits for its newest unfinished task
    status, chained = await app_hub.call(
        "POST", "/tasks", {"prompt": "c", "project": "app", **PARKED}
    )
    assert chained["after"] == [two["id"]]
    listed = (await app_hub.call("GET", "/batches"))[1]["batches"]
    assert [b["id"] for b in listed] == [batch["id"]] and "tasks" not in listed[0]
    paths = (await app_hub.call("GET", "/openapi.json"))[1]["paths"]
    for path in (
        "/schedules",
        "/batches/{id}",
        "/tasks/{id}/approve",
        "/tasks/{id}/reject",
        "/usage",
    ):
        assert path in paths
    assert "patch" in paths["/projects/{id}"]


async def test_acknowledged_task_is_already_on_disk(app_hub: AppHub) -> None:
    status, task = await app_hub.call("POST", "/tasks", {"prompt": "durable", **PARKED})
    assert status == 201
    on_disk = task_docs_on_disk(app_hub.home / "dobby.db")
    assert on_disk[task["id"]]["prompt"] == "durable"


async def test_retry_and_approve_conflicts(app_hub: AppHub) -> None:
    _, task = await app_hub.call("POST", "/tasks", {"prompt": "x", **PARKED})
    status, err = await app_hub.call("POST", f"/tasks/{task['id']}/retry", {"cascade": True})
    assert status == 409 and "only failed or cancelled" in err["error"]["message"]
    status, err = await app_hub.call("POST", f"/tasks/{task['id']}/approve")
    assert status == 409 and "only drafts can be approved" in err["error"]["message"]
    status, err = await app_hub.call("PATCH", f"/tasks/{task['id']}", {"plan": "x"})
    assert status == 409 and "only a draft's plan" in err["error"]["message"]
    _, draft = await app_hub.call("POST", "/tasks", {"prompt": "d", "draft": True, **PARKED})
    assert (await app_hub.call("PATCH", f"/tasks/{draft['id']}", {"plan": "step 1"}))[1][
        "plan"
    ] == "step 1"
    status, err = await app_hub.call("POST", f"/tasks/{task['id']}/reject")
    assert status == 409 and "only drafts can be rejected" in err["error"]["message"]


async def test_usage_shows_the_configured_guess_only_where_no_agent_reported_a_window(
    tmp_path: Path, local_entry: dict[str, Any]
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    limits = {"claude": {"5h": {"cost_usd": 4}, "7d": {"cost_usd": 40}}}
    async with running_app(home=tmp_path / "home", inventory=inventory, usage_limits=limits) as app:
        done = Task(prompt="spent", backend="claude", status="completed", cost_usd=1.0)
        done.finished_at = utcnow()
        app.core.store.put_task(done)  # summed in SQL, per rolling window
        status, view = await app.call("GET", "/usage")
        assert status == 200
        (account,) = [a for a in view["accounts"] if a["account"] == "claude/local"]
        assert {w["window"]: (w["utilization"], w["source"]) for w in account["windows"]} == {
            "five_hour": (0.25, "configured"),
            "seven_day": (0.025, "configured"),
        }


async def test_a_new_task_placed_like_one_with_no_host_is_saved_once(app_hub: AppHub) -> None:
    bus, loop = app_hub.core.bus, app_hub.core.scheduler
    first = (await app_hub.call("POST", "/tasks", {"prompt": "a", **PARKED}))[1]
    await wait_until_async(
        lambda: bus.since(0, task_id=first["id"])[-1].data.get("waiting_on") == "host",
        what="the first parked task waiting on its host",
    )
    status, second = await app_hub.call("POST", "/tasks", {"prompt": "b", **PARKED})
    assert status == 201 and second["waiting_on"] == "host"  # the last pass's answer
    await wait_until_async(lambda: not loop._guessed, what="a pass over the new task")
    events = bus.since(0, task_id=second["id"])
    assert [e.type for e in events] == ["task.created"]  # no second save
    assert (await app_hub.task(second["id"]))["waiting_on"] == "host"


async def test_a_batch_is_placed_before_its_commit(app_hub: AppHub) -> None:
    # The batch is placed as it is queued, before the request waits for the disk: the
    # placements ride in the batch's own group commit, and its first launches wait for one
    # fsync, not two.
    core = app_hub.core
    answer = json.loads(await core.batches.submit({"tasks": [
        {"name": "now", "prompt": "true", "backend": "shell", "host": "local"},
        {"name": "parked", "prompt": "x", **PARKED},
    ]}))  # fmt: skip
    now, parked = (t["id"] for t in answer["tasks"])
    placed = core.store.get_task(now)  # no await since it was queued: nothing launched yet
    assert (placed.host, placed.waiting_on) == ("local", "dispatch") and placed.launch_id
    assert core.store.get_task(parked).host is None
    await core.store.durable()
    assert task_docs_on_disk(core.store.path)[now]["launch_id"] == placed.launch_id
    assert (await app_hub.wait_status(now))["status"] == "completed"


async def test_a_large_batch_is_stored_a_chunk_at_a_time_and_the_batch_itself_last(
    app_hub: AppHub,
) -> None:
    # The first task is committed (and launches) while the rest are still being queued; the
    # batch record comes last, so a hub stopped in between holds tasks without it (they
    # are cancelled at its next start: tests/runner/test_recovery.py).
    core = app_hub.core
    total = 3 * batches.CHUNK + 1
    entries = [{"name": f"t{i}", "prompt": "x", **PARKED} for i in range(total)]
    entries[-1]["after"] = ["t0"]  # waits for a task queued chunks earlier
    entries[2 * batches.CHUNK - 1]["after"] = [f"t{2 * batches.CHUNK}"]  # for the next one
    seen: list[tuple[int, bool]] = []  # (tasks of the batch stored, batch stored) per turn
    submit = asyncio.ensure_future(core.batches.submit({"name": "big", "tasks": entries}))
    first_on_disk: bool | None = None  # when the second task was queued
    while not submit.done():
        stored = [t for t in core.store.tasks(status="pending") if t.title == "x"]
        ids = {t.batch_id for t in stored}
        seen.append((len(stored), any(core.store.has_batch(b) for b in ids if b)))
        if len(stored) > 1 and first_on_disk is None:
            first = min(stored, key=lambda t: t.created_at).id
            first_on_disk = first in task_docs_on_disk(core.store.path)
        await asyncio.sleep(0)
    assert first_on_disk
    answer = json.loads(submit.result())
    counts = sorted({n for n, with_batch in seen if not with_batch})
    # the first task alone (on disk before the rest), then a turn after each chunk but the
    # one whose last task waits for the next chunk
    assert counts == [0, batches.FIRST, batches.CHUNK, 3 * batches.CHUNK], seen
    assert core.store.has_batch(answer["id"]) and answer["total"] == total
    first, last = answer["tasks"][0]["id"], answer["tasks"][-1]["id"]
    assert core.store.get_task(last).after == [first]
    assert core.store.get_task(last).waiting_on == "dependencies"


def _gate_first_launch(
    core: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, list[str]]:
    """Hold the first launch the runner is asked for until the returned event is set."""
    gate, launched = asyncio.Event(), []
    launch = core.scheduler.runner.launch

    async def first_waits(task: Task, **kwargs: Any) -> None:
        launched.append(task.id)
        if len(launched) == 1:
            await gate.wait()
        await launch(task, **kwargs)

    monkeypatch.setattr(core.scheduler.runner, "launch", first_waits)
    return gate, launched


async def test_a_batch_first_launch_goes_alone_while_the_rest_is_queued(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Placed as the rest is queued, the next launches shared the host (and here the machine)
    # with the first one: it ran last of them.
    core = app_hub.core
    monkeypatch.setattr(scheduler_loop, "ALONE_MAX", 60.0)  # ended by the launch, not by time
    gate, launched = _gate_first_launch(core, monkeypatch)
    entries = [{"prompt": "true", "backend": "shell"} for _ in range(3 * batches.CHUNK)]
    submit = asyncio.ensure_future(core.batches.submit({"tasks": entries}))
    during: list[set[str]] = []
    while not submit.done():
        during.append(set(core.scheduler.dispatching))
        await asyncio.sleep(0)
    first = json.loads(submit.result())["tasks"][0]["id"]
    assert launched == [first] and len(during) > 3
    assert all(seen <= {first} for seen in during), during
    assert len(core.scheduler.dispatching) > 1  # the hold ends with the batch's queueing
    gate.set()
    for task in json.loads(submit.result())["tasks"]:
        assert (await app_hub.wait_status(task["id"]))["status"] == "completed"


async def test_a_launch_holds_the_others_back_until_it_ends_or_for_alone_max(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, scheduler = app_hub.core, app_hub.core.scheduler
    gate, launched = _gate_first_launch(core, monkeypatch)
    body = {"prompt": "true", "backend": "shell"}
    first = core.intake.submit(body)
    scheduler.place_now()
    scheduler.launch_alone(first.id)
    second = core.intake.submit(body)
    for _ in range(5):
        scheduler.place_now()
        await asyncio.sleep(0)
    assert scheduler.dispatching == {first.id}
    gate.set()  # the first launch ends: the pass it asks for places the second
    assert (await app_hub.wait_status(second.id))["status"] == "completed"
    assert launched == [first.id, second.id]

    gate.clear()
    launched.clear()
    monkeypatch.setattr(scheduler_loop, "ALONE_MAX", 0.0)
    third = core.intake.submit(body)
    scheduler.place_now()
    scheduler.launch_alone(third.id)
    fourth = core.intake.submit(body)  # placed: the hold is over at once
    scheduler.place_now()
    assert scheduler.dispatching == {third.id, fourth.id}
    gate.set()
    for task in (third, fourth):
        assert (await app_hub.wait_status(task.id))["status"] == "completed"


class _Request:
    """What answer_once reads of a handler: its hub, request and how it answers."""

    def __init__(self, core: Any, key: str) -> None:
        self.dobby = core
        self.request = SimpleNamespace(
            method="POST", path="/batches", body=b"{}", headers={"Idempotency-Key": key}
        )
        self.sent: tuple[Any, int] | None = None
        self.headers: dict[str, str] = {}

    def send(self, data: Any, status: int = 200) -> None:
        self.sent = (data, status)

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value


async def test_a_retry_arriving_while_its_first_request_is_answered_gets_that_answer(
    app_hub: AppHub,
) -> None:
    # A batch is queued over several turns of the event loop: a retry with the same key
    # arriving meanwhile must wait for the first answer, not queue the batch a second time.
    release = asyncio.Event()
    made: list[int] = []

    async def make() -> tuple[int, Any]:
        made.append(len(made) + 1)
        mine = made[-1]
        await release.wait()
        return 201, {"made": mine}

    first, retry = _Request(app_hub.core, "k-1"), _Request(app_hub.core, "k-1")
    other = _Request(app_hub.core, "k-2")
    jobs = [asyncio.ensure_future(answer_once(r, make)) for r in (first, retry, other)]  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    assert made == [1, 2]  # the first request and the other key's; the retry waits
    release.set()
    await asyncio.gather(*jobs)
    assert first.sent == retry.sent == ('{"made":1}', 201)
    assert retry.headers == {"Idempotent-Replayed": "true"} and first.headers == {}
    assert other.sent == ('{"made":2}', 201)


async def test_a_save_encodes_the_task_document_once_for_the_store_and_the_streams(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = app_hub.core
    task = core.submit({"prompt": "once", **PARKED})
    await core.store.durable()
    encoded: list[object] = []
    real = json.dumps

    def dumps(value: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(value, dict) and "prompt" in (value.get("data") or value):
            encoded.append(value)  # a task's document, or an event that holds one
        return real(value, *args, **kwargs)

    monkeypatch.setattr(json, "dumps", dumps)
    task.title = "renamed"
    core.save(task)
    event = core.bus.since(core.bus.last_seq - 1)[-1]
    assert json.loads(event.to_sse().split("data: ", 1)[1])["data"]["title"] == "renamed"
    await core.store.durable()
    assert task_docs_on_disk(core.store.path)[task.id]["title"] == "renamed"
    assert len(encoded) == 1
