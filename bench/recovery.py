"""Recovery benchmark: hub kill -9 with N running tasks, restart, until every log flows again.

N shell tasks (default 500) spread over H loopback sshd hosts (default 20) each print a
timestamp line every second (see bench/logs.py). Once all run, the hub is killed with SIGKILL
and started again. Measured from the restart:
  dobby  until /health answers; until the hub's copy of each task's output has grown again
         (p50, and the last one: "logs flowing for all")
  base   in the same run, a fresh asyncssh connect to every host + an SFTP read of every
         task's whole out.jsonl (what any recovery has to do at least), once the restarted
         hub's first host probes answered; then the same as a process of its own, timed from
         its start as the hub's restart is (bench/reread.py: python, asyncssh, connect, read)
Both import compiled bytecode, as an installed package does.
Run as root: `python bench/recovery.py [--tasks 500 --hosts 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import process_seconds  # noqa: E402
from bench.logs import Bench, wait_running  # noqa: E402
from bench.reread import Spec, reconnect_and_read  # noqa: E402
from tests.fixtures.sshd import SshHost  # noqa: E402
from tests.fixtures.wait import wait_until  # noqa: E402

# On a disk shared with other fsync-heavy runs a write may take more than the default 5 s: the
# submits then wait instead of failing the run (this measures recovery, not the disk).
SHARED_DISK = "write_timeout: 25\n"  # below the client's 30 s


def baseline_spec(hosts: list[SshHost], files: dict[str, list[str]]) -> Spec:
    """Return what bench/reread.py reads: each host's connect options and its tasks' logs."""
    return [(h.connect_options(), files.get(h.name, [])) for h in hosts]


def cold_reconnect_and_read(spec: Spec, work: Path) -> float:
    """Return the wall time of bench/reread.py as a process of its own: a fresh interpreter
    importing asyncssh, then the same connects and reads (a restarted hub starts so too)."""
    spec_file = work / "reread.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(Path(__file__).with_name("reread.py")), str(spec_file)],
                   check=True)  # fmt: skip
    return time.perf_counter() - t0


def sizes(results: Path, ids: list[str]) -> dict[str, int]:
    out = {}
    for tid in ids:
        try:
            out[tid] = (results / tid / "out.jsonl").stat().st_size
        except FileNotFoundError:
            out[tid] = 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1.0, help="lines per second per task")
    parser.add_argument("--down", type=float, default=2.0, help="seconds the hub stays dead")
    parser.add_argument("--profile", help="record the restarted hub with py-spy into this file")
    args = parser.parse_args()

    # Bytecode first, as an installed package has it: this machine's environment sets
    # PYTHONDONTWRITEBYTECODE, and the restarted hub would compile Dobby's sources again
    # (0.1 s) where the baseline's asyncssh reads what pip compiled.
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "dobby"), quiet=1)
    per_host = -(-args.tasks // args.hosts)
    bench = Bench(hosts=args.hosts, per_host=per_host, user_prefix="dobbyr")
    with (bench.hub.home / "dobby.yaml").open("a", encoding="utf-8") as config:
        config.write(SHARED_DISK)
    try:
        client = bench.start()
        ids = bench.submit(client, args.tasks, args.rate)
        wait_running(client, ids, timeout=900)
        time.sleep(2)
        results = bench.hub.home / "results"
        bench.hub.kill(signal.SIGKILL)
        time.sleep(args.down)
        before = sizes(results, ids)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        bench.hub.start(wait=False)
        spy = None
        if args.profile and bench.hub.proc is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(bench.hub.proc.pid), "--format", "raw",
                 "-o", args.profile, "--duration", "20", "--rate", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        bench.hub.wait_healthy(timeout=120)
        healthy = time.perf_counter() - t0
        flowing: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(flowing) < len(ids) and time.monotonic() < deadline:
            now = time.perf_counter() - t0
            for tid, size in sizes(results, [t for t in ids if t not in flowing]).items():
                if size > before[tid]:
                    flowing[tid] = now
            time.sleep(0.02)
        hub_cpu = process_seconds(bench.hub.proc.pid if bench.hub.proc else 0)
        if spy is not None:
            spy.wait(60)
        # After the restart's first host probes (they wait for the re-adopted tasks): the
        # baseline is measured on a hub as settled as the one it is compared with was.
        wait_until(
            lambda: all(h.get("versions") for h in client.hosts()["hosts"]),
            what="the hub's first host probes to answer",
            timeout=120,
            interval=0.2,
        )
        spec = baseline_spec(bench.hosts, bench.host_files())
        base = asyncio.run(reconnect_and_read(spec))
        cold = cold_reconnect_and_read(spec, bench.work)
        times = sorted(flowing.values())
        last = times[-1] if len(times) == len(ids) else float("inf")
        print(
            f"== recovery: {args.tasks} running tasks over {args.hosts} loopback sshd hosts, "
            f"hub kill -9, restart; load {load:.1f} =="
        )
        print(f"  dobby  /health answers after        {healthy:6.2f} s")
        print(
            f"  dobby  logs flowing again: p50 {times[len(times) // 2]:6.2f} s, all "
            f"{len(times)}/{len(ids)} after {last:6.2f} s  (hub CPU {hub_cpu:.1f} s so far)"
        )
        print(f"  base   fresh connect + read of all logs {base:6.2f} s")
        print(f"  base   the same as a process of its own (python, asyncssh) {cold:6.2f} s")
        ratio, cold_ratio = last / base, last / cold
        print(f"  ratio  all flowing / base {ratio:.1f}x, / base as a process {cold_ratio:.1f}x")
        print(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "hosts": args.hosts,
                    "load": round(load, 2),
                    "healthy_s": healthy,
                    "flowing_p50_s": times[len(times) // 2],
                    "flowing_all_s": last,
                    "flowing_count": len(times),
                    "baseline_s": base,
                    "ratio": ratio,
                    "cold_baseline_s": cold,
                    "cold_ratio": cold_ratio,
                }
            )
        )
    finally:
        bench.close()


if __name__ == "__main__":
    main()
