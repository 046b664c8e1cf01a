"""Validation of user input (API bodies) into model fields; pure except for path checks."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.models import BackendName, Permissions, Priority, Project
from dobby.core.names import validate_globs
from dobby.core.timefmt import parse_duration

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
    "artifacts",
    "after",
    "draft",
    "agent_plan",
    "wait_for_host",
    "permissions",
    "gpus",
    "verify",
    "verify_timeout",
    "fix_attempts",
    "fallback_backends",
}
# Project policies: POST /projects (with name, path, context) and PATCH /projects/{name}.
POLICY_KEYS = (
    "default_backend",
    "default_timeout",
    "default_priority",
    "max_concurrent",
    "auto_chain",
    "auto_retry",
    "default_verify",
    "budget_usd",
    "fallback_backends",
)
MAX_VERIFY_BYTES = 65536
MAX_FIX_ATTEMPTS = 10
BUDGET_WINDOWS = ("day", "week", "month")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


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


def as_bool(value: Any, key: str) -> bool:
    """Return a JSON boolean, or a word like true/false/yes/no (from ``key=value`` text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValidationError(f"'{key}' must be true or false, got {value!r}")


def as_int(value: Any, key: str, *, minimum: int) -> int:
    """Return an integer (or integer text) of at least ``minimum``."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"'{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def as_seconds(value: Any, key: str) -> float:
    """Return positive seconds from a number or a duration text (``30m``)."""
    if isinstance(value, str):
        value = parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationError(f"'{key}' must be a positive number of seconds")
    return float(value)


def str_list(value: Any, key: str) -> list[str]:
    """Return a list of non-empty strings (a single string counts as a list of one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ValidationError(f"'{key}' must be a list of non-empty strings")
    return list(value)


def check_budget(value: Any, where: str) -> dict[str, float]:
    """Return spend caps ``{day|week|month: USD > 0}`` from a mapping or ``day:20,month:300``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValidationError(f"{where} is not valid JSON: {text[:60]!r}") from None
        else:
            pairs = [item.partition(":") for item in text.split(",") if item.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ValidationError(f"{where} must look like day:20,month:300, got {text!r}")
            value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict):
        raise ValidationError(f"{where} must map day/week/month to USD, got {value!r}"[:200])
    out: dict[str, float] = {}
    for window, amount in value.items():
        if window not in BUDGET_WINDOWS:
            raise ValidationError(
                f"{where}: unknown window {window!r} (use {', '.join(BUDGET_WINDOWS)})"
            )
        if isinstance(amount, str):
            try:
                amount = float(amount.strip().lstrip("$"))
            except ValueError:
                pass
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or amount <= 0
        ):
            raise ValidationError(
                f"{where}: {window} must be a positive number of USD, got {amount!r}"
            )
        out[window] = float(amount)
    return out


def backend_list(value: Any, key: str) -> list[str]:
    """Return a list of backend names (``codex,shell`` as text is accepted)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = str_list(value, key)
    choices = [b.value for b in BackendName]
    for name in names:
        _choice(name, key, choices)
    return list(dict.fromkeys(names))


def validate_submit(
    body: Any, *, default_timeout: float | None, default_backend: str | None = None
) -> dict[str, Any]:
    """Check a POST /tasks body and return Task constructor fields (plus a few intake keys).

    Intake keys, not Task fields: ``resume_task``, ``draft``, ``agent_plan``.
    """
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_KEYS)
    if unknown:
        hint = ""
        if {"cron", "every"} & set(unknown):
            hint = "; a recurring task is a schedule: POST /schedules"
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(SUBMIT_KEYS))}){hint}"
        )
    prompt = _str(body, "prompt", required=True) or ""
    if not prompt.strip():
        raise ValidationError("'prompt' must not be empty")
    if "\x00" in prompt:
        raise ValidationError("'prompt' must not contain NUL bytes")
    fields: dict[str, Any] = {"prompt": prompt}
    backend = _choice(_str(body, "backend"), "backend", [b.value for b in BackendName])
    fields["backend"] = backend or default_backend or BackendName.CLAUDE.value
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
    fields["host_selector"] = str_list(body.get("labels"), "labels")
    timeout = body.get("timeout")
    timeout = default_timeout if timeout is None else as_seconds(timeout, "timeout")
    if timeout is not None:
        fields["timeout"] = as_seconds(timeout, "timeout")
    resume = _str(body, "resume")
    if resume:
        fields["resume_task"] = resume
    if body.get("artifacts") is not None:
        fields["artifact_globs"] = validate_globs(body["artifacts"])
    fields["after"] = str_list(body.get("after"), "after")
    for key in ("draft", "agent_plan", "wait_for_host"):
        if body.get(key) is not None:
            fields[key] = as_bool(body[key], key)
    if body.get("gpus") is not None:
        fields["gpus"] = as_int(body["gpus"], "gpus", minimum=0)
    fields.update(validate_verify(body))
    if body.get("fallback_backends") is not None:
        fields["fallback_backends"] = backend_list(body["fallback_backends"], "fallback_backends")
    permissions = _str(body, "permissions")
    if permissions is not None:
        # A task may only restrict what its host allows: read-only planning mode.
        if permissions != Permissions.PLAN.value:
            raise ValidationError(
                f"invalid permissions '{permissions}': a task may only ask for 'plan' "
                "(read-only); anything more is set per host in the inventory"
            )
        fields["permissions"] = permissions
    return fields


def validate_verify(body: dict[str, Any]) -> dict[str, Any]:
    """Check a body's ``verify``, ``verify_timeout`` and ``fix_attempts`` (Task fields).

    ``verify: ""`` says "no check" even where the project has a ``default_verify``.
    """
    out: dict[str, Any] = {}
    command = _str(body, "verify")
    if command is not None:
        out["verify"] = check_verify_command(command) if command.strip() else ""
    if body.get("verify_timeout") is not None:
        try:
            out["verify_timeout"] = as_seconds(body["verify_timeout"], "verify_timeout")
        except ValidationError as exc:
            message = str(exc)
            raise ValidationError(
                message if "verify_timeout" in message else f"'verify_timeout': {message}"
            ) from None
    if body.get("fix_attempts") is not None:
        out["fix_attempts"] = as_int(body["fix_attempts"], "fix_attempts", minimum=0)
        if out["fix_attempts"] > MAX_FIX_ATTEMPTS:
            raise ValidationError(f"'fix_attempts' must be at most {MAX_FIX_ATTEMPTS}")
    return out


def check_verify_command(command: str) -> str:
    """Return a verify command if it can reach a host as a file; refuse NULs and huge ones."""
    if "\x00" in command:
        raise ValidationError("'verify' must not contain NUL bytes")
    if len(command.encode("utf-8", "surrogatepass")) > MAX_VERIFY_BYTES:
        raise ValidationError(
            f"'verify' is longer than {MAX_VERIFY_BYTES} bytes: put the check in a script "
            "in the project and run that"
        )
    return command


RACE_KEYS = ("k", "backends", "models", "hosts", "pick")
PICKS = ("first", "smallest", "cheapest")


def validate_race(body: Any, *, max_race: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a POST /races body into the race's own fields and the task body of its attempts.

    Race fields: ``k`` (1..max_race attempts), ``backends``, ``models``, ``hosts`` (each used
    round-robin; a host may be named once), ``pick`` (first, smallest or cheapest).
    """
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    task_body = {k: v for k, v in body.items() if k not in RACE_KEYS}
    for key in ("resume", "draft", "agent_plan"):
        if task_body.get(key):
            raise ValidationError(f"a race cannot be started with '{key}'")
    if body.get("k") is None:
        raise ValidationError("'k' is required: how many attempts the race starts")
    k = as_int(body["k"], "k", minimum=1)
    if k > max_race:
        raise ValidationError(f"'k' must be at most {max_race} (the hub's max_race), got {k}")
    backends = str_list(body.get("backends"), "backends")
    for name in backends:
        _choice(name, "backend", [b.value for b in BackendName])
    hosts = str_list(body.get("hosts"), "hosts")
    seen: set[str] = set()
    for host in hosts:
        if host in seen:
            raise ValidationError(f"duplicate host '{host}' in 'hosts': name each host once")
        seen.add(host)
    if hosts and task_body.get("host"):
        raise ValidationError("give 'host' or 'hosts', not both")
    pick = _choice(_str(body, "pick"), "pick", list(PICKS)) or "first"
    race = {
        "k": k,
        "backends": backends,
        "models": str_list(body.get("models"), "models"),
        "hosts": hosts,
        "pick": pick,
    }
    return race, task_body


def validate_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Check project policy fields (values may be text, as ``dobby projects set`` sends)."""
    out: dict[str, Any] = {}
    for key in POLICY_KEYS:
        if key not in body:
            continue
        value = body[key]
        if key == "budget_usd":
            out[key] = check_budget(value, "'budget_usd'") or None
        elif key == "fallback_backends":
            out[key] = [] if value is None else backend_list(value, key)
        elif value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            if key in ("max_concurrent", "auto_chain", "auto_retry"):
                raise ValidationError(f"'{key}' cannot be unset")
            out[key] = None
        elif key == "default_backend":
            out[key] = _choice(str(value), key, [b.value for b in BackendName])
        elif key == "default_priority":
            out[key] = _choice(str(value), key, [p.value for p in Priority])
        elif key == "default_timeout":
            out[key] = as_seconds(value, key)
        elif key == "default_verify":
            out[key] = check_verify_command(str(value))
        elif key == "max_concurrent":
            out[key] = as_int(value, key, minimum=1)
        elif key == "auto_retry":
            out[key] = as_int(value, key, minimum=0)
        else:
            out[key] = as_bool(value, key)
    return out


def validate_project(body: Any) -> Project:
    """Check a POST /projects body: a name, an existing git checkout, optional policies."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - {"name", "path", "context", *POLICY_KEYS})
    if unknown:
        raise ValidationError(
            f"unknown field(s) {', '.join(unknown)} "
            f"(allowed: name, path, context, {', '.join(POLICY_KEYS)})"
        )
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
    return Project(name=name, path=path, context=context, **validate_policy(body))


def validate_policy_patch(body: Any) -> dict[str, Any]:
    """Check a PATCH /projects/{name} body: policies and ``context`` only."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - {"context", *POLICY_KEYS})
    if unknown:
        raise ValidationError(
            f"cannot set {', '.join(unknown)} (settable: context, {', '.join(POLICY_KEYS)})"
        )
    out = validate_policy(body)
    if "context" in body:
        out["context"] = _str(body, "context") or ""
    return out
