"""The Backend protocol and what every backend shares: LogEvent, the prompt placeholder, helpers.

A backend is pure: it builds an argv and an env, renders one stdout line into display events,
and derives a :class:`~dobby.core.models.Result` from the whole output. It never does I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dobby.backends.pricing import ModelPrice
from dobby.core.errors import ValidationError
from dobby.core.models import Host, Permissions, Result, Task, Tokens
from dobby.hostside.scripts import TaskPaths

EVENT_KINDS = tuple(
    "system text reasoning tool_use tool_result retry command file_change error result line "
    "section".split()
)

TEXT_LIMIT = 4000  # text / reasoning: whole paragraphs are worth showing
LINE_LIMIT = 240  # tool calls, commands, results: one line
STDERR_TAIL_LIMIT = 1500
NO_EXIT_CODE = "agent exited without a result"


@dataclass(frozen=True)
class LogEvent:
    """One display event rendered from one line of agent output."""

    kind: str
    text: str
    tool: str | None = None
    target: str | None = None
    is_error: bool = False
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready data (same keys every time)."""
        return {
            "kind": self.kind,
            "text": self.text,
            "tool": self.tool,
            "target": self.target,
            "is_error": self.is_error,
            "data": dict(self.data),
        }


class Backend(Protocol):
    """How to run one agent CLI and read its output."""

    name: str
    limits: tuple[str, ...]  # the Task limit fields (max_turns, max_budget_usd) it honours

    def argv(self, *, task: Task, host: Host, is_root: bool) -> list[str]:
        """Return the command line; :data:`PROMPT` in it stands for the prompt as an argument.

        Without :data:`PROMPT`, run.sh feeds the prompt on stdin (from prompt.md).
        """
        ...

    def facts_command(self, *, paths: TaskPaths) -> str | None:
        """Return a host command whose output :meth:`collect` takes as ``host_facts``."""
        ...

    def env(self, *, task: Task, host: Host, is_root: bool) -> dict[str, str]:
        """Return extra environment variables the command needs."""
        ...

    def interactive_argv(
        self, *, permissions: Permissions, model: str | None, prompt: bool
    ) -> list[str]:
        """Return the argv of an interactive session (:data:`PROMPT`: the first message)."""
        ...

    def render(self, line: str) -> list[LogEvent]:
        """Turn one stdout line into zero or more display events; never raise."""
        ...

    def usage_tokens(self, usage: Mapping[str, Any]) -> Tokens:
        """Return the tokens of one usage object as this backend's output writes it."""
        ...

    def command_text(self, command: str) -> str:
        """Return a shell command the agent ran as the agent wrote it (unwrapped)."""
        ...

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
        """Derive the task's result from all stdout lines, the exit code and the host facts.

        ``now`` (epoch seconds; default the clock) anchors reset times read from text.
        """
        ...


# --- argv helpers -----------------------------------------------------------------------------

_SAFE_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@\[\]+=-]*")


def permissions_of(host: Host) -> Permissions:
    """Return the host's permissions, refusing anything but bypass / edits / plan."""
    try:
        return Permissions(host.permissions)
    except ValueError:
        choices = ", ".join(p.value for p in Permissions)
        raise ValidationError(
            f"host {host.name}: unknown permissions {host.permissions!r} (choose {choices})"
        ) from None


def checked_word(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one argv word (no leading dash, no spaces)."""
    if not isinstance(value, str) or not _SAFE_WORD.fullmatch(value):
        raise ValidationError(f"invalid {what} {value!r}")
    return value


# --- render helpers ---------------------------------------------------------------------------


def parse_json(line: str) -> Any:
    """Return the JSON value of ``line``, or None for a blank or non-JSON line."""
    stripped = line.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def raw_line(line: str) -> list[LogEvent]:
    """Render a line that is not agent JSON (a warning, ``EXIT=0``) as kind ``line``."""
    text = clean(line)
    return [LogEvent("line", clip(text, LINE_LIMIT))] if text.strip() else []


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def clean(line: str) -> str:
    """Strip the newline, ANSI escapes and carriage-return overdraws from a raw line."""
    text = _ANSI.sub("", line.rstrip("\r\n"))
    if "\r" in text:  # a progress bar: show what the terminal would show last
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    return text


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to ``limit`` characters with an ellipsis."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """Return the first non-empty line of ``text``, marked with ``…`` when more follows."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    first = lines[0] + (" …" if len(lines) > 1 else "")
    return clip(first, limit)


def joined(text: str, limit: int = LINE_LIMIT) -> str:
    """Return the non-empty lines of ``text`` joined with `` ⏎ `` and shortened to ``limit``."""
    return clip(" ⏎ ".join(ln.strip() for ln in text.splitlines() if ln.strip()), limit)


_WORKTREE = re.compile(r"^.*/worktrees/[^/]+/")


def display_path(path: str) -> str:
    """Shorten a path inside a Dobby worktree (``…/worktrees/<id>/src/x.py`` → ``src/x.py``)."""
    return _WORKTREE.sub("", path) or path


def get_str(data: Any, key: str) -> str | None:
    """Return ``data[key]`` if ``data`` is a dict and the value a string."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def get_int(data: Any, key: str) -> int | None:
    """Return ``data[key]`` as an int if it is a finite number (not a bool)."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def get_float(data: Any, key: str) -> float | None:
    """Return ``data[key]`` as a float if it is a finite number (not a bool)."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def get_dict(data: Any, key: str) -> dict[str, Any]:
    """Return ``data[key]`` if it is a dict, else an empty dict."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def get_list(data: Any, key: str) -> list[Any]:
    """Return ``data[key]`` if it is a list, else an empty list."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


# --- collect helpers --------------------------------------------------------------------------


def with_stderr(message: str, stderr_tail: str) -> str:
    """Append the (shortened) stderr tail to an error message."""
    tail = stderr_tail.strip()
    if not tail:
        return message
    if len(tail) > STDERR_TAIL_LIMIT:
        tail = "…" + tail[-(STDERR_TAIL_LIMIT - 1) :]
    return f"{message}: {tail}"


def denial_warning(denials: Iterable[Mapping[str, Any]]) -> str:
    """Return the one-line warning of a run some of whose actions were denied."""
    items = list(denials)
    shown = ", ".join(
        clip(f"{d.get('tool') or '?'} {d.get('target') or ''}".strip(), 60) for d in items[:3]
    )
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{len(items)} action(s) denied by the host's permissions: {shown}{more}"


def exit_error(exit_code: int | None, stderr_tail: str, what: str | None = None) -> str:
    """Return the error message for a bad or missing exit code, with the stderr tail."""
    if exit_code is None:
        message = NO_EXIT_CODE + (f" ({what})" if what else "")
    else:
        message = f"{what} (exit code {exit_code})" if what else f"exit code {exit_code}"
    return with_stderr(message, stderr_tail)
