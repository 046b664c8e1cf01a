"""``dobby deploy [status|logs|stop] HOST``: run a hub on an inventory host, over SSH.

Deploy builds a wheel of this very Dobby (pure Python: zipped here, no build tool needed),
pushes it over SFTP, installs it in a venv on the host (pip fetches the dependencies there),
writes the hub's dobby.yaml and inventory, and starts ``dobby start`` in a tmux session bound to
the host's loopback. The user reaches it through an SSH port-forward, printed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import shlex
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import click
import yaml

import dobby
from dobby.cli.main import main
from dobby.core.errors import DobbyError
from dobby.core.models import Host
from dobby.hostside.scripts import shell_quote
from dobby.machines.vultr import InstanceSpec
from dobby.transport import Transport, make_transport

SESSION = "dobby-hub"
UNIT = "dobby-hub.service"
DEFAULT_DIR = "~/.dobby-deploy"
ACTIONS = ("up", "status", "logs", "stop")


def build_wheel(dest: Path) -> Path:
    """Zip the installed ``dobby`` package into a py3-none-any wheel in ``dest``; return it."""
    version = dobby.__version__
    package = Path(dobby.__file__).resolve().parent
    dist = importlib.metadata.distribution("dobby")
    info = f"dobby-{version}.dist-info"
    requires = [r for r in dist.requires or [] if "extra ==" not in r]
    metadata = (
        "\n".join(
            [
                "Metadata-Version: 2.1",
                "Name: dobby",
                f"Version: {version}",
                "Requires-Python: >=3.11",
                *(f"Requires-Dist: {r}" for r in requires),
            ]
        )
        + "\n"
    )
    extra = {
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dobby-deploy\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": (dist.read_text("entry_points.txt") or "").encode(),
    }
    wheel = dest / f"dobby-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        files = sorted(
            p
            for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        items = [(f"dobby/{p.relative_to(package).as_posix()}", p.read_bytes()) for p in files]
        for name, data in [*items, *extra.items()]:
            zf.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def _dir(base: str) -> str:
    """Return ``base`` as a shell word, keeping a leading ``~/`` live."""
    return '"$HOME"/' + shell_quote(base[2:]) if base.startswith("~/") else shell_quote(base)


def render_install(*, base: str, wheel: str, python: str) -> str:
    """Return the command making the venv and installing the pushed wheel (and its deps)."""
    b = _dir(base)
    pip = f"{b}/venv/bin/python -m pip install -q --disable-pip-version-check"
    return (
        "set -e\n"
        f"mkdir -p {b}/home {b}/inventory\n"
        f"[ -x {b}/venv/bin/python ] || {shell_quote(python)} -m venv {b}/venv\n"
        f"{pip} {shell_quote(wheel)}\n"
        # Same version, new code (an upgrade from a work tree): reinstall dobby itself.
        f"{pip} --no-deps --force-reinstall {shell_quote(wheel)}\n"
        f"{b}/venv/bin/dobby --version\n"
    )


def _health(b: str, port: int, *, show: bool = False) -> str:
    call = f'u.urlopen("http://127.0.0.1:{port}/health", timeout=2)'
    call = f"print({call}.read().decode())" if show else call
    return f"{b}/venv/bin/python -c 'import urllib.request as u; {call}'"


def render_unit(*, base: str, port: int) -> str:
    """Return the systemd --user unit running the hub (``base`` is absolute)."""
    return (
        "[Unit]\nDescription=Dobby hub (dobby deploy)\nAfter=network-online.target\n\n"
        f"[Service]\nEnvironment=DOBBY_HOME={base}/home\nWorkingDirectory={base}\n"
        f"ExecStart={base}/venv/bin/dobby start --host 127.0.0.1 --port {port} "
        f"--inventory {base}/inventory\nRestart=on-failure\nRestartSec=2\n"
        f"StandardOutput=append:{base}/hub.log\nStandardError=append:{base}/hub.log\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


# Prints "systemd" when a user systemd answers (the hub then survives reboots), else "tmux".
DETECT_SUPERVISOR = "systemctl --user show-environment >/dev/null 2>&1 && echo systemd || echo tmux"


def render_start(*, base: str, port: int, supervisor: str = "tmux") -> str:
    """Return the command (re)starting the hub (tmux or systemd --user), waiting for /health."""
    b = _dir(base)
    health = _health(b, port)
    stop_all = (
        f"tmux kill-session -t {SESSION} 2>/dev/null || true\n"
        f"systemctl --user stop {UNIT} 2>/dev/null || true\n"
    )
    if supervisor == "systemd":
        launch = (
            "systemctl --user daemon-reload\n"
            f"systemctl --user enable {UNIT} >/dev/null 2>&1 || true\n"
            f"systemctl --user restart {UNIT}\n"
        )
        alive = f"systemctl --user is-active --quiet {UNIT}"
    else:
        run = (
            f"cd {b} && exec env -u DOBBY_URL -u DOBBY_INVENTORY DOBBY_HOME={b}/home "
            f"{b}/venv/bin/dobby start --host 127.0.0.1 --port {port} "
            f"--inventory {b}/inventory >>{b}/hub.log 2>&1"
        )
        launch = f"tmux new-session -d -s {SESSION} {shell_quote(run)}\n"
        alive = f"tmux has-session -t {SESSION} 2>/dev/null"
    return (
        stop_all
        + f"for i in $(seq 50); do {health} 2>/dev/null || break; sleep 0.1; done\n"
        + launch
        + f"for i in $(seq 300); do {health} 2>/dev/null && exit 0; {alive} || break; "
        + "sleep 0.1; done\n"
        + f"echo 'the hub did not come up; end of {base}/hub.log:' >&2\n"
        + f"tail -n 30 {b}/hub.log >&2\nexit 1\n"
    )


def render_status(*, base: str, port: int) -> str:
    """Return the command printing ``session=0|1`` and ``health=0|1``."""
    b = _dir(base)
    return (
        f"{{ tmux has-session -t {SESSION} 2>/dev/null || "
        f"systemctl --user is-active --quiet {UNIT} 2>/dev/null; }} "
        "&& echo session=1 || echo session=0\n"
        f'h=$({_health(b, port, show=True)} 2>/dev/null) && echo health=1 && echo "$h" '
        "|| echo health=0\n"
    )


def forward_command(host: Host, *, local_port: int, port: int) -> list[str]:
    """Return the ``ssh -N -L`` command reaching the deployed hub from this machine."""
    cmd = ["ssh", "-N", "-L", f"{local_port}:127.0.0.1:{port}", "-p", str(host.port)]
    if host.identity_file:
        cmd += ["-i", host.identity_file]
    if host.known_hosts:
        cmd += ["-o", f"UserKnownHostsFile={host.known_hosts}"]
    address = host.address or host.name
    cmd.append(f"{host.user}@{address}" if host.user else address)
    return cmd


def hub_files(*, port: int, inventory_text: str | None) -> dict[str, str]:
    """Return the deployed hub's dobby.yaml and inventory (local host only by default)."""
    config = {"host": "127.0.0.1", "port": port}
    inventory = inventory_text or yaml.safe_dump({"hosts": {"local": {"connection": "local"}}})
    return {
        "home/dobby.yaml": "# written by `dobby deploy`\n" + yaml.safe_dump(config),
        "inventory/hosts.yaml": inventory,
    }


async def _connected(host: Host) -> Transport:
    if host.connection != "ssh":
        raise DobbyError(f"host {host.name} is not an ssh host: deploy targets a remote machine")
    transport = make_transport(host)
    await transport.connect()
    return transport


async def deploy_up(
    host: Host, *, base: str, port: int, python: str, inventory_text: str | None, echo: Any
) -> str:
    """Install or upgrade the hub on ``host``, (re)start it; return what supervises it."""
    transport = await _connected(host)
    try:
        root = transport.expand(base)
        with tempfile.TemporaryDirectory(prefix="dobby-wheel-") as tmp:
            wheel = build_wheel(Path(tmp))
            remote_wheel = f"{root}/dist/{wheel.name}"
            echo(f"pushing {wheel.name} to {host.name}:{root}/dist/")
            await transport.put_file(str(wheel), remote_wheel)
        echo("installing (a venv with its dependencies; the first time takes a while)")
        res = await transport.run(
            render_install(base=root, wheel=remote_wheel, python=python), timeout=1800
        )
        if not res.ok:
            raise DobbyError(
                f"{host.name}: install failed (exit {res.exit_status}): "
                f"{(res.stderr or res.stdout).strip()[-800:]}"
            )
        for rel, text in hub_files(port=port, inventory_text=inventory_text).items():
            path = f"{root}/{rel}"
            given = rel.startswith("inventory/") and inventory_text is not None
            # An upgrade keeps what was edited on the host; --hub-inventory replaces on purpose.
            if given or await transport.stat(path) is None:
                await transport.put(path, text.encode(), mode=0o600)
        supervisor = (await transport.run(DETECT_SUPERVISOR, timeout=30)).stdout.strip()
        if supervisor == "systemd":
            unit = f"{transport.home}/.config/systemd/user/{UNIT}"
            await transport.put(unit, render_unit(base=root, port=port).encode())
        echo(f"starting the hub under {supervisor or 'tmux'}")
        start = render_start(base=root, port=port, supervisor=supervisor or "tmux")
        res = await transport.run(start, timeout=120)
        if not res.ok:
            raise DobbyError(f"{host.name}: the hub did not start:\n{res.stderr.strip()[-2000:]}")
        return supervisor or "tmux"
    finally:
        await transport.close()


async def deploy_action(host: Host, action: str, *, base: str, port: int, lines: int) -> str:
    """Run ``status``, ``logs`` or ``stop`` on a deployed hub; return what to print."""
    transport = await _connected(host)
    try:
        root = transport.expand(base)
        if action == "logs":
            res = await transport.run(
                f"tail -n {int(lines)} {shell_quote(root)}/hub.log", timeout=30
            )
            return res.stdout
        if action == "stop":
            await transport.run(
                f"tmux kill-session -t {SESSION} 2>/dev/null || true; "
                f"systemctl --user stop {UNIT} 2>/dev/null || true",
                timeout=30,
            )
            return f"stopped the hub on {host.name}"
        res = await transport.run(render_status(base=root, port=port), timeout=30)
        out = res.stdout.splitlines()
        running = "session=1" in out
        healthy = "health=1" in out
        detail = out[-1] if healthy and out else ""
        state = (
            "running" if running and healthy else "starting or failing" if running else "stopped"
        )
        return f"hub on {host.name}: {state} (tmux {SESSION}, port {port}) {detail}".rstrip()
    finally:
        await transport.close()


@main.command()
@click.argument("words", nargs=-1, required=True, metavar="[status|logs|stop] HOST")
@click.option("--port", type=int, default=8420, show_default=True, help="Hub port on the host.")
@click.option("--local-port", type=int, help="Local end of the printed port-forward.")
@click.option("--dir", "base", default=DEFAULT_DIR, show_default=True, help="Where on the host.")
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
    port: int,
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
    from dobby.cli.machines import cli_inventory

    action, name = ("up", words[0]) if len(words) == 1 else words[:2]
    if action not in ACTIONS or len(words) > 2:
        raise click.UsageError("usage: dobby deploy HOST | dobby deploy status|logs|stop HOST")
    if provider and action == "up":
        from dobby.machines.provision import provision_vultr

        spec = InstanceSpec(label=name, region=region, plan=plan, os_id=os_id)
        host = provision_vultr(
            spec,
            ssh_key=ssh_key,
            user=user,
            port=ssh_port,
            known_hosts=known_hosts,
            inventory_dir=Path(inventory or "inventory"),
            echo=lambda m: click.echo(m, err=True),
        )
    else:
        host = cli_inventory(inventory).get(name)
    if action != "up":
        click.echo(asyncio.run(deploy_action(host, action, base=base, port=port, lines=lines)))
        return
    text = Path(hub_inventory).read_text(encoding="utf-8") if hub_inventory else None
    supervisor = asyncio.run(
        deploy_up(
            host,
            base=base,
            port=port,
            python=python,
            inventory_text=text,
            echo=lambda m: click.echo(m, err=True),
        )
    )
    forward = forward_command(host, local_port=local_port or port, port=port)
    how = f"tmux session {SESSION}" if supervisor == "tmux" else f"systemd --user {UNIT}"
    click.echo(f"the hub runs on {host.name} at 127.0.0.1:{port} ({how}). Reach it with:")
    click.echo(f"  {shlex.join(forward)}")
    click.echo(f"  export DOBBY_URL=http://127.0.0.1:{local_port or port}")
