"""Hub commands: ``start`` (run the hub) and ``demo`` (a throw-away hub with sample tasks)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dobby.core.config import Settings


@click.command()
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to serve on (default 8420).")
@click.option("--inventory", type=click.Path(), help="Inventory file or directory.")
@click.option("--home", type=click.Path(file_okay=False), help="State directory (DOBBY_HOME).")
def start(host: str | None, port: int | None, inventory: str | None, home: str | None) -> None:
    """Run the hub (REST API + dashboard) in the foreground; Ctrl-C stops it."""
    # No garbage collection while the hub loads: what it loads lives as long as the process,
    # and collecting it as it came took a tenth of the imports (33 ms of 0.31 s), before a
    # restarted hub's first connect. The hub turns collection on once it is built
    # (dobby.hub.heap.OldHeap.start).
    gc.disable()
    # The one import of the hub the CLI makes (tools/layers.py ENTRY_POINTS).
    from dobby.hub.server import dashboard_url, serve

    overrides: dict[str, Any] = {"host": host, "port": port}
    if inventory is not None:
        overrides["inventory"] = str(Path(inventory).expanduser().resolve())
    overrides = {k: v for k, v in overrides.items() if v is not None}

    def ready(settings: Settings) -> None:
        url = dashboard_url(settings)
        click.echo(f"Dobby hub ready. Dashboard: {url}")
        click.echo(
            f"  clients use DOBBY_URL={url.removesuffix('/dashboard')}; state in "
            f"{settings.home}; Ctrl-C stops the hub"
        )

    serve(home=Path(home).expanduser() if home else None, overrides=overrides, on_ready=ready)


@click.command()
@click.option("--port", type=int, default=None, help="Port of the demo hub (default: a free one).")
@click.option(
    "--keep", is_flag=True, help="Keep the hub up after the tasks end, until Ctrl-C, to explore."
)
def demo(port: int | None, keep: bool) -> None:
    """Run a self-contained demo: a local hub, a sample project, a few tasks; then clean up."""
    from dobby.cli.demo import run_demo

    run_demo(port=port, keep=keep)


COMMANDS = [start, demo]
