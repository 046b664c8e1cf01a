"""``dobby deploy [status|logs|stop] HOST``: run a hub on an inventory host (via dobby.offline)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

ACTIONS = ("up", "status", "logs", "stop")


@click.command()
@click.argument("words", nargs=-1, required=True, metavar="[status|logs|stop] HOST")
@click.option(
    "--port",
    type=int,
    help="Hub port on the host (default 8420; status/logs: the one it was deployed with).",
)
@click.option("--local-port", type=int, help="Local end of the printed port-forward.")
@click.option(
    "--dir", "base", default="~/.dobby-deploy", show_default=True, help="Where on the host."
)
@click.option("--python", default="python3", show_default=True, help="Python on the host.")
@click.option(
    "--hub-inventory",
    type=click.Path(exists=True, dir_okay=False),
    help="Inventory file for the deployed hub (default: its own machine only).",
)
@click.option("--lines", type=int, default=50, show_default=True, help="For logs.")
@click.option("--inventory", type=click.Path(), help="Inventory to find HOST in.")
@click.option(
    "--provider", type=click.Choice(["vultr"]), help="Create the host first (VULTR_API_KEY)."
)
@click.option("--region", default="ewr", show_default=True, help="Provider region.")
@click.option("--plan", default="vc2-1c-1gb", show_default=True, help="Provider plan.")
@click.option("--os-id", type=int, default=2136, show_default=True, help="Provider OS (Debian 12).")
@click.option(
    "--ssh-key",
    default="~/.ssh/id_ed25519.pub",
    show_default=True,
    help="Public key installed on the new host; its private half logs in.",
)
@click.option("--user", default="root", show_default=True, help="SSH user on the new host.")
@click.option("--ssh-port", type=int, default=22, show_default=True, help="Its SSH port.")
@click.option("--known-hosts", help="known_hosts where its key is pinned on first contact.")
def deploy(
    words: tuple[str, ...],
    port: int | None,
    local_port: int | None,
    base: str,
    python: str,
    hub_inventory: str | None,
    lines: int,
    inventory: str | None,
    provider: str | None,
    region: str,
    plan: str,
    os_id: int,
    ssh_key: str,
    user: str,
    ssh_port: int,
    known_hosts: str | None,
) -> None:
    """Deploy the hub to HOST (`deploy HOST`), or `deploy status|logs|stop HOST`.

    With --provider vultr, HOST is created first and added to ./inventory/HOST.yaml.
    """
    from dobby.offline import deploy as offline

    action, name = ("up", words[0]) if len(words) == 1 else words[:2]
    if action not in ACTIONS or len(words) > 2:
        raise click.UsageError("usage: dobby deploy HOST | dobby deploy status|logs|stop HOST")
    host = offline.find_host(
        name,
        inventory=inventory,
        provider=provider if action == "up" else None,
        region=region,
        plan=plan,
        os_id=os_id,
        ssh_key=ssh_key,
        user=user,
        ssh_port=ssh_port,
        known_hosts=known_hosts,
        echo=lambda m: click.echo(m, err=True),
    )
    if action != "up":
        well, said = offline.deploy_action(host, action, base=base, port=port, lines=lines)
        click.echo(said)
        if not well:
            click.get_current_context().exit(1)
        return
    port = port or offline.DEFAULT_PORT
    text = Path(hub_inventory).read_text(encoding="utf-8") if hub_inventory else None
    supervisor = offline.deploy_up(
        host,
        base=base,
        port=port,
        python=python,
        inventory_text=text,
        echo=lambda m: click.echo(m, err=True),
    )
    forward = offline.forward_command(host, local_port=local_port or port, port=port)
    how = "tmux session dobby-hub" if supervisor == "tmux" else "systemd --user dobby-hub.service"
    click.echo(f"the hub runs on {host.name} at 127.0.0.1:{port} ({how}). Reach it with:")
    click.echo(f"  {shlex.join(forward)}")
    click.echo(f"  export DOBBY_URL=http://127.0.0.1:{local_port or port}")
    click.echo(f"  then open http://127.0.0.1:{local_port or port}/ for the dashboard")


COMMANDS = [deploy]
