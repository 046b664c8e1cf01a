"""The comparison of a race's attempts, one column each: what ``GET /races/{id}`` answers (pure).

Per attempt: backend, model, host, duration, cost, tokens, diff stat, the check's result and
the end of its output, and where its diff is. Sums over the lane (first run and fix rounds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dobby.core.models import Race, Tokens
from dobby.core.timefmt import seconds_between, utcnow
from dobby.races.pick import Lane


def lane_tokens(lane: Lane) -> Tokens:
    """Return the tokens of every run of the lane."""
    total = Tokens()
    for task in lane.tasks:
        total.input += task.tokens.input
        total.output += task.tokens.output
        total.cache_read += task.tokens.cache_read
        total.cache_write += task.tokens.cache_write
    return total


def lane_duration(lane: Lane, now: str) -> float | None:
    """Return seconds from the lane's first start to its end (or now, while it runs)."""
    start = next((t.started_at for t in lane.tasks if t.started_at), None)
    end = lane.last.finished_at if lane.ended else now
    duration = seconds_between(start, end)
    return round(duration, 3) if duration is not None else None


def column(race: Race, lane: Lane, entry: Mapping[str, Any], *, now: str) -> dict[str, Any]:
    """Return one attempt's column."""
    last = lane.last
    verify = last.verify_result or None
    return {
        "slot": lane.slot,
        "n": lane.slot + 1,
        "state": lane.state,
        "winner": race.winner is not None and race.winner == last.id,
        "task_id": last.id,
        "tasks": [t.id for t in lane.tasks],
        "rounds": len(lane.tasks),
        "backend": last.backend,
        "model": last.model or (last.models[0] if last.models else None),
        "host": last.host or entry.get("host"),
        "status": last.status,
        "reason": last.reason,
        "error": last.error,
        "started_at": next((t.started_at for t in lane.tasks if t.started_at), None),
        "finished_at": last.finished_at if lane.ended else None,
        "duration_s": lane_duration(lane, now),
        "cost_usd": lane.cost_usd,
        "tokens": lane_tokens(lane).to_dict(),
        "diff_stat": entry.get("diff_stat") or last.diff_stat,
        "branch": last.branch,
        "verify": verify,
        "links": {"diff": f"/tasks/{last.id}/diff", "dashboard": f"#/tasks/{last.id}/diff"},
    }


def view(race: Race, lanes: Sequence[Lane], *, now: str | None = None) -> dict[str, Any]:
    """Return the race with one column per attempt and its totals."""
    now = now or utcnow()
    entries = {int(e.get("slot", i)): e for i, e in enumerate(race.attempts)}
    columns = [column(race, lane, entries.get(lane.slot, {}), now=now) for lane in lanes]
    costs = [c["cost_usd"] for c in columns]
    tokens = Tokens()
    for lane in lanes:
        t = lane_tokens(lane)
        tokens.input += t.input
        tokens.output += t.output
        tokens.cache_read += t.cache_read
        tokens.cache_write += t.cache_write
    out = race.to_dict()
    out["attempts"] = columns
    out["cost_usd"] = None if any(c is None for c in costs) else round(sum(costs), 6)
    out["tokens"] = tokens.to_dict()
    out["duration_s"] = seconds_between(race.created_at, race.finished_at or now)
    out["counts"] = {s: sum(1 for c in columns if c["state"] == s) for s in _states(columns)}
    return out


def _states(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(c["state"]) for c in columns})


def summary_line(race: Mapping[str, Any]) -> str:
    """Return one line about a race view: its status, winner and counts."""
    attempts = race.get("attempts") or []
    head = f"race {race['id']} {race['status']}"
    if race.get("winner"):
        win = next((a for a in attempts if a.get("winner")), None)
        if win:
            head += f": #{win['n']} {win['backend']} on {win['host']} won"
        if race.get("branch"):
            head += f" (branch {race['branch']})"
    elif race.get("error"):
        head += f": {race['error']}"
    return head
