"""Live detail-status: what an agent is doing now, folded line by line from its output.

One :class:`Detail` per task is fed the lines of ``out.jsonl`` as they arrive (claude
stream-json, codex exec --json, or a shell command's text) and answers: current step, last
tool and its target, files read/edited/created/deleted, commands with exit codes, tokens and
cost so far, turns and API retries. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dobby.backends import Backend, get_backend
from dobby.backends.base import (
    clean,
    clip,
    display_path,
    get_dict,
    get_int,
    get_list,
    get_str,
    one_line,
    parse_json,
)
from dobby.backends.pricing import ModelPrice, cost, price_for
from dobby.core.models import Tokens
from dobby.results.followup import codex_cost, minus

MAX_COMMANDS = 50  # the most recent ones are shown; commands_total counts them all
MAX_FILES = 200
STEP_LIMIT = 200
_EXIT = re.compile(r"^(?:Error: )?Exit code (\d+)")
_TARGET_KEYS = (
    "file_path",
    "notebook_path",
    "command",
    "pattern",
    "path",
    "url",
    "query",
    "description",
)
_READS = {"Read", "NotebookRead"}
# claude's tool_result text for a tool call the permission mode refused (it never ran)
_DENIED = re.compile(r"requested permissions to .*, but you haven't granted it")

_EDITS = {"Edit", "MultiEdit", "NotebookEdit"}


@dataclass
class Detail:
    """The running summary of one task's output."""

    backend: str
    model: str | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    baseline: Tokens | None = None  # a codex follow-up's thread tokens before it started
    cwd: str | None = None  # paths under it are shown relative (claude's init says it)
    step: str | None = None
    last_tool: str | None = None
    last_target: str | None = None
    last_message: str | None = None
    last_error: str | None = None
    session_id: str | None = None
    files: dict[str, list[str]] = field(
        default_factory=lambda: {"read": [], "edited": [], "created": [], "deleted": []}
    )
    commands: list[dict[str, Any]] = field(default_factory=list)
    commands_total: int = 0
    tokens: Tokens = field(default_factory=Tokens)
    cost_usd: float | None = None
    cost_final: bool = False
    turns: int | None = None
    retries: int = 0
    last_retry: dict[str, Any] | None = None
    lines: int = 0
    _tools: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _usage: dict[str, Tokens] = field(default_factory=dict, repr=False)

    @property
    def _agent(self) -> Backend:
        return get_backend(self.backend)

    def feed(self, line: str) -> None:
        """Fold one output line into the summary."""
        if not line.strip():
            return
        self.lines += 1
        if self.backend == "shell":
            self.step = clip(clean(line), STEP_LIMIT) or self.step
            return
        data = parse_json(line)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            text = clip(clean(line), STEP_LIMIT)
            if text:
                self.step = text
            return
        if self.backend == "claude":
            self._claude(data, line)
        elif self.backend == "codex":
            self._codex(data)

    # -- claude ------------------------------------------------------------------------
    def _claude(self, data: dict[str, Any], line: str) -> None:
        kind = data["type"]
        if kind == "system":
            subtype = get_str(data, "subtype")
            if subtype == "init":
                self.session_id = get_str(data, "session_id") or self.session_id
                self.model = get_str(data, "model") or self.model
                self.cwd = get_str(data, "cwd") or self.cwd
                self.step = "session started"
            elif subtype == "api_retry":
                error = f"{get_str(data, 'error') or 'error'} ({get_int(data, 'error_status')})"
                self._retry(get_int(data, "attempt"), get_int(data, "max_retries"), error)
        elif kind == "assistant":
            self._claude_assistant(data)
        elif kind == "user":
            self._claude_results(data)
        elif kind == "result":
            result = self._agent.collect([line], exit_code=0)
            self.tokens, self.cost_usd, self.cost_final = result.tokens, result.cost_usd, True
            self.turns = result.turns
            self.session_id = result.session_id or self.session_id
            self.last_error = result.error if result.error else self.last_error
            self.step = f"failed: {one_line(result.error)}" if result.error else "finished"

    def _claude_assistant(self, data: dict[str, Any]) -> None:
        message = get_dict(data, "message")
        model = get_str(message, "model")
        if model and not model.startswith("<"):
            self.model = self.model or model
        msg_id = get_str(message, "id")
        if msg_id and get_dict(message, "usage") and not self.cost_final:
            self._usage[msg_id] = self._agent.usage_tokens(get_dict(message, "usage"))
            self._claude_usage()
        for block in get_list(message, "content"):
            kind = get_str(block, "type")
            if kind == "text":
                text = get_str(block, "text") or ""
                if data.get("error"):
                    self.last_error = one_line(text)
                elif text.strip():
                    self.last_message = clip(text, 1000)
                    self.step = clip(f"replying: {one_line(text)}", STEP_LIMIT)
            elif kind == "thinking":
                self.step = "thinking"
            elif kind in ("tool_use", "server_tool_use"):
                self._claude_tool(block)

    def _claude_tool(self, block: dict[str, Any]) -> None:
        name = get_str(block, "name") or "tool"
        tool_input = get_dict(block, "input")
        key = next((k for k in _TARGET_KEYS if get_str(tool_input, k)), None)
        target = get_str(tool_input, key) if key else None
        shown = self._show(target) if target and "path" in (key or "") else target
        self.last_tool, self.last_target = name, shown
        self.step = clip(f"{name}: {one_line(shown)}" if shown else name, STEP_LIMIT)
        info: dict[str, Any] = {"name": name, "path": shown if key and "path" in key else None}
        if name in _READS and info["path"]:
            self._file("read", info["path"])
        if name == "Bash" and target:
            info["command"] = self._command_started(target)
        tool_id = get_str(block, "id")
        if tool_id:
            self._tools[tool_id] = info

    def _claude_results(self, data: dict[str, Any]) -> None:
        structured = data.get("tool_use_result")
        for block in get_list(get_dict(data, "message"), "content"):
            if get_str(block, "type") != "tool_result":
                continue
            info = self._tools.pop(get_str(block, "tool_use_id") or "", None)
            if info is None:
                continue
            failed = block.get("is_error") is True
            name, path = info["name"], info.get("path")
            if "command" in info:
                exit_code: int | None = 0
                status = "completed"
                if failed:
                    # Only claude's "Exit code N" says the command ran: a denied or
                    # interrupted one has no exit code, and none is made up for it.
                    text = _text(block.get("content"))
                    match = _EXIT.match(text)
                    exit_code = int(match.group(1)) if match else None
                    status = "denied" if not match and _DENIED.search(text) else "failed"
                self._command_done(info["command"], exit_code, status)
            elif path and not failed and name in _EDITS:
                self._file("edited", path)
            elif path and not failed and name == "Write":
                created = isinstance(structured, dict) and structured.get("type") == "create"
                self._file("created" if created else "edited", path)
            self.step = f"{name} {'failed' if failed else 'done'}; waiting for the model"

    def _claude_usage(self) -> None:
        snapshots = list(self._usage.values())
        self.tokens = Tokens(
            input=sum(u.input for u in snapshots),
            output=sum(u.output for u in snapshots),
            cache_read=sum(u.cache_read for u in snapshots),
            cache_write=sum(u.cache_write for u in snapshots),
        )
        self.turns = len(snapshots)
        price = price_for(self.model, self.prices)
        self.cost_usd = cost(self.tokens, price) if price is not None else None

    # -- codex -------------------------------------------------------------------------
    def _codex(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "thread.started":
            self.session_id = get_str(data, "thread_id") or self.session_id
            self.step = "thread started"
        elif kind == "turn.started":
            self.turns = (self.turns or 0) + 1
            self.step = "thinking"
        elif kind == "turn.completed":
            self.tokens = minus(self._agent.usage_tokens(get_dict(data, "usage")), self.baseline)
            self.cost_usd = codex_cost(self.tokens, self.model, self.prices)
            self.step = "turn completed"
        elif kind == "turn.failed":
            self.last_error = get_str(get_dict(data, "error"), "message") or "turn failed"
            self.step = clip(f"failed: {one_line(self.last_error)}", STEP_LIMIT)
        elif kind == "error":
            message = get_str(data, "message") or ""
            if message.startswith("Reconnecting"):
                match = re.search(r"(\d+)/(\d+)", message)
                attempt, most = (int(match[1]), int(match[2])) if match else (None, None)
                self._retry(attempt, most, one_line(message))
            else:
                self.last_error = one_line(message)
        elif kind.startswith("item."):
            self._codex_item(kind[5:], get_dict(data, "item"))

    def _codex_item(self, phase: str, item: dict[str, Any]) -> None:
        kind, item_id = get_str(item, "type"), get_str(item, "id") or ""
        if kind == "command_execution":
            command = self._agent.command_text(get_str(item, "command") or "")
            self.last_tool, self.last_target = "shell", command
            if item_id not in self._tools:
                self._tools[item_id] = {"command": self._command_started(command)}
            if phase == "completed":
                status = get_str(item, "status") or "completed"
                self._command_done(
                    self._tools.pop(item_id)["command"], get_int(item, "exit_code"), status
                )
                self.step = f"command {status}"
            else:
                self.step = clip(f"running: {one_line(command)}", STEP_LIMIT)
        elif kind == "file_change":
            self.last_tool = "apply_patch"
            for change in get_list(item, "changes"):
                path = self._show(get_str(change, "path") or "?")
                self.last_target = path
                if phase == "completed" and get_str(item, "status") != "failed":
                    verb = get_str(change, "kind")
                    self._file(
                        {"add": "created", "delete": "deleted"}.get(verb or "", "edited"), path
                    )
            self.step = clip(f"editing {self.last_target or 'files'}", STEP_LIMIT)
        elif kind == "agent_message" and phase == "completed":
            text = get_str(item, "text") or ""
            self.last_message = clip(text, 1000)
            self.step = clip(f"replying: {one_line(text)}", STEP_LIMIT)
        elif kind == "reasoning":
            self.step = "thinking"
        elif kind in ("mcp_tool_call", "web_search"):
            self.last_tool = get_str(item, "tool") or kind
            self.last_target = get_str(item, "query") or get_str(item, "server")
            self.step = clip(f"{self.last_tool}: {self.last_target or ''}", STEP_LIMIT)

    # -- shared ------------------------------------------------------------------------
    def _show(self, path: str) -> str:
        """Return a path relative to the agent's working directory when inside it."""
        if self.cwd and path.startswith(self.cwd.rstrip("/") + "/"):
            return path[len(self.cwd.rstrip("/")) + 1 :]
        return display_path(path)

    def _retry(self, attempt: int | None, most: int | None, error: str) -> None:
        self.retries += 1
        self.last_retry = {"attempt": attempt, "max_retries": most, "error": error}
        counter = f" {attempt}/{most}" if attempt is not None else ""
        self.step = clip(f"API retry{counter}: {error}", STEP_LIMIT)

    def _command_started(self, command: str) -> int:
        self.commands.append({"command": command, "exit_code": None, "status": "running"})
        self.commands_total += 1
        if len(self.commands) > MAX_COMMANDS:
            del self.commands[0]
        return self.commands_total

    def _command_done(self, number: int, exit_code: int | None, status: str) -> None:
        index = len(self.commands) - (self.commands_total - number) - 1
        if 0 <= index < len(self.commands):
            self.commands[index].update(exit_code=exit_code, status=status)

    def _file(self, kind: str, path: str) -> None:
        if kind == "edited" and path in self.files["created"]:
            return  # created by this task, then edited: still a new file
        listed = self.files[kind]
        if path not in listed and len(listed) < MAX_FILES:
            listed.append(path)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return {
            "step": self.step,
            "last_tool": self.last_tool,
            "last_target": self.last_target,
            "last_message": self.last_message,
            "last_error": self.last_error,
            "files": {k: list(v) for k, v in self.files.items()},
            "commands": [dict(c) for c in self.commands],
            "commands_total": self.commands_total,
            "tokens": self.tokens.to_dict(),
            "cost_usd": self.cost_usd,
            "cost_estimated": self.cost_usd is not None and not self.cost_final,
            "turns": self.turns,
            "retries": self.retries,
            "last_retry": self.last_retry,
            "session_id": self.session_id,
            "model": self.model,
            "lines": self.lines,
        }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [get_str(b, "text") for b in content] if isinstance(content, list) else []
    return "\n".join(p for p in parts if p)
