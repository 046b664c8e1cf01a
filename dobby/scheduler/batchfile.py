"""Pure parsing of a batch file (YAML) into task bodies that remember their file and line.

::

    name: nightly                # optional
    defaults:                    # optional: any task key but name, prompt, title, after
      project: app
      backend: claude
      timeout: 30m
    tasks:
      - name: tests              # optional; other tasks refer to it in `after`
        prompt: write tests for the auth module
        labels: [cpu]
      - prompt: document what the tests cover
        after: [tests]           # batch task names, or ids of existing tasks

Every error names ``file:line`` and the key, e.g. ``jobs.yaml:7: unknown key 'promt' in
task 2 (did you mean 'prompt'?)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from dobby.core.errors import ValidationError

TASK_KEYS = (
    "name",
    "prompt",
    "title",
    "project",
    "backend",
    "model",
    "priority",
    "host",
    "labels",
    "timeout",
    "after",
    "wait_for_host",
    "draft",
    "artifacts",
    "gpus",
    "verify",
    "verify_timeout",
    "fix_attempts",
)
DEFAULT_KEYS = tuple(k for k in TASK_KEYS if k not in ("name", "prompt", "title", "after"))
TOP_KEYS = ("name", "defaults", "tasks")
MAX_TASKS = 10000


@dataclass
class Entry:
    """One task of the file: its API body, its batch name, and where each key is."""

    name: str
    body: dict[str, Any]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int:
        """Return the line of ``key`` in this task (or of the task itself)."""
        return self.key_lines.get(key, self.line)


@dataclass
class BatchSpec:
    """A parsed batch file."""

    name: str
    file: str
    entries: list[Entry]


def _error(file: str, line: int, message: str) -> ValidationError:
    return ValidationError(f"{file}:{line}: {message}")


def _unknown(key: str, allowed: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown key '{key}' {where}{hint}"


def _mapping(
    node: yaml.Node, file: str, what: str, allowed: tuple[str, ...], loader: yaml.SafeLoader
) -> tuple[dict[str, Any], dict[str, int]]:
    """Return a mapping node's values and each key's line, refusing unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        raise _error(file, node.start_mark.line + 1, f"{what} must be a mapping of keys")
    loader.flatten_mapping(node)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key, line = str(key_node.value), key_node.start_mark.line + 1
        if key not in allowed:
            raise _error(file, line, _unknown(key, allowed, f"in {what}"))
        if key in values:
            raise _error(file, line, f"key '{key}' given twice in {what}")
        try:
            values[key] = loader.construct_object(value_node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise _error(file, line, f"invalid YAML: {exc.problem}") from None
        lines[key] = line
    return values, lines


def parse_batch(text: str, file: str = "<batch>") -> BatchSpec:
    """Parse a batch file; raise ValidationError ``file:line: message`` on the first problem."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _error(file, mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{file}: invalid YAML: {exc}") from None
    try:
        if root is None:
            raise ValidationError(f"{file}: empty batch file (expected a 'tasks:' list)")
        top, top_lines = _mapping(root, file, "the batch file", TOP_KEYS, loader)
        name = top.get("name") or ""
        if not isinstance(name, str):
            raise _error(file, top_lines["name"], "'name' must be a string")
        defaults: dict[str, Any] = {}
        default_lines: dict[str, int] = {}
        if "defaults" in top:
            node = _child(root, "defaults")
            assert node is not None
            defaults, default_lines = _mapping(node, file, "defaults", DEFAULT_KEYS, loader)
        tasks_node = _child(root, "tasks")
        if tasks_node is None:
            raise _error(file, root.start_mark.line + 1, "missing 'tasks:' (a list of tasks)")
        if not isinstance(tasks_node, yaml.SequenceNode) or not tasks_node.value:
            raise _error(file, tasks_node.start_mark.line + 1, "'tasks' must be a non-empty list")
        if len(tasks_node.value) > MAX_TASKS:
            raise _error(file, tasks_node.start_mark.line + 1, f"more than {MAX_TASKS} tasks")
        entries = [
            _entry(node, i, file, (defaults, default_lines), loader)
            for i, node in enumerate(tasks_node.value, 1)
        ]
    finally:
        loader.dispose()
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.name in seen:
            raise _error(
                file,
                entry.line_of("name"),
                f"task name '{entry.name}' already used on line {seen[entry.name]}",
            )
        seen[entry.name] = entry.line_of("name")
    return BatchSpec(name=name, file=file, entries=entries)


def _child(root: yaml.Node, key: str) -> yaml.Node | None:
    for key_node, value_node in root.value:
        if key_node.value == key:
            return value_node  # type: ignore[no-any-return]
    return None


def _entry(
    node: yaml.Node,
    index: int,
    file: str,
    defaults: tuple[dict[str, Any], dict[str, int]],
    loader: yaml.SafeLoader,
) -> Entry:
    values, lines = _mapping(node, file, f"task {index}", TASK_KEYS, loader)
    line = node.start_mark.line + 1
    if "prompt" not in values:
        raise _error(file, line, f"task {index} has no 'prompt'")
    name = values.pop("name", None)
    if name is None:
        name = f"task-{index}"
    elif not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
        raise _error(file, lines["name"], f"'name' of task {index} must be a non-empty string")
    body = {**defaults[0], **values}
    # A bad value inherited from `defaults` is reported on the defaults line.
    return Entry(name=str(name), body=body, line=line, key_lines={**defaults[1], **lines})


def key_in_message(message: str, keys: list[str]) -> str | None:
    """Return the first of ``keys`` a validation message talks about, if any."""
    for key in keys:
        if f"'{key}'" in message or f" {key} " in message or message.startswith(f"invalid {key}"):
            return key
    return None
