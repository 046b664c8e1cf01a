"""The one atomic write and the one ISO-time parser/formatter."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from dobby.core.files import atomic_write
from dobby.core.timefmt import iso, iso_from_epoch, maybe_time, parse_time, utcnow


def test_atomic_write_replaces_with_the_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.yaml"
    atomic_write(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # private unless asked otherwise
    atomic_write(target, b"\x00bytes", mode=0o644)
    assert target.read_bytes() == b"\x00bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["file.yaml"]


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    atomic_write(target, "old")
    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T10:00:00.123456Z", dt.datetime(2026, 11, 30, 10, 0, 0, 123456, dt.UTC)),
        ("2026-11-30T11:00:00+01:00", dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)),
        (" 2026-11-30T10:00:00 ", dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)),  # naive: UTC
    ],
)
def test_parse_time_reads_every_iso_form_as_aware(text: str, expected: dt.datetime) -> None:
    assert parse_time(text) == expected and parse_time(text).tzinfo is not None
    assert maybe_time(text) == expected


@pytest.mark.parametrize("bad", ["", "yesterday", None, 5])
def test_maybe_time_is_none_for_what_is_not_a_time(bad: object) -> None:
    assert maybe_time(bad) is None  # type: ignore[arg-type]
    if bad:
        with pytest.raises(ValueError):
            parse_time(bad)  # type: ignore[arg-type]


def test_formats_round_trip() -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert iso(moment) == "2026-01-02T01:04:05.000006Z"
    assert parse_time(iso(moment)) == moment
    assert iso_from_epoch(0) == "1970-01-01T00:00:00.000000Z"
    before = dt.datetime.now(dt.UTC)
    now = utcnow()
    # iso's text exactly (utcnow formats on its own, faster): whole microseconds too.
    assert now == iso(parse_time(now)) and len(now) == len("2026-01-02T01:04:05.000006Z")
    assert before <= parse_time(now) <= dt.datetime.now(dt.UTC)
