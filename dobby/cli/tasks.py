"""Task commands: ``add``, ``status``, ``show``, ``cancel``, ``retry``, ``attach``."""

from __future__ import annotations

import os
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
    read_stdin,
    timeout_option,
    width,
)
from dobby.core.errors import DobbyError, ValidationError

STATUS_LIMIT = 20  # `dobby status` shows the newest 20 unless --limit or --all


@click.command()
@click.argument("prompt")
@click.option("--project", help="Project the task works on.")
@click.option(
    "--backend",
    type=BACKENDS,
    help="Agent to run (default: the project's default_backend, else claude).",
)
@click.option("--model", help="Model for the agent.")
@click.option("--priority", type=PRIORITIES)
@click.option("--host", help="Run on this host.")
@click.option("--label", "labels", multiple=True, help="Run on a host with this label.")
@timeout_option()
@click.option("--title", help="Short title (default: the prompt's first line).")
@click.option("--resume", help="Continue the agent session of this task.")
@click.option("--after", "after", multiple=True, help="Run once this task completed (repeatable).")
@click.option("--wait-for-host", is_flag=True, help="Wait for an eligible host, don't fail.")
@click.option("--cron", help='Create a schedule: crontab fields, e.g. "0 3 * * *".')
@click.option("--every", help="Create a schedule firing every 30s, 30m, 2h...")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "queue"]),
    help="A schedule's fire while its last run is unfinished: skip (default) or queue.",
)
@click.option(
    "--artifact",
    "artifacts",
    multiple=True,
    help="Bring back worktree files matching this glob (repeatable), e.g. 'reports/*.json'.",
)
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs the task needs (free ones only).")
@click.option("--verify", help="Check run in the worktree after the agent, e.g. 'pytest -x'.")
@timeout_option("Time limit of the check (default 10m).", name="--verify-timeout")
@click.option(
    "--fix-attempts",
    type=click.IntRange(min=0),
    help="On a failed check, resume the agent with its output, up to N times.",
)
@click.option("--race", "race_k", type=int, help="Start K attempts; a passing check wins.")
@click.option("--backends", help="Race: backends to spread the attempts over (claude,codex).")
@click.option("--models", help="Race: models to spread the attempts over (comma-separated).")
@click.option("--hosts", help="Race: hosts to spread the attempts over (h1,h2).")
@click.option(
    "--pick",
    type=click.Choice(["first", "smallest", "cheapest"]),
    help="Race: first check passed wins (default), or the smallest diff / lowest cost.",
)
@click.option(
    "--fallback-backend",
    "fallback_backends",
    multiple=True,
    type=BACKENDS,
    help="Run on this backend instead when a usage limit's wait exceeds max_quota_wait.",
)
@click.option("--max-turns", type=int, help="Stop the agent after N turns (claude).")
@click.option("--max-budget-usd", type=float, help="Stop the agent past this cost in USD (claude).")
@json_option
def add(
    prompt: str,
    project: str | None,
    backend: str,
    model: str | None,
    priority: str | None,
    host: str | None,
    labels: tuple[str, ...],
    timeout: float | None,
    title: str | None,
    resume: str | None,
    after: tuple[str, ...],
    wait_for_host: bool,
    cron: str | None,
    every: str | None,
    overlap: str | None,
    artifacts: tuple[str, ...],
    gpus: int | None,
    verify: str | None,
    verify_timeout: float | None,
    fix_attempts: int | None,
    race_k: int | None,
    backends: str | None,
    models: str | None,
    hosts: str | None,
    pick: str | None,
    fallback_backends: tuple[str, ...],
    max_turns: int | None,
    max_budget_usd: float | None,
    as_json: bool,
) -> None:
    """Queue a task (or, with --cron/--every, a schedule; with --race K, a race of K attempts).

    PROMPT '-' reads it from stdin.
    """
    if prompt == "-":
        prompt = read_stdin("prompt")
    fields: dict[str, Any] = dict(
        prompt=prompt,
        project=project,
        backend=backend,
        model=model,
        priority=priority,
        host=host,
        labels=list(labels) or None,
        timeout=timeout,
        title=title,
        resume=resume,
        after=list(after) or None,
        wait_for_host=wait_for_host or None,
        artifacts=list(artifacts) or None,
        gpus=gpus or None,
        verify=verify,
        verify_timeout=verify_timeout,
        fix_attempts=fix_attempts,
        fallback_backends=list(fallback_backends) or None,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
    )
    race = {"backends": backends, "models": models, "hosts": hosts, "pick": pick}
    if race_k is not None:
        return _add_race(fields, race, k=race_k, as_json=as_json)
    given = [f"--{k}" for k, v in race.items() if v is not None]
    if given:
        raise ValidationError(f"{', '.join(given)} only apply to a race: add --race K")
    if cron is not None or every is not None or overlap is not None:
        return _add_schedule(fields, cron=cron, every=every, overlap=overlap, as_json=as_json)
    task = client().add_task(**fields)
    if as_json:
        return print_json(task)
    echo_lines(render.added_lines(task))


def _add_race(
    fields: dict[str, Any], race: dict[str, str | None], *, k: int, as_json: bool
) -> None:
    """Start a race from ``dobby add`` options (``--race K`` …) and print what started."""
    lists = {
        name: [v.strip() for v in value.split(",") if v.strip()] if value else None
        for name, value in race.items()
        if name != "pick"
    }
    from dobby.cli.races_render import started_lines  # only a race needs it (start time)

    body = client().add_race(**fields, **lists, k=k, pick=race["pick"])
    if as_json:
        return print_json(body)
    echo_lines(started_lines(body))


def _add_schedule(
    fields: dict[str, Any],
    *,
    cron: str | None,
    every: str | None,
    overlap: str | None,
    as_json: bool,
) -> None:
    """Create a schedule from ``dobby add`` options (``--cron``/``--every``)."""
    if fields.get("resume"):
        raise ValidationError("--resume cannot be combined with --cron/--every")
    fields = {k: v for k, v in fields.items() if k != "resume"}
    body = client().add_schedule(cron=cron, every=every, overlap=overlap, **fields)
    if as_json:
        return print_json(body)
    click.echo(f"schedule {render.schedule_line(body)}")


@click.command()
@click.argument("project", required=False)
@click.option("--status", "status_", help="Only tasks in this status.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help=f"At most this many tasks (default {STATUS_LIMIT}).",
)
@click.option("--all", "all_", is_flag=True, help="Every task, however many.")
@json_option
def status(
    project: str | None, status_: str | None, limit: int | None, all_: bool, as_json: bool
) -> None:
    """List tasks, newest first (the newest 20 unless --limit or --all)."""
    if all_ and limit is not None:
        raise click.UsageError("use --all or --limit, not both")
    shown = None if all_ else (limit or STATUS_LIMIT)
    body = client().tasks(project=project, status=status_, limit=shown)
    tasks = body.get("tasks") or []
    if as_json:
        return print_json(body)
    if not tasks:
        click.echo("no tasks")
        return
    colors = {1: render.status_color}
    echo_lines(
        render.render_table(
            render.TASK_HEADERS, render.task_rows(tasks), width=width(), colors=colors
        )
    )
    total = body.get("total")
    if isinstance(total, int) and total > len(tasks):
        click.echo(
            f"(the newest {len(tasks)} of {total}; older ones: `dobby status --all` or --limit N)",
            err=True,
        )


@click.command()
@click.argument("task_id")
@json_option
def show(task_id: str, as_json: bool) -> None:
    """Show every field of a task."""
    task = client().task(task_id)
    if as_json:
        return print_json(task)
    echo_lines(render.task_detail_lines(task))


@click.command()
@click.argument("task_id")
@json_option
def cancel(task_id: str, as_json: bool) -> None:
    """Cancel a task (or, given a race id r-…, the race and all its attempts)."""
    if task_id.startswith("r-"):
        race = client().cancel_race(task_id)
        if as_json:
            return print_json(race)
        click.echo(f"race {race['id']} {race['status']}")
        return
    echo_task(client().cancel(task_id), as_json)


@click.command()
@click.argument("task_id")
@click.option("--cascade", is_flag=True, help="Also re-queue what failed because of it.")
@json_option
def retry(task_id: str, cascade: bool, as_json: bool) -> None:
    """Re-queue a failed or cancelled task (and, with --cascade, its failed dependents)."""
    task = client().retry(task_id, cascade=cascade)
    echo_task(task, as_json)
    if cascade and not as_json and len(task.get("requeued") or []) > 1:
        click.echo(f"also re-queued: {', '.join(task['requeued'][1:])}")


@click.command()
@click.argument("task_id")
@click.option("--print", "print_only", is_flag=True, help="Only print the command.")
def attach(task_id: str, print_only: bool) -> None:
    """Attach this terminal to the task's tmux session (over SSH for remote hosts)."""
    hub = client()
    task = hub.task(task_id)
    if not task.get("host"):
        raise DobbyError(f"task {task.get('id')} is {task.get('status')} and has no host yet")
    hosts = {h.get("name"): h for h in hub.hosts().get("hosts") or []}
    host = hosts.get(task["host"])
    if host is None:
        raise DobbyError(f"host {task['host']!r} of task {task.get('id')} is not in the inventory")
    cmd = render.attach_command(task["id"], host, slurm_job=task.get("slurm_job"))
    running = task.get("status") == "running"
    if print_only:
        if not running:
            click.echo(f"note: task {task['id']} is {task.get('status')}, not running", err=True)
        import shlex  # only here: the quick commands of this module never need it

        click.echo(shlex.join(cmd))
        return
    if not running:
        raise DobbyError(f"task {task['id']} is {task.get('status')}, not running")
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        raise DobbyError(f"cannot run {cmd[0]}: {exc.strerror}") from None


COMMANDS = [add, status, show, cancel, retry, attach]
