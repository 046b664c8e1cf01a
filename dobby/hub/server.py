"""Run a hub: settings → service → HTTP server, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from dobby.core.config import Settings, load_settings
from dobby.hub.app import make_app
from dobby.hub.core import Hub

log = logging.getLogger("dobby.hub")


async def run_hub(
    settings: Settings, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Serve until ``stop`` is set (or a signal arrives)."""
    settings.validate()
    hub = Hub(settings=settings)
    await hub.start()
    app = make_app(hub)
    server = app.listen(settings.port, address=settings.host, xheaders=False)
    log.info(
        "dobby hub listening on http://%s:%s (state in %s)",
        settings.host,
        settings.port,
        settings.home,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.stop()
        await hub.stop()
        log.info("dobby hub stopped")


def serve(*, home: Path | None = None, overrides: dict[str, Any] | None = None) -> None:
    """Load settings and run a hub in the foreground (``dobby start``)."""
    settings = load_settings(home=home, overrides=overrides or {})
    logging.basicConfig(
        level=getattr(logging, str(settings.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncssh logs every channel at INFO: noise in the hub log and CPU on the hot path.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(run_hub(settings))
