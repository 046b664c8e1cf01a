"""`dobby demo`, the README's first command, as a new user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the whole demo


def test_demo_runs_every_task_to_its_true_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    res = subprocess.run(
        [sys.executable, "-m", "dobby", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rows = re.findall(r"^  ([0-9a-f]{8})  (\w+)\s+(\w+)\s+cost (\S+)\s+(.*)$", res.stdout, re.M)
    assert len(rows) == 5, res.stdout
    outcome = {(backend, status) for _, status, backend, _, _ in rows}
    assert ("claude", "completed") in outcome, res.stdout
    assert ("codex", "completed") in outcome, res.stdout
    assert ("shell", "failed") in outcome, res.stdout
    claude = next(r for r in rows if r[2] == "claude")
    assert claude[3] == "$0.0437" and claude[4] == "Done: created hello.txt"
    state = re.search(r"state in (\S+)\)", res.stdout)
    assert state and not os.path.exists(state.group(1))  # the throw-away home is removed
