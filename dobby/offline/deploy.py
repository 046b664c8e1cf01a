"""``dobby deploy [status|logs|stop] HOST``: run a hub on an inventory host, over SSH.

Deploy builds a wheel of this very Dobby (pure Python: zipped here, no build tool needed),
pushes it over SFTP, installs it in a venv on the host (pip fetches the dependencies there),
writes the hub's dobby.yaml and inventory, and starts ``dobby start`` bound to the host's
loopback (the shell for each step: :mod:`dobby.hostside.deploy`). The port is recorded on the
host, so ``status`` and ``logs`` find the hub without flags. The user reaches the hub through
an SSH port-forward, printed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import dobby
from dobby.core.errors import DobbyError
from dobby.core.models import Host
from dobby.hostside.deploy import (
    DETECT_SUPERVISOR,
    RECORD,
    SESSION,
    UNIT,
    render_install,
    render_start,
    render_status,
    render_unit,
)
from dobby.hostside.scripts import shell_quote
from dobby.machines.provision import provision_vultr
from dobby.machines.vultr import InstanceSpec
from dobby.offline.hosts import hub_inventory, hub_settings
from dobby.transport import Transport, make_transport

DEFAULT_DIR = "~/.dobby-deploy"
DEFAULT_PORT = 8420
Echo = Callable[[str], None]


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


def find_host(
    name: str,
    *,
    inventory: str | None,
    provider: str | None = None,
    region: str = "ewr",
    plan: str = "vc2-1c-1gb",
    os_id: int = 2136,
    ssh_key: str = "~/.ssh/id_ed25519.pub",
    user: str = "root",
    ssh_port: int = 22,
    known_hosts: str | None = None,
    echo: Echo = lambda _m: None,
) -> Host:
    """Return the host to deploy to: from the inventory, or (``provider``) made first."""
    if provider == "vultr":
        return provision_vultr(
            InstanceSpec(label=name, region=region, plan=plan, os_id=os_id),
            ssh_key=ssh_key,
            user=user,
            port=ssh_port,
            known_hosts=known_hosts,
            inventory_dir=Path(inventory or "inventory"),
            echo=echo,
        )
    return hub_inventory(hub_settings(inventory)).get(name)


async def _connected(host: Host) -> Transport:
    if host.connection != "ssh":
        raise DobbyError(f"host {host.name} is not an ssh host: deploy targets a remote machine")
    transport = make_transport(host)
    await transport.connect()
    return transport


async def _deploy_up(
    host: Host, *, base: str, port: int, python: str, inventory_text: str | None, echo: Echo
) -> str:
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
        supervisor = (await transport.run(DETECT_SUPERVISOR, timeout=30)).stdout.strip() or "tmux"
        if supervisor == "systemd":
            unit = f"{transport.home}/.config/systemd/user/{UNIT}"
            await transport.put(unit, render_unit(base=root, port=port).encode())
        # Recorded before the start: `deploy status` then looks on the right port even if the
        # hub fails to come up.
        record = {"port": port, "supervisor": supervisor, "version": dobby.__version__}
        await transport.put(f"{root}/{RECORD}", (json.dumps(record) + "\n").encode())
        echo(f"starting the hub under {supervisor}")
        start = render_start(base=root, port=port, supervisor=supervisor)
        res = await transport.run(start, timeout=120)
        if not res.ok:
            raise DobbyError(f"{host.name}: the hub did not start:\n{res.stderr.strip()[-2000:]}")
        return supervisor
    finally:
        await transport.close()


def deploy_up(
    host: Host, *, base: str, port: int, python: str, inventory_text: str | None, echo: Echo
) -> str:
    """Install or upgrade the hub on ``host``, (re)start it; return what supervises it."""
    return asyncio.run(
        _deploy_up(
            host, base=base, port=port, python=python, inventory_text=inventory_text, echo=echo
        )
    )


async def _record(transport: Transport, root: str) -> dict[str, Any]:
    """Return how the hub under ``root`` was deployed: port, supervisor ({} if unknown)."""
    res = await transport.run(f"cat {shell_quote(root)}/{RECORD} 2>/dev/null", timeout=30)
    try:
        record = json.loads(res.stdout)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


async def _deploy_action(
    host: Host, action: str, *, base: str, port: int | None, lines: int
) -> tuple[bool, str]:
    transport = await _connected(host)
    try:
        root = transport.expand(base)
        if action == "logs":
            res = await transport.run(
                f"tail -n {int(lines)} {shell_quote(root)}/hub.log", timeout=30
            )
            return True, res.stdout
        if action == "stop":
            await transport.run(
                f"tmux kill-session -t {SESSION} 2>/dev/null || true; "
                f"systemctl --user stop {UNIT} 2>/dev/null || true",
                timeout=30,
            )
            return True, f"stopped the hub on {host.name}"
        record = await _record(transport, root)
        if port is None:
            recorded = record.get("port")
            port = recorded if isinstance(recorded, int) else DEFAULT_PORT
        how = (
            f"systemd --user {UNIT}" if record.get("supervisor") == "systemd" else f"tmux {SESSION}"
        )
        res = await transport.run(render_status(base=root, port=port), timeout=30)
        out = res.stdout.splitlines()
        running = "session=1" in out
        healthy = "health=1" in out
        detail = out[-1] if healthy and out else ""
        state = (
            "running" if running and healthy else "starting or failing" if running else "stopped"
        )
        line = f"hub on {host.name}: {state} ({how}, port {port}) {detail}".rstrip()
        return running and healthy, line
    finally:
        await transport.close()


def deploy_action(
    host: Host, action: str, *, base: str, port: int | None, lines: int
) -> tuple[bool, str]:
    """Run ``status``, ``logs`` or ``stop``; return (all well, what to print).

    ``port`` None: the one recorded at deploy time (``status``).
    """
    return asyncio.run(_deploy_action(host, action, base=base, port=port, lines=lines))
