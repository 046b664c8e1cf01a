"""Shell: the prompt is a command line the user gave, run with ``bash -c``.

The command travels as one argument (``bash -c "$DOBBY_PROMPT"``), and Linux caps one
argument at MAX_ARG_STRLEN = 32 pages = 131072 bytes including its NUL: a longer command
fails with exit 126 "Argument list too long". :data:`MAX_COMMAND_BYTES` is that limit; the API
refuses a longer shell prompt at submit (:func:`check_command`), and argv refuses it at launch.
Agent backends have no such limit: their prompt goes on stdin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dobby.backends.pricing import ModelPrice
from dobby.core.errors import ValidationError
from dobby.core.models import Host, Permissions, Reason, Result, Task, TaskStatus, Tokens
from dobby.hostside.scripts import PROMPT, TaskPaths

from .base import LINE_LIMIT, LogEvent, clean, exit_error

SUMMARY_LINES = 10
SUMMARY_LIMIT = 2000
MAX_COMMAND_BYTES = 131_071  # Linux MAX_ARG_STRLEN (131072) less the terminating NUL


def check_command(prompt: str) -> None:
    """Refuse a shell command longer than one argument may be (UTF-8 bytes)."""
    size = len(prompt.encode("utf-8", "surrogateescape"))
    if size > MAX_COMMAND_BYTES:
        raise ValidationError(
            f"shell command is {size} bytes; the most one argument may hold is "
            f"{MAX_COMMAND_BYTES} (put a long script in a file in the project and run that)"
        )


class ShellBackend:
    """Run the user's command line; its output is plain text."""

    name = "shell"
    limits: tuple[str, ...] = ()

    def argv(self, *, task: Task, host: Host, is_root: bool) -> list[str]:
        """Return ``bash -c PROMPT``: the prompt is the command line itself."""
        check_command(task.prompt)
        return ["bash", "-c", PROMPT]

    def facts_command(self, *, paths: TaskPaths) -> str | None:
        """Return None: a shell command's output is all there is."""
        return None

    def interactive_argv(
        self, *, permissions: Permissions, model: str | None, prompt: bool
    ) -> list[str]:
        """Return ``bash``: an interactive shell session has no prompt and no permissions."""
        return ["bash"]

    def env(self, *, task: Task, host: Host, is_root: bool) -> dict[str, str]:
        """Return no extra environment."""
        return {}

    def usage_tokens(self, usage: Mapping[str, Any]) -> Tokens:
        """Return no tokens: a shell command uses no model."""
        return Tokens()

    def command_text(self, command: str) -> str:
        """Return the command as is."""
        return command

    def render(self, line: str) -> list[LogEvent]:
        """Show each non-blank output line as it is."""
        text = clean(line).rstrip()  # keep the indentation: tables, tracebacks
        if len(text) > LINE_LIMIT * 4:
            text = text[: LINE_LIMIT * 4 - 1] + "…"
        return [LogEvent("line", text)] if text.strip() else []

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
        """Succeed on exit 0; the summary is the last lines of output."""
        tail: list[str] = []
        for line in lines:
            text = clean(line).rstrip()
            if text.strip():
                tail = [*tail[-(SUMMARY_LINES - 1) :], text]
        summary = "\n".join(tail)
        if len(summary) > SUMMARY_LIMIT:
            summary = "…" + summary[-(SUMMARY_LIMIT - 1) :]
        if exit_code == 0:
            return Result(status=TaskStatus.COMPLETED, summary=summary, exit_code=0)
        error = exit_error(exit_code, stderr_tail)
        return Result(
            status=TaskStatus.FAILED,
            reason=Reason.EXIT_CODE,
            summary=summary or error,
            error=error,
            exit_code=exit_code,
        )
