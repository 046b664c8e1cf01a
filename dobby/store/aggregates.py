"""Aggregates over every task in SQL: stats groups, usage windows, heatmap counts.

They return plain rows; dobby.results.stats and dobby.hub.dashboard_data shape them into the
API's answers. ``/stats`` reads the ``task_stats`` rollup (per dimension: one row per created
day, project, value and status), plus the raw rows of the first, partial day of a ``since``
window; usage and heatmap read the index on finish time and group by 15-minute buckets
(every time zone's offset is a multiple of 15 minutes, so a bucket falls in one local day).
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from dataclasses import dataclass, field
from typing import Any

DIMENSIONS = ("project", "backend", "model", "host", "day")
BUCKET = 900  # seconds: the finish-time buckets of usage and heatmap
SUMS = "SUM(n), SUM(cost), SUM(unknown), SUM(tin), SUM(tout), SUM(tcr), SUM(tcw)"
TIMES = "SUM(wait_sum), SUM(wait_n), SUM(run_sum), SUM(run_n)"
_VALUES = "n, cost, unknown, tin, tout, tcr, tcw, wait_sum, wait_n, run_sum, run_n"
# How a task row reads as one rollup row of each dimension (for the partial first day).
_RAW_VALUE = {
    "project": "COALESCE(project, '(none)')",
    "backend": "backend",
    "model": "s_model",
    "host": "COALESCE(host, '(none)')",
    "day": "s_day",
}
_RAW_SUMS = (
    "1, COALESCE(cost, 0.0), unknown, tin, tout, tcr, tcw, COALESCE(wait, 0.0), "
    "wait IS NOT NULL, COALESCE(run, 0.0), run IS NOT NULL"
)


@dataclass
class StatsGroups:
    """Sums per (key, status) for each stats dimension, per status, and the longest times.

    A sum row is (status, n, cost, unknown, tin, tout, tcr, tcw); ``by`` rows lead with the
    dimension's key, ``statuses`` rows end with (wait_sum, wait_n, run_sum, run_n).
    """

    by: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    statuses: list[tuple[Any, ...]] = field(default_factory=list)
    wait_max: float | None = None
    run_max: float | None = None


def _source(dim: str, since: _dt.datetime | None, project: str | None) -> tuple[str, list[Any]]:
    """Return one dimension's rows to sum (rollup, plus the partial first day) as a subquery."""
    rollup = f"SELECT value, status, {_VALUES} FROM task_stats WHERE dim = ?"
    args: list[Any] = [dim]
    if project is not None:
        rollup += " AND project = ?"
        args.append(project)
    if since is None:
        return rollup, args
    start = since.timestamp()
    day = int(start // 86400)
    rollup += " AND uday > ?"
    args.append(day)
    raw = (
        f"SELECT {_RAW_VALUE[dim]}, status, {_RAW_SUMS} FROM tasks "
        "WHERE created_ts >= ? AND created_ts < ?"
    )
    args += [start, (day + 1) * 86400.0]
    if project is not None:
        raw += " AND project = ?"
        args.append(project)
    return f"{rollup} UNION ALL {raw}", args


def _longest(
    conn: sqlite3.Connection, column: str, since: _dt.datetime | None, project: str | None
) -> float | None:
    # The index on the time itself, walked from the top until a row is in the window.
    sql = f"SELECT {column} FROM tasks INDEXED BY tasks_{column} WHERE {column} IS NOT NULL"
    args: list[Any] = []
    if since is not None:
        sql += " AND created_ts >= ?"
        args.append(since.timestamp())
    if project is not None:
        sql += " AND project = ?"
        args.append(project)
    row = conn.execute(f"{sql} ORDER BY {column} DESC LIMIT 1", args).fetchone()
    return float(row[0]) if row is not None else None


def stats_groups(
    conn: sqlite3.Connection, *, since: _dt.datetime | None = None, project: str | None = None
) -> StatsGroups:
    """Return the sums ``/stats`` is made of (tasks created at or after ``since``)."""
    out = StatsGroups()
    for dim in DIMENSIONS:
        source, args = _source(dim, since, project)
        sql = f"SELECT value, status, {SUMS} FROM ({source}) GROUP BY value, status"
        out.by[dim] = conn.execute(sql, args).fetchall()
    source, args = _source("project", since, project)  # every task counts once per dimension
    sql = f"SELECT status, {SUMS}, {TIMES} FROM ({source}) GROUP BY status"
    out.statuses = conn.execute(sql, args).fetchall()
    out.wait_max = _longest(conn, "wait", since, project)
    out.run_max = _longest(conn, "run", since, project)
    return out


def rebuild_stats(conn: sqlite3.Connection) -> None:
    """Recompute the ``task_stats`` rollup from the tasks (inside the caller's transaction)."""
    conn.execute("DELETE FROM task_stats")
    for dim, value in _RAW_VALUE.items():
        conn.execute(
            f"INSERT INTO task_stats (dim, uday, project, value, status, {_VALUES}) "
            "SELECT ?, COALESCE(CAST(floor(created_ts / 86400) AS INTEGER), -1), "
            f"COALESCE(project, '(none)'), {value}, status, COUNT(*), "
            "SUM(COALESCE(cost, 0.0)), SUM(unknown), SUM(tin), SUM(tout), SUM(tcr), SUM(tcw), "
            "SUM(COALESCE(wait, 0.0)), COUNT(wait), SUM(COALESCE(run, 0.0)), COUNT(run) "
            "FROM tasks GROUP BY 2, 3, 4, 5",
            (dim,),
        )


# -- usage and heatmap ------------------------------------------------------------------------


def usage_window(conn: sqlite3.Connection, *, start: float, end: float) -> list[tuple[Any, ...]]:
    """Return (backend, tasks, cost, tin, tout, tcr, tcw) of tasks finished in [start, end]."""
    sql = (
        "SELECT backend, COUNT(*), SUM(COALESCE(cost, 0.0)), SUM(tin), SUM(tout), SUM(tcr), "
        "SUM(tcw) FROM tasks WHERE finished_ts >= ? AND finished_ts <= ? GROUP BY backend"
    )
    return conn.execute(sql, (start, end)).fetchall()


def bucket_size(tz: _dt.tzinfo, start: _dt.datetime, end: _dt.datetime) -> int:
    """Return the widest bucket (1 h or 15 min) that never straddles a local midnight in tz."""
    day = start
    while day <= end:
        offset = day.astimezone(tz).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return BUCKET
        day += _dt.timedelta(days=7)
    return 3600


def cost_buckets(
    conn: sqlite3.Connection, *, start: float, end: float, bucket: int = BUCKET
) -> list[tuple[Any, ...]]:
    """Return (backend, bucket, cost) of tasks with a cost finished in [start, end]."""
    sql = (
        f"SELECT backend, CAST(finished_ts / {int(bucket)} AS INTEGER), SUM(cost) FROM tasks "
        "WHERE finished_ts >= ? AND finished_ts <= ? AND cost IS NOT NULL AND cost != 0 "
        "GROUP BY 1, 2"
    )
    return conn.execute(sql, (start, end)).fetchall()


def finished_costs(conn: sqlite3.Connection, *, start: float) -> list[tuple[Any, ...]]:
    """Return (id, project, cost, finished_ts) of tasks with a cost finished at or after start."""
    sql = (
        "SELECT id, project, cost, finished_ts FROM tasks "
        "WHERE finished_ts >= ? AND cost > 0 ORDER BY finished_ts"
    )
    return conn.execute(sql, (start,)).fetchall()


def finished_backends(conn: sqlite3.Connection, *, end: float) -> list[str]:
    """Return every backend with a task finished at or before ``end``."""
    sql = "SELECT DISTINCT value FROM task_stats WHERE dim = 'backend'"
    names = [r[0] for r in conn.execute(sql)]
    sql = "SELECT 1 FROM tasks WHERE backend = ? AND finished_ts <= ? LIMIT 1"
    return sorted(n for n in names if conn.execute(sql, (n, end)).fetchone() is not None)


def completed_buckets(
    conn: sqlite3.Connection, *, start: float, end: float, bucket: int = BUCKET
) -> list[tuple[Any, ...]]:
    """Return (project, bucket, count) of completed tasks finished in [start, end]."""
    sql = (
        f"SELECT project, CAST(finished_ts / {int(bucket)} AS INTEGER), COUNT(*) FROM tasks "
        "WHERE finished_ts >= ? AND finished_ts <= ? AND status = 'completed' GROUP BY 1, 2"
    )
    return conn.execute(sql, (start, end)).fetchall()
