"""Detail-status folded from the recorded transcripts of each backend (no I/O)."""

from __future__ import annotations

import json

import pytest

from dobby.backends.pricing import DEFAULT_PRICES
from dobby.core.models import Tokens
from dobby.replay.playbook import TRANSCRIPTS
from dobby.results.detail import Detail


def fold(backend: str, name: str, *, upto: int | None = None, **kw: object) -> Detail:
    detail = Detail(backend=backend, prices=DEFAULT_PRICES, **kw)  # type: ignore[arg-type]
    lines = (TRANSCRIPTS / name).read_text().splitlines()
    for line in lines[:upto]:
        detail.feed(line)
    return detail


def test_claude_success() -> None:
    d = fold("claude", "claude-stream-json.jsonl")
    assert d.step == "finished" and d.session_id and d.model == "claude-opus-4-8[1m]"
    assert d.files["created"] == ["hello.txt"]  # written, then edited: still a new file
    assert d.files["edited"] == []
    assert d.commands == [{"command": "cat hello.txt && ls", "exit_code": 0, "status": "completed"}]
    assert d.last_tool == "Bash" and d.last_target == "cat hello.txt && ls"
    assert d.cost_final and d.cost_usd == pytest.approx(0.0437)
    assert d.tokens == Tokens(input=4800, output=168, cache_read=16000, cache_write=1200)
    assert d.turns == 4 and d.retries == 0


def test_claude_while_running_estimates_cost_and_shows_the_step() -> None:
    d = fold("claude", "claude-stream-json.jsonl", upto=3)  # init, text, Write tool_use
    assert d.step == "Write: hello.txt" and d.last_tool == "Write"
    assert d.files["created"] == []  # not until its result says so
    assert not d.cost_final and d.cost_usd is not None and d.cost_usd > 0
    out = d.to_dict()
    assert out["cost_estimated"] is True and out["turns"] == 1
    d = fold("claude", "claude-stream-json.jsonl", upto=7)  # Bash tool_use, no result yet
    assert d.commands[-1] == {
        "command": "cat hello.txt && ls",
        "exit_code": None,
        "status": "running",
    }
    assert d.step.startswith("Bash: cat hello.txt")


def test_claude_failed_command_and_retries() -> None:
    d = fold("claude", "claude-failed-command.jsonl")
    assert d.commands[-1] == {"command": "ls /nonexistent_dir", "exit_code": 2, "status": "failed"}
    assert d.files["created"] == ["hello.txt"]
    d = fold("claude", "claude-error-500.jsonl")
    assert d.retries == 2 and d.last_retry and "server_error (500)" in d.last_retry["error"]
    assert d.step.startswith("failed: API Error: 500")


@pytest.mark.parametrize(
    ("content", "exit_code", "status"),
    [
        ("Claude requested permissions to use Bash, but you haven't granted it yet.", None,
         "denied"),
        ("Exit code 3\nboom", 3, "failed"),
        ("[Request interrupted by user for tool use]", None, "failed"),
    ],
)  # fmt: skip
def test_claude_command_that_never_ran_has_no_exit_code(
    content: str, exit_code: int | None, status: str
) -> None:
    """Only claude's "Exit code N" says a command ran: a denied one gets no invented code."""
    lines = (TRANSCRIPTS / "claude-failed-command.jsonl").read_text().splitlines()
    refusal = json.loads(lines[7])
    refusal["message"]["content"][0]["content"] = content
    d = Detail(backend="claude")
    for line in [*lines[:7], json.dumps(refusal)]:
        d.feed(line)
    assert d.commands[-1] == {
        "command": "ls /nonexistent_dir", "exit_code": exit_code, "status": status
    }  # fmt: skip


def test_codex_success_and_failed_command() -> None:
    d = fold("codex", "codex-exec.jsonl", model="gpt-5.5", cwd="/home/dev/repo")
    assert d.files["created"] == ["notes.md"]
    assert d.commands == [
        {"command": "echo hi > hello.txt && cat hello.txt", "exit_code": 0, "status": "completed"}
    ]
    assert d.tokens.input == 4500 and d.cost_usd is not None and d.turns == 1
    assert d.last_message == "Done: created hello.txt"
    d = fold("codex", "codex-exec-failed-command.jsonl", model="gpt-5.5")
    assert d.commands[0]["exit_code"] == 2 and d.commands[0]["status"] == "failed"
    running = fold("codex", "codex-exec.jsonl", upto=5)
    assert running.step == "running: echo hi > hello.txt && cat hello.txt"
    assert running.commands[0]["status"] == "running"


def test_codex_unknown_model_cost_is_unknown_and_resume_uses_the_baseline() -> None:
    assert fold("codex", "codex-exec.jsonl").cost_usd is None
    d = fold("codex", "codex-exec-resume.jsonl", model="gpt-5.5",
             baseline=Tokens(input=4500, output=150, cache_read=3000))  # fmt: skip
    assert d.tokens == Tokens(input=1500, output=50, cache_read=1000)


def test_codex_retries() -> None:
    d = fold("codex", "codex-error-500.jsonl")
    assert d.retries >= 1 and d.last_error


def test_shell_lines() -> None:
    d = Detail(backend="shell")
    for line in ("epoch 1 loss 0.9", "", "\x1b[32mepoch 2 loss 0.5\x1b[0m"):
        d.feed(line)
    assert d.step == "epoch 2 loss 0.5" and d.lines == 2 and d.cost_usd is None


def test_commands_list_is_bounded() -> None:
    d = Detail(backend="codex")
    for i in range(80):
        item = {"id": f"i{i}", "type": "command_execution", "command": f"echo {i}"}
        started = {**item, "status": "in_progress"}
        done = {**item, "exit_code": i % 3, "status": "completed"}
        d.feed(json.dumps({"type": "item.started", "item": started}))
        d.feed(json.dumps({"type": "item.completed", "item": done}))
    assert d.commands_total == 80 and len(d.commands) == 50
    assert d.commands[-1] == {"command": "echo 79", "exit_code": 1, "status": "completed"}
    assert d.commands[0]["command"] == "echo 30" and d.commands[0]["exit_code"] == 0
