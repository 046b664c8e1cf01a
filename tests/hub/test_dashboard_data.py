"""The dashboard's pure computations: heatmap, usage windows, timeline placement, live step."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dobby.core.timefmt import iso
from dobby.hub import dashboard_data as dd

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def task(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "t",
        "status": "completed",
        "project": "app",
        "backend": "claude",
        "created_at": None,
        "started_at": None,
        "finished_at": None,
        "cost_usd": None,
        "tokens": {},
    }
    return {**base, **fields}


def at(hours_ago: float) -> str:
    return iso(NOW - dt.timedelta(hours=hours_ago))


# -- heatmap ----------------------------------------------------------------------------------


def test_heatmap_counts_completed_tasks_per_project_per_day() -> None:
    tasks = [
        task(project="app", finished_at="2026-11-25T08:00:00Z"),
        task(project="app", finished_at="2026-11-25T09:00:00Z"),
        task(project="app", finished_at="2026-11-24T23:59:59Z"),
        task(project="web", finished_at="2026-11-20T10:00:00Z"),
        task(project=None, finished_at="2026-11-20T10:00:00Z"),
        task(project="app", status="failed", finished_at="2026-11-25T08:00:00Z"),
        task(project="app", status="running", finished_at=None),
        task(project="app", finished_at="2025-11-25T10:00:00Z"),  # 366 days ago: outside
        task(project="app", finished_at="2025-11-26T10:00:00Z"),  # first day of the window
        task(project="app", finished_at="not a time"),
    ]
    out = dd.heatmap(tasks, today=dt.date(2026, 11, 25))
    assert (out["start"], out["end"], out["days"]) == ("2025-11-26", "2026-11-25", 365)
    assert [p["project"] for p in out["projects"]] == ["app", "(no project)", "web"]
    assert out["projects"][0]["days"] == {"2025-11-26": 1, "2026-11-24": 1, "2026-11-25": 2}
    assert out["total"] == {
        "total": 6,
        "days": {"2025-11-26": 1, "2026-11-20": 2, "2026-11-24": 1, "2026-11-25": 2},
    }
    assert out["max"] == 2


@pytest.mark.parametrize(
    ("zone", "day"),
    [("UTC", "2026-11-24"), ("Asia/Tokyo", "2026-11-25"), ("America/New_York", "2026-11-24")],
)
def test_heatmap_days_are_in_the_hub_timezone(zone: str, day: str) -> None:
    out = dd.heatmap(
        [task(finished_at="2026-11-24T20:30:00Z")], today=dt.date(2026, 11, 25), tz=ZoneInfo(zone)
    )
    assert out["total"]["days"] == {day: 1}
    assert out["timezone"] == zone


def test_heatmap_of_nothing() -> None:
    out = dd.heatmap([], today=dt.date(2026, 1, 1), days=7)
    assert out["projects"] == [] and out["total"] == {"total": 0, "days": {}} and out["max"] == 0
    assert out["start"] == "2025-12-26"


# -- usage ------------------------------------------------------------------------------------


def test_usage_windows_sum_tokens_and_cost_per_backend() -> None:
    tasks = [
        task(
            backend="claude",
            finished_at=at(1),
            cost_usd=0.5,
            tokens={"input": 100, "output": 10, "cache_read": 1000, "cache_write": 5},
        ),
        task(backend="claude", finished_at=at(4.9), cost_usd=0.25, tokens={"input": 1}),
        task(backend="claude", finished_at=at(6), cost_usd=1.0, tokens={"output": 7}),
        task(backend="codex", finished_at=at(24 * 6), cost_usd=2.0, tokens={"input": 50}),
        task(backend="codex", finished_at=at(24 * 8), cost_usd=9.0, tokens={"input": 9}),
        task(backend="shell", status="failed", finished_at=at(2)),
        task(backend="claude", status="running", finished_at=None, cost_usd=3.0),
        task(backend="claude", finished_at=iso(NOW + dt.timedelta(hours=1)), cost_usd=5.0),
    ]
    out = dd.usage(tasks, now=NOW, days=10)
    assert out["backends"] == ["claude", "codex", "shell"]
    five, seven = out["windows"]
    assert (five["name"], five["hours"], five["since"]) == ("5h", 5.0, at(5))
    by = {b["backend"]: b for b in five["backends"]}
    assert by["claude"]["tasks"] == 2 and by["claude"]["cost_usd"] == 0.75
    assert by["claude"]["tokens"] == {
        "input": 101,
        "output": 10,
        "cache_read": 1000,
        "cache_write": 5,
        "total": 1116,
    }
    assert by["codex"]["tasks"] == 0 and by["shell"]["tasks"] == 1
    by7 = {b["backend"]: b for b in seven["backends"]}
    assert by7["claude"]["cost_usd"] == 1.75 and by7["codex"]["cost_usd"] == 2.0
    assert by7["codex"]["tokens"]["total"] == 50
    days = {d["date"]: d for d in out["days"]}
    assert len(out["days"]) == 10 and out["days"][-1]["date"] == "2026-11-25"
    assert days["2026-11-25"]["cost_usd"] == {"claude": 1.75, "codex": 0.0, "shell": 0.0}
    assert days["2026-11-19"]["total"] == 2.0
    assert days["2026-11-17"]["cost_usd"]["codex"] == 9.0  # outside 7d, inside the 10 days
    assert out["days"][0]["date"] == "2026-11-16"
    assert sum(d["total"] for d in out["days"]) == pytest.approx(12.75)


def test_usage_of_nothing_has_empty_windows_and_zero_days() -> None:
    out = dd.usage([], now=NOW, days=3)
    assert [w["backends"] for w in out["windows"]] == [[], []]
    assert [d["total"] for d in out["days"]] == [0, 0, 0]


# -- timeline ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "anchors", "expected"),
    [
        ([0, 5, 10], [(0, 100.0), (10, 200.0)], [100.0, 150.0, 200.0]),
        ([0, 20], [(5, 1.0), (10, 2.0)], [1.0, 2.0]),  # outside: clamp to the nearest
        ([3], [], [0.0]),
        ([10, 10], [(10, 7.0), (10, 7.0)], [7.0, 7.0]),
    ],
)
def test_interpolate(
    offsets: list[int], anchors: list[tuple[int, float]], expected: list[float]
) -> None:
    assert dd.interpolate(offsets, anchors) == pytest.approx(expected)


@given(
    st.lists(st.integers(0, 10_000), max_size=30),
    st.lists(st.tuples(st.integers(0, 10_000), st.floats(0, 1e6)), min_size=1, max_size=10),
)
def test_interpolate_stays_within_the_anchor_times(
    offsets: list[int], anchors: list[tuple[int, float]]
) -> None:
    times = dd.interpolate(offsets, anchors)
    lo, hi = min(t for _, t in anchors), max(t for _, t in anchors)
    assert all(lo - 1e-6 <= t <= hi + 1e-6 for t in times)


def ev(kind: str, text: str = "", **data: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "text": text,
        "tool": data.pop("tool", None),
        "target": data.pop("target", None),
        "is_error": data.pop("is_error", False),
        "data": data,
    }


def test_timeline_pairs_tool_calls_with_their_results_using_arrival_times() -> None:
    t0 = NOW.timestamp()
    claude = task(
        created_at=iso(NOW - dt.timedelta(seconds=2)),
        started_at=iso(NOW),
        finished_at=iso(NOW + dt.timedelta(seconds=30)),
    )
    entries = [
        (0, ev("system", "started")),
        (100, ev("tool_use", "Bash: ls", tool="Bash", id="a")),
        (200, ev("tool_use", "Read: x", tool="Read", id="b")),
        (300, ev("tool_result", "ok", tool_use_id="b")),
        (400, ev("tool_result", "boom", tool_use_id="a", is_error=True)),
        (500, ev("text", "thinking out loud")),
        (600, ev("tool_use", "Edit: y", tool="Edit", id="c")),
        (700, ev("text", "done")),
    ]
    arrivals = [
        (0, 100, t0),
        (100, 200, t0 + 1),
        (200, 300, t0 + 2),
        (300, 400, t0 + 5),
        (400, 600, t0 + 9),
        (600, 800, t0 + 20),
    ]
    out = dd.timeline(
        claude, entries, arrivals=arrivals, log_size=800, now=NOW + dt.timedelta(seconds=60)
    )
    assert out["approximate"] is False
    assert [s["status"] for s in out["states"]] == ["pending", "running", "completed"]
    steps = [(s["tool"], s["duration_s"], s["is_error"]) for s in out["steps"]]
    # Edit has no result: it ends where the next event starts (same chunk: zero length)
    assert steps == [("Bash", 8.0, True), ("Read", 3.0, False), ("Edit", 0.0, False)]
    assert out["end"] == iso(NOW + dt.timedelta(seconds=30))


def test_timeline_codex_commands_and_estimated_times() -> None:
    start = NOW
    codex = task(
        backend="codex",
        created_at=iso(start),
        started_at=iso(start),
        finished_at=None,
        status="running",
    )
    entries = [
        (0, ev("command", "$ make", target="make", status="in_progress")),
        (50, ev("command", "$ make → exit 2", target="make", status="completed", exit_code=2)),
        (100, ev("file_change", "add notes.md", target="notes.md")),
        (150, ev("tool_use", "Bash: sleep", tool="Bash")),  # still running: ends "now"
    ]
    now = start + dt.timedelta(seconds=200)
    out = dd.timeline(codex, entries, arrivals=[], log_size=200, now=now)
    assert out["approximate"] is True  # nothing seen arriving: spread from start to now
    kinds = [(s["kind"], s["label"], s["is_error"]) for s in out["steps"]]
    assert kinds == [
        ("command", "$ make → exit 2", True),
        ("file_change", "add notes.md", False),
        ("tool_use", "Bash: sleep", False),
    ]
    assert out["steps"][0]["duration_s"] == pytest.approx(50.0)
    assert out["steps"][2]["end"] == iso(now)
    assert [s["status"] for s in out["states"]] == ["pending", "running"]


def test_timeline_of_a_task_that_never_started() -> None:
    out = dd.timeline(
        task(status="pending", created_at=iso(NOW)),
        [],
        arrivals=[],
        log_size=0,
        now=NOW + dt.timedelta(seconds=5),
    )
    assert out["steps"] == [] and out["approximate"] is False
    assert out["states"] == [
        {"status": "pending", "start": iso(NOW), "end": iso(NOW + dt.timedelta(seconds=5))}
    ]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], None),
        ([ev("system", "s")], None),
        ([ev("text", "hi"), ev("result", "done")], "hi"),
        ([ev("tool_use", "Bash: " + "x" * 500, tool="Bash")], "Bash: " + "x" * 234),
    ],
)
def test_last_step(events: list[dict[str, Any]], expected: str | None) -> None:
    step = dd.last_step(events)
    assert (step["text"] if step else None) == expected


def test_usage_rows_carry_the_configured_limits_and_their_utilisation() -> None:
    tasks = [
        task(backend="claude", finished_at=at(1), cost_usd=5.0, tokens={"input": 250}),
        task(backend="codex", finished_at=at(2), cost_usd=1.0, tokens={"input": 10}),
    ]
    limits = {"claude": {"5h": {"cost_usd": 20, "tokens": 1000}, "7d": {"tokens": 0}}}
    five, seven = dd.usage(tasks, now=NOW, days=2, limits=limits)["windows"]
    by = {b["backend"]: b for b in five["backends"]}
    assert by["claude"]["limit"] == {
        "tokens": 1000,
        "tokens_used": 0.25,
        "cost_usd": 20,
        "cost_used": 0.25,
    }
    assert by["codex"]["limit"] is None
    assert all(b["limit"] is None for b in seven["backends"])  # a 0 limit means none
