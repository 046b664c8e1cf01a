"""The declared shapes: bounds, text, prompt size, records; field lists derived from Task."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from dobby.core.errors import ValidationError
from dobby.core.fields import MAX_DEPTH, MAX_PROMPT_BYTES, check_text
from dobby.core.models import Host, Task, TaskStatus, Tokens, repair_record
from dobby.core.raceshapes import RaceCreate
from dobby.core.records import check_record
from dobby.core.shapes import (
    BatchDefaults,
    BatchTask,
    ScheduleCreate,
    TaskPatch,
    TaskSubmit,
    parse,
    validate_policy,
    validate_race,
    validate_submit,
    validate_verify,
)
from dobby.core.timefmt import parse_time

NAN, INF = math.nan, math.inf


def submit(**body: object) -> dict:
    return validate_submit({"prompt": "x", **body}, default_timeout=None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"timeout": NAN}, "'timeout' must be a positive number of seconds up to 2592000 (30d), "
                           "got nan"),
        ({"timeout": INF}, "up to 2592000 (30d), got inf"),
        ({"timeout": -INF}, "got -inf"),
        ({"timeout": 1e308}, "got 1e+308"),
        ({"timeout": "99999999d"}, "up to 2592000 (30d)"),
        ({"timeout": 0}, "must be a positive number of seconds"),
        ({"timeout": True}, "must be a positive number of seconds"),
        ({"gpus": 10**20}, "'gpus' must be an integer >= 0 and <= 64, got 100000000000000000000"),
        ({"gpus": NAN}, "'gpus' must be an integer >= 0 and <= 64, got nan"),
        ({"gpus": "9" * 40}, "'gpus' must be an integer >= 0 and <= 64"),
        ({"max_budget_usd": NAN}, "'max_budget_usd' must be a number of USD > 0 and <= 10000, "
                                  "got nan"),
        ({"max_budget_usd": 0}, "'max_budget_usd' must be a number of USD > 0"),
        ({"max_turns": 0}, "'max_turns' must be an integer >= 1 and <= 10000, got 0"),
        ({"title": "\udfff"}, "'title' is not valid UTF-8 text (lone surrogate \\udfff at "
                              "character 0)"),
        ({"labels": ["ok", "a\ud800b"]}, "'labels[1]' is not valid UTF-8 text"),
        ({"\udfff": 1}, "is not valid UTF-8 text"),
        ({"title": 3}, "'title' must be a string, not int"),
        ({"priority": "asap"}, "invalid priority 'asap' (choose urgent, high, normal, low)"),
        ({"draft": "maybe"}, "'draft' must be true or false, got 'maybe'"),
        ({"prompt": "x" * (MAX_PROMPT_BYTES + 1)}, "'prompt' is 10.0 MiB; the limit is 10 MiB "
                                                   "(10485760 bytes)"),
        ({"prompt": "é" * (MAX_PROMPT_BYTES // 2 + 1)}, "the limit is 10 MiB"),
    ],
)  # fmt: skip
def test_submit_refuses_with_the_field_and_its_bound(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        submit(**body)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_submit_accepts_the_bounds() -> None:
    fields = submit(prompt="x" * MAX_PROMPT_BYTES, timeout="30d", gpus="64", labels="gpu",
                    max_turns="10000", max_budget_usd="2.5")  # fmt: skip
    assert (fields["max_turns"], fields["max_budget_usd"]) == (10000, 2.5)
    assert fields["timeout"] == 30 * 86400 and fields["gpus"] == 64
    assert fields["host_selector"] == ["gpu"] and len(fields["prompt"]) == MAX_PROMPT_BYTES
    assert submit(title="é ✓ 日本語 🙂")["title"] == "é ✓ 日本語 🙂"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"default_timeout": NAN}, "'default_timeout' must be a positive number of seconds up to "
                                   "2592000 (30d), got nan"),
        ({"default_timeout": "Infinity"}, "invalid duration 'Infinity'"),
        ({"auto_retry": 1_000_000_000}, "'auto_retry' must be an integer >= 0 and <= 10, "
                                        "got 1000000000"),
        ({"max_concurrent": 10**6}, "'max_concurrent' must be an integer >= 1 and <= 1000"),
        ({"auto_retry": INF}, "'auto_retry' must be an integer >= 0 and <= 10, got inf"),
    ],
)  # fmt: skip
def test_policies_are_finite_and_bounded(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_policy(body)
    assert message in str(err.value)


def test_other_bodies_are_bounded_too() -> None:
    with pytest.raises(ValidationError, match="'every' must be a duration"):
        parse(ScheduleCreate, {"prompt": "x", "every": NAN})
    with pytest.raises(ValidationError, match="'timeout' must be a positive number"):
        parse(BatchTask, {"prompt": "x", "timeout": INF})
    with pytest.raises(ValidationError, match="cannot edit field"):
        parse(TaskPatch, {"status": "completed"})
    with pytest.raises(ValidationError, match="a recurring task is a schedule"):
        parse(TaskSubmit, {"prompt": "x", "cron": "* * * * *"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"verify": "make test\x00"}, "'verify' must not contain NUL bytes"),
        ({"verify": "x" * 65537}, "'verify' is longer than 65536 bytes"),
        ({"verify": "\udfff"}, "'verify' is not valid UTF-8 text"),
        ({"verify": 3}, "'verify' must be a string, not int"),
        ({"verify_timeout": NAN}, "'verify_timeout' must be a positive number of seconds up to "
                                  "2592000 (30d), got nan"),
        ({"verify_timeout": "99999999d"}, "'verify_timeout' must be a positive number"),
        ({"verify_timeout": "soon"}, "'verify_timeout': invalid duration 'soon'"),
        ({"fix_attempts": 11}, "'fix_attempts' must be at most 10, got 11"),
        ({"fix_attempts": 10**30}, "'fix_attempts' must be an integer >= 0 and <= 10"),
        ({"fix_attempts": INF}, "'fix_attempts' must be an integer >= 0 and <= 10, got inf"),
        ({"fix_attempts": -1}, "'fix_attempts' must be an integer >= 0 and <= 10, got -1"),
    ],
)  # fmt: skip
def test_verify_fields_are_bounded_in_every_task_shape(body: dict, message: str) -> None:
    for check in (
        lambda: submit(**body),
        lambda: validate_verify(body),
        lambda: parse(BatchTask, {"prompt": "x", **body}),
        lambda: parse(BatchDefaults, body),
        lambda: parse(ScheduleCreate, {"prompt": "x", "every": 60, **body}),
        lambda: check_record({"prompt": "x", "backend": "claude", **body}),
    ):
        with pytest.raises(ValidationError) as err:
            check()
        assert message in str(err.value)


def test_verify_fields_reach_the_task_and_blank_means_no_check() -> None:
    fields = submit(verify="pytest -q", verify_timeout="5m", fix_attempts="2")
    assert (fields["verify"], fields["verify_timeout"], fields["fix_attempts"]) == (
        "pytest -q", 300.0, 2)  # fmt: skip
    assert submit(verify="  ")["verify"] == ""  # explicit: no check, not the project's
    assert "verify" not in submit()
    assert validate_policy({"default_verify": " make check "}) == {"default_verify": "make check"}
    assert validate_policy({"default_verify": "none"}) == {"default_verify": None}
    with pytest.raises(ValidationError, match="'default_verify' is longer than 65536 bytes"):
        validate_policy({"default_verify": "x" * 65537})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"k": NAN}, "'k' must be an integer >= 1, got nan"),
        ({"k": 10**30}, "'k' must be an integer >= 1"),
        ({"k": 9}, "'k' must be at most 8 (the hub's max_race), got 9"),
        ({"k": 2, "hosts": ["a", "\udfff"]}, "'hosts[1]' is not valid UTF-8 text"),
        ({"k": 2, "pick": 3}, "invalid pick 3"),
        ({"k": 2, "backends": "gemini"}, "invalid backend 'gemini'"),
    ],
)  # fmt: skip
def test_race_bodies_are_bounded(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_race({"prompt": "x", "verify": "t", **body}, max_race=8)
    assert message in str(err.value)


def test_the_race_shape_takes_what_the_api_takes() -> None:
    body = {"prompt": "x", "verify": "t", "k": 2, "backends": "codex", "max_turns": 5}
    race, task_body = validate_race(body, max_race=8)
    assert race["backends"] == ["codex"] and task_body["max_turns"] == 5
    assert RaceCreate.model_validate(body).backends == ["codex"]
    with pytest.raises(ValueError, match="invalid pick"):
        RaceCreate.model_validate({**body, "pick": "fastest"})


def test_check_text_walks_without_recursion_and_bounds_the_depth() -> None:
    deep: object = "ok\udc80"
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    with pytest.raises(ValidationError, match="not valid UTF-8 text"):
        check_text(deep)
    # Deeper is refused by the walk itself, whatever the interpreter's recursion limit.
    for _ in range(5000):
        deep = {"k": [deep]}
    with pytest.raises(ValidationError, match="nested too deeply .more than 64 levels"):
        check_text(deep)
    check_text({"a": ["é", {"b": "✓"}]})


class Text(str):
    """A str subclass, as a YAML loader or a caller could hand over."""


TEXT_CASES = [
    "plain", "é ✓", "\udfff", ["a", ("b", "\ud800")], {"k": {"é": 1}}, {"\udc80": 1},
    {1: "\udfff"}, {"a": [1, 2.5, None, True]}, Text("\udfff"), Text("ok"), (),
]  # fmt: skip


@pytest.mark.parametrize("value", TEXT_CASES + [
    lambda n: n, lambda n: {"x": n}, lambda n: ["\udfff", n],
])  # fmt: skip
def test_the_fast_text_check_agrees_with_the_one_that_names_the_problem(
    value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dobby.core import fields

    values = [value]
    if callable(value):  # at, just under and over the depth bound
        values = []
        for levels in (MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
            deep: object = "x"
            for _ in range(levels):
                deep = [deep]
            values.append(value(deep))
    for item in values:
        fast = fields.text_problem(item, "w")
        with monkeypatch.context() as m:
            m.setattr(fields, "_all_text", lambda v: False)  # the walk with key paths only
            slow = fields.text_problem(item, "w")
        assert fast == slow
        assert fields._all_text(item) == (slow is None)


# -- task records: imports are checked, stored records are repaired --------------------------


def doc(**changes: object) -> dict:
    task = Task(prompt="p", id="abcd1234", status=TaskStatus.COMPLETED, cost_usd=0.5)
    task.finished_at = "2026-01-01T00:00:00Z"
    return {**task.to_dict(), **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cost_usd": "lots"}, "'cost_usd' must be a finite number >= 0 and <= 1000000000, "
                               "got 'lots'"),
        ({"cost_usd": NAN}, "'cost_usd' must be a finite number"),
        ({"started_at": "not-a-date"}, "'started_at' must be an ISO-8601 time"),
        ({"timeout": INF}, "'timeout' must be a positive number of seconds"),
        ({"tokens": {"input": -1}}, "must be an integer >= 0, got -1"),
        ({"title": "\udfff"}, "'title' is not valid UTF-8 text"),
        ({"status": "weird"}, "unknown status 'weird'"),
        ({"priority": "asap"}, "invalid priority 'asap'"),
        ({"id": "../x"}, "invalid id '../x'"),
        ({"attempt": 1.5}, "'attempt' must be an integer >= 0, got 1.5"),
    ],
)  # fmt: skip
def test_records_are_checked_as_submits(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_record(doc(**changes))
    assert message in str(err.value)


def test_record_round_trip() -> None:
    good = doc()
    assert check_record(good).to_dict() == good
    assert check_record({**good, "from_a_newer_dobby": 1}).to_dict() == good


def test_stored_bad_values_are_repaired_on_read() -> None:
    bad = doc(cost_usd="lots", started_at="not-a-date", timeout=NAN, tokens={"input": "x"},
              exit_code="1", status="weird", created_at=5, after="abcd", gpus=True)  # fmt: skip
    task = Task.from_dict(bad)
    assert (task.cost_usd, task.started_at, task.timeout, task.exit_code) == (None,) * 4
    assert task.tokens.input == 0 and task.after == [] and task.gpus == 0
    assert task.status == TaskStatus.FAILED and task.created_at.startswith("1970-01-01")
    good = doc()
    assert repair_record(good).keys() == good.keys() and Task.from_dict(good).to_dict() == good
    json.dumps(task.to_dict(), allow_nan=False)  # a repaired task is plain JSON again


def test_a_stored_task_reads_as_the_constructor_builds_it() -> None:
    """Task.from_dict fills the task in directly: the same task as the constructor would make,
    from a whole document, a sparse one (defaults, fresh lists each) or a repaired one."""
    whole = doc()
    sparse = {
        "prompt": "only this",
        "status": "running",
        "tokens": {"output": 3},
        "id": "abcd1234",
        "created_at": "2026-12-03T10:00:00.000000Z",
    }
    bad = doc(cost_usd="lots", tokens={"input": "x"}, status="weird", after="abcd")
    for record in (whole, sparse, bad):
        task = Task.from_dict(record)
        built = Task(**repair_record(record))
        assert task.__dict__ == built.__dict__ and type(task) is Task
        for name, value in vars(task).items():  # a default list or dict is its own
            if name not in record and isinstance(value, list | dict):
                assert value is not vars(built)[name], name
    one, two = Task.from_dict(sparse), Task.from_dict(sparse)
    one.after.append("x")
    assert two.after == [] and one.title == "only this" and one.status == TaskStatus.RUNNING
    with pytest.raises(TypeError, match="prompt"):  # as the constructor says
        Task.from_dict({"status": "running"})


# -- field lists are derived from (or checked against) the models ---------------------------


def test_field_lists_name_task_fields() -> None:
    from dobby.hub import webhook
    from dobby.results import export, service
    from dobby.scheduler import intake

    names = {f.name for f in dataclasses.fields(Task)}
    tokens = {"tokens_input", "tokens_output", "tokens_cache_read", "tokens_cache_write"}
    assert set(export.COLUMNS) <= names | tokens
    assert set(export.columns()) == (names - {"tokens"}) | tokens
    assert set(service.RESULT_KEYS) <= names and set(webhook.RESULT_KEYS) <= names
    assert set(intake.ATTEMPT_FIELDS) <= names and set(intake.EDITABLE) - {"host", "labels"} <= (
        names
    )  # fmt: skip


def test_host_fields_match_the_host_model() -> None:
    from dobby.inventory.load import HOST_FIELDS
    from dobby.inventory.shapes import HostFields

    host = Host(name="x")
    assert HOST_FIELDS == tuple(HostFields.model_fields)
    defaults = HostFields().model_dump(mode="json")
    assert defaults == {k: getattr(host, k) for k in HOST_FIELDS}


def test_yaml_readers_refuse_control_characters_in_one_line(tmp_path: Path) -> None:
    from dobby.core.config import load_settings
    from dobby.core.errors import ConfigError, InventoryError
    from dobby.inventory.load import load_inventory
    from dobby.scheduler.batchfile import parse_batch

    text = '# a comment\nhosts:\n  a: {address: "h\x8f"}\n'
    (tmp_path / "inv.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "dobby.yaml").write_text(text.replace("hosts", "host"), encoding="utf-8")
    expected = (
        ":3: invalid YAML: unacceptable character #x008f (special characters are not allowed)"
    )
    with pytest.raises(InventoryError) as inv:
        load_inventory(tmp_path / "inv.yaml")
    with pytest.raises(ConfigError) as cfg:
        load_settings(home=tmp_path, environ={})
    with pytest.raises(ValidationError) as batch:
        parse_batch(text, "j.yaml")
    assert str(inv.value) == f"{tmp_path / 'inv.yaml'}{expected}"
    assert str(cfg.value) == f"{tmp_path / 'dobby.yaml'}{expected}"
    assert str(batch.value).startswith("j.yaml:3: invalid YAML: unacceptable character #x008f")


def test_the_cli_starts_without_pydantic() -> None:
    code = "import sys, dobby.cli.main; print([m for m in sys.modules if m.startswith('pydantic')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _containers(value: object) -> set[int]:
    """Return the ids of every list, dict and token count reachable from ``value``."""
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list | dict) or dataclasses.is_dataclass(item):
            found.add(id(item))
            children = item.values() if isinstance(item, dict) else item
            stack.extend(vars(item).values() if dataclasses.is_dataclass(item) else children)
    return found


def test_a_cloned_task_equals_its_original_and_shares_nothing_mutable() -> None:
    task = Task(
        prompt="x",
        host_selector=["gpu"],
        tokens=Tokens(input=3),
        attempts=[{"status": "failed", "models": ["m"], "tokens": {"input": 1}}],
        diff_stat={"files": [{"path": "a"}], "totals": {"added": 1}},
        quota={"kind": "five_hour", "resets_at": None},
    )
    twin = task.clone()
    assert twin.to_dict() == task.to_dict()
    inside = _containers(list(vars(task).values()))
    assert inside and not inside & _containers(list(vars(twin).values()))


@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED])
def test_an_ended_task_has_its_end_time_and_waits_on_nothing(status: TaskStatus) -> None:
    task = Task(prompt="x", reason="host_lost", error="h1 is down", wait_reason="h1 is down")
    task.waiting_on = "host"
    task.end(status)
    assert (task.status, task.waiting_on, task.wait_reason) == (status, None, None)
    assert task.finished_at and parse_time(task.finished_at) >= parse_time(task.created_at)
    assert (task.reason, task.error) == ("host_lost", "h1 is down")  # the caller's to set


@pytest.mark.parametrize("status", [TaskStatus.DRAFT, TaskStatus.PENDING, TaskStatus.RUNNING])
def test_a_task_cannot_end_as_a_status_that_is_no_end(status: TaskStatus) -> None:
    task = Task(prompt="x")
    before = task.to_dict()
    with pytest.raises(ValueError, match="is not an end"):
        task.end(status)
    assert task.to_dict() == before
