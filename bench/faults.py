"""The fault campaign, long form: a hub process and real loopback sshd hosts under faults.

Campaigns (tests/faults/campaign.py; the short form runs in CI as tests/faults):
  1. hub kill -9 at random points of a run of N tasks (default 200, 20 kills);
  2. sshd children serving the hub's connections killed, and sshd down mid-run;
each printed as: acknowledged, faults, completed, failed, and the broken promises — lost,
launched twice, truncated logs (hub copy vs the host's out.jsonl, byte for byte), failed while
it ran to success. The goal for each of those is 0.

Run as root (it starts sshd and creates test users):
`PYTHONPATH=. python bench/faults.py [--tasks 200] [--kills 20] [--seed 13]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.campaign import Figures, hub_kill_campaign, ssh_fault_campaign  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster  # noqa: E402


def report(name: str, figures: Figures) -> None:
    print(f"{name}: {figures.line()}")
    for line in figures.evidence[:20]:
        print(f"   {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--ssh-rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep", type=Path, help="keep the hubs' homes (logs) in this directory")
    args = parser.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory(prefix="dobby-faults-") as tmp, SshdCluster(count=3) as cl:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        hosts = cl.reset()
        inv = write_inventory(Path(tmp) / "inventory.yaml", cl.inventory())
        with HubProcess(home=Path(tmp) / "home", inventory=inv) as hub:
            figures = hub_kill_campaign(
                hub, hosts, tasks=args.tasks, kills=args.kills, seed=args.seed, timeout=1800
            )
            report(f"hub kill -9 x{args.kills}", figures)
            bad += figures.bad()
        hosts = cl.reset()
        with HubProcess(home=Path(tmp) / "home2", inventory=inv) as hub:
            figures = ssh_fault_campaign(
                hub,
                hosts,
                tasks=max(10, args.tasks // 4),
                rounds=args.ssh_rounds,
                seed=args.seed,
                timeout=1800,
            )
            report(f"sshd faults x{args.ssh_rounds}", figures)
            bad += figures.bad()
    print("goal met: 0 lost, 0 launched twice, 0 truncated, 0 failed-but-succeeded" if not bad
          else f"goal missed: {bad} broken promises")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
