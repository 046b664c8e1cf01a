"""The SQLite schema of the hub's database, and how a task document becomes a table row (pure).

One database file (``dobby.db``, WAL mode) holds everything:

- ``tasks``: one narrow row per task: the columns listings filter and sort on, plus the task's
  contribution to the stats (cost, tokens, wait and run seconds). ``seq`` is the insertion
  order and the rowid the search index points at.
- ``task_docs``: the full task JSON, by ``seq`` (kept apart so scans and counts read narrow
  rows only).
- ``task_search``: a contentless FTS5 index of id, title and the head of the prompt.
- ``task_stats``: the stats rollup, one row per (dimension, created day, project, value,
  status) for the dimensions project, backend, model, host and day, kept in step with
  ``tasks`` in the same transaction (``/stats`` sums rollup rows instead of every task).
- ``docs``: the small tables (projects, hosts, meta, batches, schedules, races) as JSON by
  (kind, key).
- ``idempotency``: the first answer to a request sent with an ``Idempotency-Key``.
"""

from __future__ import annotations

import math
import sqlite3
import zlib
from typing import Any

from dobby.core.timefmt import parse_time

SCHEMA_VERSION = 1
SEARCH_PREFIX = 16384  # characters of the prompt the search index holds
FINISHED = ("completed", "failed", "cancelled")

DDL = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    project TEXT,
    host TEXT,
    backend TEXT,
    kind TEXT,
    batch_id TEXT,
    resume TEXT,
    reason TEXT,
    created_at TEXT NOT NULL,
    created_ts REAL,
    finished_ts REAL,
    finished_at TEXT,
    host_cleaned_at TEXT,
    s_day TEXT NOT NULL,
    s_model TEXT NOT NULL,
    cost REAL,
    unknown INTEGER NOT NULL,
    tin INTEGER NOT NULL,
    tout INTEGER NOT NULL,
    tcr INTEGER NOT NULL,
    tcw INTEGER NOT NULL,
    wait REAL,
    run REAL,
    text_crc INTEGER NOT NULL
);
-- Newest first, with the filter columns in the index so a filter is checked without the row.
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at, id, status, project, host, backend);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, created_at, id, project, host, backend);
CREATE INDEX IF NOT EXISTS tasks_project
    ON tasks(project, created_at, id, status, host, backend) WHERE project IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_host
    ON tasks(host, created_at, id, status, project, backend) WHERE host IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_backend ON tasks(backend, created_at, id, status, project, host);
CREATE INDEX IF NOT EXISTS tasks_batch ON tasks(batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_resume ON tasks(resume, created_at) WHERE resume IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_kind ON tasks(kind, created_at) WHERE kind != 'task';
CREATE INDEX IF NOT EXISTS tasks_created_ts ON tasks(created_ts);
CREATE INDEX IF NOT EXISTS tasks_finished
    ON tasks(finished_ts, status, project, backend, cost, tin, tout, tcr, tcw)
    WHERE finished_ts IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_wait ON tasks(wait, created_ts, project) WHERE wait IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_run ON tasks(run, created_ts, project) WHERE run IS NOT NULL;

CREATE TABLE IF NOT EXISTS task_docs (seq INTEGER PRIMARY KEY, doc TEXT NOT NULL);

CREATE VIRTUAL TABLE IF NOT EXISTS task_search USING fts5(text, content='', detail=none);

CREATE TABLE IF NOT EXISTS task_stats (
    dim TEXT NOT NULL,
    uday INTEGER NOT NULL,
    project TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    cost REAL NOT NULL,
    unknown INTEGER NOT NULL,
    tin INTEGER NOT NULL,
    tout INTEGER NOT NULL,
    tcr INTEGER NOT NULL,
    tcw INTEGER NOT NULL,
    wait_sum REAL NOT NULL,
    wait_n INTEGER NOT NULL,
    run_sum REAL NOT NULL,
    run_n INTEGER NOT NULL,
    PRIMARY KEY (dim, uday, project, value, status)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ts REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency(created_ts);
"""

# The columns of ``tasks`` written from a document, in INSERT order (``seq`` is assigned).
TASK_COLUMNS = (
    "id", "status", "project", "host", "backend", "kind", "batch_id", "resume", "reason",
    "created_at", "created_ts", "finished_ts", "finished_at", "host_cleaned_at", "s_day",
    "s_model", "cost", "unknown", "tin", "tout", "tcr", "tcw", "wait", "run", "text_crc",
)  # fmt: skip
# What a task adds to the stats rollup: one (key, values) per dimension.
STAT_DIMENSIONS = ("project", "backend", "model", "host", "day")
STAT_KEY = ("dim", "uday", "project", "value", "status")
STAT_VALUES = ("n", "cost", "unknown", "tin", "tout", "tcr", "tcw", "wait_sum", "wait_n",
               "run_sum", "run_n")  # fmt: skip


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the database with the settings every connection of the hub uses."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -32000")  # 32 MB of pages per connection
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a commit writes the WAL without fsync; the Store fsyncs the WAL itself, off
        # the event loop, before it acknowledges anything (see Store docstring).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in a worker thread
        conn.execute("PRAGMA secure_delete = OFF")
    return conn


def create(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes that do not exist yet."""
    conn.executescript(DDL)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# -- task document → row ----------------------------------------------------------------------


def clean(text: str) -> str:
    """Return text SQLite can store as UTF-8 (a lone surrogate becomes '?')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _text(value: Any) -> str | None:
    return clean(value) if isinstance(value, str) else None


def _ts(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).timestamp()
    except (ValueError, TypeError, OverflowError):
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def _seconds(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def search_text(doc: dict[str, Any]) -> str:
    """Return what the search index holds for a task: id, title and the head of the prompt."""
    prompt = doc.get("prompt")
    if not isinstance(prompt, str):
        prompt = ""
    return clean(f"{doc.get('id')} {_text(doc.get('title')) or ''} {prompt[:SEARCH_PREFIX]}")


def stats_model(doc: dict[str, Any]) -> str:
    """Return the model a task counts under in the stats (as dobby.results.stats groups it)."""
    models = doc.get("models")
    model: Any = models[0] if isinstance(models, list) and models else doc.get("model")
    if isinstance(model, str) and model:
        return model
    return "(none)" if doc.get("backend") == "shell" else "(unknown)"


def task_row(doc: dict[str, Any]) -> tuple[Any, ...]:
    """Return the ``tasks`` row of a task document (values in TASK_COLUMNS order).

    Every value is read tolerantly: a malformed field (an imported ``cost_usd: "lots"``) counts
    as missing instead of breaking listings or stats.
    """
    status = str(doc.get("status") or "")
    finished = status in FINISHED
    created_at = _text(doc.get("created_at")) or ""
    created = _ts(created_at)
    started = _ts(doc.get("started_at"))
    finished_at = _text(doc.get("finished_at"))
    finished_ts = _ts(finished_at)
    cost = _number(doc.get("cost_usd"))
    backend = _text(doc.get("backend")) or ""
    unknown = cost is None and backend != "shell" and finished and started is not None
    tokens = doc.get("tokens") if isinstance(doc.get("tokens"), dict) else {}
    assert isinstance(tokens, dict)
    text = search_text(doc)
    return (
        clean(str(doc["id"])),
        status,
        _text(doc.get("project")),
        _text(doc.get("host")),
        backend,
        _text(doc.get("kind")) or "task",
        _text(doc.get("batch_id")),
        _text(doc.get("resume")),
        _text(doc.get("reason")),
        created_at,
        created,
        finished_ts,
        finished_at,
        _text(doc.get("host_cleaned_at")),
        created_at[:10] or "(unknown)",
        stats_model(doc),
        cost,
        int(unknown),
        _count(tokens.get("input")),
        _count(tokens.get("output")),
        _count(tokens.get("cache_read")),
        _count(tokens.get("cache_write")),
        _seconds(created, started),
        _seconds(started, finished_ts) if finished else None,
        zlib.crc32(text.encode("utf-8")),
    )


ROW_INDEX = {name: i for i, name in enumerate(TASK_COLUMNS)}


def stat_keys(row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Return the rollup keys a task row counts under, one per stats dimension."""
    r = ROW_INDEX
    created = row[r["created_ts"]]
    uday = int(created // 86400) if created is not None else -1
    project = row[r["project"]] or "(none)"
    values = {
        "project": project,
        "backend": row[r["backend"]],
        "model": row[r["s_model"]],
        "host": row[r["host"]] or "(none)",
        "day": row[r["s_day"]],
    }
    status = row[r["status"]]
    return [(dim, uday, project, values[dim], status) for dim in STAT_DIMENSIONS]


def stat_values(row: tuple[Any, ...], sign: int = 1) -> tuple[Any, ...]:
    """Return what a task row adds to its rollup row (``sign=-1``: what removing it takes)."""
    r = ROW_INDEX
    cost, wait, run = row[r["cost"]], row[r["wait"]], row[r["run"]]
    return (
        sign,
        sign * (cost or 0.0),
        sign * row[r["unknown"]],
        sign * row[r["tin"]],
        sign * row[r["tout"]],
        sign * row[r["tcr"]],
        sign * row[r["tcw"]],
        sign * (wait or 0.0),
        sign * (wait is not None),
        sign * (run or 0.0),
        sign * (run is not None),
    )
