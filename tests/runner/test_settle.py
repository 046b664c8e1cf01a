"""The launch-settling decision (pure) and the claim/settle scripts run for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dobby.hostside import scripts
from dobby.runner.settle import LAUNCH_GRACE, Verdict, verdict


@pytest.mark.parametrize(
    ("state", "claimed_for", "expected"),
    [
        ({"fenced": "1", "session": "0", "exit": "", "started": "0"}, 0, Verdict.REQUEUE),
        ({"fenced": "0", "session": "1", "exit": "", "started": "1"}, 0, Verdict.ADOPT),
        ({"fenced": "0", "session": "0", "exit": "0", "started": "1"}, 0, Verdict.ADOPT),
        ({"fenced": "0", "session": "0", "exit": "", "started": "1"}, 0, Verdict.LOST),
        ({"fenced": "0", "session": "0", "exit": "", "started": "0"}, 0, Verdict.WAIT),
        ({"fenced": "0", "session": "0", "exit": "", "started": "0"}, LAUNCH_GRACE, Verdict.LOST),
        # A session that is up wins over everything (a fence can't be taken then anyway).
        ({"fenced": "1", "session": "1", "exit": "", "started": "0"}, 0, Verdict.ADOPT),
    ],
)
def test_verdict(state: dict[str, str], claimed_for: float, expected: Verdict) -> None:
    assert verdict(state, claimed_for=claimed_for) is expected


def bash(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True)


def test_settle_fences_a_launch_that_has_not_claimed_yet(tmp_path: Path) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="cafe0001")
    claim = scripts.claim_name("abc")
    first = bash(scripts.render_settle(paths=paths, claim=claim))
    assert scripts.parse_kv(first.stdout) == {
        "fenced": "1",
        "session": "0",
        "exit": "",
        "started": "0",
    }
    # Asked again, the claim is taken (by the first probe): it no longer says "never began".
    assert (
        scripts.parse_kv(bash(scripts.render_settle(paths=paths, claim=claim)).stdout)["fenced"]
        == "0"
    )
    launch = scripts.render_launch(paths=paths, project=None, base=None, claim=claim)
    assert bash(launch).returncode == scripts.CLAIMED_EXIT
    assert not Path(paths.file("pid")).exists()
