"""Usage-limit accounts, pure: whose quota a run uses, and when a limited one may run again.

A usage limit belongs to an *account*, not to a task: hosts that log in to one subscription
share its 5-hour and weekly windows. The inventory names it (``account:`` per host, or
``accounts: {claude: …}`` per backend); by default each host and backend is its own account.
An account's key is ``backend/name`` (``claude/team-max``): a claude and a codex login never
share a quota, whatever they are called.

When a limit stops a run, :func:`decide_limit` turns what the agent said into the moment work
may go on: the reset the CLI reported (plus a grace) when there is a believable one, else a
backoff that doubles with each repeat, up to the limit's window. No clock here: callers pass
``now`` (epoch seconds).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dobby.core.models import Host, QuotaSignal, UsageWindow
from dobby.core.timefmt import format_duration

MAX_RESET_AHEAD = 7 * 24 * 3600.0  # the longest window the CLIs have: a later reset is wrong
TEXT_ROUNDING = 60.0  # reset times read from text are whole minutes, rounded down
WINDOW_SECONDS = {
    "five_hour": 5 * 3600.0,
    "seven_day": 7 * 24 * 3600.0,
    "seven_day_opus": 7 * 24 * 3600.0,
    "seven_day_sonnet": 7 * 24 * 3600.0,
}
DEFAULT_WINDOW = WINDOW_SECONDS["five_hour"]
NO_ACCOUNT_BACKENDS = ("shell",)  # a shell command uses no model quota


def account_key(host: Host, backend: str) -> str | None:
    """Return the account a ``backend`` run on ``host`` uses (None: no quota applies)."""
    if backend in NO_ACCOUNT_BACKENDS:
        return None
    name = host.accounts.get(backend) or host.account or host.name
    return f"{backend}/{name}"


def account_hosts(hosts: Iterable[Host], key: str) -> list[str]:
    """Return the names of the hosts whose runs of the key's backend use account ``key``."""
    backend = key.partition("/")[0]
    return sorted(h.name for h in hosts if account_key(h, backend) == key)


def format_epoch(epoch: float) -> str:
    """Return an epoch as ``2026-11-30 08:52:00 UTC`` (the one way reasons show times)."""
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class LimitDecision:
    """When work on a limited account may go on, and why then."""

    until: float  # epoch: no launch on the account before this
    resets_at: float | None  # the reset the agent reported, when it was believed
    source: str  # event | rollout | text (where the reset came from) | backoff
    note: str  # one line: the reset, or why a backoff was used instead
    backoff_level: int  # the account's backoff level after this limit (0: a reset was known)


def decide_limit(
    signal: QuotaSignal, *, now: float, grace: float, backoff: float, level: int
) -> LimitDecision:
    """Return when work may go on after ``signal``: its reset + ``grace``, else a backoff.

    The reset is not believed when it is missing (an API key's 429, text that does not parse),
    already past, or more than 7 days away (no window is longer); then the wait is ``backoff``
    doubled ``level`` times, capped at the window (5 h when the window is unknown), so a wall
    that does not move costs a few launches a day, never a hot loop.
    """
    resets = signal.resets_at
    if resets is not None and signal.source == "text":
        resets += TEXT_ROUNDING
    if resets is not None and now < resets <= now + MAX_RESET_AHEAD:
        when = format_epoch(resets)
        return LimitDecision(
            until=resets + grace,
            resets_at=resets,
            source=signal.source,
            note=f"resets {when} (from {signal.source})",
            backoff_level=0,
        )
    if resets is None:
        why = (
            "rate limited with no reset time"
            if signal.kind == "rate_limited_no_reset"
            else "no reset time could be read"
        )
    elif resets <= now:
        why = f"the reported reset {format_epoch(resets)} is in the past"
    else:
        why = f"the reported reset {format_epoch(resets)} is more than 7 days away"
    cap = max(WINDOW_SECONDS.get(signal.window or "", DEFAULT_WINDOW), backoff)
    wait = min(backoff * 2 ** min(level, 30), cap)
    return LimitDecision(
        until=now + wait,
        resets_at=None,
        source="backoff",
        note=f"{why}; trying again in {format_duration(wait)} (backoff {level + 1})",
        backoff_level=level + 1,
    )


@dataclass
class Account:
    """What the hub knows of one account: its windows, and a limit in force."""

    key: str
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)  # window -> observation
    limited_until: float | None = None  # epoch; None when no limit is in force
    limit: dict[str, Any] | None = None  # {window, kind, resets_at, source, note, message, …}
    backoff_level: int = 0
    updated_at: float | None = None

    @property
    def backend(self) -> str:
        return self.key.partition("/")[0]

    @property
    def name(self) -> str:
        return self.key.partition("/")[2]

    def limited(self, now: float) -> bool:
        """Return True while a limit is in force."""
        return self.limited_until is not None and self.limited_until > now

    def observe(self, windows: Iterable[UsageWindow], *, now: float) -> bool:
        """Record window observations (the latest per window wins); return whether any changed."""
        changed = False
        for window in windows:
            seen = {**window.to_dict(), "seen_at": now}
            old = self.windows.get(window.window)
            if old is None or {k: v for k, v in old.items() if k != "seen_at"} != window.to_dict():
                changed = True
            self.windows[window.window] = seen
        if changed:
            self.updated_at = now
        return changed

    def hit(self, decision: LimitDecision, signal: QuotaSignal, *, now: float, task: str) -> None:
        """Put the account under the limit ``decision`` describes."""
        self.limited_until = decision.until
        self.backoff_level = decision.backoff_level
        self.limit = {
            "window": signal.window,
            "kind": signal.kind,
            "resets_at": decision.resets_at,
            "source": decision.source,
            "note": decision.note,
            "message": signal.message,
            "since": now,
            "task_id": task,
        }
        if signal.window:
            old = self.windows.get(signal.window, {})
            self.windows[signal.window] = {
                **old,
                "window": signal.window,
                "status": "rejected",
                "utilization": 1.0,
                "resets_at": decision.resets_at,
                "source": decision.source,
                "seen_at": now,
            }
        self.updated_at = now

    def clear(self, *, now: float) -> None:
        """Lift the limit (its time has come)."""
        self.limited_until = None
        self.limit = None
        for window in self.windows.values():
            if window.get("status") == "rejected":
                window["status"] = "allowed"
                window["utilization"] = None
        self.updated_at = now

    def to_dict(self) -> dict[str, Any]:
        """Return the account as stored (and, with ``backend``/``name``, as served)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Account:
        """Return an account read back from the store (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def limited_hosts(
    accounts: Mapping[str, Account], hosts: Iterable[Host], *, now: float
) -> dict[str, set[str]]:
    """Return backend → the hosts where that backend's account is limited now."""
    limited = {key for key, acc in accounts.items() if acc.limited(now)}
    out: dict[str, set[str]] = {}
    if not limited:
        return out
    for host in hosts:
        for backend in host.backends:
            key = account_key(host, backend)
            if key in limited:
                out.setdefault(backend, set()).add(host.name)
    return out


def blocked_until(
    task_hosts: Iterable[Host], backend: str, accounts: Mapping[str, Account], *, now: float
) -> tuple[float | None, list[str]]:
    """Return the earliest moment one of these hosts' accounts frees up, and the limited ones.

    For a task every candidate host of which is limited: it may go on at the earliest reset.
    """
    keys = {account_key(h, backend) for h in task_hosts}
    limited = sorted(k for k in keys if k and k in accounts and accounts[k].limited(now))
    times = [accounts[k].limited_until for k in limited]
    return (min(t for t in times if t is not None) if times else None), limited
