"""What the hub answers, declared as pydantic models: the response schemas of /openapi.json.

Handlers build their answers from the dataclasses of dobby.core (``to_dict``) and the services'
views; these models describe those dicts. Where an answer is a dataclass, the model is made from
it (``Task`` from :mod:`dobby.core.records`, ``Project``, ``Schedule``, ``Batch``, ``Host``), so
a field added there shows up here. tests/hub/test_openapi.py validates real answers against
these models, so a key added to a view without a word here fails a test.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from dobby.core.models import Batch, Host, Project, Schedule, TaskStatus
from dobby.core.records import TaskRecord
from dobby.results.service import RESULT_KEYS


class Answer(BaseModel):
    """An answer body: every key it has is listed."""

    model_config = ConfigDict(extra="forbid")


def _from_dataclass(cls: type, name: str, *, without: tuple[str, ...] = (), **extra: Any) -> Any:
    """Return a model with the fields of dataclass ``cls`` (plus ``extra``: (type, default))."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], ...) for f in dataclasses.fields(cls) if f.name not in without
    }
    fields.update(extra)
    return pydantic.create_model(name, __base__=Answer, __doc__=cls.__doc__, **fields)


ProjectOut = _from_dataclass(Project, "Project")
ScheduleOut = _from_dataclass(Schedule, "Schedule")
HostOut = _from_dataclass(Host, "Host")


class ErrorBody(Answer):
    """The error's stable code and one-line message."""

    code: str
    message: str


class Error(Answer):
    """Every error: a stable code and a one-line message, with the right HTTP status."""

    error: ErrorBody


# -- tasks ---------------------------------------------------------------------------------------

Task = TaskRecord


class TaskList(Answer):
    """Tasks newest first: a page, or every match."""

    tasks: list[Task]  # type: ignore[valid-type]
    total: int = Field(description="Every match, not only this page.")
    limit: int | None = Field(description="The page size asked for (null: every match).")
    offset: int
    next_before: str | None = Field(
        description="The cursor of the next page (?before=), null on the last."
    )


RetriedTask = pydantic.create_model(
    "RetriedTask",
    __base__=TaskRecord,
    __doc__="The task queued again; with cascade, every id re-queued.",
    requeued=(list[str] | None, None),
)
NamedTask = pydantic.create_model(
    "BatchMember",
    __base__=TaskRecord,
    __doc__="A task of a batch, with its name there.",
    name=(str, ...),
)


class LogEvent(Answer):
    """One display event rendered from one line of agent output."""

    kind: str
    text: str
    tool: str | None
    target: str | None
    is_error: bool
    data: dict[str, Any]


class LogChunk(Answer):
    """The hub's copy of a task's output from ``offset``, as text and as events."""

    task_id: str
    offset: int
    next_offset: int
    text: str
    events: list[LogEvent]
    status: TaskStatus
    done: bool


class TaskCounts(Answer):
    """Tasks running, pending and in draft now."""

    running: int
    pending: int
    draft: int


class Health(Answer):
    """The hub's liveness summary."""

    ok: bool
    version: str
    uptime_s: float
    hosts: int
    pid: int
    tasks: TaskCounts


# -- projects, hosts, schedules, batches ---------------------------------------------------------


class ProjectList(Answer):
    """Every registered project."""

    projects: list[ProjectOut]  # type: ignore[valid-type]


HostView = pydantic.create_model(
    "HostView",
    __base__=HostOut,
    __doc__="An inventory host with its last known state and the tasks running there.",
    reachable=(bool | None, None),
    last_contact=(str | None, None),
    error=(str | None, None),
    versions=(dict[str, str], {}),
    is_root=(bool | None, None),
    running=(list[str], []),
    removed=(
        bool,
        Field(False, description="Left the inventory while tasks still run there (retired)."),
    ),
    note=(str | None, Field(None, description="Why a removed host is still listed.")),
)


class InventoryInfo(Answer):
    """Where the inventory came from and its last reload error."""

    files: list[str]
    error: str | None
    loaded_at: str | None


class HostsView(Answer):
    """Every inventory host with its state."""

    hosts: list[HostView]  # type: ignore[valid-type]
    inventory: InventoryInfo


class SpokeList(Answer):
    """Hosts added through /spokes/register."""

    spokes: list[HostOut]  # type: ignore[valid-type]


class ScheduleList(Answer):
    """Every schedule with its next fire."""

    schedules: list[ScheduleOut]  # type: ignore[valid-type]


BatchSummary = _from_dataclass(
    Batch,
    "BatchSummary",
    without=("tasks",),
    total=(int, ...),
    counts=(dict[str, int], ...),
    cost_usd=(float, ...),
    done=(bool, ...),
)
BatchView = pydantic.create_model(
    "BatchView",
    __base__=BatchSummary,
    __doc__="A batch and its tasks.",
    tasks=(list[NamedTask], ...),  # type: ignore[valid-type]
)


class BatchList(Answer):
    """Every batch with its counts, newest first."""

    batches: list[BatchSummary]  # type: ignore[valid-type]


class SessionList(Answer):
    """Interactive sessions, newest first."""

    sessions: list[Task]  # type: ignore[valid-type]


# -- results -------------------------------------------------------------------------------------


class TokenTotals(Answer):
    """Tokens by kind."""

    input: int
    output: int
    cache_read: int
    cache_write: int


def _result_fields() -> dict[str, Any]:
    fields = TaskRecord.model_fields
    return {k: (fields[k].annotation, ...) for k in RESULT_KEYS}


ResultOut = pydantic.create_model(
    "Result",
    __base__=Answer,
    __doc__="What a task produced, with its follow-up chain.",
    task_id=(str, ...),
    tokens=(TokenTotals, ...),
    duration_s=(float | None, ...),
    parent=(str | None, ...),
    chain=(list[str], ...),
    followups=(list[str], ...),
    **_result_fields(),
)


class ResultList(Answer):
    """Results of finished tasks newest first: a page, or every match."""

    results: list[ResultOut]  # type: ignore[valid-type]
    total: int = Field(description="Every match, not only this page.")
    limit: int | None = Field(description="The page size asked for (null: every match).")
    offset: int


class Command(Answer):
    """One shell command the agent ran."""

    command: str
    exit_code: int | None
    status: str


class DetailStatus(Answer):
    """What the task's agent is doing now (or did), from its output so far."""

    task_id: str
    status: TaskStatus
    reason: str | None
    backend: str
    host: str | None
    started_at: str | None
    finished_at: str | None
    elapsed_s: float | None
    exit_code: int | None
    step: str | None
    last_tool: str | None
    last_target: str | None
    last_message: str | None
    last_error: str | None
    files: dict[str, list[str]]
    commands: list[Command]
    commands_total: int
    tokens: TokenTotals
    cost_usd: float | None
    cost_estimated: bool
    turns: int | None
    retries: int
    last_retry: str | dict[str, Any] | None
    session_id: str | None
    model: str | None
    lines: int


class Artifact(Answer):
    """One file a task brought back."""

    name: str
    size: int


class ArtifactList(Answer):
    """A task's artifacts."""

    task_id: str
    artifacts: list[Artifact]


class DiffFile(Answer):
    """One file of a diff stat (added/deleted are null for a binary file)."""

    path: str
    status: str
    added: int | None
    deleted: int | None


class DiffStat(Answer):
    """What a task's branch changed."""

    files: list[DiffFile]
    files_changed: int
    insertions: int
    deletions: int


class Diff(Answer):
    """A task's diff (base..head) with its stat."""

    task_id: str
    branch: str | None
    base_commit: str | None
    head_commit: str | None
    diff_stat: DiffStat | None
    diff: str
    truncated: bool


class Merge(Answer):
    """The outcome of merging a task's branch into its project."""

    task_id: str
    merged: bool
    already: bool
    branch: str
    into: str
    commit: str | None


class StatGroup(Answer):
    """Counts, cost and tokens of one group of tasks."""

    tasks: int
    completed: int
    failed: int
    cancelled: int
    cost_usd: float
    cost_unknown: int
    tokens: TokenTotals
    success_rate: float | None


class Timing(Answer):
    """Average and longest of some durations, in seconds."""

    avg: float | None
    max: float | None
    count: int


class Queue(Answer):
    """What waits now, and for what."""

    pending: int
    running: int
    draft: int
    waiting_on: dict[str, int]


class Stats(Answer):
    """Stats and cost accounting over the tasks of a window."""

    generated_at: str
    since: str | None
    project: str | None
    tasks: int
    by_status: dict[str, int]
    success_rate: float | None
    cost_usd: float
    cost_unknown: int
    tokens: TokenTotals
    by_project: dict[str, StatGroup]
    by_backend: dict[str, StatGroup]
    by_model: dict[str, StatGroup]
    by_host: dict[str, StatGroup]
    by_day: dict[str, StatGroup]
    queue: Queue
    wait_s: Timing
    run_s: Timing


class ImportReport(Answer):
    """What an import stored and skipped."""

    imported: int
    skipped_existing: list[str]
    skipped_unfinished: list[str]


class Freed(Answer):
    """A task directory freed (or that would be) on a host."""

    task_id: str
    host: str
    bytes: int


class Busy(Answer):
    """A task directory kept: a follow-up still uses it."""

    task_id: str
    host: str


class HostError(Answer):
    """A host gc could not clean."""

    host: str
    error: str


class GcReport(Answer):
    """What host cleanup freed."""

    dry_run: bool
    older_than_s: float
    freed_bytes: int
    tasks: list[Freed]
    busy: list[Busy]
    errors: list[HostError]


# -- machines ------------------------------------------------------------------------------------


class Check(Answer):
    """One line of a host check."""

    name: str
    status: str
    message: str


class Bootstrap(Answer):
    """What bootstrapping a host did: lines starting ✓ (done), ! (to do) or ✗ (failed)."""

    host: str
    ok: bool
    lines: list[str]


class HostCheck(Answer):
    """Every check of one host."""

    host: str
    target: str
    ok: bool
    checks: list[Check]


class GpuProcess(Answer):
    """A compute process on a GPU and its task."""

    pid: int
    used_memory: int | None
    task_id: str | None


class GpuView(Answer):
    """One GPU with its users and whether it is free."""

    index: int
    uuid: str
    name: str
    utilization: float | None
    memory_used: int | None
    memory_total: int | None
    temperature: float | None
    power_draw: float | None
    processes: list[GpuProcess]
    tasks: list[str]
    reserved_by: str | None
    busy: bool
    free: bool


class SlurmPartition(Answer):
    """A Slurm host's partition(s) as Slurm accounts them (sinfo)."""

    partitions: list[str]
    nodes: int
    nodes_available: int
    gpus: int
    gpus_free: int
    max_gpus_per_node: int
    unavailable: dict[str, str] = Field(description="Node → its state (and reason).")


class GpuHost(Answer):
    """The GPUs of one host, or why there are none."""

    host: str
    checked_at: str | None
    reason: str | None
    source: str | None
    gpus: list[GpuView]
    slurm: SlurmPartition | None = None  # a connection: slurm host only
    history: list[dict[str, Any]] | None = None


class Thresholds(Answer):
    """Above these a GPU counts as busy."""

    max_utilization: float
    max_memory_fraction: float


class Gpus(Answer):
    """GPUs of every GPU host."""

    hosts: list[GpuHost]
    polls: int
    interval: float
    thresholds: Thresholds


# -- dashboard -----------------------------------------------------------------------------------


class DashboardConfig(Answer):
    """Public settings and which views the dashboard may show."""

    version: str
    hub_url: str | None
    github_url: str | None
    timezone: str | None
    auth: bool
    features: dict[str, bool]


class HeatmapRow(Answer):
    """Completed tasks of one project per day."""

    project: str
    total: int
    days: dict[str, int]


class HeatmapTotal(Answer):
    """Completed tasks per day, all projects."""

    total: int
    days: dict[str, int]


class Heatmap(Answer):
    """Completed tasks per project per day."""

    start: str
    end: str
    days: int
    timezone: str
    projects: list[HeatmapRow]
    total: HeatmapTotal
    max: int


class UsageRow(Answer):
    """Tokens and cost of one backend in a window, with its configured limit."""

    backend: str
    tasks: int
    cost_usd: float
    tokens: dict[str, int]
    limit: dict[str, float] | None


class UsageWindow(Answer):
    """Usage per backend over a rolling window."""

    name: str
    hours: float
    since: str
    backends: list[UsageRow]


class UsageDay(Answer):
    """Cost per backend on one day."""

    date: str
    cost_usd: dict[str, float]
    total: float


class Usage(Answer):
    """Tokens and cost per backend over 5h and 7d, and cost per day."""

    now: str
    timezone: str
    backends: list[str]
    windows: list[UsageWindow]
    days: list[UsageDay]


class Step(Answer):
    """A running task's current step."""

    kind: str | None
    text: str
    tool: str | None
    is_error: bool


class Live(Answer):
    """The current step (and detail) of every running task."""

    steps: dict[str, Step | None]
    details: dict[str, dict[str, Any]]


class State(Answer):
    """One status of a task on the time axis."""

    status: str
    start: str
    end: str


class TimelineStep(Answer):
    """One tool call, command or file change on the time axis."""

    kind: str
    tool: str | None
    label: str
    is_error: bool
    start: str
    end: str
    duration_s: float


class Timeline(Answer):
    """A task's states and steps on a time axis."""

    task_id: str
    start: str | None
    end: str
    states: list[State]
    steps: list[TimelineStep]
    approximate: bool
    truncated: bool


# -- usage limits and budgets (GET /usage) -------------------------------------------------------


class UsageAccount(Answer):
    """One account (backend/name): its hosts, its limit if any, its windows, waiting tasks."""

    account: str
    backend: str
    name: str | None
    hosts: list[str]
    limited: bool
    limited_until: str | None
    resumes_in: str | None
    limit: dict[str, Any] | None = Field(description="The last limit it hit (ISO times).")
    windows: list[dict[str, Any]] = Field(
        description="Usage windows as the agent reported them, or the configured guess "
        "(source: configured)."
    )
    backoff_level: int
    waiting: list[str] = Field(description="Tasks waiting for this account's limit to reset.")


class BudgetWindow(Answer):
    cap: float
    spent: float


class UsageBudget(Answer):
    """Spend caps of the hub or of one project, and what was spent in each window."""

    scope: str
    project: str | None
    windows: dict[str, BudgetWindow]
    over: str | None


class UsageSettings(Answer):
    quota_grace: float
    quota_backoff: float
    max_quota_wait: float


class UsageView(Answer):
    """``GET /usage``: accounts' windows and limits, budgets, tasks waiting on them."""

    now: str
    accounts: list[UsageAccount]
    budgets: list[UsageBudget]
    budget_waiting: list[str]
    settings: UsageSettings
