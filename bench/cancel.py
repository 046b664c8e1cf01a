"""Cancel and stop at load, on real loopback sshd hosts, beside baselines from the same run.

With N running tasks (``sleep``) over H hosts, the hub running as its own process:
  1. SIGTERM → the hub process exits (twice: all hosts answering, then with one host's sshd
     frozen by SIGSTOP, its connection half dead); every task's tmux session still alive
     afterwards, and all N running again after the next start.
  2. cancel each task (C client threads): p50/p99 of the API answer, of "session gone" (a tmux
     ``session-closed`` hook on each host writes the time each session ends: the host's truth,
     no polling) and of the hub's confirmation (the ``task.updated`` with what the run left).
  3. baselines on N plain tmux sessions in the same hosts, the same concurrency: a fresh
     ``ssh host tmux kill-session`` process per session, and ``tmux kill-session`` on a warm
     asyncssh connection per host (what a hub that holds its connections could do at best).

Run as root (it starts sshd and creates test users): ``python bench/cancel.py [--tasks 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

from bench.dispatch import fmt, submit_spread  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from dobby.client.http import HubClient  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster, SshHost  # noqa: E402
from tests.fixtures.wait import wait_until  # noqa: E402

CLOSED_LOG = ".dobby-bench-closed"  # in each host user's home: "<session> <epoch>" per line


def hook_command() -> str:
    """Return the shell line that makes a host's tmux server log each session's end."""
    return (
        f"rm -f ~/{CLOSED_LOG}; "
        f"echo 'echo \"$1 $(date +%s.%N)\" >> ~/{CLOSED_LOG}' > ~/{CLOSED_LOG}.sh; "
        f"tmux set-hook -g session-closed 'run-shell \"bash ~/{CLOSED_LOG}.sh "
        "#{hook_session_name}\"'"
    )


def closed_times(hosts: Iterable[SshHost]) -> dict[str, float]:
    """Return when each tmux session ended, as the hosts' hooks wrote it down."""
    seen: dict[str, float] = {}
    for host in hosts:
        path = host.home / CLOSED_LOG
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            name, _, at = line.partition(" ")
            try:
                seen.setdefault(name, float(at))
            except ValueError:
                continue
    return seen


def sessions_alive(host: SshHost) -> set[str]:
    out = subprocess.run(
        host.ssh_argv("tmux ls -F '#{session_name}' 2>/dev/null; true"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def serving(host: SshHost) -> list[int]:
    """Return the sshd processes serving the host's open connections (not the listener)."""
    assert host.pid is not None
    out = subprocess.run(
        ["pgrep", "-P", str(host.pid)], capture_output=True, text=True, check=False
    ).stdout
    children = [int(p) for p in out.split()]
    grand = []
    for pid in children:
        more = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        grand += [int(p) for p in more.split()]
    return children + grand


class Updates:
    """Record when each task's ``task.updated`` events arrive on GET /events (perf_counter)."""

    def __init__(self, client: HubClient) -> None:
        self.seen: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._run, args=(client,), daemon=True).start()

    def _run(self, client: HubClient) -> None:
        for event in client.events(since=None, give_up_after=3600):
            if event.get("type") == "task.updated" and event.get("task_id"):
                with self.lock:
                    self.seen.setdefault(event["task_id"], []).append(time.perf_counter())

    def first_after(self, task_id: str, start: float) -> float | None:
        with self.lock:
            return next((t for t in self.seen.get(task_id, ()) if t > start), None)


class HealthProbe:
    """Time GET /health every 100 ms in a thread: how fast the hub answers anything now."""

    def __init__(self, client: HubClient) -> None:
        self.took: list[float] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()

    def _run(self, client: HubClient) -> None:
        while self.running:
            t0 = time.perf_counter()
            client.health()
            self.took.append(time.perf_counter() - t0)
            time.sleep(0.1)

    def stop(self) -> list[float]:
        self.running = False
        self.thread.join()
        return self.took


def timed_calls(calls: list[Callable[[], Any]], threads: int) -> list[tuple[float, float, float]]:
    """Run ``calls`` on ``threads`` threads; return (start epoch, start perf_counter, seconds)."""

    def one(call: Callable[[], Any]) -> tuple[float, float, float]:
        start, t0 = time.time(), time.perf_counter()
        call()
        return start, t0, time.perf_counter() - t0

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, calls))


def sigterm(hub: HubProcess) -> float:
    """Send SIGTERM; return the seconds until the hub process is gone."""
    proc = hub.proc
    assert proc is not None
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    return time.perf_counter() - t0


def python_pass() -> float:
    """Return how long ``python -c pass`` takes here now (a process's own start and exit)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def stopped_in(hub: HubProcess) -> str:
    """Return the hub's own figure for its last stop ("stopped in N s"), from its log."""
    found = [ln for ln in hub.log().splitlines() if "dobby hub stopped in" in ln]
    return found[-1].rsplit(" ", 1)[-1] if found else "?"


def running_count(hub: HubProcess) -> int:
    return int(hub.client().health()["tasks"]["running"])


async def warm_kills(hosts: list[SshHost], names: list[str], threads: int) -> list[float]:
    """Return how long ``tmux kill-session`` took for each session on a warm connection."""
    conns = [await asyncssh.connect(**h.connect_options()) for h in hosts]
    gate = asyncio.Semaphore(threads)
    took: list[float] = []

    async def one(i: int, name: str) -> None:
        async with gate:
            t0 = time.perf_counter()
            await conns[i % len(hosts)].run(f"tmux kill-session -t {name}")
            took.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    finally:
        for conn in conns:
            conn.close()
    return took


async def start_plain(hosts: list[SshHost], names: list[str]) -> None:
    """Start one plain tmux session per name, spread over ``hosts`` like the tasks."""
    for k, host in enumerate(hosts):
        mine = [n for i, n in enumerate(names) if i % len(hosts) == k]
        async with asyncssh.connect(**host.connect_options()) as conn:
            script = "; ".join(f"tmux new-session -d -s {n} 'sleep 600'" for n in mine)
            res = await conn.run(script or "true")
            assert res.exit_status == 0, res.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4, help="client threads cancelling")
    args = parser.parse_args()
    per_host = -(-args.tasks // args.hosts)

    work = scratch_dir("dobby-bench-cancel-")
    with SshdCluster(count=args.hosts, user_prefix="dobbyc") as cluster:
        hosts = cluster.hosts
        inv = write_inventory(
            work / "inventory.yaml", [h.inventory_entry(max_agents=per_host) for h in hosts]
        )
        home = work / "home"
        home.mkdir()
        (home / "dobby.yaml").write_text(f"max_concurrent_agents: {args.tasks}\n")
        hub = HubProcess(home=home, inventory=inv).start()
        try:
            client = hub.client()
            print(
                f"== cancel and stop: {args.tasks} running tasks over {args.hosts} loopback sshd "
                f"hosts, hub as a process; load average {os.getloadavg()[0]:.2f} =="
            )
            t0 = time.perf_counter()
            ids = submit_spread(
                client, "sleep 600", [h.name for h in hosts[: args.hosts]], args.tasks
            )
            wait_until(
                lambda: running_count(hub) == args.tasks, what="every task running", timeout=600
            )
            print(f"   {args.tasks} tasks running after {time.perf_counter() - t0:.1f} s")

            # 1. SIGTERM at full load, then with one host frozen.
            stops = [sigterm(hub)]
            inner = [stopped_in(hub)]
            alive = set().union(*(sessions_alive(h) for h in hosts))
            kept = sum(f"dobby-{t}" in alive for t in ids)
            hub.start()
            wait_until(lambda: running_count(hub) == args.tasks, what="re-adoption", timeout=120)
            frozen = serving(hosts[0])
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):  # a connection that just ended
                    os.kill(pid, signal.SIGSTOP)
            try:
                stops.append(sigterm(hub))
                inner.append(stopped_in(hub))
            finally:
                for pid in frozen:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            t0 = time.perf_counter()
            hub.start()
            wait_until(lambda: running_count(hub) == args.tasks, what="re-adoption", timeout=120)
            readopt = time.perf_counter() - t0
            print("1. SIGTERM with every task running")
            print(
                f"   hub exit after SIGTERM             {stops[0]:6.2f} s (goal ≤ 3 s; the hub's "
                f"stop itself {inner[0]})"
            )
            print(
                f"   ...with {hosts[0].name}'s sshd frozen (SIGSTOP)  {stops[1]:6.2f} s "
                f"(its stop {inner[1]})"
            )
            print(f"   base   `python -c pass`            {python_pass():6.2f} s")
            print(f"   sessions alive after the stop      {kept}/{args.tasks}")
            for line in hub.log().splitlines():
                if "did not stop" in line or "cut short" in line:
                    print(f"   hub log: {line[:160]}")
            print(f"   running again after restart        {readopt:6.2f} s (start → all running)")

            # 2. cancel each one.
            for host in hosts:
                subprocess.run(host.ssh_argv(hook_command()), check=True)
            updates = Updates(client)
            time.sleep(1)  # the event stream is open before the first cancel
            probe = HealthProbe(client)
            calls = timed_calls([lambda t=t: client.cancel(t) for t in ids], args.threads)
            health = probe.stop()
            starts = [c[0] for c in calls]
            answers = [c[2] for c in calls]
            wait_until(
                lambda: len(closed_times(hosts).keys() & {f"dobby-{t}" for t in ids}) == len(ids),
                what="every session to end",
                timeout=300,
            )
            closed = closed_times(hosts)
            gone = [closed[f"dobby-{t}"] - s for t, s in zip(ids, starts, strict=True)]
            # Collected: the first task.updated after the cancel (the cancel itself is a
            # task.finished), carrying the run's session, tokens, exit code and branch.
            wait_until(
                lambda: all(updates.first_after(t, c[1]) for t, c in zip(ids, calls, strict=True)),
                what="every cancelled task to be collected",
                timeout=300,
            )
            confirmed = [
                (updates.first_after(t, c[1]) or 0.0) - c[1]
                for t, c in zip(ids, calls, strict=True)
            ]
            tasks = [client.task(t) for t in ids]
            not_cancelled = sum(t["status"] != "cancelled" for t in tasks)
            with_exit = sum(t["exit_code"] is not None for t in tasks)

            print(f"2. cancel each of {args.tasks} running tasks ({args.threads} client threads)")
            print(f"   dobby  POST /cancel answered        {fmt(answers)}")
            print(f"   dobby  tmux session gone (host)     {fmt(gone)}")
            print(f"   dobby  collected (task.updated)     {fmt(confirmed)}")
            print(
                f"          {args.tasks - not_cancelled}/{args.tasks} cancelled, "
                f"{with_exit} with the agent's exit code collected"
            )
            print(f"   base   GET /health meanwhile        {fmt(health)}")
            # 3. baselines: the same number of plain sessions, the same concurrency.
            names = [f"base-{i}" for i in range(args.tasks)]
            asyncio.run(start_plain(hosts, names))
            ssh_calls = timed_calls(
                [
                    lambda i=i, n=n: subprocess.run(
                        hosts[i % args.hosts].ssh_argv(f"tmux kill-session -t {n}"), check=False
                    )
                    for i, n in enumerate(names)
                ],
                args.threads,
            )
            ssh_starts = [c[0] for c in ssh_calls]
            ssh_took = [c[2] for c in ssh_calls]
            warm_names = [f"warm-{i}" for i in range(args.tasks)]
            asyncio.run(start_plain(hosts, warm_names))
            warm_took = asyncio.run(warm_kills(hosts, warm_names, args.threads))
            closed = closed_times(hosts)
            ssh_gone = [
                closed[n] - s for n, s in zip(names, ssh_starts, strict=True) if n in closed
            ]

            print(f"   base   `ssh host tmux kill-session`  {fmt(ssh_took)}")
            print(f"   base   ...session gone (host)       {fmt(ssh_gone)}")
            print(f"   base   warm asyncssh kill-session    {fmt(warm_took)}")
            p99 = sorted(answers)[int(0.99 * (len(answers) - 1))]
            base99 = sorted(ssh_took)[int(0.99 * (len(ssh_took) - 1))]
            print(f"   ratio  dobby answer p99 / ssh kill-session p99 = {p99 / base99:.2f}")
            print(f"   load average at the end {os.getloadavg()[0]:.2f}")
        finally:
            hub.stop()


if __name__ == "__main__":
    main()
