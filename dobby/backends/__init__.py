"""The agent backends (claude, codex, shell): argv, env, line rendering and result, no I/O."""

from __future__ import annotations

from dobby.core.errors import ValidationError
from dobby.hostside.scripts import PROMPT

from .base import Backend, LogEvent
from .claude import ClaudeBackend
from .codex import CodexBackend
from .shell import ShellBackend

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (ClaudeBackend(), CodexBackend(), ShellBackend())
}


def get_backend(name: str) -> Backend:
    """Return the backend called ``name``."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        choices = ", ".join(BACKENDS)
        raise ValidationError(f"unknown backend {name!r} (choose {choices})") from None


__all__ = [
    "BACKENDS",
    "PROMPT",
    "Backend",
    "ClaudeBackend",
    "CodexBackend",
    "LogEvent",
    "ShellBackend",
    "get_backend",
]
