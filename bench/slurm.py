"""Slurm benchmark: N `true` tasks through Dobby on a ``connection: slurm`` host, beside the
plain baseline of the same run: a loop of ``sbatch --wrap true`` over one warm SSH connection
to the same login node, then waiting until every job has left the queue.

Both sides use the real one-node cluster of tests/fixtures/slurm.py (2 CPUs, so at most two
jobs run at a time) reached over a real sshd as a non-root user. Dobby's figure includes what
the baseline skips: the bundle written per task, the job script keeping run.sh in tmux, the
follower reading each task's output and exit file, and the result collected.

Run as root: ``python bench/slurm.py [--tasks 200] [--max-agents 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncssh  # noqa: E402

from bench.scratch import scratch_dir  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.slurm import SlurmCluster  # noqa: E402
from tests.fixtures.sshd import SshdCluster, SshHost  # noqa: E402


async def baseline(host: SshHost, count: int) -> tuple[float, float]:
    """Return (submit seconds, total seconds) for a loop of sbatch --wrap true + wait."""
    async with asyncssh.connect(**host.connect_options()) as conn:
        await conn.run("true")
        jobs = []
        t0 = time.perf_counter()
        for _ in range(count):
            done = await conn.run("sbatch --parsable --wrap true", check=True)
            jobs.append(str(done.stdout).strip().split(";")[0])
        submitted = time.perf_counter() - t0
        ids = ",".join(jobs)
        while True:  # finished jobs leave squeue's default view
            left = await conn.run(f"squeue -h -j {ids} -o %i", check=True)
            if not str(left.stdout).strip():
                break
            await asyncio.sleep(0.1)
        return submitted, time.perf_counter() - t0


def dobby_run(
    hub: HubProcess, host: str, count: int, timeout: float
) -> tuple[float, float, list[dict[str, object]]]:
    """Return (submit seconds, total seconds, tasks not completed) for N tasks via the hub."""
    client = hub.client()
    t0 = time.perf_counter()
    ids = [client.add_task(prompt="true", backend="shell", host=host)["id"] for _ in range(count)]
    submitted = time.perf_counter() - t0
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        # one listing per state and round: cheaper than asking for each task
        still = {t["id"] for s in ("pending", "running") for t in client.tasks(status=s)["tasks"]}
        pending &= still
        if pending:
            time.sleep(0.2)
    total = time.perf_counter() - t0
    bad = [t for t in (client.task(i) for i in ids) if t["status"] != "completed"]
    return submitted, total, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--max-agents", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    work = scratch_dir("dobby-bench-slurm-")
    with SlurmCluster() as slurm, SshdCluster(count=1, user_prefix="dobbyb") as cluster:
        login = cluster.hosts[0]
        entry = login.inventory_entry(
            name="cluster", connection="slurm", max_agents=args.max_agents,
            slurm={"partition": "debug", "time_limit": "5"},
        )  # fmt: skip
        inventory = write_inventory(work / "inventory.yaml", [entry])
        home = work / "home"
        home.mkdir()
        (home / "dobby.yaml").write_text(f"max_concurrent_agents: {args.max_agents}\n")
        hub = HubProcess(home=home, inventory=inventory).start()
        try:
            warm = hub.client().add_task(prompt="true", backend="shell", host="cluster")["id"]
            hub.wait_status(warm, timeout=120)
            slurm.reset()

            base_submit, base_total = asyncio.run(baseline(login, args.tasks))
            slurm.reset()
            submit, total, bad = dobby_run(hub, "cluster", args.tasks, args.timeout)
        finally:
            hub.stop()
    for task in bad[:5]:
        print(f"   not completed: {task['id']} {task['status']} {task['reason']}: {task['error']}")
    n = args.tasks
    print(f"== {n} `true` tasks on the one-node test cluster (2 CPUs), over one login node ==")
    print(
        f"dobby  submit {submit:6.2f} s   all done {total:7.2f} s   ({n / total:5.1f} tasks/s, "
        f"{len(bad)} not completed)"
    )
    print(
        f"base   sbatch --wrap true loop {base_submit:6.2f} s   all done {base_total:7.2f} s   "
        f"({n / base_total:5.1f} jobs/s)"
    )
    print(
        json.dumps(
            {
                "tasks": n,
                "dobby_submit_s": round(submit, 3),
                "dobby_total_s": round(total, 3),
                "dobby_not_completed": len(bad),
                "baseline_submit_s": round(base_submit, 3),
                "baseline_total_s": round(base_total, 3),
                "ratio": round(total / base_total, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
