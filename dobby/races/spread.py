"""How a race's K attempts are spread, and what bounds them (pure).

Attempt ``i`` takes the ``i``-th backend, model and host of the lists it was given, each list
used round-robin (``--backends claude,codex`` with K=3: claude, codex, claude). A list not
given leaves that choice to the task's defaults and to placement: without ``--hosts``, the
scheduler puts each attempt on the least-loaded eligible host, so K attempts on K idle hosts
land on K different ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dobby.core.models import Task


@dataclass(frozen=True)
class Slot:
    """What one attempt was asked to use (None: the task's default / the scheduler's choice)."""

    slot: int
    backend: str | None = None
    model: str | None = None
    host: str | None = None


def slots(
    k: int, *, backends: Sequence[str] = (), models: Sequence[str] = (), hosts: Sequence[str] = ()
) -> list[Slot]:
    """Return the K attempts' choices, each list taken round-robin."""
    return [
        Slot(
            slot=i,
            backend=backends[i % len(backends)] if backends else None,
            model=models[i % len(models)] if models else None,
            host=hosts[i % len(hosts)] if hosts else None,
        )
        for i in range(k)
    ]


def budget(
    tasks: Sequence[Task], *, honours: Mapping[str, bool]
) -> tuple[dict[str, Any], list[str]]:
    """Return the race's spending bound and what the user should know about it.

    ``honours[backend]`` says whether that backend stops itself at ``max_budget_usd``. Each
    attempt may run 1 + fix_attempts times, each run up to its budget: the bound is their sum,
    and it exists only when every run has a budget its backend honours.
    """
    warnings: list[str] = []
    per_run = [t.max_budget_usd for t in tasks]
    runs = sum(1 + t.fix_attempts for t in tasks)
    unbounded = [t for t in tasks if t.max_budget_usd is None or not honours.get(t.backend, False)]
    out: dict[str, Any] = {
        "per_run_usd": per_run[0] if per_run and len(set(per_run)) == 1 else None,
        "max_runs": runs,
        "max_usd": None,
    }
    if not unbounded:
        spend = sum((t.max_budget_usd or 0) * (1 + t.fix_attempts) for t in tasks)
        out["max_usd"] = round(spend, 6)
        if runs > len(tasks):
            warnings.append(
                f"fix rounds: up to {runs} runs in all, so this race may spend up to "
                f"${out['max_usd']:g} (the task's budget × {runs}, not × {len(tasks)})"
            )
        return out, warnings
    if any(t.max_budget_usd is not None for t in tasks):
        names = sorted({t.backend for t in unbounded if t.max_budget_usd is not None})
        if names:
            warnings.append(
                f"{', '.join(names)} ignores max_budget_usd: its attempts are not bounded by it, "
                "so the race may spend more than the task's budget × K"
            )
        if any(t.max_budget_usd is None for t in unbounded):
            warnings.append(
                "some attempts have no max_budget_usd: the race's spending is unbounded"
            )
    return out, warnings


def capacity_warnings(
    k: int, *, project: str | None, project_limit: int | None, max_total: int, hosts: int
) -> list[str]:
    """Return why the K attempts might not all run at once (they still all run, in turn)."""
    out: list[str] = []
    if project is not None and project_limit is not None and project_limit < k:
        out.append(
            f"project {project} runs {project_limit} task(s) at a time (max_concurrent): the "
            f"{k} attempts take turns; `dobby projects set {project} max_concurrent={k}` runs "
            "them side by side"
        )
    if max_total < k:
        out.append(f"the hub runs at most {max_total} task(s) at once (max_concurrent_agents)")
    if 0 < hosts < k:
        out.append(f"{k} attempts on {hosts} eligible host(s): some attempts share a host")
    return out
