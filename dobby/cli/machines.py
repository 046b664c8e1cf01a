"""Machine commands: ``gpus``, ``remote``, ``hosts check|bootstrap``, ``init``, ``deploy``."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

import click

from dobby.cli import render as render
from dobby.cli.hosts import hosts
from dobby.cli.main import _client, _echo_lines, _print_json, _width, json_option, main
from dobby.core.errors import DobbyError
from dobby.core.models import Host
from dobby.inventory.load import Inventory, load_inventory
from dobby.machines.checks import FAIL, OK, SKIP, WARN, HostReport

MARKS = {OK: ("✓", "green"), WARN: ("!", "yellow"), FAIL: ("✗", "red"), SKIP: ("-", None)}
ENV_FILE = ".env"
_ENV_KEYS = ("DOBBY_", "SLACK_")


def load_dotenv(path: Path = Path(ENV_FILE)) -> None:
    """Export DOBBY_*/SLACK_* settings from ./.env (written by `dobby init`); env wins."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name.startswith(_ENV_KEYS) or name in os.environ:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ[name] = value


# Every `dobby` command reads ./.env first, so `dobby init`'s answers apply in that directory.
_main_callback = main.callback


def _main_with_dotenv(*args: Any, **kwargs: Any) -> Any:
    load_dotenv()
    return _main_callback(*args, **kwargs) if _main_callback else None


main.callback = _main_with_dotenv


def cli_inventory(path: str | None) -> Inventory:
    """Load the inventory the CLI sees: --inventory, DOBBY_INVENTORY, ./inventory, or local."""
    chosen = path or os.environ.get("DOBBY_INVENTORY")
    if not chosen and Path("inventory").exists():
        chosen = "inventory"
    return load_inventory(Path(chosen).expanduser() if chosen else None)


def _pick_hosts(inventory: Inventory, names: tuple[str, ...]) -> list[Host]:
    if not names:
        return list(inventory.hosts.values())
    return [inventory.get(n) for n in names]


inventory_option = click.option(
    "--inventory", type=click.Path(), help="Inventory file or directory (default ./inventory)."
)


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


@main.command()
@click.option("--history", is_flag=True, help="Include recent samples (with --json).")
@json_option
def gpus(history: bool, as_json: bool) -> None:
    """Show the GPUs of every GPU host and the task using each one."""
    body = _client().gpus(history=history)
    if as_json:
        return _print_json(body)
    headers = ["HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "USED BY"]
    if not body.get("hosts"):
        click.echo("no GPU hosts (set gpus: true or auto on a host in the inventory)")
        return
    _echo_lines(render.render_table(headers, gpu_rows(body), width=_width(), max_col=40))


# --- remote ----------------------------------------------------------------------------------


def attach_argv(task_id: str, host: dict[str, Any]) -> list[str]:
    """Return the command attaching this terminal to a session (switch-client inside tmux)."""
    if (host.get("connection") or "ssh") == "local" and os.environ.get("TMUX"):
        return ["tmux", "switch-client", "-t", f"dobby-{task_id}"]
    return render.attach_command(task_id, host)


@main.command()
@click.argument("host", required=False)
@click.option("--project", help="Work in a worktree of this project.")
@click.option(
    "--backend",
    type=click.Choice(["claude", "codex", "shell"]),
    default="claude",
    show_default=True,
)
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
    client = _client()
    if list_:
        body = client.remote_sessions(include_finished=all_)
        if as_json:
            return _print_json(body)
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
        _echo_lines(render.render_table(headers, rows, width=_width()))
        return
    task = client.open_remote(
        host=host, project=project, backend=backend, model=model, prompt=prompt
    )
    hosts_by_name = {h.get("name"): h for h in client.hosts().get("hosts") or []}
    cmd = attach_argv(task["id"], hosts_by_name.get(task["host"]) or {"name": task["host"]})
    if as_json:
        return _print_json({**task, "attach": cmd})
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


# --- hosts check / bootstrap -----------------------------------------------------------------


def report_lines(report: HostReport) -> list[str]:
    """Return the lines printed for one host's checks."""
    lines = [click.style(f"{report.host} ({report.target})", bold=True)]
    for check in report.checks:
        mark, color = MARKS[check.status]
        lines.append(
            f"  {click.style(mark, fg=color)} {check.name:<9} {render.clean(check.message)}"
        )
    return lines


async def _check_all(hosts_: list[Host], tofu: str | None) -> list[HostReport]:
    from dobby.machines.checks import check_host

    return list(await asyncio.gather(*(check_host(h, tofu_known_hosts=tofu) for h in hosts_)))


def _tofu_file() -> str:
    home = Path(os.environ.get("DOBBY_HOME") or "~/.dobby-hub").expanduser()
    return str(home / "known_hosts")


def _reports_from_hub(names: tuple[str, ...]) -> list[HostReport]:
    from dobby.machines.checks import Check

    client = _client()
    if not names:
        names = tuple(h["name"] for h in client.hosts().get("hosts") or [])
    reports = []
    for name in names:
        body = client.check_host(name)
        report = HostReport(host=body["host"], target=body["target"])
        report.checks = [Check(**c) for c in body["checks"]]
        reports.append(report)
    return reports


@hosts.command("check")
@click.argument("names", nargs=-1)
@inventory_option
@click.option("--hub", "via_hub", is_flag=True, help="Check from the hub (DOBBY_URL) instead.")
@json_option
def hosts_check(
    names: tuple[str, ...], inventory: str | None, via_hub: bool, as_json: bool
) -> None:
    """Check that hosts are ready: SSH, host key, tmux, git, agents, disk, GPUs, shell speed."""
    if via_hub:
        reports = _reports_from_hub(names)
    else:
        chosen = _pick_hosts(cli_inventory(inventory), names)
        reports = asyncio.run(_check_all(chosen, _tofu_file()))
    if as_json:
        _print_json({"hosts": [r.to_dict() for r in reports]})
    else:
        for report in reports:
            _echo_lines(report_lines(report))
        bad = [r.host for r in reports if not r.ok]
        click.echo(
            f"{len(reports) - len(bad)}/{len(reports)} hosts ready"
            + (f"; fix: {', '.join(bad)}" if bad else "")
        )
    if any(not r.ok for r in reports):
        click.get_current_context().exit(1)


async def _bootstrap(host: Host, install: bool, tofu: str) -> list[str]:
    from dobby.machines.checks import install_command, parse_facts, render_bootstrap, render_facts
    from dobby.transport import make_transport

    transport = make_transport(host, tofu_known_hosts=tofu)
    out: list[str] = []
    try:
        await transport.connect()
        res = await transport.run(render_bootstrap(host.workdir), timeout=60)
        if not res.ok:
            raise DobbyError(f"{host.name}: cannot create {host.workdir}: {res.stderr.strip()}")
        out.append(f"✓ {host.workdir} ready (tasks/, repos/, worktrees/)")
        facts = parse_facts(
            (
                await transport.run(
                    render_facts(env=host.env, workdir=host.workdir, gpus=False), timeout=60
                )
            ).stdout
        )
        missing = [t for t in ("tmux", "git") if not facts.get(t)]
        if not missing:
            out.append("✓ tmux and git present")
            return out
        cmd = install_command(
            facts.get("pm") or "", missing, is_root=transport.is_root, sudo=facts.get("sudo") == "1"
        )
        if cmd is None:
            out.append(
                f"✗ missing {' '.join(missing)}: no package manager Dobby can use "
                "(or no passwordless sudo); install them by hand"
            )
        elif not install:
            out.append(f"! missing {' '.join(missing)}: rerun with --install to run `{cmd}`")
        else:
            res = await transport.run(cmd, timeout=900)
            status = "✓ installed" if res.ok else f"✗ install failed (exit {res.exit_status})"
            out.append(f"{status}: {' '.join(missing)} via `{cmd}`")
            if not res.ok:
                out.append((res.stderr or res.stdout).strip()[-400:])
        return out
    finally:
        await transport.close()


@hosts.command("bootstrap")
@click.argument("name")
@click.option("--install", is_flag=True, help="Install missing tmux/git with the package manager.")
@inventory_option
def hosts_bootstrap(name: str, install: bool, inventory: str | None) -> None:
    """Prepare a host: create its workdir; with --install, install missing tmux and git."""
    host = cli_inventory(inventory).get(name)
    lines = asyncio.run(_bootstrap(host, install, _tofu_file()))
    _echo_lines(lines)
    if any(line.startswith("✗") for line in lines):
        click.get_current_context().exit(1)


# --- init and deploy live in their own modules -----------------------------------------------

import dobby.cli.deploy  # noqa: E402,F401
import dobby.cli.init_wizard  # noqa: E402,F401
