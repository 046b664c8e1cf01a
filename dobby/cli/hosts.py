"""``dobby hosts``, ``spokes`` and ``agent``: the machines a hub can reach."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

import click

from dobby.cli import render as render
from dobby.cli.main import _client, _echo_lines, _print_json, _width, json_option, main
from dobby.client.http import HubClient

HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def hosts(ctx: click.Context, as_json: bool) -> None:
    """List the inventory's hosts with reachability, tool versions and running tasks."""
    if ctx.invoked_subcommand is not None:
        return  # `hosts check` / `hosts bootstrap` (dobby/cli_machines.py)
    body = _client().hosts()
    if as_json:
        return _print_json(body)
    colors = {3: render.reach_color}
    _echo_lines(
        render.render_table(
            render.HOST_HEADERS,
            render.host_rows(body.get("hosts") or []),
            width=_width(),
            colors=colors,
        )
    )
    for h in body.get("hosts") or []:
        if h.get("error"):
            click.secho(f"{h.get('name')}: {render.clean(h['error'])}", fg="yellow")
    error = (body.get("inventory") or {}).get("error")
    if error:
        click.secho(f"inventory error: {error} (last good inventory in force)", fg="red")


@main.command()
@json_option
def spokes(as_json: bool) -> None:
    """List hosts added with `dobby agent` (POST /spokes/register)."""
    body = _client().spokes()
    if as_json:
        return _print_json(body)
    rows = render.host_rows(body.get("spokes") or [])
    headers = ["NAME", "CONN", "ADDRESS", "REACH", "LABELS"]
    _echo_lines(
        render.render_table(headers, [[r[0], r[1], r[2], r[3], r[9]] for r in rows], width=_width())
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


@main.command()
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
    from dobby.machines.tunnel import keep_open, open_tunnel, reverse_argv

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
    host = HubClient(url=hub_url).register_spoke(
        name=name,
        address="127.0.0.1" if tunnel else (address or primary_address()),
        port=reverse_port if tunnel else port,
        user=user or _current_user(),
        labels=list(labels),
        host_key=_host_key(host_key_file),
    )
    if as_json:
        _print_json(host)
    else:
        where = f"{host.get('user')}@{host.get('address')}:{host.get('port')}"
        click.echo(f"registered {host.get('name', name)} ({where}) with {hub_url}")
    if tunnel:
        click.echo(f"keeping the reverse tunnel open: {' '.join(tunnel)} (Ctrl-C stops)", err=True)
        try:
            keep_open(tunnel, first=first, log=lambda m: click.echo(m, err=True))
        except KeyboardInterrupt:
            pass
