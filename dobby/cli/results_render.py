"""Turn results JSON into terminal lines: results, diff stats, detail-status, stats, gc (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from dobby.cli.render import clean, format_cost, format_tokens, result_lines, truncate
from dobby.core.timefmt import format_duration

RESULTS_HEADERS = ["ID", "STATUS", "BACKEND", "COST", "CHANGES", "BRANCH", "TITLE"]


def format_bytes(size: int | None) -> str:
    """Format a byte count as ``512 B``, ``1.5 KiB``, ``3.2 MiB``…"""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def changes(stat: Mapping[str, Any] | None) -> str:
    """Return ``3 files +10 -2`` for a diff stat (``-`` without one)."""
    if not stat:
        return "-"
    n = stat.get("files_changed") or 0
    plus, minus = stat.get("insertions") or 0, stat.get("deletions") or 0
    return f"{n} file{'s' if n != 1 else ''} +{plus} -{minus}"


def result_rows(results: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Return one row per result for :data:`RESULTS_HEADERS`."""
    rows = []
    for r in results:
        status = r.get("status") or "?"
        if r.get("reason"):
            status += f" {r['reason']}"
        rows.append(
            [
                r.get("task_id") or "?",
                status,
                r.get("backend") or "-",
                format_cost(r.get("cost_usd"), "-"),
                changes(r.get("diff_stat")),
                r.get("branch") or "-",
                r.get("title") or "",
            ]
        )
    return rows


def full_result_lines(result: Mapping[str, Any]) -> list[str]:
    """Return the lines of ``dobby results ID``: the summary fields, then git, artifacts, chain."""
    lines = result_lines(result)
    extra: list[tuple[str, str]] = []
    if result.get("head_commit"):
        base, head = (result.get("base_commit") or "")[:10], result["head_commit"][:10]
        extra.append(("commits", f"{base}..{head}"))
        extra.append(("changes", changes(result.get("diff_stat"))))
    if result.get("merged_at"):
        extra.append(("merged", f"{(result.get('merge_commit') or '')[:10]}"))
    arts = result.get("artifacts") or []
    if arts:
        shown = ", ".join(
            f"{clean(a.get('name'))} ({format_bytes(a.get('size'))})" for a in arts[:10]
        )
        extra.append(("artifacts", shown + (f" … +{len(arts) - 10}" if len(arts) > 10 else "")))
    chain = result.get("chain") or []
    if len(chain) > 1:
        extra.append(("chain", " → ".join(chain)))
    if result.get("followups"):
        extra.append(("follow-ups", ", ".join(result["followups"])))
    if result.get("collect_error"):
        extra.append(("collect", clean(result["collect_error"])))
    if result.get("host_cleaned_at"):
        extra.append(("host copy", "cleaned"))
    lines += [f"{k + ':':<11} {v}" for k, v in extra]
    for f in (result.get("diff_stat") or {}).get("files") or []:
        added = "-" if f.get("added") is None else f"+{f['added']}"
        deleted = "-" if f.get("deleted") is None else f"-{f['deleted']}"
        lines.append(f"  {f.get('status') or 'M'} {clean(f.get('path'))}  {added} {deleted}")
    outcome = result.get("verify_result") or {}
    if outcome.get("tail") and outcome.get("status") != "passed":
        lines.append("verify output (end):")
        lines += ["  " + ln for ln in tail_lines(outcome["tail"], VERIFY_TAIL_LINES)]
    return lines


VERIFY_TAIL_LINES = 15


def tail_lines(text: str, count: int) -> list[str]:
    """Return the last ``count`` lines of a check's output, cleaned for the terminal."""
    return clean(text, keep_newlines=True).rstrip("\n").splitlines()[-count:]


def diff_lines(text: str) -> list[str]:
    """Return a diff's lines, colored like git's (click drops colors off a terminal)."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---", "diff --git", "index ")):
            out.append(click.style(line, bold=True))
        elif line.startswith("+"):
            out.append(click.style(line, fg="green"))
        elif line.startswith("-"):
            out.append(click.style(line, fg="red"))
        elif line.startswith("@@"):
            out.append(click.style(line, fg="cyan"))
        else:
            out.append(line)
    return out


def detail_lines(d: Mapping[str, Any]) -> list[str]:
    """Return the lines of ``dobby detail-status``."""
    status = d.get("status") or "?"
    if d.get("reason"):
        status += f" ({d['reason']})"
    cost = format_cost(d.get("cost_usd"))
    if d.get("cost_estimated"):
        cost += " (estimated)"
    retry = d.get("last_retry") or {}
    retries = str(d.get("retries") or 0)
    if retry:
        retries += f" (last: {clean(retry.get('error'))})"
    tool = d.get("last_tool") or "-"
    if d.get("last_target"):
        tool += f" → {truncate(clean(d['last_target']), 120)}"
    fields = [
        ("task", f"{d.get('task_id')} on {d.get('host') or '-'} ({d.get('backend')})"),
        ("status", status),
        ("elapsed", format_duration(d.get("elapsed_s"))),
        ("step", truncate(clean(d.get("step")), 160) or "-"),
        ("last tool", tool),
        ("tokens", format_tokens(d.get("tokens"))),
        ("cost", cost),
        ("turns", "-" if d.get("turns") is None else str(d["turns"])),
        ("retries", retries),
    ]
    if d.get("last_error"):
        fields.append(("last error", truncate(clean(d["last_error"]), 160)))
    lines = [f"{k + ':':<11} {v}" for k, v in fields]
    for kind, paths in (d.get("files") or {}).items():
        if paths:
            lines.append(f"{'files ' + kind + ':':<11} " + ", ".join(clean(p) for p in paths[:20]))
    commands = d.get("commands") or []
    if commands:
        lines.append(f"commands ({d.get('commands_total', len(commands))}):")
        for c in commands[-10:]:
            code, status = c.get("exit_code"), c.get("status")
            if code is not None:
                mark = f"exit {code}"
            else:  # never invent an exit code: a denied command never ran
                mark = "…" if status == "running" else clean(status) or "no exit code"
            lines.append(f"  $ {truncate(clean(c.get('command')), 100)}  ({mark})")
    return lines


def _group_rows(groups: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for name, g in groups.items():
        rate = g.get("success_rate")
        cost = format_cost(g.get("cost_usd"), "-")
        if g.get("cost_unknown"):
            cost += f" (+{g['cost_unknown']} unknown)"
        tokens = g.get("tokens") or {}
        rows.append(
            [
                name,
                str(g.get("tasks", 0)),
                "-" if rate is None else f"{rate:.0%}",
                cost,
                f"{tokens.get('input', 0)}/{tokens.get('output', 0)}",
            ]
        )
    return rows


def stats_sections(s: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Return (title, headers, rows) tables of ``dobby stats`` after the summary."""
    headers = ["NAME", "TASKS", "SUCCESS", "COST", "TOKENS IN/OUT"]
    return [
        (f"by {name}", headers, _group_rows(s.get(f"by_{name}") or {}))
        for name in ("project", "backend", "model", "host", "day")
    ]


def stats_summary(s: Mapping[str, Any]) -> list[str]:
    """Return the summary lines of ``dobby stats``."""
    by_status = ", ".join(f"{k} {v}" for k, v in (s.get("by_status") or {}).items() if v)
    rate = s.get("success_rate")
    cost = format_cost(s.get("cost_usd"))
    if s.get("cost_unknown"):
        cost += f" (+{s['cost_unknown']} task(s) of unknown cost)"
    queue = s.get("queue") or {}
    wait, run = s.get("wait_s") or {}, s.get("run_s") or {}
    return [
        f"since:     {s.get('since') or 'the beginning'}",
        f"tasks:     {s.get('tasks', 0)} ({by_status or 'none'})",
        f"success:   {'-' if rate is None else f'{rate:.1%}'}",
        f"cost:      {cost}",
        f"tokens:    {format_tokens(s.get('tokens'))}",
        f"queue:     {queue.get('pending', 0)} pending, {queue.get('running', 0)} running",
        f"wait:      avg {format_duration(wait.get('avg'))} over {wait.get('count', 0)} task(s)",
        f"run:       avg {format_duration(run.get('avg'))} over {run.get('count', 0)} task(s)",
    ]


def gc_lines(report: Mapping[str, Any]) -> list[str]:
    """Return the lines of ``dobby gc``."""
    verb = "would free" if report.get("dry_run") else "freed"
    lines = [
        f"{verb} {t['task_id']} on {t['host']}: {format_bytes(t.get('bytes'))}"
        for t in report.get("tasks") or []
    ]
    lines += [f"kept {b['task_id']} on {b['host']}: still in use" for b in report.get("busy") or []]
    lines += [f"error on {e['host']}: {clean(e['error'])}" for e in report.get("errors") or []]
    count = len(report.get("tasks") or [])
    lines.append(f"{verb} {format_bytes(report.get('freed_bytes', 0))} in {count} task(s)")
    return lines
