"""What the API accepts, declared once: pydantic models of every request body.

Each model checks its fields with the same one-line messages users see today ("'timeout' must
be a positive number of seconds …", "invalid priority 'asap' (choose …)"), and the hub's
OpenAPI document is generated from the same models. :func:`parse` turns a body into a model
or raises :class:`~dobby.core.errors.ValidationError` naming the field; batch files, settings
and inventory map the same errors to ``file:line``.

Numbers are finite and bounded (``NaN``, ``Infinity`` and huge values are refused with the
bound), strings must be valid Unicode text (no lone surrogates such as ``"\\udfff"``), and a
prompt is at most :data:`MAX_PROMPT_BYTES`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from dobby.core.errors import ValidationError
from dobby.core.models import BackendName, Permissions, Priority, Project
from dobby.core.names import NAME_RE, validate_globs
from dobby.core.timefmt import parse_duration

MAX_PROMPT_BYTES = 10 << 20  # 10 MiB: larger inputs belong in a file of the project
DAY = 86400.0
MAX_TIMEOUT = 30 * DAY  # a task's timeout, and a project's default_timeout
MAX_AUTO_RETRY = 10  # automatic re-queues of a task lost with its host
MAX_CONCURRENT = 1000  # a project's max_concurrent
MAX_GPUS = 64  # GPUs one task may ask for
MAX_OLDER_THAN = 3650 * DAY  # POST /gc older_than
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

S = TypeVar("S", bound="Shape")


# -- text ----------------------------------------------------------------------------------------


def text_problem(value: Any, where: str = "") -> str | None:
    """Return why ``value`` (or a string inside it) is not valid Unicode text, or None.

    JSON and YAML can spell lone surrogates (``"\\udfff"``); Python keeps them in ``str``, and
    they fail later when the text is encoded as UTF-8 (an answer, a log line, a file).
    """
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            name = f"'{where}'" if where else "a string"
            bad = value[exc.start]
            return (
                f"{name} is not valid UTF-8 text "
                f"(lone surrogate \\u{ord(bad):04x} at character {exc.start})"
            )
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key, where) or text_problem(item, _join(where, key))
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = text_problem(item, _join(where, index))
            if problem:
                return problem
    return None


def check_text(value: Any, where: str = "") -> None:
    """Raise ValidationError if ``value`` holds a string that is not valid Unicode text."""
    problem = text_problem(value, where)
    if problem:
        raise ValidationError(problem)


def _join(where: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


# -- field checks (each raises ValidationError, a ValueError, so pydantic reports it) ----------


def _name(info: ValidationInfo) -> str:
    return info.field_name or "value"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_bool(value: Any, key: str) -> bool:
    """Return a JSON boolean, or a word like true/false/yes/no (from ``key=value`` text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValidationError(f"'{key}' must be true or false, got {_show(value)}")


def as_int(value: Any, key: str, *, minimum: int, maximum: int) -> int:
    """Return an integer (or integer text) from ``minimum`` to ``maximum``."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(
            f"'{key}' must be an integer >= {minimum} and <= {maximum}, got {_show(value)}"
        )
    return value


def as_seconds(value: Any, key: str, *, maximum: float = MAX_TIMEOUT) -> float:
    """Return positive, finite seconds up to ``maximum`` from a number or text (``30m``)."""
    if isinstance(value, str):
        value = parse_duration(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise ValidationError(
            f"'{key}' must be a positive number of seconds up to {maximum:.0f} "
            f"({_days(maximum)}), got {_show(value)}"
        )
    return float(value)


def _days(seconds: float) -> str:
    return f"{seconds / DAY:g}d"


def str_list(value: Any, key: str) -> list[str]:
    """Return a list of non-empty strings (a single string counts as a list of one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ValidationError(f"'{key}' must be a list of non-empty strings")
    return list(value)


def _text(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"'{_name(info)}' must be a string, not {type(value).__name__}")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[Any, ValidationInfo], Any]:
    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        _text(value, info)
        if value not in choices:
            raise ValidationError(f"invalid {_name(info)} '{value}' (choose {', '.join(choices)})")
        return value

    return check


def _bool(value: Any, info: ValidationInfo) -> Any:
    return None if value is None else as_bool(value, _name(info))


def _ints(minimum: int, maximum: int) -> Callable[[Any, ValidationInfo], Any]:
    def check(value: Any, info: ValidationInfo) -> Any:
        return None if value is None else as_int(value, _name(info), minimum=minimum,
                                                 maximum=maximum)  # fmt: skip

    return check


def _seconds(maximum: float) -> Callable[[Any, ValidationInfo], Any]:
    def check(value: Any, info: ValidationInfo) -> Any:
        return None if value is None else as_seconds(value, _name(info), maximum=maximum)

    return check


def _list(value: Any, info: ValidationInfo) -> Any:
    return str_list(value, _name(info))


def _prompt(value: Any, info: ValidationInfo) -> Any:
    _text(value, info)
    if value is None:
        return None
    if not value.strip():
        raise ValidationError(f"'{_name(info)}' must not be empty")
    if "\x00" in value:
        raise ValidationError(f"'{_name(info)}' must not contain NUL bytes")
    check_prompt_size(value, _name(info))
    return value


def check_prompt_size(prompt: str, key: str = "prompt") -> None:
    """Refuse a prompt larger than :data:`MAX_PROMPT_BYTES` (UTF-8) with its size."""
    # Four bytes per character at most: only long prompts pay for the exact count.
    if len(prompt) * 4 <= MAX_PROMPT_BYTES:
        return
    size = len(prompt.encode("utf-8", "surrogatepass"))
    if size > MAX_PROMPT_BYTES:
        raise ValidationError(
            f"'{key}' is {size / (1 << 20):.1f} MiB; the limit is {MAX_PROMPT_BYTES >> 20} MiB "
            f"({MAX_PROMPT_BYTES} bytes): put large inputs in a file of the project and "
            "refer to it"
        )


def _refs(value: Any, info: ValidationInfo) -> Any:
    # A batch task's name may be a number (`name: 1`), so ``after`` may refer to one.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, list):
        value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return str_list(value, _name(info))


def _globs(value: Any, info: ValidationInfo) -> Any:
    return validate_globs(value)


def _policy(check: Callable[[Any, ValidationInfo], Any], *, unset: bool):
    """Wrap a policy check: text ``none`` or empty means unset (when ``unset`` allows it)."""

    def run(value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            if not unset:
                raise ValidationError(f"'{_name(info)}' cannot be unset")
            return None
        return check(value if not isinstance(value, str) else value.strip(), info)

    return run


def _before(check: Callable[[Any, ValidationInfo], Any], accepts: Any) -> BeforeValidator:
    return BeforeValidator(check, json_schema_input_type=accepts)


# Field types: the annotation is what the hub keeps; ``accepts`` is what a client may send.
Text = Annotated[str, _before(_text, str)]
Prompt = Annotated[str, _before(_prompt, str), Field(min_length=1)]
Flag = Annotated[bool, _before(_bool, bool | str)]
Backend = Annotated[BackendName, _before(_choice(tuple(BackendName)), BackendName)]
PriorityName = Annotated[Priority, _before(_choice(tuple(Priority)), Priority)]
Timeout = Annotated[float, _before(_seconds(MAX_TIMEOUT), float | str), Field(gt=0, le=MAX_TIMEOUT)]
Names = Annotated[list[str], _before(_list, list[str] | str)]
Refs = Annotated[list[str], _before(_refs, list[str | int] | str | int)]
Globs = Annotated[list[str], _before(_globs, list[str] | str)]
Gpus = Annotated[int, _before(_ints(0, MAX_GPUS), int | str), Field(ge=0, le=MAX_GPUS)]


# -- parsing -------------------------------------------------------------------------------------


class Shape(BaseModel):
    """A request body: unknown keys are refused, every string must be valid text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        check_text(data)
        return data

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        """Return the error for keys the shape does not have."""
        return f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(cls.keys())})"

    @classmethod
    def keys(cls) -> list[str]:
        """Return the keys a body may have, in declaration order."""
        return list(cls.model_fields)

    @classmethod
    def explain(cls, exc: pydantic.ValidationError) -> str:
        """Return the one-line message of a failed validation (unknown keys first)."""
        errors = exc.errors(include_url=False)
        unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"
                   and len(e["loc"]) == 1]  # fmt: skip
        if unknown:
            return cls.unknown_message(sorted(unknown))
        return error_message(errors[0])

    def given(self) -> dict[str, Any]:
        """Return the fields the body set (not the defaults), validated; enums as text."""
        out = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, StrEnum) else value
        return out


def error_message(error: Any) -> str:
    """Return the text of one pydantic error: our own message, or one naming the field."""
    where = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return f"'{where}' is required"
    if error["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    return f"'{where}': {error['msg'][:1].lower()}{error['msg'][1:]}"


def parse(shape: type[S], body: Any) -> S:
    """Return ``body`` as ``shape``, or raise ValidationError with one line naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    try:
        return shape.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ValidationError(shape.explain(exc)) from None


# -- tasks ---------------------------------------------------------------------------------------


class TaskFields(Shape):
    """What a task may say about itself: the fields a submit, a batch task and a patch share."""

    prompt: Prompt = Field(description="What the agent is asked (a shell command for shell).")
    title: Text | None = Field(None, description="Short name (default: the prompt's first line).")
    project: Text | None = Field(None, description="Registered project the task works in.")
    backend: Backend | None = Field(None, description="claude, codex or shell.")
    model: Text | None = Field(None, description="Model the agent uses.")
    priority: PriorityName | None = Field(None, description="urgent, high, normal or low.")
    host: Text | None = Field(None, description="Run on this inventory host.")
    labels: Names = Field(default_factory=list, description="Run on a host with these labels.")
    timeout: Timeout | None = Field(None, description="Seconds, or a duration like 30m.")
    after: Names = Field(default_factory=list, description="Task ids this task waits for.")
    wait_for_host: Flag | None = Field(None, description="Wait for an eligible host to exist.")


class TaskSubmit(TaskFields):
    """``POST /tasks``: a task to queue (or to keep as a draft)."""

    resume: Text | None = Field(None, description="Continue the agent session of this task.")
    artifacts: Globs | None = Field(None, description="Globs of files to bring back.")
    draft: Flag | None = Field(None, description="Keep as a draft until approved.")
    agent_plan: Flag | None = Field(None, description="Draft with a read-only planning run.")
    permissions: Literal["plan"] | None = Field(
        None, description="Only 'plan' (read-only); anything more is set per host."
    )
    gpus: Gpus | None = Field(None, description="GPUs the task needs on its host.")

    @model_validator(mode="before")
    @classmethod
    def _permissions(cls, data: Any) -> Any:
        value = data.get("permissions") if isinstance(data, dict) else None
        if value is not None and value != Permissions.PLAN.value:
            # A task may only restrict what its host allows: read-only planning mode.
            raise ValidationError(
                f"invalid permissions '{value}': a task may only ask for 'plan' "
                "(read-only); anything more is set per host in the inventory"
            )
        return data

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        hint = ""
        if {"cron", "every"} & set(unknown):
            hint = "; a recurring task is a schedule: POST /schedules"
        return (
            f"unknown field(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(cls.keys()))}){hint}"
        )


def validate_submit(
    body: Any, *, default_timeout: float | None, default_backend: str | None = None
) -> dict[str, Any]:
    """Check a POST /tasks body and return Task constructor fields (plus a few intake keys).

    Intake keys, not Task fields: ``resume_task``, ``draft``, ``agent_plan``.
    """
    shape = parse(TaskSubmit, body)
    fields: dict[str, Any] = {"prompt": shape.prompt}
    fields["backend"] = str(shape.backend or default_backend or BackendName.CLAUDE)
    if shape.priority:
        fields["priority"] = shape.priority
    for key in ("model", "title", "project"):
        if getattr(shape, key):
            fields[key] = getattr(shape, key)
    if shape.host:
        fields["want_host"] = shape.host
    fields["host_selector"] = list(shape.labels)
    timeout = shape.timeout if shape.timeout is not None else default_timeout
    if timeout is not None:
        fields["timeout"] = as_seconds(timeout, "timeout")
    if shape.resume:
        fields["resume_task"] = shape.resume
    if shape.artifacts is not None:
        fields["artifact_globs"] = list(shape.artifacts)
    fields["after"] = list(shape.after)
    for key in ("draft", "agent_plan", "wait_for_host"):
        if getattr(shape, key) is not None:
            fields[key] = getattr(shape, key)
    if shape.gpus is not None:
        fields["gpus"] = shape.gpus
    if shape.permissions is not None:
        fields["permissions"] = shape.permissions
    return fields


class TaskPatch(Shape):
    """``PATCH /tasks/{id}``: edit a draft or a task that has not started."""

    prompt: Prompt | None = None
    title: Text | None = None
    priority: PriorityName | None = None
    host: Text | None = Field(None, description="Empty or null: any host.")
    labels: Names | None = None
    timeout: Timeout | None = None
    model: Text | None = None
    backend: Backend | None = None
    after: Names | None = None
    wait_for_host: Flag | None = None
    plan: Text | None = Field(None, description="The plan of a draft.")

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        return f"cannot edit field(s) {', '.join(unknown)} (editable: {', '.join(cls.keys())})"


class RetryBody(Shape):
    """``POST /tasks/{id}/retry``."""

    cascade: Flag = Field(False, description="Also re-queue what failed because of it.")


class Empty(Shape):
    """A body that carries nothing (``{}``, or no body at all)."""


# -- projects ------------------------------------------------------------------------------------


class Policies(Shape):
    """A project's policies; values may be text, as ``dobby projects set`` sends."""

    default_backend: Annotated[
        BackendName | None, _before(_policy(_choice(tuple(BackendName)), unset=True), str | None)
    ] = None
    default_timeout: Annotated[
        float | None, _before(_policy(_seconds(MAX_TIMEOUT), unset=True), float | str | None)
    ] = Field(None, gt=0, le=MAX_TIMEOUT)
    default_priority: Annotated[
        Priority | None, _before(_policy(_choice(tuple(Priority)), unset=True), str | None)
    ] = None
    max_concurrent: Annotated[
        int, _before(_policy(_ints(1, MAX_CONCURRENT), unset=False), int | str)
    ] = Field(1, ge=1, le=MAX_CONCURRENT)
    auto_chain: Annotated[bool, _before(_policy(_bool, unset=False), bool | str)] = False
    auto_retry: Annotated[
        int, _before(_policy(_ints(0, MAX_AUTO_RETRY), unset=False), int | str)
    ] = Field(0, ge=0, le=MAX_AUTO_RETRY)


POLICY_KEYS = tuple(Policies.model_fields)


def validate_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Check the policy fields of ``body`` (others are ignored); return those it sets."""
    return parse(Policies, {k: v for k, v in body.items() if k in POLICY_KEYS}).given()


class ProjectCreate(Policies):
    """``POST /projects``: a local git checkout and its policies."""

    name: Text = Field(description="Letters, digits, . _ -; starts with a letter or digit.")
    path: Text = Field(description="Path of a git checkout on the hub's machine.")
    context: Text = Field("", description="Text given to every task of the project.")

    @classmethod
    def keys(cls) -> list[str]:
        return ["name", "path", "context", *POLICY_KEYS]


def validate_project(body: Any) -> Project:
    """Check a POST /projects body: a name, an existing git checkout, optional policies."""
    shape = parse(ProjectCreate, body)
    if not NAME_RE.match(shape.name):
        raise ValidationError(
            f"invalid project name '{shape.name}' "
            "(letters, digits, . _ -; starts with a letter or digit)"
        )
    path = os.path.abspath(os.path.expanduser(shape.path))
    if not os.path.isdir(path):
        raise ValidationError(f"project path {path} is not a directory")
    if not os.path.exists(os.path.join(path, ".git")):
        raise ValidationError(
            f"project path {path} is not a git repository (run `git init` and commit first)"
        )
    policies = {k: v for k, v in shape.given().items() if k in POLICY_KEYS}
    return Project(name=shape.name, path=path, context=shape.context, **policies)


class ProjectPatch(Policies):
    """``PATCH /projects/{name}``: policies and context."""

    context: Text | None = None

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        settable = ", ".join(["context", *POLICY_KEYS])
        return f"cannot set {', '.join(unknown)} (settable: {settable})"


def validate_policy_patch(body: Any) -> dict[str, Any]:
    """Check a PATCH /projects/{name} body: policies and ``context`` only."""
    out = parse(ProjectPatch, body).given()
    if "context" in out:
        out["context"] = out["context"] or ""
    return out


# -- schedules, batches, sessions, cleanup ----------------------------------------------------


class ScheduleCreate(TaskSubmit):
    """``POST /schedules``: when to fire (``cron`` or ``every``) and the task to spawn."""

    cron: Text | None = Field(None, description='Five crontab fields, e.g. "0 3 * * *".')
    every: Annotated[float | str | None, _before(_every, float | str | None)] = Field(
        None, description='An interval: "30m" or seconds.'
    )
    overlap: Annotated[
        Literal["skip", "queue"] | None, _before(_choice(("skip", "queue")), str | None)
    ] = Field(None, description="While the previous run is unfinished: skip or queue.")
    timezone: Text | None = Field(None, description="IANA zone the cron fields are read in.")
    paused: Flag = False

    @model_validator(mode="before")
    @classmethod
    def _one_schedule(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in ("draft", "agent_plan", "resume"):
            if data.get(key):
                raise ValidationError(f"a schedule cannot spawn tasks with '{key}'")
        if (data.get("cron") is None) == (data.get("every") is None):
            raise ValidationError("give exactly one of 'cron' and 'every'")
        return data

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        return f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(cls.keys()))})"


SCHEDULE_KEYS = ("cron", "every", "overlap", "timezone", "paused")


def _every(value: Any, info: ValidationInfo) -> Any:
    ok = isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
    if value is not None and not ok:
        raise ValidationError("'every' must be a duration like \"30m\" or seconds")
    return value


class BatchTask(TaskFields):
    """One task of a batch: a submit's fields plus a name other tasks can wait ``after``."""

    name: Annotated[str | None, _before(_batch_name, str | int | None)] = Field(
        None, description="Name other tasks of the batch refer to in 'after'."
    )
    after: Refs = Field(default_factory=list, description="Names of tasks of the batch, or ids.")
    draft: Flag | None = None
    artifacts: Globs | None = None
    gpus: Gpus | None = None


def _batch_name(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ValidationError("'name' must be a non-empty string")
    return str(value)


BATCH_TASK_KEYS = tuple(BatchTask.model_fields)
BATCH_DEFAULT_KEYS = tuple(k for k in BATCH_TASK_KEYS if k not in ("name", "prompt", "title",
                                                                   "after"))  # fmt: skip


class BatchDefaults(Shape):
    """Keys every task of a batch inherits (a task's own keys win)."""

    project: Text | None = None
    backend: Backend | None = None
    model: Text | None = None
    priority: PriorityName | None = None
    host: Text | None = None
    labels: Names | None = None
    timeout: Timeout | None = None
    wait_for_host: Flag | None = None
    draft: Flag | None = None
    artifacts: Globs | None = None
    gpus: Gpus | None = None


class BatchFile(Shape):
    """``POST /batches`` as JSON: the structure of a batch file."""

    name: Text = ""
    defaults: BatchDefaults | None = None
    tasks: list[BatchTask] = Field(min_length=1, max_length=10000)


class BatchText(Shape):
    """``POST /batches`` with a batch file's text: errors then say ``FILE:LINE: …``."""

    yaml: Text = Field(description="The batch file (YAML).")
    file: Text | None = Field(None, description="Its name, used in error messages.")


class RemoteOpen(Shape):
    """``POST /remote``: open an interactive agent session in tmux on a host."""

    host: Text | None = None
    project: Text | None = None
    backend: Backend | None = None
    model: Text | None = None
    prompt: Annotated[str | None, _before(_opt_prompt, str | None)] = None
    title: Text | None = None

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        return f"unknown field(s) {', '.join(unknown)}"


def _opt_prompt(value: Any, info: ValidationInfo) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise ValidationError("'prompt' must be a string without NUL bytes")
    check_prompt_size(value)
    return value


class GcBody(Shape):
    """``POST /gc``: free finished tasks' directories on their hosts."""

    older_than: Annotated[float | None, _before(_older_than, float | str | None)] = Field(
        None, description="Seconds or a duration (default: the host_retention setting)."
    )
    dry_run: Flag = False


def _older_than(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"'older_than' must be seconds or a duration, got {_show(value)}")
    seconds = parse_duration(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_OLDER_THAN:
        raise ValidationError(
            f"'older_than' must be seconds >= 0 and <= {MAX_OLDER_THAN:.0f} "
            f"({_days(MAX_OLDER_THAN)}), got {_show(value)}"
        )
    return seconds
