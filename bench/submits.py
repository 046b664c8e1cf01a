"""Durable submit benchmark: POST /tasks per second with 1 and 16 clients, at any queue size.

Each scenario seeds a hub home, starts a real hub process and sends ``POST /tasks`` (each with
its own ``Idempotency-Key``, as the CLI does) over keep-alive connections; a 201 means the task
is on disk (fsynced). Scenarios: an empty hub, 1,000 and 10,000 pending tasks (waiting for a
host that never comes), and 10,000 tasks finished in the last day. After each scenario the hub
is SIGKILLed and every acknowledged task must be in the database; then dobby's Store alone
(16 writers, each ``insert_task`` + ``await durable()``, no HTTP, no scheduler) on that
database shows what the storage layer itself sustains.

Baselines in the same run: SQLite alone (the same task JSON, WAL, ``synchronous=FULL``, one
commit per insert and one commit per 16 inserts) and TinyDB alone (default JSONStorage, one
insert per task, into an empty database and into one holding 10,000 tasks).

Run: ``python bench/submits.py [--count 3000]``.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinydb import TinyDB  # noqa: E402

from bench.store_common import Http, history_task, parked_task, seed  # noqa: E402
from dobby.core.models import Task  # noqa: E402
from dobby.store.db import Store, task_docs_on_disk  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

BODY = {"prompt": "echo queued", "backend": "shell", "labels": ["nowhere"], "wait_for_host": True}


async def submit(port: int, clients: int, count: int) -> tuple[float, list[str]]:
    """Send ``count`` POST /tasks over ``clients`` connections; return (seconds, ids)."""
    ids: list[str] = []

    async def client(n: int) -> None:
        http = Http(port)
        try:
            for _ in range(n):
                key = {"Idempotency-Key": uuid.uuid4().hex}
                status, body = await http.request("POST", "/tasks", BODY, key)
                if status != 201:
                    raise RuntimeError(f"POST /tasks: HTTP {status}: {body[:300]!r}")
                ids.append(json.loads(body)["id"])
        finally:
            http.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(count // clients) for _ in range(clients)))
    return time.perf_counter() - began, ids


async def store_alone(db: Path, writers: int, count: int) -> float:
    """Return durable inserts/s through dobby's Store alone (no HTTP, no scheduler)."""
    store = Store(path=db)
    store.start()

    async def writer(n: int) -> None:
        for _ in range(n):
            store.insert_task(Task(prompt="echo queued", backend="shell"))
            await store.durable()

    began = time.perf_counter()
    await asyncio.gather(*(writer(count // writers) for _ in range(writers)))
    took = time.perf_counter() - began
    await store.close()
    return count / took


def scenario(name: str, seeded: list[Task], count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dobby-submits-") as tmp:
        root = Path(tmp)
        home = root / "home"
        seed(home, seeded)
        inv = write_inventory(root / "inv.yaml", [{"name": "local", "connection": "local"}])
        hub = HubProcess(home=home, inventory=inv).start()
        try:
            one, ids1 = asyncio.run(submit(hub.port, 1, max(100, count // 10)))
            many, ids16 = asyncio.run(submit(hub.port, 16, count))
        finally:
            hub.kill()  # SIGKILL: what was acknowledged must already be on disk
        on_disk = task_docs_on_disk(home / "dobby.db")
        acked = set(ids1) | set(ids16)
        lost = len(acked - set(on_disk))
        alone = asyncio.run(store_alone(home / "dobby.db", 16, count))
    print(f"   dobby  {name:<24} 1 client {len(ids1) / one:7.0f}/s   16 clients "
          f"{len(ids16) / many:7.0f}/s   lost after SIGKILL: {lost} of {len(acked)}")  # fmt: skip
    print(f"          {'':<24} Store alone, 16 writers {alone:7.0f}/s (no HTTP, no scheduler)")


def sqlite_alone(count: int, per_commit: int) -> float:
    """Return durable inserts/s of task JSON into SQLite (WAL, synchronous=FULL)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT, doc TEXT)")
        docs = [Task(prompt=f"echo {i}", backend="shell").to_dict() for i in range(count)]
        began = time.perf_counter()
        for start in range(0, count, per_commit):
            conn.execute("BEGIN")
            for doc in docs[start : start + per_commit]:
                conn.execute(
                    "INSERT INTO tasks VALUES (?, ?, ?)",
                    (doc["id"], doc["status"], json.dumps(doc)),
                )
            conn.execute("COMMIT")
        took = time.perf_counter() - began
        conn.close()
    return count / took


def tinydb_alone(existing: int, count: int) -> float:
    """Return inserts/s with TinyDB's default storage into a database of ``existing`` tasks."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db.json"
        docs = {str(i): Task(prompt=f"old {i}").to_dict() for i in range(existing)}
        path.write_text(json.dumps({"_default": docs}))
        db = TinyDB(path)
        began = time.perf_counter()
        for i in range(count):
            db.insert(Task(prompt=f"task {i}").to_dict())
        took = time.perf_counter() - began
        db.close()
    return count / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="POSTs with 16 clients")
    args = parser.parse_args()
    rng = random.Random(5)
    now = time.time()
    print("== durable submit benchmark (hub process, POST /tasks, 201 = fsynced) ==")
    scenario("empty hub", [], args.count)
    scenario("1,000 pending", [parked_task(rng, i) for i in range(1000)], args.count)
    scenario("10,000 pending", [parked_task(rng, i) for i in range(10_000)], args.count)
    recent = [history_task(rng, i, 10_000, now, span_s=20 * 3600.0) for i in range(10_000)]
    scenario("10,000 finished today", recent, args.count)
    print(f"   base   SQLite alone, 1 insert per commit   {sqlite_alone(1000, 1):7.0f}/s")
    print(f"   base   SQLite alone, 16 inserts per commit {sqlite_alone(4000, 16):7.0f}/s")
    print(f"   base   TinyDB alone, empty database        {tinydb_alone(0, 300):7.0f}/s")
    print(f"   base   TinyDB alone, 10,000 tasks in it    {tinydb_alone(10_000, 30):7.0f}/s")


if __name__ == "__main__":
    main()
