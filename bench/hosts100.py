"""100 hosts, 1,000 running tasks: the API a user hits and the hub's memory, beside an idle hub.

One hub process with H loopback sshd hosts (default 100) in its inventory. Measured twice in
the same run, on the same hub: first with nothing running (the baseline), then with N
long-running shell tasks (default 1,000 ``sleep``, spread evenly) running on those hosts:
  API    p50/p99 of GET /tasks?limit=50, GET /tasks/{id}, GET /hosts, GET /stats,
         GET /results?limit=50, POST /tasks (a ``true`` task) and GET /health, each request a
         fresh connection from ``--clients`` client threads, as the CLI makes them
  RSS    the hub's resident memory: idle, peak while the tasks run (VmHWM, from /proc)
  CPU    what following the N tasks costs with nobody calling (``--quiet`` seconds), as a
         share of a core: the hub's, and the hosts' log streams, tmux servers and sshd
Goal (issue 15): API p99 ≤ 100 ms and RSS ≤ 300 MB with 1,000 running over 100 hosts.
At the end the hub stops and every sshd, tmux server and task process of the test users is
killed, also when the run fails (``--cancel`` first cancels every task through the API).
Run as root (it starts sshd and creates test users): `python bench/hosts100.py
[--hosts 100 --tasks 1000 --rounds 100 --profile hub.txt --hosts-weight 128]`. The hosts share
the hub's cores here; ``--hosts-weight`` gives them, and all they start, a smaller share of the
CPU, as machines of their own would leave the hub all of its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import by_part, parts_share, process_seconds, waited_seconds, weigh_down  # noqa: E402
from bench.dispatch import pct, submit_spread  # noqa: E402
from bench.recovery import SHARED_DISK  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from dobby.client.http import HubClient  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster, user_processes  # noqa: E402
from tests.fixtures.wait import wait_until  # noqa: E402

ENDPOINTS = (
    "GET /tasks?limit=50",
    "GET /tasks/{id}",
    "GET /hosts",
    "GET /stats",
    "GET /results?limit=50",
    "POST /tasks",
    "GET /health",
)


def memory(pid: int) -> dict[str, int]:
    """Return the process's VmRSS and VmHWM (peak) in KiB, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class RssWatch:
    """Sample a process's RSS every 100 ms in a thread; keep the largest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak_kib = max(self.peak_kib, memory(self.pid).get("VmRSS", 0))
            time.sleep(0.1)

    def reset(self) -> None:
        self.peak_kib = memory(self.pid).get("VmRSS", 0)

    def stop(self) -> None:
        self.running = False
        self.thread.join()


def requests(client: HubClient, hosts: list[str], ids: list[str]) -> dict[str, Callable[[], Any]]:
    """Return one call per measured endpoint (ids: tasks GET /tasks/{id} picks from)."""
    return {
        "GET /tasks?limit=50": lambda: client.tasks(limit=50),
        "GET /tasks/{id}": lambda: client.task(random.choice(ids)),
        "GET /hosts": client.hosts,
        "GET /stats": client.stats,
        "GET /results?limit=50": lambda: client.results(limit=50),
        "POST /tasks": lambda: client.add_task(
            prompt="true", backend="shell", host=random.choice(hosts)
        ),
        "GET /health": client.health,
    }


def measure(
    client: HubClient, hosts: list[str], ids: list[str], rounds: int, clients: int
) -> dict[str, list[float]]:
    """Time ``rounds`` calls of every endpoint, interleaved, from ``clients`` threads; each
    call a client of its own, as each CLI command is (a client keeps its connection)."""
    plan = [name for _ in range(rounds) for name in ENDPOINTS]
    random.shuffle(plan)

    def one(name: str) -> tuple[str, float]:
        with HubClient(url=client.url) as fresh:
            call = requests(fresh, hosts, ids)[name]  # built before the clock starts
            t0 = time.perf_counter()
            call()
            return name, time.perf_counter() - t0

    took: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
    with ThreadPoolExecutor(clients) as pool:
        for name, seconds in pool.map(one, plan):
            took[name].append(seconds)
    return took


def ms(values: list[float], q: float) -> float:
    return pct(values, q) * 1000


def cancel_all(client: HubClient, ids: list[str]) -> None:
    """Cancel every task of ``ids`` that has not finished (4 client threads)."""

    def one(tid: str) -> None:
        try:
            client.cancel(tid)
        except Exception:  # noqa: BLE001 - finished meanwhile: nothing to cancel
            pass

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, ids))


def left_behind(cluster: SshdCluster) -> int:
    """Return how many processes the hosts' users still have (tmux, sleep, sshd...)."""
    return sum(len(user_processes(h.user)) for h in cluster.hosts)


def wait_idle(client: HubClient) -> None:
    """Wait until no task of the hub runs or waits."""

    def idle() -> bool:
        tasks = client.health()["tasks"]
        return bool(tasks["running"] == 0 and tasks["pending"] == 0)

    wait_until(idle, what="the warm-up tasks to finish", timeout=300)


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Print the table: each endpoint idle (the baseline) and with the tasks running."""
    print(
        f"== {args.tasks} running tasks over {args.hosts} loopback sshd hosts, one hub "
        f"process; {args.clients} client thread(s), {args.rounds} calls per endpoint =="
    )
    print(
        f"   sshd hosts up in {figures['hosts_up_s']:.1f} s; all probed reachable "
        f"{figures['reachable_s']:.1f} s after the hub answered; {args.tasks} running "
        f"{figures['all_running_s']:.1f} s after the first submit ({figures['running']} "
        "running while measured)"
    )
    load = figures["load"]
    print(f"   load average: idle phase {load[0]:.1f}, loaded phase {load[1]:.1f} → {load[2]:.1f}")
    print(f"   {'':24} {'idle hub (base)':>22}   {f'{args.tasks} running':>22}   p99 ratio")
    print(f"   {'':24} {'p50':>10} {'p99':>10} ms   {'p50':>10} {'p99':>10} ms")
    for name in ENDPOINTS:
        f = figures["endpoints"][name]
        print(
            f"   {name:24} {f['idle_p50_ms']:10.1f} {f['idle_p99_ms']:10.1f}      "
            f"{f['busy_p50_ms']:10.1f} {f['busy_p99_ms']:10.1f}      "
            f"{f['busy_p99_ms'] / f['idle_p99_ms']:5.1f}x"
        )
    worst, peak = figures["worst_p99_ms"], figures["rss_peak_mb"]
    print(
        f"   worst p99 with {args.tasks} running: {worst:.1f} ms (goal ≤ 100 ms)"
        f"{'' if worst <= 100 else '  MISSED'}"
    )
    print(
        f"   hub RSS: idle {figures['rss_idle_mb']:.0f} MB, with {args.tasks} running "
        f"{figures['rss_busy_mb']:.0f} MB, peak {peak:.0f} MB (goal ≤ 300 MB)"
        f"{'' if peak <= 300 else '  MISSED'}"
    )
    cpu = figures["hub_cpu"]
    print(
        f"   hub CPU: idle phase {cpu['idle'] * 100:.0f}% of a core while called; with "
        f"{args.tasks} running {cpu['quiet'] * 100:.0f}% uncalled, {cpu['called'] * 100:.0f}% "
        "called"
    )
    print(
        f"   with {args.tasks} running, nobody calling ({args.quiet:.0f} s), % of a core, own + "
        f"reaped children's: {figures['quiet_parts']}"
    )
    waited = figures["hub_waited"]
    # Runnable but on no CPU: on this machine the hub shares its cores with every host.
    print(
        f"   hub's loop waited for a CPU: idle phase {waited['idle'] * 1000:.0f} ms per s "
        f"called, with {args.tasks} running {waited['called'] * 1000:.0f} ms per s called"
        + (f" (hosts at CPU weight {args.hosts_weight})" if args.hosts_weight else "")
    )
    shape = {
        "hosts": args.hosts,
        "tasks": args.tasks,
        "clients": args.clients,
        "hosts_weight": args.hosts_weight,
    }
    print(json.dumps({**shape, **figures}))


def run(args: argparse.Namespace, cluster: SshdCluster, work: Path, hosts_up: float) -> None:
    """Start the hub on the cluster, measure it idle and with the tasks running; report."""
    per_host = -(-args.tasks // args.hosts)
    names = [h.name for h in cluster.hosts]
    # Room on each host for the tasks POST /tasks adds while the others run.
    inv = write_inventory(
        work / "inventory.yaml", [h.inventory_entry(max_agents=per_host + 5) for h in cluster.hosts]
    )
    home = work / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text(
        f"max_concurrent_agents: {(per_host + 5) * args.hosts}\n{SHARED_DISK}", encoding="utf-8"
    )
    hub = HubProcess(home=home, inventory=inv).start()
    ids: list[str] = []
    try:
        assert hub.proc is not None
        pid = hub.proc.pid
        client = hub.client()
        rss = RssWatch(pid)
        t0 = time.perf_counter()
        wait_until(
            lambda: all(h["reachable"] for h in client.hosts()["hosts"]),
            what="every host probed reachable",
            timeout=300,
        )
        reachable = time.perf_counter() - t0
        # A few finished tasks to look at while idle (GET /tasks/{id}).
        warm = submit_spread(client, "true", names, min(args.hosts, 20))
        wait_idle(client)
        time.sleep(args.settle)
        load_idle = os.getloadavg()[0]
        cpu0, w0, c0 = process_seconds(pid), waited_seconds(pid), time.perf_counter()
        idle = measure(client, names, warm, args.rounds, args.clients)
        idle_cpu = (process_seconds(pid) - cpu0) / (time.perf_counter() - c0)
        idle_wait = (waited_seconds(pid) - w0) / (time.perf_counter() - c0)
        idle_rss = memory(pid)

        t0 = time.perf_counter()
        ids = submit_spread(client, "sleep 600", names, args.tasks)
        wait_until(
            lambda: client.health()["tasks"]["running"] >= args.tasks,
            what=f"{args.tasks} tasks running",
            timeout=1800,
            interval=1.0,
        )
        all_running = time.perf_counter() - t0
        time.sleep(args.settle)
        rss.reset()
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--format", "raw", "-o", args.profile,
                 "--duration", "20", "--rate", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        load_busy = os.getloadavg()[0]
        cpu0, c0, parts0 = process_seconds(pid), time.perf_counter(), by_part(pid)
        time.sleep(args.quiet)  # what following N tasks costs, nobody calling
        quiet = time.perf_counter() - c0
        quiet_cpu = (process_seconds(pid) - cpu0) / quiet
        quiet_parts = parts_share(parts0, quiet, pid)
        cpu0, w0, c0 = process_seconds(pid), waited_seconds(pid), time.perf_counter()
        busy = measure(client, names, ids, args.rounds, args.clients)
        busy_cpu = (process_seconds(pid) - cpu0) / (time.perf_counter() - c0)
        busy_wait = (waited_seconds(pid) - w0) / (time.perf_counter() - c0)
        load_end = os.getloadavg()[0]
        if spy is not None:
            spy.wait(60)
        rss.stop()
        busy_rss = memory(pid)
        endpoints = {
            name: {
                "idle_p50_ms": ms(idle[name], 50),
                "idle_p99_ms": ms(idle[name], 99),
                "busy_p50_ms": ms(busy[name], 50),
                "busy_p99_ms": ms(busy[name], 99),
            }
            for name in ENDPOINTS
        }
        report(
            args,
            {
                "hosts_up_s": hosts_up,
                "reachable_s": reachable,
                "all_running_s": all_running,
                "running": client.health()["tasks"]["running"],
                "load": [round(load_idle, 2), round(load_busy, 2), round(load_end, 2)],
                "endpoints": endpoints,
                "worst_p99_ms": max(e["busy_p99_ms"] for e in endpoints.values()),
                "rss_idle_mb": idle_rss.get("VmRSS", 0) / 1024,
                "rss_busy_mb": busy_rss.get("VmRSS", 0) / 1024,
                "rss_peak_mb": max(rss.peak_kib, busy_rss.get("VmHWM", 0)) / 1024,
                "hub_cpu": {"idle": idle_cpu, "quiet": quiet_cpu, "called": busy_cpu},
                "quiet_parts": quiet_parts,
                "hub_waited": {"idle": idle_wait, "called": busy_wait},
            },
        )
        if args.cancel:
            t0 = time.perf_counter()
            cancel_all(client, ids)
            print(
                f"   cancelled {len(ids)} running tasks through the API in "
                f"{time.perf_counter() - t0:.1f} s (4 client threads)"
            )
    finally:
        hub.stop()  # the tasks go on running: the cluster's close ends them all


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100, help="calls of each endpoint")
    parser.add_argument("--clients", type=int, default=2, help="client threads calling")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--quiet", type=float, default=10.0, help="seconds measured with nobody calling"
    )
    parser.add_argument("--profile", help="record the hub with py-spy into this file (raw)")
    parser.add_argument(
        "--cancel", action="store_true", help="cancel every task through the API at the end"
    )
    parser.add_argument(
        "--hosts-weight",
        type=int,
        help="put the sshd hosts and all they start in a cgroup of this CPU weight (1024: a "
        "session's): they stand in for machines with CPUs of their own",
    )
    args = parser.parse_args()

    work = scratch_dir("dobby-bench-hosts-")
    t0 = time.perf_counter()
    cluster = SshdCluster(count=args.hosts, user_prefix="dobbyh")
    group = None
    try:
        if args.hosts_weight:
            group = weigh_down([h.pid for h in cluster.hosts if h.pid], args.hosts_weight)
            if group is None:
                sys.exit("--hosts-weight needs root and a v1 cpu cgroup (/sys/fs/cgroup/cpu)")
        run(args, cluster, work, time.perf_counter() - t0)
    finally:
        t0 = time.perf_counter()
        cluster.close()  # every sshd, and every process of the test users: tmux, the tasks
        print(
            f"   hosts closed in {time.perf_counter() - t0:.1f} s; processes of the test users "
            f"left: {left_behind(cluster)}"
        )
        if group is not None:
            try:
                group.rmdir()
            except OSError:
                pass  # a process of it still ends


if __name__ == "__main__":
    main()
