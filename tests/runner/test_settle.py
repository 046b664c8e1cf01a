"""The launch-settling decision (pure) and the claim/settle scripts run for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dobby.hostside import scripts
from dobby.runner.settle import GONE_GRACE, LAUNCH_GRACE, Verdict, verdict
from tests.fixtures.wait import wait_until


@pytest.mark.parametrize(
    ("state", "claimed_for", "expected"),
    [
        ({"fenced": "1", "session": "0", "exit": "", "started": "0"}, 0, Verdict.REQUEUE),
        ({"fenced": "0", "session": "1", "exit": "", "started": "1"}, 0, Verdict.ADOPT),
        ({"fenced": "0", "session": "0", "exit": "0", "started": "1"}, 0, Verdict.ADOPT),
        ({"fenced": "0", "session": "0", "exit": "", "started": "1"}, 0, Verdict.LOST),
        ({"fenced": "0", "session": "0", "exit": "", "started": "0"}, 0, Verdict.WAIT),
        ({"fenced": "0", "session": "0", "exit": "", "started": "0"}, LAUNCH_GRACE, Verdict.LOST),
        # Its launcher is gone: requeued once a session it asked for would be up by now.
        ({"fenced": "0", "launcher": "0", "started": "0"}, 0, Verdict.WAIT),
        ({"fenced": "0", "launcher": "0", "started": "0"}, GONE_GRACE, Verdict.REQUEUE),
        ({"fenced": "0", "launcher": "1", "started": "0"}, GONE_GRACE, Verdict.WAIT),
        ({"fenced": "0", "launcher": "", "started": "0"}, GONE_GRACE, Verdict.WAIT),
        ({"fenced": "0", "launcher": "1", "started": "0"}, LAUNCH_GRACE, Verdict.LOST),
        ({"fenced": "0", "launcher": "0", "started": "1"}, GONE_GRACE, Verdict.LOST),
        ({"fenced": "0", "launcher": "0", "exit": "0"}, GONE_GRACE, Verdict.ADOPT),
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
        "launcher": "",
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


def test_settle_tells_a_launch_under_way_from_one_killed_after_its_claim(tmp_path: Path) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="cafe0002")
    claim = scripts.claim_name("def")
    # Its files come from stdin, which says nothing: the launch holds its claim and waits.
    launch = scripts.render_launch(
        paths=paths, project=None, base=None, claim=claim, files=[("prompt", 5, 0o600)]
    )
    proc = subprocess.Popen(["bash", "-c", launch], stdin=subprocess.PIPE)
    try:
        owner = Path(paths.file(claim))
        wait_until(lambda: owner.exists() and owner.read_text().endswith("\n"), what="the claim")
        under_way = scripts.parse_kv(bash(scripts.render_settle(paths=paths, claim=claim)).stdout)
        assert (under_way["fenced"], under_way["launcher"]) == ("0", "1")
    finally:
        proc.kill()
        proc.communicate()  # reaps it, and closes our end of its stdin
    state = scripts.parse_kv(bash(scripts.render_settle(paths=paths, claim=claim)).stdout)
    assert state == {"fenced": "0", "launcher": "0", "session": "0", "exit": "", "started": "0"}
    assert verdict(state, claimed_for=GONE_GRACE) is Verdict.REQUEUE


def test_a_claim_signed_by_a_pid_now_someone_elses_counts_as_gone(tmp_path: Path) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="cafe0003")
    claim = Path(paths.file(scripts.claim_name("ghi")))
    claim.parent.mkdir(parents=True)
    probe = scripts.render_settle(paths=paths, claim=claim.name)
    me = os.getpid()
    start = Path(f"/proc/{me}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    claim.write_text(f"{me} {start}\n")
    assert scripts.parse_kv(bash(probe).stdout)["launcher"] == "1"  # this very process
    claim.write_text(f"{me} {int(start) + 1}\n")  # same pid, another start
    assert scripts.parse_kv(bash(probe).stdout)["launcher"] == "0"


def test_a_claim_left_as_a_directory_by_an_older_hub_counts_as_taken(tmp_path: Path) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="cafe0004")
    claim = scripts.claim_name("old")
    Path(paths.file(claim)).mkdir(parents=True)
    state = scripts.parse_kv(bash(scripts.render_settle(paths=paths, claim=claim)).stdout)
    assert (state["fenced"], state["launcher"]) == ("0", "")  # taken, unsigned: time decides
    launch = scripts.render_launch(paths=paths, project=None, base=None, claim=claim)
    assert bash(launch).returncode == scripts.CLAIMED_EXIT
