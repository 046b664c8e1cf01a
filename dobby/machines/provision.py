"""Make a new machine for ``dobby deploy --provider``: create it, add it to the inventory."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import yaml

from dobby.core.errors import DobbyError
from dobby.core.models import Host
from dobby.core.retry import Backoff, call
from dobby.inventory.load import load_inventory
from dobby.machines.vultr import InstanceSpec, Vultr


def render_host_file(name: str, fields: dict[str, object], note: str) -> str:
    """Return an inventory file defining one host (pure)."""
    head = f"# written by `dobby deploy --provider`: {note}\n"
    return head + yaml.safe_dump({"hosts": {name: fields}}, sort_keys=False)


def wait_for_port(address: str, port: int, *, timeout: float = 300) -> None:
    """Return once ``address:port`` accepts TCP connections (sshd is up)."""

    def knock() -> None:
        with socket.create_connection((address, port), timeout=5):
            return

    try:
        call(
            knock,
            policy=Backoff(first=1.0, factor=1.5, cap=5.0, deadline=timeout),
            retry_if=lambda exc: isinstance(exc, OSError),
        )
    except OSError as exc:
        raise DobbyError(f"{address}:{port} still closed: {exc}") from None


def provision_vultr(
    spec: InstanceSpec,
    *,
    ssh_key: str,
    user: str,
    port: int,
    known_hosts: str | None,
    inventory_dir: Path,
    echo: Callable[[str], None],
) -> Host:
    """Create a Vultr instance (unless the inventory already has it) and return it as a Host."""
    target = inventory_dir / f"{spec.label}.yaml"
    if target.exists():
        echo(f"{target} exists: deploying to the host it defines (no new instance)")
        return load_inventory(target).get(spec.label)
    public = Path(ssh_key).expanduser()
    try:
        public_text = public.read_text(encoding="utf-8")
    except OSError as exc:
        raise DobbyError(f"cannot read the public key {public}: {exc.strerror}") from None
    private = public.with_suffix("") if public.suffix == ".pub" else None
    api = Vultr()
    key_id = api.ensure_ssh_key(f"dobby-{spec.label}", public_text)
    instance = api.create_instance(spec, key_id)
    echo(f"created Vultr instance {instance['id']} ({spec.plan} in {spec.region}); waiting")
    instance = api.wait_active(str(instance["id"]), log=echo)
    address = str(instance["main_ip"])
    fields: dict[str, object] = {"address": address, "port": port, "user": user}
    if private is not None:
        fields["identity_file"] = str(private)
    if known_hosts:
        fields["known_hosts"] = str(Path(known_hosts).expanduser())
    # A brand-new machine: its host key cannot be known yet; pin the first one seen.
    fields.update(trust_on_first_use=True, labels=["hub", "vultr"])
    inventory_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(
        render_host_file(spec.label, fields, f"Vultr instance {instance['id']}"), encoding="utf-8"
    )
    echo(f"added {spec.label} ({user}@{address}:{port}) to {target}")
    wait_for_port(address, port)
    return load_inventory(target).get(spec.label)
