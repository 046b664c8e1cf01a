"""Races and verify end to end: real sshd hosts, the replay agent writing different patches,
and a real test run (``python3 -m unittest``) as the check.

Each host plays one patch scenario (``FAKE_AGENT_SCENARIO`` in its inventory env): good (the
tests pass), bad (a test fails; a resumed run fixes it) or wide (passes, touches more files).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from dobby.core.raceshapes import RaceMerged, RaceView
from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.races.helpers import CHECK, PROMPT, SHOWN, hub_for, race, settled, wait_race

pytestmark = pytest.mark.slow


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def test_first_picks_the_passing_attempt_and_cancels_the_rest(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    plays = [
        {"FAKE_AGENT_SCENARIO": "patch_bad"},
        {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "0.3"},
        {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "30"},  # still busy at the end
    ]
    hub = hub_for(tmp_path, ssh_hosts, plays)
    started.append(hub)
    body = race(hub, "--race", "3", "--hosts", "h1,h2,h3")
    assert body["k"] == 3 and body["pick"] == "first" and body["status"] == "running"
    assert [c["host"] for c in body["attempts"]] == ["h1", "h2", "h3"]
    view = wait_race(hub, body["id"], settled)
    RaceView.model_validate(view)  # the answer fits its declared (OpenAPI) shape
    cols = view["attempts"]
    assert view["status"] == "completed" and view["winner"] == cols[1]["task_id"]
    assert [c["state"] for c in cols] == ["failed", "passed", "cancelled"]
    assert cols[1]["winner"] and cols[1]["verify"]["status"] == "passed"
    assert view["branch"] == f"dobby/{cols[1]['task_id']}"
    bad = hub.client().task(cols[0]["task_id"])
    assert bad["status"] == "failed" and bad["reason"] == "verify_failed"
    assert bad["verify_result"]["exit_code"] == 1
    assert "FAIL: test_mul" in bad["verify_result"]["tail"]
    assert bad["branch"] == f"dobby/{bad['id']}"  # a failed check keeps its work
    # the check's output is a section of the task's log, after the agent's lines
    logs = hub.cli("logs", bad["id"], check=True).stdout
    assert "── verify ──" in logs and "── verify failed (exit 1" in logs
    assert logs.index("Done: wrote calc.py") < logs.index("── verify ──")
    # the comparison, and the winner merged by race id
    shown = hub.cli("race", body["id"], check=True).stdout
    assert "passed exit 0" in shown and "FAIL: test_mul" in shown and "★" in shown
    merged = json.loads(hub.cli("merge", body["id"], "--json", check=True).stdout)
    RaceMerged.model_validate(merged)
    assert merged["race_id"] == body["id"] and merged["branch"] == view["branch"]
    assert "return a * b" in (tmp_path / "app" / "calc.py").read_text()


def test_smallest_waits_for_every_attempt_and_picks_the_smallest_passing_diff(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    plays = [
        {"FAKE_AGENT_SCENARIO": "patch_wide"},
        {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "0.5"},
        {"FAKE_AGENT_SCENARIO": "patch_bad"},
    ]
    hub = hub_for(tmp_path, ssh_hosts, plays)
    started.append(hub)
    body = race(hub, "--race", "3", "--hosts", "h1,h2,h3", "--pick", "smallest")
    view = wait_race(hub, body["id"], settled)
    RaceView.model_validate(view)
    cols = view["attempts"]
    assert view["status"] == "completed"
    assert [c["state"] for c in cols] == ["passed", "passed", "failed"]
    assert view["winner"] == cols[1]["task_id"]  # good beats wide: fewer lines changed
    wide, good = cols[0]["diff_stat"], cols[1]["diff_stat"]
    assert wide["files_changed"] == 3 and good["files_changed"] == 1
    assert good["insertions"] < wide["insertions"]
    for col in cols:  # nobody was cancelled: smallest waits for everyone
        assert hub.client().task(col["task_id"])["status"] != "cancelled"


def test_no_passing_attempt_fails_the_race_with_every_output(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    plays = [{"FAKE_AGENT_SCENARIO": "patch_bad"}] * 2
    hub = hub_for(tmp_path, ssh_hosts[:2], plays)
    started.append(hub)
    body = race(hub, "--race", "2", "--backends", "claude", "--pick", "cheapest")
    view = wait_race(hub, body["id"], settled)
    assert view["status"] == "failed" and view["reason"] == "no_verified" and not view["winner"]
    assert view["error"].startswith("no attempt passed its check: #1 claude on h")
    for col in view["attempts"]:
        assert col["state"] == "failed" and "FAIL: test_mul" in col["verify"]["tail"]
        assert col["verify"]["exit_code"] == 1
    shown = hub.cli("race", body["id"], check=True).stdout
    assert shown.count("FAIL: test_mul") >= 2 and "no attempt passed its check" in shown
    res = hub.cli("merge", body["id"])
    assert res.returncode == 1 and "has no winner to merge" in res.stderr


def test_a_fix_round_turns_a_failing_check_into_a_passing_one(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    hub = hub_for(tmp_path, ssh_hosts[:1], [{"FAKE_AGENT_SCENARIO": "patch_bad"}])
    started.append(hub)
    out = hub.cli(
        "add", PROMPT, "--project", "app", "--verify", CHECK, "--fix-attempts", "1", "--json",
        check=True,
    )  # fmt: skip
    first = json.loads(out.stdout)
    assert first["verify"] == CHECK and first["fix_attempts"] == 1
    failed = hub.wait_status(first["id"])
    assert failed["reason"] == "verify_failed" and failed["fix_task"]
    fix = hub.wait_status(failed["fix_task"])
    assert fix["status"] == "completed" and fix["verify_result"]["status"] == "passed"
    assert fix["resume"] == first["id"] and fix["fix_round"] == 1 and fix["fix_attempts"] == 0
    assert fix["session_id"] == failed["session_id"]  # the same agent session, resumed
    assert fix["title"].startswith("fix 1: ")
    assert "FAIL: test_mul" in fix["prompt"] and CHECK in fix["prompt"]
    result = hub.client().result(fix["id"])
    assert result["chain"] == [first["id"], fix["id"]]
    shown = hub.cli("results", fix["id"], check=True).stdout
    assert "passed (exit 0" in shown and "fix round 1" in shown
    branch = fix["branch"]
    assert "return a * b" in git(tmp_path / "app", "show", f"{branch}:calc.py")


def test_a_hub_killed_mid_race_resumes_and_decides(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    plays = [
        {"FAKE_AGENT_SCENARIO": "patch_bad", "FAKE_AGENT_DELAY": "0.4"},
        {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "0.6"},
        {"FAKE_AGENT_SCENARIO": "patch_wide", "FAKE_AGENT_DELAY": "0.2"},
    ]
    hub = hub_for(tmp_path, ssh_hosts, plays)
    started.append(hub)
    body = race(hub, "--race", "3", "--hosts", "h1,h2,h3", "--pick", "smallest")
    ids = [c["task_id"] for c in body["attempts"]]
    for tid in ids:
        hub.wait_status(tid, ("running",))
    hub.kill()  # SIGKILL while every attempt runs
    for host in ssh_hosts:  # each attempt ends on its host while no hub watches
        deadline = time.monotonic() + 60
        while not list(host.home.glob(".dobby/tasks/*/exit")):
            assert time.monotonic() < deadline, f"{host.name}: no attempt ended"
            time.sleep(0.1)
    hub.start()
    view = wait_race(hub, body["id"], settled)
    cols = view["attempts"]
    tasks = [hub.client().task(t) for t in ids]
    why = json.dumps([{k: t[k] for k in SHOWN} for t in tasks], indent=1)
    assert view["status"] == "completed" and view["winner"] == ids[1], why
    assert [c["state"] for c in cols] == ["failed", "passed", "passed"]
    assert len(hub.client().races()["races"]) == 1


def test_fix_rounds_in_a_race_continue_each_lane_until_one_passes(
    tmp_path: Path, ssh_hosts: list[SshHost], started: list[HubProcess]
) -> None:
    plays = [{"FAKE_AGENT_SCENARIO": "patch_bad"}, {"FAKE_AGENT_SCENARIO": "patch_bad"}]
    hub = hub_for(tmp_path, ssh_hosts[:2], plays)
    started.append(hub)
    body = race(hub, "--race", "2", "--hosts", "h1,h2", "--fix-attempts", "1", "--pick", "smallest")
    assert body["budget"]["max_runs"] == 4  # two attempts, each with one fix round
    view = wait_race(hub, body["id"], settled)
    cols = view["attempts"]
    assert view["status"] == "completed" and [c["state"] for c in cols] == ["passed", "passed"]
    for col in cols:
        assert col["rounds"] == 2 and len(col["tasks"]) == 2
        first, fix = (hub.client().task(t) for t in col["tasks"])
        assert first["reason"] == "verify_failed" and first["fix_task"] == fix["id"]
        assert fix["race_id"] == body["id"] and fix["race_slot"] == col["slot"]
        assert fix["host"] == first["host"] and fix["resume"] == first["id"]
        # the lane's diff runs from its first task's base to its last head: mul, fixed
        assert col["diff_stat"]["files_changed"] == 1 and col["diff_stat"]["insertions"] == 4
    assert view["winner"] in (cols[0]["task_id"], cols[1]["task_id"])
    assert view["branch"] == f"dobby/{view['winner']}"
