"""Pure schedule math: parse ``--cron`` / ``--every``, compute fire times, decide what fires now.

Cron expressions are crontab's: exactly five fields (minute hour day-of-month month
day-of-week) or one of the @aliases below, read in the schedule's time zone (the hub's
``timezone`` setting, else the machine's local zone). croniter also accepts 6- and 7-field
forms with seconds and years; Dobby refuses them so an expression means what crontab says.

Missed fires never burst: a schedule whose fire time passed (the hub was down, or busy)
fires once, and its next fire is computed from *now*.
"""

from __future__ import annotations

import datetime as _dt
import os
import zoneinfo
from dataclasses import dataclass

from dobby.core.errors import ValidationError
from dobby.core.models import Schedule
from dobby.core.timefmt import parse_duration, parse_time

ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MIN_EVERY = 1.0
OVERLAP = ("skip", "queue")


def check_cron(expr: str) -> str:
    """Return ``expr`` normalised, or raise ValidationError with the parser's message."""
    text = " ".join(str(expr).split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ValidationError(
                f"invalid cron expression {expr!r}: unknown alias (use {', '.join(ALIASES)})"
            )
        return text.lower()
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ValidationError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    from croniter import croniter  # see next_fire
    from croniter.croniter import CroniterError

    try:
        croniter(text)
    except (CroniterError, ValueError) as exc:
        raise ValidationError(f"invalid cron expression {expr!r}: {exc}") from None
    return text


def parse_every(text: str | int | float) -> float:
    """Return the seconds of an ``--every`` interval (``30m``, ``2h``, ``90``); at least 1 s."""
    try:
        seconds = parse_duration(text)
    except ValidationError as exc:
        raise ValidationError(f"invalid --every: {exc}") from None
    if seconds < MIN_EVERY:
        raise ValidationError(f"invalid --every {text!r}: the interval must be at least 1s")
    return seconds


def zone(name: str | None) -> _dt.tzinfo:
    """Return the IANA zone ``name``, or the machine's local zone for None."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValidationError(f"unknown time zone {name!r}") from None
    return local_zone()


def local_zone() -> _dt.tzinfo:
    """Return the machine's zone with its DST rules ($TZ, /etc/localtime), else a fixed offset."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return zoneinfo.ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        pass
    return _dt.datetime.now().astimezone().tzinfo or _dt.UTC


def next_fire(schedule: Schedule, after: _dt.datetime) -> _dt.datetime:
    """Return the first fire time of ``schedule`` strictly after ``after`` (aware, UTC)."""
    if schedule.cron:
        # Imported here: croniter and dateutil are 7 ms of a hub's start, before a restarted
        # hub's first connect, and only a cron schedule needs them.
        from croniter import croniter

        local = after.astimezone(zone(schedule.timezone))
        nxt = croniter(schedule.cron, local).get_next(_dt.datetime)
        return nxt.astimezone(_dt.UTC)
    if schedule.every_s:
        return after + _dt.timedelta(seconds=schedule.every_s)
    raise ValidationError(f"schedule {schedule.id} has neither cron nor every")


@dataclass(frozen=True)
class Tick:
    """What a schedule does at ``now``: fire or not, and its next fire time."""

    fire: bool
    next_at: _dt.datetime | None
    missed: bool = False  # at least one whole period was missed (hub down): fired once anyway


def tick(schedule: Schedule, now: _dt.datetime) -> Tick:
    """Return whether ``schedule`` fires at ``now`` and when it fires next (no burst)."""
    if schedule.next_at is None:
        return Tick(False, None if schedule.paused else next_fire(schedule, now))
    due = parse_time(schedule.next_at)
    if schedule.paused or due > now:
        return Tick(False, due)
    if schedule.every_s:
        on_grid = due + _dt.timedelta(seconds=schedule.every_s)
        # On time: keep the grid (no drift). Late by a whole period or more: re-anchor on now,
        # so the catch-up fire is not followed at once by another one.
        if on_grid > now:
            return Tick(True, on_grid)
        return Tick(True, now + _dt.timedelta(seconds=schedule.every_s), missed=True)
    nxt = next_fire(schedule, now)
    missed = next_fire(schedule, due) <= now
    return Tick(True, nxt, missed=missed)
