"""Scheduler benchmark: decision time on a big queue, and durable submit throughput via the API.

1. One scheduling pass (dependencies settled, placement planned, waiting reasons diffed) with
   10,000 pending tasks, 100 hosts and 50 projects, the queue churning as tasks start and end:
   p50/p99 per pass. Baseline: the Foundation's planner (sort the whole queue, scan every host
   per task) on the same states.
2. ``POST /tasks`` against a real hub process, each 201 durable (SQLite, group commit):
   tasks/s for one client and for 16 concurrent clients, then ``POST /batches`` of 500.
   Baseline: TinyDB's default JSONStorage, one durable insert per task (what a naive hub does).
   Durability is checked: the hub is SIGKILLed and every acknowledged task must be on disk.

Run: ``python bench/scheduler.py [--pending 10000] [--hosts 100] [--projects 50]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinydb import TinyDB  # noqa: E402

from dobby.core.models import Host, Task  # noqa: E402
from dobby.scheduler import deps  # noqa: E402
from dobby.scheduler.plan import HostSlot, PlanInput, plan  # noqa: E402
from dobby.scheduler.queue import PRIORITY_RANK, PendingQueue  # noqa: E402
from dobby.store.db import task_docs_on_disk  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

T0 = 1_800_000_000.0
LABELS = ["cpu", "gpu", "big", "eu", "us"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def fmt_ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1000:7.3f} ms   p99 {pct(values, 99) * 1000:7.3f} ms   "
        f"(n={len(values)})"
    )


def iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- 1. decision time -------------------------------------------------------------------------


def make_world(rng: random.Random, n: int, hosts: int, projects: int):  # type: ignore[no-untyped-def]
    host_list = [
        Host(
            name=f"host{i:03d}",
            labels=rng.sample(LABELS, rng.randint(1, 3)),
            backends=rng.choice([["claude", "codex", "shell"], ["shell"], ["claude", "shell"]]),
            max_agents=4,
        )
        for i in range(hosts)
    ]
    limits = {f"proj{i:02d}": rng.choice([1, 1, 2, 3]) for i in range(projects)}
    tasks = []
    for i in range(n):
        t = Task(
            prompt=f"task {i}",
            id=f"t{i:05d}",
            priority=rng.choice(list(PRIORITY_RANK)),
            backend=rng.choice(["claude", "shell", "shell"]),
            project=rng.choice([*limits, None]),
            host_selector=rng.sample(LABELS, rng.randint(0, 1)),
            created_at=iso(T0 + i * 0.01),
            queued_at=iso(T0 + i * 0.01),
        )
        if i > 10 and rng.random() < 0.1:  # a tenth waits for an earlier task
            t.after = [f"t{rng.randrange(i):05d}"]
        tasks.append(t)
    return host_list, limits, tasks


def foundation_plan(pending, slots, running_total, max_total):  # type: ignore[no-untyped-def]
    """The Foundation's planner, kept as the baseline: full sort, every host per task."""
    order = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    load = {s.host.name: s.running for s in slots}
    room = max_total - running_total
    out = []
    for task in sorted(pending, key=lambda t: (order.get(t.priority, 2), t.created_at)):
        if room <= 0:
            break
        cands = [
            s
            for s in slots
            if (not task.want_host or task.want_host == s.host.name)
            and task.backend in s.host.backends
            and all(label in s.host.labels for label in task.host_selector)
        ]
        free = [s for s in cands if load[s.host.name] < s.host.max_agents]
        if not free:
            continue
        best = min(free, key=lambda s: (load[s.host.name], s.host.name))
        load[best.host.name] += 1
        room -= 1
        out.append((task.id, best.host.name))
    return out


def bench_decisions(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    hosts, limits, tasks = make_world(rng, args.pending, args.hosts, args.projects)
    status = {t.id: "pending" for t in tasks}
    queue = PendingQueue(aging=600)
    tracker = deps.Tracker()
    for t in tasks:
        queue.put(t)
        tracker.put(t)
    running: dict[str, Task] = {}
    max_total = args.hosts * 4
    passes, baseline, started_total = [], [], 0
    closed_as: dict[object, str] = {}
    spare = args.pending
    for step in range(args.passes):
        now = T0 + 100 + step
        # churn: a few running tasks end, a few new ones arrive
        for tid in rng.sample(sorted(running), min(len(running), 12)):
            status[tid] = rng.choice(["completed", "completed", "failed"])
            del running[tid]
            tracker.changed(tid)
        for _ in range(12):
            t = Task(prompt="new", id=f"t{spare:05d}", backend="shell",
                     project=rng.choice([*limits, None]), created_at=iso(now),
                     queued_at=iso(now))  # fmt: skip
            spare += 1
            status[t.id] = "pending"
            queue.put(t)
            tracker.put(t)
        load: dict[str, int] = {}
        projects: dict[str, int] = {}
        for t in running.values():
            load[t.host or ""] = load.get(t.host or "", 0) + 1
            if t.project:
                projects[t.project] = projects.get(t.project, 0) + 1
        slots = [HostSlot(host=h, running=load.get(h.name, 0), reachable=True) for h in hosts]
        began = time.perf_counter()
        while doomed := tracker.settle(status.get):  # as the loop does: only what changed
            for tid in doomed:
                status[tid] = "failed"
                queue.discard(tid)
                tracker.discard(tid)
                tracker.changed(tid)
        for tid in tracker.checked:  # tasks waiting for dependencies leave the passes' view
            queue.hold(tid, "dependencies" if tid in tracker.waiting else None)
        fresh = queue.take_fresh()
        result = plan(
            PlanInput(pending=queue, hosts=slots, running_total=len(running), max_total=max_total,
                      busy_projects=projects, project_limits=limits, blocked=queue.held, now=now)
        )  # fmt: skip
        ids = {*result.waiting, *tracker.checked, *fresh} | {t.id for t in queue.flagged()}
        tracker.checked.clear()
        for sig, why in result.closed.items():  # as the loop: a signature's answer changed
            if closed_as.get(sig) != why:
                closed_as[sig] = why
                ids.update(queue.of_signature(sig))
        for tid in ids:
            t = queue.get(tid)
            if t is None:
                continue
            want = queue.held.get(tid) or result.reason(t) or "capacity"
            if t.waiting_on != want:
                t.waiting_on = want
                queue.put(t)
        passes.append(time.perf_counter() - began)
        pending_now = queue.tasks()
        began = time.perf_counter()
        foundation_plan(pending_now, slots, len(running), max_total)
        baseline.append(time.perf_counter() - began)
        for d in result.decisions:
            task = queue.get(d.task_id)
            queue.discard(d.task_id)
            tracker.discard(d.task_id)
            if d.host is None or task is None:
                status[d.task_id] = "failed"
                continue
            task.host = d.host
            status[d.task_id] = "running"
            running[d.task_id] = task
            started_total += 1
    print(f"1. one scheduling pass: {len(queue):,} pending, {args.hosts} hosts, "
          f"{args.projects} projects, ~{len(running)} running, {started_total} started in "
          f"{args.passes} passes")  # fmt: skip
    print(f"   dobby  deps + plan + waiting diff   {fmt_ms(passes)}")
    print(f"   base   Foundation planner alone     {fmt_ms(baseline)}")


# --- 2. submit throughput -----------------------------------------------------------------------


def submit_many(hub: HubProcess, count: int, workers: int) -> tuple[float, list[str]]:
    body = {"prompt": "echo queued", "backend": "shell", "labels": ["nowhere"],
            "wait_for_host": True}  # fmt: skip

    def one(_: int) -> str:
        return hub.client().add_task(**body)["id"]

    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ids = list(pool.map(one, range(count)))
    return time.perf_counter() - began, ids


def tinydb_baseline(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = TinyDB(Path(tmp) / "db.json")
        began = time.perf_counter()
        for i in range(count):
            db.insert(Task(prompt=f"task {i}").to_dict())
        took = time.perf_counter() - began
        db.close()
    return took


def bench_submit(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="dobby-bench-") as tmp:
        root = Path(tmp)
        local = {"name": "local", "connection": "local", "workdir": str(root / "w")}
        inv = write_inventory(root / "inv.yaml", [local])
        hub = HubProcess(home=root / "home", inventory=inv).start()
        try:
            took1, ids1 = submit_many(hub, args.submits, 1)
            took16, ids16 = submit_many(hub, args.submits * 4, 16)
            tasks = [{"prompt": f"echo {i}", "backend": "shell", "labels": ["nowhere"],
                      "wait_for_host": True} for i in range(500)]  # fmt: skip
            began = time.perf_counter()
            batch = hub.client().add_batch(tasks=tasks, name="bench")
            took_batch = time.perf_counter() - began
        finally:
            hub.kill()  # SIGKILL: what was acknowledged must already be on disk
        on_disk = task_docs_on_disk(root / "home" / "dobby.db")
        acked = set(ids1) | set(ids16) | {t["id"] for t in batch["tasks"]}
        lost = acked - set(on_disk)
    base_n = min(args.submits, 1000)
    base = tinydb_baseline(base_n)
    print(f"2. durable submit through the API (hub process, then SIGKILL: {len(lost)} of "
          f"{len(acked)} acknowledged tasks missing on disk)")  # fmt: skip
    print(f"   dobby  POST /tasks, 1 client       {len(ids1) / took1:8.0f} tasks/s")
    print(f"   dobby  POST /tasks, 16 clients     {len(ids16) / took16:8.0f} tasks/s")
    print(f"   dobby  POST /batches of 500        {500 / took_batch:8.0f} tasks/s")
    print(f"   base   TinyDB default storage, one insert per task ({base_n})  "
          f"{base_n / base:8.0f} tasks/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--skip-submit", action="store_true")
    args = parser.parse_args()
    print("== scheduler benchmark ==")
    bench_decisions(args)
    if not args.skip_submit:
        bench_submit(args)


if __name__ == "__main__":
    main()
