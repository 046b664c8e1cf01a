"""The usage service in process: a real store file, a real event bus, a clock the test moves.

What a limit does to the stopped task (resume, fresh start, fallback), to its account, to the
events, and that all of it is still there when the store is opened again (a hub restart).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dobby.core.config import Settings
from dobby.core.events import EventBus
from dobby.core.models import Host, Project, QuotaSignal, Task, TaskStatus
from dobby.core.timefmt import iso_from_epoch
from dobby.machines.hosts import HostManager
from dobby.results import halves
from dobby.scheduler.usage import Usage
from dobby.store.db import Store

NOW = 1_800_000_000.0


class World:
    """A usage service over a store file, with a clock and a record of saves and kicks."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.now = NOW
        self.saved: list[Task] = []
        self.kicks = 0
        self.settings = Settings(
            home=tmp_path, timezone="UTC", quota_grace=30, quota_backoff=600, **settings
        )
        self.hosts = HostManager(on_change=lambda name, state: None)
        self.hosts.set_hosts(
            {
                "h1": Host(name="h1", account="team"),
                "h2": Host(name="h2", account="team"),
                "h3": Host(name="h3"),
            }
        )
        self.open()

    def open(self) -> None:
        self.store = Store(path=self.tmp_path / "dobby.db")
        self.bus = EventBus()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.bus.subscribe(lambda e: self.events.append((e.type, e.data)))
        self.usage = Usage(
            store=self.store,
            bus=self.bus,
            settings=self.settings,
            hosts=self.hosts,
            save=self.save,
            kick=self.kick,
            clock=lambda: self.now,
        )
        self.usage.start()

    def close(self) -> None:
        """Stop following events and close the store (its file lock and connection)."""
        self.usage.stop()
        asyncio.run(self.store.close())

    def reopen(self) -> None:
        """Write what is pending and open the store again, as a restarted hub does."""
        asyncio.run(self.store.close())  # writes what is pending, releases the lock
        self.open()

    def save(self, task: Task, event: str = "task.updated") -> None:
        self.store.put_task(task)
        self.usage.observe(task, event)
        self.saved.append(task)

    def kick(self) -> None:
        self.kicks += 1

    def stopped(self, task: Task, **quota: Any) -> Task:
        """Put ``task`` in the state the runner leaves a run a limit stopped, and hand it over."""
        task.status = TaskStatus.RUNNING.value
        task.host = task.host or "h1"
        task.account = self.usage.account_of(task.host, task.backend)
        task.session_id = task.session_id or "sess-1"
        task.started_at = iso_from_epoch(self.now - 60)
        base = {"kind": "usage_limit", "window": "five_hour", "source": "event", "worked": True}
        task.quota = QuotaSignal(**{**base, **quota}).to_dict()
        task.cost_usd = task.cost_usd if task.cost_usd is not None else 0.25
        own = halves.settle(task, prices={})
        halves.record_half(task, own, finished_at=iso_from_epoch(self.now))
        self.usage.limit_hit(task)
        return self.store.get_task(task.id)


def claude(prompt: str, **fields: Any) -> Task:
    return Task(prompt=prompt, **{"backend": "claude", **fields})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.close()


def test_a_cut_task_waits_for_its_session_and_the_whole_account_waits(world: World) -> None:
    task = world.stopped(claude("go"), resets_at=NOW + 600)
    assert (task.status, task.waiting_on, task.host) == ("pending", "usage_limit", None)
    assert (task.resume_session, task.resume_host) == ("sess-1", "h1")
    assert task.not_before == iso_from_epoch(NOW + 630)  # the reset + quota_grace
    assert task.attempt == 1 and task.attempts[0]["cost_usd"] == 0.25
    assert "claude/team hit its five_hour limit" in (task.wait_reason or "")
    assert world.usage.limited_hosts(NOW) == {"claude": {"h1", "h2"}}  # the shared account
    [(kind, data)] = world.events
    assert kind == "account.limited" and data["account"] == "claude/team"
    assert data["hosts"] == ["h1", "h2"] and data["limited_until"] == iso_from_epoch(NOW + 630)
    # A restarted hub has the same limit, and the task its wait.
    world.reopen()
    assert world.usage.limited_hosts(NOW) == {"claude": {"h1", "h2"}}
    assert world.store.get_task(task.id).not_before == task.not_before
    view = world.usage.view(NOW)
    team = next(a for a in view["accounts"] if a["account"] == "claude/team")
    assert team["limited"] and team["waiting"] == [task.id]
    assert team["windows"][0]["status"] == "rejected"
    # At the reset the limit goes, and the account says which tasks go on.
    world.usage.tick(NOW + 629)
    assert world.events == []
    world.usage.tick(NOW + 630)
    [(kind, data)] = world.events
    assert (kind, data["account"], data["tasks"]) == ("account.resumed", "claude/team", [task.id])
    assert world.usage.limited_hosts(NOW + 630) == {}


def test_a_task_that_did_nothing_starts_afresh_and_later_halves_keep_their_session(
    world: World,
) -> None:
    fresh = world.stopped(claude("a"), resets_at=NOW + 600, worked=False)
    assert fresh.resume_session is None and fresh.not_before is None
    assert "before doing anything; back in the queue (a fresh start)" in (fresh.wait_reason or "")
    # A task that did work in an earlier half keeps its session even if a later half did not.
    cut = world.stopped(claude("b", host="h3"), resets_at=NOW + 60)
    world.now += 120
    again = world.stopped(cut, resets_at=NOW + 900, worked=False)
    assert again.resume_session == "sess-1" and again.attempt == 2
    assert [a["quota"]["worked"] for a in again.attempts] == [True, False]


def test_runs_hitting_the_wall_together_do_not_stack_backoffs(world: World) -> None:
    first = world.stopped(claude("a"), resets_at=None, kind="rate_limited_no_reset")
    second = world.stopped(claude("b", host="h2"), resets_at=None, kind="rate_limited_no_reset")
    account = world.usage.accounts["claude/team"]
    assert account.backoff_level == 1 and account.limited_until == NOW + 600
    assert [e for e, _ in world.events] == ["account.limited"]  # one notice, not two
    assert "backoff 1" in (first.wait_reason or "") and "backoff 1" in (second.wait_reason or "")
    # The next limit after the wait doubles it; a completed run on the account starts over.
    world.now += 601
    world.usage.tick(world.now)
    world.stopped(claude("c"), resets_at=None, kind="rate_limited_no_reset")
    assert account.backoff_level == 2 and account.limited_until == world.now + 1200
    done = claude("d", status="completed", account="claude/team", cost_usd=0.1)
    world.save(done, "task.finished")
    assert account.backoff_level == 0


def test_a_wait_longer_than_max_quota_wait_goes_on_another_backend(tmp_path: Path) -> None:
    world = World(tmp_path, max_quota_wait=3600)
    near = world.stopped(claude("a", fallback_backends=["codex"]), resets_at=NOW + 600)
    assert near.backend == "claude" and near.resume_session == "sess-1"  # worth the wait
    world.store.put_project(Project(name="app", path=str(tmp_path), fallback_backends=["codex"]))
    far = world.stopped(claude("b", project="app", model="opus"), resets_at=NOW + 7200)
    assert (far.backend, far.fallback_from, far.model) == ("codex", "claude", None)
    assert far.resume_session is None and far.waiting_on == "capacity"
    assert far.warnings[-1] == (
        "a usage limit stopped its claude run; it went on with codex instead (a new session)"
    )
    world.close()


def test_costs_are_counted_once_per_window_and_full_budgets_say_until_when(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, budget_usd={"day": 1.0})
    world.store.put_project(Project(name="app", path=str(tmp_path), budget_usd={"day": 0.3}))
    cut = world.stopped(claude("a", project="app"), resets_at=NOW + 60)  # $0.25 so far
    hub, projects = world.usage.overruns(NOW)
    assert hub is None and projects == {}
    cut.cost_usd, cut.status = 0.4, "completed"  # the whole task: both halves
    world.save(cut, "task.finished")  # counts what its first half did not: $0.15
    day = _dt.datetime.fromtimestamp(NOW, _dt.UTC).date()
    assert world.usage.ledger.spent("day", day, "app") == 0.4
    hub, projects = world.usage.overruns(NOW)
    assert hub is None and projects["app"].text(_dt.UTC).startswith(
        "project app spent $0.40 of its $0.30 day budget; waits until"
    )
    world.reopen()  # the ledger survives a restart
    assert world.usage.ledger.spent("day", day, "app") == 0.4
    hub, projects = world.usage.overruns(NOW + 86400)  # the window rolled
    assert hub is None and projects == {}
    world.close()


def test_a_first_start_counts_the_spend_of_the_finished_tasks_in_the_store(
    tmp_path: Path,
) -> None:
    store = Store(path=tmp_path / "dobby.db")  # a hub's history from before budgets
    for tid, project, cost, ago in (
        ("a1", "app", 0.5, 3600),
        ("a2", "app", 0.25, 7200),
        ("b1", None, 1.0, 1800),
        ("old", "app", 9.0, 100 * 86400),  # outside every window: not read
        ("free", "app", None, 60),
    ):
        task = claude(tid, id=tid, project=project, status="completed", cost_usd=cost)
        task.finished_at = iso_from_epoch(NOW - ago)
        store.put_task(task)
    asyncio.run(store.close())
    world = World(tmp_path)
    day = _dt.datetime.fromtimestamp(NOW, _dt.UTC).date()
    assert world.usage.ledger.spent("day", day, "app") == 0.75
    assert world.usage.ledger.spent("day", day) == 1.75
    assert world.usage.ledger.spent("month", day) == 1.75
    assert world.store.get_meta("spend") == world.usage.ledger.to_dict()  # counted once
    world.close()


def test_a_finished_task_is_written_to_the_spend_only_when_it_changes_it(tmp_path: Path) -> None:
    world = World(tmp_path)
    day = _dt.datetime.fromtimestamp(NOW, _dt.UTC).date()
    # On h3 (no account): only its cost changes what is kept, and that is kept.
    paid = claude("a", host="h3", status="completed", cost_usd=0.2)
    world.save(paid, "task.finished")
    world.reopen()
    assert world.usage.ledger.spent("day", day) == 0.2
    assert world.store.get_meta("spend") == world.usage.ledger.to_dict()
    world.store.set_meta("spend", "untouched")  # what a needless write would replace
    free = Task(prompt="true", backend="shell", host="h3", status="completed")
    world.save(free, "task.finished")
    assert world.store.get_meta("spend") == "untouched"
    world.close()
