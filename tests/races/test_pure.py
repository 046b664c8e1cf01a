"""The pure parts of races and verify, from tables: spreading, judging, comparing, fix rounds,
validation, and how checks and races read in the CLI, the logs and Slack."""

from __future__ import annotations

from typing import Any

import pytest

from dobby.cli.races_render import comparison_lines, started_lines
from dobby.cli.render import render_log_event, verify_text
from dobby.core.errors import ValidationError
from dobby.core.models import Race, Reason, Task, TaskStatus, Tokens, VerifyResult
from dobby.core.shapes import validate_race, validate_verify
from dobby.integrations.slack.notify import render_race_summary
from dobby.integrations.slack.parser import Catalog, parse_mention
from dobby.races import compare, pick, spread
from dobby.runner.verify import Outcome, failure_message, judge, run_seconds
from dobby.scheduler.fixes import build_fix_round, fix_prompt, needs_fix_round
from dobby.store.tasklog import entries

NOW = "2026-11-30T12:00:10.000000Z"


def task(**fields: Any) -> Task:
    base: dict[str, Any] = {"prompt": "p", "backend": "claude", "project": "app", "verify": "t"}
    return Task(**{**base, **fields})


def passed(slot: int, finished: str, **fields: Any) -> pick.Lane:
    fields = {"cost_usd": 0.1, **fields}
    done = task(
        status="completed", finished_at=finished, started_at="2026-11-30T12:00:00.000000Z",
        verify_result={"status": "passed", "exit_code": 0}, **fields,
    )  # fmt: skip
    return pick.Lane(slot=slot, tasks=[done])


def failed(slot: int, finished: str = "2026-11-30T12:00:05.000000Z") -> pick.Lane:
    done = task(
        status="failed", reason="verify_failed", finished_at=finished, host=f"h{slot + 1}",
        error="verify failed (exit 1)", verify_result={"status": "failed", "exit_code": 1,
                                                       "tail": "boom"},
    )  # fmt: skip
    return pick.Lane(slot=slot, tasks=[done])


def running(slot: int) -> pick.Lane:
    return pick.Lane(slot=slot, tasks=[task(status="running")])


# -- spread ------------------------------------------------------------------------------------


def test_slots_take_each_list_round_robin() -> None:
    got = spread.slots(3, backends=["claude", "codex"], models=["m1"], hosts=["h1", "h2", "h3"])
    assert [(s.slot, s.backend, s.model, s.host) for s in got] == [
        (0, "claude", "m1", "h1"),
        (1, "codex", "m1", "h2"),
        (2, "claude", "m1", "h3"),
    ]
    assert spread.slots(2) == [spread.Slot(0), spread.Slot(1)]


@pytest.mark.parametrize(
    ("budgets", "fixes", "backends", "max_usd", "warned"),
    [
        ([1.0, 1.0], 0, ["claude", "claude"], 2.0, None),
        ([1.0, 1.0], 1, ["claude", "claude"], 4.0, "up to 4 runs in all"),
        ([1.0, 1.0], 0, ["claude", "codex"], None, "codex ignores max_budget_usd"),
        ([1.0, None], 0, ["claude", "claude"], None, "some attempts have no max_budget_usd"),
        ([None, None], 0, ["claude", "claude"], None, None),
    ],
)
def test_a_race_bound_is_budget_times_runs_and_anything_else_is_said(
    budgets: list[float | None], fixes: int, backends: list[str], max_usd: float | None,
    warned: str | None,
) -> None:  # fmt: skip
    tasks = [
        task(max_budget_usd=b, fix_attempts=fixes, backend=name)
        for b, name in zip(budgets, backends, strict=True)
    ]
    out, warnings = spread.budget(tasks, honours={"claude": True, "codex": False})
    assert out["max_usd"] == max_usd and out["max_runs"] == 2 * (1 + fixes)
    if warned:
        assert any(warned in w for w in warnings), warnings
    else:
        assert warnings == []


def test_capacity_warnings() -> None:
    said = spread.capacity_warnings(3, project="app", project_limit=1, max_total=2, hosts=2)
    assert len(said) == 3 and "max_concurrent=3" in said[0]
    assert spread.capacity_warnings(3, project="app", project_limit=3, max_total=8, hosts=3) == []


# -- judging -----------------------------------------------------------------------------------

T1, T2, T3 = (f"2026-11-30T12:00:0{i}.000000Z" for i in (1, 2, 3))


@pytest.mark.parametrize(
    ("rule", "lanes", "sizes", "want"),
    [
        ("first", [failed(0), passed(1, T2), running(2)], {}, 1),
        ("first", [passed(0, T3), passed(1, T1)], {}, 1),  # the earlier to pass
        ("first", [failed(0), running(1)], {}, "wait"),
        ("first", [failed(0), failed(1)], {}, "failed"),
        ("smallest", [passed(0, T1), running(1)], {}, "wait"),  # waits for everyone
        ("smallest", [passed(0, T1), passed(1, T2)], {0: 50, 1: 4}, 1),
        ("smallest", [passed(0, T2), passed(1, T1)], {0: 4, 1: 4}, 1),  # a tie: earlier
        ("smallest", [passed(0, T1), passed(1, T2)], {0: None, 1: 9}, 1),  # unknown: last
        ("smallest", [failed(0), failed(1)], {}, "failed"),
        ("cheapest", [passed(0, T1, cost_usd=0.5), passed(1, T2, cost_usd=0.2)], {}, 1),
        ("cheapest", [passed(0, T1, cost_usd=None), passed(1, T2, cost_usd=0.9)], {}, 1),
    ],
)
def test_decide(rule: str, lanes: list[pick.Lane], sizes: dict[int, int | None], want: Any) -> None:
    decision = pick.decide(rule, lanes, sizes)
    if want == "wait":
        assert decision.wait
    elif want == "failed":
        assert decision.failed and decision.winner is None
    else:
        assert decision.winner is not None and decision.winner.slot == want


def test_a_lane_is_its_last_round() -> None:
    first = task(status="failed", reason="verify_failed", fix_attempts=1, fix_task="f1",
                 cost_usd=0.1, started_at=T1, finished_at=T2)  # fmt: skip
    fix = task(status="completed", verify_result={"status": "passed"}, cost_usd=0.05,
               started_at=T2, finished_at=T3, resume=first.id)  # fmt: skip
    lane = pick.Lane(slot=0, tasks=[first, fix])
    assert lane.state == "passed" and lane.cost_usd == pytest.approx(0.15)
    assert pick.Lane(slot=0, tasks=[task(status="pending")]).state == "pending"
    unpriced = task(status="completed", started_at=T1, cost_usd=None)
    assert pick.Lane(slot=0, tasks=[unpriced]).cost_usd is None
    summary = pick.failure_summary([failed(0), failed(1)])
    assert summary == (
        "no attempt passed its check: #1 claude on h1: verify failed (exit 1); "
        "#2 claude on h2: verify failed (exit 1)"
    )


def test_the_comparison_has_one_column_per_attempt() -> None:
    race = Race(prompt="p", verify="t", k=2, pick="first", status="completed")
    lanes = [failed(0), passed(1, T2, host="h2", tokens=Tokens(input=10, output=2))]
    race.winner, race.winner_slot = lanes[1].last.id, 1
    race.attempts = [{"slot": 0, "host": "h1", "tasks": [lanes[0].last.id]},
                     {"slot": 1, "host": "h2", "tasks": [lanes[1].last.id]}]  # fmt: skip
    view = compare.view(race, lanes, now=NOW)
    first, second = view["attempts"]
    assert (first["state"], first["verify"]["tail"], first["winner"]) == ("failed", "boom", False)
    assert (second["state"], second["winner"], second["duration_s"]) == ("passed", True, 2.0)
    assert second["links"]["diff"] == f"/tasks/{lanes[1].last.id}/diff"
    assert view["tokens"]["input"] == 10 and view["counts"] == {"failed": 1, "passed": 1}
    text = "\n".join(comparison_lines(view, width=160))
    assert "#2 ★" in text and "boom" in text and "passed exit 0" in text
    assert compare.summary_line(view).startswith(f"race {race.id} completed: #2 claude on h2 won")
    started = "\n".join(started_lines({**view, "warnings": ["careful"]}))
    assert "the first attempt whose check passes wins" in started and "! careful" in started


# -- verify and fix rounds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "result", "want"),
    [
        (TaskStatus.COMPLETED, VerifyResult("passed", 0), (TaskStatus.COMPLETED, None)),
        (TaskStatus.COMPLETED, VerifyResult("failed", 1), (TaskStatus.FAILED, "verify_failed")),
        (TaskStatus.COMPLETED, VerifyResult("timeout", 124), (TaskStatus.FAILED, "verify_failed")),
        (TaskStatus.COMPLETED, VerifyResult("failed"), (TaskStatus.FAILED, "verify_failed")),
        (TaskStatus.FAILED, VerifyResult("skipped"), (TaskStatus.FAILED, "exit_code")),
    ],
)
def test_judge(agent: TaskStatus, result: VerifyResult, want: tuple[Any, Any]) -> None:
    t = task()
    reason = Reason.EXIT_CODE if agent == TaskStatus.FAILED else None
    status, why, _ = judge(t, agent, reason, None, Outcome(result))
    assert (status, why.value if why else None) == want
    assert t.verify_result == result.to_dict()
    assert judge(task(verify=None), agent, reason, None, Outcome())[0] == agent


def test_failure_messages_end_with_the_last_line() -> None:
    assert failure_message(VerifyResult("failed", 2, tail="a\nFAILED (failures=1)\n")) == (
        "verify failed (exit 2): FAILED (failures=1)"
    )
    assert failure_message(VerifyResult("timeout", 124)) == "verify timed out (exit 124)"
    assert "left no result" in failure_message(VerifyResult("failed"))


def test_a_run_s_limit_holds_its_check() -> None:
    # What a Slurm job's --time is built from: the agent's timeout, then the whole verify phase.
    assert run_seconds(task(timeout=600, verify=None)) == 600
    assert run_seconds(task(timeout=600, verify="pytest -q", verify_timeout=60)) > 660
    assert run_seconds(task(timeout=None, verify="pytest -q")) is None


def test_a_fix_round_resumes_with_the_check_output() -> None:
    parent = task(
        status="failed", reason="verify_failed", fix_attempts=2, session_id="s", host="h1",
        verify="pytest -q", verify_timeout=60, race_id="r-1", race_slot=2, max_budget_usd=1.0,
        verify_result={"status": "failed", "exit_code": 1, "tail": "E assert 5 == 6"},
    )  # fmt: skip
    assert needs_fix_round(parent)
    assert "`pytest -q`, failed (exit 1)" in fix_prompt(parent) and "E assert 5 == 6" in fix_prompt(
        parent
    )
    fix = build_fix_round(parent, "add mul")
    assert (fix.resume, fix.want_host, fix.fix_attempts, fix.fix_round) == (parent.id, "h1", 1, 1)
    assert (fix.race_id, fix.race_slot, fix.verify, fix.title) == (
        "r-1",
        2,
        "pytest -q",
        "fix 1: add mul",
    )
    assert fix.max_budget_usd == 1.0
    for done in (
        task(status="failed", reason="verify_failed", fix_attempts=0),
        task(status="failed", reason="verify_failed", fix_attempts=1, fix_task="x"),
        task(status="failed", reason="exit_code", fix_attempts=1),
        task(status="completed", fix_attempts=1),
    ):
        assert not needs_fix_round(done)


# -- validation --------------------------------------------------------------------------------


def test_validate_race_splits_the_race_from_its_task() -> None:
    race, body = validate_race(
        {"prompt": "p", "k": "3", "backends": "codex", "hosts": ["a", "b"], "verify": "t"},
        max_race=8,
    )
    assert race == {"k": 3, "backends": ["codex"], "models": [], "hosts": ["a", "b"],
                    "pick": "first"}  # fmt: skip
    assert body == {"prompt": "p", "verify": "t"}
    with pytest.raises(ValidationError, match="at most 2"):
        validate_race({"k": 3}, max_race=2)


def test_validate_verify() -> None:
    assert validate_verify({"verify": "  ", "fix_attempts": "2"}) == {
        "verify": "",
        "fix_attempts": 2,
    }
    assert validate_verify({"verify_timeout": "5m"}) == {"verify_timeout": 300.0}
    with pytest.raises(ValidationError, match="'fix_attempts' must be an integer >= 0"):
        validate_verify({"fix_attempts": -1})


# -- how it reads ------------------------------------------------------------------------------


def test_the_check_is_a_section_of_the_log() -> None:
    data = (
        b'{"type":"result","subtype":"success","is_error":false,"result":"ok"}\n'
        b'{"type":"dobby.verify","phase":"start"}\nRan 2 tests\n'
        b'{"type":"dobby.verify","phase":"end","exit_code":1,"duration_ms":1500}\n'
    )
    events = [e for _, e in entries("claude", data)]
    kinds = [e["kind"] for e in events]
    assert kinds[-3:] == ["section", "line", "section"]
    assert [render_log_event(e) for e in events[-3:]] == [
        "── verify ──",
        "Ran 2 tests",
        "── verify failed (exit 1, 1.5s) ──",
    ]
    assert events[-1]["is_error"] is True


def test_verify_text() -> None:
    result = {"verify": "pytest -q", "verify_result": {"status": "passed", "exit_code": 0,
              "duration_ms": 1200}, "fix_round": 1}  # fmt: skip
    assert verify_text(result) == "passed (exit 0, 1s) · fix round 1: pytest -q"
    assert (
        verify_text({"verify": "x", "fix_attempts": 2}) == "not run yet · up to 2 fix round(s): x"
    )


CATALOG = Catalog(projects=("app", "spare"), hosts=("h1", "h2"))


@pytest.mark.parametrize(
    ("text", "body"),
    [
        (
            "race 3: add mul to calc.py in app, verify with `python3 -m unittest -q`",
            {"prompt": "add mul to calc.py", "project": "app", "k": 3,
             "verify": "python3 -m unittest -q"},
        ),
        (
            "add mul in app using claude and codex as a race of 2 and check it with `pytest -x`",
            {"prompt": "add mul", "project": "app", "k": 2, "backends": ["claude", "codex"],
             "verify": "pytest -x"},
        ),
        (
            "fix the login bug in spare, verified by `pytest -q` and fix it up to 2 times",
            {"prompt": "fix the login bug", "project": "spare", "verify": "pytest -q",
             "fix_attempts": 2},
        ),
        ("fix the race condition in app", {"prompt": "fix the race condition", "project": "app"}),
    ],
)  # fmt: skip
def test_slack_reads_checks_and_races(text: str, body: dict[str, Any]) -> None:
    parsed = parse_mention(text, CATALOG)
    assert not parsed.problems and [t.body() for t in parsed.tasks] == [body]


def test_slack_race_summary() -> None:
    view = {
        "id": "r-12345678", "status": "failed", "verify": "pytest", "cost_usd": 0.25,
        "attempts": [
            {"n": 1, "backend": "claude", "host": "h1", "state": "failed", "duration_s": 3,
             "started_at": "2026-11-30T12:00:00Z",
             "cost_usd": 0.1, "diff_stat": {"files_changed": 1, "insertions": 4, "deletions": 0},
             "verify": {"status": "failed", "exit_code": 1, "tail": "x\ny\nE boom"}},
            {"n": 2, "backend": "codex", "host": "h2", "state": "failed", "duration_s": None,
             "started_at": "2026-11-30T12:00:00Z",
             "cost_usd": None, "diff_stat": None, "verify": {"status": "failed", "exit_code": 2}},
        ],
    }  # fmt: skip
    text = render_race_summary(view, "http://hub")
    assert text.startswith(":x: Race <http://hub/dashboard#/races/r-12345678|r-12345678> failed")
    assert (
        "• #1 claude on h1: failed · check failed (exit 1) · 3s · $0.1000 · 1 file(s) +4 -0" in text
    )
    assert "> E boom" in text and "no changes" in text
    won = {**view, "status": "completed", "branch": "dobby/abc"}
    won["attempts"] = [{**view["attempts"][0], "winner": True, "state": "passed"}]
    assert ":trophy: Race" in render_race_summary(won, "http://hub") and "dobby/abc" in (
        render_race_summary(won, "http://hub")
    )
