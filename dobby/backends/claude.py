"""Claude Code: ``claude -p --output-format stream-json --verbose`` (see agents/FORMATS.md)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dobby.backends.pricing import ModelPrice, cost, price_for, unpriced_warning
from dobby.core.errors import ValidationError
from dobby.core.models import (
    Host,
    Permissions,
    QuotaSignal,
    Reason,
    Result,
    Task,
    TaskStatus,
    Tokens,
)
from dobby.hostside.scripts import PROMPT, TaskPaths

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
    get_float,
    get_int,
    get_list,
    get_str,
    joined,
    one_line,
    parse_json,
    permissions_of,
    raw_line,
    with_stderr,
)
from .quota import ClaudeScan, claude_window

# What an agent may do unprompted under `permissions: edits`: edit files in its worktree, read,
# search, and run git and read-only shell commands. Anything else is denied (reported in the
# result's permission_denials), never prompted for: nobody is there to answer.
ALLOWED_TOOLS = tuple(
    "Read Edit Write MultiEdit Glob Grep LS NotebookRead NotebookEdit TodoWrite Bash(git:*)"
    " Bash(ls:*) Bash(cat:*) Bash(head:*) Bash(tail:*) Bash(wc:*) Bash(diff:*) Bash(grep:*)"
    " Bash(rg:*) Bash(pwd)".split()
)


def permission_args(permissions: Permissions, *, interactive: bool = False) -> list[str]:
    """Return claude's flags for ``permissions``: the one place they are written.

    ``edits`` in print mode adds the allow-list, since nobody is there to answer a prompt; in an
    interactive session (``dobby remote``) the person at the terminal answers them.
    """
    if permissions is Permissions.BYPASS:
        return ["--dangerously-skip-permissions"]
    if permissions is Permissions.PLAN:
        return ["--permission-mode", "plan"]
    edits = ["--permission-mode", "acceptEdits"]
    return edits if interactive else [*edits, "--allowedTools", ",".join(ALLOWED_TOOLS)]


# Which input field names the thing a tool acts on, for the one-line rendering.
_TARGET_KEYS = tuple(
    "command file_path notebook_path pattern url query path description skill prompt".split()
)
_PATH_KEYS = ("file_path", "notebook_path", "path")


class ClaudeBackend:
    """Run Claude Code in print mode and read its stream-json output."""

    name = "claude"
    limits: tuple[str, ...] = ("max_turns", "max_budget_usd")

    def argv(self, *, task: Task, host: Host, is_root: bool) -> list[str]:
        """Return ``claude -p --output-format stream-json --verbose [options]``.

        No prompt argument: ``claude -p`` then reads the prompt from stdin, which run.sh feeds
        from prompt.md (any size, and never parsed as an option).
        """
        args = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
        if task.model:
            args += ["--model", checked_word(task.model, "model")]
        if task.resume:
            args += ["--resume", checked_word(task.resume, "session id to resume")]
        if task.max_turns is not None:
            args += ["--max-turns", str(_positive_int(task.max_turns, "max_turns"))]
        if task.max_budget_usd is not None:
            args += ["--max-budget-usd", _usd(task.max_budget_usd)]
        return [*args, *permission_args(permissions_of(host))]

    def interactive_argv(
        self, *, permissions: Permissions, model: str | None, prompt: bool
    ) -> list[str]:
        """Return ``claude [permissions] [--model M] [-- PROMPT]`` (no ``-p``: a person types)."""
        argv = ["claude", *permission_args(permissions, interactive=True)]
        if model:
            argv += ["--model", checked_word(model, "model")]
        return [*argv, "--", PROMPT] if prompt else argv

    def env(self, *, task: Task, host: Host, is_root: bool) -> dict[str, str]:
        """Return IS_SANDBOX=1 only for bypass as root (claude refuses it otherwise)."""
        if is_root and permissions_of(host) is Permissions.BYPASS:
            return {"IS_SANDBOX": "1"}
        return {}

    def facts_command(self, *, paths: TaskPaths) -> str | None:
        """Return None: claude's stream holds everything (model, cost, limits)."""
        return None

    def render(self, line: str) -> list[LogEvent]:
        """Turn one stream-json line into display events."""
        data = parse_json(line)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return raw_line(line)
        kind = data["type"]
        if kind == "system":
            return _render_system(data)
        if kind == "assistant":
            return _render_assistant(data)
        if kind == "user":
            return _render_user(data)
        if kind == "result":
            return [_render_result(data)]
        if kind == "rate_limit_event":
            return [_render_rate_limit(data)]
        if kind == "stream_event":
            return []  # partial deltas: the assistant line that follows carries the whole block
        return [LogEvent("system", clip(kind, LINE_LIMIT))]

    def usage_tokens(self, usage: Mapping[str, Any]) -> Tokens:
        """Return the tokens of a message's (or the result's) ``usage`` object."""
        return Tokens(
            input=get_int(usage, "input_tokens") or 0,
            output=get_int(usage, "output_tokens") or 0,
            cache_read=get_int(usage, "cache_read_input_tokens") or 0,
            cache_write=get_int(usage, "cache_creation_input_tokens") or 0,
        )

    def command_text(self, command: str) -> str:
        """Return a Bash tool's command as is (claude does not wrap it)."""
        return command

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
        """Derive the result from the last ``result`` line (claude prices itself).

        Without one (a crash, a kill, a cancel) tokens come from the assistant lines' usage
        and are priced from the table: what the API calls so far cost.
        """
        scan = _Scan()
        for line in lines:
            data = parse_json(line)
            if isinstance(data, dict):
                scan.feed(data)
        now = time.time() if now is None else now
        last = scan.quota.result
        if last is None:
            return _without_result(scan, exit_code, stderr_tail, model or scan.model, prices)
        usage = get_dict(last, "modelUsage")
        denials = _denials(last)
        result = Result(
            status=TaskStatus.COMPLETED,
            summary=get_str(last, "result") or "",
            exit_code=exit_code,
            cost_usd=get_float(last, "total_cost_usd"),
            tokens=_tokens(last),
            models=[name for name in usage if isinstance(usage[name], dict)],
            session_id=get_str(last, "session_id") or scan.session_id,
            turns=get_int(last, "num_turns"),
            api_error_status=get_int(last, "api_error_status"),
            duration_ms=get_int(last, "duration_ms"),
            permission_denials=denials,
            windows=scan.quota.windows,
        )
        if result.cost_usd is None and result.tokens == Tokens():
            result.cost_usd = 0.0
        agent_error = _agent_error(last)
        if agent_error is not None:
            result.quota = scan.quota.signal(now=now)
            result.status, result.reason = TaskStatus.FAILED, _reason(last, result.quota)
            result.error = result.summary = agent_error
        elif exit_code != 0:  # killed after its result line, or a crash on the way out
            result.status, result.reason = TaskStatus.FAILED, Reason.EXIT_CODE
            result.error = (
                exit_error(exit_code, stderr_tail)
                if exit_code is not None
                else with_stderr("agent exited without an exit code after its result", stderr_tail)
            )
        elif denials:
            result.warnings.append(denial_warning(denials))
        return result


def _without_result(
    scan: _Scan,
    exit_code: int | None,
    stderr_tail: str,
    model: str | None,
    prices: Mapping[str, ModelPrice] | None,
) -> Result:
    """Return the failed result of a run that printed no result line."""
    what = "no result line"
    if scan.retry is not None:
        what += f"; last API error: {_retry_reason(scan.retry)}"
    error = exit_error(exit_code, stderr_tail, what)
    tokens = scan.tokens()
    result = Result(
        status=TaskStatus.FAILED,
        reason=Reason.EXIT_CODE,
        summary=error,
        error=error,
        exit_code=exit_code,
        session_id=scan.session_id,
        tokens=tokens,
        models=[model] if model and tokens != Tokens() else [],
        turns=len(scan.usage) or None,
        windows=scan.quota.windows,
    )
    if tokens == Tokens():
        result.cost_usd = 0.0
    else:
        price = price_for(model, prices)
        result.cost_usd = cost(tokens, price) if price is not None else None
        if price is None:
            result.warnings.append(unpriced_warning(model))
    return result


class _Scan:
    """Fold stream-json lines: session, model, retries, per-message usage, quota state."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.retry: dict[str, Any] | None = None
        self.usage: dict[str, dict[str, Any]] = {}  # message id → its last usage snapshot
        self.quota = ClaudeScan()

    def feed(self, data: dict[str, Any]) -> None:
        self.quota.feed(data)
        kind = data.get("type")
        if self.session_id is None:
            self.session_id = get_str(data, "session_id")
        if kind == "system" and data.get("subtype") == "api_retry":
            self.retry = data
        elif kind == "system" and data.get("subtype") == "init":
            self.model = get_str(data, "model") or self.model
        elif kind == "assistant":
            message = get_dict(data, "message")
            msg_id = get_str(message, "id")
            if msg_id and get_str(message, "model") != "<synthetic>" and get_dict(message, "usage"):
                self.usage[msg_id] = get_dict(message, "usage")

    def tokens(self) -> Tokens:
        """Return the tokens of the API calls made so far (one usage per message)."""
        snapshots = list(self.usage.values())
        return Tokens(
            input=sum(get_int(u, "input_tokens") or 0 for u in snapshots),
            output=sum(get_int(u, "output_tokens") or 0 for u in snapshots),
            cache_read=sum(get_int(u, "cache_read_input_tokens") or 0 for u in snapshots),
            cache_write=sum(get_int(u, "cache_creation_input_tokens") or 0 for u in snapshots),
        )


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def _usd(value: Any) -> str:
    """Return a budget as claude's --max-budget-usd word (``0.5``), refusing a bad one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"max_budget_usd must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"max_budget_usd must be > 0, got {value!r}")
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def _denials(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the result's ``permission_denials`` as [{tool, target}]."""
    denials = []
    for entry in get_list(result, "permission_denials"):
        if not isinstance(entry, dict):
            continue
        tool_input = get_dict(entry, "tool_input")
        key = next((k for k in _TARGET_KEYS if get_str(tool_input, k)), None)
        target = get_str(tool_input, key) if key else None
        if target and key in _PATH_KEYS:
            target = display_path(target)
        denials.append(
            {
                "tool": get_str(entry, "tool_name") or "?",
                "target": one_line(target) if target else None,
            }
        )
    return denials


def _agent_error(result: dict[str, Any]) -> str | None:
    """Return the error a result line reports, or None if it reports success."""
    subtype = get_str(result, "subtype") or "unknown"
    if result.get("is_error") is not True and subtype == "success":
        return None
    if subtype.startswith("error"):
        errors = [e for e in get_list(result, "errors") if isinstance(e, str)]
        return f"{subtype}: {'; '.join(errors)}" if errors else subtype
    return get_str(result, "result") or f"agent error ({subtype})"


_SUBTYPE_REASONS = {
    "error_max_budget_usd": Reason.BUDGET,
    "error_max_turns": Reason.MAX_TURNS,
}


def _reason(result: dict[str, Any], quota: QuotaSignal | None) -> Reason:
    """Return the failure reason of an error result line."""
    if quota is not None:
        return Reason.USAGE_LIMIT
    return _SUBTYPE_REASONS.get(get_str(result, "subtype") or "", Reason.AGENT_ERROR)


def _tokens(result: dict[str, Any]) -> Tokens:
    """Sum tokens over modelUsage (includes side queries), falling back to usage."""
    per_model = [u for u in get_dict(result, "modelUsage").values() if isinstance(u, dict)]
    if per_model:
        return Tokens(
            input=sum(get_int(u, "inputTokens") or 0 for u in per_model),
            output=sum(get_int(u, "outputTokens") or 0 for u in per_model),
            cache_read=sum(get_int(u, "cacheReadInputTokens") or 0 for u in per_model),
            cache_write=sum(get_int(u, "cacheCreationInputTokens") or 0 for u in per_model),
        )
    return ClaudeBackend().usage_tokens(get_dict(result, "usage"))


def _render_rate_limit(data: dict[str, Any]) -> LogEvent:
    """Render a rate_limit_event: ``usage five_hour: rejected, resets at …``."""
    window = claude_window(data)
    if window is None:
        return LogEvent("system", "rate_limit_event")
    parts = [window.status or "?"]
    if window.utilization is not None:
        parts.append(f"{window.utilization:.0%} used")
    if window.resets_at is not None:
        parts.append("resets " + format_epoch(window.resets_at))
    return LogEvent(
        "system",
        f"usage {window.window}: {', '.join(parts)}",
        is_error=window.status == "rejected",
        data=window.to_dict(),
    )


def format_epoch(epoch: float) -> str:
    """Return an epoch as ``2026-11-30 08:52 UTC``."""
    moment = _dt.datetime.fromtimestamp(epoch, _dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _retry_reason(data: dict[str, Any]) -> str:
    """Return ``server_error (500)`` for an api_retry line."""
    error = get_str(data, "error") or "unknown"
    status = get_int(data, "error_status")
    return f"{error} ({status})" if status is not None else error


def _render_system(data: dict[str, Any]) -> list[LogEvent]:
    subtype = get_str(data, "subtype") or ""
    if subtype == "init":
        model = get_str(data, "model") or "?"
        mode = get_str(data, "permissionMode") or "?"
        extra: dict[str, Any] = {
            "session_id": get_str(data, "session_id"),
            "model": model,
            "cwd": get_str(data, "cwd"),
            "version": get_str(data, "claude_code_version"),
        }
        return [
            LogEvent(
                "system", f"claude session started: model {model}, permissions {mode}", data=extra
            )
        ]
    if subtype == "api_retry":
        attempt, most = get_int(data, "attempt"), get_int(data, "max_retries")
        text = f"API retry {_or_q(attempt)}/{_or_q(most)}"
        retry = {
            "attempt": attempt,
            "max_retries": most,
            "error_status": get_int(data, "error_status"),
            "retry_delay_ms": get_float(data, "retry_delay_ms"),
        }
        return [LogEvent("retry", f"{text}: {_retry_reason(data)}", is_error=True, data=retry)]
    if subtype == "status":
        return []  # "requesting": noise
    return [LogEvent("system", clip(f"system: {subtype or '?'}", LINE_LIMIT))]


def _or_q(value: int | None) -> str:
    return "?" if value is None else str(value)


def _render_assistant(data: dict[str, Any]) -> list[LogEvent]:
    message = get_dict(data, "message")
    error = get_str(data, "error")  # synthetic error turn (API failure after retries)
    events: list[LogEvent] = []
    for block in get_list(message, "content"):
        kind = get_str(block, "type")
        if kind == "text":
            text = clip(get_str(block, "text") or "", TEXT_LIMIT)
            if error is not None:
                events.append(LogEvent("error", text, is_error=True, data={"error": error}))
            elif text:
                events.append(LogEvent("text", text))
        elif kind == "thinking":
            text = clip(get_str(block, "thinking") or "", TEXT_LIMIT)
            if text:
                events.append(LogEvent("reasoning", text))
        elif kind in ("tool_use", "server_tool_use"):
            events.append(_render_tool_use(block))
    return events


def _render_tool_use(block: dict[str, Any]) -> LogEvent:
    name = get_str(block, "name") or "tool"
    tool_input = get_dict(block, "input")
    key = next((k for k in _TARGET_KEYS if get_str(tool_input, k)), None)
    if key is None:
        shown = json.dumps(tool_input, ensure_ascii=False) if tool_input else ""
        text = f"{name}: {shown}" if shown else name
        return LogEvent(
            "tool_use", clip(text, LINE_LIMIT), tool=name, data={"id": get_str(block, "id")}
        )
    target = get_str(tool_input, key) or ""
    shown = display_path(target) if key in _PATH_KEYS else one_line(target)
    return LogEvent(
        "tool_use",
        clip(f"{name}: {shown}", LINE_LIMIT),
        tool=name,
        target=target,
        data={"id": get_str(block, "id")},
    )


def _render_user(data: dict[str, Any]) -> list[LogEvent]:
    message = get_dict(data, "message")
    content = message.get("content")
    if isinstance(content, str):  # a replayed user prompt
        return (
            [LogEvent("text", clip(content, TEXT_LIMIT), data={"role": "user"})] if content else []
        )
    structured = get_dict(data, "tool_use_result")
    target = get_str(structured, "filePath")
    events = []
    for block in get_list(message, "content"):
        if get_str(block, "type") != "tool_result":
            continue
        is_error = block.get("is_error") is True
        text = joined(_result_text(block.get("content"))) or (
            "(error)" if is_error else "(no output)"
        )
        events.append(
            LogEvent(
                "tool_result",
                text,
                target=target,
                is_error=is_error,
                data={"tool_use_id": get_str(block, "tool_use_id")},
            )
        )
    return events


def _result_text(content: Any) -> str:
    """Return the text of a tool_result content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    parts = [get_str(b, "text") for b in content] if isinstance(content, list) else []
    return "\n".join(p for p in parts if p)


def _render_result(data: dict[str, Any]) -> LogEvent:
    error = _agent_error(data)
    cost = get_float(data, "total_cost_usd")
    extra = {
        "subtype": get_str(data, "subtype"),
        "cost_usd": cost,
        "turns": get_int(data, "num_turns"),
        "duration_ms": get_int(data, "duration_ms"),
        "usage": _tokens(data).to_dict(),
        "api_error_status": get_int(data, "api_error_status"),
        "permission_denials": _denials(data),
    }
    if error is not None:
        return LogEvent("result", one_line(f"failed: {error}"), is_error=True, data=extra)
    cost_text = f" (${cost:.4f})" if cost is not None else ""
    return LogEvent(
        "result", one_line(f"completed{cost_text}: {get_str(data, 'result') or ''}"), data=extra
    )
