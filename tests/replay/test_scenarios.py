"""The fake claude and codex: prompts on stdin, the newer scenarios, session files and state.

Every line a fake prints (and every line the fake codex writes to its session file) must have
a shape a real CLI printed in one of the recorded transcripts.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dobby.backends import get_backend
from dobby.core.models import Reason, TaskStatus
from dobby.replay.playbook import QUOTA, TRANSCRIPTS
from tests.fixtures.wait import wait_until

CLAUDE = ["-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"]
CODEX = ["exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]


# -- shapes ----------------------------------------------------------------------------------


def shape(line: dict[str, Any]) -> tuple[Any, ...]:
    """Return what identifies a line's form: its kind and the keys at each level that matter."""
    subtype = line.get("subtype")
    if isinstance(subtype, str) and subtype.startswith("error_"):
        subtype = "error_*"  # error_max_turns and error_max_budget_usd share one form
    parts: list[Any] = [line.get("type"), subtype, tuple(sorted(line))]
    for key in ("message", "item", "payload", "rate_limit_info", "error"):
        inner = line.get(key)
        if isinstance(inner, dict):
            parts += [key, inner.get("type"), tuple(sorted(inner))]
            for block in inner.get("content") or [] if key == "message" else []:
                if isinstance(block, dict):
                    parts += ["block", tuple(sorted(block))]
    return tuple(parts)


def _recorded_shapes() -> set[tuple[Any, ...]]:
    shapes = set()
    for path in [*TRANSCRIPTS.iterdir(), *QUOTA.iterdir()]:
        if path.suffix not in (".jsonl", ".json", ".log"):
            continue
        for text in path.read_text(encoding="utf-8").splitlines():
            if text.startswith("{"):
                shapes.add(shape(json.loads(text)))
    return shapes


RECORDED = _recorded_shapes()


def assert_recorded_shapes(lines: list[dict[str, Any]]) -> None:
    for line in lines:
        assert shape(line) in RECORDED, line


# -- running the fakes -----------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Return an empty HOME (one account) with a git repository to work in at home/repo."""
    (tmp_path / "home" / "repo").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "home" / "repo")], check=True)
    return tmp_path / "home"


def run(
    fake_bin: Path, home: Path, agent: str, args: list[str], prompt: str | bytes = "", **env: str
) -> tuple[int, list[dict[str, Any]], str]:
    """Run a fake with the prompt on stdin (as run.sh does); return status, lines, stderr."""
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), "IS_SANDBOX": "1",
               "DOBBY_TASK_DIR": str(home / "task"), "TZ": "UTC", **env}  # fmt: skip
    data = prompt.encode() if isinstance(prompt, str) else prompt
    done = subprocess.run(
        [str(fake_bin / agent), *(CLAUDE if agent == "claude" else CODEX), *args],
        cwd=home / "repo", env=environ, input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, lines, done.stderr.decode()


def session_of(lines: list[dict[str, Any]]) -> str:
    return str(lines[0].get("session_id") or lines[0].get("thread_id"))


def collect(agent: str, lines: list[dict[str, Any]], code: int, facts: str = "") -> Any:
    text = [json.dumps(line) for line in lines]
    return get_backend(agent).collect(text, exit_code=code, host_facts=facts, now=time.time())


def rollouts(home: Path) -> list[Path]:
    return sorted((home / ".codex" / "sessions").glob("*/*/*/rollout-*.jsonl"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- prompts on stdin ------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_a_large_prompt_arrives_on_stdin_byte_identical(
    fake_bin: Path, home: Path, agent: str
) -> None:
    prompt = ("é ✓ 'q' \"dq\" $(id) `x` \\ -- --flag\n" * 40_000)[: 1 << 20]
    args = ["-"] if agent == "codex" else []
    code, lines, stderr = run(fake_bin, home, agent, args, prompt)
    assert code == 0, stderr
    record = json.loads((home / "task" / "fake-agent.json").read_text(encoding="utf-8"))
    assert record["prompt"] == prompt and record["argv"] == [
        *(CLAUDE if agent == "claude" else CODEX),
        *args,
    ]
    assert lines[-1]["type"] in ("result", "turn.completed")


@pytest.mark.parametrize(("agent", "args"), [("claude", []), ("codex", ["-"])])
def test_an_empty_stdin_is_refused_like_the_real_cli(
    fake_bin: Path, home: Path, agent: str, args: list[str]
) -> None:
    code, lines, stderr = run(fake_bin, home, agent, args, "")
    assert code == 1 and lines == []
    assert "Input must be provided" in stderr or "No prompt provided" in stderr


# -- stall, denied, budget -------------------------------------------------------------------


@pytest.fixture
def stalled(fake_bin: Path, home: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start a fake in the stall scenario; yield (process, agent); kill it at the end."""
    agent = request.param
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), "IS_SANDBOX": "1",
               "FAKE_AGENT_DELAY": "0.01"}  # fmt: skip
    args = CLAUDE if agent == "claude" else [*CODEX, "-"]
    proc = subprocess.Popen(
        [str(fake_bin / agent), *args], cwd=home / "repo", env=environ,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b"work, then wait [scenario:stall]")
    proc.stdin.close()
    try:
        yield proc, agent
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def read_lines(proc: subprocess.Popen[bytes], count: int) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    fd, data, deadline = proc.stdout.fileno(), b"", time.monotonic() + 30
    while data.count(b"\n") < count:
        assert time.monotonic() < deadline, data
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, data
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("stalled", ["claude", "codex"], indirect=True)
def test_stall_works_then_waits_until_killed(stalled: Any, home: Path) -> None:
    proc, agent = stalled
    lines = read_lines(proc, 4 if agent == "claude" else 6)
    assert_recorded_shapes(lines)
    assert (home / "repo" / "hello.txt").read_text() == "hi\n"  # the work done so far
    if agent == "codex":  # its tokens so far are in its session file
        wait_until(lambda: rollouts(home), timeout=30, what="codex's session file")
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    result = collect(agent, lines, 143)
    assert result.status is TaskStatus.FAILED and result.session_id == session_of(lines)
    if agent == "claude":  # cost so far, priced from the usage of the calls already made
        assert result.tokens.input == 1200 and result.cost_usd and result.cost_usd > 0
    else:
        (path,) = rollouts(home)
        counts = [ln for ln in read_jsonl(path) if ln["payload"].get("type") == "token_count"]
        assert counts[-1]["payload"]["info"]["total_token_usage"]["input_tokens"] == 1500


def test_denied_write_is_reported(fake_bin: Path, home: Path) -> None:
    code, lines, _ = run(fake_bin, home, "claude", [], "make it [scenario:denied]")
    assert code == 0 and not (home / "repo" / "hello.txt").exists()
    assert_recorded_shapes(lines)
    result = collect("claude", lines, code)
    assert result.status is TaskStatus.COMPLETED
    assert result.permission_denials == [{"tool": "Write", "target": f"{home}/repo/hello.txt"}]
    (warning,) = result.warnings
    assert warning.startswith("1 action(s) denied by the host's permissions: Write /")


@pytest.mark.parametrize(
    ("args", "turns", "reason"),
    [
        (["--max-budget-usd", "0.02"], 2, Reason.BUDGET),
        (["--max-budget-usd", "0.001"], 1, Reason.BUDGET),
        (["--max-budget-usd", "5"], 4, None),
        (["--max-turns", "2"], 2, Reason.MAX_TURNS),
    ],
)
def test_claude_limits_stop_the_run_and_keep_its_work(
    fake_bin: Path, home: Path, args: list[str], turns: int, reason: Reason | None
) -> None:
    code, lines, _ = run(fake_bin, home, "claude", args, "make hello.txt")
    assert_recorded_shapes(lines)
    result = collect("claude", lines, code)
    assert result.reason is reason and result.turns == turns
    assert (home / "repo" / "hello.txt").exists()  # the partial work stays
    if reason is Reason.BUDGET:
        assert code == 1 and result.error.startswith("error_max_budget_usd: Reached maximum")
        assert result.cost_usd == pytest.approx(0.010925 * turns)


# -- quota -----------------------------------------------------------------------------------

# fmt: off
QUOTA_CASES = [
    ("claude", "quota_start", "five_hour", "usage_limit", False),
    ("claude", "quota_mid", "five_hour", "usage_limit", True),
    ("claude", "quota_weekly", "seven_day", "usage_limit", False),
    ("claude", "quota_noreset", None, "rate_limited_no_reset", False),
    ("codex", "quota_start", "five_hour", "usage_limit", False),
    ("codex", "quota_mid", "five_hour", "usage_limit", True),
    ("codex", "quota_weekly", "seven_day", "usage_limit", False),
    ("codex", "quota_noreset", None, "rate_limited_no_reset", False),
]
# fmt: on


def facts(home: Path, lines: list[dict[str, Any]]) -> str:
    """Run the hub's facts command against the fake codex's session file, as collection does."""
    from dobby.hostside.results import render_codex_facts
    from dobby.hostside.scripts import TaskPaths

    paths = TaskPaths(workdir=str(home / "dobby"), task_id="t1")
    Path(paths.task_dir).mkdir(parents=True, exist_ok=True)
    Path(paths.file("out.jsonl")).write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    Path(paths.file("env")).write_text("export TZ=UTC\n")
    done = subprocess.run(
        ["bash", "-c", render_codex_facts(paths=paths)], env={**os.environ, "HOME": str(home)},
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout


@pytest.mark.parametrize(("agent", "name", "window", "kind", "worked"), QUOTA_CASES)
def test_quota_scenarios(
    fake_bin: Path, home: Path, agent: str, name: str, window: str | None, kind: str,
    worked: bool,
) -> None:  # fmt: skip
    args = ["-"] if agent == "codex" else []
    before = time.time()
    code, lines, _ = run(fake_bin, home, agent, args, f"go [scenario:{name}:600]")
    assert code == 1
    assert_recorded_shapes(lines)
    result = collect(agent, lines, code, facts(home, lines) if agent == "codex" else "")
    assert result.reason is Reason.USAGE_LIMIT and result.quota is not None
    signal_ = result.quota
    assert (signal_.kind, signal_.window, signal_.worked) == (kind, window, worked)
    if kind == "usage_limit":  # the reset, read back from what the fake printed and wrote
        assert signal_.resets_at is not None
        assert before + 600 - 60 <= signal_.resets_at <= time.time() + 600
        assert signal_.source == ("event" if agent == "claude" else "rollout")
    else:
        assert signal_.resets_at is None
    if agent == "codex":
        (path,) = rollouts(home)
        assert path.name.endswith(f"-{session_of(lines)}.jsonl")
        assert_recorded_shapes(read_jsonl(path))


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_a_limit_holds_for_the_account_until_its_reset_then_the_session_resumes(
    fake_bin: Path, home: Path, agent: str
) -> None:
    args = ["-"] if agent == "codex" else []
    code, first, _ = run(fake_bin, home, agent, args, "half [scenario:quota_mid:3600]")
    session = session_of(first)
    assert code == 1 and (home / "repo" / "hello.txt").exists()
    # another task on the same account, and the cut session itself, hit the limit at start
    code, other, _ = run(fake_bin, home, agent, args, "unrelated work")
    assert code == 1 and collect(agent, other, code).reason is Reason.USAGE_LIMIT
    resume = ["--resume", session] if agent == "claude" else ["resume", session, "-"]
    code, again, _ = run(fake_bin, home, agent, resume, "continue")
    assert code == 1 and session_of(again) == session
    # The reset passes: the account's clock moves past it (a wait would race a loaded machine).
    state = home / ".fake-agent" / f"{agent}-limit.json"
    limit = json.loads(state.read_text())
    assert limit["resets_at"] > time.time() + 3000  # still in force until now
    state.write_text(json.dumps({**limit, "resets_at": time.time() - 1}))
    code, rest, _ = run(fake_bin, home, agent, resume, "continue")
    assert code == 0 and session_of(rest) == session
    assert_recorded_shapes(rest)
    result = collect(agent, rest, code)
    assert result.status is TaskStatus.COMPLETED and result.session_id == session
    second_half = "continued.txt" if agent == "claude" else "notes.md"
    assert (home / "repo" / second_half).exists()  # work of both halves in one worktree
    if agent == "codex":  # the resumed thread appends to the file it started
        (path,) = [p for p in rollouts(home) if session in p.name]
        kinds = [ln["payload"].get("type") for ln in read_jsonl(path)]
        assert kinds.count("task_complete") == 3 and kinds[-1] == "task_complete"
    # and the account works again for everyone
    code, later, _ = run(fake_bin, home, agent, args, "unrelated work")
    assert code == 0


def test_codex_takes_its_model_from_config_toml(fake_bin: Path, home: Path) -> None:
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text('model = "gpt-5.5"\n[notice]\nmodel = "x"\n')
    code, lines, _ = run(fake_bin, home, "codex", ["-"], "make hello.txt")
    assert code == 0
    (path,) = rollouts(home)
    contexts = [ln for ln in read_jsonl(path) if ln["type"] == "turn_context"]
    assert contexts and all(ln["payload"]["model"] == "gpt-5.5" for ln in contexts)
    assert_recorded_shapes(read_jsonl(path))
    result = collect("codex", lines, code, facts(home, lines))
    assert result.models == ["gpt-5.5"] and result.cost_usd == pytest.approx(
        (1500 * 1.5 + 3000 * 0.15 + 150 * 12) / 1e6
    )
    code, lines, _ = run(fake_bin, home, "codex", ["-m", "o3", "-"], "again")
    assert collect("codex", lines, code, facts(home, lines)).models == ["o3"]


@pytest.mark.parametrize(
    "scenario", ["success", "api401", "api500", "failed_command", "crash", "lines:2:1"]
)
def test_every_codex_session_file_line_has_a_recorded_shape(
    fake_bin: Path, home: Path, scenario: str
) -> None:
    run(fake_bin, home, "codex", ["-"], f"x [scenario:{scenario}]")
    (path,) = rollouts(home)
    lines = read_jsonl(path)
    assert lines[0]["type"] == "session_meta" and len(lines) >= 8
    assert_recorded_shapes(lines)
