#!/usr/bin/env python3
"""Stand in for the claude and codex CLIs by replaying recorded transcripts (stdlib only)."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import secrets
import select
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"
SCENARIOS = (
    "success",
    "api401",
    "api500",
    "max_turns",
    "failed_command",
    "slow",
    "lines:N:MS",
    "hang",
    "crash",
)
VERSIONS = {"claude": "2.1.197 (Claude Code)", "codex": "codex-cli 0.169.0"}
RECORD_NAME = "fake-agent.json"
ROOT_REFUSAL = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
)
NEEDS_VERBOSE = "Error: When using --print, --output-format=stream-json requires --verbose"
UNTRUSTED_DIR = "Not inside a trusted directory and --skip-git-repo-check was not specified."
_SCENARIO_TOKEN = re.compile(r"\[scenario:([^\]\s]+)\]")
_RECORDED_PATHS = re.compile(r"/home/dev/repo|-home-dev-repo|/home/dev")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FAKE_ID = re.compile(r"\b(msg_fake|toolu|req_fake)_[0-9A-Za-z_]+")
_ECHO_TO_FILE = re.compile(r"echo (\S+) > ([\w.\-/]+)")
_CLAUDE_TURNS = 4  # assistant turns in the recorded success run


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


# -- argument parsing (pure) ----------------------------------------------------------------

_CLAUDE_FLAGS = {
    "-p": "print",
    "--print": "print",
    "--verbose": "verbose",
    "--dangerously-skip-permissions": "skip_permissions",
    "--include-partial-messages": "partial",
    "-c": "continue",
    "--continue": "continue",
    "--fork-session": "fork_session",
    "--strict-mcp-config": "strict_mcp",
    "--replay-user-messages": "replay_user",
}
_CLAUDE_VALUES = {
    "--output-format": "output_format",
    "--input-format": "input_format",
    "--model": "model",
    "--permission-mode": "permission_mode",
    "-r": "resume",
    "--resume": "resume",
    "--max-turns": "max_turns",
    "--session-id": "session_id",
    "--fallback-model": "fallback_model",
    "--system-prompt": "system_prompt",
    "--append-system-prompt": "append_system_prompt",
    "--settings": "settings",
    "--max-budget-usd": "max_budget_usd",
    "--setting-sources": "setting_sources",
    "--permission-prompt-tool": "permission_prompt_tool",
}
_CLAUDE_LISTS = {
    "--allowedTools": "allowed_tools",
    "--allowed-tools": "allowed_tools",
    "--disallowedTools": "disallowed_tools",
    "--disallowed-tools": "disallowed_tools",
    "--add-dir": "add_dir",
    "--mcp-config": "mcp_config",
    "--tools": "tools",
}
_PERMISSION_MODES = ("acceptEdits", "bypassPermissions", "default", "dontAsk", "plan")
_CODEX_FLAGS = {
    "--json": "json",
    "--skip-git-repo-check": "skip_git_repo_check",
    "--dangerously-bypass-approvals-and-sandbox": "bypass",
    "--full-auto": "full_auto",
    "--last": "last",
    "--oss": "oss",
    "--ephemeral": "ephemeral",
}
_CODEX_VALUES = {
    "-m": "model",
    "--model": "model",
    "-s": "sandbox",
    "--sandbox": "sandbox",
    "-c": "config",
    "--config": "config",
    "-o": "output_last_message",
    "--output-last-message": "output_last_message",
    "-C": "cd",
    "--cd": "cd",
    "-p": "profile",
    "--profile": "profile",
    "--color": "color",
    "--output-schema": "output_schema",
    "-i": "image",
    "--image": "image",
}
_CODEX_REPEATED = {"config", "image"}
_SANDBOXES = ("read-only", "workspace-write", "danger-full-access")


def _scan(
    args: list[str],
    flags: Mapping[str, str],
    values: Mapping[str, str],
    lists: Mapping[str, str],
    *,
    agent: str,
) -> tuple[dict[str, Any], list[str], list[str]]:
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
            key = values[name]
            if key in _CODEX_REPEATED:
                opts.setdefault(key, []).append(inline)
            else:
                opts[key] = inline
        elif name in lists:
            items = opts.setdefault(lists[name], [])
            if eq:
                items.append(inline)
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
    """Return the error each CLI prints for an option without its value."""
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
    return Invocation(
        "claude", list(args), positionals[0] if positionals else None, opts.get("resume"), opts
    )


def parse_codex(args: list[str]) -> Invocation:
    """Parse ``codex exec [opts] [resume ID] [--] PROMPT`` the way codex 0.169 does."""
    if not args or args[0] not in ("exec", "e"):
        raise UsageError("fake codex: only `codex exec` is supported", 2)
    opts, before, after = _scan(args[1:], _CODEX_FLAGS, _CODEX_VALUES, {}, agent="codex")
    resume = None
    if before and before[0] == "resume":
        rest = before[1:] + after
        opts["resume"] = True
        if not opts.get("last"):
            if not rest:
                raise UsageError("error: resume needs a SESSION_ID (or --last)", 2)
            resume = rest.pop(0)
    else:
        rest = before + after
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


def choose_scenario(prompt: str | None, env: Mapping[str, str]) -> str:
    """Pick the scenario: a ``[scenario:NAME]`` prompt token, else $FAKE_AGENT_SCENARIO."""
    match = _SCENARIO_TOKEN.search(prompt or "")
    return match.group(1) if match else env.get("FAKE_AGENT_SCENARIO") or "success"


# -- building the replay (pure apart from reading transcripts) ------------------------------


@dataclass
class Replay:
    """Lines to print, the pause between them, and how the run ends."""

    lines: list[dict[str, Any]]
    exit_code: int = 0
    delay: float = 0.0
    hang: bool = False
    stderr: str = ""


def _load(name: str) -> list[dict[str, Any]]:
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


def _crash_message(agent: str) -> str:
    """Return a traceback-looking crash report for stderr."""
    return (
        "Traceback (most recent call last):\n"
        f'  File "/fake/{agent}/main.py", line 42, in <module>\n'
        f"RuntimeError: fake {agent} crashed (scenario crash)\n"
    )


def _unknown(agent: str, scenario: str) -> UsageError:
    """Return the error for a scenario this agent cannot play."""
    return UsageError(
        f"fake {agent}: unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})", 2
    )


def build_claude(inv: Invocation, scenario: str, env: Mapping[str, str]) -> Replay:
    """Return the stream-json lines claude would print for this scenario."""
    base = "claude-resume-stream-json.jsonl" if inv.resume else "claude-stream-json.jsonl"
    max_turns = inv.opts.get("max_turns")
    if (
        scenario == "success"
        and not inv.resume
        and max_turns is not None
        and max_turns < _CLAUDE_TURNS
    ):
        scenario = "max_turns"
    if scenario in ("success", "slow"):
        delay = float(env.get("FAKE_AGENT_DELAY") or 0.5) if scenario == "slow" else 0.0
        return Replay(_load(base), delay=delay)
    if scenario in ("api401", "api500"):
        name = f"claude-error-{scenario[3:]}"
        return Replay(_load(f"{name}.jsonl"), _exit_code(name))
    if scenario == "max_turns":
        result = _load("claude-max-turns.json")[0]
        result["errors"] = [f"Reached maximum number of turns ({max_turns or 1})"]
        return Replay(
            _load("claude-stream-json.jsonl")[:4] + [result], _exit_code("claude-max-turns")
        )
    if scenario == "failed_command":
        return Replay(_load("claude-failed-command.jsonl"))
    if scenario.startswith("lines:"):
        count, delay = _lines_spec(scenario)
        recorded = _load("claude-stream-json.jsonl")
        lines = [recorded[0]]
        for i in range(1, count + 1):
            line = copy.deepcopy(recorded[1])
            line["message"]["id"] = f"msg_fake_line{i}"
            line["message"]["content"] = [{"type": "text", "text": f"line {i}"}]
            lines.append(line)
        result = dict(recorded[-1], result=f"line {count}" if count else "", num_turns=1)
        return Replay(lines + [result], delay=delay)
    if scenario == "hang":
        return Replay(_load(base)[:1], hang=True)
    if scenario == "crash":
        return Replay(_load(base)[:2], 3, stderr=_crash_message("claude"))
    raise _unknown("claude", scenario)


def build_codex(inv: Invocation, scenario: str, env: Mapping[str, str]) -> Replay:
    """Return the exec --json lines codex would print for this scenario."""
    base = "codex-exec-resume.jsonl" if inv.opts.get("resume") else "codex-exec.jsonl"
    if scenario in ("success", "slow"):
        delay = float(env.get("FAKE_AGENT_DELAY") or 0.5) if scenario == "slow" else 0.0
        replay = Replay(_load(base), delay=delay)
    elif scenario in ("api401", "api500"):
        name = f"codex-error-{scenario[3:]}"
        replay = Replay(_load(f"{name}.jsonl"), _exit_code(name))
    elif scenario == "failed_command":
        replay = Replay(_load("codex-exec-failed-command.jsonl"))
    elif scenario.startswith("lines:"):
        count, delay = _lines_spec(scenario)
        recorded = _load("codex-exec.jsonl")
        items = [
            {
                "type": "item.completed",
                "item": {"id": f"item_{i - 1}", "type": "agent_message", "text": f"line {i}"},
            }
            for i in range(1, count + 1)
        ]
        replay = Replay(recorded[:2] + items + [recorded[-1]], delay=delay)
    elif scenario == "hang":
        replay = Replay(_load(base)[:2], hang=True)
    elif scenario == "crash":
        replay = Replay(_load(base)[:2], 3, stderr=_crash_message("codex"))
    else:
        raise _unknown("codex", scenario)
    if not (
        inv.opts.get("bypass")
        or inv.opts.get("full_auto")
        or inv.opts.get("sandbox") in ("workspace-write", "danger-full-access")
    ):
        # The read-only default sandbox denies them, and then no item is printed at all.
        replay.lines = [
            line
            for line in replay.lines
            if line.get("item", {}).get("type") not in ("command_execution", "file_change")
        ]
    return replay


class Freshener:
    """Rewrite recorded ids, paths and times so each run looks like a new real one."""

    def __init__(self, *, session_id: str, cwd: str, home: str) -> None:
        self.session_id = session_id
        self.paths = {
            "/home/dev/repo": cwd,
            "-home-dev-repo": re.sub(r"[^A-Za-z0-9]", "-", cwd),
            "/home/dev": home,
        }
        self.ids: dict[str, str] = {}

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
            return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        value = _RECORDED_PATHS.sub(lambda m: self.paths[m.group(0)], value)
        value = _FAKE_ID.sub(lambda m: self._map(m.group(0), f"{m.group(1)}_"), value)
        return _UUID.sub(lambda m: self._map(m.group(0), ""), value)

    def _map(self, old: str, prefix: str) -> str:
        """Return the same fresh id for every occurrence of one recorded id."""
        if old not in self.ids:
            self.ids[old] = prefix + secrets.token_hex(8) if prefix else str(uuid.uuid4())
        return self.ids[old]


def uuid7() -> str:
    """Return a time-ordered UUIDv7 string, like codex thread ids."""
    ms = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand = int.from_bytes(os.urandom(10), "big")
    value = ms << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


# -- running (I/O) --------------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    """Print one JSON line and flush it at once, as the real CLIs do."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()


def _write_inside(cwd: Path, path: str, content: str) -> None:
    """Write a file the replayed agent creates, refusing paths outside the cwd."""
    target = (cwd / path).resolve()
    if target.is_relative_to(cwd.resolve()):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def do_work(obj: dict[str, Any], cwd: Path) -> None:
    """Perform the file change a transcript line reports, so git sees real results."""
    result = obj.get("tool_use_result")
    if obj.get("type") == "user" and isinstance(result, dict) and result.get("type") == "create":
        _write_inside(cwd, result["filePath"], result.get("content", ""))
    item = obj.get("item")
    if obj.get("type") != "item.completed" or not isinstance(item, dict):
        return
    if item.get("type") == "command_execution" and item.get("exit_code") == 0:
        match = _ECHO_TO_FILE.search(item.get("command", ""))
        if match:
            _write_inside(cwd, match.group(2), match.group(1) + "\n")
    elif item.get("type") == "file_change" and item.get("status") == "completed":
        for change in item.get("changes", []):
            if change.get("kind") == "add":
                _write_inside(cwd, change["path"], "# Notes\n\nWritten by the fake codex.\n")


def _read_stdin(wait: float | None) -> str | None:
    """Read stdin to EOF unless it is a terminal; None when claude's 3 s wait ran out."""
    try:
        if os.isatty(0):
            return ""
        if wait is not None and not select.select([0], [], [], wait)[0]:
            return None
        return sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    except (OSError, ValueError):
        return ""


def _record(inv: Invocation, env: Mapping[str, str], extra: dict[str, Any]) -> None:
    """Write what this run received to $DOBBY_TASK_DIR/fake-agent.json (else ./.fake-agent.json)."""
    task_dir = env.get("DOBBY_TASK_DIR")
    path = Path(task_dir) / RECORD_NAME if task_dir else Path.cwd() / f".{RECORD_NAME}"
    keep = {"IS_SANDBOX", "DOBBY_TASK_ID", "CUDA_VISIBLE_DEVICES"}
    subset = {k: env.get(k) for k in sorted(keep)}
    subset.update({k: v for k, v in env.items() if k.startswith("DOBBY_")})
    data = {
        "agent": inv.agent,
        "argv": inv.args,
        "prompt": inv.prompt,
        "cwd": str(Path.cwd()),
        "env": subset,
        "resume": inv.resume,
        "model": inv.opts.get("model"),
        **extra,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)
    except OSError as exc:
        sys.stderr.write(f"fake {inv.agent}: cannot record the run in {path}: {exc}\n")


def _prepare_claude(inv: Invocation, env: Mapping[str, str]) -> str:
    """Apply claude's startup checks and stdin rules; return the session id."""
    bypass = (
        inv.opts.get("skip_permissions") or inv.opts.get("permission_mode") == "bypassPermissions"
    )
    if bypass and os.geteuid() == 0 and env.get("IS_SANDBOX") != "1":
        raise UsageError(ROOT_REFUSAL)
    data = _read_stdin(3.0)
    if data is None:
        sys.stderr.write("Warning: no stdin data received in 3s, proceeding without it.\n")
    elif data:
        inv.opts["stdin"] = data
    if inv.prompt is None:
        if not data:
            raise UsageError(
                "Error: Input must be provided either through stdin or as a prompt "
                "argument when using --print"
            )
        inv.prompt = data
    return inv.resume or inv.opts.get("session_id") or str(uuid.uuid4())


def _in_git_repo(path: Path) -> bool:
    """Tell whether path is inside a git work tree."""
    return any((p / ".git").exists() for p in (path, *path.parents))


def _prepare_codex(inv: Invocation, env: Mapping[str, str], home: str) -> str:
    """Apply codex's startup checks and stdin rules; return the thread id."""
    if inv.opts.get("cd"):
        os.chdir(inv.opts["cd"])
    if not (inv.opts.get("skip_git_repo_check") or inv.opts.get("bypass")) and not _in_git_repo(
        Path.cwd()
    ):
        raise UsageError(UNTRUSTED_DIR)
    warning, reading = (TRANSCRIPTS / "codex-exec.stderr.txt").read_text().splitlines()[:2]
    codex_home = env.get("CODEX_HOME") or f"{home}/.codex"
    sys.stderr.write(warning.replace("/home/dev/.codex", codex_home) + "\n")
    if _stdin_open() and not os.isatty(0):
        sys.stderr.write(reading + "\n")
        sys.stderr.flush()
        data = _read_stdin(None)  # like the real one: blocks until EOF on an open pipe
        if data and inv.prompt not in (None, "-"):
            inv.opts["stdin"] = data
        elif data:
            inv.prompt = data
    if inv.prompt in (None, "-"):
        raise UsageError(
            "No prompt provided. Either specify one as an argument or pipe the prompt into stdin."
        )
    return inv.resume or uuid7()


def _stdin_open() -> bool:
    """Tell whether file descriptor 0 is open."""
    try:
        os.fstat(0)
        return True
    except OSError:
        return False


def run(inv: Invocation, env: Mapping[str, str]) -> int:
    """Replay one run: checks, record, lines (doing their file work), exit status."""
    home = env.get("HOME") or os.path.expanduser("~")
    if inv.agent == "claude":
        session = _prepare_claude(inv, env)
    else:
        session = _prepare_codex(inv, env, home)
    cwd = Path.cwd()
    scenario = choose_scenario(inv.prompt, env)
    _record(inv, env, {"scenario": scenario, "session_id": session, "stdin": inv.opts.get("stdin")})
    build: Callable[..., Replay] = build_claude if inv.agent == "claude" else build_codex
    replay = build(inv, scenario, env)
    fresh = Freshener(session_id=session, cwd=str(cwd), home=home)
    lines = [fresh(line) for line in replay.lines]
    if inv.agent == "claude" and lines and lines[0].get("subtype") == "init":
        lines[0]["model"] = inv.opts.get("model") or lines[0]["model"]
        bypass = inv.opts.get("skip_permissions")
        lines[0]["permissionMode"] = (
            "bypassPermissions" if bypass else inv.opts.get("permission_mode", "default")
        )
    stream = inv.opts.get("output_format") == "stream-json" or inv.opts.get("json")
    started = time.monotonic()
    for n, line in enumerate(lines):
        if n and replay.delay:
            time.sleep(replay.delay)
        if line.get("type") == "result":
            line["duration_ms"] = int((time.monotonic() - started) * 1000)
        do_work(line, cwd)
        if stream:
            _emit(line)
    _finish(inv, lines, stream=bool(stream))
    if replay.hang:
        _hang(inv.agent, float(env.get("FAKE_AGENT_HANG_INTERVAL") or 2.0))
    sys.stderr.write(replay.stderr)
    return replay.exit_code


def _finish(inv: Invocation, lines: list[dict[str, Any]], *, stream: bool) -> None:
    """Print the non-streaming outputs: claude json/text, codex -o file and plain mode."""
    last = lines[-1] if lines else {}
    if inv.agent == "claude" and last.get("type") == "result" and not stream:
        if inv.opts.get("output_format") == "json":
            _emit(last)
        else:
            sys.stdout.write(str(last.get("result") or "\n".join(last.get("errors", []))) + "\n")
    if inv.agent == "codex":
        texts = [
            ln["item"]["text"]
            for ln in lines
            if ln.get("type") == "item.completed" and ln["item"].get("type") == "agent_message"
        ]
        if texts and inv.opts.get("output_last_message"):
            Path(inv.opts["output_last_message"]).write_text(texts[-1], encoding="utf-8")
        if texts and not stream:
            sys.stdout.write(texts[-1] + "\n")
    sys.stdout.flush()


def _hang(agent: str, interval: float) -> None:
    """Never finish: claude waits silently, codex keeps announcing reconnects."""
    attempt = 0
    while True:
        if agent != "codex":
            time.sleep(3600)
            continue
        time.sleep(interval)
        attempt = attempt % 5 + 1
        _emit(
            {
                "type": "error",
                "message": f"Reconnecting... {attempt}/5 (stream disconnected before completion)",
            }
        )


def main(argv: list[str] | None = None) -> int:
    """Run as ``claude ...``/``codex ...`` (by argv[0] name) or ``agent.py claude|codex ...``."""
    argv = list(sys.argv if argv is None else argv)
    args = [os.fsencode(a).decode("utf-8", "surrogateescape") for a in argv[1:]]
    if args and args[0] in VERSIONS:
        agent = args.pop(0)
    elif Path(argv[0]).name in VERSIONS:
        agent = Path(argv[0]).name
    else:
        sys.stderr.write("usage: agent.py claude|codex ARGS...\n")
        return 2
    try:
        if args[:1] in (["--version"], ["-v"], ["-V"]):
            sys.stdout.write(VERSIONS[agent] + "\n")
            return 0
        inv = parse_claude(args) if agent == "claude" else parse_codex(args)
        return run(inv, os.environ)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
