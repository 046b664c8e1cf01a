"""CLI start time: ``dobby --help|status|show|add`` against a running hub, beside ``python -c
pass`` measured in the same run, interleaved (so both see the same machine load).

Each command runs as its own process, as a user's shell runs it (the console script is
``from dobby.cli.main import main; main()``). Bytecode is written and warmed first, as for an
installed package (this machine's environment sets PYTHONDONTWRITEBYTECODE, which would make
every run compile Dobby's sources again). ``add`` creates tasks that wait for a host that does
not exist, so nothing runs on the machine while it is measured.

    python bench/cli_start.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

ENTRY = "import sys; from dobby.cli.main import main; sys.exit(main())"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="dobby-bench-cli-") as tmp:
        inventory = write_inventory(
            Path(tmp) / "inv.yaml", [{"name": "local", "connection": "local"}]
        )
        hub = HubProcess(home=Path(tmp) / "home", inventory=inventory).start()
        try:
            env["DOBBY_URL"] = hub.url
            add = ["add", "bench", "--backend", "shell", "--label", "none", "--wait-for-host"]
            first = subprocess.run(
                [sys.executable, "-c", ENTRY, *add, "--json"], env=env, capture_output=True,
                text=True, check=True,
            )  # fmt: skip
            task_id = json.loads(first.stdout)["id"]
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "dobby --help": [sys.executable, "-c", ENTRY, "--help"],
                "dobby status": [sys.executable, "-c", ENTRY, "status"],
                f"dobby show {task_id}": [sys.executable, "-c", ENTRY, "show", task_id],
                "dobby add …": [sys.executable, "-c", ENTRY, *add],
            }
            for argv in commands.values():  # warm: bytecode written, files in the page cache
                subprocess.run(argv, env=env, capture_output=True, check=True)
            times: dict[str, list[float]] = {name: [] for name in commands}
            cpu: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    used = _children_cpu()
                    start = time.perf_counter()
                    subprocess.run(argv, env=env, capture_output=True, check=True)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(_children_cpu() - used)
        finally:
            hub.stop()
    base = pct(times["python -c pass"], 50) * 1000
    print(f"CLI start, {args.runs} interleaved runs each, against a running hub (ms)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'command':<24} {'p50':>7} {'p90':>7} {'p50 - pass':>11} {'CPU p50':>8}")
    for name, values in times.items():
        p50, p90 = pct(values, 50) * 1000, pct(values, 90) * 1000
        extra = "" if name == "python -c pass" else f"{p50 - base:.1f}"
        print(f"{name:<24} {p50:7.1f} {p90:7.1f} {extra:>11} {pct(cpu[name], 50) * 1000:8.1f}")
    print("(CPU: user+sys time of the command's process: what it costs on an idle machine)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
