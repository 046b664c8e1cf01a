"""Pure computations behind the dashboard's read-only views: heatmap, usage, timeline, steps.

Everything here takes plain task dicts (``Task.to_dict()``) and log events, and returns JSON-ready
dicts; no I/O, no clock (callers pass ``now``), so it is tested from tables.
"""

from __future__ import annotations

import bisect
import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dobby.core.timefmt import iso, iso_from_epoch, maybe_time

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
USAGE_WINDOWS: tuple[tuple[str, float], ...] = (("5h", 5.0), ("7d", 7 * 24.0))
STEP_KINDS = ("tool_use", "command", "file_change")
NO_PROJECT = "(no project)"

Task = Mapping[str, Any]


# -- heatmap ----------------------------------------------------------------------------------


def heatmap(
    tasks: Iterable[Task], *, today: _dt.date, tz: _dt.tzinfo = _dt.UTC, days: int = 365
) -> dict[str, Any]:
    """Count completed tasks per project per day (in ``tz``) over the ``days`` ending today."""
    counts = []
    for task in tasks:
        finished = maybe_time(task.get("finished_at"))
        if task.get("status") == "completed" and finished is not None:
            counts.append((task.get("project"), finished.astimezone(tz).date(), 1))
    return heatmap_counts(counts, today=today, tz=tz, days=days)


def heatmap_counts(
    counts: Iterable[tuple[str | None, _dt.date, int]],
    *,
    today: _dt.date,
    tz: _dt.tzinfo = _dt.UTC,
    days: int = 365,
) -> dict[str, Any]:
    """Lay out (project, local day, completed tasks) counts as :func:`heatmap` answers."""
    start = today - _dt.timedelta(days=days - 1)
    per_project: dict[str, dict[str, int]] = {}
    total: dict[str, int] = {}
    for project, day, n in counts:
        if not start <= day <= today:
            continue
        key = day.isoformat()
        per = per_project.setdefault(project or NO_PROJECT, {})
        per[key] = per.get(key, 0) + n
        total[key] = total.get(key, 0) + n
    order = sorted(per_project, key=lambda name: (-sum(per_project[name].values()), name))
    projects = [
        {
            "project": name,
            "total": sum(per_project[name].values()),
            "days": dict(sorted(per_project[name].items())),
        }
        for name in order
    ]
    return {
        "start": start.isoformat(),
        "end": today.isoformat(),
        "days": days,
        "timezone": str(tz),
        "projects": projects,
        "total": {"total": sum(total.values()), "days": dict(sorted(total.items()))},
        "max": max(total.values(), default=0),
    }


def local_day(bucket_start: float, tz: _dt.tzinfo) -> _dt.date:
    """Return the day in ``tz`` of a 15-minute bucket starting at ``bucket_start`` (epoch)."""
    return _dt.datetime.fromtimestamp(bucket_start, tz).date()


# -- usage ------------------------------------------------------------------------------------


def _empty_usage(backend: str) -> dict[str, Any]:
    return {
        "backend": backend,
        "tasks": 0,
        "cost_usd": 0.0,
        "tokens": dict.fromkeys((*TOKEN_KINDS, "total"), 0),
    }


def _add_usage(row: dict[str, Any], task: Task) -> None:
    row["tasks"] += 1
    row["cost_usd"] = round(row["cost_usd"] + float(task.get("cost_usd") or 0.0), 6)
    tokens = task.get("tokens") or {}
    for kind in TOKEN_KINDS:
        value = int(tokens.get(kind) or 0)
        row["tokens"][kind] += value
        row["tokens"]["total"] += value


def _with_limit(row: dict[str, Any], limits: Mapping[str, Any], window: str) -> dict[str, Any]:
    """Attach the configured limit of this backend and window, with utilisation (0..1+)."""
    spec = (limits.get(row["backend"]) or {}).get(window) or {}
    limit: dict[str, Any] = {}
    if isinstance(spec.get("tokens"), int | float) and spec["tokens"] > 0:
        limit["tokens"] = spec["tokens"]
        limit["tokens_used"] = round(row["tokens"]["total"] / spec["tokens"], 4)
    if isinstance(spec.get("cost_usd"), int | float) and spec["cost_usd"] > 0:
        limit["cost_usd"] = spec["cost_usd"]
        limit["cost_used"] = round(row["cost_usd"] / spec["cost_usd"], 4)
    return {**row, "limit": limit or None}


def usage(
    tasks: Iterable[Task],
    *,
    now: _dt.datetime,
    tz: _dt.tzinfo = _dt.UTC,
    days: int = 30,
    windows: Sequence[tuple[str, float]] = USAGE_WINDOWS,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Sum tokens and cost per backend over rolling windows, and cost per day per backend.

    ``limits`` (the ``usage_limits`` setting) maps backend → window → {tokens, cost_usd}; each
    backend row of a window then carries ``limit`` with the utilisation of each limit.
    """
    starts = [(name, now - _dt.timedelta(hours=hours)) for name, hours in windows]
    per_window: dict[str, dict[str, dict[str, Any]]] = {name: {} for name, _ in starts}
    day_costs: list[tuple[str, _dt.date, float]] = []
    backends: set[str] = set()
    for task in tasks:
        finished = maybe_time(task.get("finished_at"))
        if finished is None or finished > now:
            continue
        backend = str(task.get("backend") or "?")
        backends.add(backend)
        for name, since in starts:
            if finished >= since:
                _add_usage(per_window[name].setdefault(backend, _empty_usage(backend)), task)
        if task.get("cost_usd"):
            day_costs.append((backend, finished.astimezone(tz).date(), float(task["cost_usd"])))
    return usage_sums(
        per_window, day_costs, backends=sorted(backends), now=now, tz=tz, days=days,
        windows=windows, limits=limits,
    )  # fmt: skip


def usage_row(backend: str, tasks: int, cost: float, tokens: Sequence[int]) -> dict[str, Any]:
    """Return one backend's usage row from its sums (tokens in TOKEN_KINDS order)."""
    row = _empty_usage(backend)
    row["tasks"] = tasks
    row["cost_usd"] = round(cost, 6)
    for kind, value in zip(TOKEN_KINDS, tokens, strict=True):
        row["tokens"][kind] = int(value)
        row["tokens"]["total"] += int(value)
    return row


def usage_sums(
    per_window: Mapping[str, Mapping[str, dict[str, Any]]],
    day_costs: Iterable[tuple[str, _dt.date, float]],
    *,
    backends: Sequence[str],
    now: _dt.datetime,
    tz: _dt.tzinfo = _dt.UTC,
    days: int = 30,
    windows: Sequence[tuple[str, float]] = USAGE_WINDOWS,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Lay out usage rows per window and (backend, local day, cost) sums as :func:`usage`."""
    today = now.astimezone(tz).date()
    first_day = today - _dt.timedelta(days=days - 1)
    per_day: dict[str, dict[str, float]] = {}
    for backend, day, cost in day_costs:
        if first_day <= day <= today:
            costs = per_day.setdefault(day.isoformat(), {})
            costs[backend] = round(costs.get(backend, 0.0) + cost, 6)
    names = list(backends)
    out_windows = []
    for name, hours in windows:
        rows = per_window.get(name) or {}
        out_windows.append(
            {
                "name": name,
                "hours": hours,
                "since": iso(now - _dt.timedelta(hours=hours)),
                "backends": [
                    _with_limit(rows.get(b) or _empty_usage(b), (limits or {}), name) for b in names
                ],
            }
        )
    out_days = []
    for i in range(days):
        key = (first_day + _dt.timedelta(days=i)).isoformat()
        costs = per_day.get(key, {})
        out_days.append(
            {
                "date": key,
                "cost_usd": {b: costs.get(b, 0.0) for b in names},
                "total": round(sum(costs.values()), 6),
            }
        )
    return {
        "now": iso(now),
        "timezone": str(tz),
        "backends": names,
        "windows": out_windows,
        "days": out_days,
    }


# -- timeline ---------------------------------------------------------------------------------


def interpolate(offsets: Sequence[int], anchors: Sequence[tuple[int, float]]) -> list[float]:
    """Return a time for each byte offset from known (offset, time) anchors, linearly between."""
    points = sorted(anchors)
    if not points:
        return [0.0 for _ in offsets]
    keys = [p[0] for p in points]
    out: list[float] = []
    for offset in offsets:
        i = bisect.bisect_right(keys, offset)  # points[:i] are at or before offset
        if i == 0:
            out.append(points[0][1])
        elif i == len(points) or points[i - 1][0] == offset:
            out.append(points[i - 1][1])
        else:
            (o1, t1), (o2, t2) = points[i - 1], points[i]
            out.append(t1 + (t2 - t1) * (offset - o1) / (o2 - o1))
    return out


def arrival_times(
    offsets: Sequence[int],
    arrivals: Sequence[tuple[int, int, float]],
    *,
    start: float | None,
    end: float,
    log_size: int,
) -> tuple[list[float], bool]:
    """Return when each line arrived, and whether some times had to be interpolated."""
    chunks = sorted(arrivals)
    starts = [c[0] for c in chunks]
    anchors: list[tuple[int, float]] = [(a, ts) for a, _b, ts in chunks]
    if start is not None and not any(a[0] == 0 for a in anchors):
        anchors.append((0, start))
    if log_size and not any(a[0] >= log_size for a in anchors):
        anchors.append((log_size, end))
    guessed = interpolate(offsets, anchors)
    times: list[float] = []
    approximate = False
    for offset, guess in zip(offsets, guessed, strict=True):
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and offset < chunks[i][1]:
            times.append(chunks[i][2])
        else:
            times.append(guess)
            approximate = True
    return times, approximate


def _states(task: Task, now: _dt.datetime) -> list[dict[str, Any]]:
    created = maybe_time(task.get("created_at"))
    started = maybe_time(task.get("started_at"))
    finished = maybe_time(task.get("finished_at"))
    states: list[dict[str, Any]] = []
    if created is not None:
        end = started or finished or now
        states.append({"status": "pending", "start": iso(created), "end": iso(end)})
    if started is not None:
        states.append({"status": "running", "start": iso(started), "end": iso(finished or now)})
    if finished is not None:
        states.append({"status": task.get("status"), "start": iso(finished), "end": iso(finished)})
    return states


def timeline(
    task: Task,
    entries: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    arrivals: Sequence[tuple[int, int, float]],
    log_size: int,
    now: _dt.datetime,
) -> dict[str, Any]:
    """Lay a task's states and its tool calls on a time axis.

    ``entries`` are (byte offset of the line, rendered log event) in log order; ``arrivals``
    are (offset, next_offset, epoch seconds) of the log chunks the hub saw arrive. Lines with
    no known arrival are placed by interpolating between the task's start and end, and the
    result says ``approximate``.
    """
    started = maybe_time(task.get("started_at"))
    finished = maybe_time(task.get("finished_at"))
    end_time = (finished or now).timestamp()
    times, approximate = arrival_times(
        [off for off, _ in entries],
        arrivals,
        start=started.timestamp() if started else None,
        end=end_time,
        log_size=log_size,
    )
    steps = _steps(entries, times, end_time)
    return {
        "task_id": task.get("id"),
        "start": task.get("created_at"),
        "end": iso(finished or now),
        "states": _states(task, now),
        "steps": steps,
        "approximate": approximate,
    }


def _steps(
    entries: Sequence[tuple[int, Mapping[str, Any]]], times: Sequence[float], end_time: float
) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    open_by_id: dict[str, dict[str, Any]] = {}
    open_commands: dict[str, dict[str, Any]] = {}
    last_open: dict[str, Any] | None = None
    for (_off, event), at in zip(entries, times, strict=True):
        kind = event.get("kind")
        data = event.get("data") or {}
        if last_open is not None and last_open["_end"] is None and kind not in ("tool_result",):
            last_open["_end"] = at  # an unpaired step ends where the next thing starts
        if kind == "tool_result":
            step = open_by_id.pop(str(data.get("tool_use_id")), None)
            if step is None and last_open is not None and last_open["kind"] == "tool_use":
                step = last_open
            if step is not None:
                step["_end"] = at
                step["is_error"] = step["is_error"] or bool(event.get("is_error"))
            continue
        if kind == "command" and data.get("status") != "in_progress":
            pending = open_commands.pop(str(event.get("target")), None)
            if pending is not None:
                pending["_end"] = at
                pending["label"] = event.get("text") or pending["label"]
                pending["is_error"] = bool(event.get("is_error")) or (
                    data.get("exit_code") not in (None, 0)
                )
                continue
        if kind not in STEP_KINDS:
            continue
        step = {
            "kind": kind,
            "tool": event.get("tool")
            or ("shell" if kind == "command" else "edit" if kind == "file_change" else None),
            "label": event.get("text") or "",
            "_start": at,
            "_end": None,
            "is_error": bool(event.get("is_error")),
        }
        steps.append(step)
        last_open = step
        if kind == "tool_use" and data.get("id"):
            open_by_id[str(data["id"])] = step
        if kind == "command" and data.get("status") == "in_progress":
            open_commands[str(event.get("target"))] = step
        elif kind != "tool_use":
            step["_end"] = at  # a finished command / file change is an instant
    out = []
    for step in steps:
        start = step.pop("_start")
        end = step.pop("_end")
        end = end_time if end is None else max(end, start)
        out.append(
            {
                **step,
                "start": iso_from_epoch(start),
                "end": iso_from_epoch(end),
                "duration_s": round(end - start, 3),
            }
        )
    return out


# -- live steps -------------------------------------------------------------------------------


def last_step(events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Return the event a person would call the task's current step (skips results/system)."""
    for event in reversed(events):
        if event.get("kind") in ("result", "system"):
            continue
        return {
            "kind": event.get("kind"),
            "text": str(event.get("text") or "")[:240],
            "tool": event.get("tool"),
            "is_error": bool(event.get("is_error")),
        }
    return None
