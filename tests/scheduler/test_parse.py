"""Schedules (cron/every math), batch files, drafts' prompts, webhook signatures: pure tables."""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
import yaml

from dobby.core.errors import ValidationError
from dobby.core.events import Event
from dobby.core.models import Schedule
from dobby.core.shapes import validate_policy, validate_submit
from dobby.core.timefmt import iso
from dobby.hub.webhook import payload, sign
from dobby.scheduler import cron
from dobby.scheduler.batchfile import batch_of_json, parse_batch
from dobby.scheduler.drafts import PLAN_HEADING, execution_prompt, planning_prompt
from dobby.scheduler.watchdog import last_activity, stale_tasks

UTC = _dt.UTC


def at(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- cron / every -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "normal"),
    [("0 3 * * *", "0 3 * * *"), ("  */5   * * * 1-5 ", "*/5 * * * 1-5"), ("@Daily", "@daily")],
)
def test_check_cron_accepts_crontab_forms(expr: str, normal: str) -> None:
    assert cron.check_cron(expr) == normal


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 3 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("0 3 * *", "got 4"),
        ("", "got 0"),
        ("61 3 * * *", "invalid cron expression '61 3 * * *': [61 3 * * *] is not acceptable"),
        ("0 3 * * funday", "invalid cron expression"),
        ("@reboot", "unknown alias"),
    ],
)
def test_check_cron_rejects_with_the_parsers_message(expr: str, message: str) -> None:
    with pytest.raises(ValidationError, match=None) as err:
        cron.check_cron(expr)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2.0), ("30m", 1800.0), ("1h30m", 5400.0), (90, 90.0)]
)
def test_parse_every(text: str | int, seconds: float) -> None:
    assert cron.parse_every(text) == seconds


@pytest.mark.parametrize("text", ["0", "0.5s", "soon", "-3"])
def test_parse_every_rejects(text: str) -> None:
    with pytest.raises(ValidationError, match="--every"):
        cron.parse_every(text)


D = "2026-01-01T"


def every(seconds: float, next_at: str | None, paused: bool = False) -> Schedule:
    return Schedule(
        template={}, every="x", every_s=seconds, next_at=next_at and iso(at(next_at)),
        paused=paused,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("schedule", "now", "fire", "next_at", "missed"),
    [
        # not due yet
        (every(60, D + "10:00:00"), D + "09:59:59", False, D + "10:00:00", False),
        # on time (a little late): keeps the grid
        (every(60, D + "10:00:00"), D + "10:00:00.300", True, D + "10:01:00", False),
        # the hub was down 10 minutes: fires once, next a whole period after now (no burst)
        (every(60, D + "10:00:00"), D + "10:10:30", True, D + "10:11:30", True),
        # paused: never fires
        (every(60, D + "10:00:00", paused=True), D + "11:00:00", False, D + "10:00:00", False),
    ],
)  # fmt: skip
def test_every_tick(schedule: Schedule, now: str, fire: bool, next_at: str, missed: bool) -> None:
    decision = cron.tick(schedule, at(now))
    assert (decision.fire, decision.next_at, decision.missed) == (fire, at(next_at), missed)


def test_cron_tick_in_a_time_zone_and_after_downtime() -> None:
    s = Schedule(template={}, cron="0 3 * * *", timezone="Europe/Paris")
    first = cron.next_fire(s, at("2026-01-10T12:00:00"))
    assert first == at("2026-01-11T02:00:00")  # 03:00 in Paris (UTC+1 in winter)
    assert cron.next_fire(s, at("2026-07-10T12:00:00")) == at("2026-07-11T01:00:00")  # summer
    s.next_at = iso(first)
    # down for three days: one fire, the next one is tomorrow's 03:00
    decision = cron.tick(s, at("2026-01-14T09:00:00"))
    assert decision.fire and decision.missed
    assert decision.next_at == at("2026-01-15T02:00:00")
    on_time = cron.tick(s, at("2026-01-11T02:00:01"))
    assert on_time.fire and not on_time.missed


def test_unknown_time_zone() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")


# --- batch files --------------------------------------------------------------------------------

GOOD = """\
name: nightly
defaults:
  project: app
  backend: shell
  timeout: 30m
tasks:
  - name: tests
    prompt: pytest -x
    labels: [cpu]
  - name: docs
    prompt: make docs
    after: [tests]
    priority: high
  - prompt: echo unnamed
"""


def test_batch_file_with_defaults_and_names() -> None:
    spec = parse_batch(GOOD, "jobs.yaml")
    assert spec.name == "nightly"
    assert [e.name for e in spec.entries] == ["tests", "docs", "task-3"]
    tests, docs, third = spec.entries
    assert tests.body == {
        "project": "app", "backend": "shell", "timeout": "30m", "prompt": "pytest -x",
        "labels": ["cpu"],
    }  # fmt: skip
    assert docs.body["after"] == ["tests"] and docs.body["priority"] == "high"
    assert (tests.line, docs.line, third.line) == (7, 10, 14)
    assert docs.line_of("priority") == 13 and docs.line_of("project") == 3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tasks:\n  - name: a\n    promt: x\n",
         "jobs.yaml:3: unknown key 'promt' in task 1 (did you mean 'prompt'?)"),
        ("defaults:\n  projcet: app\ntasks:\n  - prompt: x\n",
         "jobs.yaml:2: unknown key 'projcet' in defaults (did you mean 'project'?)"),
        ("nme: x\ntasks:\n  - prompt: x\n", "jobs.yaml:1: unknown key 'nme' in the batch file"),
        ("tasks:\n  - name: a\n", "jobs.yaml:2: task 1 has no 'prompt'"),
        ("tasks: []\n", "jobs.yaml:1: 'tasks' must be a non-empty list"),
        ("name: x\n", "jobs.yaml:1: missing 'tasks:'"),
        ("tasks:\n  - prompt: a\n    name: x\n  - prompt: b\n    name: x\n",
         "jobs.yaml:5: task name 'x' already used on line 3"),
        ("tasks:\n  - prompt: [unclosed\n", "jobs.yaml:3: invalid YAML"),
        ("tasks:\n  - just a string\n", "jobs.yaml:2: task 1 must be a mapping"),
        ("", "jobs.yaml: empty batch file"),
    ],
)  # fmt: skip
def test_batch_file_errors_name_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_batch(text, "jobs.yaml")
    assert str(err.value).startswith(error), str(err.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"tasks": [{"name": "a", "promt": "x"}]},
         "<request>:tasks[0]: unknown key 'promt' in task 1 (did you mean 'prompt'?)"),
        ({"defaults": {"projcet": "app"}, "tasks": [{"prompt": "x"}]},
         "<request>:defaults: unknown key 'projcet' in defaults (did you mean 'project'?)"),
        ({"nme": "x", "tasks": [{"prompt": "x"}]},
         "<request>:nme: unknown key 'nme' in the batch"),
        ({"tasks": [{"prompt": "x"}, {"name": "a"}]}, "<request>:tasks[1]: task 2 has no 'prompt'"),
        ({"tasks": []}, "<request>:tasks: 'tasks' must be a non-empty list"),
        ({"name": "x"}, "<request>:tasks: missing 'tasks'"),
        ({"name": 3, "tasks": [{"prompt": "x"}]}, "<request>:name: 'name' must be a string"),
        ({"tasks": [{"prompt": "a", "name": "x"}, {"prompt": "b", "name": "x"}]},
         "<request>:tasks[1].name: task name 'x' already used on tasks[0].name"),
        ({"tasks": ["just a string"]}, "<request>:tasks[0]: task 1 must be a mapping"),
        ({"tasks": [{"prompt": "x", "name": " "}]},
         "<request>:tasks[0].name: 'name' of task 1 must be a non-empty string"),
        ({"tasks": [{"prompt": "x", "timeout": -1}]}, "<request>:tasks[0].timeout: 'timeout'"),
        ({"defaults": {"timeout": "soon"}, "tasks": [{"prompt": "x"}]},
         "<request>:defaults.timeout: invalid duration 'soon'"),
    ],
)  # fmt: skip
def test_a_json_batch_is_checked_by_the_same_rules_and_errors_name_the_key_path(
    body: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValidationError) as err:
        batch_of_json(body)
    assert str(err.value).startswith(error), str(err.value)


def test_a_json_batch_gives_the_entries_a_yaml_file_would() -> None:
    as_yaml = parse_batch(GOOD, "jobs.yaml")
    as_json = batch_of_json(yaml.safe_load(GOOD))
    assert as_json.name == as_yaml.name
    assert [(e.name, e.body) for e in as_json.entries] == [
        (e.name, e.body) for e in as_yaml.entries
    ]
    docs = as_json.entries[1]
    assert (docs.line_of("priority"), docs.line_of("project")) == (
        "tasks[1].priority",
        "defaults.project",
    )


# --- drafts --------------------------------------------------------------------------------------


def test_planning_and_execution_prompts() -> None:
    assert "read-only planning mode" in planning_prompt("add a cache\n")
    assert planning_prompt("add a cache\n").endswith("Task:\nadd a cache\n")
    run = execution_prompt("add a cache", "1. do X\n2. do Y\n")
    assert run.startswith("add a cache\n\n" + PLAN_HEADING)
    assert run.endswith("1. do X\n2. do Y\n")
    assert execution_prompt("just this", None) == "just this"
    assert execution_prompt("just this", "  \n") == "just this"


# --- staleness -----------------------------------------------------------------------------------


def test_last_activity_counts_from_the_latest_sign_of_life() -> None:
    assert last_activity(log_mtime=50.0, started=10.0, hub_started=5.0) == 50.0
    assert last_activity(log_mtime=None, started=10.0, hub_started=5.0) == 10.0
    # a hub that just restarted could not see output while it was down: full grace from now
    assert last_activity(log_mtime=50.0, started=10.0, hub_started=90.0) == 90.0


def test_stale_tasks() -> None:
    from dobby.core.models import Task

    a, b = Task(prompt="a", id="a"), Task(prompt="b", id="b")
    found = stale_tasks([a, b], activity={"a": 100.0, "b": 180.0}, now=200.0, timeout=60)
    assert [t.id for t in found] == ["a"]


# --- validation ----------------------------------------------------------------------------------


def test_submit_validation_of_scheduler_fields() -> None:
    fields = validate_submit(
        {"prompt": "x", "after": "abcd1234", "draft": True, "wait_for_host": "yes"},
        default_timeout=None,
        default_backend="codex",
    )
    assert fields["after"] == ["abcd1234"] and fields["backend"] == "codex"
    assert fields["draft"] is True and fields["wait_for_host"] is True
    with pytest.raises(ValidationError, match="a recurring task is a schedule: POST /schedules"):
        validate_submit({"prompt": "x", "cron": "* * * * *"}, default_timeout=None)
    with pytest.raises(ValidationError, match="a task may only ask for 'plan'"):
        validate_submit({"prompt": "x", "permissions": "bypass"}, default_timeout=None)


def test_policy_values_from_text() -> None:
    assert validate_policy(
        {"max_concurrent": "2", "auto_chain": "true", "default_timeout": "30m",
         "default_priority": "high", "default_backend": "none"}
    ) == {
        "max_concurrent": 2, "auto_chain": True, "default_timeout": 1800.0,
        "default_priority": "high", "default_backend": None,
    }  # fmt: skip
    with pytest.raises(ValidationError, match="'max_concurrent' must be an integer >= 1"):
        validate_policy({"max_concurrent": "0"})
    with pytest.raises(ValidationError, match="invalid default_priority 'asap'"):
        validate_policy({"default_priority": "asap"})


# --- webhook -------------------------------------------------------------------------------------


def test_webhook_payload_and_signature() -> None:
    event = Event(seq=7, type="task.finished", task_id="t1", data={
        "id": "t1", "status": "completed", "summary": "done", "cost_usd": 0.5,
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:30Z",
    })  # fmt: skip
    body = payload(event)
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == f"sha256={expected}"
    import json

    data = json.loads(body)
    assert data["event"] == "task.finished" and data["seq"] == 7
    assert data["task"]["id"] == "t1"
    assert data["result"]["summary"] == "done" and data["result"]["duration_s"] == 90.0


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "examples").glob("batch-*.yaml"))
)
def test_example_batch_files_parse(path: Path) -> None:
    spec = parse_batch(path.read_text(encoding="utf-8"), str(path))
    assert spec.entries
