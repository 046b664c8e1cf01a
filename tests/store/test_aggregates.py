"""Dashboard aggregates from SQL equal the pure computations over the same tasks."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dobby.core.models import Task
from dobby.core.timefmt import iso
from dobby.hub import dashboard_data as data
from dobby.store import aggregates
from dobby.store.db import Store

NOW = dt.datetime(2026, 11, 30, 12, 7, tzinfo=dt.UTC)


def tasks(rng: random.Random, n: int) -> list[Task]:
    out = []
    for i in range(n):
        finished = NOW - dt.timedelta(seconds=rng.randint(-3600, 400 * 86400))
        out.append(
            Task(
                prompt=f"p{i}",
                id=f"g{i:05d}",
                backend=rng.choice(["claude", "codex", "shell"]),
                status=rng.choice(["completed", "completed", "failed"]),
                project=rng.choice(["web", "api", None]),
                finished_at=iso(finished),
                cost_usd=rng.choice([None, 0.0, round(rng.random(), 4)]),
            )  # fmt: skip
        )
    return out


@pytest.mark.parametrize(
    "zone", ["UTC", "Asia/Kathmandu", "America/New_York", "Australia/Adelaide"]
)
async def test_heatmap_and_usage_from_sql_equal_the_pure_ones(tmp_path: Path, zone: str) -> None:
    tz = ZoneInfo(zone)
    rng = random.Random(zone)
    sample = tasks(rng, 600)
    store = Store(path=tmp_path / "dobby.db")
    try:
        for task in sample:
            store.put_task(task)
        conn = store.sql()
        docs = [t.to_dict() for t in sample]
        today = NOW.astimezone(tz).date()
        first = dt.datetime.combine(today, dt.time(), tz) - dt.timedelta(days=365)
        size = aggregates.bucket_size(tz, first, NOW)
        rows = aggregates.completed_buckets(
            conn, start=first.timestamp(), end=NOW.timestamp() + 86400, bucket=size
        )
        counts = [(p, data.local_day(b * size, tz), n) for p, b, n in rows]
        expected = data.heatmap(docs, today=today, tz=tz, days=365)
        assert data.heatmap_counts(counts, today=today, tz=tz, days=365) == expected

        end = NOW.timestamp()
        per_window = {}
        for name, hours in data.USAGE_WINDOWS:
            start = (NOW - dt.timedelta(hours=hours)).timestamp()
            rows = aggregates.usage_window(conn, start=start, end=end)
            per_window[name] = {b: data.usage_row(b, n, c or 0.0, t) for b, n, c, *t in rows}
        first = dt.datetime.combine(today, dt.time(), tz) - dt.timedelta(days=30)
        size = aggregates.bucket_size(tz, first, NOW)
        buckets = aggregates.cost_buckets(conn, start=first.timestamp(), end=end, bucket=size)
        day_costs = [(b, data.local_day(n * size, tz), c) for b, n, c in buckets]
        got = data.usage_sums(per_window, day_costs, now=NOW, tz=tz, days=30,
                              backends=aggregates.finished_backends(conn, end=end))  # fmt: skip
        assert got == data.usage(docs, now=NOW, tz=tz, days=30)
    finally:
        await store.close()
