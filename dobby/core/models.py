"""Plain data of Dobby: tasks, hosts, projects, results. No I/O here."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import secrets
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dobby.core.slurm import SlurmSettings
from dobby.core.timefmt import parse_time, utcnow


class TaskStatus(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class Reason(StrEnum):
    AGENT_ERROR = "agent_error"
    EXIT_CODE = "exit_code"
    TIMEOUT = "timeout"
    STALE = "stale"
    HOST_LOST = "host_lost"
    DEPENDENCY_FAILED = "dependency_failed"
    DISPATCH_ERROR = "dispatch_error"
    BUDGET = "budget"  # stopped by the agent's own budget flag (claude --max-budget-usd)
    MAX_TURNS = "max_turns"  # stopped by claude --max-turns
    VERIFY_FAILED = "verify_failed"
    USAGE_LIMIT = "usage_limit"  # the account hit a quota window (see QuotaSignal)
    COLLECT_ERROR = "collect_error"  # the run ended; the hub could not read its result


class BackendName(StrEnum):
    CLAUDE = "claude"
    CODEX = "codex"
    SHELL = "shell"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Permissions(StrEnum):
    """What an agent may do on a host; never ``bypass`` unless the inventory says so."""

    BYPASS = "bypass"
    EDITS = "edits"
    PLAN = "plan"


def new_task_id() -> str:
    """Return a random task id: 16 hex chars, safe in paths, tmux and git names.

    64 random bits: among 10^7 tasks the chance that any two share an id is about 3 in a
    million (and the store refuses to overwrite a task with a new one of the same id).
    """
    return secrets.token_hex(8)


@dataclass
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class Host:
    """One machine of the inventory."""

    name: str
    connection: str = "ssh"  # ssh | local | slurm (a login node reached over ssh)
    address: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool = False
    labels: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=lambda: ["claude", "codex", "shell"])
    max_agents: int = 4
    workdir: str = "~/.dobby"
    gpus: bool | str = False
    env: dict[str, str] = field(default_factory=dict, repr=False)
    permissions: str = "edits"
    slurm: SlurmSettings | None = None  # how tasks become jobs on a `connection: slurm` host
    # Usage limits belong to accounts (dobby/scheduler/accounts.py): one per host and backend
    # unless hosts name the subscription they share, for all backends or per backend.
    account: str | None = None
    accounts: dict[str, str] = field(default_factory=dict)  # backend -> account name
    models: dict[str, str] = field(default_factory=dict)  # default model per backend here
    source: str | None = None  # "file:line" where the host was defined

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Return the host as JSON; env values are secrets and are redacted by default."""
        # Not dataclasses.asdict: its deep copy per field made GET /hosts ~2.5 ms at 100 hosts.
        data = {name: _plain(getattr(self, name)) for name in _field_names(Host)}
        data["slurm"] = self.slurm.to_dict() if self.slurm else None
        if redact:
            data["env"] = {k: "***" for k in self.env}
        return data


@dataclass
class Project:
    name: str
    path: str
    context: str = ""
    created_at: str = field(default_factory=utcnow)
    # Policies (dobby/scheduler/): defaults for the project's tasks and how many run at once.
    default_backend: str | None = None
    default_timeout: float | None = None
    default_priority: str | None = None
    max_concurrent: int = 1
    auto_chain: bool = False  # a new task waits for the project's latest unfinished task
    auto_retry: int = 0  # re-queue a host_lost/dispatch_error task on another host, N times
    default_verify: str | None = None  # the check of the project's tasks that give no --verify
    budget_usd: dict[str, float] | None = None  # spend caps per window: {day, week, month}
    fallback_backends: list[str] = field(default_factory=list)  # when a limit's wait is long
    # gitignore patterns kept out of its tasks' commits, beside Dobby's build-junk list
    commit_ignore: list[str] = field(default_factory=list)
    model: str | None = None  # defaults of the project's tasks: model and claude's limits
    max_turns: int | None = None
    max_budget_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class UsageWindow:
    """One observation of an account's quota window, as an agent CLI reported it."""

    window: str  # five_hour | seven_day | seven_day_opus | … | "<N>m" for other lengths
    utilization: float | None = None  # 0..1 (codex's used_percent / 100)
    resets_at: float | None = None  # epoch seconds
    status: str | None = None  # allowed | allowed_warning | rejected (claude's words)
    source: str = "event"  # event (claude stream) | rollout (codex session file)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QuotaSignal:
    """A run stopped by a usage limit or a rate limit, and when it may go on."""

    kind: str  # usage_limit | rate_limited_no_reset
    window: str | None = None  # five_hour | seven_day | … when known
    resets_at: float | None = None  # epoch seconds, None when no source gave one
    source: str = "none"  # event | rollout | text | none: where resets_at came from
    worked: bool = False  # tool calls or file changes happened before the limit
    message: str = ""  # the CLI's own words

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Result:
    """What a finished task produced, derived from its output by the backend."""

    status: TaskStatus
    reason: Reason | None = None
    summary: str = ""
    error: str | None = None
    exit_code: int | None = None
    cost_usd: float | None = None
    tokens: Tokens = field(default_factory=Tokens)
    models: list[str] = field(default_factory=list)
    session_id: str | None = None
    turns: int | None = None
    api_error_status: int | None = None
    duration_ms: int | None = None  # the CLI's own run time (claude's result, codex's rollout)
    permission_denials: list[dict[str, Any]] = field(default_factory=list)  # [{tool, target}]
    warnings: list[str] = field(default_factory=list)  # one line each, shown with the result
    quota: QuotaSignal | None = None  # set when a usage/rate limit stopped the run
    windows: list[UsageWindow] = field(default_factory=list)  # quota windows the run saw


@dataclass
class Task:
    """A unit of work; its JSON form is the same in API, CLI ``--json`` and export."""

    prompt: str
    backend: str = BackendName.SHELL.value
    id: str = field(default_factory=new_task_id)
    title: str = ""
    project: str | None = None
    model: str | None = None
    priority: Priority = Priority.NORMAL
    status: TaskStatus = TaskStatus.PENDING
    reason: str | None = None
    waiting_on: str | None = "capacity"
    host: str | None = None
    host_selector: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    cron: str | None = None
    every: str | None = None
    batch_id: str | None = None
    attempt: int = 0
    timeout: float | None = None
    created_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    finished_at: str | None = None
    session_id: str | None = None
    branch: str | None = None
    exit_code: int | None = None
    cost_usd: float | None = None
    tokens: Tokens = field(default_factory=Tokens)
    summary: str | None = None
    error: str | None = None
    resume: str | None = None
    models: list[str] = field(default_factory=list)
    turns: int | None = None
    # Scheduler (dobby/scheduler/): queue order, drafts and plans, schedules, attempts.
    queued_at: str | None = None  # FIFO key within a priority; reset on approve and retry
    schedule_id: str | None = None  # the schedule that spawned this task
    plan: str | None = None  # the plan attached to a draft (agent-written or edited)
    plan_task: str | None = None  # on a draft: the read-only planning run writing its plan
    plan_for: str | None = None  # on a planning run: the draft its summary becomes the plan of
    permissions: str | None = None  # per-task override; only "plan" (read-only) is accepted
    wait_for_host: bool = False  # wait for an eligible reachable host instead of failing
    stale_since: str | None = None  # set while no output arrives for stale_timeout
    attempts: list[dict[str, Any]] = field(default_factory=list)  # earlier runs, oldest first
    avoid_hosts: list[str] = field(default_factory=list)  # hosts an automatic retry skips
    # Machines (machines/gpu.py, runner/interactive.py): GPU requests and interactive sessions.
    kind: str = "task"  # task | interactive (a `dobby remote` session a person attaches to)
    gpus: int = 0  # GPUs the task needs; placed only where that many are free
    gpu_indices: list[int] = field(default_factory=list)  # reserved while it runs
    gpu_memory_mib: int | None = None  # GPU memory its processes use (last poll)
    # Slurm hosts (dobby/runner/slurm.py): the job of this attempt, and what Slurm says of it.
    slurm_job: str | None = None
    slurm_state: str | None = None  # "queued behind jobs of higher priority (Priority)", ...
    # Placement: the host the user asked for (``host`` is where it actually runs).
    want_host: str | None = None
    base_commit: str | None = None
    # Results (dobby/results/): what came back from the host after the task ended.
    head_commit: str | None = None
    diff_stat: dict[str, Any] | None = None  # {files: [{path, status, added, deleted}], totals}
    artifact_globs: list[str] = field(default_factory=list)  # declared with --artifact
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # [{name, size}]
    collect_error: str | None = None  # why work or artifacts could not be brought back
    merged_at: str | None = None
    merge_commit: str | None = None
    host_cleaned_at: str | None = None  # worktree and tasks/<id> removed from the host
    # Backends (dobby/backends/): per-task agent limits, and what the agent's output said.
    max_turns: int | None = None  # claude --max-turns
    max_budget_usd: float | None = None  # claude --max-budget-usd
    api_error_status: int | None = None  # HTTP status of the API error that ended the run
    duration_ms: int | None = None  # the CLI's own run time, beside Dobby's wall time
    permission_denials: list[dict[str, Any]] = field(default_factory=list)  # [{tool, target}]
    warnings: list[str] = field(default_factory=list)  # e.g. denials, a model without a price
    quota: dict[str, Any] | None = None  # QuotaSignal.to_dict() of a run a limit stopped
    # Verify (hostside/verify.py): a check run in the worktree after the agent, and its rounds.
    verify: str | None = None  # the command, as the user wrote it (reaches the host as a file)
    verify_timeout: float | None = None  # seconds the check may run (default verify_timeout)
    fix_attempts: int = 0  # follow-ups still allowed to fix a failed check (this chain)
    fix_round: int = 0  # 0: the first run; N: the Nth follow-up fixing a failed check
    fix_task: str | None = None  # the follow-up started to fix this task's failed check
    verify_result: dict[str, Any] | None = None  # VerifyResult.to_dict() once it ran
    # Races (dobby/races/): the race this task is an attempt of, and which attempt.
    race_id: str | None = None
    race_slot: int | None = None
    # why a pending task waits, in words: for which host, or a usage limit/budget with the times
    wait_reason: str | None = None
    launch_id: str | None = None  # this placement's one launch (its claim on the host)
    # Usage limits and budgets (dobby/scheduler/usage.py): a limit makes a task wait, not fail.
    account: str | None = None  # the account (backend/name) its current or last run used
    not_before: str | None = None  # never launched before this time (a limit's reset + grace)
    resume_session: str | None = None  # the agent session its next launch continues
    resume_host: str | None = None  # where that session and its worktree live
    fallback_backends: list[str] = field(default_factory=list)  # if a limit's wait is too long
    fallback_from: str | None = None  # the backend a long wait made it leave
    log_base: int = 0  # where the current run's output starts in the hub's copy of the log
    usage_windows: list[dict[str, Any]] = field(default_factory=list)  # UsageWindow dicts
    commit_ignore: list[str] = field(default_factory=list)  # its project's, when it was queued

    def __post_init__(self) -> None:
        if not self.title:
            self.title = make_title(self.prompt)
        if isinstance(self.tokens, dict):
            self.tokens = Tokens(**self.tokens)
        # Stored documents and callers may pass the plain strings; the fields hold the enums.
        if type(self.status) is not TaskStatus:
            self.status = TaskStatus(self.status)
        if type(self.priority) is not Priority:
            self.priority = Priority(self.priority)

    def copy(self) -> Task:
        """Return a shallow copy (what ``copy.copy`` makes, without its generic protocol)."""
        twin = object.__new__(Task)
        twin.__dict__.update(self.__dict__)
        return twin

    def clone(self) -> Task:
        """Return a copy that shares no list, dict or token counts with this task."""
        twin = self.copy()
        values = twin.__dict__
        for name in _container_fields(Task):
            value = values[name]
            kind = value.__class__
            if kind is list:  # most are empty: a new list, not a comprehension's call
                values[name] = (
                    [v if v.__class__ in _SCALARS else _plain(v) for v in value] if value else []
                )
            elif kind is Tokens:
                values[name] = Tokens(**value.__dict__)
            elif value is not None:
                values[name] = _plain(value)
        return twin

    def end(self, status: TaskStatus) -> None:
        """Make this task ``status`` (completed, failed or cancelled) as of now.

        Every way a task ends goes through here, so that a finished task has its end time and
        waits on nothing; its reason, error and results are each caller's to set.
        """
        if not status.finished:
            raise ValueError(f"{status} is not an end")
        self.status = status
        self.waiting_on = self.wait_reason = None
        self.finished_at = utcnow()

    @property
    def state(self) -> TaskStatus:
        # TaskStatus(...) too: a caller may have assigned the plain string since __post_init__.
        return TaskStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        """Return the task as stored and served (public fields first)."""
        # dataclasses.asdict, without its deepcopy of every string: this runs on every save,
        # so the common values (plain scalars, lists of them, the token counts) are copied
        # inline instead of through a call per field.
        values = self.__dict__
        out: dict[str, Any] = {}
        for name in _field_names(Task):
            value = values[name]
            kind = value.__class__
            if kind in _SCALARS:
                out[name] = value
            elif kind is list:  # most are empty: a new list, not a comprehension's call
                out[name] = (
                    [v if v.__class__ in _SCALARS else _plain(v) for v in value] if value else []
                )
            elif kind is Tokens:
                out[name] = dict(value.__dict__)
            else:
                out[name] = _plain(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        """Return the task of a stored document; a bad old value is coerced, never fatal."""
        values = repair_record(data)
        defaults, factories, required = _init_defaults(Task)
        if not required <= values.keys():
            return cls(**values)  # raises as the constructor does
        # Filled in directly, not through the dataclass's __init__: binding its 83 keyword
        # arguments took 65 of the 90 us a stored task took to read (50 results: 3 ms).
        task = object.__new__(cls)
        fields = task.__dict__
        fields.update(defaults)
        for name, factory in factories:
            if name not in values:
                fields[name] = factory()
        fields.update(values)
        task.__post_init__()
        return task


# -- reading stored tasks -------------------------------------------------------------------------

EPOCH = "1970-01-01T00:00:00.000000Z"
_Fix = Callable[[Any, Any], Any]
_fixes: dict[str, tuple[_Fix, Any]] | None = None


def repair_record(data: dict[str, Any]) -> dict[str, Any]:
    """Return the Task fields of a stored document, with each bad value replaced.

    An old record (an import from before validation, a hand edit) may hold ``"lots"`` as its
    cost or ``"not-a-date"`` as a time. Readers (results, stats, export, dashboard) must not
    fail on it forever: a value of the wrong type, a non-finite number or an unparsable time
    becomes the field's default (or None). The checks follow the Task annotations.
    """
    global _fixes
    if _fixes is None:
        _fixes = _field_fixes()
    out: dict[str, Any] = {}
    for key, value in data.items():
        spec = _fixes.get(key)
        if spec is not None:
            fix, default = spec
            out[key] = fix(value, default)
    return out


def _field_fixes() -> dict[str, tuple[_Fix, Any]]:
    """Return, per Task field, the function that repairs a stored value, and its default."""
    hints = typing.get_type_hints(Task)
    out: dict[str, tuple[_Fix, Any]] = {}
    for f in dataclasses.fields(Task):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        else:
            default = ""
        hint = hints[f.name]
        args = set(typing.get_args(hint)) - {type(None)}
        kind = typing.get_origin(hint) or hint
        if len(args) == 1 and isinstance(hint, types.UnionType):
            kind = typing.get_origin(next(iter(args))) or next(iter(args))
        if f.name.endswith(("_at", "_since")):
            fix: _Fix = _fix_time if f.name != "created_at" else _fix_created
        elif kind in (TaskStatus, Priority):
            fix = _fix_enum(kind)
        elif f.name == "tokens":
            fix = _fix_tokens
        elif kind is float:
            fix = _fix_number
        elif kind is bool:
            fix = _fix_type(bool)
        elif kind is int:
            fix = _fix_type(int)
        else:
            fix = _fix_type(kind if isinstance(kind, type) else object)
        out[f.name] = (fix, default)
    return out


def _value(default: Any) -> Any:
    return default() if callable(default) else default


def _fix_type(kind: type) -> _Fix:
    def fix(value: Any, default: Any) -> Any:
        if value is None or (isinstance(value, kind) and not (kind is int and value is True)):
            return value
        if kind is int and value is False:
            return value
        return _value(default)

    return fix


def _fix_number(value: Any, default: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return _value(default)


def _fix_time(value: Any, default: Any) -> Any:
    if value is None:
        return None
    try:
        parse_time(value)
    except (TypeError, ValueError, AttributeError):
        return _value(default)
    return value


def _fix_created(value: Any, default: Any) -> Any:
    return _fix_time(value, None) or EPOCH


def _fix_enum(kind: type[StrEnum]) -> _Fix:
    def fix(value: Any, default: Any) -> Any:
        try:
            return kind(value)
        except ValueError:
            # An unknown status cannot be run or followed: show it as failed.
            return TaskStatus.FAILED if kind is TaskStatus else _value(default)

    return fix


def _fix_tokens(value: Any, default: Any) -> Any:
    if isinstance(value, Tokens):
        return value
    if not isinstance(value, dict):
        return Tokens()
    counts = {}
    for name in ("input", "output", "cache_read", "cache_write"):
        count = value.get(name, 0)
        ok = isinstance(count, int) and not isinstance(count, bool)
        counts[name] = count if ok else 0
    return Tokens(**counts)


_IMMUTABLE = (str, int, float, bool, type(None))
_SCALARS = frozenset(_IMMUTABLE)  # exact types: a StrEnum value goes through _plain


def _plain(value: Any) -> Any:
    """Return a deep copy of JSON-like data (as dataclasses.asdict makes, but fast)."""
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) is list:
        return [_plain(v) for v in value]
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    if type(value) is Tokens:
        return dict(vars(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return copy.deepcopy(value)


@functools.cache
def _init_defaults(
    cls: type,
) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...], frozenset[str]]:
    """Return a dataclass's plain defaults, its default factories and its required fields."""
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    required = set()
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            factories.append((f.name, f.default_factory))
        else:
            required.add(f.name)
    return defaults, tuple(factories), frozenset(required)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _container_fields(cls: type) -> tuple[str, ...]:
    """Return the fields of ``cls`` that may hold a mutable value (by their annotation)."""
    kinds = ("list", "dict", "Tokens")
    return tuple(f.name for f in dataclasses.fields(cls) if any(k in str(f.type) for k in kinds))


def make_title(prompt: str, limit: int = 72) -> str:
    """Return the first line of a prompt, shortened to ``limit`` characters."""
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def new_id(prefix: str) -> str:
    """Return a short random id with a kind prefix (``b-1a2b3c4d``, ``s-…``)."""
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Batch:
    """Tasks submitted together from one batch file; ``tasks`` maps batch names to task ids."""

    id: str = field(default_factory=lambda: new_id("b"))
    name: str = ""
    file: str | None = None
    created_at: str = field(default_factory=utcnow)
    tasks: list[dict[str, str]] = field(default_factory=list)  # [{name, id}] in file order

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy of 10,000 {name, id} pairs is most of the
        # work of storing a big batch.
        return {
            "id": self.id,
            "name": self.name,
            "file": self.file,
            "created_at": self.created_at,
            "tasks": [dict(ref) for ref in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Schedule:
    """Spawn a task from ``template`` at each fire time of ``cron`` or ``every``."""

    template: dict[str, Any]  # a POST /tasks body, validated when the schedule was created
    id: str = field(default_factory=lambda: new_id("s"))
    cron: str | None = None
    every: str | None = None  # as written (30m); ``every_s`` is the same in seconds
    every_s: float | None = None
    timezone: str | None = None  # IANA zone the cron fields are read in (None = hub's local)
    overlap: str = "skip"  # skip | queue: what a fire does while the previous run is unfinished
    paused: bool = False
    next_at: str | None = None
    last_fire_at: str | None = None
    last_task_id: str | None = None
    fires: int = 0
    skipped: int = 0
    last_error: str | None = None
    created_at: str = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class VerifyStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"  # the check ran past verify_timeout (counts as failed)
    SKIPPED = "skipped"  # the agent failed: nothing to check


@dataclass(frozen=True)
class VerifyResult:
    """What the task's check said: status, exit code, duration and the end of its output."""

    status: str
    exit_code: int | None = None
    duration_ms: int | None = None
    tail: str = ""  # the last lines of the check's output (VERIFY_TAIL bytes at most)
    offset: int | None = None  # where the check's section starts in the task's log

    @property
    def passed(self) -> bool:
        return self.status == VerifyStatus.PASSED.value

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RaceStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # a winner was picked: the race's result is its branch
    FAILED = "failed"  # no attempt passed its check
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not RaceStatus.RUNNING


class Pick(StrEnum):
    """How a race picks its winner among the attempts whose check passed."""

    FIRST = "first"  # the first to pass wins; the others are cancelled
    SMALLEST = "smallest"  # once all ended: the smallest diff (lines added + deleted)
    CHEAPEST = "cheapest"  # once all ended: the lowest cost


@dataclass
class Race:
    """K attempts at one task, each an ordinary task; the one whose check passes wins."""

    prompt: str
    verify: str
    k: int
    id: str = field(default_factory=lambda: new_id("r"))
    title: str = ""
    project: str | None = None
    pick: str = Pick.FIRST.value
    status: str = RaceStatus.RUNNING.value
    reason: str | None = None  # no_verified | cancelled
    error: str | None = None
    # One entry per attempt: {slot, backend, model, host, tasks: [ids, oldest first]}.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    winner: str | None = None  # the task id whose branch is the race's result
    winner_slot: int | None = None
    branch: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)  # per_run_usd, max_runs, max_usd, note
    warnings: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=utcnow)
    finished_at: str | None = None
    settled: bool = False  # decided, and every attempt has ended

    def __post_init__(self) -> None:
        if not self.title:
            self.title = make_title(self.prompt)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Race:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
