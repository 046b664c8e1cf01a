"""What a finished task's reader must not miss, as short lines: the same words in the CLI's
``show``, Slack replies and MCP answers (pure, over a task's JSON)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DENIALS_SHOWN = 5


def denials_text(denials: Iterable[Mapping[str, Any]]) -> str:
    """Return ``Write hello.txt, Bash rm -rf build`` (the first few, then ``… +N``)."""
    items = list(denials)
    shown = ", ".join(
        f"{d.get('tool') or '?'} {d.get('target') or ''}".strip() for d in items[:DENIALS_SHOWN]
    )
    more = len(items) - DENIALS_SHOWN
    return shown + (f" … +{more}" if more > 0 else "")


def task_notes(task: Mapping[str, Any]) -> list[str]:
    """Return the task's warnings, then its API error status and denied actions, one line each."""
    notes = [str(w) for w in task.get("warnings") or []]
    if task.get("api_error_status") is not None:
        notes.append(f"API error status {task['api_error_status']}")
    denials = task.get("permission_denials") or []
    if denials:
        notes.append(f"denied: {denials_text(denials)}")
    return notes
