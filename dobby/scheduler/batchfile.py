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
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import yaml

from dobby.core.errors import ValidationError
from dobby.core.fields import Shape, error_message
from dobby.core.shapes import BATCH_DEFAULT_KEYS, BATCH_TASK_KEYS, BatchDefaults, BatchTask
from dobby.core.yamlerrors import LOADER, yaml_problem

TASK_KEYS = BATCH_TASK_KEYS  # declared once, by the shapes in dobby/core/shapes.py
DEFAULT_KEYS = BATCH_DEFAULT_KEYS
TOP_KEYS = ("name", "defaults", "tasks")
MAX_TASKS = 10000


Where = int | str  # a line of a batch file, or the path of a key in a JSON body


@dataclass
class Entry:
    """One task of the file: its API body, its batch name, and where each key is."""

    name: str
    body: dict[str, Any]
    line: Where
    key_lines: dict[str, Where] = field(default_factory=dict)

    def line_of(self, key: str) -> Where:
        """Return where ``key`` is in this task: its line (or the task's), or its JSON path."""
        return self.key_lines.get(key, self.line)


@dataclass
class BatchSpec:
    """A parsed batch file."""

    name: str
    file: str
    entries: list[Entry]


@dataclass
class _Block:
    """A mapping of the batch (the top, ``defaults``, one task): values and where each key is."""

    values: dict[str, Any]
    where: dict[str, Where]
    at: Where  # the mapping itself


def _error(file: str, where: Where, message: str) -> ValidationError:
    return ValidationError(f"{file}:{where}: {message}")


def _unknown(key: str, allowed: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown key '{key}' {where}{hint}"


def parse_batch(text: str, file: str = "<batch>") -> BatchSpec:
    """Parse a batch file; raise ValidationError ``file:line: message`` on the first problem."""
    try:
        return _parse_batch(text, file)
    except RecursionError:  # e.g. [[[[…]]]]: PyYAML composes and builds recursively
        raise ValidationError(f"{file}: invalid YAML: nested too deeply") from None


def batch_of_json(body: dict[str, Any], file: str = "<request>") -> BatchSpec:
    """Check a batch given as JSON (``POST /batches``) with the batch file's rules.

    An error names the key's path (``<request>:tasks[2].timeout: …``): a JSON body has no
    lines. The values are taken as they are, not dumped to YAML and read again (that cost a
    third of a 1,000-task batch's answer).
    """
    top = _json_block(body, "", "the batch", TOP_KEYS, file)
    read_defaults = None
    if "defaults" in top.values:
        read_defaults = functools.partial(
            _json_block, body["defaults"], "defaults", "defaults", DEFAULT_KEYS, file
        )
    tasks = None
    if "tasks" in top.values:
        tasks = body["tasks"] if isinstance(body["tasks"], list) else []

    def block_of(value: Any, index: int) -> _Block:
        return _json_block(value, f"tasks[{index - 1}]", f"task {index}", TASK_KEYS, file)

    missing = "missing 'tasks' (a list of tasks)"
    return _batch(file, top, read_defaults, tasks, "tasks", missing, block_of)


def _json_block(value: Any, path: str, what: str, allowed: tuple[str, ...], file: str) -> _Block:
    if not isinstance(value, dict):
        raise _error(file, path or "<top>", f"{what} must be a mapping of keys")
    where: dict[str, Where] = {}
    for key in value:
        if key not in allowed:
            raise _error(file, path or key, _unknown(key, allowed, f"in {what}"))
        where[key] = f"{path}.{key}" if path else key
    return _Block(value, where, path or "<top>")


def _parse_batch(text: str, file: str) -> BatchSpec:
    try:
        loader = LOADER(text)  # checks the characters: may raise already
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        line, message = yaml_problem(exc, text)
        raise _error(file, line or 1, message) from None
    try:
        if root is None:
            raise ValidationError(f"{file}: empty batch file (expected a 'tasks:' list)")
        top = _mapping(root, file, "the batch file", TOP_KEYS, loader)
        read_defaults = None
        if (node := _child(root, "defaults")) is not None:
            read_defaults = functools.partial(
                _mapping, node, file, "defaults", DEFAULT_KEYS, loader
            )
        tasks, tasks_at = None, root.start_mark.line + 1
        if (node := _child(root, "tasks")) is not None:
            tasks_at = node.start_mark.line + 1
            tasks = node.value if isinstance(node, yaml.SequenceNode) else []

        def block_of(node: yaml.Node, index: int) -> _Block:
            return _mapping(node, file, f"task {index}", TASK_KEYS, loader)

        missing = "missing 'tasks:' (a list of tasks)"
        return _batch(file, top, read_defaults, tasks, tasks_at, missing, block_of)
    finally:
        loader.dispose()


def _batch(
    file: str,
    top: _Block,
    read_defaults: Callable[[], _Block] | None,
    tasks: list[Any] | None,
    tasks_at: Where,
    missing: str,
    block_of: Callable[[Any, int], _Block],
) -> BatchSpec:
    """Check a batch read from a file or a JSON body, in one order, with the same rules.

    ``read_defaults`` reads the ``defaults`` mapping (None: there is none); ``tasks`` is the
    list of tasks (None: the key is missing; empty: not a list), where ``tasks_at`` says.
    ``block_of(task, index)`` reads one task (index from 1).
    """
    name = top.values.get("name") or ""
    if not isinstance(name, str):
        raise _error(file, top.where["name"], "'name' must be a string")
    defaults = _Block({}, {}, top.at)
    if read_defaults is not None:
        defaults = read_defaults()
        _check(BatchDefaults, defaults, file)
    if tasks is None:
        raise _error(file, tasks_at, missing)
    if not tasks:
        raise _error(file, tasks_at, "'tasks' must be a non-empty list")
    if len(tasks) > MAX_TASKS:
        raise _error(file, tasks_at, f"more than {MAX_TASKS} tasks")
    entries = [_entry(block_of(task, i), i, file, defaults) for i, task in enumerate(tasks, 1)]
    seen: dict[str, Where] = {}
    for entry in entries:
        if entry.name in seen:
            raise _error(
                file,
                entry.line_of("name"),
                f"task name '{entry.name}' already used on {_on(seen[entry.name])}",
            )
        seen[entry.name] = entry.line_of("name")
    return BatchSpec(name=name, file=file, entries=entries)


def _on(where: Where) -> str:
    return f"line {where}" if isinstance(where, int) else str(where)


def _child(root: yaml.Node, key: str) -> yaml.Node | None:
    for key_node, value_node in root.value:
        if key_node.value == key:
            return value_node  # type: ignore[no-any-return]
    return None


def _mapping(
    node: yaml.Node, file: str, what: str, allowed: tuple[str, ...], loader: Any
) -> _Block:
    """Return a mapping node's values and each key's line, refusing unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        raise _error(file, node.start_mark.line + 1, f"{what} must be a mapping of keys")
    loader.flatten_mapping(node)
    values: dict[str, Any] = {}
    lines: dict[str, Where] = {}
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
    return _Block(values, lines, node.start_mark.line + 1)


def _entry(block: _Block, index: int, file: str, defaults: _Block) -> Entry:
    values = block.values
    if "prompt" not in values:
        raise _error(file, block.at, f"task {index} has no 'prompt'")
    name = values.get("name")
    if name is None:
        name = f"task-{index}"
    elif not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
        raise _error(
            file, block.where["name"], f"'name' of task {index} must be a non-empty string"
        )
    _check(BatchTask, block, file)
    body = {k: v for k, v in values.items() if k != "name"}
    body = {**defaults.values, **body}
    # A bad value inherited from `defaults` is reported on the defaults line.
    return Entry(
        name=str(name), body=body, line=block.at, key_lines={**defaults.where, **block.where}
    )


def _check(shape: type[Shape], block: _Block, file: str) -> None:
    """Check values with their shape; an error names the line of the key it is about."""
    try:
        shape.model_validate(block.values)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        raise _error(file, block.where.get(key, block.at), error_message(error)) from None


def key_in_message(message: str, keys: list[str]) -> str | None:
    """Return the first of ``keys`` a validation message talks about, if any."""
    for key in keys:
        if f"'{key}'" in message or f" {key} " in message or message.startswith(f"invalid {key}"):
            return key
    return None
