"""Host commands: ``hosts``, ``hosts check``, ``hosts bootstrap``, ``spokes``, ``agent``.

``hosts check`` and ``hosts bootstrap`` ask the hub when one answers (it checks with its own
keys and known_hosts); with no hub — or ``--inventory``/``--no-hub`` — they work from this
machine through :mod:`dobby.offline.hosts`, on the inventory ``dobby start`` would load.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

import click

from dobby.cli import render
from dobby.cli.app import client, echo_lines, json_option, print_json, width
from dobby.core.errors import HubError

HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"
PROBE_TIMEOUT = 3.0  # how long `hosts check` waits for a hub before checking from here
CHECK_TIMEOUT = 300.0  # checking a slow host through the hub (SSH connect, shell timing)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """List the inventory's hosts with reachability, tool versions and running tasks."""
    if ctx.invoked_subcommand is not None:
        return
    body = client().hosts()
    if as_json:
        return print_json(body)
    colors = {3: render.reach_color}
    echo_lines(
        render.render_table(
            render.HOST_HEADERS,
            render.host_rows(body.get("hosts") or []),
            width=width(),
            colors=colors,
        )
    )
    for h in body.get("hosts") or []:
        if h.get("note"):  # a host removed from the inventory while tasks still run there
            click.secho(f"{h.get('name')}: {h['note']}", fg="yellow")
        if h.get("error"):
            click.secho(f"{h.get('name')}: {render.clean(h['error'])}", fg="yellow")
    error = (body.get("inventory") or {}).get("error")
    if error:
        click.secho(f"inventory error: {error} (last good inventory in force)", fg="red")


inventory_option = click.option(
    "--inventory",
    type=click.Path(),
    help="Check from here with this inventory file or directory (no hub).",
)
hub_option = click.option(
    "--hub", "via_hub", is_flag=True, help="Only through the hub (DOBBY_URL): fail if none answers."
)
no_hub_option = click.option(
    "--no-hub", is_flag=True, help="From this machine, with the hub's inventory, even if it runs."
)


def _hub_to_use(via_hub: bool, no_hub: bool, inventory: str | None, timeout: float) -> Any:
    """Return a client of the hub to work through, or None to work from this machine."""
    if (via_hub and no_hub) or (via_hub and inventory):
        raise click.UsageError("--hub cannot be combined with --no-hub or --inventory")
    if no_hub or inventory:
        return None
    hub = client(timeout=timeout)
    if via_hub:
        return hub
    try:
        client(timeout=PROBE_TIMEOUT).health()
    except HubError as exc:
        if exc.status != 0:  # it answered, with an error: that error is worth seeing
            raise
        click.echo(f"no hub answers at {hub.url}: working from this machine", err=True)
        return None
    return hub


@hosts.command("check")
@click.argument("names", nargs=-1)
@inventory_option
@hub_option
@no_hub_option
@json_option
def hosts_check(
    names: tuple[str, ...], inventory: str | None, via_hub: bool, no_hub: bool, as_json: bool
) -> None:
    """Check that hosts are ready: SSH, host key, tmux, git, agents, disk, GPUs, shell speed."""
    hub = _hub_to_use(via_hub, no_hub, inventory, CHECK_TIMEOUT)
    if hub is not None:
        chosen = list(names) or [h["name"] for h in hub.hosts().get("hosts") or []]
        reports = [hub.check_host(name) for name in chosen]
    else:
        from dobby.offline.hosts import check_hosts

        reports = check_hosts(list(names), inventory=inventory)
    if as_json:
        print_json({"hosts": reports})
    else:
        for report in reports:
            echo_lines(render.report_lines(report))
        bad = [str(r.get("host")) for r in reports if not r.get("ok")]
        click.echo(
            f"{len(reports) - len(bad)}/{len(reports)} hosts ready"
            + (f"; fix: {', '.join(bad)}" if bad else "")
        )
    if any(not r.get("ok") for r in reports):
        click.get_current_context().exit(1)


@hosts.command("bootstrap")
@click.argument("name")
@click.option("--install", is_flag=True, help="Install missing tmux/git with the package manager.")
@inventory_option
@hub_option
@no_hub_option
@json_option
def hosts_bootstrap(
    name: str, install: bool, inventory: str | None, via_hub: bool, no_hub: bool, as_json: bool
) -> None:
    """Prepare a host: create its workdir; with --install, install missing tmux and git."""
    hub = _hub_to_use(via_hub, no_hub, inventory, 1800.0 if install else CHECK_TIMEOUT)
    if hub is not None:
        report = hub.bootstrap_host(name, install=install)
    else:
        from dobby.offline.hosts import bootstrap

        report = bootstrap(name, install=install, inventory=inventory)
    if as_json:
        print_json(report)
    else:
        echo_lines(report.get("lines") or [])
    if not report.get("ok"):
        click.get_current_context().exit(1)


@click.command()
@json_option
def spokes(as_json: bool) -> None:
    """List hosts added with `dobby agent` (POST /spokes/register)."""
    body = client().spokes()
    if as_json:
        return print_json(body)
    rows = render.host_rows(body.get("spokes") or [])
    headers = ["NAME", "CONN", "ADDRESS", "REACH", "LABELS"]
    echo_lines(
        render.render_table(headers, [[r[0], r[1], r[2], r[3], r[9]] for r in rows], width=width())
    )


def primary_address() -> str:
    """Return this machine's primary non-loopback IPv4 address, or 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks a route
            address: str = sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return address if not address.startswith("127.") and address != "0.0.0.0" else "127.0.0.1"


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME (some containers)
        return str(os.getuid())


def _host_key(path: str = HOST_KEY_FILE) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@click.command()
@click.option("--hub", "hub_url", required=True, help="URL of the hub.")
@click.option("--id", "name", required=True, help="Name of this machine in the inventory.")
@click.option("--address", help="Address the hub reaches this machine at.")
@click.option("--port", type=int, default=22, show_default=True, help="SSH port.")
@click.option("--user", help="SSH user (default: the current user).")
@click.option("--label", "labels", multiple=True, help="Label of this machine (repeatable).")
@click.option(
    "--host-key",
    "host_key_file",
    default=HOST_KEY_FILE,
    show_default=True,
    help="This machine's public SSH host key (pinned by the hub).",
)
@click.option(
    "--reverse",
    metavar="[USER@]HOST[:PORT]",
    help="Behind NAT: keep a reverse tunnel to this SSH server (the hub's machine).",
)
@click.option(
    "--reverse-port",
    type=int,
    default=2222,
    show_default=True,
    help="Port opened on the --reverse host's loopback, forwarded to our sshd.",
)
@click.option("--reverse-identity", help="SSH key for the --reverse host.")
@click.option("--reverse-known-hosts", help="known_hosts file for the --reverse host.")
@json_option
def agent(
    hub_url: str,
    name: str,
    address: str | None,
    port: int,
    user: str | None,
    labels: tuple[str, ...],
    host_key_file: str,
    reverse: str | None,
    reverse_port: int,
    reverse_identity: str | None,
    reverse_known_hosts: str | None,
    as_json: bool,
) -> None:
    """Add this machine to a hub's hosts (it is then reached over SSH); --reverse for NAT."""
    from dobby.offline.tunnel import keep_open, open_tunnel, reverse_argv

    tunnel, first = None, None
    if reverse:
        # The hub reaches us at 127.0.0.1:reverse_port on the --reverse host: register that.
        tunnel = reverse_argv(
            target=reverse,
            remote_port=reverse_port,
            local_address=address or "localhost",
            local_port=port,
            identity_file=reverse_identity,
            known_hosts=reverse_known_hosts,
        )
        first = open_tunnel(tunnel)  # up before registering: the hub connects at once
    host = client(url=hub_url).register_spoke(
        name=name,
        address="127.0.0.1" if tunnel else (address or primary_address()),
        port=reverse_port if tunnel else port,
        user=user or _current_user(),
        labels=list(labels),
        host_key=_host_key(host_key_file),
    )
    if as_json:
        print_json(host)
    else:
        where = f"{host.get('user')}@{host.get('address')}:{host.get('port')}"
        click.echo(f"registered {host.get('name', name)} ({where}) with {hub_url}")
    if tunnel:
        click.echo(f"keeping the reverse tunnel open: {' '.join(tunnel)} (Ctrl-C stops)", err=True)
        try:
            keep_open(tunnel, first=first, log=lambda m: click.echo(m, err=True))
        except KeyboardInterrupt:
            pass


COMMANDS = [hosts, spokes, agent]
