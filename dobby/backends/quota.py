"""Usage-limit detection: when a quota stopped a run, which window, and when it resets.

Pure functions over what the CLIs print (see agents/QUOTA-FORMATS.md). The reset time comes
from the machine-readable field when there is one (claude's ``rate_limit_event.resetsAt``, the
codex rollout's ``rate_limits.*.resets_at``), else from the CLI's text, read in the zone the
text names (claude) or in the host's zone, which the caller passes (codex prints none).
No clock here: the caller passes ``now`` (epoch seconds).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dobby.core.models import QuotaSignal, UsageWindow

from .base import get_dict, get_float, get_list, get_str

USAGE_LIMIT = "usage_limit"
RATE_LIMITED = "rate_limited_no_reset"
# codex's window_minutes → the names claude uses for the same windows
_WINDOW_NAMES = {300: "five_hour", 10080: "seven_day"}
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}

# "You've hit your session limit · resets 8:52am (UTC)" / "… resets Dec 3, 7:52am (UTC)"
_CLAUDE_RESET = re.compile(
    r"resets\s+(?:(?P<mon>[A-Za-z]{3})[a-z]*\s+(?P<day>\d{1,2}),?\s+)?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)\s*\((?P<zone>[^)]+)\)",
    re.IGNORECASE,
)
# claude's label per claim, read back from the text when the event is missing (json/text output)
_CLAUDE_LABELS = {
    "session limit": "five_hour",
    "weekly limit": "seven_day",
    "opus limit": "seven_day_opus",
    "sonnet limit": "seven_day_sonnet",
    "usage credit limit": "overage",
}
_CLAUDE_LIMIT_TEXT = re.compile(r"You[’']ve hit your (?P<label>[\w ]+?limit)", re.IGNORECASE)
# "… try again at 8:52 AM." / "… try again at Dec 3rd, 2026 7:52 AM."
_CODEX_RESET = re.compile(
    r"try again at\s+(?:(?P<mon>[A-Za-z]{3})[a-z]*\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+"
    r"(?P<year>\d{4})\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>AM|PM)",
    re.IGNORECASE,
)
_CODEX_USAGE_TEXT = re.compile(r"You[’']ve hit your usage limit", re.IGNORECASE)
_CODEX_429_TEXT = re.compile(r"last status: 429\b|\b429 Too Many Requests")


# -- claude ------------------------------------------------------------------------------------


def claude_window(data: Mapping[str, Any]) -> UsageWindow | None:
    """Return the window a claude ``rate_limit_event`` line reports, else None."""
    if data.get("type") != "rate_limit_event":
        return None
    info = get_dict(data, "rate_limit_info")
    window = get_str(info, "rateLimitType")
    if not window:
        return None
    return UsageWindow(
        window=window,
        utilization=get_float(info, "utilization"),
        resets_at=get_float(info, "resetsAt"),
        status=get_str(info, "status"),
        source="event",
    )


class ClaudeScan:
    """Fold claude stream-json lines into what a usage limit needs: events, work, the end."""

    def __init__(self) -> None:
        self.windows: list[UsageWindow] = []
        self.rejected: UsageWindow | None = None  # the last rejected event, if still in force
        self.worked = False
        self.rate_limit_error: str | None = None  # a synthetic assistant turn's error text
        self.result: dict[str, Any] | None = None

    def feed(self, data: Mapping[str, Any]) -> None:
        """Fold one parsed line."""
        kind = data.get("type")
        if kind == "rate_limit_event":
            window = claude_window(data)
            if window is not None:
                self.windows.append(window)
                self.rejected = window if window.status == "rejected" else None
        elif kind == "assistant":
            message = get_dict(data, "message")
            for block in get_list(message, "content"):
                if get_str(block, "type") in ("tool_use", "server_tool_use"):
                    self.worked = True
                elif get_str(block, "type") == "text" and data.get("error") == "rate_limit":
                    self.rate_limit_error = get_str(block, "text") or ""
        elif kind == "result":
            self.result = dict(data)

    def signal(self, *, now: float) -> QuotaSignal | None:
        """Return the limit that ended the run, or None when no limit did."""
        result = self.result or {}
        status = result.get("api_error_status")
        text = get_str(result, "result") or self.rate_limit_error or ""
        limited = self.rejected is not None or self.rate_limit_error is not None
        if not (limited or (result.get("is_error") is True and status == 429)):
            return None
        return claude_signal(text, rejected=self.rejected, worked=self.worked, now=now)


def claude_signal(
    text: str, *, rejected: UsageWindow | None, worked: bool, now: float
) -> QuotaSignal:
    """Return the signal of a claude 429: event first, then the text, else no reset known."""
    label = _CLAUDE_LIMIT_TEXT.search(text)
    window = _CLAUDE_LABELS.get(label.group("label").lower()) if label else None
    if rejected is not None and rejected.resets_at is not None:
        return QuotaSignal(
            kind=USAGE_LIMIT,
            window=rejected.window,
            resets_at=rejected.resets_at,
            source="event",
            worked=worked,
            message=text,
        )
    resets_at = parse_claude_reset(text, now=now)
    if resets_at is not None or label is not None or rejected is not None:
        return QuotaSignal(
            kind=USAGE_LIMIT,
            window=(rejected.window if rejected else None) or window,
            resets_at=resets_at,
            source="text" if resets_at is not None else "none",
            worked=worked,
            message=text,
        )
    # An API key's 429 ("API Error: Request rejected (429) · …") names no reset at all.
    return QuotaSignal(kind=RATE_LIMITED, source="none", worked=worked, message=text)


def parse_claude_reset(text: str, *, now: float) -> float | None:
    """Return the epoch of ``resets 8:52am (UTC)`` / ``resets Dec 3, 7:52am (Zone)`` in ``text``."""
    match = _CLAUDE_RESET.search(text)
    if match is None:
        return None
    try:
        zone: _dt.tzinfo = ZoneInfo(match.group("zone").strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return _next_time(match, zone=zone, now=now)


# -- codex -------------------------------------------------------------------------------------


def codex_windows(rate_limits: Mapping[str, Any]) -> list[UsageWindow]:
    """Return the windows of a rollout ``token_count.rate_limits`` object."""
    windows = []
    for key in ("primary", "secondary"):
        entry = get_dict(rate_limits, key)
        if not entry:
            continue
        minutes = get_float(entry, "window_minutes")
        used = get_float(entry, "used_percent")
        name = _WINDOW_NAMES.get(int(minutes)) if minutes is not None else None
        windows.append(
            UsageWindow(
                window=name or (f"{int(minutes)}m" if minutes is not None else key),
                utilization=None if used is None else used / 100,
                resets_at=get_float(entry, "resets_at"),
                status="rejected" if used is not None and used >= 100 else "allowed",
                source="rollout",
            )
        )
    return windows


def codex_signal(
    message: str | None,
    *,
    error_info: Any = None,
    windows: Iterable[UsageWindow] = (),
    worked: bool,
    now: float,
    tz: _dt.tzinfo | None,
) -> QuotaSignal | None:
    """Return the limit that ended a codex run, from its error text and its rollout facts.

    ``error_info`` is the rollout's ``task_complete.error.codex_error_info``; ``windows`` the
    last ``rate_limits`` seen; ``tz`` the host's zone (codex prints local times with none).
    """
    text = message or ""
    usage = error_info == "usage_limit_exceeded" or bool(_CODEX_USAGE_TEXT.search(text))
    if not usage:
        too_many = _http_status(error_info) == 429 or bool(_CODEX_429_TEXT.search(text))
        if too_many:
            return QuotaSignal(kind=RATE_LIMITED, source="none", worked=worked, message=text)
        return None
    resets_at = parse_codex_reset(text, now=now, tz=tz)
    full = [w for w in windows if w.status == "rejected" and w.resets_at is not None]
    hit = max(full, key=lambda w: w.resets_at or 0.0) if full else None  # both full: the later
    if hit is not None and (resets_at is None or (hit.resets_at or 0.0) >= resets_at):
        return QuotaSignal(
            kind=USAGE_LIMIT,
            window=hit.window,
            resets_at=hit.resets_at,
            source="rollout",
            worked=worked,
            message=text,
        )
    # The text's time comes from the error body, the rollout's from headers; when they
    # disagree the later one counts: resuming too early only hits the wall again.
    return QuotaSignal(
        kind=USAGE_LIMIT,
        window=hit.window if hit is not None else None,
        resets_at=resets_at,
        source="text" if resets_at is not None else "none",
        worked=worked,
        message=text,
    )


def parse_codex_reset(text: str, *, now: float, tz: _dt.tzinfo | None) -> float | None:
    """Return the epoch of ``try again at 8:52 AM.`` read in ``tz`` (None: no zone, no time)."""
    match = _CODEX_RESET.search(text)
    if match is None or tz is None:
        return None
    return _next_time(match, zone=tz, now=now)


def _http_status(error_info: Any) -> int | None:
    """Return the HTTP status a rollout ``codex_error_info`` object carries, if any."""
    if not isinstance(error_info, dict):
        return None
    for value in error_info.values():
        status = get_float(value, "http_status_code") if isinstance(value, dict) else None
        if status is not None:
            return int(status)
    return None


# -- shared ------------------------------------------------------------------------------------


def _next_time(match: re.Match[str], *, zone: _dt.tzinfo, now: float) -> float | None:
    """Return the first moment at or after ``now`` (less a minute) the matched text names."""
    hour = int(match.group("h")) % 12 + (12 if match.group("ampm").lower() == "pm" else 0)
    minute = int(match.group("m") or 0)
    if minute > 59:
        return None
    today = _dt.datetime.fromtimestamp(now, zone)
    slack = _dt.timedelta(minutes=1)  # the text is printed in whole minutes, rounded down
    mon = match.group("mon")
    try:
        if mon is None:
            when = today.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if when < today - slack:
                when += _dt.timedelta(days=1)
            return when.timestamp()
        month = _MONTHS.get(mon[:3].lower())
        if month is None:
            return None
        day = int(match.group("day"))
        groups = match.groupdict()
        year = int(groups["year"]) if groups.get("year") else today.year
        when = _dt.datetime(year, month, day, hour, minute, tzinfo=zone)
        if not groups.get("year") and when < today - slack:
            when = when.replace(year=year + 1)  # "Jan 2" read on Dec 30
        return when.timestamp()
    except ValueError:  # Feb 30, hour 25…
        return None
