"""``dobby start`` (run_hub with ``freeze``) leaves its startup heap out of garbage collections,
and collects again once it is built (it loads with collection off)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from dobby.core.config import load_settings
from dobby.hub.server import run_hub
from tests.fixtures.hub import free_port, write_inventory


@pytest.mark.parametrize("freeze", [True, False])
async def test_a_started_hub_freezes_what_it_built_only_when_asked(
    tmp_path: Path, local_entry: dict[str, Any], freeze: bool
) -> None:
    inventory = write_inventory(tmp_path / "inventory.yaml", [local_entry])
    settings = load_settings(
        home=tmp_path / "home",
        overrides={"inventory": str(inventory), "port": free_port()},
        environ={},
    )
    gc.unfreeze()
    if freeze:
        gc.disable()  # as `dobby start` loads the hub
    ready, stop = asyncio.Event(), asyncio.Event()
    job = asyncio.ensure_future(run_hub(settings, ready=ready, stop=stop, freeze=freeze))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        # The hub's own objects are in the permanent generation: no collection walks them.
        assert (gc.get_freeze_count() > 0) is freeze
        assert gc.isenabled()  # what the hub makes from now on is collected
    finally:
        gc.enable()
        stop.set()
        async with asyncio.timeout(30):
            await job
        gc.unfreeze()  # the rest of this test process collects as usual
