"""Read the state of a hub from before SQLite: TinyDB's ``dobby.json`` and ``archive/*.jsonl``.

The hub imports it once, on its first start with the SQLite store (see ``Store._migrate``).
Nothing is dropped silently: a corrupt file or a malformed task stops the start with the file
(and line) named; only a torn last line of an archive file (a crash mid-append) is skipped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dobby.core.errors import ConfigError
from dobby.core.models import Task

log = logging.getLogger(__name__)

TABLES = ("tasks", "projects", "hosts", "meta", "batches", "schedules")
ARCHIVE_GLOB = "tasks-*.jsonl"


@dataclass
class LegacyData:
    """Everything an old hub stored, and the files it came from (renamed once imported)."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    small: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _check_task(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise ConfigError(f"{where}: not a task document (no string 'id')")
    try:
        return Task.from_dict(doc).to_dict()  # the current shape, every field present
    except (TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{where}: task {doc.get('id')!r} is malformed: {e}") from None


def _read_json(path: Path) -> dict[str, dict[str, Any]]:
    raw = path.read_bytes()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path}:{e.lineno}:{e.colno}: corrupt database file: {e.msg} "
            f"(char {e.pos}); fix it or move it away (Dobby will not overwrite it)"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: corrupt database file: not UTF-8 at byte {e.start}; "
            "fix it or move it away (Dobby will not overwrite it)"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
        raise ConfigError(f"{path}: not a TinyDB database ({{table: {{id: document}}}})")
    return data


def _read_archive(path: Path, tasks: dict[str, dict[str, Any]]) -> None:
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            if number == len(lines):  # a torn last line from a crash mid-append
                log.warning("%s:%d: skipping a torn last line", path, number)
                continue
            raise ConfigError(f"{path}:{number}: not a JSON task line") from None
        task = _check_task(doc, f"{path}:{number}")
        tasks[task["id"]] = task  # a task archived twice: its last line wins


def read_legacy(path: Path, archive_dir: Path | None) -> LegacyData:
    """Return the tasks and small tables of an old hub (hot tasks win over archived ones)."""
    data = _read_json(path)
    tasks: dict[str, dict[str, Any]] = {}
    out = LegacyData(files=[path])
    archive = archive_dir if archive_dir is not None else path.parent / "archive"
    if archive.is_dir():
        for file in sorted(archive.glob(ARCHIVE_GLOB)):  # month order
            _read_archive(file, tasks)
        out.files.append(archive)
    for key, doc in data.get("tasks", {}).items():
        task = _check_task(doc, f"{path}: task {key!r}")
        tasks[task["id"]] = task
    out.tasks = list(tasks.values())
    out.small = {name: dict(data.get(name, {})) for name in TABLES if name != "tasks"}
    return out
