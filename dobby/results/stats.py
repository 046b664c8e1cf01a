"""Stats and cost accounting over tasks (pure: tasks and a clock in, one JSON document out).

Costs add up only what is known: a task whose cost is unknown (a model missing from the price
table) counts in ``cost_unknown``, never as zero.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dobby.core.errors import ValidationError
from dobby.core.models import Task, TaskStatus
from dobby.core.timefmt import iso, parse_duration, parse_time

if TYPE_CHECKING:
    from dobby.store.aggregates import StatsGroups

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
GROUPS = ("project", "backend", "model", "host", "day")


def parse_since(text: str | None, now: _dt.datetime) -> _dt.datetime | None:
    """Return the start of the window: ``24h``/``7d``/seconds back from now, or an ISO time."""
    if text is None or not str(text).strip():
        return None
    try:
        return now - _dt.timedelta(seconds=parse_duration(text))
    except ValidationError:
        pass
    except OverflowError:  # e.g. 999999d: before the year 1
        raise ValidationError(f"invalid since {text!r}: that is too far back") from None
    try:
        return parse_time(str(text))
    except ValueError:
        raise ValidationError(
            f"invalid since {text!r}: use a duration back from now (24h, 7d) or an ISO time"
        ) from None


def in_window(task: Task, since: _dt.datetime | None) -> bool:
    """Return whether a task was created at or after ``since``."""
    if since is None:
        return True
    try:
        return parse_time(task.created_at) >= since
    except (ValueError, TypeError):
        return False


def _group() -> dict[str, Any]:
    return {
        "tasks": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "cost_usd": 0.0,
        "cost_unknown": 0,
        "tokens": dict.fromkeys(TOKEN_KINDS, 0),
    }


def _add(group: dict[str, Any], task: Task) -> None:
    group["tasks"] += 1
    if task.status in ("completed", "failed", "cancelled"):
        group[task.status] += 1
    if task.cost_usd is not None:
        group["cost_usd"] += task.cost_usd
    elif _should_have_cost(task):
        group["cost_unknown"] += 1
    for kind in TOKEN_KINDS:
        group["tokens"][kind] += getattr(task.tokens, kind)


def _should_have_cost(task: Task) -> bool:
    """Return whether a task ran an agent to the end without a known cost."""
    return task.backend != "shell" and task.state.finished and task.started_at is not None


def _keys(task: Task) -> dict[str, str]:
    model = task.models[0] if task.models else task.model
    return {
        "project": task.project or "(none)",
        "backend": task.backend,
        "model": model or ("(none)" if task.backend == "shell" else "(unknown)"),
        "host": task.host or "(none)",
        "day": (task.created_at or "")[:10] or "(unknown)",
    }


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())
    except ValueError:
        return None


def _average(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"avg": None, "max": None, "count": 0}
    return {
        "avg": round(sum(values) / len(values), 3),
        "max": round(max(values), 3),
        "count": len(values),
    }


def compute(
    tasks: Iterable[Task],
    *,
    now: _dt.datetime,
    since: _dt.datetime | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Return tasks by status, success rate, cost and tokens by group, queue and timings."""
    total = _group()
    by_status: dict[str, int] = {s.value: 0 for s in TaskStatus}
    groups: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in GROUPS}
    queue: dict[str, Any] = {"pending": 0, "running": 0, "draft": 0, "waiting_on": {}}
    waits: list[float] = []
    runs: list[float] = []
    for task in tasks:
        if project is not None and task.project != project:
            continue
        # The queue is now, whatever the window.
        if task.status in ("pending", "running", "draft"):
            queue[task.status] += 1
            if task.status == "pending":
                reason = task.waiting_on or "capacity"
                queue["waiting_on"][reason] = queue["waiting_on"].get(reason, 0) + 1
        if not in_window(task, since):
            continue
        by_status[task.status] = by_status.get(task.status, 0) + 1
        _add(total, task)
        for name, key in _keys(task).items():
            _add(groups[name].setdefault(key, _group()), task)
        wait = _seconds(task.created_at, task.started_at)
        if wait is not None:
            waits.append(wait)
        if task.state.finished:
            run = _seconds(task.started_at, task.finished_at)
            if run is not None:
                runs.append(run)
    return _report(
        now=now, since=since, project=project, total=total, by_status=by_status, named=groups,
        queue=queue, wait_s=_average(waits), run_s=_average(runs),
    )  # fmt: skip


# -- from SQL sums (dobby.store.aggregates) -----------------------------------------------------


def queue(live: Iterable[Task]) -> dict[str, Any]:
    """Return the queue part of the stats: unfinished tasks now, pending ones by reason."""
    out: dict[str, Any] = {"pending": 0, "running": 0, "draft": 0, "waiting_on": {}}
    for task in live:
        if task.status in ("pending", "running", "draft"):
            out[task.status] += 1
            if task.status == "pending":
                reason = task.waiting_on or "capacity"
                out["waiting_on"][reason] = out["waiting_on"].get(reason, 0) + 1
    return out


def _add_sums(group: dict[str, Any], status: str, sums: tuple[Any, ...]) -> None:
    n, cost, unknown, *tokens = sums
    group["tasks"] += n
    if status in ("completed", "failed", "cancelled"):
        group[status] += n
    group["cost_usd"] += cost or 0.0
    group["cost_unknown"] += unknown or 0
    for kind, value in zip(TOKEN_KINDS, tokens, strict=True):
        group["tokens"][kind] += value or 0


def _sql_average(total: float, count: int, longest: float | None) -> dict[str, Any]:
    if not count:
        return {"avg": None, "max": None, "count": 0}
    top = round(longest, 3) if longest is not None else None
    return {"avg": round(total / count, 3), "max": top, "count": count}


def from_groups(
    groups: StatsGroups,
    *,
    queue: dict[str, Any],
    now: _dt.datetime,
    since: _dt.datetime | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Return the same document as :func:`compute`, from the sums the store computed in SQL."""
    total = _group()
    by_status: dict[str, int] = {s.value: 0 for s in TaskStatus}
    waits = [0.0, 0]
    runs = [0.0, 0]
    for status, *sums in groups.statuses:
        by_status[status] = by_status.get(status, 0) + sums[0]
        _add_sums(total, status, tuple(sums[:7]))
        waits[0] += sums[7] or 0.0
        waits[1] += sums[8] or 0
        runs[0] += sums[9] or 0.0
        runs[1] += sums[10] or 0
    named: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in GROUPS}
    for name in GROUPS:
        for key, status, *sums in groups.by.get(name, []):
            _add_sums(named[name].setdefault(str(key), _group()), status, tuple(sums))
    return _report(
        now=now, since=since, project=project, total=total, by_status=by_status, named=named,
        queue=queue,
        wait_s=_sql_average(waits[0], int(waits[1]), groups.wait_max),
        run_s=_sql_average(runs[0], int(runs[1]), groups.run_max),
    )  # fmt: skip


def _report(
    *,
    now: _dt.datetime,
    since: _dt.datetime | None,
    project: str | None,
    total: dict[str, Any],
    by_status: dict[str, int],
    named: dict[str, dict[str, dict[str, Any]]],
    queue: dict[str, Any],
    wait_s: dict[str, Any],
    run_s: dict[str, Any],
) -> dict[str, Any]:
    """Round the sums, add success rates and shape the /stats answer (both computations)."""
    ended = by_status["completed"] + by_status["failed"]
    for group in (total, *(g for per in named.values() for g in per.values())):
        group["cost_usd"] = round(group["cost_usd"], 10)
        done = group["completed"] + group["failed"]
        group["success_rate"] = round(group["completed"] / done, 4) if done else None
    return {
        "generated_at": iso(now),
        "since": iso(since) if since else None,
        "project": project,
        "tasks": total["tasks"],
        "by_status": by_status,
        "success_rate": round(by_status["completed"] / ended, 4) if ended else None,
        "cost_usd": total["cost_usd"],
        "cost_unknown": total["cost_unknown"],
        "tokens": total["tokens"],
        **{f"by_{name}": dict(sorted(named[name].items())) for name in GROUPS},
        "queue": queue,
        "wait_s": wait_s,
        "run_s": run_s,
    }
