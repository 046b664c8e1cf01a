"""Tests for dobby.store against a real SQLite file in a temp directory."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dobby.core.errors import ConfigError, NotFound, StorageError, ValidationError
from dobby.core.models import Project, Race, Task, TaskStatus
from dobby.core.timefmt import iso
from dobby.results import stats
from dobby.store import aggregates
from dobby.store import db as store_mod
from dobby.store.db import IdTaken, Store, task_docs_on_disk
from dobby.store.query import TaskFilter


def ago(seconds: float) -> str:
    return iso(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))


def finished_task(task_id: str, *, ago_s: float, status: str = "completed", **kw: object) -> Task:
    kw.setdefault("prompt", f"do {task_id}")
    return Task(id=task_id, status=status, finished_at=ago(ago_s), **kw)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "dobby.db"


@pytest.fixture
async def store(db_path: Path):
    s = Store(path=db_path)
    yield s
    await s.close()


async def reopen(s: Store) -> Store:
    await s.close()
    return Store(path=s.path)


async def test_round_trip_through_close_and_reopen(store: Store) -> None:
    t = Task(prompt="fix the bug\nin utils", backend="claude", project="web", after=["x1"])
    t.tokens.input = 12
    store.put_task(t)
    done = finished_task("done0001", ago_s=5)
    store.put_task(done)
    project = Project(name="web", path="/src/web", context="a site")
    store.put_project(project)
    store.put_host_state("gpu1", {"up": True, "gpus": [{"index": 0, "util": 55}]})
    store.set_meta("last_seq", 42)

    s2 = await reopen(store)
    try:
        assert s2.get_task(t.id) == t
        assert s2.get_task(t.id).tokens.input == 12
        assert s2.get_task("done0001") == done
        assert s2.get_project("web") == project
        assert [p.name for p in s2.projects()] == ["web"]
        assert s2.host_states() == {"gpu1": {"up": True, "gpus": [{"index": 0, "util": 55}]}}
        assert s2.get_meta("last_seq") == 42
        assert s2.get_meta("missing", "dflt") == "dflt"
        assert [x.id for x in s2.tasks(status="pending")] == [t.id]  # the live cache, reloaded
    finally:
        await s2.close()


async def test_races_survive_a_reopen_and_resolve_by_prefix(store: Store) -> None:
    old = Race(prompt="fix it", verify="pytest -q", k=2, created_at=ago(60))
    new = Race(prompt="fix it again", verify="make check", k=3, pick="smallest", created_at=ago(5))
    new.attempts = [{"slot": 0, "backend": "claude", "model": None, "host": "h1", "tasks": ["t1"]}]
    store.put_race(old)
    store.put_race(new)
    new.status, new.winner = "completed", "t1"
    store.put_race(new)  # replaced, not added

    s2 = await reopen(store)
    try:
        assert [r.id for r in s2.races()] == [new.id, old.id]  # newest first
        assert s2.get_race(new.id) == new
        assert s2.get_race(old.id[:6]).verify == "pytest -q"
        with pytest.raises(NotFound, match="race"):
            s2.get_race("r-nope")
    finally:
        await s2.close()


async def test_reads_return_copies(store: Store) -> None:
    t = Task(prompt="p")
    store.put_task(t)
    t.status = "running"  # mutating the caller's object must not change the store
    assert store.get_task(t.id).status == "pending"
    state = {"up": True}
    store.put_host_state("h", state)
    store.host_states()["h"]["up"] = False
    assert store.host_states()["h"]["up"] is True


async def test_non_json_values_are_rejected_at_put(store: Store) -> None:
    with pytest.raises(ValidationError):
        store.set_meta("k", object())
    with pytest.raises(ValidationError):
        store.put_host_state("h", {"when": dt.datetime.now()})


async def test_burst_is_group_committed(db_path: Path) -> None:
    s = Store(path=db_path, flush_interval=0.05)
    s.start()
    for i in range(200):
        s.put_task(Task(prompt=f"task {i}"))
        await asyncio.sleep(0.001)  # the loop runs between puts, as in the hub
    await s.close()
    assert 1 <= s.commits <= 40, s.commits
    assert len(task_docs_on_disk(db_path)) == 200


async def test_durable_groups_concurrent_waiters_into_few_fsyncs(db_path: Path) -> None:
    s = Store(path=db_path, flush_interval=0.05)
    s.start()
    try:

        async def submit(i: int) -> str:
            task = Task(prompt=f"t{i}")
            s.insert_task(task)
            await s.durable()
            return task.id

        ids = await asyncio.gather(*(submit(i) for i in range(100)))
        assert set(ids) <= set(task_docs_on_disk(db_path))  # acknowledged = committed
        assert s.syncs < 100  # one fsync answers many waiters
    finally:
        await s.close()


async def test_a_caller_woken_with_a_change_is_answered_by_that_changes_commit(
    db_path: Path,
) -> None:
    # A batch's first task wakes the flusher, and in the same turn of the loop its launch asks
    # for it to be on disk while the batch queues more: one commit and fsync answer it, not a
    # commit without an fsync first and a second one after.
    s = Store(path=db_path, flush_interval=0.05)
    s.start()
    try:
        await asyncio.sleep(0.2)  # the flusher waits for a change
        commits = s.commits
        s.insert_task(Task(prompt="first"))

        async def more() -> None:
            s.insert_task(Task(prompt="second"))

        launch = asyncio.ensure_future(s.durable())
        queued = asyncio.ensure_future(more())
        await asyncio.gather(launch, queued)
        assert s.commits - commits == 1
    finally:
        await s.close()


async def test_a_cancelled_durable_caller_leaves_its_group_waiting(db_path: Path) -> None:
    s = Store(path=db_path, flush_interval=0.05)
    s.start()
    try:
        s.put_task(Task(prompt="a", id="ccc00001"))
        gone = asyncio.ensure_future(s.durable())
        s.put_task(Task(prompt="b", id="ccc00002"))
        kept = asyncio.ensure_future(s.durable())
        await asyncio.sleep(0)  # both joined one group
        assert len(s._waiters) == 1
        gone.cancel()  # a client that went away
        await asyncio.wait_for(kept, 5)
        assert {"ccc00001", "ccc00002"} <= set(task_docs_on_disk(db_path))
        assert not s._waiters  # released, its deadline timer cancelled
    finally:
        await s.close()


async def test_answered_callers_run_before_the_next_group_commits(db_path: Path) -> None:
    # A group's callers answer before the flusher commits the next group: after a batch of
    # a thousand tasks that commit takes tens of ms, and the answer must not wait for it.
    s = Store(path=db_path, flush_interval=0.05)
    syncing, go = threading.Event(), threading.Event()
    real_sync = s._sync

    def held_sync() -> None:  # the first fsync waits until the second group has formed
        syncing.set()
        go.wait(10)
        real_sync()

    async def dirty_when_answered() -> bool:
        await s.durable()
        return s.dirty  # seen by the caller itself, as it wakes

    s._sync = held_sync  # type: ignore[method-assign]
    s.start()
    try:
        s.put_task(Task(prompt="first", id="ddd00001"))
        first = asyncio.ensure_future(dirty_when_answered())
        await asyncio.to_thread(syncing.wait, 10)
        s.put_task(Task(prompt="second", id="ddd00002"))  # made while the first is fsynced
        second = asyncio.ensure_future(s.durable())
        await asyncio.sleep(0)
        assert len(s._waiters) == 2
        go.set()
        assert await asyncio.wait_for(first, 10)  # the second group was not committed yet
        await asyncio.wait_for(second, 10)
        assert {"ddd00001", "ddd00002"} <= set(task_docs_on_disk(db_path))
    finally:
        go.set()
        await s.close()


KILLED = """
import asyncio, os, signal, sys
from pathlib import Path
from dobby.core.models import Task
from dobby.store.db import Store

async def main():
    s = Store(path=Path(sys.argv[1]), flush_interval=10.0)
    s.start()
    for i in range(50):
        t = Task(prompt=f"acked {i}")
        s.insert_task(t)
        await s.durable()
        print(t.id, flush=True)
    s.put_task(Task(prompt="never acknowledged"))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.slow  # a process killed with -9
def test_sigkill_loses_nothing_acknowledged(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(db_path)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == -9, proc.stderr
    acked = proc.stdout.split()
    assert len(acked) == 50
    s = Store(path=db_path)  # recovers the WAL the killed process left
    try:
        assert all(s.has_task(tid) for tid in acked)
    finally:
        asyncio.run(s.close())


async def test_a_hung_disk_answers_storage_error_within_the_bound(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(path=db_path, write_timeout=0.3)
    s.start()
    release = threading.Event()
    real_fsync = os.fsync

    def stuck(fd: int) -> None:
        release.wait(10)
        real_fsync(fd)

    try:
        s.put_task(Task(prompt="first", id="aaaa0001"))
        await s.durable()  # creates the WAL file before the disk "hangs"
        monkeypatch.setattr(store_mod.os, "fsync", stuck)
        s.put_task(Task(prompt="hung", id="aaaa0002"))
        with pytest.raises(StorageError, match="within 0.3 s"):
            await s.durable()
        release.set()
        monkeypatch.undo()
        await asyncio.wait_for(s.durable(), 5)  # the disk is back: the change was kept
        assert "aaaa0002" in task_docs_on_disk(db_path)
    finally:
        release.set()
        await s.close()


async def test_a_failed_commit_is_rolled_back_and_retried(store: Store) -> None:
    store.put_task(Task(prompt="old", id="0ld00001"))
    store.flush()
    store.put_task(Task(prompt="new", id="new00001"))
    real = store._conn
    store._conn = _FailingCommit(real)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        store.commit()
    assert store.dirty and store.get_task("new00001").prompt == "new"
    store._conn = real
    store.flush()
    assert set(task_docs_on_disk(store.path)) == {"0ld00001", "new00001"}


class _FailingCommit:
    """A connection whose COMMIT fails as on a full disk (every other call goes through)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


async def test_get_task_by_prefix(store: Store) -> None:
    for tid in ("abcd1234", "abce0000", "abce1111"):
        store.put_task(Task(prompt=tid, id=tid))
    assert store.get_task("abcd1234").id == "abcd1234"
    assert store.get_task("abcd").id == "abcd1234"
    with pytest.raises(ValidationError, match="abce0000, abce1111"):
        store.get_task("abce")
    with pytest.raises(NotFound, match="unknown task 'abc'"):
        store.get_task("abc")  # too short to be a prefix
    with pytest.raises(NotFound, match="unknown task 'zzzz'"):
        store.get_task("zzzz")


async def test_new_ids_are_long_and_an_insert_never_overwrites(store: Store) -> None:
    first = Task(prompt="first")
    assert len(first.id) == 16
    store.insert_task(first)
    with pytest.raises(IdTaken):
        store.insert_task(Task(prompt="impostor", id=first.id))
    assert store.get_task(first.id).prompt == "first"
    assert store.unused_task_id() != first.id


async def test_tasks_filters_and_orders_newest_first(store: Store) -> None:
    store.put_task(Task(prompt="a", id="t1", project="p", created_at="2024-01-01T00:00:00.000000Z"))
    store.put_task(
        Task(prompt="b", id="t2", project="q", status="running",
             created_at="2024-01-03T00:00:00.000000Z")
    )  # fmt: skip
    store.put_task(
        Task(prompt="c", id="t3", project="p", status="failed",
             created_at="2024-01-02T00:00:00.000000Z")
    )  # fmt: skip
    assert [t.id for t in store.tasks()] == ["t2", "t3", "t1"]
    assert [t.id for t in store.tasks(project="p")] == ["t3", "t1"]
    assert [t.id for t in store.tasks(status="running")] == ["t2"]
    assert [t.id for t in store.tasks(status=[TaskStatus.FAILED, "pending"])] == ["t3", "t1"]
    with pytest.raises(ValidationError, match="unknown status 'runing'"):
        store.tasks(status="runing")


async def test_pages_counts_cursors_and_search(store: Store) -> None:
    for i in range(30):
        store.put_task(
            finished_task(
                f"task{i:04d}", ago_s=100 - i, status="failed" if i % 3 == 0 else "completed",
                project="web" if i % 2 else "api", host=f"h{i % 4}", backend="shell",
                created_at=f"2024-01-01T00:00:{i:02d}.000000Z",
                prompt=f"Fix the flaky-parser test number {i}" if i < 5 else f"Refactor item {i}",
            )
        )  # fmt: skip
    newest = store.page(TaskFilter(), limit=10)
    assert [d["id"] for d in newest] == [f"task{i:04d}" for i in range(29, 19, -1)]
    assert store.count(TaskFilter()) == 30
    after = store.page(TaskFilter(), limit=10, before=newest[-1]["id"])
    assert after[0]["id"] == "task0019"
    assert store.page(TaskFilter(), limit=10, offset=10) == after
    failed_web = TaskFilter(status=frozenset({"failed"}), project="web")
    assert {d["id"] for d in store.page(failed_web, limit=None)} == {
        f"task{i:04d}" for i in range(30) if i % 3 == 0 and i % 2
    }
    assert store.count(TaskFilter(host="h1")) == len([i for i in range(30) if i % 4 == 1])
    # Whole words, case-insensitive; the last word may be the start of one.
    assert store.count(TaskFilter(q="FLAKY pars")) == 5
    assert store.count(TaskFilter(q="flak parser")) == 0  # only the last word is a prefix
    assert store.count(TaskFilter(q="flaky refactor")) == 0
    assert [d["id"] for d in store.page(TaskFilter(q="task0007"), limit=5)] == ["task0007"]
    assert store.count(TaskFilter(q='"* - ()')) == 30  # no word: no filter, never FTS syntax
    with pytest.raises(NotFound, match="before"):
        store.page(TaskFilter(), limit=5, before="nope")


async def test_pages_in_other_orders_sort_on_the_server(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    spec = [  # id, cost, ran (s), finished (s ago), status
        ("c1", 0.5, 100, 500, "completed"),
        ("c2", 2.0, 10, 50, "failed"),
        ("c3", None, 1000, 5000, "completed"),
        ("c4", 1.0, 5, 10, "completed"),
    ]
    for i, (tid, cost, ran, ago_s, status) in enumerate(spec):
        finished = now - dt.timedelta(seconds=ago_s)
        store.put_task(
            Task(id=tid, prompt="p", backend="claude", status=status, cost_usd=cost,
                 created_at=iso(finished - dt.timedelta(seconds=ran + 1 + i)),
                 started_at=iso(finished - dt.timedelta(seconds=ran)), finished_at=iso(finished))
        )  # fmt: skip
    running = Task(id="r1", prompt="p", backend="shell", status="running", waiting_on=None,
                   created_at=iso(now - dt.timedelta(seconds=3001)),
                   started_at=iso(now - dt.timedelta(seconds=3000)))  # fmt: skip
    store.put_task(running)
    store.put_task(Task(id="p1", prompt="p", backend="shell", created_at=iso(now)))

    def ids(sort: str, **kw: object) -> list[str]:
        return [d["id"] for d in store.page(TaskFilter(), limit=None, sort=sort, **kw)]  # type: ignore[arg-type]

    assert ids("cost") == ["c2", "c4", "c1", "p1", "r1", "c3"]  # unknown cost last, newest first
    assert ids("finished")[:4] == ["c4", "c2", "c1", "c3"]
    assert ids("longest")[:5] == ["r1", "c3", "c1", "c2", "c4"]  # running: time so far
    assert ids("oldest") == ids("newest")[::-1]
    assert ids("cost", offset=1)[:2] == ["c4", "c1"]
    done = TaskFilter(status=frozenset({"completed"}))
    assert [d["id"] for d in store.page(done, limit=2, sort="cost")] == ["c4", "c1"]
    with pytest.raises(ValidationError, match="newest first only"):
        store.page(TaskFilter(), limit=2, sort="cost", before="c1")
    with pytest.raises(ValidationError, match="unknown sort 'title'"):
        store.page(TaskFilter(), limit=2, sort="title")


async def test_search_follows_edits_and_deletes(store: Store) -> None:
    t = Task(prompt="alpha words", id="edit0001")
    store.put_task(t)
    assert store.count(TaskFilter(q="alpha")) == 1
    t.prompt, t.title = "beta words", "beta"
    store.put_task(t)
    assert store.count(TaskFilter(q="alpha")) == 0
    assert store.count(TaskFilter(q="beta")) == 1
    store.delete_task("edit0001")
    assert store.count(TaskFilter(q="beta")) == 0
    with pytest.raises(NotFound):
        store.get_task("edit0001")


async def test_a_lone_surrogate_does_not_break_commits(store: Store) -> None:
    t = Task(prompt="bad \udfff text", title="\udfff")
    store.put_task(t)
    store.flush()
    assert store.get_task(t.id).title == "\udfff"
    assert store.count(TaskFilter(q="bad")) == 1


def _random_tasks(rng: random.Random, n: int) -> list[Task]:
    tasks = []
    for i in range(n):
        status = rng.choice(["pending", "running", "completed", "completed", "failed", "cancelled"])
        created = dt.datetime(2026, 11, rng.randint(1, 28), rng.randint(0, 23), tzinfo=dt.UTC)
        started = (
            created + dt.timedelta(seconds=rng.randint(0, 900)) if status != "pending" else None
        )
        finished = (
            started + dt.timedelta(seconds=rng.randint(1, 3600))
            if started and status in ("completed", "failed", "cancelled") else None
        )  # fmt: skip
        backend = rng.choice(["claude", "codex", "shell"])
        t = Task(
            prompt=f"p{i}", id=f"r{i:05d}", status=status, backend=backend,
            project=rng.choice(["web", "api", None]), host=rng.choice(["h1", "h2", None]),
            model=rng.choice(["opus", None]), created_at=iso(created),
            started_at=iso(started) if started else None,
            finished_at=iso(finished) if finished else None,
            cost_usd=rng.choice([None, round(rng.random(), 4)]),
            waiting_on=rng.choice(["capacity", "dependencies"]) if status == "pending" else None,
        )  # fmt: skip
        t.tokens.input, t.tokens.output = rng.randint(0, 10**6), rng.randint(0, 10**5)
        tasks.append(t)
    return tasks


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_stats_from_sql_equal_the_pure_computation(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    tasks = {t.id: t for t in _random_tasks(rng, 400)}
    for task in tasks.values():
        store.put_task(task)
    store.flush()
    for task in rng.sample(list(tasks.values()), 80):  # updates move rollup rows around
        task.status, task.cost_usd, task.host = "completed", 0.5, "h3"
        task.finished_at = task.finished_at or task.created_at
        store.put_task(task)
    for tid in rng.sample(sorted(tasks), 20):
        store.delete_task(tid)
        del tasks[tid]
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    for since, project in [(None, None), (now - dt.timedelta(days=9, hours=5), None),
                           (None, "web"), (now - dt.timedelta(days=3), "api")]:  # fmt: skip
        expected = stats.compute(tasks.values(), now=now, since=since, project=project)
        live = [t for t in tasks.values() if t.status in ("pending", "running", "draft")]
        groups = aggregates.stats_groups(store.sql(), since=since, project=project)
        got = stats.from_groups(
            groups, queue=stats.queue(t for t in live if project in (None, t.project)),
            now=now, since=since, project=project,
        )  # fmt: skip
        assert got == expected
    # The rollup kept in step equals one rebuilt from scratch.
    conn = store.sql()
    kept = sorted(conn.execute("SELECT * FROM task_stats").fetchall())
    aggregates.rebuild_stats(conn)
    rebuilt = sorted(conn.execute("SELECT * FROM task_stats").fetchall())
    assert [r[:6] for r in kept] == [r[:6] for r in rebuilt]  # keys and counts
    for a, b in zip(kept, rebuilt, strict=True):
        assert a[6:] == pytest.approx(b[6:], abs=1e-9)  # sums, up to float rounding


async def test_idempotency_records_are_durable_and_expire(store: Store) -> None:
    store.remember("POST /tasks k1", fingerprint="f", status=201, body='{"id":"x"}')
    assert store.idempotent("POST /tasks k1") == ("f", 201, '{"id":"x"}')
    s2 = await reopen(store)
    try:
        assert s2.idempotent("POST /tasks k1") == ("f", 201, '{"id":"x"}')
        assert s2.forget_idempotency(older_than_s=-1) == 1
        assert s2.idempotent("POST /tasks k1") is None
    finally:
        await s2.close()


async def test_lookups_by_key_or_id_read_every_state_without_writing_the_queue(
    store: Store,
) -> None:
    store.remember("committed", fingerprint="a", status=201, body='{"n":1}')
    store.commit()
    store.remember("in the transaction", fingerprint="b", status=201, body='{"n":2}')
    written = Task(prompt="in the transaction")
    store.insert_task(written)
    conn = store.sql()  # writes both into the open transaction, uncommitted
    store.remember("queued", fingerprint="c", status=202, body='{"n":3}')
    queued = Task(prompt="queued")
    store.insert_task(queued)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        assert store.idempotent("committed") == ("a", 201, '{"n":1}')
        assert store.idempotent("in the transaction") == ("b", 201, '{"n":2}')
        assert store.idempotent("queued") == ("c", 202, '{"n":3}')
        assert store.idempotent("never") is None
        assert store.has_task(written.id) and store.has_task(queued.id)
        assert not store.has_task("0123456789abcdef")
        assert json.loads(store.task_json(queued.id)) == queued.to_dict()
        assert json.loads(store.task_json(written.id)) == written.to_dict()
    finally:
        conn.set_trace_callback(None)
    # One SELECT per lookup the queue could not answer, and not a single write: a submit's
    # lookups no longer write every queued change before they read.
    assert statements and all(s.lstrip().upper().startswith("SELECT") for s in statements)
    store._rollback()  # a failed commit: what the transaction held is queued again
    assert store.idempotent("in the transaction") == ("b", 201, '{"n":2}')
    assert store.has_task(written.id)
    store.flush()
    s2 = await reopen(store)
    try:
        for key in ("committed", "in the transaction", "queued"):
            assert s2.idempotent(key) is not None
        assert s2.get_task(queued.id) == queued and s2.get_task(written.id) == written
    finally:
        await s2.close()


async def test_files_are_private(store: Store) -> None:
    store.put_task(Task(prompt="secret"))
    store.flush()
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(f"{store.path}{suffix}").st_mode)
        assert mode == 0o600, (suffix, oct(mode))


async def test_projects_not_found_lists_known(store: Store) -> None:
    with pytest.raises(NotFound, match=r"unknown project 'x' \(known: none yet\)"):
        store.get_project("x")
    store.put_project(Project(name="b", path="/b"))
    store.put_project(Project(name="a", path="/a"))
    with pytest.raises(NotFound, match=r"unknown project 'x' \(known: a, b\)"):
        store.get_project("x")
    assert [p.name for p in store.projects()] == ["a", "b"]


async def test_second_store_on_same_file_fails_fast(store: Store) -> None:
    with pytest.raises(ConfigError, match="another hub is using DOBBY_HOME"):
        Store(path=store.path)
    await store.close()
    s2 = Store(path=store.path)  # released on close
    await s2.close()


async def test_close_flushes_and_is_idempotent(db_path: Path) -> None:
    s = Store(path=db_path, flush_interval=60)
    s.start()
    s.put_task(Task(prompt="p", id="last0001"))
    await s.close()
    await s.close()
    assert "last0001" in task_docs_on_disk(db_path)
    with pytest.raises(RuntimeError):
        s.put_task(Task(prompt="late"))


def test_not_a_database_is_a_config_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_text("this is not SQLite")
    with pytest.raises(ConfigError, match="not a usable database"):
        Store(path=db_path)
    db_path.unlink()
    asyncio.run(Store(path=db_path).close())  # the failed open released its lock


# -- migration from the TinyDB store --------------------------------------------------------------


def _legacy_home(home: Path) -> tuple[dict[str, dict], list[dict]]:
    home.mkdir(parents=True)
    hot = {
        "live0001": Task(prompt="still queued", id="live0001").to_dict(),
        "both0001": finished_task("both0001", ago_s=10, summary="hot copy").to_dict(),
    }
    archived = [
        finished_task(f"arch{i:04d}", ago_s=86400 * 40 + i, project="web").to_dict()
        for i in range(5)
    ]
    archived.append(finished_task("both0001", ago_s=86400, summary="archived copy").to_dict())
    data = {
        "tasks": hot,
        "projects": {"web": Project(name="web", path="/src/web").to_dict()},
        "meta": {"seq": 77},
        "hosts": {},
        "batches": {},
        "schedules": {},
    }
    (home / "dobby.json").write_text(json.dumps(data))
    (home / "archive").mkdir()
    lines = "".join(json.dumps(d) + "\n" for d in archived)
    (home / "archive" / "tasks-2026-10.jsonl").write_text(lines + '{"id": "torn')
    return hot, archived


async def test_an_old_tinydb_home_is_imported_once_and_nothing_is_lost(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hot, archived = _legacy_home(home)
    s = Store(path=home / "dobby.db", legacy_path=home / "dobby.json",
              legacy_archive=home / "archive")  # fmt: skip
    try:
        ids = {t.id for t in s.tasks()}
        assert ids == set(hot) | {d["id"] for d in archived}
        assert s.get_task("both0001").summary == "hot copy"  # the hot copy is the newer one
        assert s.get_task("arch0003").project == "web"
        assert [t.id for t in s.tasks(status="pending")] == ["live0001"]
        assert s.get_project("web").path == "/src/web" and s.get_meta("seq") == 77
        assert s.count(TaskFilter(project="web")) == 5
    finally:
        await s.close()
    assert not (home / "dobby.json").exists() and not (home / "archive").exists()
    assert len(list(home.glob("dobby.json.migrated-*"))) == 1
    assert len(list(home.glob("archive.migrated-*"))) == 1
    s2 = Store(path=home / "dobby.db", legacy_path=home / "dobby.json")  # nothing to import now
    assert len(s2.tasks()) == 7
    await s2.close()


@pytest.mark.parametrize(
    "content",
    ['{"tasks": {"a": {"prompt": "x"}', "[1, 2]", '{"tasks": [1]}', b"\xff\xfe{}"],
)
def test_corrupt_old_file_stops_the_start_and_is_untouched(tmp_path: Path, content) -> None:  # type: ignore[no-untyped-def]
    legacy = tmp_path / "dobby.json"
    raw = content if isinstance(content, bytes) else content.encode()
    legacy.write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        Store(path=tmp_path / "dobby.db", legacy_path=legacy)
    assert str(legacy) in str(err.value)
    assert legacy.read_bytes() == raw
    legacy.write_text("{}")  # fixed: the hub starts, having released its locks
    asyncio.run(Store(path=tmp_path / "dobby.db", legacy_path=legacy).close())


def test_a_malformed_old_task_is_named(tmp_path: Path) -> None:
    legacy = tmp_path / "dobby.json"
    legacy.write_text(json.dumps({"tasks": {"t1": {"id": "t1", "nonsense": 1}}}))
    with pytest.raises(ConfigError, match="task 't1' is malformed"):
        Store(path=tmp_path / "dobby.db", legacy_path=legacy)
    assert legacy.exists()


async def test_task_revision_changes_with_every_save_and_ends_with_the_live_task(
    store: Store,
) -> None:
    task = Task(prompt="p", status="running")
    store.put_task(task)
    first = store.task_revision(task.id)
    assert first is not None and store.task_revision(task.id) is first
    store.put_task(task)  # saved again unchanged: still a new state to look at
    second = store.task_revision(task.id)
    assert second is not None and second is not first
    await store.durable()
    assert store.task_revision(task.id) is second  # a commit is no save
    task.status = "completed"
    store.put_task(task)
    assert store.task_revision(task.id) is None
    assert store.task_revision("nope0000") is None


BAD_VALUES = {"cost_usd": "lots", "started_at": "not-a-date", "tokens": {"input": "many"}}


async def test_bad_old_values_are_repaired_for_every_reader(store: Store) -> None:
    # get_task reads documents held in memory as they are: a live one loaded from disk is
    # repaired as it loads, an import while it waits in memory is repaired as it is read.
    good = Task(id="live0001", prompt="p", status=TaskStatus.RUNNING)
    store.put_task(good)
    imported = {**finished_task("imp00001", ago_s=5).to_dict(), **BAD_VALUES}
    store.import_finished([imported])
    task = store.get_task("imp00001")
    assert (task.cost_usd, task.started_at, task.tokens.input) == (None, None, 0)
    await store.durable()
    store = await reopen(store)
    try:
        conn = sqlite3.connect(store.path)
        seq = conn.execute("SELECT seq FROM tasks WHERE id = 'live0001'").fetchone()[0]
        doc = {**good.to_dict(), **BAD_VALUES, "gone_field": 1}  # a hand edit, an old field
        conn.execute("UPDATE task_docs SET doc = ? WHERE seq = ?", (json.dumps(doc), seq))
        conn.commit()
        conn.close()
        store = await reopen(store)
        for tid in ("live0001", "imp00001"):
            task = store.get_task(tid)
            assert (task.cost_usd, task.started_at, task.tokens.input) == (None, None, 0)
        assert store.get_task("live0001").status == TaskStatus.RUNNING
    finally:
        await store.close()
