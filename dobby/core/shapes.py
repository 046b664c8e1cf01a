"""What the API accepts, declared once: pydantic models of every request body.

Each model checks its fields with the messages users see today (see :mod:`dobby.core.fields`),
and the hub's OpenAPI document is generated from the same models. :func:`parse` turns a body
into a model or raises ValidationError naming the field; batch files map the same errors to
``file:line``.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, ValidationInfo, model_validator

from dobby.core.errors import ValidationError
from dobby.core.fields import (
    MAX_AUTO_RETRY,
    MAX_CONCURRENT,
    MAX_OLDER_THAN,
    MAX_TIMEOUT,
    MAX_TURNS,
    Backend,
    BackendNames,
    Budget,
    BudgetCaps,
    FixAttempts,
    Flag,
    Globs,
    Gpus,
    ModelName,
    Names,
    PriorityName,
    Prompt,
    Refs,
    Shape,
    Text,
    Timeout,
    Turns,
    VerifyCommand,
    VerifyTimeout,
    as_int,
    as_seconds,
    backend_list,
    before,
    bounded_seconds,
    check_prompt_size,
    check_text,
    choice,
    days,
    ints,
    model_name,
    parse,
    policy,
    show,
    str_list,
    to_bool,
    usd,
    verify_command,
)
from dobby.core.models import BackendName, Permissions, Priority, Project
from dobby.core.names import NAME_RE
from dobby.core.timefmt import parse_duration

# -- tasks ---------------------------------------------------------------------------------------


class PromptAndTitle(Shape):
    """A task's own text: what tasks of a batch, alike otherwise, differ in (Intake.one_look)."""

    prompt: Prompt = Field(description="What the agent is asked (a shell command for shell).")
    title: Text | None = Field(None, description="Short name (default: the prompt's first line).")


class TaskFields(PromptAndTitle):
    """What a task may say about itself: the fields a submit, a batch task and a patch share."""

    project: Text | None = Field(None, description="Registered project the task works in.")
    backend: Backend | None = Field(None, description="claude, codex or shell.")
    model: ModelName | None = Field(None, description="Model the agent uses.")
    priority: PriorityName | None = Field(None, description="urgent, high, normal or low.")
    host: Text | None = Field(None, description="Run on this inventory host.")
    labels: Names = Field(default_factory=list, description="Run on a host with these labels.")
    timeout: Timeout | None = Field(None, description="Seconds, or a duration like 30m.")
    after: Names = Field(default_factory=list, description="Task ids this task waits for.")
    wait_for_host: Flag | None = Field(None, description="Wait for an eligible host to exist.")
    max_turns: Turns | None = Field(None, description="Stop the agent after N turns (claude).")
    max_budget_usd: Budget | None = Field(
        None, description="Stop the agent past this cost (claude)."
    )
    verify: VerifyCommand | None = Field(
        None,
        description="A check run in the task's worktree after the agent (exit 0: passed); "
        '"" for none, even where the project has a default_verify.',
    )
    verify_timeout: VerifyTimeout | None = Field(
        None, description="Seconds the check may run (default: the hub's verify_timeout)."
    )
    fix_attempts: FixAttempts | None = Field(
        None, description="Follow-ups resuming the agent to fix a failed check."
    )


VERIFY_KEYS = ("verify", "verify_timeout", "fix_attempts")


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
    fallback_backends: BackendNames | None = Field(
        None, description="Backends to run on instead when a usage limit's wait is too long."
    )

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
    for key in ("gpus", "max_turns", "max_budget_usd", *VERIFY_KEYS):
        if getattr(shape, key) is not None:
            fields[key] = getattr(shape, key)
    if shape.fallback_backends is not None:
        fields["fallback_backends"] = [str(b) for b in shape.fallback_backends]
    if shape.permissions is not None:
        fields["permissions"] = shape.permissions
    return fields


class VerifyFields(Shape):
    """The verify fields of a task body (``verify``, ``verify_timeout``, ``fix_attempts``)."""

    verify: VerifyCommand | None = None
    verify_timeout: VerifyTimeout | None = None
    fix_attempts: FixAttempts | None = None


def validate_verify(body: dict[str, Any]) -> dict[str, Any]:
    """Check a body's verify fields (others are ignored); return those it sets, not null.

    ``verify: ""`` says "no check" even where the project has a ``default_verify``.
    """
    given = parse(VerifyFields, {k: v for k, v in body.items() if k in VERIFY_KEYS}).given()
    return {k: v for k, v in given.items() if v is not None}


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
    max_turns: Turns | None = None
    max_budget_usd: Budget | None = None
    plan: Text | None = Field(None, description="The plan of a draft.")

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        return f"cannot edit field(s) {', '.join(unknown)} (editable: {', '.join(cls.keys())})"


class RetryBody(Shape):
    """``POST /tasks/{id}/retry``."""

    cascade: Flag = Field(False, description="Also re-queue what failed because of it.")


class Empty(Shape):
    """A body that carries nothing (``{}``, or no body at all)."""


class HostBootstrap(Shape):
    """``POST /hosts/{name}/bootstrap``: create the host's workdir."""

    install: Flag = Field(False, description="Also install a missing tmux and git.")


# -- projects ------------------------------------------------------------------------------------


def _fallbacks(value: Any, info: ValidationInfo) -> Any:
    return [] if value is None else backend_list(value, "fallback_backends")


def _ignore_patterns(value: Any, info: ValidationInfo) -> Any:
    # Text from `projects set` is comma-separated; none/"" clears the list.
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    patterns = str_list(value, "commit_ignore")
    for pattern in patterns:
        if len(pattern) > 200 or any(c in pattern for c in "\n\r\x00"):
            raise ValidationError(
                f"invalid commit_ignore pattern {show(pattern)}: one gitignore line, "
                "at most 200 characters"
            )
    return list(dict.fromkeys(patterns))


class Policies(Shape):
    """A project's policies; values may be text, as ``dobby projects set`` sends."""

    default_backend: Annotated[
        BackendName | None, before(policy(choice(tuple(BackendName)), unset=True), str | None)
    ] = None
    default_timeout: Annotated[
        float | None, before(policy(bounded_seconds(MAX_TIMEOUT), unset=True), float | str | None)
    ] = Field(None, json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_TIMEOUT})
    default_priority: Annotated[
        Priority | None, before(policy(choice(tuple(Priority)), unset=True), str | None)
    ] = None
    max_concurrent: Annotated[
        int, before(policy(ints(1, MAX_CONCURRENT), unset=False), int | str)
    ] = Field(1, json_schema_extra={"minimum": 1, "maximum": MAX_CONCURRENT})
    auto_chain: Annotated[bool, before(policy(to_bool, unset=False), bool | str)] = False
    auto_retry: Annotated[int, before(policy(ints(0, MAX_AUTO_RETRY), unset=False), int | str)] = (
        Field(0, json_schema_extra={"minimum": 0, "maximum": MAX_AUTO_RETRY})
    )
    default_verify: Annotated[
        str | None, before(policy(verify_command, unset=True), str | None)
    ] = Field(None, description="The check of the project's tasks that give no verify.")
    budget_usd: BudgetCaps = Field(
        None, description="Spend caps in USD per day, week and/or month ({day: 20} or day:20)."
    )
    fallback_backends: Annotated[
        list[BackendName], before(_fallbacks, list[BackendName] | str | None)
    ] = Field(
        default_factory=list,
        description="Backends the project's tasks run on when a usage limit's wait is long.",
    )
    commit_ignore: Annotated[list[str], before(_ignore_patterns, list[str] | str | None)] = Field(
        default_factory=list,
        description="gitignore patterns kept out of the commit of a task's leftovers, beside "
        "the built-in build-junk list (__pycache__/, node_modules/, .venv/, ...).",
    )
    # Defaults for the project's tasks (a task's own value wins; a host's `models:` comes last).
    model: Annotated[str | None, before(policy(model_name, unset=True), str | None)] = None
    max_turns: Annotated[
        int | None, before(policy(ints(1, MAX_TURNS), unset=True), int | str | None)
    ] = Field(None, json_schema_extra={"minimum": 1, "maximum": MAX_TURNS})
    max_budget_usd: Annotated[float | None, before(policy(usd, unset=True), float | str | None)] = (
        Field(None, json_schema_extra={"exclusiveMinimum": 0})
    )


POLICY_KEYS = tuple(Policies.model_fields)


def validate_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Check the policy fields of ``body`` (others are ignored); return those it sets."""
    return parse(Policies, {k: v for k, v in body.items() if k in POLICY_KEYS}).given()


class ProjectCreate(Policies):
    """``POST /projects``: a local git checkout and its policies."""

    name: Text = Field(
        description="Letters, digits, . _ -; starts with a letter or digit.",
        json_schema_extra={"pattern": NAME_RE.pattern},  # checked by validate_project
    )
    path: Text = Field(description="Path of a git checkout on the hub's machine.")
    context: Text = Field("", description="Text given to every task of the project.")

    @classmethod
    def keys(cls) -> list[str]:
        return ["name", "path", "context", *POLICY_KEYS]


def validate_project(body: Any) -> Project:
    """Check a POST /projects body: a name, an existing git checkout, optional policies."""
    shape = parse(ProjectCreate, body)
    if not NAME_RE.fullmatch(shape.name):  # match() would take "app\n" ($ before a newline)
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
    every: Annotated[float | str | None, before(_every, float | str | None)] = Field(
        None, description='An interval: "30m" or seconds.'
    )
    overlap: Annotated[
        Literal["skip", "queue"] | None, before(choice(("skip", "queue")), str | None)
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

    name: Annotated[str | None, before(_batch_name, str | int | None)] = Field(
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


BatchDefaults: type[Shape] = pydantic.create_model(  # type: ignore[call-overload]
    "BatchDefaults",
    __base__=Shape,
    __doc__="Keys every task of a batch inherits (a task's own keys win).",
    **{
        k: (BatchTask.model_fields[k].annotation, BatchTask.model_fields[k])
        for k in BATCH_DEFAULT_KEYS
    },  # fmt: skip
)


class BatchFile(Shape):
    """``POST /batches`` as JSON: the structure of a batch file."""

    name: Text = ""
    defaults: BatchDefaults | None = None  # type: ignore[valid-type]
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
    prompt: Annotated[str | None, before(_opt_prompt, str | None)] = None
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

    older_than: Annotated[float | None, before(_older_than, float | str | None)] = Field(
        None, description="Seconds or a duration (default: the host_retention setting)."
    )
    dry_run: Flag = False


def _older_than(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"'older_than' must be seconds or a duration, got {show(value)}")
    seconds = parse_duration(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_OLDER_THAN:
        raise ValidationError(
            f"'older_than' must be seconds >= 0 and <= {MAX_OLDER_THAN:.0f} "
            f"({days(MAX_OLDER_THAN)}), got {show(value)}"
        )
    return seconds


# -- races ---------------------------------------------------------------------------------------

RACE_KEYS = ("k", "backends", "models", "hosts", "pick")
PICKS = ("first", "smallest", "cheapest")
MAX_RACE_K = 2**53 - 1  # bounds the integer parse; the hub's max_race is the real limit


def validate_race(body: Any, *, max_race: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a POST /races body into the race's own fields and the task body of its attempts.

    Race fields: ``k`` (1..max_race attempts), ``backends``, ``models``, ``hosts`` (each used
    round-robin; a host may be named once), ``pick`` (first, smallest or cheapest). The task
    body is checked by the intake as a submit (:class:`TaskSubmit`), once per attempt.
    """
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    check_text(body)
    task_body = {k: v for k, v in body.items() if k not in RACE_KEYS}
    for key in ("resume", "draft", "agent_plan"):
        if task_body.get(key):
            raise ValidationError(f"a race cannot be started with '{key}'")
    if body.get("k") is None:
        raise ValidationError("'k' is required: how many attempts the race starts")
    try:
        k = as_int(body["k"], "k", minimum=1, maximum=MAX_RACE_K)
    except ValidationError:
        raise ValidationError(f"'k' must be an integer >= 1, got {show(body['k'])}") from None
    if k > max_race:
        raise ValidationError(f"'k' must be at most {max_race} (the hub's max_race), got {k}")
    backends = str_list(body.get("backends"), "backends")
    for name in backends:
        if name not in tuple(BackendName):
            raise ValidationError(
                f"invalid backend '{name}' (choose {', '.join(b.value for b in BackendName)})"
            )
    hosts = str_list(body.get("hosts"), "hosts")
    if len(set(hosts)) < len(hosts):
        twice = next(h for i, h in enumerate(hosts) if h in hosts[:i])
        raise ValidationError(f"duplicate host '{twice}' in 'hosts': name each host once")
    if hosts and task_body.get("host"):
        raise ValidationError("give 'host' or 'hosts', not both")
    pick = body.get("pick")
    if pick is not None and pick not in PICKS:
        raise ValidationError(f"invalid pick {show(pick)} (choose {', '.join(PICKS)})")
    race = {
        "k": k,
        "backends": backends,
        "models": str_list(body.get("models"), "models"),
        "hosts": hosts,
        "pick": pick or "first",
    }
    return race, task_body
