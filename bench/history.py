"""History benchmark: listings, filters, stats and memory of a hub with 1k/10k/100k tasks.

For each size, a hub home is seeded with that many finished tasks (realistic prompts,
summaries, tokens, costs over 20 hosts, 5 projects, 3 backends), a real hub process is started
on it, and the HTTP API is timed (p50 of repeated requests, keep-alive connection):

- newest 50 (``GET /tasks?limit=50``), with the total count
- filtered newest 50: by status, project, host, backend, and search text (``q=``)
- ``GET /stats`` and ``GET /results?limit=50``
- ``GET /usage`` (accounts, configured guesses summed in SQL, budgets)
- the hub's resident memory after those requests (current and peak)

Baseline in the same run: the same newest-50 query on the same database file with SQLite
alone (``sqlite3``, no hub, no HTTP).

Run: ``python bench/history.py [--sizes 1000,10000,100000] [--repeat 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.store_common import Http, history_task, pct, rss_mb, seed  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

QUERIES = [
    ("newest 50", "/tasks?limit=50"),
    ("status=failed", "/tasks?limit=50&status=failed"),
    ("project=ml", "/tasks?limit=50&project=ml"),
    ("host=host07", "/tasks?limit=50&host=host07"),
    ("backend=codex", "/tasks?limit=50&backend=codex"),
    ("q=flaky parser", "/tasks?limit=50&q=flaky%20parser"),
    ("q=job 4242", "/tasks?limit=50&q=job%204242"),
    ("/stats", "/stats"),
    ("/stats?since=24h", "/stats?since=24h"),
    ("/results?limit=50", "/results?limit=50"),
    ("usage (dashboard)", "/dashboard/api/usage"),
    ("heatmap (dashboard)", "/dashboard/api/heatmap"),
    ("/usage (accounts)", "/usage"),
]


async def time_queries(port: int, repeat: int) -> dict[str, tuple[float, int]]:
    """Return name -> (p50 seconds, bytes) over ``repeat`` requests."""
    http = Http(port)
    out: dict[str, tuple[float, int]] = {}
    try:
        for name, path in QUERIES:
            times, size = [], 0
            for _ in range(repeat):
                began = time.perf_counter()
                status, body = await http.request("GET", path)
                times.append(time.perf_counter() - began)
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status}: {body[:300]!r}")
                size = len(body)
            out[name] = (pct(times, 50), size)
    finally:
        http.close()
    return out


def sqlite_alone(db: Path, repeat: int) -> float:
    """Return the p50 of the newest-50 query on the database file, with SQLite alone."""
    conn = sqlite3.connect(db)
    sql = (
        "SELECT d.doc FROM tasks t JOIN task_docs d ON d.seq = t.seq "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT 50"
    )
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        [json.loads(doc) for (doc,) in conn.execute(sql)]
        times.append(time.perf_counter() - began)
    conn.close()
    return pct(times, 50)


def run_size(n: int, repeat: int) -> None:
    rng = random.Random(n)
    now = time.time()
    tasks = [history_task(rng, i, n, now, span_s=90 * 86400.0) for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="dobby-history-") as tmp:
        root = Path(tmp)
        home = root / "home"
        seeded = seed(home, tasks)
        del tasks
        # Configured guesses and a budget: /usage sums the windows in SQL, and the first start
        # counts the spend ledger from the finished tasks.
        (home / "dobby.yaml").write_text(
            "usage_limits: {claude: {5h: {cost_usd: 20}, 7d: {tokens: 50000000}}}\n"
            "budget_usd: {day: 500, month: 5000}\n"
        )
        inv = write_inventory(root / "inv.yaml", [{"name": "local", "connection": "local"}])
        hub = HubProcess(home=home, inventory=inv)
        began = time.perf_counter()
        hub.start()
        started = time.perf_counter() - began
        try:
            results = asyncio.run(time_queries(hub.port, repeat))
            assert hub.proc is not None
            rss, peak = rss_mb(hub.proc.pid)
        finally:
            hub.stop()
        base = sqlite_alone(home / "dobby.db", repeat)
        size_mb = (home / "dobby.db").stat().st_size / 1e6
    print(f"\n{n:,} tasks (seeded in {seeded:.1f} s, database {size_mb:.0f} MB, "
          f"hub ready in {started:.2f} s)")  # fmt: skip
    for name, (p50, size) in results.items():
        print(f"   dobby  {name:<22} p50 {p50 * 1000:8.2f} ms   {size / 1024:8.1f} KiB")
    print(f"   base   SQLite alone, newest 50  p50 {base * 1000:8.2f} ms")
    print(f"   dobby  hub RSS {rss:.0f} MB (peak {peak:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print("== history benchmark (hub process, HTTP API; p50 of repeated requests) ==")
    for n in (int(s) for s in args.sizes.split(",")):
        run_size(n, args.repeat)


if __name__ == "__main__":
    main()
