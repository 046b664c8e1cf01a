"""The shapes of the race API, declared once as pydantic models: what ``POST /races`` takes and
what ``GET /races/{id}`` answers. The OpenAPI document's race schemas are generated from them,
and tests check real answers against them (``extra="forbid"``: a field the hub adds without
declaring it here fails)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

from dobby.core.errors import ValidationError
from dobby.core.fields import Globs, Gpus, Names, before, bounds, choice, ints, str_list
from dobby.core.models import BackendName
from dobby.core.shapes import PICKS, TaskFields

MAX_INT = 2**53 - 1
Pick = Literal["first", "smallest", "cheapest"]


def _list(value: Any, info: ValidationInfo) -> Any:
    names = str_list(value, info.field_name or "backends")
    for name in names:
        if name not in tuple(BackendName):
            raise ValidationError(
                f"invalid backend '{name}' (choose {', '.join(b.value for b in BackendName)})"
            )
    return names


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RaceCreate(TaskFields):
    """``POST /races``: the task every attempt runs, and how the attempts are spread and judged.

    The fields of ``POST /tasks`` but ``resume``, ``draft``, ``agent_plan`` and ``permissions``
    (a race needs a check, and a read-only run has nothing to check), plus the race's own. The
    hub checks a body with :func:`dobby.core.shapes.validate_race` and each attempt as a submit.
    """

    k: Annotated[int, before(ints(1, MAX_INT), int | str), bounds(minimum=1)] = Field(
        description="How many attempts (at most the hub's max_race, 8 by default)."
    )
    pick: Annotated[Pick, before(choice(PICKS), Pick)] = Field(
        "first",
        description="first: the first attempt to pass wins, the others are cancelled; "
        "smallest / cheapest: once all ended, the passing one with the smallest diff / cost.",
    )
    backends: Annotated[list[BackendName], before(_list, list[BackendName] | str)] = Field(
        default_factory=list, description="Round-robin per attempt."
    )
    models: Names = Field(default_factory=list, description="Round-robin per attempt.")
    hosts: Names = Field(
        default_factory=list, description="Round-robin per attempt; each host named once."
    )
    artifacts: Globs | None = Field(None, description="Globs of files to bring back.")
    gpus: Gpus | None = Field(None, description="GPUs each attempt needs on its host.")


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
