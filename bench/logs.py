"""Live-log benchmark on real loopback sshd hosts, beside a raw `tail -F` in the same run.

N shell tasks (default 100, spread over H hosts) each print a timestamp line 5 times a second
(bash builtins only: ``$EPOCHREALTIME`` and ``read -t``, so the load is the logging, not
forks). Measured while they all run, for ``--seconds``:
  dobby  line written on the host → seen by an SSE client on GET /events (every task), and on
         GET /tasks/{id}/events (``--task-clients`` of them): p50/p99
  base   the same lines seen through `tail -n0 -F` of every task's out.jsonl over one asyncssh
         connection per host, in the same run
The hub runs as its own process, as `dobby start` would. Run as root (it starts sshd and
creates test users): `python bench/logs.py [--tasks 100 --hosts 5 --seconds 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

from bench import cpu  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from dobby.client.http import HubClient  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster, SshHost  # noqa: E402

STOP_FILE = "bench-stop"  # in the user's home: every chatty task ends once it exists


def chatty(rate: float) -> str:
    """Return a shell task printing ``$EPOCHREALTIME`` ``rate`` times a second, fork-free."""
    return (
        "exec 3<> <(:); "  # a pipe nobody writes to: `read -t` on it is a sleep without a fork
        f'while [ ! -e "$HOME/{STOP_FILE}" ]; do echo "$EPOCHREALTIME"; '
        f"read -t {1 / rate:.3f} -u 3; done"
    )


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def fmt(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1000:8.1f} ms   p99 {pct(values, 99) * 1000:8.1f} ms   "
        f"max {max(values, default=float('nan')) * 1000:8.1f} ms   (n={len(values)})"
    )


class Window:
    """Keep the latencies of lines stamped inside [start, end)."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.values: list[float] = []

    def add(self, text: str, now: float) -> None:
        for line in text.splitlines():
            try:
                stamp = float(line)
            except ValueError:
                continue
            if self.start <= stamp < self.end:
                self.values.append(now - stamp)


# Each sampler runs in a process of its own (multiprocessing), so that one busy client does not
# slow another down through the GIL: they report the latencies of the lines in the window.


def sample_events(url: str, ids: list[str], start: float, end: float, out: Any) -> None:
    """Record every listed task's lines seen on GET /events."""
    window, wanted = Window(start, end), set(ids)
    for event in HubClient(url=url).events(since=None, give_up_after=3600):
        now = time.time()
        if event.get("type") == "task.log" and event.get("task_id") in wanted:
            for ev in (event.get("data") or {}).get("events", []):
                window.add(ev.get("text") or "", now)
        if now > end + 2:
            break
    out.put(window.values)


def sample_tasks(url: str, ids: list[str], start: float, end: float, out: Any) -> None:
    """Record the lines of each task seen on its own GET /tasks/{id}/events (a thread each)."""
    window = Window(start, end)
    lock = threading.Lock()

    def one(tid: str) -> None:
        for kind, data in HubClient(url=url).follow(tid, give_up_after=3600):
            now = time.time()
            if kind == "log":
                with lock:
                    window.add(data.get("text") or "", now)
            if now > end + 2:
                return

    threads = [threading.Thread(target=one, args=(tid,), daemon=True) for tid in ids]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, end + 2.5 - time.time()))
    with lock:
        out.put(list(window.values))


def sample_tail(
    hosts: list[SshHost], files: dict[str, list[str]], start: float, end: float, out: Any
) -> None:
    """Record the lines seen through `tail -n0 -F` of every task's file, a connection per host."""
    window = Window(start, end)

    async def one(host: SshHost) -> None:
        if not files.get(host.name):
            return
        async with asyncssh.connect(**host.connect_options()) as conn:
            command = "tail -q -n0 -F " + " ".join(files[host.name])
            async with conn.create_process(command, stderr=asyncssh.DEVNULL) as proc:
                while time.time() < end + 2:
                    try:
                        line = await asyncio.wait_for(proc.stdout.readline(), 0.5)
                    except TimeoutError:
                        continue
                    if not line:
                        return
                    window.add(line, time.time())
                proc.terminate()

    async def all_hosts() -> None:
        await asyncio.gather(*(one(h) for h in hosts))

    asyncio.run(all_hosts())
    out.put(window.values)


class Bench:
    """Hosts, a hub and chatty tasks for a live-log or recovery measurement."""

    def __init__(self, *, hosts: int, per_host: int, user_prefix: str = "dobbyl") -> None:
        self.work = scratch_dir("dobby-bench-")
        self.cluster = SshdCluster(count=hosts, user_prefix=user_prefix)
        self.hosts = self.cluster.hosts
        inv = write_inventory(
            self.work / "inventory.yaml",
            [h.inventory_entry(max_agents=per_host + 1) for h in self.hosts],
        )
        home = self.work / "home"
        home.mkdir()
        (home / "dobby.yaml").write_text(
            f"max_concurrent_agents: {(per_host + 1) * hosts}\n", encoding="utf-8"
        )
        self.hub = HubProcess(home=home, inventory=inv)
        for host in self.hosts:
            (host.home / STOP_FILE).unlink(missing_ok=True)
        self.ids: list[str] = []
        self.placed: dict[str, str] = {}  # task id → host name

    def start(self) -> HubClient:
        self.hub.start()
        return self.hub.client()

    def submit(self, client: HubClient, count: int, rate: float) -> list[str]:
        for i in range(count):
            host = self.hosts[i % len(self.hosts)]
            tid = client.add_task(prompt=chatty(rate), backend="shell", host=host.name)["id"]
            self.ids.append(tid)
            self.placed[tid] = host.name
        return self.ids

    def host_files(self) -> dict[str, list[str]]:
        by_name = {h.name: h for h in self.hosts}
        files: dict[str, list[str]] = {}
        for tid, name in self.placed.items():
            files.setdefault(name, []).append(f"{by_name[name].home}/.dobby/tasks/{tid}/out.jsonl")
        return files

    def stop_tasks(self) -> None:
        for host in self.hosts:
            path = host.home / STOP_FILE
            path.touch()
            os.chown(path, host.home.stat().st_uid, host.home.stat().st_gid)

    def close(self) -> None:
        try:
            self.stop_tasks()
            self.hub.stop()
        finally:
            self.cluster.close()


def wait_running(client: HubClient, ids: list[str], timeout: float) -> None:
    """Wait until every task of ``ids`` runs."""
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        running = {t["id"] for t in client.tasks(status="running")["tasks"]}
        if wanted <= running:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted - running)} of {len(ids)} tasks are not running")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--rate", type=float, default=5.0, help="lines per second per task")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--task-clients", type=int, default=5)
    parser.add_argument("--profile", help="record the hub with py-spy into this file (raw)")
    args = parser.parse_args()

    per_host = -(-args.tasks // args.hosts)
    bench = Bench(hosts=args.hosts, per_host=per_host)
    try:
        client = bench.start()
        ids = bench.submit(client, args.tasks, args.rate)
        wait_running(client, ids, timeout=300)
        start = time.time() + args.warmup
        end = start + args.seconds
        ctx = multiprocessing.get_context("fork")
        queues = [ctx.Queue() for _ in range(3)]
        samplers = [
            ctx.Process(target=sample_events, args=(bench.hub.url, ids, start, end, queues[0])),
            ctx.Process(
                target=sample_tasks,
                args=(bench.hub.url, ids[: args.task_clients], start, end, queues[1]),
            ),
            ctx.Process(
                target=sample_tail, args=(bench.hosts, bench.host_files(), start, end, queues[2])
            ),
        ]
        for proc in samplers:
            proc.start()
        time.sleep(max(0.0, start - time.time()))
        load0 = os.getloadavg()[0]
        hub_pid = bench.hub.proc.pid if bench.hub.proc else 0
        cpu0 = cpu.process_seconds(hub_pid)
        streams0 = cpu.streams_seconds()
        spy = None
        if args.profile and bench.hub.proc is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(bench.hub.proc.pid), "--format", "raw",
                 "-o", args.profile, "-d", str(int(args.seconds)), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        time.sleep(args.seconds)
        load1 = os.getloadavg()[0]
        hub_cpu = (cpu.process_seconds(hub_pid) - cpu0) / args.seconds
        streams_cpu = (cpu.streams_seconds() - streams0) / args.seconds
        all_events, per_task, raw = (q.get(timeout=120) for q in queues)
        for proc in samplers:
            proc.join(10)
        if spy is not None:
            spy.wait(30)
        base_p99 = pct(raw, 99)
        print(
            f"== live logs: {args.tasks} tasks × {args.rate:g} lines/s over {args.hosts} "
            f"loopback sshd hosts, {args.seconds:g} s window, load {load0:.1f} → {load1:.1f} =="
        )
        print("line written on the host → seen by the client")
        print(f"  dobby  GET /events (all tasks)          {fmt(all_events)}")
        label = f"GET /tasks/{{id}}/events ({args.task_clients} tasks)"
        print(f"  dobby  {label:32} {fmt(per_task)}")
        print(f"  base   tail -n0 -F over asyncssh        {fmt(raw)}")
        ratio = pct(all_events, 99) / base_p99 if base_p99 else float("nan")
        print(
            f"  p99 ratio dobby/tail -F: {ratio:.1f}x;  CPU: hub {hub_cpu * 100:.0f}%, "
            f"the {args.hosts} hosts' log streams {streams_cpu * 100:.0f}% of a core"
        )
        expected = args.tasks * args.rate * args.seconds
        out: dict[str, Any] = {
            "tasks": args.tasks,
            "hosts": args.hosts,
            "rate": args.rate,
            "load": [round(load0, 2), round(load1, 2)],
            "events_p50_ms": pct(all_events, 50) * 1000,
            "events_p99_ms": pct(all_events, 99) * 1000,
            "events_seen_of_expected": len(all_events) / expected,
            "task_events_p50_ms": pct(per_task, 50) * 1000,
            "task_events_p99_ms": pct(per_task, 99) * 1000,
            "tail_p50_ms": pct(raw, 50) * 1000,
            "tail_p99_ms": base_p99 * 1000,
            "p99_ratio": ratio,
            "hub_cpu": hub_cpu,
            "streams_cpu": streams_cpu,
        }
        print(json.dumps(out))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
