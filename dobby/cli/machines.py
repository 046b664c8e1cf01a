"""Machine commands: ``gpus`` (who uses which GPU) and ``remote`` (interactive sessions)."""

from __future__ import annotations

import os
import shlex
from typing import Any

import click

from dobby.cli import render
from dobby.cli.app import BACKENDS, client, echo_lines, json_option, print_json, width
from dobby.core.errors import DobbyError

# --- gpus ------------------------------------------------------------------------------------


def _gib(mib: Any) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f}"


def gpu_rows(body: dict[str, Any]) -> list[list[str]]:
    """Return one row per GPU (or per GPU-less host) of a GET /gpus body."""
    rows = []
    for host in body.get("hosts") or []:
        if not host.get("gpus"):
            reason = f"no GPU: {host.get('reason') or '?'}"
            rows.append([host["host"], "-", "-", "-", "-", "-", "-", reason])
            continue
        for gpu in host["gpus"]:
            users = gpu.get("tasks") or []
            if users:
                use = "task " + ",".join(users)
            elif gpu.get("reserved_by"):
                use = f"reserved {gpu['reserved_by']}"
            elif gpu.get("processes"):
                use = "busy pid " + ",".join(str(p["pid"]) for p in gpu["processes"])
            else:
                use = "busy" if gpu.get("busy") else "free"
            util = gpu.get("utilization")
            temp, power = gpu.get("temperature"), gpu.get("power_draw")
            rows.append(
                [
                    host["host"],
                    str(gpu["index"]),
                    gpu.get("name") or "?",
                    "-" if util is None else f"{util:.0f}%",
                    f"{_gib(gpu.get('memory_used'))}/{_gib(gpu.get('memory_total'))} GiB",
                    "-" if temp is None else f"{temp:.0f}°C",
                    "-" if power is None else f"{power:.0f} W",
                    use,
                ]
            )
    return rows


@click.command()
@click.option("--history", is_flag=True, help="Include recent samples (with --json).")
@json_option
def gpus(history: bool, as_json: bool) -> None:
    """Show the GPUs of every GPU host and the task using each one."""
    body = client().gpus(history=history)
    if as_json:
        return print_json(body)
    headers = ["HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "USED BY"]
    if not body.get("hosts"):
        click.echo("no GPU hosts (set gpus: true or auto on a host in the inventory)")
        return
    echo_lines(render.render_table(headers, gpu_rows(body), width=width(), max_col=40))


# --- remote ----------------------------------------------------------------------------------


def attach_argv(task_id: str, host: dict[str, Any]) -> list[str]:
    """Return the command attaching this terminal to a session (switch-client inside tmux)."""
    if (host.get("connection") or "ssh") == "local" and os.environ.get("TMUX"):
        return ["tmux", "switch-client", "-t", f"dobby-{task_id}"]
    return render.attach_command(task_id, host)


@click.command()
@click.argument("host", required=False)
@click.option("--project", help="Work in a worktree of this project.")
@click.option("--backend", type=BACKENDS, default="claude", show_default=True)
@click.option("--model", help="Model for the agent.")
@click.option("--prompt", help="First message to the agent.")
@click.option("--list", "list_", is_flag=True, help="List the sessions instead.")
@click.option("--all", "all_", is_flag=True, help="With --list: ended sessions too.")
@click.option("--no-attach", is_flag=True, help="Open it but do not attach (print the command).")
@json_option
def remote(
    host: str | None,
    project: str | None,
    backend: str,
    model: str | None,
    prompt: str | None,
    list_: bool,
    all_: bool,
    no_attach: bool,
    as_json: bool,
) -> None:
    """Open an interactive agent session in tmux on HOST and attach to it (detach: Ctrl-b d)."""
    hub = client()
    if list_:
        body = hub.remote_sessions(include_finished=all_)
        if as_json:
            return print_json(body)
        rows = [
            [
                t["id"],
                t.get("status") or "?",
                t.get("host") or "-",
                t.get("backend") or "-",
                t.get("project") or "-",
                render.age_or_duration(t),
                f"dobby attach {t['id']}",
            ]
            for t in body.get("sessions") or []
        ]
        if not rows:
            click.echo("no interactive sessions" + ("" if all_ else " running"))
            return
        headers = ["ID", "STATUS", "HOST", "BACKEND", "PROJECT", "AGE", "ATTACH"]
        echo_lines(render.render_table(headers, rows, width=width()))
        return
    task = hub.open_remote(host=host, project=project, backend=backend, model=model, prompt=prompt)
    hosts_by_name = {h.get("name"): h for h in hub.hosts().get("hosts") or []}
    cmd = attach_argv(task["id"], hosts_by_name.get(task["host"]) or {"name": task["host"]})
    if as_json:
        return print_json({**task, "attach": cmd})
    where = f"{task['host']}" + (f" in project {project}" if project else "")
    click.echo(f"session {task['id']} ({backend}) on {where}: tmux dobby-{task['id']}", err=True)
    if no_attach:
        click.echo(shlex.join(cmd))
        return
    click.echo(
        f"attaching; detach with Ctrl-b d, come back with `dobby attach {task['id']}`", err=True
    )
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        raise DobbyError(f"cannot run {cmd[0]}: {exc.strerror}") from None


COMMANDS = [gpus, remote]
