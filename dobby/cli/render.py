"""Turn hub JSON into lines for a terminal: tables, log events, task details (pure functions)."""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from dobby.core.errors import ValidationError
from dobby.core.notes import denials_text, task_notes
from dobby.core.timefmt import ago, format_duration, local_time, parse_time, seconds_between

STATUS_COLORS = {
    "draft": "white",
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
FINISHED = ("completed", "failed", "cancelled")
TASK_HEADERS = ["ID", "STATUS", "PROJECT", "BACKEND", "HOST", "AGE/DURATION", "COST", "TITLE"]
HOST_HEADERS = [
    "NAME",
    "CONN",
    "ADDRESS",
    "REACH",
    "TMUX",
    "GIT",
    "CLAUDE",
    "CODEX",
    "RUNNING",
    "LABELS",
]
# Control characters (ANSI escapes from agent output or titles) must not reach the terminal.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_VERSION = re.compile(r"\d+(?:\.\d+)+[a-z0-9.+-]*|\d+[a-z]\b")


def clean(text: Any, *, keep_newlines: bool = False) -> str:
    """Return ``text`` as a str without terminal control characters (newlines kept on request)."""
    value = "" if text is None else str(text)
    value = _CONTROL.sub("", value.replace("\r\n", "\n"))
    return value if keep_newlines else value.replace("\n", " ").replace("\t", " ")


def display_width(text: str) -> int:
    """Return how many terminal cells ``text`` takes (wide East Asian chars take two)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def truncate(text: str, width: int) -> str:
    """Shorten ``text`` to at most ``width`` cells, ending with ``…`` when cut."""
    if display_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    width: int | None = None,
    colors: Mapping[int, Callable[[str], str | None]] | None = None,
    max_col: int = 32,
) -> list[str]:
    """Lay out rows under headers; the last column is cut to fit ``width`` terminal cells."""
    cells = [[clean(c) for c in row] for row in rows]
    last = len(headers) - 1
    for row in cells:
        for i in range(last):
            row[i] = truncate(row[i], max_col)
    widths = [
        max([display_width(h)] + [display_width(r[i]) for r in cells])
        for i, h in enumerate(headers)
    ]
    if width is not None:
        room = width - sum(widths[:last]) - 2 * last
        for row in cells:
            row[last] = truncate(row[last], max(room, 8))
    lines = ["  ".join(_pad(h, widths[i]) if i < last else h for i, h in enumerate(headers))]
    for row in cells:
        parts = []
        for i, text in enumerate(row):
            padded = _pad(text, widths[i]) if i < last else text
            fg = colors[i](text) if colors and i in colors else None
            parts.append(click.style(padded, fg=fg) if fg else padded)
        lines.append("  ".join(parts).rstrip())
    return lines


def status_color(status: str) -> str | None:
    """Return the click color of a task status."""
    return STATUS_COLORS.get(status.split(" ")[0])


def format_cost(cost: float | None, unknown: str = "unknown") -> str:
    """Format a cost in USD as ``$0.0437`` (or ``unknown``)."""
    return unknown if cost is None else f"${cost:.4f}"


def format_tokens(tokens: Mapping[str, Any] | None) -> str:
    """Format token counts as ``in N · out N · cache read N · cache write N``."""
    t = tokens or {}
    return (
        f"in {t.get('input') or 0} · out {t.get('output') or 0} · "
        f"cache read {t.get('cache_read') or 0} · cache write {t.get('cache_write') or 0}"
    )


HELD = ("usage_limit", "budget")  # waits the CLI names in the status column


def countdown(task: Mapping[str, Any], now: _dt.datetime | None = None) -> str | None:
    """Return ``resumes in 12m04s`` for a task held until ``not_before`` (None otherwise)."""
    when = task.get("not_before")
    if task.get("status") != "pending" or not isinstance(when, str):
        return None
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        left = (parse_time(when) - now).total_seconds()
    except ValueError:
        return None
    return f"resumes in {format_duration(left)}" if left > 0 else "resumes now"


def age_or_duration(task: Mapping[str, Any], now: _dt.datetime | None = None) -> str:
    """Return how long a task ran (finished), runs (running) or has waited (otherwise)."""
    now = now or _dt.datetime.now(_dt.UTC)
    held = countdown(task, now)
    if held is not None:
        return held
    status, started = task.get("status"), task.get("started_at")
    if status in FINISHED:
        took = seconds_between(started, task.get("finished_at"))
        return format_duration(took) if took is not None else ago(task.get("finished_at"), now=now)
    if status == "running" and started:
        return format_duration((now - parse_time(started)).total_seconds())
    return ago(task.get("created_at"), now=now)


def task_rows(
    tasks: Sequence[Mapping[str, Any]], now: _dt.datetime | None = None
) -> list[list[str]]:
    """Return one row per task for :data:`TASK_HEADERS`."""
    rows = []
    for t in tasks:
        status = t.get("status") or "?"
        if status == "failed" and t.get("reason"):
            status = f"failed {t['reason']}"
        elif status == "pending" and t.get("waiting_on") in HELD:
            status = f"pending {t['waiting_on']}"
        rows.append(
            [
                t.get("id") or "?",
                status,
                t.get("project") or "-",
                t.get("backend") or "-",
                host_cell(t),
                age_or_duration(t, now),
                format_cost(t.get("cost_usd"), "-"),
                t.get("title") or "",
            ]
        )
    return rows


def host_cell(task: Mapping[str, Any]) -> str:
    """Return ``host``, plus ``gpu0,1 39.6GiB`` for a task holding GPUs (dobby.machines.gpu)."""
    cell = str(task.get("host") or "-")
    indices = task.get("gpu_indices") or []
    if indices:
        cell += " gpu" + ",".join(str(i) for i in indices)
    mem = task.get("gpu_memory_mib")
    if mem:
        cell += f" {mem / 1024:.1f}GiB"
    return cell


def short_version(value: str | None) -> str:
    """Return the version number in a ``--version`` answer (``tmux 3.3a`` → ``3.3a``)."""
    if not value:
        return "-"
    match = _VERSION.search(value)
    return match.group(0) if match else value


def host_rows(hosts: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Return one row per host for :data:`HOST_HEADERS`."""
    rows = []
    for h in hosts:
        conn = h.get("connection") or "ssh"
        address = "-" if conn == "local" else str(h.get("address") or h.get("name") or "-")
        if conn != "local" and h.get("port") not in (None, 22):
            address += f":{h['port']}"
        if conn != "local" and h.get("user"):
            address = f"{h['user']}@{address}"
        reach = {True: "yes", False: "no"}.get(h.get("reachable"), "?")  # type: ignore[arg-type]
        versions = h.get("versions") or {}
        rows.append(
            [
                h.get("name") or "?",
                conn,
                address,
                reach,
                *(short_version(versions.get(k)) for k in ("tmux", "git", "claude", "codex")),
                str(len(h.get("running") or [])),
                ",".join(h.get("labels") or []),
            ]
        )
    return rows


CHECK_MARKS = {
    "ok": ("✓", "green"),
    "warn": ("!", "yellow"),
    "fail": ("✗", "red"),
    "skip": ("-", None),
}


def report_lines(report: dict[str, Any]) -> list[str]:
    """Return the lines printed for one host's checks (a POST /hosts/NAME/check body)."""
    lines = [click.style(f"{report.get('host')} ({report.get('target')})", bold=True)]
    for check in report.get("checks") or []:
        mark, color = CHECK_MARKS.get(check.get("status"), ("?", None))
        name, message = check.get("name") or "?", clean(check.get("message"))
        lines.append(f"  {click.style(mark, fg=color)} {name:<9} {message}")
    return lines


def reach_color(value: str) -> str | None:
    """Return the click color of a REACH cell."""
    return {"yes": "green", "no": "red"}.get(value)


def render_log_event(event: Mapping[str, Any]) -> str | None:
    """Render one parsed log event as a line a person reads; None when there is nothing to show."""
    kind = event.get("kind") or "line"
    text = clean(event.get("text"), keep_newlines=True).rstrip("\n")
    target = clean(event.get("target"))
    tool = clean(event.get("tool"))
    if kind in ("text", "line"):
        return text or None
    if kind == "reasoning":
        return f"(thinking) {text}" if text else None
    if kind == "tool_use":
        what = target or clean(text)
        return f"→ {tool}: {what}" if tool and what else f"→ {tool or what}"
    if kind == "tool_result":
        if not event.get("is_error"):
            return "← ok"
        first = truncate(text.strip().splitlines()[0], 200) if text.strip() else "failed"
        return f"← error: {first}"
    if kind == "command":
        return _command_line(event, target or clean(text))
    if kind == "file_change":
        return f"✎ {target or clean(text)}"
    if kind == "retry":
        if text.lower().startswith(("api retry", "reconnecting")):
            return f"! {text}"
        return f"! API retry {text}".rstrip()
    if kind == "error":
        return f"! error: {text}"
    if kind == "result":
        if event.get("is_error"):
            return f"✗ {text or 'failed'}"
        return f"✓ result: {text}" if text else "✓ result"
    if kind == "system":
        return f"· {text}" if text else None
    if kind == "section":  # the verify phase's heading and verdict
        return f"── {text} ──"
    return text or None


def _command_line(event: Mapping[str, Any], command: str) -> str:
    """Render a command as claude's tools read: ``→ $ cmd`` at its start, ``← exit N: out`` at
    its end (codex prints both; an end with no start seen is shown whole)."""
    data = event.get("data") or {}
    if data.get("status") == "in_progress" or "exit_code" not in data:
        return f"→ $ {command}"
    code = data.get("exit_code")
    outcome = f"exit {code}" if code is not None else clean(data.get("status")) or "done"
    output = truncate(clean(data.get("output")), 200)
    mark = "← error" if event.get("is_error") else "←"
    return f"{mark} {outcome}: {output}" if output else f"{mark} {outcome}"


def task_line(task: Mapping[str, Any]) -> str:
    """Return ``ID  status  host``."""
    return f"{task.get('id')}  {task.get('status')}  {task.get('host') or '-'}"


def added_lines(task: Mapping[str, Any]) -> list[str]:
    """Return what ``dobby add`` prints: the new task's id, status and host, and how to follow."""
    labels = task.get("host_selector") or []
    host = task.get("host") or task.get("want_host")
    where = host or (f"any labelled {','.join(labels)}" if labels else "any")
    status = task.get("status") or "?"
    if task.get("waiting_on") not in (None, "capacity"):  # capacity: it starts when a slot frees
        status += f" (waiting on {task['waiting_on']})"
    task_id = task.get("id")
    return [f"task: {task_id}  status: {status}  host: {where}  follow: dobby logs -f {task_id}"]


def registered_lines(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """Return what ``dobby register`` prints: a new project, or what changed in a known one."""
    name, path = after.get("name"), after.get("path")
    if before is None:
        return [f"registered project {name} → {path}"]
    changed = [
        f"{key} {_shown(before.get(key))} → {_shown(after.get(key))}"
        for key in after
        if key != "created_at" and before.get(key) != after.get(key)
    ]
    if not changed:
        return [f"project {name} already registered → {path}; nothing changed"]
    return [f"updated project {name}: {'; '.join(changed)} (its other settings are kept)"]


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else clean(value)


def schedule_line(s: Mapping[str, Any]) -> str:
    """Return ``ID  every 30m|cron "…"  next …  title`` for a schedule."""
    when = f'cron "{s["cron"]}"' if s.get("cron") else f"every {s.get('every')}"
    state = "paused" if s.get("paused") else f"next {local_time(s.get('next_at'))}"
    template = s.get("template") or {}
    title = template.get("title") or template.get("prompt", "")
    return f"{s.get('id')}  {when}  {state}  {truncate(clean(title), 60)}"


def final_line(task: Mapping[str, Any]) -> str:
    """Return the closing line of ``dobby logs -f``: mark, id, status, reason, duration, cost."""
    status = task.get("status") or "?"
    head = f"{'✓' if status == 'completed' else '✗'} {task.get('id')} {status}"
    if task.get("reason"):
        head += f" ({task['reason']})"
    parts = [head]
    took = seconds_between(task.get("started_at"), task.get("finished_at"))
    if took is not None:
        parts.append(format_duration(took))
    if task.get("cost_usd") is not None:
        parts.append(format_cost(task.get("cost_usd")))
    if task.get("api_error_status") is not None:
        parts.append(f"API {clean(task['api_error_status'])}")
    if task.get("error"):
        parts.append(truncate(clean(task["error"]), 200))
    return " · ".join(parts)


def _value(key: str, value: Any) -> str:
    if value is None or value == [] or value == "":
        return "-"
    if key.endswith("_at") and isinstance(value, str):
        return local_time(value)
    if key == "tokens" and isinstance(value, Mapping):
        return format_tokens(value)
    if key == "cost_usd":
        return format_cost(value)
    if key == "timeout" and isinstance(value, int | float):
        return format_duration(value)
    if key == "permission_denials" and isinstance(value, list):
        return clean(denials_text(value))
    if isinstance(value, list):
        return ", ".join(clean(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={clean(v)}" for k, v in value.items())
    return clean(value)


_BLOCKS = ("summary", "error", "prompt")


def task_detail_lines(task: Mapping[str, Any]) -> list[str]:
    """Return every field of a task as ``key: value`` lines; long texts come last as blocks."""
    keys = [k for k in task if k not in _BLOCKS]
    width = max((len(k) for k in keys), default=0) + 1
    lines = [f"! {clean(note)}" for note in task_notes(task)]
    lines += [f"{k + ':':<{width}} {_value(k, task[k])}" for k in keys]
    if task.get("started_at"):
        took = seconds_between(task["started_at"], task.get("finished_at"))
        if took is not None:
            lines.append(f"{'duration:':<{width}} {format_duration(took)}")
    held = countdown(task)
    if held is not None:
        lines.append(f"{'countdown:':<{width}} {held} (at {local_time(task['not_before'])})")
    for key in _BLOCKS:
        if key in task:
            lines.extend(_block(key, task[key]))
    return lines


def _block(key: str, value: Any) -> list[str]:
    if not value:
        return [f"{key}: -"]
    body = clean(value, keep_newlines=True).rstrip("\n").splitlines() or [""]
    return [f"{key}:"] + ["  " + line for line in body]


def result_lines(result: Mapping[str, Any]) -> list[str]:
    """Return the lines of ``dobby results``: summary, status, error, cost, tokens…"""
    status = result.get("status") or "?"
    if result.get("reason"):
        status += f" ({result['reason']})"
    duration = result.get("duration_s")
    if duration is None:
        duration = seconds_between(result.get("started_at"), result.get("finished_at"))
    fields = [
        ("status", status),
        ("error", clean(result.get("error")) or "-"),
        ("exit code", "-" if result.get("exit_code") is None else str(result["exit_code"])),
        ("cost", format_cost(result.get("cost_usd"))),
        ("tokens", format_tokens(result.get("tokens"))),
        ("models", ", ".join(clean(m) for m in result.get("models") or []) or "-"),
        ("turns", "-" if result.get("turns") is None else str(result["turns"])),
        ("duration", format_duration(duration)),
        ("branch", clean(result.get("branch")) or "-"),
        ("session id", clean(result.get("session_id")) or "-"),
    ]
    if result.get("duration_ms") is not None:
        fields.insert(8, ("agent time", format_duration(result["duration_ms"] / 1000)))
    if result.get("api_error_status") is not None:
        fields.insert(2, ("api status", str(result["api_error_status"])))
    quota = result.get("quota") or {}
    if quota:
        fields.insert(2, ("limit", quota_text(quota)))
    if result.get("verify"):
        fields.insert(2, ("verify", verify_text(result)))
    if result.get("race_id"):
        slot = (result.get("race_slot") or 0) + 1
        fields.append(("race", f"{result['race_id']} (attempt {slot})"))
    denials = result.get("permission_denials") or []
    if denials:
        fields.append(("denied", clean(denials_text(denials))))
    lines = [f"! {clean(w)}" for w in result.get("warnings") or []]
    lines += _block("summary", result.get("summary"))
    lines += [f"{k + ':':<11} {v}" for k, v in fields]
    return lines


def verify_text(result: Mapping[str, Any]) -> str:
    """Return ``passed (exit 0, 1.2s): pytest -q`` for a task's check and its outcome."""
    check = truncate(clean(result.get("verify")), 80)
    outcome = result.get("verify_result") or {}
    if not outcome:
        done = "not run yet"
    elif outcome.get("exit_code") is None:
        done = clean(outcome.get("status"))
    else:
        ms = outcome.get("duration_ms")
        took = f", {format_duration(ms / 1000)}" if isinstance(ms, int | float) else ""
        done = f"{clean(outcome.get('status'))} (exit {outcome['exit_code']}{took})"
    rounds = ""
    if result.get("fix_round"):
        rounds = f" · fix round {result['fix_round']}"
    elif result.get("fix_attempts"):
        rounds = f" · up to {result['fix_attempts']} fix round(s)"
    return f"{done}{rounds}: {check}"


def quota_text(quota: Mapping[str, Any]) -> str:
    """Return ``usage limit (five_hour), resets 09:52 (from event)`` for a quota signal."""
    kind = "rate limited, no reset given" if quota.get("kind") == "rate_limited_no_reset" else ""
    text = kind or "usage limit" + (f" ({clean(quota['window'])})" if quota.get("window") else "")
    resets = quota.get("resets_at")
    if isinstance(resets, int | float):
        moment = _dt.datetime.fromtimestamp(resets, _dt.UTC).isoformat()
        text += f", resets {local_time(moment)} (from {clean(quota.get('source'))})"
    return text


def usage_lines(view: Mapping[str, Any], now: _dt.datetime | None = None) -> list[str]:
    """Return ``dobby usage``: one block per account (windows, limit), then the budgets."""
    now = now or _dt.datetime.now(_dt.UTC)
    lines: list[str] = []
    for acc in view.get("accounts") or []:
        hosts = ", ".join(clean(h) for h in acc.get("hosts") or []) or "no host now"
        state = "ok"
        if acc.get("limited"):
            until = acc.get("limited_until")
            left = (parse_time(until) - now).total_seconds() if until else None
            state = f"LIMITED until {local_time(until)} (in {format_duration(left)})"
        waiting = acc.get("waiting") or []
        tail = f" · {len(waiting)} task(s) waiting: {', '.join(waiting)}" if waiting else ""
        lines.append(f"{clean(acc.get('account'))}  [{hosts}]  {state}{tail}")
        limit = acc.get("limit") or {}
        if acc.get("limited") and limit.get("note"):
            lines.append(f"  limit: {clean(limit['note'])}")
        for window in acc.get("windows") or []:
            lines.append("  " + window_text(window))
        if not acc.get("windows"):
            lines.append("  no window reported yet")
    for budget in view.get("budgets") or []:
        parts = [
            f"{w} {format_cost(v.get('spent'))} of {format_cost(v.get('cap'))}"
            for w, v in (budget.get("windows") or {}).items()
        ]
        head = f"budget of the {clean(budget.get('scope'))}: {', '.join(parts)}"
        lines.append(head + (f"  OVER: {clean(budget['over'])}" if budget.get("over") else ""))
    waiting = view.get("budget_waiting") or []
    if waiting:
        lines.append(f"{len(waiting)} task(s) waiting on a budget: {', '.join(waiting)}")
    return lines or ["no accounts"]


def window_text(window: Mapping[str, Any]) -> str:
    """Return ``five_hour: 91% used, allowed_warning, resets 09:52 (event)``."""
    parts = []
    used = window.get("utilization")
    if isinstance(used, int | float):
        parts.append(f"{used:.0%} used")
    if window.get("status"):
        parts.append(clean(window["status"]))
    if window.get("resets_at"):
        parts.append(f"resets {local_time(window['resets_at'])}")
    source = window.get("source")
    shown = ", ".join(parts) or "no figures"
    return f"{clean(window.get('window'))}: {shown}" + (f" ({clean(source)})" if source else "")


def attach_command(
    task_id: str, host: Mapping[str, Any], *, slurm_job: str | None = None
) -> list[str]:
    """Return the argv that attaches a terminal to the task's tmux session on ``host``.

    On a Slurm host the session lives on the compute node, inside the task's job: ssh to the
    login node runs ``srun --jobid JOB --overlap --pty tmux -L dobby-JOB attach``.
    """
    # Imported here, not at the top: every command renders, few attach (bench/cli_start.py).
    import shlex

    from dobby.core.slurm import attach_command as slurm_attach

    session = f"dobby-{task_id}"
    conn = host.get("connection") or "ssh"
    if conn == "local":
        return ["tmux", "attach", "-t", session]
    if conn not in ("ssh", "slurm"):
        raise ValidationError(f"cannot attach to a task on {conn} host {host.get('name')!r}")
    if conn == "slurm" and not slurm_job:
        raise ValidationError(f"task {task_id} has no Slurm job on {host.get('name')!r} yet")
    cmd = ["ssh", "-t", "-p", str(host.get("port") or 22)]
    if host.get("identity_file"):
        cmd += ["-i", str(host["identity_file"])]
    if host.get("known_hosts"):
        cmd += ["-o", f"UserKnownHostsFile={host['known_hosts']}"]
    address = str(host.get("address") or host.get("name"))
    # "--": a destination starting with "-" (say -oProxyCommand=...) is never read as an option.
    cmd.append("--")
    cmd.append(f"{host['user']}@{address}" if host.get("user") else address)
    if slurm_job:
        cmd.append(shlex.join(slurm_attach(job_id=slurm_job, task_id=task_id)))
    else:
        cmd.append("tmux attach -t " + shlex.quote(session))
    return cmd
