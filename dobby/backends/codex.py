"""Codex: ``codex exec --json`` (see agents/FORMATS.md); Dobby prices its tokens itself."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from dobby.backends.pricing import ModelPrice, cost, price_for
from dobby.core.models import Host, Permissions, Reason, Result, Task, TaskStatus, Tokens
from dobby.hostside.scripts import PROMPT

from .base import (
    LINE_LIMIT,
    TEXT_LIMIT,
    LogEvent,
    checked_word,
    clip,
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

_PERMISSION_ARGS: dict[Permissions, list[str]] = {
    Permissions.BYPASS: ["--dangerously-bypass-approvals-and-sandbox"],
    Permissions.EDITS: ["--sandbox", "workspace-write"],
    Permissions.PLAN: ["--sandbox", "read-only"],
}

_RETRY = re.compile(r"Reconnecting\.\.\.\s*(?:(\d+)/(\d+))?\s*(?:\((.*)\))?\s*(.*)", re.DOTALL)


class CodexBackend:
    """Run ``codex exec --json`` and read its JSONL events."""

    name = "codex"

    def argv(self, *, task: Task, host: Host, is_root: bool) -> list[str]:
        """Return ``codex exec --json --skip-git-repo-check [options] [resume ID] -- PROMPT``."""
        args = ["codex", "exec", "--json", "--skip-git-repo-check"]
        if task.model:
            args += ["-m", checked_word(task.model, "model")]
        args += _PERMISSION_ARGS[permissions_of(host)]
        if task.resume:
            args += ["resume", checked_word(task.resume, "thread id to resume")]
        return [*args, "--", PROMPT]

    def env(self, *, task: Task, host: Host, is_root: bool) -> dict[str, str]:
        """Return no extra environment: codex runs as root without any."""
        return {}

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
    ) -> Result:
        """Derive the result: last agent message, last usage, turn.failed or the exit code."""
        session_id: str | None = None
        summary: str | None = None
        failure: str | None = None
        last_error: str | None = None
        usage: dict[str, Any] | None = None
        for line in lines:
            data = parse_json(line)
            kind = get_str(data, "type")
            if kind == "thread.started" and session_id is None:
                session_id = get_str(data, "thread_id")
            elif kind == "item.completed":
                item = get_dict(data, "item")
                if get_str(item, "type") == "agent_message":
                    summary = get_str(item, "text") or summary
            elif kind == "turn.completed":
                usage = get_dict(data, "usage")
            elif kind == "turn.failed":
                failure = get_str(get_dict(data, "error"), "message") or "turn failed"
            elif kind == "error":
                last_error = get_str(data, "message") or last_error
        tokens = usage_tokens(usage or {})
        price = price_for(model, prices)
        result = Result(
            status=TaskStatus.COMPLETED,
            summary=summary or "",
            exit_code=exit_code,
            cost_usd=cost(_disjoint(tokens), price)
            if price is not None and usage is not None
            else None,
            tokens=tokens,
            models=[model] if model else [],
            session_id=session_id,
        )
        if failure is not None:
            result.status, result.reason, result.error = (
                TaskStatus.FAILED,
                Reason.AGENT_ERROR,
                failure,
            )
        elif exit_code != 0 or usage is None:
            what = "no turn.completed line" if exit_code == 0 else None
            if last_error:
                what = "; ".join(filter(None, [what, f"last error: {one_line(last_error)}"]))
            result.status, result.reason = TaskStatus.FAILED, Reason.EXIT_CODE
            result.error = exit_error(exit_code, stderr_tail, what)
        if result.status is TaskStatus.FAILED and not result.summary:
            result.summary = result.error or ""
        return result


def usage_tokens(usage: dict[str, Any]) -> Tokens:
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
    raw = get_str(item, "command") or ""
    shown = one_line(unwrap_command(raw))
    status = get_str(item, "status")
    exit_code = get_int(item, "exit_code")
    if not done:
        return LogEvent(
            "command", clip(f"$ {shown}", LINE_LIMIT), target=raw, data={"status": status}
        )
    failed = status == "failed" or (exit_code is not None and exit_code != 0)
    suffix = f" → exit {exit_code}" if exit_code is not None else ""
    output = joined(get_str(item, "aggregated_output") or "")
    return LogEvent(
        "command",
        clip(f"$ {shown}{suffix}", LINE_LIMIT),
        target=raw,
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
