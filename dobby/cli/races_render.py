"""Turn race JSON into terminal lines: what started, the comparison table, check tails (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dobby.cli import render
from dobby.cli.results_render import VERIFY_TAIL_LINES, changes, tail_lines
from dobby.core.timefmt import format_duration

PICK_WORDS = {
    "first": "the first attempt whose check passes wins",
    "smallest": "once all ended, the passing attempt with the smallest diff wins",
    "cheapest": "once all ended, the cheapest passing attempt wins",
}


def started_lines(race: Mapping[str, Any]) -> list[str]:
    """Return what ``dobby add --race`` prints: the race, its rule, each attempt, warnings."""
    lines = [
        f"race {race['id']}: {race['k']} attempts, {PICK_WORDS.get(race['pick'], race['pick'])}",
        f"  check: {render.clean(race.get('verify'))}",
    ]
    for col in race.get("attempts") or []:
        where = col.get("host") or "any host"
        model = f" {render.clean(col['model'])}" if col.get("model") else ""
        lines.append(f"  #{col['n']} {col['backend']}{model} on {where}: task {col['task_id']}")
    budget = race.get("budget") or {}
    if budget.get("max_usd") is not None:
        lines.append(f"  spends at most ${budget['max_usd']:g} ({budget['max_runs']} runs)")
    lines += [f"! {render.clean(w)}" for w in race.get("warnings") or []]
    lines.append(f"follow it: dobby race {race['id']}")
    return lines


def comparison_lines(race: Mapping[str, Any], *, width: int) -> list[str]:
    """Return ``dobby race ID``: the race, a table with one column per attempt, check tails."""
    cols = race.get("attempts") or []
    head = f"race {race['id']} {race['status']}"
    if race.get("reason"):
        head += f" ({race['reason']})"
    lines = [
        head + f" · {PICK_WORDS.get(race['pick'], race['pick'])}",
        f"check: {render.clean(race.get('verify'))}",
        f"title: {render.clean(race.get('title'))}",
    ]
    if race.get("winner"):
        branch = race.get("branch") or "no branch (nothing changed)"
        lines.append(f"winner: task {race['winner']} · {branch} · `dobby merge {race['id']}`")
    elif race.get("error"):
        lines.append(f"error: {render.clean(race['error'])}")
    headers = ["", *(f"#{c['n']}" + (" ★" if c.get("winner") else "") for c in cols)]
    rows = [[label, *(cell(c, key) for c in cols)] for label, key in ROWS]
    lines.append("")
    lines += render.render_table(headers, rows, width=width, max_col=28)
    lines += [f"! {render.clean(w)}" for w in race.get("warnings") or []]
    for c in cols:
        verify = c.get("verify") or {}
        if verify.get("tail"):
            lines.append(f"#{c['n']} check output (end), task {c['task_id']}:")
            lines += ["  " + ln for ln in tail_lines(verify["tail"], VERIFY_TAIL_LINES)]
    total = race.get("cost_usd")
    lines.append(f"total: {render.format_cost(total)} · {format_duration(race.get('duration_s'))}")
    return lines


ROWS: Sequence[tuple[str, str]] = (
    ("state", "state"),
    ("backend", "backend"),
    ("model", "model"),
    ("host", "host"),
    ("task", "task_id"),
    ("rounds", "rounds"),
    ("duration", "duration_s"),
    ("cost", "cost_usd"),
    ("tokens", "tokens"),
    ("diff", "diff_stat"),
    ("check", "verify"),
)


def cell(col: Mapping[str, Any], key: str) -> str:
    """Return one attempt's value for a row of the comparison table."""
    value = col.get(key)
    if key == "duration_s":
        return format_duration(value) if value is not None else "-"
    if key == "cost_usd":
        return render.format_cost(value)
    if key == "tokens":
        t = value or {}
        return f"{t.get('input', 0)} in / {t.get('output', 0)} out"
    if key == "diff_stat":
        return changes(value)
    if key == "verify":
        v = value or {}
        if not v:
            return "-"
        took = v.get("duration_ms")
        extra = f" {format_duration(took / 1000)}" if isinstance(took, int | float) else ""
        code = "" if v.get("exit_code") is None else f" exit {v['exit_code']}"
        return f"{v.get('status')}{code}{extra}"
    if key == "rounds":
        return "1" if value == 1 else f"{value} (fix rounds)"
    return render.clean(value) if value not in (None, "") else "-"
