"""Tests for dobby.store against a real TinyDB file in a temp directory."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import os
from pathlib import Path

import pytest

from dobby.core.errors import ConfigError, NotFound, ValidationError
from dobby.core.models import Project, Task, TaskStatus
from dobby.store import db as store_mod
from dobby.store.db import AtomicJSONStorage, Store


def iso(ago_s: float) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ago_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def finished_task(task_id: str, *, ago_s: float, status: str = "completed", **kw: object) -> Task:
    return Task(prompt=f"do {task_id}", id=task_id, status=status, finished_at=iso(ago_s), **kw)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "dobby.json"


@pytest.fixture
async def store(db_path: Path):
    s = Store(path=db_path)
    yield s
    await s.close()


async def reopen(s: Store) -> Store:
    await s.close()
    return Store(path=s.path, archive_dir=s.archive_dir)


async def test_round_trip_through_close_and_reopen(store: Store) -> None:
    t = Task(prompt="fix the bug\nin utils", backend="claude", project="web", after=["x1"])
    t.tokens.input = 12
    store.put_task(t)
    project = Project(name="web", path="/src/web", context="a site")
    store.put_project(project)
    store.put_host_state("gpu1", {"up": True, "gpus": [{"index": 0, "util": 55}]})
    store.set_meta("last_seq", 42)

    s2 = await reopen(store)
    try:
        assert s2.get_task(t.id) == t
        assert s2.get_task(t.id).tokens.input == 12
        assert s2.get_project("web") == project
        assert [p.name for p in s2.projects()] == ["web"]
        assert s2.host_states() == {"gpu1": {"up": True, "gpus": [{"index": 0, "util": 55}]}}
        assert s2.get_meta("last_seq") == 42
        assert s2.get_meta("missing", "dflt") == "dflt"
    finally:
        await s2.close()


async def test_file_is_tinydb_layout(store: Store) -> None:
    store.put_task(Task(prompt="p", id="abcd0001"))
    store.flush()
    data = json.loads(store.path.read_text())
    assert set(data) >= {"tasks", "projects", "hosts", "meta"}
    assert data["tasks"]["abcd0001"]["prompt"] == "p"


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


async def test_burst_is_group_committed(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replaces: list[str] = []
    real_replace = os.replace

    def counting_replace(src: str, dst: str) -> None:
        replaces.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", counting_replace)
    s = Store(path=db_path, flush_interval=0.05)
    s.start()
    for i in range(100):
        s.put_task(Task(prompt=f"task {i}"))
        await asyncio.sleep(0.001)  # the loop runs between puts, as in the hub
    await s.close()
    assert s.writes == len(replaces)
    assert 1 <= len(replaces) <= 10, replaces
    s2 = Store(path=db_path)
    assert len(s2.tasks()) == 100
    await s2.close()


async def test_flusher_writes_without_explicit_flush(db_path: Path) -> None:
    s = Store(path=db_path, flush_interval=0.01)
    s.start()
    s.put_task(Task(prompt="p", id="feed0001"))
    for _ in range(200):
        if not s.dirty:
            break
        await asyncio.sleep(0.01)
    assert "feed0001" in json.loads(db_path.read_text())["tasks"]
    await s.close()


async def test_flush_without_changes_writes_nothing(store: Store) -> None:
    store.put_task(Task(prompt="p"))
    store.flush()
    store.flush()
    assert store.writes == 1


async def test_failure_mid_write_leaves_old_file_intact(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_task(Task(prompt="old", id="0ld00001"))
    store.flush()
    before = store.path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        """A temp file that fills the disk halfway through the write."""

        def __init__(self, f):  # type: ignore[no-untyped-def]
            self.f = f

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    store.put_task(Task(prompt="new", id="new00001"))
    with pytest.raises(OSError):
        store.flush()
    assert store.path.read_bytes() == before
    assert not list(store.path.parent.glob("*.tmp"))
    assert store.dirty  # still pending: the next flush retries

    monkeypatch.undo()
    store.flush()
    s2 = await reopen(store)
    try:
        assert {t.id for t in s2.tasks()} == {"0ld00001", "new00001"}
    finally:
        await s2.close()


async def test_crash_before_replace_keeps_old_file_loadable(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(path=db_path)
    s.put_task(Task(prompt="old", id="0ld00001"))
    s.flush()

    def crash(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_mod.os, "fsync", crash)
    s.put_task(Task(prompt="new", id="new00001"))
    with pytest.raises(OSError):
        s.flush()
    # The process "dies" here: drop the lock as the kernel would, without a final flush.
    store_mod._unlock(s._lock_fd)
    s._closed = True
    monkeypatch.undo()
    s2 = Store(path=db_path)
    assert [t.id for t in s2.tasks()] == ["0ld00001"]
    await s2.close()


def test_stale_temp_files_are_removed_at_open(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    stale = db_path.parent / (db_path.name + ".abc123.tmp")
    stale.write_text('{"tasks": {')
    s = Store(path=db_path)
    assert not stale.exists()
    asyncio.run(s.close())


@pytest.mark.parametrize(
    "content",
    ['{"tasks": {"a": {"prompt": "x"}', "[1, 2]", '{"tasks": [1]}', b"\xff\xfe{}"],
)
def test_corrupt_file_raises_config_error_and_is_untouched(db_path: Path, content) -> None:  # type: ignore[no-untyped-def]
    db_path.parent.mkdir(parents=True)
    raw = content if isinstance(content, bytes) else content.encode()
    db_path.write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        Store(path=db_path)
    assert str(db_path) in str(err.value)
    assert db_path.read_bytes() == raw
    # The failed open released its lock: once fixed, the hub can start.
    db_path.write_text("{}")
    asyncio.run(Store(path=db_path).close())


def test_corrupt_json_names_the_position(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_text('{"tasks": {}\n, oops}')
    with pytest.raises(ConfigError, match=r"db\.json:2:3: corrupt database"):
        AtomicJSONStorage(path).read()


def test_malformed_task_document_is_reported_at_open(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_text(json.dumps({"tasks": {"t1": {"id": "t1", "nonsense": 1}}}))
    with pytest.raises(ConfigError, match="task 't1' is malformed"):
        Store(path=db_path)


async def test_empty_file_is_an_empty_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_text("")
    s = Store(path=db_path)
    assert s.tasks() == []
    await s.close()


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


async def test_tasks_filters_and_orders_newest_first(store: Store) -> None:
    store.put_task(Task(prompt="a", id="t1", project="p", created_at="2024-01-01T00:00:00.000000Z"))
    store.put_task(
        Task(
            prompt="b",
            id="t2",
            project="q",
            status="running",
            created_at="2024-01-03T00:00:00.000000Z",
        )
    )
    store.put_task(
        Task(
            prompt="c",
            id="t3",
            project="p",
            status="failed",
            created_at="2024-01-02T00:00:00.000000Z",
        )
    )
    assert [t.id for t in store.tasks()] == ["t2", "t3", "t1"]
    assert [t.id for t in store.tasks(project="p")] == ["t3", "t1"]
    assert [t.id for t in store.tasks(status="running")] == ["t2"]
    assert [t.id for t in store.tasks(status=[TaskStatus.FAILED, "pending"])] == ["t3", "t1"]
    with pytest.raises(ValidationError, match="unknown status 'runing'"):
        store.tasks(status="runing")


async def test_delete_task(store: Store) -> None:
    store.put_task(Task(prompt="p", id="dead0001"))
    store.delete_task("dead")
    with pytest.raises(NotFound):
        store.get_task("dead0001")
    with pytest.raises(NotFound):
        store.delete_task("dead0001")


async def test_projects_not_found_lists_known(store: Store) -> None:
    with pytest.raises(NotFound, match=r"unknown project 'x' \(known: none yet\)"):
        store.get_project("x")
    store.put_project(Project(name="b", path="/b"))
    store.put_project(Project(name="a", path="/a"))
    with pytest.raises(NotFound, match=r"unknown project 'x' \(known: a, b\)"):
        store.get_project("x")
    assert [p.name for p in store.projects()] == ["a", "b"]


async def test_archive_finished(store: Store) -> None:
    old_day = 3 * 86400
    store.put_task(finished_task("old00001", ago_s=old_day, project="p"))
    store.put_task(finished_task("old00002", ago_s=old_day, status="failed", reason="timeout"))
    store.put_task(finished_task("new00001", ago_s=10))
    store.put_task(Task(prompt="live", id="run00001", status="running", project="p"))
    for i in range(50):  # bulk, so the size drop is clear
        store.put_task(finished_task(f"bulk{i:04d}", ago_s=old_day))
    store.flush()
    size_before = store.path.stat().st_size

    assert store.archive_finished(86400) == 52
    assert store.path.stat().st_size < size_before / 4
    assert store.archive_finished(86400) == 0
    files = list(store.archive_dir.glob("tasks-*.jsonl"))
    assert files and all(f.name.startswith("tasks-20") for f in files)

    hot = json.loads(store.path.read_text())["tasks"]
    assert set(hot) == {"new00001", "run00001"}
    assert store.get_task("old00002").reason == "timeout"
    assert len(store.tasks()) == 54
    assert [t.id for t in store.tasks(project="p")] == ["run00001", "old00001"]
    assert [t.id for t in store.tasks(status="running")] == ["run00001"]
    assert {t.id for t in store.tasks(status="failed")} == {"old00002"}

    # A fresh Store finds archived tasks lazily, by id and by prefix.
    s2 = await reopen(store)
    try:
        assert not s2.archive.loaded
        assert s2.get_task("old00001").project == "p"
        assert s2.get_task("old0000" + "2").status == "failed"
        assert s2.get_task("bulk0049").id == "bulk0049"
        with pytest.raises(ValidationError, match="ambiguous"):
            s2.get_task("old0")
        assert len(s2.tasks()) == 54
        s2.delete_task("old00001")
        with pytest.raises(NotFound):
            s2.get_task("old00001")
        assert s2.get_task("old00002").id == "old00002"  # offsets re-indexed after rewrite
        assert s2.get_task("bulk0049").id == "bulk0049"
    finally:
        await s2.close()
    s3 = Store(path=store.path, archive_dir=store.archive_dir)
    with pytest.raises(NotFound):
        s3.get_task("old00001")
    assert len(s3.tasks()) == 53
    await s3.close()


async def test_reput_of_archived_task_wins(store: Store) -> None:
    store.put_task(finished_task("back0001", ago_s=7200))
    assert store.archive_finished(3600) == 1
    t = store.get_task("back0001")
    t.status, t.finished_at = "pending", None
    store.put_task(t)
    assert store.get_task("back0001").status == "pending"
    assert [x.status for x in store.tasks()] == ["pending"]


def test_archive_skips_torn_last_line(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    good = Task(prompt="p", id="good0001", status="completed", finished_at=iso(10))
    (archive / "tasks-2024-01.jsonl").write_text(json.dumps(good.to_dict()) + '\n{"id": "tor')

    async def main() -> None:
        s = Store(path=tmp_path / "db.json", archive_dir=archive)
        assert s.get_task("good0001").id == "good0001"
        s.put_task(finished_task("next0001", ago_s=7200))
        s.archive_finished(3600)
        await s.close()
        s2 = Store(path=tmp_path / "db.json", archive_dir=archive)
        assert {t.id for t in s2.tasks()} == {"good0001", "next0001"}
        await s2.close()

    asyncio.run(main())


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
    assert "last0001" in json.loads(db_path.read_text())["tasks"]
    with pytest.raises(RuntimeError):
        s.put_task(Task(prompt="late"))
