"""Codex: ``codex exec --json`` (see agents/FORMATS.md); Dobby prices its tokens itself."""

from __future__ import annotations

import datetime as _dt
import re
import shlex
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dobby.backends.pricing import ModelPrice, cost, price_for, unpriced_warning
from dobby.core.models import (
    Host,
    Permissions,
    Reason,
    Result,
    Task,
    TaskStatus,
    Tokens,
    UsageWindow,
)
from dobby.hostside.results import CODEX_FACTS_RULE, render_codex_facts
from dobby.hostside.scripts import PROMPT, TaskPaths, parse_kv

from .base import (
    LINE_LIMIT,
    TEXT_LIMIT,
    LogEvent,
    checked_word,
    clip,
    denial_warning,
    display_path,
    exit_error,
    get_dict,
    get_int,
    get_list,
    get_str,
    joined,
    one_line,
    parse_json,
    permissions_of,
    raw_line,
)
from .quota import codex_signal, codex_windows


def permission_args(permissions: Permissions, *, interactive: bool = False) -> list[str]:
    """Return codex's flags for ``permissions``: the one place they are written.

    ``edits`` in an interactive session also asks for approval when the sandbox would block a
    command (a person answers); ``codex exec`` cannot ask, so the sandbox alone decides.
    """
    if permissions is Permissions.BYPASS:
        return ["--dangerously-bypass-approvals-and-sandbox"]
    if permissions is Permissions.PLAN:
        return ["--sandbox", "read-only"]
    edits = ["--sandbox", "workspace-write"]
    return [*edits, "--ask-for-approval", "on-request"] if interactive else edits


_RETRY = re.compile(r"Reconnecting\.\.\.\s*(?:(\d+)/(\d+))?\s*(?:\((.*)\))?\s*(.*)", re.DOTALL)


class CodexBackend:
    """Run ``codex exec --json`` and read its JSONL events."""

    name = "codex"
    limits: tuple[str, ...] = ()  # codex exec has no turn or budget flags

    def argv(self, *, task: Task, host: Host, is_root: bool) -> list[str]:
        """Return ``codex exec --json --skip-git-repo-check [options] [resume ID] -``.

        ``-`` makes codex read the prompt from stdin, which run.sh feeds from prompt.md: no
        argument size limit, and no user text on the command line.
        """
        args = ["codex", "exec", "--json", "--skip-git-repo-check"]
        if task.model:
            args += ["-m", checked_word(task.model, "model")]
        args += permission_args(permissions_of(host))
        if task.resume:
            args += ["resume", checked_word(task.resume, "thread id to resume")]
        return [*args, "-"]

    def interactive_argv(
        self, *, permissions: Permissions, model: str | None, prompt: bool
    ) -> list[str]:
        """Return ``codex [permissions] [-m M] [PROMPT]`` (the TUI, not ``exec``)."""
        argv = ["codex", *permission_args(permissions, interactive=True)]
        if model:
            argv += ["-m", checked_word(model, "model")]
        return [*argv, PROMPT] if prompt else argv

    def env(self, *, task: Task, host: Host, is_root: bool) -> dict[str, str]:
        """Return no extra environment: codex runs as root without any."""
        return {}

    def facts_command(self, *, paths: TaskPaths) -> str | None:
        """Return the host command printing the run's rollout facts and configured model."""
        return render_codex_facts(paths=paths)

    def usage_tokens(self, usage: Mapping[str, Any]) -> Tokens:
        """Return the tokens of a ``turn.completed`` usage (cumulative over the thread)."""
        return usage_tokens(usage)

    def command_text(self, command: str) -> str:
        """Return the script of a ``/bin/bash -lc '…'`` command (how codex wraps them)."""
        return unwrap_command(command)

    def render(self, line: str) -> list[LogEvent]:
        """Turn one ``exec --json`` line into display events."""
        data = parse_json(line)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return raw_line(line)
        kind = data["type"]
        if kind == "thread.started":
            thread = get_str(data, "thread_id")
            return [
                LogEvent(
                    "system", f"codex thread started: {thread or '?'}", data={"session_id": thread}
                )
            ]
        if kind == "turn.started":
            return []
        if kind == "turn.completed":
            tokens = usage_tokens(get_dict(data, "usage"))
            text = (
                f"turn completed: {tokens.input} input ({tokens.cache_read} cached), "
                f"{tokens.output} output tokens"
            )
            return [LogEvent("result", text, data={"usage": tokens.to_dict()})]
        if kind == "turn.failed":
            message = get_str(get_dict(data, "error"), "message") or "turn failed"
            return [LogEvent("result", one_line(f"failed: {message}"), is_error=True)]
        if kind == "error":
            return [_render_error(get_str(data, "message") or "")]
        if kind.startswith("item."):
            return _render_item(kind[len("item.") :], get_dict(data, "item"))
        return [LogEvent("system", clip(kind, LINE_LIMIT))]

    def collect(
        self,
        lines: Iterable[str],
        *,
        exit_code: int | None,
        stderr_tail: str = "",
        model: str | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        host_facts: str = "",
        now: float | None = None,
    ) -> Result:
        """Derive the result from the stream, completed by the rollout facts of the host.

        The model is the one the rollout recorded, else the task's ``--model``, else the
        host's config.toml; tokens come from the last ``turn.completed``, else the rollout's
        last token count (a run that failed or was stopped mid-turn).
        """
        scan = _Scan()
        for line in lines:
            scan.feed(parse_json(line))
        facts = parse_facts(host_facts)
        now = time.time() if now is None else now
        used = facts.model or model or facts.config_model
        tokens = usage_tokens(scan.usage) if scan.usage is not None else facts.tokens
        result = Result(
            status=TaskStatus.COMPLETED,
            summary=scan.summary or "",
            exit_code=exit_code,
            tokens=tokens or Tokens(),
            models=[used] if used else [],
            session_id=scan.session_id,
            duration_ms=facts.duration_ms,
            permission_denials=scan.denials,
            windows=facts.windows,
        )
        result.cost_usd, warning = _price(result.tokens, used, prices)
        if warning:
            result.warnings.append(warning)
        failure = scan.failure or (facts.error if scan.usage is None else None)
        quota = codex_signal(
            failure or scan.last_error,
            error_info=facts.error_info,
            windows=facts.windows,
            worked=scan.worked,
            now=now,
            tz=facts.tz,
        )
        if quota is not None and (scan.failure is not None or exit_code != 0):
            result.quota = quota
            result.api_error_status = 429
        if scan.failure is not None:
            result.status, result.error = TaskStatus.FAILED, scan.failure
            result.reason = Reason.USAGE_LIMIT if result.quota else Reason.AGENT_ERROR
        elif exit_code != 0 or scan.usage is None:
            what = "no turn.completed line" if exit_code == 0 else None
            if scan.last_error:
                what = "; ".join(filter(None, [what, f"last error: {one_line(scan.last_error)}"]))
            result.status, result.reason = TaskStatus.FAILED, Reason.EXIT_CODE
            if result.quota is not None:
                result.reason = Reason.USAGE_LIMIT
            result.error = exit_error(exit_code, stderr_tail, what)
        if result.api_error_status is None:
            result.api_error_status = facts.http_status
        if result.status is TaskStatus.FAILED and not result.summary:
            result.summary = result.error or ""
        if result.status is TaskStatus.COMPLETED and scan.denials:
            result.warnings.insert(0, denial_warning(scan.denials))
        return result


def _price(
    tokens: Tokens, model: str | None, prices: Mapping[str, ModelPrice] | None
) -> tuple[float | None, str | None]:
    """Return (cost, warning): $0 for no usage, None and a how-to when the model has no price."""
    if tokens == Tokens():
        return 0.0, None
    price = price_for(model, prices)
    if price is None:
        return None, unpriced_warning(model)
    return cost(_disjoint(tokens), price), None


class _Scan:
    """Fold the exec --json stream: thread, last message, usage, failure, work, denials."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.summary: str | None = None
        self.failure: str | None = None
        self.last_error: str | None = None
        self.usage: dict[str, Any] | None = None
        self.worked = False
        self.denials: list[dict[str, Any]] = []

    def feed(self, data: Any) -> None:
        kind = get_str(data, "type")
        if kind == "thread.started" and self.session_id is None:
            self.session_id = get_str(data, "thread_id")
        elif kind == "item.completed":
            item = get_dict(data, "item")
            item_type = get_str(item, "type")
            if item_type == "agent_message":
                self.summary = get_str(item, "text") or self.summary
            elif item_type in _WORK_ITEMS:
                self.worked = True
                if get_str(item, "status") == "declined":  # refused by the approval policy
                    self.denials.extend(_declined(item))
        elif kind == "turn.completed":
            self.usage = get_dict(data, "usage")
        elif kind == "turn.failed":
            self.failure = get_str(get_dict(data, "error"), "message") or "turn failed"
        elif kind == "error":
            self.last_error = get_str(data, "message") or self.last_error


_WORK_ITEMS = ("command_execution", "file_change", "mcp_tool_call")


def _declined(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the denials of a declined command or patch item."""
    if get_str(item, "type") == "command_execution":
        return [{"tool": "shell", "target": unwrap_command(get_str(item, "command") or "")}]
    if get_str(item, "type") == "file_change":
        return [
            {"tool": "apply_patch", "target": get_str(change, "path") or "?"}
            for change in get_list(item, "changes")
        ]
    return [{"tool": get_str(item, "tool") or "tool", "target": get_str(item, "server")}]


@dataclass
class CodexFacts:
    """What the host told about a codex run beyond its stream (see render_codex_facts)."""

    model: str | None = None  # the last turn_context's model: what the run really used
    config_model: str | None = None  # config.toml's top-level ``model =``
    tokens: Tokens | None = None  # the thread's totals at its last token count
    windows: list[UsageWindow] = field(default_factory=list)
    error: str | None = None  # the last turn's error message, if it ended with one
    error_info: Any = None  # its codex_error_info ("usage_limit_exceeded", {…429…})
    duration_ms: int | None = None
    rollout: str | None = None
    tz: _dt.tzinfo | None = None
    now: float | None = None

    @property
    def http_status(self) -> int | None:
        """Return the HTTP status of a ``response_too_many_failed_attempts`` error."""
        if isinstance(self.error_info, dict):
            for value in self.error_info.values():
                status = get_int(value, "http_status_code")
                if status is not None:
                    return status
        return None


def parse_facts(text: str) -> CodexFacts:
    """Parse render_codex_facts' output; missing or garbled parts stay None."""
    head, _, body = text.partition(f"\n{CODEX_FACTS_RULE}\n")
    keys = parse_kv(head)
    facts = CodexFacts(
        config_model=_toml_string(keys.get("config_model", "")),
        rollout=keys.get("rollout") or None,
        tz=_zone(keys.get("zone", ""), keys.get("utc_offset", "")),
    )
    now = keys.get("now", "")
    facts.now = float(now) if now.isdigit() else None
    entries: list[tuple[int, dict[str, Any]]] = []
    for line in body.splitlines():
        prefix, _, text = line.partition(":")
        parsed = parse_json(text)
        if prefix.isdigit() and isinstance(parsed, dict):
            entries.append((int(prefix), parsed))
    entries.sort(key=lambda pair: pair[0])
    started = max((n for n, d in entries if _payload_type(d) == "task_started"), default=0)
    for number, data in entries:
        payload = get_dict(data, "payload")
        kind = _payload_type(data)
        if data.get("type") == "turn_context":
            facts.model = get_str(payload, "model") or facts.model
        elif kind == "token_count":
            total = get_dict(get_dict(payload, "info"), "total_token_usage")
            if total:
                facts.tokens = usage_tokens(total)
            if get_dict(payload, "rate_limits"):
                facts.windows = codex_windows(get_dict(payload, "rate_limits"))
        elif kind == "task_complete" and number > started:
            error = get_dict(payload, "error")
            facts.error = get_str(error, "message")
            facts.error_info = error.get("codex_error_info")
            facts.duration_ms = get_int(payload, "duration_ms")
    return facts


def _payload_type(data: dict[str, Any]) -> str | None:
    return get_str(get_dict(data, "payload"), "type") if data.get("type") == "event_msg" else None


def _toml_string(value: str) -> str | None:
    """Return the string of a TOML value (``"gpt-5.5"  # pinned`` → ``gpt-5.5``)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = tomllib.loads(f"v = {value}").get("v")
    except tomllib.TOMLDecodeError:
        return None
    return parsed if isinstance(parsed, str) and parsed else None


def _zone(name: str, offset: str) -> _dt.tzinfo | None:
    """Return the host's zone: its IANA name when known here, else its UTC offset."""
    if name.strip():
        try:
            return ZoneInfo(name.strip().lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    match = re.fullmatch(r"([+-])(\d{2})(\d{2})", offset.strip())
    if match is None:
        return None
    minutes = int(match[2]) * 60 + int(match[3])
    sign = -1 if match[1] == "-" else 1
    return _dt.timezone(_dt.timedelta(minutes=sign * minutes))


def usage_tokens(usage: Mapping[str, Any]) -> Tokens:
    """Return the usage of a turn.completed line (cumulative over the thread)."""
    return Tokens(
        input=get_int(usage, "input_tokens") or 0,
        output=get_int(usage, "output_tokens") or 0,
        cache_read=get_int(usage, "cached_input_tokens") or 0,
        cache_write=get_int(usage, "cache_write_input_tokens") or 0,
    )


def _disjoint(tokens: Tokens) -> Tokens:
    """Return the counts without overlap: OpenAI's input_tokens include the cached ones."""
    fresh = max(tokens.input - tokens.cache_read - tokens.cache_write, 0)
    return Tokens(
        input=fresh,
        output=tokens.output,
        cache_read=tokens.cache_read,
        cache_write=tokens.cache_write,
    )


def _render_error(message: str) -> LogEvent:
    match = _RETRY.match(message)
    if match is None:
        return LogEvent("error", one_line(message) or "error", is_error=True)
    attempt, most, cause, rest = match.groups()
    counter = f" {attempt}/{most}" if attempt else ""
    text = one_line(f"API retry{counter}: {cause or rest or 'reconnecting'}")
    return LogEvent(
        "retry", text, is_error=True, data={"attempt": _int(attempt), "max_retries": _int(most)}
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and len(text) < 10 else None


def _render_item(phase: str, item: dict[str, Any]) -> list[LogEvent]:
    kind = get_str(item, "type")
    done = phase == "completed"
    if kind == "agent_message" and done:
        text = clip(get_str(item, "text") or "", TEXT_LIMIT)
        return [LogEvent("text", text)] if text else []
    if kind == "reasoning" and done:
        text = clip(get_str(item, "text") or "", TEXT_LIMIT)
        return [LogEvent("reasoning", text)] if text else []
    if kind == "command_execution" and phase in ("started", "completed"):
        return [_render_command(item, done)]
    if kind == "file_change" and done:
        failed = get_str(item, "status") == "failed"
        events = []
        for change in get_list(item, "changes"):
            path = get_str(change, "path") or "?"
            verb = get_str(change, "kind") or "change"
            events.append(
                LogEvent(
                    "file_change",
                    clip(f"{verb} {display_path(path)}", LINE_LIMIT),
                    target=path,
                    is_error=failed,
                    data={"kind": verb},
                )
            )
        return events
    if kind == "mcp_tool_call" and phase in ("started", "completed"):
        name = f"{get_str(item, 'server') or '?'}.{get_str(item, 'tool') or '?'}"
        failed = get_str(item, "status") == "failed"
        if not done:
            return [LogEvent("tool_use", clip(name, LINE_LIMIT), tool=name)]
        return [
            LogEvent(
                "tool_result",
                clip(f"{name}: {get_str(item, 'status') or 'done'}", LINE_LIMIT),
                tool=name,
                is_error=failed,
            )
        ]
    if kind == "web_search" and done:
        query = get_str(item, "query") or ""
        return [
            LogEvent(
                "tool_use",
                clip(f"web_search: {one_line(query)}", LINE_LIMIT),
                tool="web_search",
                target=query,
            )
        ]
    if kind == "todo_list":
        todos = get_list(item, "items")
        finished = sum(1 for t in todos if isinstance(t, dict) and t.get("completed") is True)
        return [LogEvent("system", f"plan: {finished}/{len(todos)} done")]
    if kind == "error" and done:
        return [LogEvent("system", clip(f"warning: {get_str(item, 'message') or ''}", LINE_LIMIT))]
    if done and kind not in ("agent_message", "reasoning", "command_execution", "file_change"):
        return [LogEvent("system", clip(f"item: {kind or '?'}", LINE_LIMIT))]
    return []


def _render_command(item: dict[str, Any], done: bool) -> LogEvent:
    """Render a command: ``$ cmd`` when it starts, ``$ cmd → exit N`` with its output at the end.

    The target is the script codex ran (``/bin/bash -lc '…'`` unwrapped), so a reader sees the
    command once, then its outcome, as with claude's Bash tool.
    """
    script = unwrap_command(get_str(item, "command") or "")
    shown = one_line(script)
    status = get_str(item, "status")
    exit_code = get_int(item, "exit_code")
    if not done:
        return LogEvent(
            "command", clip(f"$ {shown}", LINE_LIMIT), target=script, data={"status": status}
        )
    failed = status in ("failed", "declined") or (exit_code is not None and exit_code != 0)
    suffix = f" → exit {exit_code}" if exit_code is not None else (f" → {status}" if status else "")
    output = joined(get_str(item, "aggregated_output") or "")
    return LogEvent(
        "command",
        clip(f"$ {shown}{suffix}", LINE_LIMIT),
        target=script,
        is_error=failed,
        data={"exit_code": exit_code, "status": status, "output": output},
    )


def unwrap_command(command: str) -> str:
    """Return the script of ``/bin/bash -lc '…'`` (how codex wraps commands), else as is."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if (
        len(words) == 3
        and words[0].rsplit("/", 1)[-1] in ("bash", "sh", "zsh")
        and words[1] in ("-lc", "-c")
    ):
        return words[2]
    return command
