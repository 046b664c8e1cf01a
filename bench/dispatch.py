"""Dispatch benchmark on real loopback sshd hosts, printed beside baselines from the same run.

Measures (the hub runs as its own process, as `dobby start` would):
  1. submit → running (tmux session started on the host, `task.started` seen on /events)
     p50/p99 on warm connections; baselines: a warm asyncssh `run('true')` and a warm
     `tmux new-session -d` + kill.
  2. wall time for N `true` shell tasks spread over H hosts, how long each held its slot, and
     the CPU each task cost (hub, hosts and all: this benchmark runs in a cgroup of its own
     when the machine lets it, see bench/cpu.py); baselines: the lean asyncssh loop of the
     issue (one warm connection per host, max-agents at once per host, each task one exec
     carrying its prompt, env and run.sh in its text and starting run.sh in tmux, then one SFTP
     stat of its exit file every 20 ms), run before Dobby's part and after it (Dobby is
     compared with their mean), the same with the prompt alone (no env, no output
     kept, no time limit), the same without tmux (a floor: nothing to attach to or follow),
     and a sequential `ssh host true` loop (timed over ``--ssh-loop`` commands).
  3. the same N tasks as one ``POST /batches``: when the hub marks the first of them running
     (and when /events shows it), and the wall time.
  4. a line written on the host → visible on GET /tasks/{id}/events: p50/p99.
  5. Dobby's launch command on one host, two at a time: through the host's log stream (how
     the hub launches) beside an exec each (how it launched before, and still does for files
     over 64 KiB): launches/s, and the CPU per launch of this process (the hub's side) and of
     everything.

Run as root (it starts sshd and creates test users):
`python bench/dispatch.py [--tasks 1000 --hosts 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

from bench import cpu  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from dobby.client.http import HubClient  # noqa: E402
from dobby.core.timefmt import parse_time  # noqa: E402
from dobby.hostside import scripts  # noqa: E402
from dobby.runner.streams import HostStreams  # noqa: E402
from dobby.transport import SshTransport  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def submit_spread(client: HubClient, prompt: str, hosts: list[str], count: int) -> list[str]:
    """Submit ``count`` shell tasks round-robin over ``hosts`` from 4 client threads at once."""
    with ThreadPoolExecutor(4) as pool:
        return list(
            pool.map(
                lambda i: client.add_task(
                    prompt=prompt, backend="shell", host=hosts[i % len(hosts)]
                )["id"],
                range(count),
            )
        )


def create_cost(where: Path, count: int = 200) -> float:
    """Return the seconds one new directory in ``where`` costs now (they are kept: no deletion
    of the benchmark's own makes the next ones slower).

    On ext4 without a journal each new inode is searched for past every one freed in the last
    minute (five while its table is not written back): files made just after a run deleted
    its users' homes cost several times more, the hosts' tasks and the hub's included.
    """
    where.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(count):
        (where / str(i)).mkdir()
    return (time.perf_counter() - t0) / count


def started_at(task: dict[str, Any]) -> float:
    """Return when the hub marked ``task`` running, in epoch seconds."""
    return parse_time(task["started_at"]).timestamp()


def fmt(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1000:7.1f} ms   p99 {pct(values, 99) * 1000:7.1f} ms   "
        f"(n={len(values)})"
    )


class EventWatcher:
    """Record when each (event type, task id) first arrives on GET /events."""

    def __init__(self, client: HubClient) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self.thread.start()

    def _run(self, client: HubClient) -> None:
        kinds = ("task.started", "task.finished")  # what it waits for: the hub sends only these
        for event in client.events(since=None, types=kinds, give_up_after=3600):
            key = (event.get("type", ""), event.get("task_id") or "")
            with self.cond:
                self.seen.setdefault(key, time.perf_counter())
                self.cond.notify_all()

    def wait(self, kind: str, task_id: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (kind, task_id) not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{kind} of {task_id} not seen")
                self.cond.wait(left)
            return self.seen[(kind, task_id)]


async def warm_baselines(host, rounds: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    runs, tmux = [], []
    async with asyncssh.connect(**host.connect_options()) as conn:
        await conn.run("true")
        for _ in range(rounds):
            t0 = time.perf_counter()
            await conn.run("true")
            runs.append(time.perf_counter() - t0)
        for i in range(rounds):
            t0 = time.perf_counter()
            await conn.run(f"tmux -L dobby-bench new-session -d -s bench-{i} 'sleep 5'")
            tmux.append(time.perf_counter() - t0)
        await conn.run("tmux -L dobby-bench kill-server 2>/dev/null; true")
    return runs, tmux


LEAN_WAYS = ("run.sh", "prompt", "floor")


def lean_files(home: str, i: int) -> tuple[str, list[str]]:
    """Return the task dir of lean task ``i`` and its prompt.md, env and run.sh texts.

    run.sh is the one Dobby writes for a shell task with the default time limit: the host's
    work the design asks of every task (env loaded, output into out.jsonl and the pane, the
    time limit kept without the hub, ``exit`` written last by tmp + mv).
    """
    paths = scripts.TaskPaths(workdir=f"{home}/lean", task_id=str(i))
    run_sh = scripts.render_run_sh(
        paths=paths, argv=["bash", "-c", scripts.PROMPT], timeout=3600, cwd=paths.worktree
    )
    return paths.task_dir, ["true", "", run_sh]


async def lean_loop(  # type: ignore[no-untyped-def]
    hosts,
    tasks: int,
    per_host: int,
    *,
    way: str,
    run: int = 0,
    ended: Callable[[], object] | None = None,
) -> float:
    """Return the wall time of a lean asyncssh loop for ``tasks`` tasks over ``hosts``.

    Its files are set aside (``lean.<run>``), not deleted: see :func:`remove_lean`. ``ended``
    is called once every task ended, before its tmux servers and connections go (with them,
    what their processes used).

    One warm connection per host, ``per_host`` tasks at once per host, each launched by one
    exec that writes its files, then followed by one SFTP stat of its exit file every 20 ms.
    ``way``:
      run.sh  the issue's lean sequence: the exec carries prompt.md, env and run.sh (Dobby's,
              see :func:`lean_files`) in its own text and starts run.sh in a tmux session
      prompt  the exec carries the prompt only and tmux runs it with ``echo $? >exit`` after:
              no env, no output kept, no time limit, an exit file written in place
      floor   the exec runs the prompt itself: no session, nothing to follow
    """
    conns = [await asyncssh.connect(**h.connect_options()) for h in hosts]
    homes = [h.home for h in hosts]
    try:
        for conn in conns:
            await conn.run("true")
            if way != "floor":  # a warm server, as Dobby keeps one
                await conn.run(
                    "tmux -L lean new-session -d -s keep 'sleep 3600' \\; "
                    "set-option -g exit-empty off"
                )
            if way == "run.sh":
                # run.sh's cache of the login environment, fresh, as a Dobby host has one
                # (a task reads the login shell's again once a minute)
                await conn.run(
                    "mkdir -p lean && { printf '#%s\\n' \"$(date +%s)\"; "
                    "tail -n +2 .dobby/login.env; } >lean/login.env",
                    check=True,
                )
        sftps = [await c.start_sftp_client() for c in conns] if way != "floor" else []
        gates = [asyncio.Semaphore(per_host) for _ in hosts]

        async def one(i: int) -> None:
            k = i % len(hosts)
            async with gates[k]:
                if way == "floor":
                    res = await conns[k].run(
                        f"d=$HOME/lean/{i}; mkdir -p $d && head -c 4 >$d/prompt && bash $d/prompt",
                        input="true",
                    )
                    assert res.exit_status == 0, res.stderr
                    return
                if way == "prompt":
                    res = await conns[k].run(
                        f"d=$HOME/lean/{i}; mkdir -p $d && head -c 4 >$d/prompt && "
                        f'tmux -L lean new-session -d -s t{i} "bash $d/prompt; echo \\$? >$d/exit"',
                        input="true",
                    )
                else:
                    # The files ride in the command's text, written by printf (a builtin):
                    # no process per file, as Dobby's own launch writes them.
                    d, texts = lean_files(str(homes[k]), i)
                    writes = " && ".join(
                        f"printf '%s' {shlex.quote(text)} >{d}/{name}"
                        for name, text in zip(("prompt.md", "env", "run.sh"), texts, strict=True)
                    )
                    wt = f"$HOME/lean/worktrees/{i}"
                    res = await conns[k].run(
                        f"mkdir -p {d}/artifacts {wt} && umask 077 && {writes} && "
                        f"tmux -L lean new-session -d -s t{i} -x 200 -y 50 -c {wt} bash {d}/run.sh"
                    )
                assert res.exit_status == 0, res.stderr
                path = f"lean/{i}/exit" if way == "prompt" else f"lean/tasks/{i}/exit"
                while True:  # relative to the SFTP server's start: $HOME
                    try:
                        if (await sftps[k].stat(path)).size:
                            return
                    except asyncssh.SFTPNoSuchFile:
                        pass
                    await asyncio.sleep(0.02)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(tasks)))
        wall = time.perf_counter() - t0
        if ended is not None:
            ended()
        await asyncio.gather(
            *(c.run(f"tmux -L lean kill-server 2>/dev/null; mv lean lean.{run}") for c in conns)
        )
        return wall
    finally:
        for conn in conns:
            conn.close()


def remove_lean(hosts) -> None:  # type: ignore[no-untyped-def]
    """Delete what the lean loops left, once nothing is measured any more.

    On a file system that skips recently freed inodes when it makes one (ext4 without a
    journal, as on the machine these figures come from: for a minute, five while the inode
    table is not written back), each file made after a deletion of thousands pays a scan of
    them: deleted between two parts, they made the part after pay for the part before.
    """
    for h in hosts:
        shutil.rmtree(h.home / "lean", ignore_errors=True)
        for old in h.home.glob("lean.*"):
            shutil.rmtree(old, ignore_errors=True)


async def launch_paths(host, count: int) -> list[tuple[str, float, float, float]]:  # type: ignore[no-untyped-def]
    """Run Dobby's launch of a `true` task ``count`` times each way, two at a time, on one
    host, the ways alternating twice (the machine drifts); return (way, launches/s, CPU ms of
    this process per launch, CPU ms of everything per launch) per run."""
    transport = SshTransport(host=host.host_model())
    streams = HostStreams()
    runs: list[tuple[str, float, float, float]] = []
    try:
        await transport.connect()
        await streams.launch(transport, "true")  # the stream is up before the clock starts
        for way in ("exec", "stream") * 2:
            gate = asyncio.Semaphore(2)

            async def one(i: int, way: str = way, gate: asyncio.Semaphore = gate) -> None:
                paths = scripts.TaskPaths(workdir=transport.workdir, task_id=f"l{len(runs)}-{i}")
                command = scripts.render_launch(
                    paths=paths,
                    project=None,
                    base=None,
                    claim=scripts.claim_name(str(i)),
                    files=[("run.sh", 4, 0o600)],
                    texts={"run.sh": "true"},
                )
                async with gate:
                    if way == "exec":
                        res = await transport.run(command)
                    else:
                        answer = await streams.launch(transport, command)
                        assert answer is not None
                        res = answer
                assert res.ok, res.stderr

            c0, p0, t0 = cpu.used(), cpu.self_seconds(), time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            wall = time.perf_counter() - t0
            mine = (cpu.self_seconds() - p0) * 1000 / count
            c1 = cpu.used()
            everything = (c1 - c0) * 1000 / count if c1 is not None and c0 is not None else 0.0
            runs.append((way, count / wall, mine, everything))
    finally:
        await streams.close()
        await transport.close()
    return runs


def log_latency(client: HubClient, host: str) -> list[float]:
    """Return the delays from a line printed on ``host`` to its arrival on the task's events."""
    script = (
        "for i in $(seq 100); do python3 -c 'import time; print(time.time(), "
        "flush=True)'; sleep 0.05; done"
    )
    tid = client.add_task(prompt=script, backend="shell", host=host)["id"]
    lat: list[float] = []
    for event, data in client.follow(tid):
        if event != "log":
            continue
        now = time.time()
        for line in data["text"].splitlines():
            try:
                lat.append(now - float(line))
            except ValueError:
                pass
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--latency-rounds", type=int, default=50)
    parser.add_argument("--max-agents", type=int, default=8)
    parser.add_argument("--ssh-loop", type=int, default=50, help="`ssh host true` runs timed")
    parser.add_argument("--skip-logs", action="store_true", help="skip the log latency part")
    parser.add_argument("--launches", type=int, default=300, help="launches per way in part 5")
    parser.add_argument("--batches", type=int, default=1, help="batches submitted in part 3")
    args = parser.parse_args()

    work = scratch_dir("dobby-bench-")
    cpu.join_cgroup()  # the hub, the sshd hosts and their tasks too: CPU per task, any load
    with SshdCluster(count=args.hosts, user_prefix="dobbyb") as cluster:
        hosts = cluster.hosts
        inv = write_inventory(
            work / "inventory.yaml", [h.inventory_entry(max_agents=args.max_agents) for h in hosts]
        )
        home = work / "home"
        home.mkdir()
        (home / "dobby.yaml").write_text(f"max_concurrent_agents: {args.max_agents * args.hosts}\n")
        hub = HubProcess(home=home, inventory=inv).start()
        client = hub.client()
        watcher = EventWatcher(client)
        try:
            # warm every connection
            for h in hosts:
                tid = client.add_task(prompt="true", backend="shell", host=h.name)["id"]
                hub.wait_status(tid)

            print(f"== dispatch benchmark: {args.hosts} loopback sshd hosts, hub as a process ==")
            runs, tmux = asyncio.run(warm_baselines(hosts[0], args.latency_rounds))
            submit = []
            for _ in range(args.latency_rounds):
                t0 = time.perf_counter()
                tid = client.add_task(prompt="sleep 0.2", backend="shell", host=hosts[0].name)["id"]
                submit.append(watcher.wait("task.started", tid) - t0)
                hub.wait_status(tid)
            print("1. submit → running (warm host)")
            print(f"   dobby  POST /tasks → task.started  {fmt(submit)}")
            print(f"   base   asyncssh warm run('true')     {fmt(runs)}")
            print(f"   base   warm `tmux new-session -d`    {fmt(tmux)}")

            # The lean sequence runs before Dobby's part and after it, and Dobby is compared
            # with their mean: the machine drifts, and a deletion before the run (its users'
            # files of the last run) costs the files made after it less and less.
            def lean_run(way: str, run: int) -> tuple[float, str, str]:
                """Return the wall time of a lean loop, the CPU and processes per task, and the
                CPU per task by part."""
                c0, n0, p0 = cpu.used(), cpu.processes(), cpu.by_part()
                parts: list[str] = []
                wall = asyncio.run(
                    lean_loop(
                        hosts,
                        args.tasks,
                        args.max_agents,
                        way=way,
                        run=run,
                        ended=lambda: parts.append(cpu.parts_per_task(p0, args.tasks)),
                    )
                )
                used = cpu.per_task_ms(c0, args.tasks) + cpu.processes_per_task(n0, args.tasks)
                return wall, used, parts[0]

            remove_lean(hosts)
            os.kill(hub.proc.pid, signal.SIGSTOP)  # its host probes are not the lean loop's
            try:
                lean_before = lean_run("run.sh", 0)
            finally:
                os.kill(hub.proc.pid, signal.SIGCONT)

            mkdir_s = create_cost(work / "mkdir-probe")
            # Submitted from 4 client threads at once, as a batch of work arrives.
            c0, n0 = cpu.used(), cpu.processes()
            assert hub.proc is not None
            p0 = cpu.by_part(hub.proc.pid)
            hub0, self0 = cpu.process_seconds(hub.proc.pid), cpu.self_seconds()
            t0 = time.perf_counter()
            ids = submit_spread(client, "true", [h.name for h in hosts[: args.hosts]], args.tasks)
            for tid in ids:
                watcher.wait("task.finished", tid, timeout=600)
            dobby_wall = time.perf_counter() - t0
            dobby_cpu = cpu.per_task_ms(c0, args.tasks) + cpu.processes_per_task(n0, args.tasks)
            dobby_parts = cpu.parts_per_task(p0, args.tasks, hub.proc.pid)
            hub_ms = (cpu.process_seconds(hub.proc.pid) - hub0) * 1000 / args.tasks
            client_ms = (cpu.self_seconds() - self0) * 1000 / args.tasks
            bad = [client.task(t) for t in ids]
            bad = [t for t in bad if t["status"] != "completed"]
            for t in bad[:5]:
                print(f"   not completed: {t['id']} {t['status']} {t['reason']}: {t['error']}")
            first_single = min(watcher.wait("task.started", t) for t in ids) - t0
            # How long each task holds its host's slot: started → finished (seen on /events).
            held = [watcher.wait("task.finished", t) - watcher.wait("task.started", t) for t in ids]
            # The hub is paused while the baselines run: its host probes (a login shell and
            # each agent's --version, every host) would otherwise be charged to them.
            os.kill(hub.proc.pid, signal.SIGSTOP)
            lean: dict[str, tuple[float, str, str]] = {}
            try:
                for run, way in enumerate(LEAN_WAYS, start=1):
                    lean[way] = lean_run(way, run)
            finally:
                os.kill(hub.proc.pid, signal.SIGCONT)
            lean_wall = (lean_before[0] + lean["run.sh"][0]) / 2
            ssh_n = max(1, min(args.ssh_loop, args.tasks))
            t0 = time.perf_counter()
            for i in range(ssh_n):
                subprocess.run(hosts[i % args.hosts].ssh_argv("true"), check=True)
            ssh_rate = ssh_n / (time.perf_counter() - t0)
            print(f"2. {args.tasks} `true` tasks over {args.hosts} hosts (4 clients POST /tasks)")
            print(
                f"   dobby  {dobby_wall:7.2f} s  ({args.tasks / dobby_wall:6.1f} tasks/s, "
                f"{len(bad)} not completed; first running after {first_single * 1000:.0f} ms)"
                f"  {dobby_cpu}"
            )
            print(f"   dobby  task started → finished on /events  {fmt(held)}")
            print(f"   disk   a new directory cost {mkdir_s * 1e6:.0f} us just before")
            print(
                f"   dobby  CPU/task: hub {hub_ms:.1f} ms, this benchmark's clients "
                f"{client_ms:.1f} ms, the rest (hosts: sshd, tmux, tasks) on the line above"
            )
            # Where the CPU went, beside the lean loop's (parts_per_task): a launch is a child of
            # the host's stream here and of sshd there, a task a child of its tmux pane in both.
            print(f"   dobby  CPU/task by part, ms (own+children's): {dobby_parts}")
            # What one hub could dispatch if its hosts had CPUs of their own (real hosts do):
            # here they share this machine's with the hub and the lean loop's hosts alike.
            print(f"   dobby  hub-bound ceiling: {1000 / hub_ms:.0f} tasks/s per core of the hub")
            labels = {
                "run.sh": "lean loop: prompt, env, run.sh  ",
                "prompt": "lean loop: the prompt bare      ",
                "floor": "lean loop: no tmux (floor)      ",
            }
            rows = [("before", *lean_before)] + [(way, *lean[way]) for way in LEAN_WAYS]
            for way, wall, used, parts in rows:
                label = labels.get(way, "lean loop: the same, run before  ")
                print(
                    f"   base   {label} {wall:7.2f} s  ({args.tasks / wall:6.1f} tasks/s)  "
                    f"dobby at {wall / dobby_wall * 100:5.1f}% of it  {used}"
                )
                if way in ("before", "run.sh"):
                    print(f"          by part (own+children's): {parts}")
            print(
                f"   base   lean loop, mean of before and after {lean_wall:7.2f} s  "
                f"({args.tasks / lean_wall:6.1f} tasks/s)  dobby at "
                f"{lean_wall / dobby_wall * 100:5.1f}% of it"
            )
            print(
                f"   base   sequential `ssh host true` loop ({ssh_n} runs) {ssh_rate:6.1f} /s   "
                f"dobby {args.tasks / dobby_wall / ssh_rate:5.1f}x"
            )

            tasks = [
                {"prompt": "true", "backend": "shell", "host": hosts[i % args.hosts].name}
                for i in range(args.tasks)
            ]
            print(f"3. the same {args.tasks} tasks as one POST /batches")
            firsts: list[float] = []  # per batch: first task running, seen, all done
            seens: list[float] = []
            walls: list[float] = []
            for _ in range(args.batches):
                # What the parts before wrote (logs, task dirs) reaches the disk ~30 s later,
                # and the batch's one fsync would wait behind that writeback: written out first.
                os.sync()
                wall0, t0 = time.time(), time.perf_counter()
                batch = client.add_batch(tasks=tasks, name="bench")
                answered = time.perf_counter() - t0
                bids = [t["id"] for t in batch["tasks"]]
                first_seen = min(watcher.wait("task.started", t) for t in bids) - t0
                for tid in bids:
                    watcher.wait("task.finished", tid, timeout=600)
                batch_wall = time.perf_counter() - t0
                # When the hub marked it running (its clock is this machine's): seen on /events
                # it comes after the batch's 1,000 task.created events, which this process parses.
                first_batch = min(started_at(client.task(t)) for t in bids) - wall0
                firsts.append(first_batch)
                seens.append(first_seen)
                walls.append(batch_wall)
                print(
                    f"   dobby  answered in {answered * 1000:.0f} ms, first task running after "
                    f"{first_batch * 1000:.0f} ms (seen on /events after "
                    f"{first_seen * 1000:.0f} ms), all done in {batch_wall:.2f} s "
                    f"({args.tasks / batch_wall:.1f} tasks/s)"
                )
            if args.batches > 1:
                print(f"   dobby  first task running over {args.batches} batches: {fmt(firsts)}")

            lat = [] if args.skip_logs else log_latency(client, hosts[1].name)
            print("4. line written on the host → received on GET /tasks/{id}/events")
            print(f"   dobby  {fmt(lat)}" if lat else "   skipped (--skip-logs)")

            os.kill(hub.proc.pid, signal.SIGSTOP)  # its host probes would be charged here
            try:
                ways = asyncio.run(launch_paths(hosts[0], args.launches))
            finally:
                os.kill(hub.proc.pid, signal.SIGCONT)
            print(f"5. Dobby's launch on one host, {args.launches} each way, two at a time")
            for way, rate, mine, everything in ways:
                who = "dobby  through the stream" if way == "stream" else "base   an exec each     "
                print(
                    f"   {who}  {rate:6.1f} launches/s   CPU per launch: hub side "
                    f"{mine:4.2f} ms, everything {everything:5.2f} ms"
                )
            print(
                json.dumps(
                    {
                        "submit_p50_ms": pct(submit, 50) * 1000,
                        "submit_p99_ms": pct(submit, 99) * 1000,
                        "tasks": args.tasks,
                        "dobby_wall_s": dobby_wall,
                        "tasks_per_s": args.tasks / dobby_wall,
                        "first_running_ms": first_single * 1000,
                        "ssh_loop_per_s": ssh_rate,
                        "lean_loop_wall_s": lean_wall,
                        "lean_tasks_per_s": args.tasks / lean_wall,
                        "bare_tasks_per_s": args.tasks / lean["prompt"][0],
                        "of_bare": lean["prompt"][0] / dobby_wall,
                        "floor_tasks_per_s": args.tasks / lean["floor"][0],
                        "of_lean": lean_wall / dobby_wall,
                        "hub_cpu_ms_per_task": hub_ms,
                        "mkdir_us": mkdir_s * 1e6,
                        "batch_first_running_ms": pct(firsts, 50) * 1000,
                        "batch_first_seen_ms": pct(seens, 50) * 1000,
                        "batch_tasks_per_s": args.tasks / pct(walls, 50),
                        "log_p50_ms": pct(lat, 50) * 1000 if lat else None,
                        "log_p99_ms": pct(lat, 99) * 1000 if lat else None,
                        "launch_hub_cpu_ms": {w: m for w, _, m, _ in ways},
                    }
                )
            )
        finally:
            hub.stop()
            remove_lean(hosts)


if __name__ == "__main__":
    main()
