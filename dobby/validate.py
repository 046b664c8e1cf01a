"""Validation of user input (API bodies) into model fields; pure except for path checks."""

from __future__ import annotations

import os
import re
from typing import Any

from dobby.errors import ValidationError
from dobby.models import BackendName, Priority, Project
from dobby.timefmt import parse_duration

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SUBMIT_KEYS = {
    "prompt",
    "project",
    "backend",
    "model",
    "priority",
    "host",
    "labels",
    "timeout",
    "title",
    "resume",
}


def _str(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{key}' must be a string, not {type(value).__name__}")
    return value


def _choice(value: str | None, key: str, choices: list[str]) -> str | None:
    if value is not None and value not in choices:
        raise ValidationError(f"invalid {key} '{value}' (choose {', '.join(choices)})")
    return value


def validate_submit(body: Any, *, default_timeout: float | None) -> dict[str, Any]:
    """Check a POST /tasks body and return Task constructor fields."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_KEYS)
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(SUBMIT_KEYS))})"
        )
    prompt = _str(body, "prompt", required=True) or ""
    if not prompt.strip():
        raise ValidationError("'prompt' must not be empty")
    if "\x00" in prompt:
        raise ValidationError("'prompt' must not contain NUL bytes")
    fields: dict[str, Any] = {"prompt": prompt}
    backend = _choice(_str(body, "backend"), "backend", [b.value for b in BackendName])
    fields["backend"] = backend or BackendName.CLAUDE.value
    priority = _choice(_str(body, "priority"), "priority", [p.value for p in Priority])
    if priority:
        fields["priority"] = priority
    for key in ("model", "title"):
        value = _str(body, key)
        if value:
            fields[key] = value
    project = _str(body, "project")
    if project:
        fields["project"] = project
    host = _str(body, "host")
    if host:
        fields["want_host"] = host
    labels = body.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise ValidationError("'labels' must be a list of non-empty strings")
    fields["host_selector"] = labels
    timeout = body.get("timeout")
    if timeout is None:
        timeout = default_timeout
    elif isinstance(timeout, str):
        timeout = parse_duration(timeout)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValidationError("'timeout' must be a positive number of seconds")
        fields["timeout"] = float(timeout)
    resume = _str(body, "resume")
    if resume:
        fields["resume_task"] = resume
    return fields


def validate_project(body: Any) -> Project:
    """Check a POST /projects body: a name and an existing git checkout."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    name = _str(body, "name", required=True) or ""
    if not NAME_RE.match(name):
        raise ValidationError(
            f"invalid project name '{name}' (letters, digits, . _ -; starts with a letter or digit)"
        )
    path = _str(body, "path", required=True) or ""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise ValidationError(f"project path {path} is not a directory")
    if not os.path.exists(os.path.join(path, ".git")):
        raise ValidationError(
            f"project path {path} is not a git repository (run `git init` and commit first)"
        )
    context = _str(body, "context") or ""
    return Project(name=name, path=path, context=context)
