"""``dobby hosts check|bootstrap`` with no hub: the hub's inventory, checked from here.

The inventory is found by the same rules as ``dobby start``: ``--inventory``, else
``DOBBY_INVENTORY``, else ``inventory:`` in DOBBY_HOME's dobby.yaml, else ./inventory, else the
embedded ``local`` host; plus the hosts added with ``dobby agent`` (DOBBY_HOME/spokes.yaml).
Answers have the same shape as the hub's ``POST /hosts/NAME/check|bootstrap``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dobby.core.config import Settings, load_settings
from dobby.core.models import Host
from dobby.inventory.load import Inventory, load_inventory
from dobby.machines.bootstrap import bootstrap_host
from dobby.machines.checks import check_host


def hub_settings(inventory: str | None = None) -> Settings:
    """Return the settings ``dobby start`` would use (``inventory`` overrides theirs)."""
    overrides = {"inventory": str(Path(inventory).expanduser().resolve())} if inventory else {}
    return load_settings(overrides=overrides)


def hub_inventory(settings: Settings) -> Inventory:
    """Load the inventory a hub with ``settings`` would load, spokes included."""
    path = Path(settings.inventory) if settings.inventory else None
    return load_inventory(path, extra=settings.spokes_file)


def _pick(inventory: Inventory, names: tuple[str, ...] | list[str]) -> list[Host]:
    if not names:
        return list(inventory.hosts.values())
    return [inventory.get(n) for n in names]


def check_hosts(names: list[str], *, inventory: str | None = None) -> list[dict[str, Any]]:
    """Check the named hosts (every host when none is named); return one report each."""
    settings = hub_settings(inventory)
    hosts = _pick(hub_inventory(settings), names)
    tofu = str(settings.known_hosts_file)

    async def run() -> list[dict[str, Any]]:
        reports = await asyncio.gather(*(check_host(h, tofu_known_hosts=tofu) for h in hosts))
        return [r.to_dict() for r in reports]

    return asyncio.run(run())


def bootstrap(name: str, *, install: bool, inventory: str | None = None) -> dict[str, Any]:
    """Prepare host ``name`` (see :func:`dobby.machines.bootstrap.bootstrap_host`)."""
    settings = hub_settings(inventory)
    host = hub_inventory(settings).get(name)
    tofu = str(settings.known_hosts_file)
    report = asyncio.run(bootstrap_host(host, install=install, tofu_known_hosts=tofu))
    return report.to_dict()
