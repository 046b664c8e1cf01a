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
from dobby.core.models import Task

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
    return [doc for _line, doc in read_import(data)]


def read_import(data: bytes) -> list[tuple[int, Any]]:
    """Return (line, document) of each task of a JSON export, the line where it starts."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the import is not UTF-8 text") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise ValidationError("the import is nested too deeply") from None
    except ValueError:
        return _json_lines(text)
    tasks = body.get("tasks") if isinstance(body, dict) else body
    if not isinstance(tasks, list):
        raise ValidationError(
            "the import must be a JSON array of tasks (a `dobby export --format json`)"
        )
    # The text parsed as a whole, so walking it again for positions cannot fail.
    return _Lines(text).top()


def _json_lines(text: str) -> list[tuple[int, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            raise ValidationError(
                f"the import is neither JSON nor JSON lines: line {number}: {exc}"
            ) from None
    return out


class _Lines:
    """Find where each task of a parsed JSON export starts: ``[t, …]`` or ``{"tasks": [t, …]}``."""

    _space = re.compile(r"[ \t\n\r]*")

    def __init__(self, text: str) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()
        self.line, self.seen = 1, 0

    def _skip(self, pos: int) -> int:
        match = self._space.match(self.text, pos)
        return match.end() if match else pos

    def _line_at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.seen, pos)
        self.seen = pos
        return self.line

    def top(self) -> list[tuple[int, Any]]:
        pos = self._skip(0)
        if self.text[pos] == "[":
            return self._array(pos)
        pos = self._skip(pos + 1)  # an object: find its "tasks" array
        while self.text[pos] != "}":
            key, pos = self.decoder.raw_decode(self.text, pos)
            pos = self._skip(self._skip(pos) + 1)  # the colon
            if key == "tasks":
                return self._array(pos)
            _, pos = self.decoder.raw_decode(self.text, pos)
            pos = self._skip(pos)
            pos = self._skip(pos + 1) if self.text[pos] == "," else pos
        return []

    def _array(self, pos: int) -> list[tuple[int, Any]]:
        out = []
        pos = self._skip(pos + 1)
        while self.text[pos] != "]":
            value, end = self.decoder.raw_decode(self.text, pos)
            out.append((self._line_at(pos), value))
            pos = self._skip(end)
            pos = self._skip(pos + 1) if self.text[pos] == "," else pos
        return out


def check_task(doc: Any, line: int) -> Task:
    """Return the task of one imported document, or raise ValidationError ``line N: …``."""
    # Here, not at the top: the record's models (10 ms to build) are needed by an import only,
    # and a restarting hub built them before its first connect.
    from dobby.core.records import check_record

    task_id = doc.get("id") if isinstance(doc, dict) else None
    where = f"line {line}" + (f": task {task_id}" if isinstance(task_id, str) else "")
    try:
        return check_record(doc)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None
