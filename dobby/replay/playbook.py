"""Decide what a fake claude/codex run prints: argument parsing and transcript replays, no I/O.

Stdlib only, and no import of its siblings: ``agent.py`` loads it both as
``dobby.replay.playbook`` and, when run as a copied script on a host, as plain ``playbook``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
QUOTA = TRANSCRIPTS / "quota"  # claude 2.1.197 / codex 0.171.0 at a usage limit
SCENARIOS = (
    "success", "api401", "api500", "max_turns", "budget", "failed_command", "slow", "lines:N:MS",
    "hang", "stall", "denied", "crash", "quota_start[:S]", "quota_mid[:S]", "quota_weekly[:S]",
    "quota_noreset[:S]", "patch_good", "patch_bad", "patch_wide",
)  # fmt: skip
# A quota scenario's limit resets S seconds after the run (default: an hour, as recorded); until
# then every run of that agent under the same HOME (one account) hits it at start.
QUOTA_SCENARIOS = ("quota_start", "quota_mid", "quota_weekly", "quota_noreset")
DEFAULT_RESET_S = 3600.0
DEFAULT_CODEX_MODEL = "gpt-6.1-sol"  # codex 0.169's default when config.toml names none
TURN_COST = 0.010925  # what one recorded claude API call costs (claude-max-turns.json)
DENIED = "Claude requested permissions to write to {path}, but you haven't granted it yet."
VERSIONS = {"claude": "2.1.197 (Claude Code)", "codex": "codex-cli 0.169.0"}
ROOT_REFUSAL = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
)
NEEDS_VERBOSE = "Error: When using --print, --output-format=stream-json requires --verbose"
UNTRUSTED_DIR = "Not inside a trusted directory and --skip-git-repo-check was not specified."
_SCENARIO_TOKEN = re.compile(r"\[scenario:([^\]\s]+)\]")
_RECORDED_PATHS = re.compile(
    r"/home/dev/\.codex|/home/dev/(?:claude-|codex-)?repo|-home-dev-(?:claude-|codex-)?repo|/home/dev"
)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FAKE_ID = re.compile(r"\b(msg_fake|toolu|req_fake)_[0-9A-Za-z_]+")
_CLAUDE_TURNS = 4  # assistant turns of the recorded success run: a lower --max-turns stops it

# fmt: off
# option spellings -> the key they set; flags take no value, lists take values until the next -x
_CLAUDE_FLAGS = {
    "-p": "print", "--print": "print", "--verbose": "verbose",
    "--dangerously-skip-permissions": "skip_permissions", "--include-partial-messages": "partial",
    "-c": "continue", "--continue": "continue", "--fork-session": "fork_session",
    "--strict-mcp-config": "strict_mcp", "--replay-user-messages": "replay_user",
}
_CLAUDE_VALUES = {
    "--output-format": "output_format", "--input-format": "input_format", "--model": "model",
    "--permission-mode": "permission_mode", "-r": "resume", "--resume": "resume",
    "--max-turns": "max_turns", "--session-id": "session_id", "--fallback-model": "fallback_model",
    "--system-prompt": "system_prompt", "--append-system-prompt": "append_system_prompt",
    "--settings": "settings", "--max-budget-usd": "max_budget_usd",
    "--setting-sources": "setting_sources", "--permission-prompt-tool": "permission_prompt_tool",
}
_CLAUDE_LISTS = {
    "--allowedTools": "allowed_tools", "--allowed-tools": "allowed_tools",
    "--disallowedTools": "disallowed_tools", "--disallowed-tools": "disallowed_tools",
    "--add-dir": "add_dir", "--mcp-config": "mcp_config", "--tools": "tools",
}
_CODEX_FLAGS = {
    "--json": "json", "--skip-git-repo-check": "skip_git_repo_check",
    "--dangerously-bypass-approvals-and-sandbox": "bypass", "--full-auto": "full_auto",
    "--last": "last", "--oss": "oss", "--ephemeral": "ephemeral",
}
_CODEX_VALUES = {
    "-m": "model", "--model": "model", "-s": "sandbox", "--sandbox": "sandbox", "-c": "config",
    "--config": "config", "-o": "output_last_message", "--output-last-message":
    "output_last_message", "-C": "cd", "--cd": "cd", "-p": "profile", "--profile": "profile",
    "--color": "color", "--output-schema": "output_schema", "-i": "image", "--image": "image",
}
# fmt: on
_REPEATED = {"config", "image"}
_PERMISSION_MODES = ("acceptEdits", "bypassPermissions", "default", "dontAsk", "plan")
_SANDBOXES = ("read-only", "workspace-write", "danger-full-access")


class UsageError(Exception):
    """A command line or environment the real CLI rejects: message for stderr, exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Invocation:
    """What a CLI was asked to do, parsed from its arguments."""

    agent: str
    args: list[str]
    prompt: str | None = None
    resume: str | None = None
    opts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Replay:
    """Lines to print, the pause between them, and how the run ends."""

    lines: list[dict[str, Any]]
    exit_code: int = 0
    delay: float = 0.0
    hang: bool = False
    stderr: str = ""
    limit: dict[str, Any] | None = None  # the account limit this run hit: {resets_at, window…}
    hang_after: int | None = None  # stall: print this many lines, then wait to be killed


def _scan(
    args: list[str], flags: Mapping[str, str], values: Mapping[str, str],
    lists: Mapping[str, str], *, agent: str,
) -> tuple[dict[str, Any], list[str], list[str]]:  # fmt: skip
    """Split args into options, positionals before ``--`` and positionals after it."""
    opts: dict[str, Any] = {}
    before: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            return opts, before, args[i:]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in flags:
            opts[flags[name]] = True
        elif name in values:
            if not eq:
                if i >= len(args):
                    raise _missing_value(agent, name)
                inline, i = args[i], i + 1
            if values[name] in _REPEATED:
                opts.setdefault(values[name], []).append(inline)
            else:
                opts[values[name]] = inline
        elif name in lists:
            items = opts.setdefault(lists[name], [inline] if eq else [])
            while i < len(args) and not args[i].startswith("-"):
                items.append(args[i])
                i += 1
        elif arg.startswith("-") and arg != "-":
            if agent == "claude":
                raise UsageError(f"error: unknown option '{arg}'")
            raise UsageError(f"error: unexpected argument '{arg}' found", 2)
        else:
            before.append(arg)
    return opts, before, []


def _missing_value(agent: str, name: str) -> UsageError:
    """Return the error each CLI prints for an option given without its value."""
    if agent == "claude":
        return UsageError(f"error: option '{name} <value>' argument missing")
    return UsageError(f"error: a value is required for '{name}' but none was supplied", 2)


def parse_claude(args: list[str]) -> Invocation:
    """Parse ``claude -p ... [--] PROMPT`` the way Claude Code 2.1 does."""
    opts, before, after = _scan(args, _CLAUDE_FLAGS, _CLAUDE_VALUES, _CLAUDE_LISTS, agent="claude")
    positionals = before + after
    if not opts.get("print"):
        raise UsageError("fake claude: only print mode (-p) is supported", 2)
    if len(positionals) > 1:
        raise UsageError(
            f"error: too many arguments. Expected 1 argument but got {len(positionals)}."
        )
    fmt = opts.setdefault("output_format", "text")
    if fmt not in ("text", "json", "stream-json"):
        raise UsageError(
            f"error: option '--output-format <format>' argument '{fmt}' is invalid."
            " Allowed choices are text, json, stream-json."
        )
    if fmt == "stream-json" and not opts.get("verbose"):
        raise UsageError(NEEDS_VERBOSE)
    mode = opts.get("permission_mode")
    if mode is not None and mode not in _PERMISSION_MODES:
        raise UsageError(
            f"error: option '--permission-mode <mode>' argument '{mode}' is invalid."
            f" Allowed choices are {', '.join(_PERMISSION_MODES)}."
        )
    if "max_turns" in opts:
        try:
            opts["max_turns"] = int(opts["max_turns"])
        except ValueError:
            raise UsageError(f"error: invalid --max-turns '{opts['max_turns']}'") from None
    prompt = positionals[0] if positionals else None
    return Invocation("claude", list(args), prompt, opts.get("resume"), opts)


def parse_codex(args: list[str]) -> Invocation:
    """Parse ``codex exec [options] [resume ID] [--] PROMPT`` the way codex 0.169 does."""
    if not args or args[0] not in ("exec", "e"):
        raise UsageError("fake codex: only `codex exec` is supported", 2)
    opts, before, after = _scan(args[1:], _CODEX_FLAGS, _CODEX_VALUES, {}, agent="codex")
    resume = None
    rest = before + after
    if before and before[0] == "resume":  # a subcommand only before `--`
        rest = rest[1:]
        opts["resume"] = True
        if not opts.get("last"):
            if not rest:
                raise UsageError("error: resume needs a SESSION_ID (or --last)", 2)
            resume = rest.pop(0)
    if len(rest) > 1:
        raise UsageError(f"error: unexpected argument '{rest[1]}' found", 2)
    sandbox = opts.get("sandbox")
    if sandbox is not None and sandbox not in _SANDBOXES:
        raise UsageError(
            f"error: invalid value '{sandbox}' for '--sandbox <SANDBOX_MODE>'\n"
            f"  [possible values: {', '.join(_SANDBOXES)}]",
            2,
        )
    return Invocation("codex", list(args), rest[0] if rest else None, resume, opts)


def codex_login_status(auth: Mapping[str, Any] | None) -> tuple[str, int]:
    """Return what ``codex login status`` prints for an ``auth.json``, and its exit status."""
    if auth and auth.get("tokens"):
        return "Logged in using ChatGPT", 0
    key = str((auth or {}).get("OPENAI_API_KEY") or "")
    if key:  # codex shows the key's first 8 and last 5 characters
        return f"Logged in using an API key - {key[:8]}***{key[-5:]}", 0
    return "Not logged in", 1


def choose_scenario(prompt: str | None, env: Mapping[str, str]) -> str:
    """Pick the scenario: a ``[scenario:NAME]`` prompt token, else $FAKE_AGENT_SCENARIO."""
    match = _SCENARIO_TOKEN.search(prompt or "")
    return match.group(1) if match else env.get("FAKE_AGENT_SCENARIO") or "success"


def load(name: str) -> list[dict[str, Any]]:
    """Read one recorded transcript as a list of JSON objects."""
    text = (TRANSCRIPTS / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _exit_code(name: str) -> int:
    """Read the recorded exit status of a transcript."""
    return int((TRANSCRIPTS / f"{name}.exitcode").read_text().strip())


def _lines_spec(scenario: str) -> tuple[int, float]:
    """Parse ``lines:N:MS`` into a line count and a delay in seconds."""
    try:
        _, count, ms = scenario.split(":")
        return max(0, int(count)), max(0, int(ms)) / 1000
    except ValueError:
        raise UsageError(f"fake agent: bad scenario {scenario!r} (want lines:N:MS)", 2) from None


def _crash(agent: str, lines: list[dict[str, Any]]) -> Replay:
    """Return the first two lines, then a traceback and exit status 3."""
    message = (
        "Traceback (most recent call last):\n"
        f'  File "/fake/{agent}/main.py", line 42, in <module>\n'
        f"RuntimeError: fake {agent} crashed (scenario crash)\n"
    )
    return Replay(lines[:2], 3, stderr=message)


def _delay(scenario: str, env: Mapping[str, str]) -> float:
    """Return the pause between lines: $FAKE_AGENT_DELAY (0.5 s) when slow, else none."""
    return float(env.get("FAKE_AGENT_DELAY") or 0.5) if scenario == "slow" else 0.0


def _unknown(agent: str, scenario: str) -> UsageError:
    """Return the error for a scenario this agent cannot play."""
    known = ", ".join(SCENARIOS)
    return UsageError(f"fake {agent}: unknown scenario {scenario!r} (known: {known})", 2)


def quota_spec(scenario: str) -> tuple[str, float] | None:
    """Parse ``quota_mid:30`` into (``quota_mid``, 30.0); None for other scenarios."""
    name, _, seconds = scenario.partition(":")
    if name not in (*QUOTA_SCENARIOS, "quota_resume"):
        return None
    try:
        return name, float(seconds) if seconds else DEFAULT_RESET_S
    except ValueError:
        message = f"fake agent: bad scenario {scenario!r} (want {name}:SECONDS)"
        raise UsageError(message, 2) from None


def claude_reset_text(resets_at: float, *, zone: Any, now: float) -> str:
    """Return claude's ``8:52am (UTC)`` / ``Dec 3, 7:52am (UTC)`` for a reset in ``zone``."""
    when = _dt.datetime.fromtimestamp(resets_at, zone)
    clock = f"{when.hour % 12 or 12}:{when.minute:02d}{'am' if when.hour < 12 else 'pm'}"
    if when.date() != _dt.datetime.fromtimestamp(now, zone).date():
        clock = f"{when.strftime('%b')} {when.day}, {clock}"
    name = getattr(zone, "key", None) or when.tzname() or "UTC"
    return f"{clock} ({'UTC' if name in _UTC_NAMES else name})"  # as Intl names the zone


_UTC_NAMES = ("Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu")


def codex_reset_text(resets_at: float, *, zone: Any, now: float) -> str:
    """Return codex's ``8:52 AM`` / ``Dec 3rd, 2026 7:52 AM`` for a reset in local ``zone``."""
    when = _dt.datetime.fromtimestamp(resets_at, zone)
    clock = f"{when.hour % 12 or 12}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"
    if when.date() == _dt.datetime.fromtimestamp(now, zone).date():
        return clock
    day = when.day
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{when.strftime('%b')} {day}{suffix}, {when.year} {clock}"


_CLAUDE_RESET_TEXT = re.compile(r"(?<=resets )[^(]*\([^)]*\)")
_CODEX_RESET_TEXT = re.compile(r"(?<=try again at ).*(?=\.$)")


def _limited(
    lines: list[dict[str, Any]], limit: dict[str, Any], *, pattern: re.Pattern[str], text: str
) -> list[dict[str, Any]]:
    """Point a recorded limit run at ``limit``: resetsAt fields and the reset in the text."""
    out = json.loads(json.dumps(lines))
    for line in out:
        info = line.get("rate_limit_info")
        if isinstance(info, dict) and "resetsAt" in info:
            info["resetsAt"] = int(limit["resets_at"])
    return [_sub_text(line, pattern, text) for line in out]


def _sub_text(value: Any, pattern: re.Pattern[str], text: str) -> Any:
    if isinstance(value, dict):
        return {k: _sub_text(v, pattern, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_sub_text(v, pattern, text) for v in value]
    return pattern.sub(text, value) if isinstance(value, str) else value


def _quota_file(agent: str, name: str) -> str:
    """Return the recorded transcript of a quota scenario (quota/<file>)."""
    return {
        ("claude", "quota_start"): "claude-oauth-quota-5h.jsonl",
        ("claude", "quota_mid"): "claude-oauth-quota-mid.jsonl",
        ("claude", "quota_weekly"): "claude-oauth-quota-7d.jsonl",
        ("claude", "quota_noreset"): "claude-quota-5h.jsonl",  # an API key's 429: no reset
        ("claude", "quota_resume"): "claude-oauth-quota-resume.jsonl",
        ("codex", "quota_start"): "codex-quota.jsonl",
        ("codex", "quota_mid"): "codex-quota-mid.jsonl",
        ("codex", "quota_weekly"): "codex-quota-weekly.jsonl",
        ("codex", "quota_noreset"): "codex-quota-plain429.jsonl",
        ("codex", "quota_resume"): "codex-quota-resume.jsonl",
    }[(agent, name)]


def build_quota(
    agent: str, name: str, *, limit: dict[str, Any] | None, zone: Any, now: float
) -> Replay:
    """Return a run at a usage limit (or, ``quota_resume``, the run after it) from the recordings.

    ``limit`` is {resets_at, window, kind}; the texts show its reset in ``zone`` as each CLI
    does. A resumed claude run works on ``continued.txt`` where the recording wrote hello.txt
    again, so the two halves of the work differ (codex's second half adds notes.md).
    """
    lines = load(f"quota/{_quota_file(agent, name)}")
    if name == "quota_resume":
        if agent == "claude":
            lines = _sub_text(lines, re.compile(r"(?<=/)hello\.txt(?=\b)"), "continued.txt")
            for line in lines:
                info = line.get("rate_limit_info")
                if isinstance(info, dict):
                    info["resetsAt"] = int(now + 5 * 3600)
        return Replay(lines)
    assert limit is not None
    if agent == "claude":
        text = claude_reset_text(limit["resets_at"], zone=zone, now=now)
        lines = _limited(lines, limit, pattern=_CLAUDE_RESET_TEXT, text=text)
    else:
        text = codex_reset_text(limit["resets_at"], zone=zone, now=now)
        lines = _limited(lines, limit, pattern=_CODEX_RESET_TEXT, text=text)
    return Replay(lines, exit_code=1, limit=limit)


# Patch scenarios (claude): different work on a project with calc.py (add) whose tests also
# want mul, for races and checks. "bad" breaks the tests until a resumed run (a fix round)
# repairs it; "wide" is correct but touches more files and lines than "good".
_CALC_GOOD = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
_CALC_BAD = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b\n"
_CALC_WIDE = _CALC_GOOD.replace("    return a * b\n", '    """Multiply."""\n    return a * b\n')
_WIDE_NOTES = "".join(f"- step {i}: multiply by repeated addition, checked\n" for i in range(12))
PATCHES: dict[str, dict[str, str]] = {
    "patch_good": {"calc.py": _CALC_GOOD},
    "patch_bad": {"calc.py": _CALC_BAD},
    "patch_wide": {
        "calc.py": _CALC_WIDE,
        "docs/mul.md": "# mul\n\n" + _WIDE_NOTES,
        "calc_extra.py": "from calc import mul\n\n\ndef square(x):\n    return mul(x, x)\n",
    },
    "patch_bad:resumed": {"calc.py": _CALC_GOOD},  # the fix round
}


def _patch(name: str, files: Mapping[str, str], delay: float) -> Replay:
    """Return a claude run that writes ``files`` (Write calls) and says so, ``delay`` s a line."""
    recorded = load("claude-stream-json.jsonl")
    init, text, write, created = recorded[:4]
    answer, result = copy.deepcopy(recorded[-2]), copy.deepcopy(recorded[-1])
    intro = copy.deepcopy(text)
    intro["message"]["content"][0]["text"] = f"I'll write {', '.join(files)}."
    lines: list[dict[str, Any]] = [init, intro]
    for n, (path, content) in enumerate(files.items()):
        call, done = copy.deepcopy(write), copy.deepcopy(created)
        tool = call["message"]["content"][0]
        tool["id"] = f"toolu_{name.replace(':', '_')}_{n}"
        tool["input"] = {"file_path": f"/home/dev/repo/{path}", "content": content}
        done["message"]["content"][0]["tool_use_id"] = tool["id"]
        done["message"]["content"][0]["content"] = (
            f"File created successfully at: /home/dev/repo/{path}"
        )
        done["tool_use_result"].update(filePath=f"/home/dev/repo/{path}", content=content)
        lines += [call, done]
    summary = f"Done: wrote {', '.join(files)}"
    answer["message"]["content"] = [{"type": "text", "text": summary}]
    result.update(result=summary, num_turns=len(files) + 1)
    return Replay([*lines, answer, result], delay=delay)


def build_claude(inv: Invocation, scenario: str, env: Mapping[str, str]) -> Replay:
    """Return the stream-json lines claude prints in this scenario."""
    if scenario in PATCHES:
        delay = float(env.get("FAKE_AGENT_DELAY") or 0)  # set it to make a patch run slow
        resumed = f"{scenario}:resumed"
        if inv.resume and resumed in PATCHES:
            return _patch(resumed, PATCHES[resumed], delay)
        if not inv.resume:
            return _patch(scenario, PATCHES[scenario], delay)
        scenario = "success"  # a follow-up of a good patch: nothing more to do
    base = load("claude-resume-stream-json.jsonl" if inv.resume else "claude-stream-json.jsonl")
    max_turns = inv.opts.get("max_turns")
    if scenario == "success" and not inv.resume and (max_turns or _CLAUDE_TURNS) < _CLAUDE_TURNS:
        scenario = "max_turns"
    budget = _budget_turns(inv.opts.get("max_budget_usd"))
    if scenario == "success" and not inv.resume and budget is not None and budget < _CLAUDE_TURNS:
        scenario = "budget"
    if scenario in ("success", "slow"):
        return Replay(base, delay=_delay(scenario, env))
    if scenario == "budget":
        return _budget(inv.opts.get("max_budget_usd"), budget or 1)
    if scenario == "denied":
        return _denied()
    if scenario == "stall":
        recorded = load("claude-stream-json.jsonl")
        return Replay(recorded[:4], hang_after=4, delay=_delay("slow", env))
    if scenario in ("api401", "api500"):
        name = f"claude-error-{scenario[3:]}"
        return Replay(load(f"{name}.jsonl"), _exit_code(name))
    if scenario == "max_turns":
        result = load("claude-max-turns.json")[0]
        result["errors"] = [f"Reached maximum number of turns ({max_turns or 1})"]
        return Replay(
            load("claude-stream-json.jsonl")[:4] + [result], _exit_code("claude-max-turns")
        )
    if scenario == "failed_command":
        return Replay(load("claude-failed-command.jsonl"))
    if scenario.startswith("lines:"):
        count, delay = _lines_spec(scenario)
        recorded = load("claude-stream-json.jsonl")
        lines = [recorded[0]]
        for i in range(1, count + 1):
            line = copy.deepcopy(recorded[1])
            line["message"]["id"] = f"msg_fake_line{i}"
            line["message"]["content"] = [{"type": "text", "text": f"line {i}"}]
            lines.append(line)
        result = dict(recorded[-1], result=f"line {count}" if count else "", num_turns=1)
        return Replay([*lines, result], delay=delay)
    if scenario == "hang":
        return Replay(base[:1], hang=True)
    if scenario == "crash":
        return _crash("claude", base)
    raise _unknown("claude", scenario)


def _budget_turns(budget: Any) -> int | None:
    """Return after how many API calls a ``--max-budget-usd`` budget is spent, if ever."""
    if budget is None:
        return None
    try:
        value = float(budget)
    except ValueError:
        raise UsageError(f"error: invalid --max-budget-usd '{budget}'") from None
    turns = 1
    while turns * TURN_COST < value and turns < _CLAUDE_TURNS:
        turns += 1
    return turns if turns * TURN_COST >= value else None


def _budget(budget: Any, turns: int) -> Replay:
    """Return a run stopped by --max-budget-usd after ``turns`` API calls (work kept)."""
    recorded = load("claude-stream-json.jsonl")
    # init, then per API call its assistant line(s) and tool result: the first call has two
    ends = {1: 4, 2: 6, 3: 8}
    result = load("claude-max-turns.json")[0]
    result.update(
        subtype="error_max_budget_usd", num_turns=turns, terminal_reason="max_budget_usd",
        total_cost_usd=round(turns * TURN_COST, 6),
        errors=[f"Reached maximum budget (${float(budget or TURN_COST):g})"],
    )  # fmt: skip
    for usage in result["modelUsage"].values():
        usage["costUSD"] = result["total_cost_usd"]
    return Replay(recorded[: ends.get(turns, 8)] + [result], 1)


def _denied() -> Replay:
    """Return a run whose Write the permission mode refused: reported in permission_denials."""
    recorded = load("claude-stream-json.jsonl")
    init, text, write, created = recorded[:4]
    tool = write["message"]["content"][0]
    refusal = copy.deepcopy(created)
    refusal.pop("tool_use_result", None)
    refusal["tool_use_result"] = "Error: " + DENIED.format(path=tool["input"]["file_path"])
    refusal["message"]["content"] = [
        {"type": "tool_result", "content": DENIED.format(path=tool["input"]["file_path"]),
         "is_error": True, "tool_use_id": tool["id"]}
    ]  # fmt: skip
    answer = copy.deepcopy(recorded[-2])
    answer["message"]["content"] = [
        {"type": "text", "text": "I could not create hello.txt: writing it was not permitted."}
    ]
    result = copy.deepcopy(recorded[-1])
    result.update(
        num_turns=2, result=answer["message"]["content"][0]["text"],
        permission_denials=[
            {"tool_name": tool["name"], "tool_use_id": tool["id"], "tool_input": tool["input"]}
        ],
    )  # fmt: skip
    return Replay([init, text, write, refusal, answer, result])


def build_codex(inv: Invocation, scenario: str, env: Mapping[str, str]) -> Replay:
    """Return the exec --json lines codex prints in this scenario."""
    base = load("codex-exec-resume.jsonl" if inv.opts.get("resume") else "codex-exec.jsonl")
    if scenario in ("success", "slow"):
        replay = Replay(base, delay=_delay(scenario, env))
    elif scenario in ("api401", "api500"):
        name = f"codex-error-{scenario[3:]}"
        replay = Replay(load(f"{name}.jsonl"), _exit_code(name))
    elif scenario == "failed_command":
        replay = Replay(load("codex-exec-failed-command.jsonl"))
    elif scenario.startswith("lines:"):
        count, delay = _lines_spec(scenario)
        recorded = load("codex-exec.jsonl")
        items = [
            {"type": "item.completed",
             "item": {"id": f"item_{i - 1}", "type": "agent_message", "text": f"line {i}"}}
            for i in range(1, count + 1)
        ]  # fmt: skip
        replay = Replay([*recorded[:2], *items, recorded[-1]], delay=delay)
    elif scenario == "hang":
        replay = Replay(base[:2], hang=True)
    elif scenario == "stall":  # a command done, then silence: waiting on the model
        replay = Replay(base[:6], hang_after=6, delay=_delay("slow", env))
    elif scenario == "crash":
        replay = _crash("codex", base)
    else:
        raise _unknown("codex", scenario)
    writable = ("workspace-write", "danger-full-access")
    if not (inv.opts.get("bypass") or inv.opts.get("full_auto") or
            inv.opts.get("sandbox") in writable):  # fmt: skip
        # The default read-only sandbox denies them, and then no item is printed at all.
        denied = ("command_execution", "file_change")
        replay.lines = [ln for ln in replay.lines if ln.get("item", {}).get("type") not in denied]
    return replay


class Freshener:
    """Rewrite recorded ids, paths and times so each run looks like a new real one."""

    def __init__(
        self, *, session_id: str, cwd: str, home: str, codex_home: str | None = None,
        same: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.session_id = session_id
        mangled = re.sub(r"[^A-Za-z0-9]", "-", cwd)  # claude's per-project directory name
        self.paths = {"/home/dev/repo": cwd, "-home-dev-repo": mangled, "/home/dev": home}
        for repo in ("claude-repo", "codex-repo"):
            self.paths[f"/home/dev/{repo}"], self.paths[f"-home-dev-{repo}"] = cwd, mangled
        self.paths["/home/dev/.codex"] = codex_home or f"{home}/.codex"
        self.ids: dict[str, str] = dict(same or {})  # recorded id → the id it must become

    def __call__(self, value: Any, key: str | None = None) -> Any:
        """Return a refreshed copy of one JSON value."""
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, str):
            return value
        if key in ("session_id", "thread_id"):
            return self.session_id
        if key == "uuid":
            return str(uuid.uuid4())
        if key == "timestamp":
            now = _dt.datetime.now(_dt.timezone.utc)  # noqa: UP017 (hosts may run Python < 3.11)
            return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        value = _RECORDED_PATHS.sub(lambda m: self.paths[m.group(0)], value)
        value = _FAKE_ID.sub(lambda m: self._map(m.group(0), f"{m.group(1)}_"), value)
        return _UUID.sub(lambda m: self._map(m.group(0), ""), value)

    def _map(self, old: str, prefix: str) -> str:
        """Return the same fresh id for every occurrence of one recorded id."""
        if old not in self.ids:
            if prefix:
                self.ids[old] = prefix + secrets.token_hex(8)
            else:  # keep the kind: codex's ids are time-ordered UUIDv7s, claude's random v4s
                self.ids[old] = uuid7() if old[14] == "7" else str(uuid.uuid4())
        return self.ids[old]


def uuid7() -> str:
    """Return a time-ordered UUIDv7 string, like codex thread ids."""
    ms = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = ms << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))
