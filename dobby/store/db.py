"""Persistent hub state: TinyDB with atomic writes, group commit and a task archive.

This is the only module that touches the database. The hot database is one JSON file in
TinyDB's layout (``{table: {key: document}}``) with tables ``tasks``, ``projects``, ``hosts``
and ``meta``; documents are keyed by their natural id (task id, project name, host name).

- Reads come from memory: the file is read once at open.
- Writes change memory and mark the database dirty. A group commit (``flush()``; the
  background flusher runs one at most once per ``flush_interval``; ``close()`` runs a last one)
  rewrites the file once per batch through a temp file + fsync + ``os.replace`` + directory
  fsync, so a crash leaves the old file or the new one, never a mix. A crash loses at most the
  writes of the last ``flush_interval``.
- TinyDB provides the storage/middleware plumbing and the file format. The Store indexes the
  middleware's table dicts directly instead of going through ``Table``: TinyDB's Table
  converts the whole table on every insert/update, i.e. O(n) per write.

Archive trade-off: finished tasks older than N seconds move to append-only monthly files
``archive_dir/tasks-YYYY-MM.jsonl``. So the hot file tracks live work, and a commit costs the
same whether the hub has run a day or a year. The price: the first lookup that misses the hot
database (or a listing that may include finished tasks) reads every archive file once to build
an in-memory index id → (file, offset); after that an archived task is one seek away, but a
listing that includes finished tasks reads them from disk each time. A ``put_task`` of an
archived id brings it back into the hot database, which then wins. Deleting an archived task
rewrites its month file.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tinydb import Storage, TinyDB
from tinydb.middlewares import Middleware

from dobby.core.errors import ConfigError, NotFound, ValidationError
from dobby.core.files import atomic_write, fsync_dir
from dobby.core.models import Batch, Project, Schedule, Task, TaskStatus
from dobby.core.timefmt import parse_time

log = logging.getLogger(__name__)

TABLES = ("tasks", "projects", "hosts", "meta", "batches", "schedules")
FINISHED = frozenset(s.value for s in TaskStatus if s.finished)
MIN_PREFIX = 4
ARCHIVE_GLOB = "tasks-*.jsonl"


class AtomicJSONStorage(Storage):
    """Keep TinyDB's data in one JSON file, replaced atomically on every write."""

    def __init__(self, path: str | Path, *, create_dirs: bool = True) -> None:
        self.path = Path(path)
        if create_dirs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writes = 0  # number of completed file replaces (tests and stats read it)
        self._encoded: dict[tuple[str, str], tuple[Any, str]] = {}  # (table, key) -> (doc, JSON)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """Return the stored tables, None for a missing or empty file; ConfigError if corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{self.path}:{e.lineno}:{e.colno}: corrupt database file: {e.msg} "
                f"(char {e.pos}); fix it or move it away (Dobby will not overwrite it)"
            ) from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{self.path}: corrupt database file: not UTF-8 at byte {e.start}; "
                "fix it or move it away (Dobby will not overwrite it)"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise ConfigError(f"{self.path}: not a TinyDB database ({{table: {{id: document}}}})")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Replace the file with ``data`` atomically."""
        atomic_write(self.path, self.encode(data))
        self.writes += 1

    def encode(self, data: dict[str, dict[str, Any]]) -> bytes:
        """Return ``json.dumps(data)`` (compact), serialising only documents that changed.

        The Store replaces documents and never changes them in place, so a document object
        seen at the last write still has the JSON it had then: a commit re-encodes what
        changed and joins the rest (a durable submit into a large database costs a copy of
        the file, not a json.dumps of every task).
        """
        seen: dict[tuple[str, str], tuple[Any, str]] = {}
        tables = []
        for name, docs in data.items():
            parts = []
            for key, doc in docs.items():
                hit = self._encoded.get((name, key))
                text = hit[1] if hit is not None and hit[0] is doc else _compact(doc)
                seen[(name, key)] = (doc, text)
                parts.append(f"{_compact(key)}:{text}")
            tables.append(f"{_compact(name)}:{{{','.join(parts)}}}")
        self._encoded = seen
        return f"{{{','.join(tables)}}}".encode()

    def close(self) -> None:
        """Release nothing: the file is never held open."""


class GroupCommitMiddleware(Middleware):
    """Keep TinyDB's data in memory and write it to the storage once per commit."""

    def __init__(self, storage_cls: type[Storage]) -> None:
        super().__init__(storage_cls)
        self.cache: dict[str, dict[str, Any]] | None = None
        self.generation = 0  # bumped on every change
        self.committed = 0  # generation last written to the storage
        self._write_lock = threading.Lock()  # commits may run in a worker thread

    def read(self) -> dict[str, dict[str, Any]]:
        """Return the in-memory tables, loading them from the storage once."""
        if self.cache is None:
            self.cache = self.storage.read() or {}
        return self.cache

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Replace the in-memory tables; they reach the storage at the next commit."""
        self.cache = data
        self.touch()

    def touch(self) -> None:
        """Record that the in-memory tables changed."""
        self.generation += 1

    @property
    def dirty(self) -> bool:
        return self.generation != self.committed

    def snapshot(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """Return the current generation and a copy of the tables a thread may serialise."""
        # Shallow copies suffice: the Store replaces documents and never mutates them in place.
        return self.generation, {name: dict(docs) for name, docs in self.read().items()}

    def commit(self, generation: int, data: dict[str, dict[str, Any]]) -> bool:
        """Write a snapshot unless a newer one is already on disk; return whether it wrote."""
        with self._write_lock:
            if generation <= self.committed:
                return False
            self.storage.write(data)
            self.committed = generation
            return True

    def flush(self) -> None:
        """Write the current tables if they changed since the last commit."""
        if self.dirty:
            self.commit(*self.snapshot())

    def close(self) -> None:
        """Flush, then close the storage."""
        self.flush()
        self.storage.close()


@dataclass(frozen=True, slots=True)
class _Archived:
    """Where an archived task's line is, plus what listings filter on."""

    path: Path
    offset: int
    length: int
    project: str | None
    status: str
    created_at: str

    @classmethod
    def of(cls, path: Path, offset: int, length: int, doc: dict[str, Any]) -> _Archived:
        return cls(
            path,
            offset,
            length,
            doc.get("project"),
            str(doc.get("status", "")),
            str(doc.get("created_at") or ""),
        )


def _lock(path: Path) -> int:
    """Take an exclusive lock on ``path.lock`` or fail fast with ConfigError."""
    lock_path = Path(f"{path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def _statuses(status: str | Iterable[str] | None) -> frozenset[str] | None:
    if status is None:
        return None
    wanted = frozenset([status] if isinstance(status, str) else status)
    bad = sorted(s for s in wanted if s not in TaskStatus._value2member_map_)
    if bad:
        known = ", ".join(s.value for s in TaskStatus)
        raise ValidationError(f"unknown status {', '.join(map(repr, bad))} (known: {known})")
    return frozenset(TaskStatus(s).value for s in wanted)


def _index_file(path: Path) -> dict[str, _Archived]:
    """Index one archive file: task id → its last line in the file."""
    entries: dict[str, _Archived] = {}
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                doc = json.loads(line)
                entries[doc["id"]] = _Archived.of(path, offset, len(line), doc)
            except (ValueError, KeyError, TypeError):
                if line.strip():  # a torn last line from a crash mid-append is expected
                    log.warning("%s: skipping unreadable line at byte %d", path, offset)
            offset += len(line)
    return entries


class TaskArchive:
    """Keep finished tasks in append-only monthly JSONL files, indexed lazily by id."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._index: dict[str, _Archived] | None = None  # built on the first miss

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def index(self) -> dict[str, _Archived]:
        """Return id → location of every archived task, scanning the files once."""
        if self._index is None:
            index: dict[str, _Archived] = {}
            # Month order, then line order: a task archived twice resolves to its last line.
            for path in sorted(self.dir.glob(ARCHIVE_GLOB)):
                index.update(_index_file(path))
            self._index = index
        return self._index

    def append(self, month: str, docs: list[dict[str, Any]]) -> None:
        """Append task documents to ``tasks-<month>.jsonl`` durably (fsync)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"tasks-{month}.jsonl"
        created = not path.exists()
        entries: dict[str, _Archived] = {}
        with open(path, "a+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":  # torn line from a crash: don't glue the next onto it
                    f.write(b"\n")
                    end += 1
            chunks = []
            for doc in docs:
                line = json.dumps(doc).encode() + b"\n"
                entries[doc["id"]] = _Archived.of(path, end, len(line), doc)
                chunks.append(line)
                end += len(line)
            f.write(b"".join(chunks))
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_dir(path.parent)
        if self._index is not None:
            self._index.update(entries)

    def read(self, entries: list[_Archived]) -> list[dict[str, Any]]:
        """Return the documents at the given locations, opening each file once."""
        docs: list[dict[str, Any]] = []
        with contextlib.ExitStack() as stack:
            files: dict[Path, Any] = {}
            for e in entries:
                f = files.get(e.path)
                if f is None:
                    f = files[e.path] = stack.enter_context(open(e.path, "rb"))
                f.seek(e.offset)
                docs.append(json.loads(f.read(e.length)))
        return docs

    def drop(self, tid: str) -> None:
        """Remove every line of a task, rewriting (atomically) the files that hold it."""
        index = self.index()
        needle = json.dumps(tid).encode()
        for path in sorted(self.dir.glob(ARCHIVE_GLOB)):
            raw = path.read_bytes()
            if needle not in raw:
                continue
            lines = raw.splitlines(keepends=True)
            kept = [ln for ln in lines if needle not in ln or _line_id(ln) != tid]
            if len(kept) == len(lines):
                continue
            atomic_write(path, b"".join(kept))
            for other, entry in _index_file(path).items():
                if other in index and index[other].path == path:  # offsets moved
                    index[other] = entry
        index.pop(tid, None)


class Store:
    """Hold the hub's state in memory and persist it to one TinyDB file by group commit."""

    def __init__(
        self, *, path: Path, archive_dir: Path | None = None, flush_interval: float = 0.05
    ) -> None:
        self.path = Path(path)
        self.archive_dir = Path(archive_dir) if archive_dir else self.path.parent / "archive"
        self.flush_interval = flush_interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.path)
        try:
            # Temp files of a crashed write are garbage; we hold the lock, so none is live.
            for stale in self.path.parent.glob(self.path.name + ".*.tmp"):
                stale.unlink(missing_ok=True)
            self._db = TinyDB(self.path, storage=GroupCommitMiddleware(AtomicJSONStorage))
            self._mw = cast(GroupCommitMiddleware, self._db.storage)
            data = self._mw.read()
            for name in TABLES:
                data.setdefault(name, {})
            self._check(data)
        except BaseException:
            _unlock(self._lock_fd)
            raise
        self._tasks: dict[str, dict[str, Any]] = data["tasks"]
        self._projects: dict[str, dict[str, Any]] = data["projects"]
        self._hosts: dict[str, dict[str, Any]] = data["hosts"]
        self._meta: dict[str, Any] = data["meta"]
        self._batches: dict[str, dict[str, Any]] = data["batches"]
        self._schedules: dict[str, dict[str, Any]] = data["schedules"]
        self._durable: list[tuple[int, asyncio.Future[None]]] = []  # (generation, waiter)
        self.archive = TaskArchive(self.archive_dir)
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # someone awaits durability: cut the batching pause
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    def _check(self, data: dict[str, dict[str, Any]]) -> None:
        # Fail at open, naming the document, rather than on some later request.
        for key, doc in data["tasks"].items():
            try:
                Task.from_dict(doc)
            except (TypeError, ValueError, AttributeError) as e:
                raise ConfigError(f"{self.path}: task {key!r} is malformed: {e}") from None

    def _touch(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")
        self._mw.touch()
        self._wake.set()

    # -- tasks --------------------------------------------------------------------------

    def put_task(self, task: Task) -> None:
        """Insert or replace a task."""
        self._tasks[task.id] = task.to_dict()
        self._touch()

    def get_task(self, task_id: str) -> Task:
        """Return a task by id or unique id prefix (≥ 4 chars), archived ones included."""
        return Task.from_dict(self._load(self._resolve(task_id)))

    def tasks(
        self, *, project: str | None = None, status: str | Iterable[str] | None = None
    ) -> list[Task]:
        """Return tasks, newest first, optionally filtered by project and status."""
        wanted = _statuses(status)

        def keep(p: str | None, s: str) -> bool:
            return (project is None or p == project) and (wanted is None or s in wanted)

        docs = [d for d in self._tasks.values() if keep(d.get("project"), d.get("status", ""))]
        # Archived tasks are all finished: a query for live statuses never touches the disk.
        if wanted is None or wanted & FINISHED:
            entries = [
                e
                for tid, e in self.archive.index().items()
                if tid not in self._tasks and keep(e.project, e.status)
            ]
            docs.extend(self.archive.read(entries))
        docs.sort(key=lambda d: (d.get("created_at") or "", d["id"]), reverse=True)
        return [Task.from_dict(d) for d in docs]

    def iter_task_docs(
        self, *, project: str | None = None, batch: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Yield task documents newest first, reading archived ones ``batch`` at a time."""
        keys: list[tuple[str, str, _Archived | None]] = [
            (d.get("created_at") or "", tid, None)
            for tid, d in self._tasks.items()
            if project is None or d.get("project") == project
        ]
        keys += [
            (e.created_at, tid, e)
            for tid, e in self.archive.index().items()
            if tid not in self._tasks and (project is None or e.project == project)
        ]
        keys.sort(key=lambda k: (k[0], k[1]), reverse=True)
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            wanted = [e for _, _, e in chunk if e is not None]
            archived = iter(self.archive.read(wanted))
            for _, tid, entry in chunk:
                if entry is not None:
                    yield next(archived)
                elif tid in self._tasks:  # may have been deleted meanwhile
                    yield copy.deepcopy(self._tasks[tid])

    def has_task(self, task_id: str) -> bool:
        """Return whether a task with exactly this id exists (hot or archived)."""
        return task_id in self._tasks or task_id in self.archive.index()

    def import_finished(self, docs: list[dict[str, Any]]) -> None:
        """Append finished task documents with new ids straight to the archive."""
        by_month: dict[str, list[dict[str, Any]]] = {}
        for doc in docs:
            when = doc.get("finished_at") or doc.get("created_at") or ""
            by_month.setdefault(when[:7] or "unknown", []).append(doc)
        for month, group in sorted(by_month.items()):
            self.archive.append(month, group)

    def task_status(self, task_id: str) -> str | None:
        """Return the status of a task by exact id (None if unknown), without building it."""
        doc = self._tasks.get(task_id)
        if doc is not None:
            return str(doc.get("status"))
        entry = self.archive.index().get(task_id)
        return entry.status if entry is not None else None

    def delete_task(self, task_id: str) -> None:
        """Remove a task from the hot database and the archive."""
        tid = self._resolve(task_id)
        if self._tasks.pop(tid, None) is not None:
            self._touch()
        if tid in self.archive.index():
            self.archive.drop(tid)

    def _resolve(self, task_id: str) -> str:
        if task_id in self._tasks or task_id in self.archive.index():
            return task_id
        if len(task_id) >= MIN_PREFIX:
            matches = sorted(
                {t for t in self._tasks if t.startswith(task_id)}
                | {t for t in self.archive.index() if t.startswith(task_id)}
            )
            if len(matches) == 1:
                return matches[0]
            if matches:
                shown = ", ".join(matches[:10]) + (" …" if len(matches) > 10 else "")
                raise ValidationError(f"ambiguous task id prefix {task_id!r}: matches {shown}")
        raise NotFound(f"unknown task {task_id!r}")

    def _load(self, tid: str) -> dict[str, Any]:
        if tid in self._tasks:
            return self._tasks[tid]
        return self.archive.read([self.archive.index()[tid]])[0]

    # -- archive ------------------------------------------------------------------------

    def archive_finished(self, older_than_s: float) -> int:
        """Move tasks finished more than ``older_than_s`` seconds ago to the archive."""
        cutoff = time.time() - older_than_s
        by_month: dict[str, list[dict[str, Any]]] = {}
        for doc in self._tasks.values():
            if doc.get("status") not in FINISHED or not doc.get("finished_at"):
                continue
            try:
                finished = parse_time(doc["finished_at"])
            except ValueError:
                log.warning("task %s: unreadable finished_at %r", doc["id"], doc["finished_at"])
                continue
            if finished.timestamp() < cutoff:
                by_month.setdefault(f"{finished:%Y-%m}", []).append(doc)
        moved = 0
        try:
            for month, docs in sorted(by_month.items()):
                # Durable in the archive before it leaves the hot DB: a crash in between
                # leaves the task in both places (the hot copy wins), never in neither.
                self.archive.append(month, docs)
                for doc in docs:
                    del self._tasks[doc["id"]]
                moved += len(docs)
        finally:
            if moved:
                self._touch()
        self.flush()
        return moved

    # -- projects, hosts, meta ----------------------------------------------------------

    def put_project(self, p: Project) -> None:
        """Insert or replace a project."""
        self._projects[p.name] = p.to_dict()
        self._touch()

    def get_project(self, name: str) -> Project:
        """Return a project by name."""
        doc = self._projects.get(name)
        if doc is None:
            known = ", ".join(sorted(self._projects)) or "none yet"
            raise NotFound(f"unknown project {name!r} (known: {known})")
        return _project(doc)

    def projects(self) -> list[Project]:
        """Return all projects sorted by name."""
        return [_project(self._projects[n]) for n in sorted(self._projects)]

    def put_host_state(self, name: str, state: dict[str, Any]) -> None:
        """Record the last known state of a host (JSON-serialisable)."""
        self._hosts[name] = _json_copy(state)
        self._touch()

    def host_states(self) -> dict[str, dict[str, Any]]:
        """Return the last known state of every host."""
        return copy.deepcopy(self._hosts)

    def get_meta(self, key: str, default: Any = None) -> Any:
        """Return a meta value (e.g. the last event seq)."""
        return copy.deepcopy(self._meta[key]) if key in self._meta else default

    def set_meta(self, key: str, value: Any) -> None:
        """Set a meta value (JSON-serialisable)."""
        self._meta[key] = _json_copy(value)
        self._touch()

    # -- batches and schedules ------------------------------------------------------------

    def put_batch(self, batch: Batch) -> None:
        """Insert or replace a batch."""
        self._batches[batch.id] = batch.to_dict()
        self._touch()

    def get_batch(self, batch_id: str) -> Batch:
        """Return a batch by id or unique prefix."""
        return Batch.from_dict(self._batches[_by_prefix(self._batches, batch_id, "batch")])

    def batches(self) -> list[Batch]:
        """Return every batch, newest first."""
        docs = sorted(self._batches.values(), key=lambda d: d.get("created_at") or "", reverse=True)
        return [Batch.from_dict(d) for d in docs]

    def put_schedule(self, schedule: Schedule) -> None:
        """Insert or replace a schedule."""
        self._schedules[schedule.id] = _json_copy(schedule.to_dict())
        self._touch()

    def get_schedule(self, schedule_id: str) -> Schedule:
        """Return a schedule by id or unique prefix."""
        key = _by_prefix(self._schedules, schedule_id, "schedule")
        return Schedule.from_dict(copy.deepcopy(self._schedules[key]))

    def schedules(self) -> list[Schedule]:
        """Return every schedule, oldest first."""
        docs = sorted(self._schedules.values(), key=lambda d: d.get("created_at") or "")
        return [Schedule.from_dict(copy.deepcopy(d)) for d in docs]

    def delete_schedule(self, schedule_id: str) -> None:
        """Remove a schedule."""
        del self._schedules[_by_prefix(self._schedules, schedule_id, "schedule")]
        self._touch()

    # -- commit ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._mw.dirty

    @property
    def writes(self) -> int:
        """Return how many times the database file was replaced."""
        return cast(AtomicJSONStorage, self._mw.storage).writes

    def flush(self) -> None:
        """Write pending changes now (one atomic file replace)."""
        self._mw.flush()
        self._release_durable()

    async def durable(self) -> None:
        """Return once every change made so far is on disk (group commit with other callers)."""
        if not self._mw.dirty:
            return
        if self._flusher is None or self._flusher.done():
            self.flush()  # no background flusher (tests, tools): write now
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._durable.append((self._mw.generation, fut))
        self._wake.set()
        self._urgent.set()
        await fut

    def _release_durable(self) -> None:
        if not self._durable:
            return
        done = self._mw.committed if self._mw.dirty else self._mw.generation
        waiting = []
        for generation, fut in self._durable:
            if generation <= done:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((generation, fut))
        self._durable = waiting

    async def run_flusher(self) -> None:
        """Commit pending changes at most once per ``flush_interval``, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._mw.dirty:
                try:
                    # In a thread: json.dumps + fsync of a large file would stall the loop.
                    await asyncio.to_thread(self._mw.commit, *self._mw.snapshot())
                except Exception:
                    log.exception("could not write %s; retrying", self.path)
                    self._wake.set()
                    await asyncio.sleep(max(1.0, self.flush_interval))  # don't spin on ENOSPC
                    continue
            self._release_durable()
            # Someone awaits durability: commit again at once (the changes made while this
            # commit was writing form the next group). Otherwise batch for flush_interval.
            if not self._durable:
                self._urgent.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self.flush_interval)

    def start(self) -> None:
        """Start the background flusher on the running loop."""
        if self._flusher is None or self._flusher.done():
            loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self.run_flusher(), name="dobby-store-flusher")

    async def close(self) -> None:
        """Stop the flusher, write pending changes and release the lock."""
        if self._closed:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            self._db.close()  # waits for an in-flight threaded commit, then flushes
        finally:
            self._closed = True
            _unlock(self._lock_fd)


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


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _project(doc: dict[str, Any]) -> Project:
    names = {f.name for f in dataclasses.fields(Project)}
    return Project(**{k: v for k, v in doc.items() if k in names})


def _json_copy(value: Any) -> Any:
    # Copy, and reject what could not be written, at put time rather than at flush time.
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise ValidationError(f"not JSON-serialisable: {e}") from None


def _line_id(line: bytes) -> str | None:
    try:
        return cast(str, json.loads(line)["id"])
    except (ValueError, KeyError, TypeError):
        return None
