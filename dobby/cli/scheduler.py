"""Scheduler commands: ``plan``, ``approve``, ``reject``, ``edit``, ``batch``, ``batch-status``,
``batches`` and ``schedules [pause|resume|delete]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dobby.cli import render
from dobby.cli.app import (
    BACKENDS,
    PRIORITIES,
    client,
    echo_lines,
    echo_task,
    json_option,
    print_json,
    text_arg,
    timeout_option,
    width,
)
from dobby.core.errors import ValidationError
from dobby.core.timefmt import local_time

# -- schedules -------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List schedules with their next fire time (pause, resume, delete: subcommands)."""
    if ctx.invoked_subcommand:
        return
    body = client().schedules()
    if as_json:
        return print_json(body)
    rows = []
    for s in body.get("schedules") or []:
        template = s.get("template") or {}
        rows.append(
            [
                s.get("id") or "?",
                f"cron {s['cron']}" if s.get("cron") else f"every {s.get('every')}",
                "paused" if s.get("paused") else local_time(s.get("next_at")),
                s.get("overlap") or "skip",
                str(s.get("fires", 0)),
                s.get("last_task_id") or "-",
                template.get("title") or template.get("prompt") or "",
            ]
        )
    if not rows:
        click.echo("no schedules")
        return
    headers = ["ID", "WHEN", "NEXT", "OVERLAP", "FIRES", "LAST TASK", "TASK"]
    echo_lines(render.render_table(headers, rows, width=width()))
    for s in body.get("schedules") or []:
        if s.get("last_error"):
            click.secho(f"{s['id']}: last fire failed: {s['last_error']}", fg="yellow")


def _schedule_command(action: str, doc: str) -> None:
    @schedules.command(name=action, help=doc)
    @click.argument("schedule_id")
    @json_option
    def command(schedule_id: str, as_json: bool) -> None:
        body = client().schedule_action(schedule_id, action)
        if as_json:
            return print_json(body)
        click.echo(f"{action}d {render.schedule_line(body)}" if action != "delete" else
                   f"deleted schedule {body.get('id')}")  # fmt: skip


_schedule_command("pause", "Stop a schedule from firing.")
_schedule_command("resume", "Fire a paused schedule again, from its next fire time.")
_schedule_command("delete", "Delete a schedule (tasks it spawned stay).")


# -- drafts ----------------------------------------------------------------------------------


@click.command()
@click.argument("prompt")
@click.option("--project", help="Project the task works on.")
@click.option("--backend", type=BACKENDS, help="Agent (default: project's, else claude).")
@click.option("--model", help="Model for the agent.")
@click.option("--priority", type=PRIORITIES)
@click.option("--host", help="Run on this host.")
@click.option("--label", "labels", multiple=True, help="Run on a host with this label.")
@timeout_option()
@click.option("--title", help="Short title (default: the prompt's first line).")
@click.option("--after", multiple=True, help="Once approved, run after this task (repeatable).")
@click.option(
    "--agent-plan",
    is_flag=True,
    help="Have the agent write a plan first, read-only, attached to the draft for review.",
)
@json_option
def plan(
    prompt: str,
    project: str | None,
    backend: str | None,
    model: str | None,
    priority: str | None,
    host: str | None,
    labels: tuple[str, ...],
    timeout: float | None,
    title: str | None,
    after: tuple[str, ...],
    agent_plan: bool,
    as_json: bool,
) -> None:
    """Create a draft that runs only once approved (`dobby approve ID`); '-' reads stdin."""
    task = client().add_task(
        prompt=text_arg(prompt, "prompt"),
        project=project,
        backend=backend,
        model=model,
        priority=priority,
        host=host,
        labels=list(labels) or None,
        timeout=timeout,
        title=title,
        after=list(after) or None,
        draft=True,
        agent_plan=agent_plan or None,
    )
    if as_json:
        return print_json(task)
    click.echo(render.task_line(task))
    if task.get("plan_task"):
        click.echo(
            f"planning run {task['plan_task']} writes the plan (read-only); review it with "
            f"`dobby show {task['id']}`, then `dobby approve {task['id']}`"
        )
    else:
        click.echo(f"approve it with `dobby approve {task['id']}`")


@click.command()
@click.argument("task_id")
@json_option
def approve(task_id: str, as_json: bool) -> None:
    """Queue a draft; with an agent plan, it runs with the approved plan in its prompt."""
    echo_task(client().approve(task_id), as_json)


@click.command()
@click.argument("task_id")
@json_option
def reject(task_id: str, as_json: bool) -> None:
    """Drop a draft (it ends cancelled; its planning run is stopped)."""
    echo_task(client().reject(task_id), as_json)


@click.command()
@click.argument("task_id")
@click.option("--prompt", help="New prompt ('-': read stdin).")
@click.option("--plan", "plan_text", help="New plan of a draft ('-': read stdin).")
@click.option("--title", help="New title.")
@click.option("--priority", type=PRIORITIES)
@click.option("--backend", type=BACKENDS)
@click.option("--model", help="New model.")
@click.option("--host", help="Run on this host ('' for any).")
@click.option("--label", "labels", multiple=True, help="Host labels (replaces the old ones).")
@timeout_option()
@click.option("--after", multiple=True, help="Dependencies (replace the old ones).")
@click.option("--no-after", is_flag=True, help="Remove every dependency.")
@json_option
def edit(
    task_id: str,
    prompt: str | None,
    plan_text: str | None,
    title: str | None,
    priority: str | None,
    backend: str | None,
    model: str | None,
    host: str | None,
    labels: tuple[str, ...],
    timeout: float | None,
    after: tuple[str, ...],
    no_after: bool,
    as_json: bool,
) -> None:
    """Edit a draft or pending task; with no option, open $EDITOR on its prompt."""
    fields: dict[str, Any] = {
        "prompt": text_arg(prompt, "prompt"),
        "plan": text_arg(plan_text, "plan"),
        "title": title,
        "priority": priority,
        "backend": backend,
        "model": model,
        "host": host,
        "labels": list(labels) or None,
        "timeout": timeout,
        "after": [] if no_after else (list(after) or None),
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    hub = client()
    if not fields:
        current = hub.task(task_id)
        edited = click.edit(current.get("prompt") or "", extension=".md")
        if edited is None or edited == current.get("prompt"):
            click.echo("no change")
            return
        fields["prompt"] = edited
    echo_task(hub.patch_task(task_id, **fields), as_json)


# -- batches ---------------------------------------------------------------------------------


def _batch_lines(body: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {s}" for s, n in sorted((body.get("counts") or {}).items()))
    head = f"batch {body.get('id')}"
    if body.get("name"):
        head += f" ({body['name']})"
    cost = render.format_cost(body.get("cost_usd"), "-")
    return [f"{head}: {body.get('total', 0)} tasks — {counts or 'none'} — cost so far {cost}"]


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def batch(file: str, as_json: bool) -> None:
    """Submit every task of a batch file (YAML) at once, all or nothing."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{file}: cannot read: {exc}") from None
    body = client().submit_batch_file(text, file)
    if as_json:
        return print_json(body)
    echo_lines(_batch_lines(body))
    click.echo(f"follow it with `dobby batch-status {body.get('id')}`")


@click.command("batch-status")
@click.argument("batch_id")
@json_option
def batch_status(batch_id: str, as_json: bool) -> None:
    """Show a batch: counts by status, cost so far, and each task."""
    body = client().batch(batch_id)
    if as_json:
        return print_json(body)
    echo_lines(_batch_lines(body))
    tasks = body.get("tasks") or []
    rows = render.task_rows(tasks)
    for row, task in zip(rows, tasks, strict=True):
        row[-1] = f"{task.get('name')}: {row[-1]}"
    colors = {1: render.status_color}
    echo_lines(render.render_table(render.TASK_HEADERS, rows, width=width(), colors=colors))


@click.command()
@json_option
def batches(as_json: bool) -> None:
    """List batches, newest first."""
    body = client().batches()
    if as_json:
        return print_json(body)
    found = body.get("batches") or []
    if not found:
        click.echo("no batches")
    for b in found:
        echo_lines(_batch_lines(b))


@click.command()
@json_option
def usage(as_json: bool) -> None:
    """Show each account's usage windows and limits (live), and the spend budgets."""
    body = client().usage()
    if as_json:
        return print_json(body)
    echo_lines(render.usage_lines(body))


COMMANDS = [plan, approve, reject, edit, batch, batch_status, batches, schedules, usage]
