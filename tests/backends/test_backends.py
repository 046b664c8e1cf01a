"""The three backends against the recorded transcripts: argv, env, render, collect; and pricing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dobby.backends import BACKENDS, PROMPT, LogEvent, get_backend
from dobby.backends import claude as claude_module
from dobby.backends import codex as codex_module
from dobby.backends.base import EVENT_KINDS, display_path
from dobby.backends.claude import ALLOWED_TOOLS
from dobby.backends.pricing import DEFAULT_PRICES, ModelPrice, cost, parse_prices, price_for
from dobby.core.errors import ConfigError, ValidationError
from dobby.core.models import Host, Permissions, Reason, Result, Task, TaskStatus, Tokens
from dobby.replay.playbook import TRANSCRIPTS  # noqa: E402

OUTPUTS = sorted(
    p.name for p in TRANSCRIPTS.iterdir() if p.suffix in (".jsonl", ".json", ".log", ".txt")
)


def backend_of(name: str) -> str:
    return "codex" if name.startswith("codex") else "claude"


def lines_of(name: str) -> list[str]:
    return (TRANSCRIPTS / name).read_text().splitlines(keepends=True)


def exit_code_of(name: str) -> int:
    """Return the recorded exit code: the .exitcode file, tmux's ``EXIT=N`` line, else 0."""
    code_file = TRANSCRIPTS / (name.rsplit(".", 1)[0] + ".exitcode")
    if code_file.exists():
        return int(code_file.read_text())
    for line in lines_of(name):
        if line.startswith("EXIT="):
            return int(line.strip().split("=", 1)[1])
    return 0


def check_events(events: list[LogEvent]) -> None:
    for event in events:
        assert isinstance(event, LogEvent)
        assert event.kind in EVENT_KINDS
        assert isinstance(event.text, str)
        assert isinstance(event.is_error, bool)
        json.dumps(event.to_dict(), allow_nan=False)


def host(permissions: str = "edits") -> Host:
    return Host(name="h1", permissions=permissions)


# --- every transcript renders -----------------------------------------------------------------


@pytest.mark.parametrize("name", OUTPUTS)
@pytest.mark.parametrize("backend", ["claude", "codex", "shell"])
def test_every_transcript_line_renders_with_every_backend(name: str, backend: str) -> None:
    for line in lines_of(name):
        check_events(get_backend(backend).render(line))


# fmt: off
@pytest.mark.parametrize(
    "name", [n for n in OUTPUTS if n.endswith((".jsonl", ".json", ".log"))]
)
def test_own_transcript_lines_are_all_understood(name: str) -> None:
    """Every JSON line of its own backend renders as JSON, never as a raw ``line``."""
    backend = get_backend(backend_of(name))
    for line in lines_of(name):
        events = backend.render(line)
        if line.startswith("{"):
            assert all(e.kind != "line" for e in events), line
        else:
            assert [e.kind for e in events] == ["line"]
# fmt: on


# --- collect against the recordings -----------------------------------------------------------

COMPLETED, FAILED = TaskStatus.COMPLETED, TaskStatus.FAILED
HELLO_TOKENS = Tokens(input=4800, output=168, cache_read=16000, cache_write=1200)
FOLLOWUP_TOKENS = Tokens(input=1200, output=42, cache_read=4000, cache_write=300)
CODEX_TOKENS = Tokens(input=4500, output=150, cache_read=3000, cache_write=0)
HIGH_DEMAND = "We’re currently experiencing high demand, which may cause temporary errors."

# name, expected fields (error: a substring; cost: approx; others: equal)
# fmt: off
COLLECT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("claude-stream-json.jsonl", dict(
        status=COMPLETED, reason=None, error=None, exit_code=0, summary="Done: created hello.txt",
        cost_usd=0.0437, tokens=HELLO_TOKENS, models=["claude-opus-4-8[1m]"], turns=4,
        session_id="802c3b37-c866-4274-9fc0-fc571667fa50", api_error_status=None)),
    ("claude-stream-json-partial.jsonl", dict(
        status=COMPLETED, summary="Done: created hello.txt", cost_usd=0.0437, tokens=HELLO_TOKENS,
        session_id="f06b17b3-3850-47ae-8c3f-051826c3da27")),
    ("claude-tmux.log", dict(
        status=COMPLETED, exit_code=0, summary="Done: created hello.txt", cost_usd=0.0437,
        tokens=HELLO_TOKENS, session_id="34acae5b-2d51-434a-a94d-6788e69d6d8a")),
    ("claude-failed-command.jsonl", dict(
        status=COMPLETED, reason=None, summary="Done: created hello.txt", tokens=HELLO_TOKENS,
        session_id="3c779546-ecfd-4f4a-a0ca-1d532e80a68e")),
    ("claude-json.json", dict(
        status=COMPLETED, summary="Done: created hello.txt", cost_usd=0.0437, tokens=HELLO_TOKENS,
        session_id="9c177234-4fd0-49c0-a802-fd8cac9a0c69", turns=4)),
    ("claude-continue.json", dict(
        status=COMPLETED, summary="Follow-up answered: hello.txt still exists.",
        cost_usd=0.010925, tokens=FOLLOWUP_TOKENS, models=["claude-opus-4-8"], turns=1,
        session_id="802c3b37-c866-4274-9fc0-fc571667fa50")),
    ("claude-resume-stream-json.jsonl", dict(
        status=COMPLETED, summary="Follow-up answered: hello.txt still exists.",
        tokens=FOLLOWUP_TOKENS, session_id="802c3b37-c866-4274-9fc0-fc571667fa50")),
    ("claude-error-401.jsonl", dict(
        status=FAILED, reason=Reason.AGENT_ERROR, exit_code=1, api_error_status=401,
        error="Failed to authenticate. API Error: 401", cost_usd=0.0, tokens=Tokens(), models=[],
        session_id="f1113eab-61b0-44c8-9d5d-87e59e278e36")),
    ("claude-error-500.jsonl", dict(
        status=FAILED, reason=Reason.AGENT_ERROR, exit_code=1, api_error_status=500,
        error="API Error: 500 fake api_error", cost_usd=0.0,
        session_id="9c266d4d-cdec-433b-be93-66a360375408")),
    ("claude-max-turns.json", dict(
        status=FAILED, reason=Reason.MAX_TURNS, exit_code=1, duration_ms=120,
        error="error_max_turns: Reached maximum number of turns (1)", cost_usd=0.010925,
        tokens=FOLLOWUP_TOKENS, turns=2, session_id="0a2d641c-6eea-43ab-9710-750a0efdce05")),
    ("claude-text.txt", dict(
        status=FAILED, reason=Reason.EXIT_CODE, error="no result line", session_id=None)),
    ("codex-exec.jsonl", dict(
        status=COMPLETED, reason=None, error=None, exit_code=0, summary="Done: created hello.txt",
        tokens=CODEX_TOKENS, session_id="01a20f9c-09cc-7ba0-9634-93097ddc3e74")),
    ("codex-tmux.log", dict(
        status=COMPLETED, summary="Done: created hello.txt", tokens=CODEX_TOKENS,
        session_id="01a20f9c-14ef-7cd3-99b6-e3fa7ec8ad9f")),
    ("codex-exec-failed-command.jsonl", dict(
        status=COMPLETED, summary="Done: created hello.txt", tokens=CODEX_TOKENS,
        session_id="01a20f9c-12fb-7603-88e5-27974c92a0b9")),
    ("codex-exec-resume.jsonl", dict(
        status=COMPLETED, summary="Follow-up answered: hello.txt still exists.",
        tokens=Tokens(input=6000, output=200, cache_read=4000),
        session_id="01a20f9c-09cc-7ba0-9634-93097ddc3e74")),
    ("codex-error-401.jsonl", dict(
        status=FAILED, reason=Reason.AGENT_ERROR, exit_code=1, tokens=Tokens(), cost_usd=0.0,
        error="unexpected status 401 Unauthorized",
        session_id="01a20f9c-0d80-70a2-a99c-95515fdad61d")),
    ("codex-error-500.jsonl", dict(
        status=FAILED, reason=Reason.AGENT_ERROR, exit_code=1, error=HIGH_DEMAND, cost_usd=0.0,
        session_id="01a20f9c-0f79-7ee1-bdd9-1ec3228cf227")),
]
# fmt: on


def check_result(result: Result, expected: dict[str, Any]) -> None:
    assert result.status in (COMPLETED, FAILED)
    for key, want in expected.items():
        got = getattr(result, key)
        if key == "error" and want is not None:
            assert got is not None and want in got, (key, got)
        elif key == "cost_usd" and want is not None:
            assert got == pytest.approx(want), (key, got)
        else:
            assert got == want, (key, got)
    if result.status is FAILED:
        assert result.reason is not None and result.error
    else:
        assert result.reason is None and result.error is None


@pytest.mark.parametrize(("name", "expected"), COLLECT_CASES, ids=[c[0] for c in COLLECT_CASES])
def test_collect_recorded_transcript(name: str, expected: dict[str, Any]) -> None:
    result = get_backend(backend_of(name)).collect(lines_of(name), exit_code=exit_code_of(name))
    check_result(result, expected)


def test_every_transcript_has_a_collect_case() -> None:
    covered = {name for name, _ in COLLECT_CASES}
    assert covered == set(OUTPUTS) - {"codex-exec.stderr.txt"}


@pytest.mark.parametrize("name", OUTPUTS)
@pytest.mark.parametrize("exit_code", [None, 0, 1, 137])
@pytest.mark.parametrize("backend", ["claude", "codex", "shell"])
def test_collect_any_transcript_any_exit_code(
    name: str, exit_code: int | None, backend: str
) -> None:
    """Whatever the output and exit code, a result comes back and is consistent."""
    result = get_backend(backend).collect(lines_of(name), exit_code=exit_code, stderr_tail="boom")
    assert result.exit_code == exit_code
    if exit_code != 0:
        assert result.status is FAILED
    if result.status is FAILED:
        assert result.reason in (Reason.AGENT_ERROR, Reason.EXIT_CODE, Reason.MAX_TURNS)
        assert result.error
        if result.reason is Reason.EXIT_CODE:
            assert "boom" in result.error


# --- claude collect: the paths the recordings do not cover ------------------------------------

STREAM = lines_of("claude-stream-json.jsonl")
RESULT_LINE = json.loads(STREAM[-1])


def claude_result(**changes: Any) -> str:
    return json.dumps({**RESULT_LINE, **changes})


# fmt: off
@pytest.mark.parametrize(
    ("lines", "exit_code", "status", "reason", "error"),
    [
        # killed mid-run: no result line; session id from the init line, stderr kept
        (STREAM[:-1], 137, FAILED, Reason.EXIT_CODE, "no result line (exit code 137): Killed"),
        (STREAM[:-1], None, FAILED, Reason.EXIT_CODE, "agent exited without a result"),
        ([], 1, FAILED, Reason.EXIT_CODE, "no result line (exit code 1): Killed"),
        # success result line but a non-zero or missing exit code
        (STREAM, 1, FAILED, Reason.EXIT_CODE, "exit code 1: Killed"),
        (STREAM, None, FAILED, Reason.EXIT_CODE, "without an exit code"),
        # is_error result with a missing exit code: the result line says what happened
        (lines_of("claude-error-401.jsonl"), None, FAILED, Reason.AGENT_ERROR, "401"),
        # only the LAST result line counts
        ([claude_result(is_error=True, result="API Error: 529"), *STREAM], 0, COMPLETED, None,
         None),
        ([*STREAM, claude_result(is_error=True, result="API Error: 529")], 1, FAILED,
         Reason.AGENT_ERROR, "API Error: 529"),
        ([claude_result(subtype="error_max_budget_usd", is_error=True, errors=["over $1"])], 1,
         FAILED, Reason.BUDGET, "error_max_budget_usd: over $1"),
        ([claude_result(subtype="error_during_execution", is_error=True)], 1, FAILED,
         Reason.AGENT_ERROR, "error_during_execution"),
        # is_error false but a non-success subtype is still a failure
        ([claude_result(subtype="error_max_turns", is_error=False, errors=[])], 0, FAILED,
         Reason.MAX_TURNS, "error_max_turns"),
    ],
)
def test_claude_collect_edges(
    lines: list[str], exit_code: int | None, status: TaskStatus, reason: Reason | None,
    error: str | None,
) -> None:
    result = get_backend("claude").collect(lines, exit_code=exit_code, stderr_tail="Killed\n")
    assert (result.status, result.reason) == (status, reason)
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None and error in result.error
    if lines and status is FAILED and reason is Reason.EXIT_CODE:
        assert result.session_id == "802c3b37-c866-4274-9fc0-fc571667fa50"
# fmt: on


def test_claude_no_result_line_names_the_last_api_error() -> None:
    lines = lines_of("claude-error-500.jsonl")[:-2]  # killed while retrying
    result = get_backend("claude").collect(lines, exit_code=None)
    assert result.error == (
        "agent exited without a result (no result line; last API error: server_error (500))"
    )
    assert result.session_id == "9c266d4d-cdec-433b-be93-66a360375408"


def test_claude_tokens_fall_back_to_usage_and_sum_over_models() -> None:
    no_models = claude_result(modelUsage={})
    assert get_backend("claude").collect([no_models], exit_code=0).tokens == HELLO_TOKENS
    two = {
        name: {
            "inputTokens": n,
            "outputTokens": 2 * n,
            "cacheReadInputTokens": 3 * n,
            "cacheCreationInputTokens": 4 * n,
        }
        for name, n in (("a", 1), ("b", 10))
    }
    result = get_backend("claude").collect([claude_result(modelUsage=two)], exit_code=0)
    assert result.tokens == Tokens(input=11, output=22, cache_read=33, cache_write=44)
    assert result.models == ["a", "b"]


def test_claude_stderr_tail_is_shortened() -> None:
    result = get_backend("claude").collect([], exit_code=1, stderr_tail="x" * 10_000)
    assert result.error is not None and len(result.error) < 2000


# --- codex collect edges and cost -------------------------------------------------------------

CODEX = lines_of("codex-exec.jsonl")


# fmt: off
@pytest.mark.parametrize(
    ("lines", "exit_code", "reason", "error"),
    [
        ([], 1, Reason.EXIT_CODE, "exit code 1: Not inside a trusted directory"),
        (CODEX, 1, Reason.EXIT_CODE, "exit code 1"),
        (CODEX, None, Reason.EXIT_CODE, "agent exited without a result"),
        (CODEX[:-1], 0, Reason.EXIT_CODE, "no turn.completed line (exit code 0)"),
        # killed by the task timeout while codex loops on an unreachable server
        (CODEX[:2] + ['{"type":"error","message":"Reconnecting... waiting for network"}\n'], None,
         Reason.EXIT_CODE, "last error: Reconnecting... waiting for network"),
        (lines_of("codex-error-500.jsonl"), None, Reason.AGENT_ERROR, HIGH_DEMAND),
    ],
)
def test_codex_collect_edges(
    lines: list[str], exit_code: int | None, reason: Reason, error: str
) -> None:
    stderr = "Not inside a trusted directory and --skip-git-repo-check was not specified."
    result = get_backend("codex").collect(lines, exit_code=exit_code, stderr_tail=stderr)
    assert (result.status, result.reason) == (FAILED, reason)
    assert result.error is not None and error in result.error
    assert result.summary
# fmt: on


# fmt: off
@pytest.mark.parametrize(
    ("model", "prices", "expected"),
    [
        # gpt-5.5: (4500-3000) * 1.50 + 3000 * 0.15 + 150 * 12.00, per million
        ("gpt-5.5", None, (1500 * 1.50 + 3000 * 0.15 + 150 * 12.00) / 1e6),
        ("gpt-5-codex-high", None, (1500 * 1.25 + 3000 * 0.125 + 150 * 10.00) / 1e6),
        ("gpt-5.5", {"gpt-5.5": ModelPrice(input=1, output=2, cache_read=0.5, cache_write=1)},
         (1500 * 1 + 3000 * 0.5 + 150 * 2) / 1e6),
        ("my-local-model", {"my-local": ModelPrice(input=0, output=0)}, 0.0),
        ("unknown-model", None, None),
        (None, None, None),
    ],
)
def test_codex_cost(model: str | None, prices: Any, expected: float | None) -> None:
    result = get_backend("codex").collect(CODEX, exit_code=0, model=model, prices=prices)
    if expected is None:
        assert result.cost_usd is None
    else:
        assert result.cost_usd == pytest.approx(expected)
    assert result.models == ([model] if model else [])
# fmt: on


@pytest.mark.parametrize("model", ["gpt-5.5", "unknown-model", None])
def test_codex_failure_without_usage_costs_nothing(model: str | None) -> None:
    lines = lines_of("codex-error-401.jsonl")
    result = get_backend("codex").collect(lines, exit_code=1, model=model)
    assert result.cost_usd == 0.0 and result.tokens == Tokens() and result.warnings == []


# --- shell collect ----------------------------------------------------------------------------


def test_shell_collect_success_keeps_the_last_ten_lines() -> None:
    lines = [f"epoch {i}\n" for i in range(25)] + ["\n", "   \n", "\x1b[32mdone\x1b[0m\n"]
    result = get_backend("shell").collect(lines, exit_code=0)
    assert result.status is COMPLETED and result.reason is None and result.error is None
    assert result.summary.splitlines() == [f"epoch {i}" for i in range(16, 25)] + ["done"]
    assert result.cost_usd is None and result.tokens == Tokens() and result.session_id is None


def test_shell_collect_trims_long_output() -> None:
    result = get_backend("shell").collect(["y" * 5000 + "\n"], exit_code=0)
    assert len(result.summary) == 2000 and result.summary.endswith("y")


# fmt: off
@pytest.mark.parametrize(
    ("exit_code", "error"),
    [(2, "exit code 2: Traceback: boom"), (None, "agent exited without a result: Traceback: boom")],
)
def test_shell_collect_failure(exit_code: int | None, error: str) -> None:
    result = get_backend("shell").collect(["loss 0.3\n"], exit_code=exit_code,
                                          stderr_tail="Traceback: boom\n")
    assert (result.status, result.reason, result.error) == (FAILED, Reason.EXIT_CODE, error)
    assert result.summary == "loss 0.3"
    assert get_backend("shell").collect([], exit_code=1).summary == "exit code 1"
# fmt: on


# --- render -----------------------------------------------------------------------------------


def rendered(name: str) -> list[LogEvent]:
    backend = get_backend(backend_of(name))
    return [event for line in lines_of(name) for event in backend.render(line)]


def test_render_claude_stream() -> None:
    events = rendered("claude-stream-json.jsonl")
    assert [e.kind for e in events] == [
        "system",
        "text",
        "tool_use",
        "tool_result",
        "tool_use",
        "tool_result",
        "tool_use",
        "tool_result",
        "text",
        "result",
    ]
    assert events[0].data["session_id"] == "802c3b37-c866-4274-9fc0-fc571667fa50"
    assert (events[2].text, events[2].tool, events[2].target) == (
        "Write: /home/dev/repo/hello.txt",
        "Write",
        "/home/dev/repo/hello.txt",
    )
    assert events[6].text == "Bash: cat hello.txt && ls"
    assert events[6].target == "cat hello.txt && ls"
    assert events[7].text == "hello ⏎ hello.txt" and not events[7].is_error
    assert events[8].text == "Done: created hello.txt"
    assert events[9].text == "completed ($0.0437): Done: created hello.txt"
    assert events[9].data["usage"] == HELLO_TOKENS.to_dict()
    assert events[9].data["cost_usd"] == pytest.approx(0.0437)


def test_render_claude_partial_stream_matches_the_plain_one() -> None:
    plain = [(e.kind, e.text) for e in rendered("claude-stream-json.jsonl")]
    partial = [(e.kind, e.text) for e in rendered("claude-stream-json-partial.jsonl")]
    assert partial[1:] == plain[1:]


def test_render_claude_failed_tool_and_errors() -> None:
    failed = [e for e in rendered("claude-failed-command.jsonl") if e.is_error]
    assert [(e.kind, e.text) for e in failed] == [
        (
            "tool_result",
            "Exit code 2 ⏎ ls: cannot access '/nonexistent_dir': No such file or directory",
        ),
    ]
    events = rendered("claude-error-401.jsonl")
    assert [(e.kind, e.text) for e in events[1:3]] == [
        ("retry", "API retry 1/2: authentication_failed (401)"),
        ("retry", "API retry 2/2: authentication_failed (401)"),
    ]
    assert events[3].kind == "error" and events[3].text.startswith("Failed to authenticate")
    assert events[4].kind == "result" and events[4].is_error
    assert events[4].data["api_error_status"] == 401
    max_turns = rendered("claude-max-turns.json")
    assert [(e.kind, e.text, e.is_error) for e in max_turns] == [
        ("result", "failed: error_max_turns: Reached maximum number of turns (1)", True)
    ]


def test_render_codex_stream() -> None:
    events = rendered("codex-exec.jsonl")
    assert [e.kind for e in events] == [
        "system",
        "reasoning",
        "text",
        "command",
        "command",
        "text",
        "file_change",
        "text",
        "result",
    ]
    assert events[0].data["session_id"] == "01a20f9c-09cc-7ba0-9634-93097ddc3e74"
    assert events[3].text == "$ echo hi > hello.txt && cat hello.txt"
    assert events[4].text == "$ echo hi > hello.txt && cat hello.txt → exit 0"
    # the script codex ran, unwrapped from /bin/bash -lc '…', the same at start and end
    assert events[3].target == events[4].target == "echo hi > hello.txt && cat hello.txt"
    assert events[4].data == {"exit_code": 0, "status": "completed", "output": "hi"}
    assert events[6].text == "add /home/dev/repo/notes.md"
    assert events[6].target == "/home/dev/repo/notes.md"
    assert events[8].data["usage"] == CODEX_TOKENS.to_dict()
    failed = rendered("codex-exec-failed-command.jsonl")[4]
    assert (failed.text, failed.is_error, failed.data["exit_code"]) == (
        "$ ls /nonexistent_dir → exit 2",
        True,
        2,
    )


def test_render_codex_errors() -> None:
    events = rendered("codex-error-500.jsonl")
    assert [(e.kind, e.text) for e in events[1:]] == [
        ("retry", f"API retry 1/1: {HIGH_DEMAND}"),
        ("error", HIGH_DEMAND),
        ("result", f"failed: {HIGH_DEMAND}"),
    ]
    assert all(e.is_error for e in events[1:])


@pytest.mark.parametrize("backend", ["claude", "codex"])
# fmt: off
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", []),
        ("\n", []),
        ("   \r\n", []),
        ("EXIT=0\n", [("line", "EXIT=0")]),
        ('npm warn config "nodedir"\n', [("line", 'npm warn config "nodedir"')]),
        ("{not json\n", [("line", "{not json")]),
        ("[1, 2]\n", [("line", "[1, 2]")]),
        ('{"no_type": 1}\n', [("line", '{"no_type": 1}')]),
        ('{"type": 5}\n', [("line", '{"type": 5}')]),
    ],
)
def test_render_odd_lines(backend: str, line: str, expected: list[tuple[str, str]]) -> None:
    assert [(e.kind, e.text) for e in get_backend(backend).render(line)] == expected


# fmt: on


# fmt: off
@pytest.mark.parametrize(
    ("backend", "line", "expected"),
    [
        ("claude", '{"type":"rate_limit_event"}', [("system", "rate_limit_event")]),
        ("claude", '{"type":"system","subtype":"compact_boundary"}',
         [("system", "system: compact_boundary")]),
        ("claude", '{"type":"system","subtype":"status","status":"requesting"}', []),
        ("claude", '{"type":"stream_event","event":{"type":"message_stop"}}', []),
        ("claude", '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,'
                   '"error_status":null,"error":"unknown"}',
         [("retry", "API retry 1/10: unknown")]),
        ("claude", '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,'
                   '"error_status":500,"error":"server_error"}',
         [("retry", "API retry 1/10: server_error (500)")]),
        ("claude", '{"type":"assistant","message":{"content":[{"type":"thinking",'
                   '"thinking":"hmm"}]}}',
         [("reasoning", "hmm")]),
        ("claude", '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Write",'
                   '"input":{"file_path":"/h/.dobby/worktrees/ab12cd34/src/x.py"}}]}}',
         [("tool_use", "Write: src/x.py")]),
        ("claude", '{"type":"assistant","message":{"content":[{"type":"tool_use",'
                   '"name":"TodoWrite","input":{"todos":[]}}]}}',
         [("tool_use", 'TodoWrite: {"todos": []}')]),
        ("claude", '{"type":"user","message":{"content":[{"type":"tool_result","content":'
                   '[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}}',
         [("tool_result", "a ⏎ b")]),
        ("claude", '{"type":"user","message":{"content":"do it"}}', [("text", "do it")]),
        ("codex", '{"type":"turn.started"}', []),
        ("codex", '{"type":"item.updated","item":{"type":"agent_message","text":"x"}}', []),
        ("codex", '{"type":"item.completed","item":{"type":"error","message":"Falling back"}}',
         [("system", "warning: Falling back")]),
        ("codex", '{"type":"error","message":"Reconnecting... waiting for network"}',
         [("retry", "API retry: waiting for network")]),
        ("codex", '{"type":"item.started","item":{"type":"mcp_tool_call","server":"gh",'
                  '"tool":"pr"}}',
         [("tool_use", "gh.pr")]),
        ("codex", '{"type":"item.completed","item":{"type":"web_search","query":"tmux"}}',
         [("tool_use", "web_search: tmux")]),
        ("codex", '{"type":"item.updated","item":{"type":"todo_list",'
                  '"items":[{"completed":true},{}]}}',
         [("system", "plan: 1/2 done")]),
        ("codex", '{"type":"item.completed","item":{"type":"command_execution",'
                  '"command":"ls \'x"}}',
         [("command", "$ ls 'x")]),
        ("codex", '{"type":"some.future.event"}', [("system", "some.future.event")]),
        ("shell", "\x1b[1mbold\x1b[0m\n", [("line", "bold")]),
        ("shell", "  10%\r  50%\r 100%\n", [("line", " 100%")]),
        ("shell", '{"type":"result"}\n', [("line", '{"type":"result"}')]),
    ],
)
def test_render_table(backend: str, line: str, expected: list[tuple[str, str]]) -> None:
    events = get_backend(backend).render(line)
    check_events(events)
    assert [(e.kind, e.text) for e in events] == expected
# fmt: on


def test_log_event_to_dict() -> None:
    event = LogEvent("command", "$ ls", target="ls", data={"exit_code": 0})
    assert event.to_dict() == {
        "kind": "command",
        "text": "$ ls",
        "tool": None,
        "target": "ls",
        "is_error": False,
        "data": {"exit_code": 0},
    }
    with pytest.raises(AttributeError):
        event.text = "x"  # type: ignore[misc]


# fmt: off
@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/home/u/.dobby/worktrees/ab12cd34/src/a.py", "src/a.py"),
        ("/srv/repo/a.py", "/srv/repo/a.py"),
        ("/home/u/.dobby/worktrees/ab12cd34/", "/home/u/.dobby/worktrees/ab12cd34/"),
    ],
)
def test_display_path(path: str, shown: str) -> None:
    assert display_path(path) == shown
# fmt: on


# --- hypothesis: render and collect never raise -----------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
REAL_OBJECTS = [
    json.loads(line) for name in OUTPUTS for line in lines_of(name) if line.startswith("{")
]
TYPES = sorted({o["type"] for o in REAL_OBJECTS} | {"item.updated", "error", "system"})


@st.composite
def mutated_real_line(draw: st.DrawFn) -> str:
    """A real transcript object with one subtree replaced by arbitrary JSON."""
    obj = json.loads(json.dumps(draw(st.sampled_from(REAL_OBJECTS))))
    node: Any = obj
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        node[key] = draw(JSON)
        break
    return json.dumps(obj)


LINES = (
    st.text()
    | JSON.map(json.dumps)
    | st.builds(
        lambda t, rest: json.dumps({**rest, "type": t}),
        st.sampled_from(TYPES),
        st.dictionaries(st.text(max_size=12), JSON, max_size=5),
    )
    | mutated_real_line()
)


@pytest.mark.slow  # hundreds of generated cases: seconds to tens of seconds
@settings(max_examples=400, deadline=None)
@given(line=LINES)
def test_render_never_raises(line: str) -> None:
    for backend in BACKENDS.values():
        check_events(backend.render(line))


@pytest.mark.slow  # hundreds of generated cases: seconds to tens of seconds
@settings(max_examples=200, deadline=None)
@given(lines=st.lists(LINES, max_size=6), exit_code=st.none() | st.integers(-1, 255))
def test_collect_never_raises(lines: list[str], exit_code: int | None) -> None:
    for backend in BACKENDS.values():
        result = backend.collect(lines, exit_code=exit_code, model="gpt-5")
        assert result.status in (COMPLETED, FAILED)
        assert result.status is FAILED or exit_code == 0
        assert isinstance(result.summary, str)


# --- argv and env -----------------------------------------------------------------------------

EDITS = ["--permission-mode", "acceptEdits", "--allowedTools", ",".join(ALLOWED_TOOLS)]
CLAUDE = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
CODEX_EXEC = ["codex", "exec", "--json", "--skip-git-repo-check"]
SID = "802c3b37-c866-4274-9fc0-fc571667fa50"

# fmt: off
ARGV_CASES = [
    ("claude", "bypass", None, None, [*CLAUDE, "--dangerously-skip-permissions"]),
    ("claude", "edits", None, None, [*CLAUDE, *EDITS]),
    ("claude", "plan", None, None, [*CLAUDE, "--permission-mode", "plan"]),
    ("claude", "edits", "claude-opus-4-8", None,
     [*CLAUDE, "--model", "claude-opus-4-8", *EDITS]),
    ("claude", "bypass", "sonnet", SID,
     [*CLAUDE, "--model", "sonnet", "--resume", SID, "--dangerously-skip-permissions"]),
    ("claude", "plan", None, SID,
     [*CLAUDE, "--resume", SID, "--permission-mode", "plan"]),
    ("codex", "bypass", None, None,
     [*CODEX_EXEC, "--dangerously-bypass-approvals-and-sandbox", "-"]),
    ("codex", "edits", None, None, [*CODEX_EXEC, "--sandbox", "workspace-write", "-"]),
    ("codex", "plan", None, None, [*CODEX_EXEC, "--sandbox", "read-only", "-"]),
    ("codex", "edits", "gpt-5.5", None,
     [*CODEX_EXEC, "-m", "gpt-5.5", "--sandbox", "workspace-write", "-"]),
    ("codex", "bypass", "gpt-5.5", "01a20f9c-09cc-7ba0-9634-93097ddc3e74",
     [*CODEX_EXEC, "-m", "gpt-5.5", "--dangerously-bypass-approvals-and-sandbox",
      "resume", "01a20f9c-09cc-7ba0-9634-93097ddc3e74", "-"]),
    ("codex", "plan", None, "t1",
     [*CODEX_EXEC, "--sandbox", "read-only", "resume", "t1", "-"]),
    ("shell", "bypass", None, None, ["bash", "-c", PROMPT]),
    ("shell", "edits", "ignored", "ignored", ["bash", "-c", PROMPT]),
]
# fmt: on


@pytest.mark.parametrize(("backend", "permissions", "model", "resume", "expected"), ARGV_CASES)
@pytest.mark.parametrize("is_root", [False, True])
def test_argv(
    backend: str,
    permissions: str,
    model: str | None,
    resume: str | None,
    expected: list[str],
    is_root: bool,
) -> None:
    task = Task(prompt="create hello.txt", backend=backend, model=model, resume=resume)
    argv = get_backend(backend).argv(task=task, host=host(permissions), is_root=is_root)
    assert argv == expected


# fmt: off
@pytest.mark.parametrize(
    ("backend", "permissions", "is_root", "env"),
    [
        ("claude", "bypass", True, {"IS_SANDBOX": "1"}),
        ("claude", "bypass", False, {}),
        ("claude", "edits", True, {}),
        ("claude", "plan", True, {}),
        ("claude", "edits", False, {}),
        ("codex", "bypass", True, {}),
        ("codex", "edits", False, {}),
        ("shell", "bypass", True, {}),
    ],
)
def test_env(backend: str, permissions: str, is_root: bool, env: dict[str, str]) -> None:
    task = Task(prompt="x", backend=backend)
    assert get_backend(backend).env(task=task, host=host(permissions), is_root=is_root) == env
# fmt: on


def test_bypass_only_when_the_host_says_so() -> None:
    for permissions in ("edits", "plan"):
        for name in ("claude", "codex"):
            task = Task(prompt="x")
            argv = get_backend(name).argv(task=task, host=host(permissions), is_root=True)
            assert not any("dangerous" in word or "bypass" in word for word in argv)
    default = Host(name="h")
    argv = get_backend("claude").argv(task=Task(prompt="x"), host=default, is_root=True)
    assert "acceptEdits" in argv


# The permission flags of each agent are written once (its backend's permission_args) and read
# by both the batch argv and the interactive session's argv: they agree except where a person
# at the terminal changes the rule (claude's allow-list; codex asking for approval).
SKIP = ["--dangerously-skip-permissions"]
PERMISSION_CASES = [
    ("claude", Permissions.BYPASS, SKIP, SKIP),
    ("claude", Permissions.EDITS, EDITS, ["--permission-mode", "acceptEdits"]),
    ("claude", Permissions.PLAN, ["--permission-mode", "plan"], ["--permission-mode", "plan"]),
    ("codex", Permissions.BYPASS, ["--dangerously-bypass-approvals-and-sandbox"],
     ["--dangerously-bypass-approvals-and-sandbox"]),
    ("codex", Permissions.EDITS, ["--sandbox", "workspace-write"],
     ["--sandbox", "workspace-write", "--ask-for-approval", "on-request"]),
    ("codex", Permissions.PLAN, ["--sandbox", "read-only"], ["--sandbox", "read-only"]),
]  # fmt: skip


@pytest.mark.parametrize(("backend", "permissions", "batch", "interactive"), PERMISSION_CASES)
def test_permission_flags_are_written_once(
    backend: str, permissions: Permissions, batch: list[str], interactive: list[str]
) -> None:
    module = claude_module if backend == "claude" else codex_module
    assert module.permission_args(permissions) == batch
    assert module.permission_args(permissions, interactive=True) == interactive
    argv = get_backend(backend).argv(task=Task(prompt="x"), host=host(permissions), is_root=False)
    assert _contains(argv, batch)
    session = get_backend(backend).interactive_argv(
        permissions=permissions, model=None, prompt=False
    )
    assert session == [backend, *interactive]


def _contains(argv: list[str], part: list[str]) -> bool:
    return any(argv[i : i + len(part)] == part for i in range(len(argv)))


@pytest.mark.parametrize("backend", ["claude", "codex"])
# fmt: off
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "-rf"),
        ("model", "gpt 5"),
        ("model", "a;b"),
        ("resume", "--fork-session"),
        ("resume", "id\nx"),
        ("resume", ""),
    ],
)
def test_argv_refuses_unsafe_words(backend: str, field: str, value: str) -> None:
    task = Task(prompt="x", **{field: value})
    if value == "":  # empty means "not set"
        get_backend(backend).argv(task=task, host=host(), is_root=False)
        return
    with pytest.raises(ValidationError, match="invalid"):
        get_backend(backend).argv(task=task, host=host(), is_root=False)


# fmt: on


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_unknown_permissions_are_refused(backend: str) -> None:
    with pytest.raises(ValidationError, match="unknown permissions 'yolo'"):
        get_backend(backend).argv(task=Task(prompt="x"), host=host("yolo"), is_root=False)


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.text(min_size=1),
    backend=st.sampled_from(["claude", "codex", "shell"]),
    permissions=st.sampled_from(["bypass", "edits", "plan"]),
    model=st.none() | st.sampled_from(["gpt-5.5", "claude-opus-4-8[1m]", "openai/o3"]),
    resume=st.none() | st.uuids().map(str),
    is_root=st.booleans(),
)
def test_prompt_never_reaches_argv(
    prompt: str,
    backend: str,
    permissions: str,
    model: str | None,
    resume: str | None,
    is_root: bool,
) -> None:
    """The argv is the same whatever the prompt: agents read it on stdin, shell gets PROMPT."""
    args = dict(host=host(permissions), is_root=is_root)
    b = get_backend(backend)
    argv = b.argv(task=Task(prompt=prompt, model=model, resume=resume), **args)
    same = b.argv(task=Task(prompt="other", model=model, resume=resume), **args)
    assert argv == same
    if backend == "shell":
        assert argv.count(PROMPT) == 1 and argv[-1] == PROMPT
    else:  # claude -p with no prompt argument / codex exec - read the prompt from stdin
        assert PROMPT not in argv and argv[-1] == ("-" if backend == "codex" else argv[-1])
    assert all(isinstance(word, str) and "\n" not in word for word in argv)


def test_real_prompt_text_is_not_in_argv() -> None:
    prompt = "Create hello.txt; rm -rf ~ `whoami` $(id) 'quote' \"dq\""
    for b in BACKENDS.values():
        for permissions in ("bypass", "edits", "plan"):
            argv = b.argv(task=Task(prompt=prompt), host=host(permissions), is_root=False)
            assert not any(prompt in word or "hello.txt" in word for word in argv)


# --- registry ---------------------------------------------------------------------------------


def test_get_backend() -> None:
    assert sorted(BACKENDS) == ["claude", "codex", "shell"]
    for name, backend in BACKENDS.items():
        assert get_backend(name) is backend and backend.name == name


@pytest.mark.parametrize("name", ["x", "", "Claude"])
def test_get_backend_unknown(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        get_backend(name)
    assert str(info.value) == f"unknown backend '{name}' (choose claude, codex, shell)"
    assert isinstance(info.value, ValueError)


# --- pricing ----------------------------------------------------------------------------------


# fmt: off
@pytest.mark.parametrize(
    ("model", "prices", "expected"),
    [
        ("gpt-5", None, DEFAULT_PRICES["gpt-5"]),
        ("gpt-5-codex", None, DEFAULT_PRICES["gpt-5-codex"]),
        ("gpt-5-codex-mini", None, DEFAULT_PRICES["gpt-5-codex"]),  # longest prefix
        ("gpt-5-2026-01-01", None, DEFAULT_PRICES["gpt-5"]),
        ("gpt-5.5", None, DEFAULT_PRICES["gpt-5.5"]),
        ("o3", None, DEFAULT_PRICES["o3"]),
        ("o3-pro", None, DEFAULT_PRICES["o3"]),
        ("gpt-4o", None, None),
        ("", None, None),
        (None, None, None),
        ("gpt-5", {"gpt-5": ModelPrice(input=9, output=9)}, ModelPrice(input=9, output=9)),
        ("gpt-5-x", {"gpt-5-x": ModelPrice(input=1, output=1)}, ModelPrice(input=1, output=1)),
        ("mine", {"mine": ModelPrice(input=1, output=1)}, ModelPrice(input=1, output=1)),
    ],
)
def test_price_for(model: str | None, prices: Any, expected: ModelPrice | None) -> None:
    assert price_for(model, prices) == expected
# fmt: on


def test_defaults_cover_the_named_models() -> None:
    assert {"gpt-5.5", "gpt-5", "gpt-5-codex", "gpt-6-sol", "gpt-4.1", "o3"} <= set(DEFAULT_PRICES)
    for price in DEFAULT_PRICES.values():
        assert 0 < price.cache_read <= price.input < price.output


def test_cost() -> None:
    price = ModelPrice(input=5, output=25, cache_read=0.5, cache_write=6.25)  # claude opus
    # reproduces claude's own total_cost_usd for the hello transcript
    assert cost(HELLO_TOKENS, price) == pytest.approx(0.0437)
    assert cost(Tokens(), price) == 0.0


def test_parse_prices() -> None:
    table = parse_prices(
        {
            "gpt-5.5": {"input": 1, "output": 8.5, "cache_read": 0.1},
            "local": {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0},
        }
    )
    assert table == {
        "gpt-5.5": ModelPrice(input=1.0, output=8.5, cache_read=0.1, cache_write=1.0),
        "local": ModelPrice(input=0, output=0),
    }
    assert parse_prices(None) == {} and parse_prices({}) == {}


# fmt: off
@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (["gpt-5"], "prices: must be a mapping"),
        ({"": {"input": 1, "output": 1}}, "model name"),
        ({"gpt-5": 3}, "prices.gpt-5: must be a mapping"),
        ({"gpt-5": {"output": 1}}, "prices.gpt-5.input: missing"),
        ({"gpt-5": {"input": 1}}, "prices.gpt-5.output: missing"),
        ({"gpt-5": {"input": "1", "output": 1}}, "prices.gpt-5.input: must be a number"),
        ({"gpt-5": {"input": True, "output": 1}}, "prices.gpt-5.input: must be a number"),
        ({"gpt-5": {"input": 1, "output": -1}}, "prices.gpt-5.output: must be a finite number"),
        ({"gpt-5": {"input": 1, "output": float("nan")}}, "prices.gpt-5.output"),
        ({"gpt-5": {"input": 1, "output": 1, "cached": 1}}, "prices.gpt-5.cached: unknown key"),
    ],
)
def test_parse_prices_rejects(mapping: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_prices(mapping)

# fmt: on
