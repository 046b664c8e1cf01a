"""The follower's own bookkeeping, against a real store (no host is reached)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from dobby.core.errors import TransportError
from dobby.core.models import Task
from dobby.runner.follower import FAULT_PATIENCE, FAULT_TRIES, Ended, Followers, Uncollected
from dobby.store.db import Store
from dobby.store.tasklog import TaskLogs


def followers_on(store: Store, root: Path, **parts: Any) -> Followers:
    """Return followers over ``store`` that reach no host; ``parts`` replace the defaults."""
    defaults: dict[str, Any] = {
        "logs": TaskLogs(root=root / "results"),
        "get_task": store.get_task,
        "save": lambda task, event="task.updated": store.put_task(task),
        "publish_log": lambda task, data: None,
        "locate": None,  # never reached unless a test gives one: no task is followed here
        "record": lambda host, **kw: None,
        "collector": None,
        "kill": None,
    }
    return Followers(**{**defaults, **parts})


async def test_a_follower_builds_its_task_again_only_after_a_save(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "dobby.db")
    built: list[str] = []

    def get_task(task_id: str) -> Task:
        built.append(task_id)
        return store.get_task(task_id)

    followers = followers_on(store, tmp_path, get_task=get_task, revision=store.task_revision)
    try:
        task = Task(prompt="p", status="running", host="h1")
        store.put_task(task)
        seen = followers._current(task.id, fresh=False)
        assert followers._current(task.id, fresh=False) is seen and len(built) == 1
        assert followers._current(task.id) is not seen and len(built) == 2  # fresh: built
        task.launch_id = "relaunched"
        store.put_task(task)
        assert followers._current(task.id, fresh=False).launch_id == "relaunched"
        task.status = "cancelled"  # not stopped by this hub: the follower ends
        store.put_task(task)
        with pytest.raises(Ended):
            followers._current(task.id, fresh=False)
    finally:
        await followers.close()
        await store.close()


async def test_only_faults_of_the_hubs_own_side_count_towards_giving_up(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "dobby.db")
    followers = followers_on(store, tmp_path)  # only faults are counted: nothing else runs

    def uncollected(cause: Exception) -> Uncollected:
        try:
            raise Uncollected(3) from cause
        except Uncollected as exc:
            return exc

    passing = [
        TransportError("h1: connection lost", host="h1"),  # the host keeps the run's files
        OSError(errno.ENOSPC, "No space left on device"),  # the hub's disk frees up
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError(errno.EMFILE, "Too many open files"),  # so do its descriptors
        uncollected(TransportError("h1: connection lost", host="h1")),
        uncollected(OSError(errno.ENOSPC, "No space left on device")),
    ]
    try:
        for second in range(3 * FAULT_TRIES):
            for exc in passing:
                assert not followers._gives_up("t1", exc, now=float(second) * FAULT_PATIENCE)
        lasting = [uncollected(IsADirectoryError(errno.EISDIR, "err.log")), ValueError("bug")]
        # Many tries in a moment are not enough (a glitch of a second passes)...
        quick = [followers._gives_up("t1", lasting[i % 2], now=100.0) for i in range(10)]
        assert not any(quick)
        # ...nor are FAULT_PATIENCE seconds with fewer than FAULT_TRIES tries: both are.
        assert not followers._gives_up("t2", ValueError("bug"), now=0.0)
        assert not followers._gives_up("t2", ValueError("bug"), now=FAULT_PATIENCE + 1)
        slow = [
            followers._gives_up("t2", ValueError("bug"), now=FAULT_PATIENCE + 2)
            for _ in range(FAULT_TRIES - 2)
        ]
        assert slow == [False] * (FAULT_TRIES - 3) + [True]
        assert followers._gives_up("t1", lasting[0], now=100.0 + FAULT_PATIENCE)
    finally:
        await followers.close()
        await store.close()


async def test_a_line_copied_again_starts_the_count_of_faults_afresh(tmp_path: Path) -> None:
    """Faults far apart, each passing, never add up to giving up on a task."""
    store = Store(path=tmp_path / "dobby.db")
    followers = followers_on(store, tmp_path)
    task = Task(prompt="p", status="running", host="h1")
    fault = ValueError("a copy this hub could not write, once")
    try:
        with followers.logs.writer(task.id) as sink:
            for second in range(3 * FAULT_TRIES):
                now = second * FAULT_PATIENCE
                assert not followers._gives_up(task.id, fault, now=now)
                assert await followers._append(task, sink, b"a line\n", final=False) == b""
        # Without a line between them, the same faults end it.
        given_up = [
            followers._gives_up(task.id, fault, now=s * FAULT_PATIENCE) for s in range(FAULT_TRIES)
        ]
        assert given_up == [False] * (FAULT_TRIES - 1) + [True]
    finally:
        await followers.close()
        await store.close()


async def test_a_run_given_up_on_that_cannot_be_stopped_says_so(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "dobby.db")

    async def unreachable(task: Task) -> tuple[object, object]:
        raise TransportError("connection refused", host="h1")

    followers = followers_on(store, tmp_path, locate=unreachable)  # kill: never reached
    try:
        task = Task(prompt="p", status="running", host="h1")
        store.put_task(task)
        fault = ValueError("a copy this hub cannot write")
        for second in range(FAULT_TRIES):
            followers._gives_up(task.id, fault, now=second * FAULT_PATIENCE)
        await followers._give_up(task.id, fault)
        ended = store.get_task(task.id)
        assert (ended.status, ended.reason) == ("failed", "collect_error")
        assert ended.error is not None and ended.error.startswith(
            "it could not be stopped (h1: connection refused) and may still run: "
            f"the hub could not follow its output ({FAULT_TRIES} tries"
        ), ended.error
        assert ended.error.endswith("ValueError: a copy this hub cannot write")
    finally:
        await followers.close()
        await store.close()
