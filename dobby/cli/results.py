"""``dobby results``, ``logs``, ``diff``, ``merge``, ``detail-status``, ``artifacts``,
``stats``, ``export``, ``import`` and ``gc``: what tasks gave back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from dobby.cli import render
from dobby.cli import results_render as rr
from dobby.cli.app import binary_stdout, client, echo_lines, json_option, print_json, width
from dobby.core.errors import DobbyError, HubError

_WORKTREE = re.compile(r"^/\S*/worktrees/[^/]+/")


def _echo_log_body(body: dict[str, Any], raw: bool) -> None:
    """Print one log chunk, raw or rendered (paths inside the worktree shown relative)."""
    if raw:
        text = body.get("text") or ""
        if text:
            click.echo(text, nl=False)
        return
    for event in body.get("events") or []:
        target = event.get("target")
        if isinstance(target, str) and _WORKTREE.match(target):
            event = {**event, "target": _WORKTREE.sub("", target)}
        line = render.render_log_event(event)
        if line is not None:
            click.echo(line)


@click.command()
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the task ends.")
@click.option("--raw", is_flag=True, help="Print the agent's output as written.")
@json_option
def logs(task_id: str, follow: bool, raw: bool, as_json: bool) -> None:
    """Print a task's log (readable by default; --raw for the original).

    Logs live on the hub: they stay readable after the host's copy is cleaned.
    """
    hub = client()
    if not follow:
        body = hub.logs(task_id)
        if as_json:
            return print_json(body)
        # A long log may come in chunks; read on until the hub has nothing more.
        while True:
            _echo_log_body(body, raw)
            offset, next_offset = body.get("offset"), body.get("next_offset")
            if next_offset is None or next_offset == offset or not body.get("text"):
                return
            body = hub.logs(task_id, offset=next_offset)
    last: dict[str, Any] = {}
    last_status = None
    for event, data in hub.follow(task_id):
        if as_json:
            click.echo(json.dumps({"event": event, "data": data}))
        elif event == "log":
            _echo_log_body(data, raw)
        elif event == "status" and data.get("status") != last_status and not raw:
            click.secho(f"· {render.task_line(data)}", dim=True)
        if event in ("status", "end"):
            last = data
            last_status = data.get("status")
    if not as_json:
        # With --raw, stdout stays the agent's bytes; the closing line goes to stderr.
        click.echo(render.final_line(last), err=raw)
    click.get_current_context().exit(0 if last.get("status") == "completed" else 1)


@click.command()
@click.argument("target")
@click.option("--status", "status_", help="With a project: only results in this status.")
@click.option("--limit", type=click.IntRange(min=1), help="With a project: at most this many.")
@json_option
def results(target: str, status_: str | None, limit: int | None, as_json: bool) -> None:
    """Show what task TARGET produced, or list the results of project TARGET (newest first)."""
    hub = client()
    projects = {p.get("name") for p in hub.projects().get("projects") or []}
    if target not in projects:
        body = hub.result(target)
        if as_json:
            return print_json(body)
        return echo_lines(rr.full_result_lines(body))
    listing = hub.results(project=target, status=status_, limit=limit)
    if as_json:
        return print_json(listing)
    rows = rr.result_rows(listing.get("results") or [])
    if not rows:
        click.echo(f"no results in project {target}")
        return
    colors = {1: render.status_color}
    echo_lines(render.render_table(rr.RESULTS_HEADERS, rows, width=width(), colors=colors))


@click.command()
@click.argument("task_id")
@click.option("--stat", "stat_only", is_flag=True, help="Only the files changed.")
@json_option
def diff(task_id: str, stat_only: bool, as_json: bool) -> None:
    """Print the changes a task made (its branch against the commit it started from)."""
    body = client().diff(task_id)
    if as_json:
        return print_json(body)
    if stat_only:
        stat = body.get("diff_stat") or {}
        for f in stat.get("files") or []:
            added = "-" if f.get("added") is None else f"+{f['added']}"
            deleted = "-" if f.get("deleted") is None else f"-{f['deleted']}"
            click.echo(f"{f.get('status') or 'M'} {render.clean(f.get('path'))}  {added} {deleted}")
        click.echo(rr.changes(stat))
        return
    echo_lines(rr.diff_lines(body.get("diff") or ""))
    if body.get("truncated"):
        click.echo("… (diff cut: see the branch with git)", err=True)


@click.command()
@click.argument("task_id")
@json_option
def merge(task_id: str, as_json: bool) -> None:
    """Merge a task's branch into its project's checkout (refused on conflict or dirty tree).

    Given a race id (r-…), merge the race's winner.
    """
    body = client().merge_race(task_id) if task_id.startswith("r-") else client().merge(task_id)
    if as_json:
        return print_json(body)
    if body.get("already"):
        click.echo(f"{body.get('branch')} is already merged into {body.get('into')}")
    else:
        commit = (body.get("commit") or "")[:10]
        click.echo(f"merged {body.get('branch')} into {body.get('into')} ({commit})")


@click.command("detail-status")
@click.argument("task_id")
@json_option
def detail_status(task_id: str, as_json: bool) -> None:
    """Show what a task's agent is doing now: step, tool, files, commands, tokens, cost."""
    body = client().detail_status(task_id)
    if as_json:
        return print_json(body)
    echo_lines(rr.detail_lines(body))


@click.command()
@click.argument("task_id")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save NAME to this file.")
@json_option
def artifacts(task_id: str, name: str | None, output: str | None, as_json: bool) -> None:
    """List a task's artifacts, or download artifact NAME (to stdout or -o FILE)."""
    hub = client()
    if name is None:
        body = hub.artifacts(task_id)
        if as_json:
            return print_json(body)
        found = body.get("artifacts") or []
        if not found:
            click.echo("no artifacts")
        for a in found:
            click.echo(f"{rr.format_bytes(a.get('size')):>10}  {render.clean(a.get('name'))}")
        return
    if output:
        target = Path(output)
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as sink:
            size = hub.download_artifact(task_id, name, sink)
        partial.replace(target)
        click.echo(f"saved {name} to {target} ({rr.format_bytes(size)})", err=True)
    else:
        hub.download_artifact(task_id, name, binary_stdout())


@click.command()
@click.option("--since", help="Only tasks created since: 24h, 7d, or an ISO time.")
@click.option("--project", help="Only this project's tasks.")
@json_option
def stats(since: str | None, project: str | None, as_json: bool) -> None:
    """Show tasks by status, success rate, cost and tokens by project/backend/model/host/day."""
    body = client().stats(since=since, project=project)
    if as_json:
        return print_json(body)
    echo_lines(rr.stats_summary(body))
    for title, headers, rows in rr.stats_sections(body):
        if rows:
            click.echo("")
            click.secho(title, bold=True)
            echo_lines(render.render_table(headers, rows, width=width()))


@click.command("export")
@click.option("--project", help="Only this project's tasks.")
@click.option("--since", help="Only tasks created since: 24h, 7d, or an ISO time.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
def export_(project: str | None, since: str | None, fmt: str, output: str | None) -> None:
    """Export every task with its result fields (JSON re-imports with `dobby import`)."""
    hub = client()
    if not output:
        hub.export(binary_stdout(), fmt=fmt, project=project, since=since)
        return
    target = Path(output)
    partial = target.with_name(target.name + ".part")
    try:
        with open(partial, "wb") as sink:
            size = hub.export(sink, fmt=fmt, project=project, since=since)
    except (DobbyError, OSError):
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    click.echo(f"exported to {target} ({rr.format_bytes(size)})", err=True)


@click.command("import")
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@json_option
def import_(file: str, as_json: bool) -> None:
    """Import tasks from a JSON export (FILE '-' reads stdin); known ids are skipped."""
    try:
        data = _read_bytes(file)
    except OSError as exc:
        raise HubError(f"cannot read {file}: {exc.strerror}", code="io_error", status=0) from None
    body = client().import_tasks(data)
    if as_json:
        return print_json(body)
    click.echo(f"imported {body.get('imported', 0)} task(s)")
    for key, what in (("skipped_existing", "already known"), ("skipped_unfinished", "unfinished")):
        if body.get(key):
            click.echo(f"skipped {len(body[key])} {what}: {', '.join(body[key][:10])}")


@click.command()
@click.option("--older-than", help="Free tasks finished longer ago than this (default: retention).")
@click.option("--dry-run", is_flag=True, help="Only report what would be freed.")
@json_option
def gc(older_than: str | None, dry_run: bool, as_json: bool) -> None:
    """Free finished tasks' worktrees and task directories on hosts (never a running one)."""
    body = client().gc(older_than=older_than, dry_run=dry_run)
    if as_json:
        return print_json(body)
    echo_lines(rr.gc_lines(body))


def _read_bytes(file: str) -> bytes:
    if file != "-":
        return Path(file).read_bytes()
    with click.open_file("-", "rb") as stream:
        return bytes(stream.read())


COMMANDS = [logs, results, diff, merge, detail_status, artifacts, stats, export_, import_, gc]
