"""The file of projects ``dobby init`` recorded while no hub ran (the hub registers them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dobby.core.files import atomic_write

PENDING_FILE = "pending-projects.yaml"


def pending_path(home: Path) -> Path:
    """Return the file of projects waiting for the hub in state directory ``home``."""
    return Path(home) / PENDING_FILE


def read_pending(home: Path) -> list[dict[str, Any]]:
    """Return the recorded projects (``[]`` when there is no file or it is unreadable)."""
    path = pending_path(home)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    items = data.get("projects") if isinstance(data, dict) else None
    return [p for p in items or [] if isinstance(p, dict) and p.get("name") and p.get("path")]


def record_pending(home: Path, *, name: str, path: str, context: str = "") -> Path:
    """Add (or replace, by name) a project to register when the hub starts; return the file."""
    items = [p for p in read_pending(home) if p.get("name") != name]
    items.append({"name": name, "path": path, "context": context})
    target = pending_path(home)
    atomic_write(target, yaml.safe_dump({"projects": items}, sort_keys=False), mode=0o644)
    return target


def clear_pending(home: Path) -> None:
    """Drop the file once the hub has registered what it held."""
    pending_path(home).unlink(missing_ok=True)
