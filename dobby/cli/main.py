"""The ``dobby`` command line: a thin client of the hub's REST API."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import click

from dobby.cli import render as render
from dobby.client.http import HubClient
from dobby.core.errors import DobbyError, ValidationError
from dobby.core.timefmt import format_duration, parse_duration

HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"


class _Group(click.Group):
    """A click group that prints a DobbyError as one ``error:`` line and exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn DobbyError into ``error: message`` on stderr."""
        try:
            return super().invoke(ctx)
        except DobbyError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def _client() -> HubClient:
    return HubClient()


def _print_json(body: Any) -> None:
    click.echo(json.dumps(body, indent=2))


def _width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def _echo_task(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(task)
    else:
        click.echo(render.task_line(task))


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the hub's JSON answer.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dobby")
def main() -> None:
    """Dispatch coding-agent tasks to your machines over SSH."""


@main.command()
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to serve on (default 8420).")
@click.option("--inventory", type=click.Path(), help="Inventory file or directory.")
@click.option("--home", type=click.Path(file_okay=False), help="State directory (DOBBY_HOME).")
def start(host: str | None, port: int | None, inventory: str | None, home: str | None) -> None:
    """Run the hub (REST API + dashboard) in the foreground."""
    from dobby.hub.server import serve

    overrides: dict[str, Any] = {"host": host, "port": port}
    if inventory is not None:
        overrides["inventory"] = str(Path(inventory).expanduser().resolve())
    overrides = {k: v for k, v in overrides.items() if v is not None}
    serve(home=Path(home).expanduser() if home else None, overrides=overrides)


@main.command()
@click.option("--port", type=int, default=None, help="Port of the demo hub.")
@click.option("--keep", is_flag=True, help="Keep the hub and its state after the demo.")
def demo(port: int | None, keep: bool) -> None:
    """Run a self-contained demo: a local hub, a project and a few tasks."""
    from dobby.cli.demo import run_demo

    run_demo(port=port, keep=keep)


@main.command()
@click.argument("path", type=click.Path())
@click.option("--name", required=True, help="Project name.")
@click.option("--context", default="", help="Text given to every agent working on it.")
@json_option
def register(path: str, name: str, context: str, as_json: bool) -> None:
    """Register a git repository as a project."""
    absolute = os.path.abspath(os.path.expanduser(path))
    body = _client().register_project(name, absolute, context)
    if as_json:
        return _print_json(body)
    click.echo(f"registered project {body.get('name', name)} → {body.get('path', absolute)}")


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def projects(ctx: click.Context, as_json: bool) -> None:
    """List the registered projects and their policies (`projects set` changes them)."""
    if ctx.invoked_subcommand:
        return
    body = _client().projects()
    if as_json:
        return _print_json(body)
    headers = ["NAME", "PATH", "MAX", "PRIORITY", "BACKEND", "TIMEOUT", "CHAIN", "CONTEXT"]
    rows = [
        [
            p.get("name"),
            p.get("path"),
            str(p.get("max_concurrent", 1)),
            p.get("default_priority") or "-",
            p.get("default_backend") or "-",
            format_duration(p["default_timeout"]) if p.get("default_timeout") else "-",
            "yes" if p.get("auto_chain") else "-",
            p.get("context") or "",
        ]
        for p in body["projects"]
    ]
    _echo_lines(render.render_table(headers, rows, width=_width(), max_col=60))


def _timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("prompt")
@click.option("--project", help="Project the task works on.")
@click.option(
    "--backend",
    type=click.Choice(["claude", "codex", "shell"]),
    help="Agent to run (default: the project's default_backend, else claude).",
)
@click.option("--model", help="Model for the agent.")
@click.option("--priority", type=click.Choice(["urgent", "high", "normal", "low"]))
@click.option("--host", help="Run on this host.")
@click.option("--label", "labels", multiple=True, help="Run on a host with this label.")
@click.option("--timeout", callback=_timeout, help="Time limit: seconds, 30m, 2h.")
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
    as_json: bool,
) -> None:
    """Queue a task (or, with --cron/--every, a schedule); PROMPT '-' reads it from stdin."""
    if prompt == "-":
        raw = click.get_binary_stream("stdin").read()
        try:
            prompt = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("the prompt on stdin is not valid UTF-8") from None
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
    )
    if cron is not None or every is not None or overlap is not None:
        from dobby.cli.scheduler import add_schedule

        return add_schedule(fields, cron=cron, every=every, overlap=overlap, as_json=as_json)
    task = _client().add_task(**fields)
    _echo_task(task, as_json)


@main.command()
@click.argument("project", required=False)
@click.option("--status", "status_", help="Only tasks in this status.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many tasks.")
@json_option
def status(project: str | None, status_: str | None, limit: int | None, as_json: bool) -> None:
    """List tasks, newest first."""
    body = _client().tasks(project=project, status=status_, limit=limit)
    if as_json:
        return _print_json(body)
    tasks = body.get("tasks") or []
    if not tasks:
        click.echo("no tasks")
        return
    colors = {1: render.status_color}
    _echo_lines(
        render.render_table(
            render.TASK_HEADERS, render.task_rows(tasks), width=_width(), colors=colors
        )
    )


@main.command()
@click.argument("task_id")
@json_option
def show(task_id: str, as_json: bool) -> None:
    """Show every field of a task."""
    task = _client().task(task_id)
    if as_json:
        return _print_json(task)
    _echo_lines(render.task_detail_lines(task))


@main.command()
@click.argument("task_id")
@json_option
def cancel(task_id: str, as_json: bool) -> None:
    """Cancel a task."""
    _echo_task(_client().cancel(task_id), as_json)


@main.command()
@click.argument("task_id")
@click.option("--cascade", is_flag=True, help="Also re-queue what failed because of it.")
@json_option
def retry(task_id: str, cascade: bool, as_json: bool) -> None:
    """Re-queue a failed or cancelled task (and, with --cascade, its failed dependents)."""
    task = _client().retry(task_id, cascade=cascade)
    _echo_task(task, as_json)
    if cascade and not as_json and len(task.get("requeued") or []) > 1:
        click.echo(f"also re-queued: {', '.join(task['requeued'][1:])}")


@main.command()
@click.argument("task_id")
@click.option("--print", "print_only", is_flag=True, help="Only print the command.")
def attach(task_id: str, print_only: bool) -> None:
    """Attach this terminal to the task's tmux session (over SSH for remote hosts)."""
    client = _client()
    task = client.task(task_id)
    if not task.get("host"):
        raise DobbyError(f"task {task.get('id')} is {task.get('status')} and has no host yet")
    hosts = {h.get("name"): h for h in client.hosts().get("hosts") or []}
    host = hosts.get(task["host"])
    if host is None:
        raise DobbyError(f"host {task['host']!r} of task {task.get('id')} is not in the inventory")
    cmd = render.attach_command(task["id"], host)
    running = task.get("status") == "running"
    if print_only:
        if not running:
            click.echo(f"note: task {task['id']} is {task.get('status')}, not running", err=True)
        click.echo(shlex.join(cmd))
        return
    if not running:
        raise DobbyError(f"task {task['id']} is {task.get('status')}, not running")
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        raise DobbyError(f"cannot run {cmd[0]}: {exc.strerror}") from None


# Feature modules add their commands to `main` when imported.
import dobby.cli.hosts  # noqa: E402,F401
import dobby.cli.integrations  # noqa: E402,F401
import dobby.cli.machines  # noqa: E402,F401
import dobby.cli.results  # noqa: E402,F401
import dobby.cli.scheduler  # noqa: E402,F401
