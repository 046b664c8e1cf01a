"""Task listings in SQL: filters, search, newest-first pages and counts (no state here).

Every listing is ordered newest first by ``(created_at, id)`` unless it asks for another
order (:data:`ORDERS`). A page is ``limit`` rows from ``offset``, or (newest first only) the rows
older than the task named by ``before`` (a cursor that stays stable while new tasks arrive).
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
NEWEST = "newest"
# The orders a listing may ask for besides newest first: SQL over the narrow ``tasks`` row,
# ties broken newest first. ``?`` in "longest" is the current time (epoch seconds): a running
# task has run since it started (created + wait), a finished one its ``run``.
ORDERS = {
    NEWEST: "t.created_at DESC, t.id DESC",
    "oldest": "t.created_at ASC, t.id ASC",
    "finished": "t.finished_ts DESC NULLS LAST, t.created_at DESC, t.id DESC",
    "cost": "t.cost DESC NULLS LAST, t.created_at DESC, t.id DESC",
    "longest": "coalesce(t.run, ? - t.created_ts - t.wait) DESC NULLS LAST, "
    "t.created_at DESC, t.id DESC",
}


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


def order(name: str | None) -> str:
    """Return a listing order by name (None: newest first); ValidationError names the known."""
    if name is None or name == "":
        return NEWEST
    if name not in ORDERS:
        raise ValidationError(f"unknown sort {name!r} (known: {', '.join(ORDERS)})")
    return name


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
    sort: str = NEWEST,
    now: float = 0.0,
) -> Iterator[str]:
    """Yield the JSON documents of one page of matching tasks, newest first or in ``sort``.

    ``total``: how many tasks match, when the caller counted them already (it tells whether a
    search is wide without asking the search index twice). ``now``: the current time (epoch
    seconds), which the "longest" order measures running tasks against.
    """
    if sort != NEWEST:
        if before is not None:
            raise ValidationError("the 'before' cursor pages newest first only: use offset")
        yield from _sorted_page(conn, flt, sort=sort, now=now, limit=limit, offset=offset)
        return
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


def _sorted_page(
    conn: sqlite3.Connection,
    flt: TaskFilter,
    *,
    sort: str,
    now: float,
    limit: int | None,
    offset: int,
) -> Iterator[str]:
    """Yield one page in another order than newest first.

    The order is decided on the narrow rows alone, then only the page's documents are read:
    sorting the joined documents would read every match's JSON.
    """
    conditions, args = flt.where()
    clause = ORDERS[order(sort)]
    params: list[object] = [*args, *([now] * clause.count("?"))]
    sql = f"SELECT t.seq FROM tasks t{_where_sql(conditions)} ORDER BY {clause}"
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else limit, offset])
    seqs = [seq for (seq,) in conn.execute(sql, params)]
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found = dict(conn.execute(f"SELECT seq, doc FROM task_docs WHERE seq IN ({marks})", chunk))
        yield from (found[seq] for seq in chunk if seq in found)
