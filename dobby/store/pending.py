"""Projects ``dobby init`` recorded while no hub ran; the hub registers them when it starts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dobby.core.errors import DobbyError, NotFound

if TYPE_CHECKING:
    from dobby.hub.core import Dobby

log = logging.getLogger("dobby.hub")

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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(yaml.safe_dump({"projects": items}, sort_keys=False), encoding="utf-8")
    os.replace(tmp, target)
    return target


def register_pending_projects(dobby: Dobby) -> None:
    """Register every recorded project not known yet, then drop the file."""
    home = Path(dobby.settings.home)
    items = read_pending(home)
    if not items:
        return
    for item in items:
        try:
            dobby.store.get_project(str(item["name"]))
            continue  # registered meanwhile (by hand): the hub's copy wins
        except NotFound:
            pass
        try:
            dobby.register_project(
                {"name": item["name"], "path": item["path"], "context": item.get("context") or ""}
            )
            log.info(
                "registered project %s (%s) recorded by `dobby init`", item["name"], item["path"]
            )
        except DobbyError as exc:
            log.warning(
                "cannot register project %s recorded by `dobby init`: %s", item["name"], exc
            )
    pending_path(home).unlink(missing_ok=True)
