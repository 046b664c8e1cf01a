"""Answers to ``status``, ``summary``, ``running``, ``projects`` and ``help`` (Slack mrkdwn)."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from typing import Any

from dobby.client.http import HubClient
from dobby.core.timefmt import format_duration, parse_time
from dobby.integrations.slack.parser import Command

MAX_LINES = 25
FETCH_LIMIT = 1000
EMOJI = {
    "draft": ":memo:",
    "pending": ":hourglass_flowing_sand:",
    "running": ":runner:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
}

HELP = """*Dobby* — mention me with work or a command:
• `@Dobby fix the login bug in spare` — a task (I post a preview: ✅ submits, ❌ cancels, \
a reply in the thread edits it)
• modifiers: `in PROJECT`, `on HOST`, `on a gpu host` (label), `using codex|claude|shell`, \
`high priority` / `urgent` / `low priority`, `with model M`, `with a 30m timeout`
• a bullet list (`- …` lines) is a batch; the text above the list sets defaults for every bullet
• `status` (last 4h) · `status 12h` · `summary` (last 12h) · `summary spare 24h` · `running` \
· `projects` · `help`
When a task I submitted finishes, fails or needs approval, I reply in its thread."""


def cost(value: Any) -> str:
    """Format a cost in USD; unknown costs read ``$?``."""
    return f"${value:.4f}" if isinstance(value, int | float) else "$?"


def first_line(text: str | None, limit: int = 140) -> str:
    """Return the first non-empty line of ``text``, shortened."""
    line = next((x.strip() for x in (text or "").splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def task_link(hub_url: str, task_id: str) -> str:
    """Return the Slack link to the task's (or, for an ``r-`` id, the race's) dashboard page."""
    view = "races" if task_id.startswith("r-") else "tasks"
    return f"<{hub_url.rstrip('/')}/dashboard#/{view}/{task_id}|{task_id}>"


def _last_activity(task: dict[str, Any]) -> _dt.datetime | None:
    times = [task.get(k) for k in ("finished_at", "started_at", "created_at")]
    parsed = []
    for value in times:
        try:
            parsed.append(parse_time(value)) if value else None
        except ValueError:
            continue
    return max(parsed) if parsed else None


def in_window(
    tasks: list[dict[str, Any]], window_s: float, now: _dt.datetime
) -> list[dict[str, Any]]:
    """Return the tasks with activity in the last ``window_s`` seconds, plus any still running."""
    since = now - _dt.timedelta(seconds=window_s)
    out = []
    for task in tasks:
        seen = _last_activity(task)
        if task.get("status") == "running" or (seen is not None and seen >= since):
            out.append(task)
    return out


def _id(task: dict[str, Any]) -> str:
    """Return the id of a task (``id``) or of a result (``task_id``)."""
    return str(task.get("id") or task.get("task_id"))


def _line(task: dict[str, Any], hub_url: str) -> str:
    status = str(task.get("status"))
    where = " · ".join(
        str(x) for x in (task.get("project"), task.get("backend"), task.get("host")) if x
    )
    tail = f" · {cost(task.get('cost_usd'))}" if task.get("cost_usd") is not None else ""
    return (
        f"• {EMOJI.get(status, '')} {task_link(hub_url, _id(task))} *{status}* "
        f"{where} — {first_line(task.get('title') or task.get('prompt'), 80)}{tail}"
    )


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"…and {len(lines) - MAX_LINES} more"]


def format_status(
    tasks: list[dict[str, Any]], window_s: float, hub_url: str, project: str | None
) -> str:
    """Return the ``status`` answer: one bullet per task active in the window."""
    scope = f" in *{project}*" if project else ""
    head = f"*Tasks{scope} in the last {format_duration(window_s)}* ({len(tasks)})"
    if not tasks:
        return head + "\nNothing happened."
    return "\n".join([head, *_capped([_line(t, hub_url) for t in tasks])])


def format_summary(
    tasks: list[dict[str, Any]], window_s: float, hub_url: str, project: str | None
) -> str:
    """Return the ``summary`` answer from results: counts, cost and each one's summary line."""
    scope = f" of *{project}*" if project else ""
    head = f"*Summary{scope} for the last {format_duration(window_s)}*"
    if not tasks:
        return head + "\nNo tasks."
    counts = Counter(str(t.get("status")) for t in tasks)
    known = [t["cost_usd"] for t in tasks if isinstance(t.get("cost_usd"), int | float)]
    unknown = sum(
        1 for t in tasks if t.get("status") in ("completed", "failed") and t.get("cost_usd") is None
    )
    total = f"${sum(known):.4f}" + (f" (+{unknown} without a known cost)" if unknown else "")
    order = ["completed", "failed", "cancelled", "running", "pending", "draft"]
    count_text = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    lines = [head, f"{len(tasks)} tasks: {count_text} · cost {total}"]
    for task in tasks:
        if task.get("status") not in ("completed", "failed"):
            continue
        said = first_line(task.get("summary") or task.get("error")) or "(no summary)"
        reason = f" ({task['reason']})" if task.get("reason") else ""
        lines.append(
            f"• {EMOJI.get(str(task['status']), '')} {task_link(hub_url, _id(task))} "
            f"{task.get('project') or '-'}{reason}: {said} · {cost(task.get('cost_usd'))}"
        )
    return "\n".join(_capped(lines))


def format_running(tasks: list[dict[str, Any]], hub_url: str, now: _dt.datetime) -> str:
    """Return the ``running`` answer: each running task with its host and elapsed time."""
    if not tasks:
        return "Nothing is running."
    lines = [f"*Running* ({len(tasks)})"]
    for task in tasks:
        started = task.get("started_at")
        elapsed = format_duration((now - parse_time(started)).total_seconds()) if started else "-"
        lines.append(
            f"• {task_link(hub_url, _id(task))} {task.get('project') or '-'} on "
            f"*{task.get('host') or '?'}* ({task.get('backend')}, {elapsed}) — "
            f"{first_line(task.get('title') or task.get('prompt'), 80)}"
        )
    return "\n".join(_capped(lines))


def format_projects(projects: list[dict[str, Any]]) -> str:
    """Return the ``projects`` answer."""
    if not projects:
        return "No projects yet: register one with `dobby register PATH --name NAME`."
    lines = [f"*Projects* ({len(projects)})"]
    for p in projects:
        context = f" — {first_line(p.get('context'), 100)}" if p.get("context") else ""
        lines.append(f"• *{p.get('name')}*{context}")
    return "\n".join(_capped(lines))


def run_command(command: Command, hub: HubClient, hub_url: str) -> str:
    """Fetch what a command needs from the hub and return the answer text."""
    now = _dt.datetime.now(_dt.UTC)
    if command.name == "help":
        return HELP
    if command.name == "projects":
        return format_projects(hub.projects().get("projects") or [])
    if command.name == "running":
        tasks = hub.tasks(project=command.project, status="running").get("tasks") or []
        return format_running(tasks, hub_url, now)
    window = command.window_s or 4 * 3600.0
    if command.name == "summary":
        results = hub.results(project=command.project, limit=FETCH_LIMIT).get("results") or []
        return format_summary(in_window(results, window, now), window, hub_url, command.project)
    tasks = hub.tasks(project=command.project, limit=FETCH_LIMIT).get("tasks") or []
    return format_status(in_window(tasks, window, now), window, hub_url, command.project)
