"""Usage limits and spend budgets: what the scheduler holds back, why, and until when.

A run a usage limit stopped is not a failure. The runner records the half (its cost, tokens,
session) and hands the task here (:meth:`Usage.limit_hit`): its account is marked limited until
the reset (plus ``quota_grace``), and the task goes back to ``pending`` with ``waiting_on:
usage_limit`` — to resume its own session and worktree at that time when it had done some
work, else to start afresh wherever there is capacity. While an account is limited no task is
launched on it (:meth:`limited_hosts` feeds the planner); when its time comes the limit is
lifted and ``account.resumed`` published (:meth:`tick`).

Budgets: every collected cost is counted in a ledger per day and project; an agent task whose
project, or the hub, spent its ``budget_usd`` for the day, week or month waits on ``budget``.

Accounts and the ledger live in the store's meta (``accounts``, ``spend``), written with the
tasks they concern, so a hub killed at any moment restarts with both.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from dobby.core.config import Settings
from dobby.core.errors import NotFound
from dobby.core.events import Event, EventBus
from dobby.core.models import QuotaSignal, Task, TaskStatus, UsageWindow
from dobby.core.ports import Kick, SaveTask
from dobby.core.timefmt import format_duration, iso_from_epoch
from dobby.machines.hosts import HostManager
from dobby.results.halves import fallback_note, halves
from dobby.scheduler.accounts import (
    Account,
    account_hosts,
    account_key,
    blocked_until,
    decide_limit,
    format_epoch,
    limited_hosts,
)
from dobby.scheduler.budgets import KEEP_DAYS, Ledger, Overrun
from dobby.scheduler.capacity import eligible
from dobby.store import aggregates
from dobby.store.db import Store

log = logging.getLogger("dobby.usage")

PENDING = TaskStatus.PENDING
USAGE_LIMIT, BUDGET = "usage_limit", "budget"
_WINDOW_FIELDS = {f.name for f in dataclasses.fields(UsageWindow)}
_SIGNAL_FIELDS = {f.name for f in dataclasses.fields(QuotaSignal)}


def hub_zone(name: str | None) -> _dt.tzinfo:
    """Return the configured zone, or the hub machine's local one."""
    if name:
        return ZoneInfo(name)
    return _dt.datetime.now().astimezone().tzinfo or _dt.UTC


class Usage:
    """Accounts' usage limits and spend budgets, kept, enforced and shown."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        settings: Settings,
        hosts: HostManager,
        save: SaveTask,
        kick: Kick,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.hosts = hosts
        self._save = save
        self._kick = kick
        self._clock = clock
        self.tz = hub_zone(settings.timezone)
        self.accounts: dict[str, Account] = {}
        self.ledger = Ledger()
        self._running: dict[str, str] = {}  # running task id -> its account (live windows)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Read accounts and the ledger back from the store; follow live window reports."""
        for key, data in (self.store.get_meta("accounts", {}) or {}).items():
            if isinstance(data, dict):
                self.accounts[key] = Account.from_dict({**data, "key": key})
        spend = self.store.get_meta("spend")
        if spend is None:
            self._count_history()
        else:
            self.ledger = Ledger.from_dict(spend)
        for task in self.store.tasks(status=TaskStatus.RUNNING.value):
            if task.account:
                self._running[task.id] = task.account
        self.bus.subscribe(self._on_event)

    def stop(self) -> None:
        """Stop following window reports (state is already in the store)."""
        self.bus.unsubscribe(self._on_event)

    def _count_history(self) -> None:
        """Fill a new ledger with the finished tasks' costs (first start with budgets)."""
        start = self._clock() - (KEEP_DAYS + 1) * 86400  # older days fall out of every window
        for task_id, project, cost, finished in aggregates.finished_costs(
            self.store.sql(), start=start
        ):
            day = _dt.datetime.fromtimestamp(finished, self.tz).date()
            self.ledger.charge(task_id, cost, project=project, day=day, finished=True)
        self._persist()

    def _persist(self) -> None:
        self.store.set_meta("accounts", {k: a.to_dict() for k, a in self.accounts.items()})
        self.store.set_meta("spend", self.ledger.to_dict())

    def _today(self, now: float) -> _dt.date:
        return _dt.datetime.fromtimestamp(now, self.tz).date()

    # -- accounts ----------------------------------------------------------------------
    def account_of(self, host: str | None, backend: str) -> str | None:
        """Return the account a ``backend`` run on ``host`` uses (None: none applies)."""
        if not host or host not in self.hosts.hosts:
            return None
        return account_key(self.hosts.hosts[host], backend)

    def account(self, key: str) -> Account:
        """Return the account called ``key`` (known from now on)."""
        found = self.accounts.get(key)
        if found is None:
            found = self.accounts[key] = Account(key=key)
        return found

    def limited_hosts(self, now: float) -> dict[str, set[str]]:
        """Return backend → hosts where that backend's account is limited now (for the plan)."""
        return limited_hosts(self.accounts, self.hosts.hosts.values(), now=now)

    def limit_hit(self, task: Task) -> None:
        """Make a task a usage limit stopped wait (resume, start afresh, or fall back); save it.

        Called by the runner once the run's half is recorded on the task.
        """
        now = self._clock()
        signal = QuotaSignal(**{k: v for k, v in (task.quota or {}).items() if k in _SIGNAL_FIELDS})
        key = task.account or self.account_of(task.host, task.backend) or f"{task.backend}/?"
        acc = self.account(key)
        acc.observe(_windows(task.usage_windows), now=now)
        decision = decide_limit(
            signal,
            now=now,
            grace=self.settings.quota_grace,
            backoff=self.settings.quota_backoff,
            level=acc.backoff_level,
        )
        # Runs that hit the wall together must not stack backoffs, nor shorten a known reset.
        extends = not acc.limited(now) or (
            decision.until > (acc.limited_until or 0)
            and (decision.resets_at is not None or acc.limit is None)
        )
        if extends:
            acc.hit(decision, signal, now=now, task=task.id)
        until = acc.limited_until or decision.until
        note = (acc.limit or {}).get("note") or decision.note
        self.ledger.charge(
            task.id, task.cost_usd, project=task.project, day=self._today(now), finished=False
        )
        self._running.pop(task.id, None)
        self._decide_task(task, key, until, note, signal, now)
        task.status = PENDING
        task.host = None
        task.attempt += 1
        task.finished_at = task.exit_code = task.reason = task.error = None
        task.gpu_indices = []
        self._persist()
        self._save(task)
        if extends:
            self.bus.publish("account.limited", data=self.account_view(acc, now=now))
        self._kick()

    def _decide_task(
        self, task: Task, key: str, until: float, note: str, signal: QuotaSignal, now: float
    ) -> None:
        """Set how a stopped task goes on: its session at the reset, afresh, or elsewhere."""
        when = format_epoch(until)
        limit = f"{key} hit its {signal.window or 'usage'} limit ({note})"
        task.not_before = task.resume_session = task.resume_host = None
        if self.fall_back(task, until=until, now=now, why=limit):
            pass
        elif task.session_id and any(
            (record.get("quota") or {}).get("worked") for record in halves(task)
        ):  # this run or an earlier half did some work: that session goes on
            task.resume_session, task.resume_host = task.session_id, task.host
            task.not_before = iso_from_epoch(until)
            task.waiting_on = USAGE_LIMIT
            task.wait_reason = (
                f"{limit}; resumes session {task.session_id} on {task.host} at {when}"
            )
        else:
            task.waiting_on = USAGE_LIMIT
            task.wait_reason = (
                f"{limit} before doing anything; back in the queue (a fresh start), on another "
                f"account if one has room, else after {when}"
            )

    def fall_back(self, task: Task, *, until: float, now: float, why: str) -> bool:
        """Move a task whose wait lasts past ``max_quota_wait`` to its next backend, if any.

        Its fallback backends are its own, else its project's; one some unlimited host runs
        is taken. The run there is a new session (said in the task's warnings).
        """
        if until - now <= self.settings.max_quota_wait:
            return False
        backend = self._fallback(task, now)
        if backend is None:
            return False
        task.fallback_from, task.backend, task.model = task.backend, backend, None
        task.warnings = [*task.warnings, fallback_note(task)]
        task.resume_session = task.resume_host = task.not_before = None
        task.waiting_on = "capacity"
        task.wait_reason = f"{why}; the wait is over max_quota_wait: goes on with {backend}"
        return True

    def _fallback(self, task: Task, now: float) -> str | None:
        """Return the first fallback backend some unlimited host can run the task with."""
        names = list(task.fallback_backends)
        if not names and task.project:
            try:
                names = list(self.store.get_project(task.project).fallback_backends)
            except NotFound:
                names = []
        limited = self.limited_hosts(now)
        for backend in names:
            if backend == task.backend:
                continue
            trial = dataclasses.replace(task, backend=backend, resume_host=None, want_host=None)
            for host in self.hosts.hosts.values():
                if eligible(trial, host) and host.name not in limited.get(backend, set()):
                    return backend
        return None

    def tick(self, now: float) -> None:
        """Lift limits whose time has come; say so (``account.resumed``) with their tasks."""
        lifted = [a for a in self.accounts.values() if a.limited_until and a.limited_until <= now]
        if not lifted:
            return
        for acc in lifted:
            acc.clear(now=now)
        self._persist()
        for acc in lifted:
            waiting = [
                t.id
                for t in self.store.tasks(status=PENDING)
                if t.waiting_on == USAGE_LIMIT and t.account == acc.key
            ]
            data = {**self.account_view(acc, now=now), "tasks": waiting}
            self.bus.publish("account.resumed", data=data)
        self._kick()

    def explain(self, task: Task, now: float) -> tuple[str, str | None]:
        """Return (wait_reason, not_before) of a task every candidate account holds back."""
        hosts = [h for h in self.hosts.hosts.values() if eligible(task, h)]
        until, keys = blocked_until(hosts, task.backend, self.accounts, now=now)
        if until is None:
            return "waits for an account under its usage limit", None
        shown = "; ".join(
            f"{k} until {format_epoch(self.accounts[k].limited_until or 0)}"
            + (f": {note}" if (note := (self.accounts[k].limit or {}).get("note")) else "")
            for k in keys
        )
        return (
            f"every account that can run it is at its usage limit ({shown})",
            iso_from_epoch(until),
        )

    # -- budgets -----------------------------------------------------------------------
    def overruns(self, now: float) -> tuple[Overrun | None, dict[str, Overrun]]:
        """Return the hub's full budget window, if any, and each project's."""
        day = self._today(now)
        hub = self.ledger.overrun(self.settings.budget_usd, day)
        projects: dict[str, Overrun] = {}
        for project in self.store.projects():
            if project.budget_usd:
                found = self.ledger.overrun(project.budget_usd, day, project.name)
                if found is not None:
                    projects[project.name] = found
        return hub, projects

    # -- what the hub tells us ---------------------------------------------------------
    def observe(self, task: Task, event: str) -> None:
        """Follow a task save: count finished costs, note which runs use which account."""
        if task.status == TaskStatus.RUNNING.value and task.account:
            self._running[task.id] = task.account
        elif task.id in self._running:
            self._running.pop(task.id, None)
        if event != "task.finished":
            return
        now = self._clock()
        day = self._today(now)
        changed = task.id in self.ledger.counted  # its running total is forgotten now
        added = self.ledger.charge(
            task.id, task.cost_usd, project=task.project, day=day, finished=True
        )
        changed |= added > 0
        changed |= self.ledger.prune(day)
        if task.account:
            acc = self.account(task.account)
            acc.observe(_windows(task.usage_windows), now=now)
            if task.status == TaskStatus.COMPLETED.value:
                acc.backoff_level = 0  # the wall moved: the next limit starts over
            changed = True
        if changed:  # not for every shell task that ends: its accounts and spend as they were
            self._persist()

    def _on_event(self, event: Event) -> None:
        """Take the windows a running claude reports (rate_limit_event) as they come."""
        if event.type != "task.log" or event.task_id not in self._running:
            return
        windows = []
        for item in event.data.get("events") or []:
            data = item.get("data") if isinstance(item, dict) else None
            if isinstance(data, dict) and isinstance(data.get("window"), str) and "status" in data:
                windows.extend(_windows([data]))
        if windows and self.account(self._running[event.task_id]).observe(
            windows, now=self._clock()
        ):
            self._persist()

    # -- views -------------------------------------------------------------------------
    def account_view(self, acc: Account, *, now: float) -> dict[str, Any]:
        """Return an account as served: hosts, limit with ISO times, windows, waiting tasks."""
        limit = dict(acc.limit or {})
        for name in ("resets_at", "since"):
            if isinstance(limit.get(name), int | float):
                limit[name] = iso_from_epoch(limit[name])
        windows = []
        for window in sorted(acc.windows.values(), key=lambda w: str(w.get("window"))):
            shown = dict(window)
            for name in ("resets_at", "seen_at"):
                if isinstance(shown.get(name), int | float):
                    shown[name] = iso_from_epoch(shown[name])
            windows.append(shown)
        limited = acc.limited(now)
        return {
            "account": acc.key,
            "backend": acc.backend,
            "name": acc.name,
            "hosts": account_hosts(self.hosts.hosts.values(), acc.key),
            "limited": limited,
            "limited_until": iso_from_epoch(acc.limited_until)
            if limited and acc.limited_until
            else None,
            "resumes_in": format_duration(acc.limited_until - now)
            if limited and acc.limited_until
            else None,
            "limit": limit or None,
            "windows": windows,
            "backoff_level": acc.backoff_level,
        }

    def view(self, now: float | None = None) -> dict[str, Any]:
        """Return every account (inventory's and seen ones), budgets and waiting tasks."""
        now = self._clock() if now is None else now
        keys = set(self.accounts)
        for host in self.hosts.hosts.values():
            for backend in host.backends:
                key = account_key(host, backend)
                if key:
                    keys.add(key)
        waiting: dict[str, list[str]] = {}
        budget_waiting: list[str] = []
        for task in self.store.tasks(status=PENDING):
            if task.waiting_on == USAGE_LIMIT:
                waiting.setdefault(task.account or "", []).append(task.id)
            elif task.waiting_on == BUDGET:
                budget_waiting.append(task.id)
        accounts = []
        for key in sorted(keys):
            acc = self.accounts.get(key) or Account(key=key)
            accounts.append({**self.account_view(acc, now=now), "waiting": waiting.get(key, [])})
        return {
            "now": iso_from_epoch(now),
            "accounts": accounts,
            "budgets": self._budgets_view(now),
            "budget_waiting": budget_waiting,
            "settings": {
                "quota_grace": self.settings.quota_grace,
                "quota_backoff": self.settings.quota_backoff,
                "max_quota_wait": self.settings.max_quota_wait,
            },
        }

    def _budgets_view(self, now: float) -> list[dict[str, Any]]:
        day = self._today(now)
        rows = []
        scopes: list[tuple[str | None, Mapping[str, float]]] = [(None, self.settings.budget_usd)]
        scopes += [(p.name, p.budget_usd) for p in self.store.projects() if p.budget_usd]
        for project, caps in scopes:
            if not caps:
                continue
            windows = {
                window: {"cap": cap, "spent": self.ledger.spent(window, day, project)}
                for window, cap in caps.items()
            }
            over = self.ledger.overrun(caps, day, project)
            rows.append(
                {
                    "scope": "hub" if project is None else f"project {project}",
                    "project": project,
                    "windows": windows,
                    "over": over.text(self.tz) if over else None,
                }
            )
        return rows


def _windows(items: Any) -> list[UsageWindow]:
    """Return UsageWindow objects from stored dicts (bad ones skipped)."""
    out = []
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("window"), str):
            try:
                out.append(UsageWindow(**{k: v for k, v in item.items() if k in _WINDOW_FIELDS}))
            except TypeError:
                continue
    return out
