"""Persistent hub state: one SQLite database in WAL mode, group commit, live tasks in memory.

This is the only module that writes the database (schema: :mod:`dobby.store.schema`).

Reads
    Unfinished tasks (draft, pending, running) are cached in memory: the scheduler and the
    runner read them all the time. Finished tasks are read from SQLite by id or by page, never
    all at once, so the hub's memory does not grow with its history. Listings, counts and
    aggregates are SQL over indexed columns.

Writes and durability
    A change updates memory at once and is queued. Before any SQL read, and at each commit,
    queued changes are written into an open transaction on the loop's connection (so every
    read sees every earlier write). A group commit (at most once per ``flush_interval``, or at
    once when someone awaits :meth:`Store.durable`) commits that transaction.

    ``synchronous=NORMAL``: a commit appends the transaction to the WAL file with ``write()``
    and no fsync, so it costs no disk wait on the event loop and survives the process being
    killed (the pages are in the kernel). For durability against power loss, :meth:`durable`
    then fsyncs the WAL file in a worker thread, one fsync for every change committed so
    far, and only then answers: a 2xx means the change is on the disk. SQLite itself fsyncs
    the WAL before each checkpoint copies it into the database file and fsyncs the database
    after, so nothing fsynced in the WAL is ever lost by a checkpoint. Checkpoints run in a
    worker thread on their own connection (``wal_autocheckpoint`` is off on the loop's).

    A commit that fails (disk full) is rolled back and its changes queued again; waiters get
    :class:`~dobby.core.errors.StorageError` (503) at once, and a write that does not reach the
    disk within ``write_timeout`` also answers 503 instead of hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dobby.core.aio import stop_task, wait_event
from dobby.core.errors import ConfigError, Conflict, NotFound, StorageError, ValidationError
from dobby.core.files import fsync_dir
from dobby.core.models import Batch, Project, Race, Schedule, Task, new_task_id
from dobby.core.retry import Backoff, Retry
from dobby.store import query, schema
from dobby.store.legacy import LegacyData, read_legacy

log = logging.getLogger(__name__)

SMALL = ("projects", "hosts", "meta", "batches", "schedules", "races")
LIVE = query.LIVE
MIN_PREFIX = 4
CHECKPOINT_FRAMES = 4000  # WAL frames (pages) after which a background checkpoint runs
IDEMPOTENCY_TTL = 24 * 3600.0
# A failed write (disk full, I/O error) is tried again soon, and at least every second: a
# request waits at most ``write_timeout`` for it anyway, and the disk may be back any moment.
WRITE_RETRY = Backoff(first=0.25, factor=2.0, cap=1.0, jitter=0.1)
_GONE = object()  # a queued deletion

_INSERT_TASK = (
    f"INSERT INTO tasks ({', '.join(schema.TASK_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(schema.TASK_COLUMNS))})"
)
_UPDATE_TASK = (
    f"UPDATE tasks SET {', '.join(f'{c} = ?' for c in schema.TASK_COLUMNS)} WHERE seq = ?"
)
_SELECT_ROW = f"SELECT seq, {', '.join(schema.TASK_COLUMNS)} FROM tasks WHERE id = ?"
_ADD_STAT = (
    f"INSERT INTO task_stats ({', '.join(schema.STAT_KEY + schema.STAT_VALUES)}) "
    f"VALUES ({', '.join('?' * (len(schema.STAT_KEY) + len(schema.STAT_VALUES)))}) "
    f"ON CONFLICT ({', '.join(schema.STAT_KEY)}) DO UPDATE SET "
    + ", ".join(f"{v} = {v} + excluded.{v}" for v in schema.STAT_VALUES)
)
_DROP_EMPTY_STAT = (
    f"DELETE FROM task_stats WHERE {' AND '.join(f'{k} = ?' for k in schema.STAT_KEY)} AND n <= 0"
)


class IdTaken(Conflict):
    """A new task's id is already used by another task (the insert would overwrite it)."""


def _lock(path: Path) -> int:
    """Take an exclusive lock on ``path.lock`` or fail fast with ConfigError."""
    lock_path = Path(f"{path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        pid = f", pid {holder}" if holder else ""
        raise ConfigError(
            f"another hub is using DOBBY_HOME ({path.parent}): {lock_path} is locked{pid}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int) -> None:
    # The lock file stays: deleting it would race with a hub that is just opening it.
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _newest_first(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(docs, key=lambda d: (d.get("created_at") or "", d["id"]), reverse=True)


def _dumps(doc: Any) -> str:
    # ASCII: a lone surrogate in some field is escaped instead of failing every commit.
    return json.dumps(doc, separators=(",", ":"))


class Store:
    """Hold the hub's state in SQLite (WAL), with unfinished tasks cached in memory."""

    def __init__(
        self,
        *,
        path: Path,
        legacy_path: Path | None = None,
        legacy_archive: Path | None = None,
        flush_interval: float = 0.05,
        write_timeout: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.write_timeout = write_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dirty: dict[str, Any] = {}  # task id -> doc or _GONE, not yet in SQL
        self._raw: set[str] = set()  # ids whose queued doc is an import, kept as it came
        # task id -> (queued doc, its JSON text): a doc is encoded once, for the answer and
        # the row alike; dropped when the doc is written (or replaced before that).
        self._texts: dict[str, tuple[dict[str, Any], str]] = {}
        # rollup key -> summed values of the tasks added in this write, not yet in task_stats
        self._stat_sums: dict[tuple[Any, ...], list[Any]] = {}
        self._dirty_small: dict[tuple[str, str], Any] = {}
        self._dirty_idem: dict[str, tuple[str, int, str, float]] = {}
        self._applied: tuple[dict[str, Any], dict[tuple[str, str], Any], dict[str, Any]] = (
            {},
            {},
            {},
        )  # written into the open transaction, not committed: re-queued if it rolls back
        self._in_txn = False
        self._gen = 0  # bumped on every change
        self._applied_gen = 0
        self._committed_gen = 0
        self._synced_gen = 0
        # Groups of durable() callers, oldest first; the last one takes new callers until the
        # flusher commits (one future and one deadline timer per group, not per caller).
        self._waiters: list[_Group] = []
        self._group: _Group | None = None
        self._error: str | None = None  # the last failed commit, until one succeeds
        self._wal_fd: int | None = None
        self._frames = 0  # WAL frames written since the last checkpoint (estimate)
        self._checkpoint: asyncio.Task[None] | None = None
        # A thread of its own for the fsyncs: the loop's default pool also writes the log
        # copies, and an answer waiting for the disk must not queue behind them.
        self._syncer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dobby-fsync")
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0  # committed transactions (tests and benchmarks read it)
        self.syncs = 0  # fsyncs of the WAL
        self._lock_fd = _lock(self.path)
        legacy_lock: int | None = None
        try:
            legacy = None
            if legacy_path is not None and Path(legacy_path).exists():
                legacy_lock = _lock(Path(legacy_path))  # an older hub may still run on it
                legacy = read_legacy(Path(legacy_path), legacy_archive)
            self._conn = self._open()
            if legacy is not None:
                self._migrate(legacy)
            self._small = self._load_small()
            self._live = self._load_live()
        except BaseException:
            with contextlib.suppress(Exception):
                self._conn.close()
            _unlock(self._lock_fd)
            raise
        finally:
            if legacy_lock is not None:
                _unlock(legacy_lock)

    # -- open, migrate ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        created = not self.path.exists()
        if created:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for suffix in ("", "-wal", "-shm"):  # SQLite gives the WAL the database's mode
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        try:
            conn = schema.connect(str(self.path))
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > schema.SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: database schema {version} is newer than this Dobby "
                    f"({schema.SCHEMA_VERSION}); upgrade Dobby"
                )
            schema.create(conn)
            conn.execute("PRAGMA optimize")
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"{self.path}: not a usable database ({e}); move it away and start again"
            ) from None
        if created:
            fsync_dir(self.path.parent)
        return conn

    def _migrate(self, legacy: LegacyData) -> None:
        """Import a TinyDB ``dobby.json`` (and its archive) once; keep the old files renamed."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for doc in _newest_first(legacy.tasks)[::-1]:  # oldest first: seq follows time
                self._write_task(doc["id"], doc)
            self._write_stats()
            for kind, docs in legacy.small.items():
                for key, doc in docs.items():
                    conn.execute(
                        "INSERT OR REPLACE INTO docs (kind, key, doc) VALUES (?, ?, ?)",
                        (kind, key, _dumps(doc)),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fsyncs the database file
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for old in legacy.files:
            old.rename(old.with_name(f"{old.name}.migrated-{stamp}"))
        fsync_dir(self.path.parent)
        log.warning(
            "imported %d tasks from %s into %s; the old files are kept with a .migrated-%s suffix",
            len(legacy.tasks),
            ", ".join(str(f) for f in legacy.files),
            self.path,
            stamp,
        )

    def _load_small(self) -> dict[str, dict[str, Any]]:
        small: dict[str, dict[str, Any]] = {kind: {} for kind in SMALL}
        for kind, key, doc in self._conn.execute("SELECT kind, key, doc FROM docs"):
            small.setdefault(kind, {})[key] = json.loads(doc)
        return small

    def _load_live(self) -> dict[str, dict[str, Any]]:
        sql = (
            "SELECT t.id, d.doc FROM tasks t JOIN task_docs d ON d.seq = t.seq "
            "WHERE t.status IN ('draft', 'pending', 'running')"
        )
        # Repaired once here (an old record may hold a bad value): get_task then reads every
        # document held in memory as it is, as one this hub wrote (see get_task).
        return {
            tid: Task.from_dict(json.loads(doc)).to_dict() for tid, doc in self._conn.execute(sql)
        }

    # -- changes --------------------------------------------------------------------------

    def _touch(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")
        self._gen += 1
        self._wake.set()

    def _queue_task(self, tid: str, doc: dict[str, Any] | None, *, raw: bool = False) -> None:
        if raw:
            self._raw.add(tid)
        else:
            self._raw.discard(tid)
        if doc is not None and doc.get("status") in LIVE:
            self._live[tid] = doc
        else:
            self._live.pop(tid, None)
        self._dirty[tid] = _GONE if doc is None else doc
        self._touch()

    def _apply(self) -> None:
        """Write queued changes into the open transaction (reads on this connection see them)."""
        if not (self._dirty or self._dirty_small or self._dirty_idem):
            return
        tasks, self._dirty = self._dirty, {}
        small, self._dirty_small = self._dirty_small, {}
        idem, self._dirty_idem = self._dirty_idem, {}
        conn = self._conn
        try:
            if not self._in_txn:
                conn.execute("BEGIN IMMEDIATE")
                self._in_txn = True
            for tid, doc in tasks.items():
                cached = self._texts.pop(tid, None)
                text = cached[1] if cached is not None and cached[0] is doc else None
                self._write_task(tid, None if doc is _GONE else doc, text)
            for (kind, key), doc in small.items():
                if doc is _GONE:
                    conn.execute("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, key))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO docs (kind, key, doc) VALUES (?, ?, ?)",
                        (kind, key, _dumps(doc)),
                    )
            for key, record in idem.items():
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, "
                    "created_ts) VALUES (?, ?, ?, ?, ?)",
                    (key, *record),
                )
            self._write_stats()
        except BaseException:
            self._stat_sums = {}  # recomputed when the re-queued changes are written again
            self._dirty = {**tasks, **self._dirty}
            self._dirty_small = {**small, **self._dirty_small}
            self._dirty_idem = {**idem, **self._dirty_idem}
            self._rollback()
            raise
        self._applied[0].update(tasks)
        self._applied[1].update(small)
        self._applied[2].update(idem)
        self._applied_gen = self._gen

    def _rollback(self) -> None:
        """Roll back the open transaction and queue what it held again (older than the queue)."""
        if self._in_txn:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._in_txn = False
        tasks, small, idem = self._applied
        self._dirty = {**tasks, **self._dirty}
        self._dirty_small = {**small, **self._dirty_small}
        self._dirty_idem = {**idem, **self._dirty_idem}
        self._applied = ({}, {}, {})

    def _write_task(
        self, tid: str, doc: dict[str, Any] | None, json_text: str | None = None
    ) -> None:
        """Insert, update or delete one task row with its document, search entry and stats.

        ``json_text``: the document's JSON when it is already encoded.
        """
        conn = self._conn
        old = conn.execute(_SELECT_ROW, (tid,)).fetchone()
        if doc is None:
            if old is not None:
                seq, old_row = old[0], old[1:]
                self._unsearch(seq)
                self._stat(old_row, -1)
                conn.execute("DELETE FROM task_docs WHERE seq = ?", (seq,))
                conn.execute("DELETE FROM tasks WHERE seq = ?", (seq,))
            return
        row = schema.task_row(doc)
        text = schema.search_text(doc)
        encoded = json_text if json_text is not None else _dumps(doc)
        if old is None:
            seq = conn.execute(_INSERT_TASK, row).lastrowid
            conn.execute("INSERT INTO task_docs (seq, doc) VALUES (?, ?)", (seq, encoded))
            conn.execute("INSERT INTO task_search (rowid, text) VALUES (?, ?)", (seq, text))
            self._stat(row, 1)
            self._frames += 3
            return
        seq, old_row = old[0], tuple(old[1:])
        if old_row != row:
            conn.execute(_UPDATE_TASK, (*row, seq))
            crc = schema.ROW_INDEX["text_crc"]
            if old_row[crc] != row[crc]:
                self._unsearch(seq)
                conn.execute("INSERT INTO task_search (rowid, text) VALUES (?, ?)", (seq, text))
            if schema.stat_keys(old_row) != schema.stat_keys(row) or schema.stat_values(
                old_row
            ) != schema.stat_values(row):
                self._stat(old_row, -1)
                self._stat(row, 1)
        conn.execute("UPDATE task_docs SET doc = ? WHERE seq = ?", (encoded, seq))
        self._frames += 2

    def _unsearch(self, seq: int) -> None:
        # A contentless index forgets an entry only when told exactly what it held.
        found = self._conn.execute("SELECT doc FROM task_docs WHERE seq = ?", (seq,)).fetchone()
        if found is not None:
            text = schema.search_text(json.loads(found[0]))
            self._conn.execute(
                "INSERT INTO task_search (task_search, rowid, text) VALUES ('delete', ?, ?)",
                (seq, text),
            )

    def _stat(self, row: tuple[Any, ...], sign: int) -> None:
        """Count a task row in (``sign`` 1) or out of (-1) the rollup rows of its keys.

        Additions are summed per key and written once per write (a group of 16 new tasks
        alike is 5 upserts, not 80); a removal writes what was summed first, so a rollup row
        emptied by it is dropped exactly as it would be one task at a time.
        """
        values = schema.stat_values(row, sign)
        keys = schema.stat_keys(row)
        if sign > 0:
            sums = self._stat_sums
            for key in keys:
                total = sums.get(key)
                if total is None:
                    sums[key] = list(values)
                else:
                    for i, v in enumerate(values):
                        total[i] += v
            return
        self._write_stats()
        self._conn.executemany(_ADD_STAT, [(*key, *values) for key in keys])
        self._conn.executemany(_DROP_EMPTY_STAT, keys)

    def _write_stats(self) -> None:
        """Add the summed additions to ``task_stats``."""
        if self._stat_sums:
            sums, self._stat_sums = self._stat_sums, {}
            self._conn.executemany(_ADD_STAT, [(*key, *v) for key, v in sums.items()])

    def _sql(self) -> sqlite3.Connection:
        """Return the loop's connection with every change so far visible to it."""
        try:
            self._apply()
        except sqlite3.Error as e:
            raise StorageError(f"cannot write the hub's database {self.path}: {e}") from None
        return self._conn

    # -- tasks --------------------------------------------------------------------------

    def put_task(self, task: Task) -> None:
        """Insert or replace a task."""
        self.put_doc(task.to_dict())

    def put_doc(self, doc: dict[str, Any]) -> None:
        """Insert or replace a task given as its document (``Task.to_dict()``, kept as it is)."""
        self._queue_task(str(doc["id"]), doc)

    def insert_task(self, task: Task) -> None:
        """Insert a new task; raise IdTaken rather than overwrite a task with the same id."""
        self.insert_doc(task.to_dict())

    def insert_doc(self, doc: dict[str, Any]) -> None:
        """Insert a new task given as its document; raise IdTaken if its id is taken."""
        tid = str(doc["id"])
        if self.has_task(tid):
            raise IdTaken(f"task id {tid} is already taken; submit again")
        self._queue_task(tid, doc)

    def task_json(self, task_id: str) -> str:
        """Return a task's document as JSON text (ASCII), encoded once per change."""
        doc = self._dirty.get(task_id)
        if doc is None or doc is _GONE:
            found = self._doc(task_id)
            if found is None:
                raise NotFound(f"unknown task {task_id!r}")
            return _dumps(found)
        cached = self._texts.get(task_id)
        if cached is None or cached[0] is not doc:
            cached = (doc, _dumps(doc))
            self._texts[task_id] = cached
        return cached[1]

    def unused_task_id(self) -> str:
        """Return a new random task id that no task has."""
        while True:
            tid = new_task_id()
            if not self.has_task(tid):
                return tid

    def _held(self, tid: str) -> Any:
        """Return a task's document held in memory (queued or live), _GONE if its deletion
        is queued, None if only SQLite has it (or nothing does)."""
        doc = self._dirty.get(tid)
        return self._live.get(tid) if doc is None else doc

    def _doc(self, tid: str) -> dict[str, Any] | None:
        doc = self._held(tid)
        if doc is _GONE:
            return None
        if doc is None:
            # Queued changes were looked at above: the rows need not be flushed to be read.
            sql = "SELECT d.doc FROM tasks t JOIN task_docs d ON d.seq = t.seq WHERE t.id = ?"
            found = self._conn.execute(sql, (tid,)).fetchone()
            return json.loads(found[0]) if found is not None else None
        return doc  # type: ignore[no-any-return]

    def get_task(self, task_id: str) -> Task:
        """Return a task by id or unique id prefix (≥ 4 chars)."""
        doc = self._held(task_id)
        if doc is not None and doc is not _GONE:
            return self._held_task(task_id, doc)
        doc = self._doc(task_id)
        if doc is None:
            doc = self._doc(self._resolve(task_id))
        if doc is None:
            raise NotFound(f"unknown task {task_id!r}")
        return Task.from_dict(doc)

    def _held_task(self, tid: str, doc: dict[str, Any]) -> Task:
        """Return the task of a document held in memory.

        A Task.to_dict() of this hub, or repaired as it was loaded: nothing to repair, but an
        import kept as it came (``_raw``). The scheduler, the followers and the launches read
        tasks thousands of times a second: repairing took 60% of each read.
        """
        return Task.from_dict(doc) if tid in self._raw else Task(**doc)

    def _resolve(self, task_id: str) -> str:
        if len(task_id) >= MIN_PREFIX:
            upper = task_id[:-1] + chr(ord(task_id[-1]) + 1)
            sql = "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT 11"
            matches = [r[0] for r in self._sql().execute(sql, (task_id, upper))]
            if len(matches) == 1:
                return str(matches[0])
            if matches:
                shown = ", ".join(matches[:10]) + (" …" if len(matches) > 10 else "")
                raise ValidationError(f"ambiguous task id prefix {task_id!r}: matches {shown}")
        raise NotFound(f"unknown task {task_id!r}")

    def has_task(self, task_id: str) -> bool:
        """Return whether a task with exactly this id exists."""
        return self.task_status(task_id) is not None

    def task_revision(self, task_id: str) -> object | None:
        """Return a live task's document as a token of its state (see ports.TaskRevision).

        Every save queues a new document, so the token's identity changes with the task.
        Read-only: the document is the store's own.
        """
        return self._live.get(task_id)

    def task_status(self, task_id: str) -> str | None:
        """Return the status of a task by exact id (None if unknown), without building it."""
        doc = self._held(task_id)
        if doc is _GONE:
            return None
        if doc is not None:
            return str(doc.get("status"))
        sql = "SELECT status FROM tasks WHERE id = ?"  # queued ones were looked at above
        found = self._conn.execute(sql, (task_id,)).fetchone()
        return str(found[0]) if found is not None else None

    def tasks(
        self,
        *,
        project: str | None = None,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
    ) -> list[Task]:
        """Return tasks, newest first, optionally filtered (all of them: prefer :meth:`page`)."""
        wanted = query.statuses(status)
        if wanted is not None and wanted <= LIVE:  # from memory, no SQL
            docs = [
                d
                for d in self._live.values()
                if d.get("status") in wanted
                and (project is None or d.get("project") == project)
                and (kind is None or d.get("kind", "task") == kind)
            ]
            # A hub restarting with 500 running tasks repaired them all three times over here
            # before its first connect.
            return [self._held_task(str(d.get("id")), d) for d in _newest_first(docs)]
        flt = query.TaskFilter(status=wanted, project=project, kind=kind)
        return [Task.from_dict(json.loads(d)) for d in query.page(self._sql(), flt, limit=None)]

    def live_counts(self) -> dict[str, int]:
        """Return how many tasks are draft, pending and running (from memory)."""
        counts = dict.fromkeys(sorted(LIVE), 0)
        for doc in self._live.values():
            counts[str(doc.get("status"))] = counts.get(str(doc.get("status")), 0) + 1
        return counts

    def page(
        self,
        flt: query.TaskFilter,
        *,
        limit: int | None,
        offset: int = 0,
        before: str | None = None,
        sort: str = query.NEWEST,
    ) -> list[dict[str, Any]]:
        """Return one page of task documents, newest first or in ``sort``."""
        docs = self.page_json(flt, limit=limit, offset=offset, before=before, sort=sort)
        return [json.loads(d) for d in docs]

    def page_json(
        self,
        flt: query.TaskFilter,
        *,
        limit: int | None,
        offset: int = 0,
        before: str | None = None,
        total: int | None = None,
        sort: str = query.NEWEST,
    ) -> list[str]:
        """Return one page of tasks as stored JSON text (ASCII), newest first or in ``sort``."""
        conn = self._sql()
        pages = query.page(
            conn, flt, limit=limit, offset=offset, before=before, total=total, sort=sort,
            now=time.time(),
        )  # fmt: skip
        return list(pages)

    def count(self, flt: query.TaskFilter) -> int:
        """Return how many tasks match a filter."""
        return query.count(self._sql(), flt)

    def iter_task_docs(
        self, flt: query.TaskFilter | None = None, *, batch: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Yield matching task documents newest first from a snapshot (see iter_task_json)."""
        for chunk in self.iter_task_json(flt, batch=batch):
            yield from (json.loads(d) for d in chunk)

    def iter_task_json(
        self, flt: query.TaskFilter | None = None, *, batch: int = 500
    ) -> Iterator[list[str]]:
        """Yield matching tasks as stored JSON text, newest first, ``batch`` at a time.

        The snapshot is a read transaction on a connection of its own, taken after a commit:
        it holds every change made before the first chunk, and writes go on meanwhile.
        """
        self.commit()
        reader = schema.connect(str(self.path), readonly=True)
        try:
            reader.execute("BEGIN")
            cursor = query.page(reader, flt or query.TaskFilter(), limit=None)
            while chunk := list(itertools.islice(cursor, batch)):
                yield chunk
        finally:
            with contextlib.suppress(sqlite3.Error):
                reader.execute("ROLLBACK")
            reader.close()

    def children(self, task_id: str) -> list[str]:
        """Return the ids of a task's follow-ups (tasks resuming it), oldest first."""
        sql = "SELECT id FROM tasks WHERE resume = ? ORDER BY created_at, id"
        return [r[0] for r in self._sql().execute(sql, (task_id,))]

    def gc_candidates(self, *, finished_before: float, limit: int = 5000) -> list[Task]:
        """Return finished tasks whose host copy may go (oldest ``limit``), with their chains.

        A candidate finished before ``finished_before`` on some host and was not cleaned since;
        every task of a candidate's follow-up chain comes along (a worktree is shared by the
        chain, see dobby.results.gc).
        """
        conn = self._sql()
        sql = (
            "SELECT d.doc FROM tasks t JOIN task_docs d ON d.seq = t.seq "
            "WHERE t.finished_ts <= ? AND t.status IN ('completed', 'failed', 'cancelled') "
            "AND t.host IS NOT NULL "
            "AND (t.host_cleaned_at IS NULL OR t.host_cleaned_at < t.finished_at) "
            "ORDER BY t.finished_ts LIMIT ?"
        )
        found = {
            d["id"]: d
            for d in (json.loads(r[0]) for r in conn.execute(sql, (finished_before, limit)))
        }
        roots: set[str] = set()
        for doc in list(found.values()):
            current, seen = doc, {doc["id"]}
            while current.get("resume") and len(seen) < 1000:
                parent = self._doc(str(current["resume"]))
                if parent is None or parent["id"] in seen:
                    break
                current = parent
                seen.add(current["id"])
            roots.add(current["id"])
        chain = (
            "WITH RECURSIVE chain(id) AS (VALUES (?) UNION "
            "SELECT t.id FROM tasks t JOIN chain c ON t.resume = c.id) "
            "SELECT d.doc FROM chain JOIN tasks t ON t.id = chain.id "
            "JOIN task_docs d ON d.seq = t.seq"
        )
        for root in roots:
            for (doc,) in conn.execute(chain, (root,)):
                member = json.loads(doc)
                found.setdefault(member["id"], member)
        return [Task.from_dict(d) for d in found.values()]

    def import_finished(self, docs: list[dict[str, Any]]) -> None:
        """Store finished task documents (with new ids) as they are."""
        for doc in docs:
            self._queue_task(str(doc["id"]), doc, raw=True)

    def delete_task(self, task_id: str) -> None:
        """Remove a task."""
        tid = task_id if self.has_task(task_id) else self._resolve(task_id)
        self._queue_task(tid, None)

    def sql(self) -> sqlite3.Connection:
        """Return a connection that sees every change so far (for the aggregate queries)."""
        return self._sql()

    # -- idempotency ---------------------------------------------------------------------

    def idempotent(self, key: str) -> tuple[str, int, str] | None:
        """Return (fingerprint, status, answer as JSON text) recorded for a key, or None."""
        record = self._dirty_idem.get(key)
        if record is None:
            # Records not queued any more are in the open transaction or committed: the
            # connection sees them without flushing the queue (a flush per request cost a
            # write of every queued change before each submit's lookup).
            sql = "SELECT fingerprint, status, body FROM idempotency WHERE key = ?"
            found = self._conn.execute(sql, (key,)).fetchone()
            if found is None:
                return None
            record = (found[0], found[1], found[2], 0.0)
        return record[0], int(record[1]), record[2]

    def remember(self, key: str, *, fingerprint: str, status: int, body: str) -> None:
        """Record the answer (JSON text) to a request, durable with the change it answers."""
        self._dirty_idem[key] = (fingerprint, status, body, time.time())
        self._touch()

    def forget_idempotency(self, older_than_s: float = IDEMPOTENCY_TTL) -> int:
        """Drop Idempotency-Key records older than ``older_than_s``; return how many."""
        sql = "DELETE FROM idempotency WHERE created_ts < ?"
        gone = self._sql().execute(sql, (time.time() - older_than_s,)).rowcount
        if gone:
            self._touch()
        return int(gone)

    # -- projects, hosts, meta, batches, schedules ---------------------------------------

    def _put_small(self, kind: str, key: str, doc: Any) -> None:
        if doc is _GONE:
            self._small[kind].pop(key, None)
        else:
            self._small[kind][key] = doc
        self._dirty_small[(kind, key)] = doc
        self._touch()

    def put_project(self, p: Project) -> None:
        """Insert or replace a project."""
        self._put_small("projects", p.name, p.to_dict())

    def get_project(self, name: str) -> Project:
        """Return a project by name."""
        doc = self._small["projects"].get(name)
        if doc is None:
            known = ", ".join(sorted(self._small["projects"])) or "none yet"
            raise NotFound(f"unknown project {name!r} (known: {known})")
        return _project(doc)

    def projects(self) -> list[Project]:
        """Return all projects sorted by name."""
        projects = self._small["projects"]
        return [_project(projects[n]) for n in sorted(projects)]

    def put_host_state(self, name: str, state: dict[str, Any]) -> None:
        """Record the last known state of a host (JSON-serialisable)."""
        self._put_small("hosts", name, _json_copy(state))

    def host_states(self) -> dict[str, dict[str, Any]]:
        """Return the last known state of every host."""
        return copy.deepcopy(self._small["hosts"])

    def get_meta(self, key: str, default: Any = None) -> Any:
        """Return a meta value (e.g. the last event seq)."""
        meta = self._small["meta"]
        return copy.deepcopy(meta[key]) if key in meta else default

    def set_meta(self, key: str, value: Any) -> None:
        """Set a meta value (JSON-serialisable)."""
        self._put_small("meta", key, _json_copy(value))

    def put_batch(self, batch: Batch) -> None:
        """Insert or replace a batch."""
        self._put_small("batches", batch.id, batch.to_dict())

    def get_batch(self, batch_id: str) -> Batch:
        """Return a batch by id or unique prefix."""
        batches = self._small["batches"]
        return Batch.from_dict(copy.deepcopy(batches[_by_prefix(batches, batch_id, "batch")]))

    def has_batch(self, batch_id: str) -> bool:
        """Return whether a batch with exactly this id is stored."""
        return batch_id in self._small["batches"]

    def batches(self) -> list[Batch]:
        """Return every batch, newest first."""
        docs = sorted(
            self._small["batches"].values(), key=lambda d: d.get("created_at") or "", reverse=True
        )
        return [Batch.from_dict(copy.deepcopy(d)) for d in docs]

    def put_schedule(self, schedule: Schedule) -> None:
        """Insert or replace a schedule."""
        self._put_small("schedules", schedule.id, _json_copy(schedule.to_dict()))

    def get_schedule(self, schedule_id: str) -> Schedule:
        """Return a schedule by id or unique prefix."""
        schedules = self._small["schedules"]
        key = _by_prefix(schedules, schedule_id, "schedule")
        return Schedule.from_dict(copy.deepcopy(schedules[key]))

    def schedules(self) -> list[Schedule]:
        """Return every schedule, oldest first."""
        docs = sorted(self._small["schedules"].values(), key=lambda d: d.get("created_at") or "")
        return [Schedule.from_dict(copy.deepcopy(d)) for d in docs]

    def delete_schedule(self, schedule_id: str) -> None:
        """Remove a schedule."""
        key = _by_prefix(self._small["schedules"], schedule_id, "schedule")
        self._put_small("schedules", key, _GONE)

    # -- races -----------------------------------------------------------------------------

    def put_race(self, race: Race) -> None:
        """Insert or replace a race."""
        self._put_small("races", race.id, _json_copy(race.to_dict()))

    def get_race(self, race_id: str) -> Race:
        """Return a race by id or unique prefix."""
        races = self._small["races"]
        return Race.from_dict(copy.deepcopy(races[_by_prefix(races, race_id, "race")]))

    def races(self) -> list[Race]:
        """Return every race, newest first."""
        docs = sorted(
            self._small["races"].values(), key=lambda d: d.get("created_at") or "", reverse=True
        )
        return [Race.from_dict(copy.deepcopy(d)) for d in docs]

    # -- commit and durability -----------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Return whether some change is not committed yet."""
        return self._gen != self._committed_gen

    def commit(self) -> None:
        """Commit every change so far to the WAL (no fsync: safe from a crash of the hub)."""
        self._apply()
        if self._in_txn:
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._in_txn = False
            if self._raw:  # imports now in SQL are read from there, and repaired
                self._raw.difference_update(self._applied[0])
            self._applied = ({}, {}, {})
            self.commits += 1
        self._committed_gen = self._applied_gen

    def _sync(self) -> None:
        """Fsync the WAL: every committed change is then on the disk."""
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return  # nothing was ever written through the WAL
            fsync_dir(self.path.parent)  # the WAL file itself is new
        os.fsync(self._wal_fd)
        self.syncs += 1

    def flush(self) -> None:
        """Commit and fsync every change so far, now, on the calling thread."""
        target = self._gen
        self.commit()
        self._sync()
        self._synced_gen = max(self._synced_gen, target)
        self._group = None
        self._release()

    def commit_part(self) -> None:
        """Commit what is queued now (no fsync); an error is left to the flusher to report.

        A long run of changes (a batch of thousands) committed as it is made leaves the
        flusher small commits, not one that holds the loop for tens of ms while the first
        tasks' launches wait for their answers.
        """
        try:
            self.commit()
        except (sqlite3.Error, OSError):
            self._wake.set()  # queued again: the flusher retries and answers the waiters

    async def durable(self) -> None:
        """Return once every change made so far is on disk (group commit with other callers).

        Raise StorageError (503) when the database cannot be written, or not within
        ``write_timeout`` seconds.
        """
        if self._synced_gen >= self._gen:
            return
        if self._flusher is None or self._flusher.done():
            try:
                self.flush()  # no background flusher (tests, tools): write now
            except (sqlite3.Error, OSError) as e:
                raise self._unavailable(e) from None
            return
        group = self._group
        if group is None or group.done:
            group = self._group = self._new_group()
            self._waiters.append(group)
        group.gen = self._gen
        self._wake.set()
        self._urgent.set()
        # A future per caller: one caller cancelled (client gone) cancels no other, and a
        # caller wakes one loop round after its group is answered (see run_flusher).
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.callers.append(fut)
        await fut

    def _new_group(self) -> _Group:
        group = _Group()
        group.timer = asyncio.get_running_loop().call_later(self.write_timeout, self._expire, group)
        return group

    def _expire(self, group: _Group) -> None:
        """Answer a group not on disk within ``write_timeout``: its changes stay queued."""
        if group.done:
            return
        why = f" (last error: {self._error})" if self._error else ""
        group.answer(
            StorageError(
                f"the hub could not write its database {self.path} within "
                f"{self.write_timeout:g} s{why}; the change is kept in memory and is written "
                "once the disk has room: retry with the same Idempotency-Key to get its answer"
            )
        )

    def _unavailable(self, error: BaseException) -> StorageError:
        return StorageError(
            f"the hub cannot write its database {self.path}: {error}; the change is kept in "
            "memory and is written once the disk has room: retry with the same "
            "Idempotency-Key to get its answer"
        )

    def _release(self) -> None:
        waiting = []
        for group in self._waiters:
            if group.done:
                continue
            if group.gen <= self._synced_gen:
                group.answer(None)
            else:
                waiting.append(group)
        self._waiters = waiting

    def _fail_waiters(self, error: BaseException) -> None:
        for group in self._waiters:
            if not group.done:
                group.answer(self._unavailable(error))
        self._waiters = []
        self._group = None

    async def run_flusher(self) -> None:
        """Commit queued changes at most once per ``flush_interval``, until cancelled."""
        retry = Retry(WRITE_RETRY)
        while True:
            await self._wake.wait()
            self._wake.clear()
            # One turn of the loop first: the callers woken with this change (the launches a
            # batch's first tasks start) join this group: one commit and fsync, not two.
            await asyncio.sleep(0)
            try:
                if self.dirty:
                    self.commit()
                self._group = None  # committed: later callers wait for the next group
                if self._waiters:
                    target = self._committed_gen
                    await asyncio.get_running_loop().run_in_executor(self._syncer, self._sync)
                    self._synced_gen = max(self._synced_gen, target)
                self._error = None
            except (sqlite3.Error, OSError) as e:
                self._error = str(e)
                wait = max(self.flush_interval, retry.next_delay() or WRITE_RETRY.cap)
                log.error("cannot write %s: %s; retrying in %.2fs", self.path, e, wait)
                self._fail_waiters(e)
                await asyncio.sleep(wait)  # don't spin on ENOSPC
                self._wake.set()
                continue
            retry.reset()
            self._release()
            self._maybe_checkpoint()
            if self._waiters:
                # Changes made while this group was written: the next group, once the callers
                # just answered have run (one loop round: their answers do not wait for the
                # next commit, tens of ms after a batch of a thousand tasks).
                await asyncio.sleep(0)
                continue
            self._urgent.clear()
            await wait_event(self._urgent, self.flush_interval)

    def _maybe_checkpoint(self) -> None:
        if self._frames < CHECKPOINT_FRAMES:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._frames = 0
        self._checkpoint = asyncio.ensure_future(asyncio.to_thread(self._run_checkpoint))

    def _run_checkpoint(self) -> None:
        """Copy the WAL into the database file (fsyncs both), on a connection of its own."""
        conn = schema.connect(str(self.path))
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            log.warning("checkpoint of %s failed: %s", self.path, e)
        finally:
            conn.close()

    def start(self) -> None:
        """Start the background flusher on the running loop."""
        if self._flusher is None or self._flusher.done():
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self.run_flusher(), name="dobby-store-flusher")
        self.forget_idempotency()

    async def close(self) -> None:
        """Stop the flusher, write pending changes and release the lock."""
        if self._closed:
            return
        await stop_task(self._flusher, timeout=1.0, what="the store's flusher")
        self._flusher = None
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        try:
            self.flush()
            self._conn.execute("PRAGMA optimize")
        finally:
            self._closed = True
            self._fail_waiters(RuntimeError("store closed"))
            self._syncer.shutdown()  # an fsync cut short by the flusher's stop ends first
            self._conn.close()  # the last connection checkpoints and removes the WAL
            if self._wal_fd is not None:
                os.close(self._wal_fd)
            _unlock(self._lock_fd)


@dataclasses.dataclass(eq=False)
class _Group:
    """Callers of :meth:`Store.durable` answered by one commit and fsync, with one deadline."""

    callers: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    gen: int = 0  # the newest change a caller of this group waits for
    done: bool = False  # answered: on disk, failed or expired

    def answer(self, error: BaseException | None) -> None:
        """Wake every caller still waiting: on disk (``error`` None) or failed."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        for fut in self.callers:
            if fut.done():  # that caller was cancelled
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
                fut.exception()  # retrieved: no warning if its caller is cancelled before it runs
        self.callers = []


def _by_prefix(table: dict[str, Any], key: str, kind: str) -> str:
    """Return the id in ``table`` that is ``key`` or the only one starting with it."""
    if key in table:
        return key
    matches = sorted(k for k in table if len(key) >= MIN_PREFIX and k.startswith(key))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValidationError(f"ambiguous {kind} id prefix {key!r}: matches {', '.join(matches)}")
    raise NotFound(f"unknown {kind} {key!r}")


def _project(doc: dict[str, Any]) -> Project:
    names = {f.name for f in dataclasses.fields(Project)}
    return Project(**{k: v for k, v in doc.items() if k in names})


def _json_copy(value: Any) -> Any:
    # Copy, and reject what could not be written, at put time rather than at commit time.
    if type(value) in (int, str, bool) or value is None:  # the event seq, on every save
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ValidationError(f"not JSON-serialisable: {e}") from None


def task_docs_on_disk(path: Path) -> dict[str, dict[str, Any]]:
    """Return every committed task document of a database file, by id (tools and tests)."""
    conn = schema.connect(str(path), readonly=True)
    try:
        sql = "SELECT t.id, d.doc FROM tasks t JOIN task_docs d ON d.seq = t.seq"
        return {tid: json.loads(doc) for tid, doc in conn.execute(sql)}
    finally:
        conn.close()
