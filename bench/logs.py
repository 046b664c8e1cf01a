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
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

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

    def __init__(self) -> None:
        self.start = float("inf")
        self.end = float("inf")
        self.values: list[float] = []
        self.lock = threading.Lock()

    def add(self, text: str, now: float) -> None:
        for line in text.splitlines():
            try:
                stamp = float(line)
            except ValueError:
                continue
            if self.start <= stamp < self.end:
                with self.lock:
                    self.values.append(now - stamp)


class Samplers:
    """SSE clients on /events and on some tasks' /tasks/{id}/events, each in a thread."""

    def __init__(self, client: HubClient) -> None:
        self.all = Window()
        self.per_task = Window()
        self.started: dict[str, float] = {}
        self.cond = threading.Condition()
        self._ids: set[str] = set()
        self._client = client
        threading.Thread(target=self._events, args=(client,), daemon=True).start()

    def watch(self, ids: list[str], task_clients: int) -> None:
        """Count these tasks' lines; follow the first ``task_clients`` on their own streams."""
        self._ids.update(ids)
        for tid in ids[:task_clients]:
            threading.Thread(target=self._task, args=(self._client, tid), daemon=True).start()

    def _events(self, client: HubClient) -> None:
        for event in client.events(since=None, give_up_after=3600):
            now = time.time()
            tid = event.get("task_id") or ""
            if event.get("type") == "task.started":
                with self.cond:
                    self.started[tid] = now
                    self.cond.notify_all()
            elif event.get("type") == "task.log" and tid in self._ids:
                for ev in (event.get("data") or {}).get("events", []):
                    self.all.add(ev.get("text") or "", now)

    def _task(self, client: HubClient, tid: str) -> None:
        for kind, data in client.follow(tid, give_up_after=3600):
            if kind == "log":
                self.per_task.add(data.get("text") or "", time.time())

    def wait_started(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while missing := [t for t in ids if t not in self.started]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} of {len(ids)} tasks did not start")
                self.cond.wait(left)


async def tail_lines(
    hosts: list[SshHost], files: dict[str, list[str]], window: Window, stop: asyncio.Event
) -> None:
    """Follow every task's host file with `tail -n0 -F` over one connection per host."""

    async def one(host: SshHost) -> None:
        if not files.get(host.name):
            return
        async with asyncssh.connect(**host.connect_options()) as conn:
            command = "tail -q -n0 -F " + " ".join(files[host.name])
            async with conn.create_process(command, stderr=asyncssh.DEVNULL) as proc:
                while not stop.is_set():
                    try:
                        line = await asyncio.wait_for(proc.stdout.readline(), 0.5)
                    except TimeoutError:
                        continue
                    if not line:
                        return
                    window.add(line, time.time())
                proc.terminate()

    await asyncio.gather(*(one(h) for h in hosts))


class Bench:
    """Hosts, a hub and chatty tasks for a live-log or recovery measurement."""

    def __init__(self, *, hosts: int, per_host: int, user_prefix: str = "dobbyl") -> None:
        self.work = Path(tempfile.mkdtemp(prefix="dobby-bench-"))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--rate", type=float, default=5.0, help="lines per second per task")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--task-clients", type=int, default=5)
    args = parser.parse_args()

    per_host = -(-args.tasks // args.hosts)
    bench = Bench(hosts=args.hosts, per_host=per_host)
    try:
        client = bench.start()
        samplers = Samplers(client)
        time.sleep(0.5)  # connected before the first task starts
        ids = bench.submit(client, args.tasks, args.rate)
        samplers.watch(ids, args.task_clients)
        samplers.wait_started(ids, timeout=300)
        raw = Window()
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        tail = threading.Thread(
            target=loop.run_until_complete,
            args=(tail_lines(bench.hosts, bench.host_files(), raw, stop),),
            daemon=True,
        )
        tail.start()
        time.sleep(args.warmup)
        start = time.time()
        for window in (samplers.all, samplers.per_task, raw):
            window.start, window.end = start, start + args.seconds
        load0 = os.getloadavg()[0]
        time.sleep(args.seconds + 2.0)  # lines of the window's end still on their way
        load1 = os.getloadavg()[0]
        loop.call_soon_threadsafe(stop.set)
        tail.join(5)
        base_p99 = pct(raw.values, 99)
        print(
            f"== live logs: {args.tasks} tasks × {args.rate:g} lines/s over {args.hosts} "
            f"loopback sshd hosts, {args.seconds:g} s window, load {load0:.1f} → {load1:.1f} =="
        )
        print("line written on the host → seen by the client")
        print(f"  dobby  GET /events (all tasks)          {fmt(samplers.all.values)}")
        per_task = f"GET /tasks/{{id}}/events ({args.task_clients} tasks)"
        print(f"  dobby  {per_task:32} {fmt(samplers.per_task.values)}")
        print(f"  base   tail -n0 -F over asyncssh        {fmt(raw.values)}")
        ratio = pct(samplers.all.values, 99) / base_p99 if base_p99 else float("nan")
        print(f"  p99 ratio dobby/tail -F: {ratio:.1f}x")
        expected = args.tasks * args.rate * args.seconds
        out: dict[str, Any] = {
            "tasks": args.tasks,
            "hosts": args.hosts,
            "rate": args.rate,
            "load": [round(load0, 2), round(load1, 2)],
            "events_p50_ms": pct(samplers.all.values, 50) * 1000,
            "events_p99_ms": pct(samplers.all.values, 99) * 1000,
            "events_seen_of_expected": len(samplers.all.values) / expected,
            "task_events_p50_ms": pct(samplers.per_task.values, 50) * 1000,
            "task_events_p99_ms": pct(samplers.per_task.values, 99) * 1000,
            "tail_p50_ms": pct(raw.values, 50) * 1000,
            "tail_p99_ms": base_p99 * 1000,
            "p99_ratio": ratio,
        }
        print(json.dumps(out))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
