"""Project commands: ``register``, ``projects`` and ``projects set``."""

from __future__ import annotations

import os
from typing import Any

import click

from dobby.cli import render
from dobby.cli.app import client, echo_lines, json_option, print_json, width
from dobby.core.errors import HubError
from dobby.core.timefmt import format_duration


@click.command()
@click.argument("path", type=click.Path())
@click.option("--name", required=True, help="Project name.")
@click.option(
    "--context", help="Text given to every agent working on it (kept when not given again)."
)
@json_option
def register(path: str, name: str, context: str | None, as_json: bool) -> None:
    """Register a git repository as a project (again: change its path, keep its settings)."""
    absolute = os.path.abspath(os.path.expanduser(path))
    hub = client()
    try:
        before: dict[str, Any] | None = hub.project(name)
    except HubError as exc:
        if exc.status != 404:
            raise
        before = None
    body = hub.register_project(name, absolute, context)
    if as_json:
        return print_json(body)
    echo_lines(render.registered_lines(before, body))


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def projects(ctx: click.Context, as_json: bool) -> None:
    """List the registered projects and their policies (`projects set` changes them)."""
    if ctx.invoked_subcommand:
        return
    body = client().projects()
    if as_json:
        return print_json(body)
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
    echo_lines(render.render_table(headers, rows, width=width(), max_col=60))


@projects.command("set")
@click.argument("name")
@click.argument("settings", nargs=-1, required=True)
@json_option
def projects_set(name: str, settings: tuple[str, ...], as_json: bool) -> None:
    """Set project policies: KEY=VALUE ... (max_concurrent, default_priority, default_backend,
    default_timeout, auto_chain, auto_retry, budget_usd=day:20,month:300,
    fallback_backends=codex, commit_ignore='*.log,data/', context; model, max_turns,
    max_budget_usd: defaults of its tasks).
    VALUE none unsets."""
    fields: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="SETTINGS")
        fields[key.strip()] = value.strip()
    body = client().update_project(name, **fields)
    if as_json:
        return print_json(body)
    shown = ", ".join(
        f"{k}={format_duration(body[k]) if k == 'default_timeout' and body[k] else body.get(k)}"
        for k in fields
    )
    click.echo(f"project {body.get('name')}: {shown}")


COMMANDS = [register, projects]
