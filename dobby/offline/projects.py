"""``dobby init`` with no hub running: record the project for the hub to register at start."""

from __future__ import annotations

from pathlib import Path

from dobby.store.pending import record_pending


def record_pending_project(home: Path, *, name: str, path: str) -> Path:
    """Record project ``name`` at ``path`` in hub home ``home``; return the file written."""
    return record_pending(home, name=name, path=path)
