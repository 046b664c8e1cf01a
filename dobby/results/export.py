"""Export tasks as CSV or JSON, streamed one task at a time, and read a JSON export back.

CSV has a fixed column order (:data:`COLUMNS`; fields added to the model later follow at the
end); nested values (tokens, lists, dicts) are flattened or JSON-encoded in one cell. The JSON
export is an array with one task object per line: valid JSON for any reader, and a stream.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.models import Task, TaskStatus

FORMATS = ("csv", "json")
# Stable order: never reorder, only append.
COLUMNS = (
    "id", "title", "prompt", "project", "backend", "model", "priority", "status", "reason",
    "error", "summary", "exit_code", "host", "host_selector", "want_host", "attempt", "timeout",
    "created_at", "started_at", "finished_at", "cost_usd", "tokens_input", "tokens_output",
    "tokens_cache_read", "tokens_cache_write", "models", "turns", "session_id", "resume",
    "branch", "base_commit", "head_commit", "diff_stat", "artifact_globs", "artifacts",
    "collect_error", "merged_at", "merge_commit", "waiting_on", "after", "cron", "every",
    "batch_id", "host_cleaned_at",
)  # fmt: skip
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def columns() -> list[str]:
    """Return the CSV columns: the fixed ones, then any newer task field."""
    known = set(COLUMNS) | {"tokens"}
    extra = [f.name for f in dataclasses.fields(Task) if f.name not in known]
    return [*COLUMNS, *extra]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return value


def csv_row(doc: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Return one task document as CSV cells."""
    tokens = doc.get("tokens") or {}
    flat = {
        **doc,
        **{
            f"tokens_{k}": tokens.get(k, 0)
            for k in ("input", "output", "cache_read", "cache_write")
        },
    }
    return {name: _cell(flat.get(name)) for name in names}


def csv_chunks(docs: Iterable[dict[str, Any]], *, batch: int = 200) -> Iterator[str]:
    """Yield a CSV export (header first) in chunks of ``batch`` rows."""
    names = columns()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\r\n")
    writer.writeheader()
    rows = 0
    for doc in docs:
        writer.writerow(csv_row(doc, names))
        rows += 1
        if rows % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(docs: Iterable[dict[str, Any]], *, batch: int = 200) -> Iterator[str]:
    """Yield a JSON array of task documents, one per line, in chunks of ``batch`` tasks."""
    parts = ["[\n"]
    first = True
    for n, doc in enumerate(docs, 1):
        parts.append(("" if first else ",\n") + json.dumps(doc, ensure_ascii=False))
        first = False
        if n % batch == 0:
            yield "".join(parts)
            parts = []
    parts.append("\n]\n")
    yield "".join(parts)


def parse_import(data: bytes) -> list[dict[str, Any]]:
    """Read task documents from a JSON export (an array, ``{"tasks": [...]}`` or JSON lines)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the import is not UTF-8 text") from None
    try:
        body = json.loads(text)
    except ValueError:
        try:
            body = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ValidationError(f"the import is neither JSON nor JSON lines: {exc}") from None
    if isinstance(body, dict):
        body = body.get("tasks")
    if not isinstance(body, list):
        raise ValidationError(
            "the import must be a JSON array of tasks (a `dobby export --format json`)"
        )
    return body


def check_task(doc: Any, index: int) -> Task:
    """Return the task of one imported document, or raise ValidationError naming it."""
    where = f"task #{index + 1}"
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}: not a JSON object")
    task_id = doc.get("id")
    if not isinstance(task_id, str) or not _ID.match(task_id):
        raise ValidationError(f"{where}: invalid id {task_id!r}")
    if not isinstance(doc.get("prompt"), str):
        raise ValidationError(f"{where} ({task_id}): 'prompt' must be a string")
    if doc.get("status") not in {s.value for s in TaskStatus}:
        raise ValidationError(f"{where} ({task_id}): unknown status {doc.get('status')!r}")
    try:
        return Task.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{where} ({task_id}): {exc}") from None
