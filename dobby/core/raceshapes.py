"""The shapes of the race API, declared once as pydantic models: what ``POST /races`` takes and
what ``GET /races/{id}`` answers. The OpenAPI document's race schemas are generated from them,
and tests check real answers against them (``extra="forbid"``: a field the hub adds without
declaring it here fails)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["claude", "codex", "shell"]
Duration = float | str


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RaceCreate(_Shape):
    """``POST /races``: the task every attempt runs, and how the attempts are spread and judged.

    Every field of ``POST /tasks`` but ``resume``, ``draft`` and ``agent_plan`` is accepted; the
    most used are declared here.
    """

    prompt: str = Field(description="What every attempt's agent is asked.")
    k: int = Field(ge=1, description="How many attempts (at most the hub's max_race, 8).")
    verify: str | None = Field(
        None, description="The check judging each attempt (default: the project's)."
    )
    pick: Literal["first", "smallest", "cheapest"] = Field(
        "first",
        description="first: the first attempt to pass wins, the others are cancelled; "
        "smallest / cheapest: once all ended, the passing one with the smallest diff / cost.",
    )
    backends: list[Backend] = Field(default_factory=list, description="Round-robin per attempt.")
    models: list[str] = Field(default_factory=list, description="Round-robin per attempt.")
    hosts: list[str] = Field(
        default_factory=list, description="Round-robin per attempt; each host named once."
    )
    project: str | None = Field(None, description="Registered project (the check needs one).")
    backend: Backend | None = Field(None, description="Backend of attempts not given one.")
    model: str | None = None
    priority: Literal["urgent", "high", "normal", "low"] | None = None
    host: str | None = Field(None, description="Every attempt on this host (or use hosts).")
    labels: list[str] = Field(default_factory=list)
    timeout: Duration | None = Field(None, description="Each run's time limit.")
    title: str | None = None
    verify_timeout: Duration | None = Field(None, description="The check's time limit.")
    fix_attempts: int | None = Field(
        None, ge=0, le=10, description="Fix rounds per attempt after a failed check."
    )
    artifacts: list[str] | None = None
    after: list[str] = Field(default_factory=list)
    wait_for_host: bool | None = None
    gpus: int | None = Field(None, ge=0)


class VerifyOut(_Shape):
    """A check's result on a task (``verify_result``)."""

    status: Literal["passed", "failed", "timeout", "skipped"]
    exit_code: int | None = None
    duration_ms: int | None = None
    tail: str = ""
    offset: int | None = None


class DiffFile(_Shape):
    path: str
    status: str
    added: int | None
    deleted: int | None


class DiffStat(_Shape):
    files: list[DiffFile]
    files_changed: int
    insertions: int
    deletions: int


class TokensOut(_Shape):
    input: int
    output: int
    cache_read: int
    cache_write: int


class RaceLinks(_Shape):
    diff: str = Field(description="The API route of the attempt's diff.")
    dashboard: str = Field(description="The dashboard page of the attempt's diff (a hash).")


class RaceColumn(_Shape):
    """One attempt of a race, summed over its lane (its first run and its fix rounds)."""

    slot: int
    n: int = Field(description="slot + 1, as people count.")
    state: Literal["pending", "running", "passed", "failed", "cancelled"]
    winner: bool
    task_id: str = Field(description="The lane's last task.")
    tasks: list[str] = Field(description="The lane: first run, then each fix round.")
    rounds: int
    backend: str
    model: str | None
    host: str | None
    status: str
    reason: str | None
    error: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    cost_usd: float | None = Field(description="Null when a run's model has no price.")
    tokens: TokensOut
    diff_stat: DiffStat | None
    branch: str | None
    verify: VerifyOut | None
    links: RaceLinks


class RaceBudget(_Shape):
    per_run_usd: float | None = None
    max_runs: int | None = None
    max_usd: float | None = Field(
        None, description="max_budget_usd × runs; null when some run is not bounded."
    )


class RaceView(_Shape):
    """A race with one column per attempt and its totals."""

    id: str
    title: str
    prompt: str
    verify: str
    k: int
    project: str | None
    pick: Literal["first", "smallest", "cheapest"]
    status: Literal["running", "completed", "failed", "cancelled"]
    reason: str | None
    error: str | None
    attempts: list[RaceColumn]
    winner: str | None
    winner_slot: int | None
    branch: str | None
    budget: RaceBudget
    warnings: list[str]
    created_at: str
    finished_at: str | None
    settled: bool
    cost_usd: float | None
    tokens: TokensOut
    duration_s: float | None
    counts: dict[str, int]


class RaceList(_Shape):
    races: list[RaceView]


class RaceMerged(_Shape):
    """``POST /races/{id}/merge``: the winner's merge."""

    race_id: str
    task_id: str
    merged: bool
    already: bool
    branch: str
    into: str
    commit: str
