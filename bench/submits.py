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

Each phase also prints the hub's CPU time per submit (user + system, from /proc): on a shared
machine the rate moves with the load, the CPU cost much less; and the client's own CPU per
submit, to show the client is not the limit. ``--py-spy FILE`` records the hub with py-spy
(raw format) during each 16-client phase.

Run: ``python bench/submits.py [--count 3000] [--only 10k] [--py-spy /tmp/hub.raw]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinydb import TinyDB  # noqa: E402

from bench.cpu import process_seconds  # noqa: E402
from bench.store_common import Http, history_task, parked_task, seed  # noqa: E402
from dobby.core.models import Task  # noqa: E402
from dobby.store.db import Store, task_docs_on_disk  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

BODY = {"prompt": "echo queued", "backend": "shell", "labels": ["nowhere"], "wait_for_host": True}


class Phase:
    """One timed run of submits: rate, and hub and client CPU per submit."""

    def __init__(self, hub_pid: int, clients: int, count: int) -> None:
        self.hub_pid, self.clients, self.count = hub_pid, clients, count
        self.ids: list[str] = []
        self.rate = self.hub_ms = self.client_ms = 0.0

    def run(self, port: int) -> Phase:
        hub0, client0 = process_seconds(self.hub_pid), time.process_time()
        took, self.ids = asyncio.run(submit(port, self.clients, self.count))
        n = max(1, len(self.ids))
        self.rate = n / took
        self.hub_ms = (process_seconds(self.hub_pid) - hub0) * 1000 / n
        self.client_ms = (time.process_time() - client0) * 1000 / n
        return self

    def __str__(self) -> str:
        cpu = f"hub {self.hub_ms:4.2f} ms CPU/submit, client {self.client_ms:4.2f}"
        return f"{self.rate:6.0f}/s ({cpu})"


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


def scenario(name: str, seeded: list[Task], count: int, py_spy: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="dobby-submits-") as tmp:
        root = Path(tmp)
        home = root / "home"
        seed(home, seeded)
        inv = write_inventory(root / "inv.yaml", [{"name": "local", "connection": "local"}])
        hub = HubProcess(home=home, inventory=inv).start(wait=False)
        try:
            hub.wait_healthy(timeout=180)  # a loaded machine loads 10,000 tasks slowly
        except BaseException:
            hub.kill()
            raise
        assert hub.proc is not None
        pid = hub.proc.pid
        try:
            one = Phase(pid, 1, max(100, count // 10)).run(hub.port)
            spy = None
            if py_spy:
                out = f"{py_spy}.{name.split()[0].replace(',', '')}"
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pid), "--format", "raw", "-o", out,
                     "--duration", "600", "--rate", "200", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)  # py-spy attaches
            try:
                many = Phase(pid, 16, count).run(hub.port)
            finally:
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes what it has
                    spy.wait()
        except BaseException:
            hub.kill()
            lines = [ln for ln in hub.log().splitlines() if "tornado.access" not in ln]
            print("\n".join(["hub log (no access lines), last 40:", *lines[-40:]]), file=sys.stderr)
            raise
        hub.kill()  # SIGKILL: what was acknowledged must already be on disk
        on_disk = task_docs_on_disk(home / "dobby.db")
        acked = set(one.ids) | set(many.ids)
        lost = len(acked - set(on_disk))
        alone = asyncio.run(store_alone(home / "dobby.db", 16, count))
    print(f"   dobby  {name:<24} 1 client   {one}")
    print(f"          {'':<24} 16 clients {many}   lost after SIGKILL: {lost} of {len(acked)}")
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


SCENARIOS: dict[str, tuple[str, Callable[[random.Random, float], list[Task]]]] = {
    "empty": ("empty hub", lambda rng, now: []),
    "1k": ("1,000 pending", lambda rng, now: [parked_task(rng, i) for i in range(1000)]),
    "10k": ("10,000 pending", lambda rng, now: [parked_task(rng, i) for i in range(10_000)]),
    "recent": (
        "10,000 finished today",
        lambda rng, now: [
            history_task(rng, i, 10_000, now, span_s=20 * 3600.0) for i in range(10_000)
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="POSTs with 16 clients")
    parser.add_argument(
        "--only", choices=list(SCENARIOS), action="append", help="run these scenarios only"
    )
    parser.add_argument("--py-spy", metavar="FILE", help="record the hub (FILE.<scenario>)")
    args = parser.parse_args()
    rng = random.Random(5)
    now = time.time()
    print("== durable submit benchmark (hub process, POST /tasks, 201 = fsynced) ==")
    for key in args.only or SCENARIOS:
        name, make = SCENARIOS[key]
        scenario(name, make(rng, now), args.count, args.py_spy)
    print(f"   base   SQLite alone, 1 insert per commit   {sqlite_alone(1000, 1):7.0f}/s")
    print(f"   base   SQLite alone, 16 inserts per commit {sqlite_alone(4000, 16):7.0f}/s")
    print(f"   base   TinyDB alone, empty database        {tinydb_alone(0, 300):7.0f}/s")
    print(f"   base   TinyDB alone, 10,000 tasks in it    {tinydb_alone(10_000, 30):7.0f}/s")


if __name__ == "__main__":
    main()
