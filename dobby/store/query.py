"""Task listings in SQL: filters, search, newest-first pages and counts (no state here).

Every listing is ordered newest first by ``(created_at, id)``. A page is ``limit`` rows from
``offset``, or the rows older than the task named by ``before`` (a cursor that stays stable
while new tasks arrive).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dobby.core.errors import NotFound, ValidationError
from dobby.core.models import TaskStatus

LIVE = frozenset({"draft", "pending", "running"})
KNOWN_STATUSES = frozenset(s.value for s in TaskStatus)
_WORD = re.compile(r"[^\W_]+")
# A search whose words match more tasks than this walks the newest-first index and probes
# the matches, instead of sorting every match.
WIDE_SEARCH = 3000
MAX_SEARCH_WORDS = 16


def statuses(status: str | Iterable[str] | None) -> frozenset[str] | None:
    """Return the wanted statuses (a comma-separated string or an iterable), or None for any."""
    if status is None:
        return None
    if isinstance(status, str):
        wanted = frozenset(s.strip() for s in status.split(",") if s.strip())
    else:
        wanted = frozenset(str(s) for s in status)
    bad = sorted(wanted - KNOWN_STATUSES)
    if bad:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValidationError(f"unknown status {', '.join(map(repr, bad))} (known: {known})")
    return wanted or None


def search_expression(text: str) -> str | None:
    """Return the FTS5 query for a search box text, None when it has no word.

    Every word must be a word of the task's id, title or prompt, and the last one may be the
    start of a word (search as you type). Whole words let the index skip through long
    postings; only the last word pays for a prefix. Words are runs of letters and digits (as
    the index splits them), each quoted, so no search text is FTS5 syntax.
    """
    words = _WORD.findall(text.lower())[:MAX_SEARCH_WORDS]
    if not words:
        return None
    return " AND ".join([*(f'"{w}"' for w in words[:-1]), f'"{words[-1]}"*'])


@dataclass(frozen=True, kw_only=True)
class TaskFilter:
    """Which tasks a listing holds; every field None means any."""

    status: frozenset[str] | None = None
    project: str | None = None
    host: str | None = None
    backend: str | None = None
    kind: str | None = None
    batch_id: str | None = None
    reason: str | None = None
    q: str | None = None
    since_ts: float | None = None  # created at or after (epoch seconds)

    def where(self) -> tuple[list[str], list[object]]:
        """Return SQL conditions on ``t`` (the tasks table) and their parameters."""
        sql: list[str] = []
        args: list[object] = []
        if self.status is not None:
            marks = ",".join("?" * len(self.status))
            sql.append(f"t.status IN ({marks})")
            args.extend(sorted(self.status))
        for column in ("project", "host", "backend", "kind", "batch_id", "reason"):
            value = getattr(self, column)
            if value is not None:
                sql.append(f"t.{column} = ?")
                args.append(value)
        if self.since_ts is not None:
            sql.append("t.created_ts >= ?")
            args.append(self.since_ts)
        expression = search_expression(self.q) if self.q else None
        if expression is not None:
            sql.append("t.seq IN (SELECT rowid FROM task_search WHERE task_search MATCH ?)")
            args.append(expression)
        return sql, args


def _where_sql(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def count(conn: sqlite3.Connection, flt: TaskFilter) -> int:
    """Return how many tasks match."""
    conditions, args = flt.where()
    row = conn.execute(f"SELECT count(*) FROM tasks t{_where_sql(conditions)}", args).fetchone()
    return int(row[0])


def _cursor(conn: sqlite3.Connection, before: str) -> tuple[str, str]:
    row = conn.execute("SELECT created_at, id FROM tasks WHERE id = ?", (before,)).fetchone()
    if row is None:
        raise NotFound(f"unknown task {before!r} (the 'before' cursor)")
    return str(row[0]), str(row[1])


def _wide_search(conn: sqlite3.Connection, flt: TaskFilter) -> bool:
    expression = search_expression(flt.q) if flt.q else None
    if expression is None:
        return False
    sql = "SELECT count(*) FROM (SELECT 1 FROM task_search WHERE task_search MATCH ? LIMIT ?)"
    hits = conn.execute(sql, (expression, WIDE_SEARCH + 1)).fetchone()[0]
    return int(hits) > WIDE_SEARCH


def page(
    conn: sqlite3.Connection,
    flt: TaskFilter,
    *,
    limit: int | None,
    offset: int = 0,
    before: str | None = None,
    total: int | None = None,
) -> Iterator[str]:
    """Yield the JSON documents of one page of matching tasks, newest first.

    ``total``: how many tasks match, when the caller counted them already (it tells whether a
    search is wide without asking the search index twice).
    """
    conditions, args = flt.where()
    if before is not None:
        conditions.append("(t.created_at, t.id) < (?, ?)")
        args.extend(_cursor(conn, before))
    # A search that matches much: walk newest first and stop at the page's end.
    wide = total > WIDE_SEARCH if total is not None and flt.q else _wide_search(conn, flt)
    hint = " INDEXED BY tasks_created" if wide else ""
    sql = (
        f"SELECT d.doc FROM tasks t{hint} JOIN task_docs d ON d.seq = t.seq"
        f"{_where_sql(conditions)} ORDER BY t.created_at DESC, t.id DESC"
    )
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        args.extend([-1 if limit is None else limit, offset])
    for (doc,) in conn.execute(sql, args):
        yield doc
