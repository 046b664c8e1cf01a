"""Run a hub: settings → service → HTTP server, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil

from dobby.core import descriptors
from dobby.core.aio import stacks, stop_tasks
from dobby.core.config import Settings, load_settings
from dobby.core.errors import ConfigError
from dobby.hub.app import make_app
from dobby.hub.core import Hub
from dobby.hub.heap import OldHeap

log = logging.getLogger("dobby.hub")

# Every step of the hub's stop is bounded (dobby.hub.core: under 3 s in all). This is the last
# resort should one still hang: the process exits anyway (tasks on hosts go on and are
# re-adopted at the next start; every acknowledged write is on disk already), after logging
# where each unfinished coroutine waits.
STOP_GRACE = 10.0
LEFTOVER_WAIT = 0.3  # requests in flight and fire-and-forget jobs, cancelled after the stop


async def run_hub(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    freeze: bool = False,
) -> None:
    """Serve until ``stop`` is set (or a signal arrives).

    ``freeze`` (`dobby start`, which loads the hub with collection off: see dobby.cli.hub):
    modules, settings, the inventory and the tasks loaded at the start live as long as the
    process, and what lives through a full collection later is long-lived too: each is left
    out of later collections (:class:`dobby.hub.heap.OldHeap`). A full collection walked them
    all each time: 55 ms with 3,000 pending tasks, 46-77 ms with 1,000 running, a pause of the
    whole hub.
    """
    settings.validate_bind()
    sockets = bind(settings)  # first: a busy port must fail before the hub starts anything
    descriptors.raise_limit()
    hub = Hub(settings=settings)
    await hub.start()
    app = make_app(hub)
    server = tornado.httpserver.HTTPServer(app, xheaders=False)
    server.add_sockets([descriptors.Listener.wrap(sock) for sock in sockets])
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
    heap = OldHeap()
    if freeze:
        heap.start(loop)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        began = time.monotonic()
        heap.stop()
        log.info("dobby hub stopping (tasks keep running on their hosts)")
        server.stop()
        stopping = asyncio.ensure_future(hub.stop())
        done, _ = await asyncio.wait({stopping}, timeout=STOP_GRACE)
        if not done:
            log.error("the hub did not stop within %gs; exiting.%s", STOP_GRACE, pending_stacks())
            logging.shutdown()
            os._exit(1)
        stopping.result()
        log.info("dobby hub stopped in %.2fs", time.monotonic() - began)


async def _cancel_leftovers() -> None:
    """Cancel what still runs after the hub stopped, within a bound, then exit if it won't end.

    Requests in flight (an SSE stream, a cancel waiting for its host) and fire-and-forget jobs
    are cancelled here rather than by ``asyncio.run``, whose wait for them has no bound.
    """
    left = asyncio.all_tasks() - {asyncio.current_task()}
    if not await stop_tasks(left, timeout=LEFTOVER_WAIT, what="after the hub stopped"):
        logging.shutdown()
        os._exit(0)  # the hub itself stopped cleanly: only stragglers were left


def pending_stacks() -> str:
    """Return the stacks of the coroutines still pending (where a stop hangs)."""
    return stacks(asyncio.all_tasks())


def bind(settings: Settings) -> list[socket.socket]:
    """Open the hub's listening sockets; a busy port is one ConfigError line saying what to do."""
    try:
        return tornado.netutil.bind_sockets(settings.port, address=settings.host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {settings.port} on {settings.host} is already in use (another hub? "
                f"`dobby status` asks it): stop it, or use another port: "
                f"--port {settings.port + 1}"
            ) from None
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None


def dashboard_url(settings: Settings) -> str:
    """Return the URL of the hub's dashboard, as a browser on this machine reaches it."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # listening everywhere: loopback reaches it from here
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/dashboard"


def serve(
    *,
    home: Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_ready: Callable[[Settings], None] | None = None,
) -> None:
    """Load settings and run a hub in the foreground (``dobby start``).

    ``on_ready`` is called once the hub listens (``dobby start`` prints where it is).
    """
    settings = load_settings(home=home, overrides=overrides or {})
    logging.basicConfig(
        level=getattr(logging, str(settings.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncssh logs every channel at INFO: noise in the hub log and CPU on the hot path.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

    async def main() -> None:
        ready = asyncio.Event()
        if on_ready is not None:
            waiter = asyncio.ensure_future(ready.wait())
            waiter.add_done_callback(lambda f: f.cancelled() or on_ready(settings))
        await run_hub(settings, ready=ready, freeze=True)
        await _cancel_leftovers()

    asyncio.run(main())
