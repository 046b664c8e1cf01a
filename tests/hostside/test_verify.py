"""The verify phase of run.sh, executed for real with bash and git: the check after the agent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dobby.core.models import VerifyStatus
from dobby.hostside import scripts, verify
from dobby.hostside.scripts import PROMPT

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
NASTY_CHECK = (
    'echo "it\'s $(echo data)"; if [ -f /tmp/dobby-verify-pwned ]; then exit 9; fi\n# `id` \'"'
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, env=GIT_ENV, check=True
    )
    return done.stdout


def run_task(
    tmp_path: Path, agent: str, check: str, *, timeout: float = 30
) -> tuple[Path, Path, dict[str, str]]:
    """Run run.sh with the verify phase in a fresh git worktree; return its dirs and result."""
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="abcd1234")
    task_dir, worktree = Path(paths.task_dir), Path(paths.worktree)
    task_dir.mkdir(parents=True)
    worktree.mkdir(parents=True)
    git(worktree, "init", "-q")
    (worktree / ".gitignore").write_text("ignored/\n")
    (worktree / "README").write_text("hi\n")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", "init")
    (task_dir / "prompt.md").write_text(agent)
    (task_dir / "env").write_text(scripts.render_env({}))
    (task_dir / verify.SCRIPT_FILE).write_text(check + "\n")
    (task_dir / verify.COMMIT_MESSAGE_FILE).write_text("dobby: uncommitted work of task x\n")
    run_sh = scripts.render_run_sh(
        paths=paths,
        argv=["bash", "-c", PROMPT],
        timeout=None,
        cwd=paths.worktree,
        after=verify.render_verify_phase(paths=paths, timeout=timeout),
    )
    (task_dir / "run.sh").write_text(run_sh)
    subprocess.run(["bash", str(task_dir / "run.sh")], capture_output=True, check=False)
    state = (
        scripts.parse_kv((task_dir / "verify").read_text())
        if (task_dir / "verify").exists()
        else {}
    )
    return task_dir, worktree, state


def test_the_check_runs_after_the_agent_on_its_committed_work(tmp_path: Path) -> None:
    agent = (
        "echo 'def f(): return 1' > lib.py; mkdir ignored __pycache__; echo x > ignored/cache; "
        "echo x > __pycache__/lib.cpython-311.pyc; printf end"
    )
    check = "cat lib.py; echo junk > junk.txt; echo 'checked it'; exit 3"
    task_dir, worktree, state = run_task(tmp_path, agent, check)
    assert (task_dir / "exit").read_text() == "0\n"  # the agent's own exit code
    assert state["exit_code"] == "3" and int(state["duration_ms"]) >= 0
    out = (task_dir / "out.jsonl").read_bytes()
    offset = int(state["offset"])
    assert out[:offset] == b"end\n"  # the agent's output, its missing newline added
    lines = out[offset:].decode().splitlines()
    assert verify.parse_marker(lines[0]) == {"type": "dobby.verify", "phase": "start"}
    assert lines[1:3] == ["def f(): return 1", "checked it"]
    end = verify.parse_marker(lines[-1])
    assert end is not None and end["phase"] == "end" and end["exit_code"] == 3
    # the agent's work was committed before the check; what the check wrote is gone
    assert git(worktree, "log", "-1", "--format=%s %an") == (
        "dobby: uncommitted work of task x Dobby\n"
    )
    # build junk is left out of the commit, as collection leaves it out (COMMIT_JUNK)
    assert git(worktree, "show", "--name-only", "--format=", "HEAD") == "lib.py\n"
    assert git(worktree, "status", "--porcelain") == ""
    assert not (worktree / "junk.txt").exists()
    assert (worktree / "ignored" / "cache").exists()  # ignored files are left alone
    result = verify.parse_result((task_dir / "verify").read_text())
    assert result is not None and result.status == VerifyStatus.FAILED.value
    assert verify.section_tail(out[offset:]) == "def f(): return 1\nchecked it"


def test_the_check_is_data_never_shell_syntax_of_run_sh(tmp_path: Path) -> None:
    task_dir, _, state = run_task(tmp_path, "true", NASTY_CHECK)
    assert state["exit_code"] == "0"
    out = (task_dir / "out.jsonl").read_text()
    assert "it's data" in out
    assert NASTY_CHECK not in (task_dir / "run.sh").read_text()
    assert not os.path.exists("/tmp/dobby-verify-pwned")


def test_a_check_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    task_dir, _, state = run_task(tmp_path, "true", "echo start; sleep 30", timeout=1)
    assert state["exit_code"] == "124"
    result = verify.parse_result((task_dir / "verify").read_text(), tail="start")
    assert result is not None and result.status == VerifyStatus.TIMEOUT.value


def test_no_check_after_a_failed_agent(tmp_path: Path) -> None:
    task_dir, worktree, state = run_task(tmp_path, "echo broke > f; exit 5", "echo checked")
    assert (task_dir / "exit").read_text() == "5\n"
    assert state == {}
    assert "checked" not in (task_dir / "out.jsonl").read_text()
    assert (worktree / "f").exists()  # left for collection to commit, as always


@pytest.mark.parametrize(
    ("line", "marker"),
    [
        ('{"type":"dobby.verify","phase":"start"}', {"type": "dobby.verify", "phase": "start"}),
        ('{"type":"dobby.verify","phase":"end","exit_code":0,"duration_ms":5}', True),
        ('{"type":"result","subtype":"success"}', None),
        ('{"type":"dobby.verify", broken', None),
        ("plain text", None),
    ],
)
def test_parse_marker(line: str, marker: object) -> None:
    got = verify.parse_marker(line)
    if marker is True:
        assert got is not None and got["exit_code"] == 0
    else:
        assert got == marker


def test_section_tail_keeps_the_last_whole_lines() -> None:
    data = b'{"type":"dobby.verify","phase":"start"}\n' + b"".join(
        f"line {i}\n".encode() for i in range(1000)
    )
    tail = verify.section_tail(data, limit=40)
    assert tail.splitlines()[-1] == "line 999" and len(tail) <= 40
    assert tail.splitlines()[0].startswith("line ")
    assert json.dumps(tail)
