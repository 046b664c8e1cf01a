"""Spend budgets, pure: a ledger of USD per day and project, and whether a window is full.

``budget_usd`` (hub-wide in dobby.yaml, per project in its policies) caps spend per ``day``,
``week`` (Monday to Sunday) and/or ``month`` (calendar), in the hub's time zone. Before a
launch the scheduler asks :meth:`Ledger.overrun`; an agent task over a cap waits (never fails,
never launches) until the window rolls or the cap is raised. Shell tasks spend nothing and
never wait on a budget.

The ledger counts each task's cost as it grows (a task cut by a usage limit adds each half as
it is collected), so it is kept small: days, not tasks, plus the amounts counted for tasks
still unfinished.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALL = "*"  # the bucket of every project (the hub-wide budget's spend)
KEEP_DAYS = 62  # enough for any month
WINDOWS = ("day", "week", "month")


def window_start(window: str, day: _dt.date) -> _dt.date:
    """Return the first day of the ``window`` containing ``day``."""
    if window == "day":
        return day
    if window == "week":
        return day - _dt.timedelta(days=day.weekday())
    if window == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget window {window!r}")


def window_end(window: str, day: _dt.date) -> _dt.date:
    """Return the first day after the ``window`` containing ``day`` (when it rolls)."""
    start = window_start(window, day)
    if window == "day":
        return start + _dt.timedelta(days=1)
    if window == "week":
        return start + _dt.timedelta(days=7)
    return (start + _dt.timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Overrun:
    """A full budget window: what was spent of what cap, and when it rolls."""

    scope: str  # "hub" or "project NAME"
    window: str
    spent: float
    cap: float
    rolls: _dt.date  # the window's next first day

    def text(self, tz: _dt.tzinfo) -> str:
        """Return ``project app spent $20.31 of its $20.00 day budget; …`` in one line."""
        midnight = _dt.datetime.combine(self.rolls, _dt.time(), tz)
        whose = "the hub" if self.scope == "hub" else self.scope
        return (
            f"{whose} spent ${self.spent:.2f} of its ${self.cap:.2f} {self.window} budget; "
            f"waits until {midnight.isoformat(timespec='minutes')} or a higher budget_usd"
        )


@dataclass
class Ledger:
    """USD spent per day (ISO date) and project (``*``: all), and what each live task added."""

    days: dict[str, dict[str, float]] = field(default_factory=dict)
    counted: dict[str, float] = field(default_factory=dict)  # unfinished task id -> USD so far

    def charge(
        self,
        task_id: str,
        total: float | None,
        *,
        project: str | None,
        day: _dt.date,
        finished: bool,
    ) -> float:
        """Count a task's cost so far; return the amount newly added to ``day``.

        Only growth is counted: the task's cost is its running total (halves add up); once it
        finishes it is forgotten, so a retry, which starts again from nothing, counts anew.
        """
        before = self.counted.get(task_id, 0.0)
        added = 0.0
        if total is not None and total > before:
            added = total - before
            bucket = self.days.setdefault(day.isoformat(), {})
            for key in {ALL, project or ALL}:
                bucket[key] = round(bucket.get(key, 0.0) + added, 6)
        if finished:
            self.counted.pop(task_id, None)
        elif total is not None and total > before:
            self.counted[task_id] = total
        return added

    def spent(self, window: str, day: _dt.date, project: str | None = None) -> float:
        """Return what ``project`` (None: the whole hub) spent in the window containing ``day``."""
        start, key = window_start(window, day), project or ALL
        total = 0.0
        current = start
        while current <= day:
            total += self.days.get(current.isoformat(), {}).get(key, 0.0)
            current += _dt.timedelta(days=1)
        return round(total, 6)

    def overrun(
        self, caps: Mapping[str, float] | None, day: _dt.date, project: str | None = None
    ) -> Overrun | None:
        """Return the first full window of ``caps`` (None: all have room)."""
        for window in WINDOWS:
            cap = (caps or {}).get(window)
            if cap is None:
                continue
            spent = self.spent(window, day, project)
            if spent >= cap:
                scope = f"project {project}" if project else "hub"
                return Overrun(scope, window, spent, cap, window_end(window, day))
        return None

    def prune(self, day: _dt.date) -> bool:
        """Forget days no window can reach any more; return whether there were any."""
        oldest = (day - _dt.timedelta(days=KEEP_DAYS)).isoformat()
        gone = [k for k in self.days if k < oldest]
        for key in gone:
            del self.days[key]
        return bool(gone)

    def to_dict(self) -> dict[str, Any]:
        """Return the ledger as stored."""
        return {"days": self.days, "counted": self.counted}

    @classmethod
    def from_dict(cls, data: Any) -> Ledger:
        """Return a ledger read back from the store (anything unreadable is dropped)."""
        if not isinstance(data, dict):
            return cls()
        days = data.get("days")
        counted = data.get("counted")
        days = days if isinstance(days, dict) else {}
        counted = counted if isinstance(counted, dict) else {}
        return cls(
            days={
                str(d): {str(k): float(v) for k, v in b.items() if isinstance(v, int | float)}
                for d, b in days.items()
                if isinstance(b, dict)
            },
            counted={str(k): float(v) for k, v in counted.items() if isinstance(v, int | float)},
        )
