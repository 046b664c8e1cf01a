"""``dobby slack`` and ``dobby mcp-config``: the chat and editor integrations."""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from dobby.cli.app import client
from dobby.core.errors import DobbyError


def mcp_snippet(url: str | None = None) -> dict[str, Any]:
    """Return the ``.mcp.json`` content that gives Claude Code the ``dobby-mcp`` tools."""
    from dobby.integrations.mcp import mcp_snippet as snippet

    return snippet(url)


@click.command("mcp-config")
@click.option("--url", help="Hub URL the MCP server should use (default: DOBBY_URL).")
def mcp_config(url: str | None) -> None:
    """Print the .mcp.json snippet that adds Dobby's tools to Claude Code."""
    click.echo(json.dumps(mcp_snippet(url), indent=2))


@click.command()
@click.option("--http", "port", type=int, help="Serve Slack's HTTP Events API on this port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
@click.option("--path", default="/slack/events", show_default=True, help="Events URL path.")
def slack(port: int | None, host: str, path: str) -> None:
    """Run the Slack bot: Socket Mode (SLACK_APP_TOKEN) or HTTP Events mode (--http PORT)."""
    from dobby.integrations.slack.app import SlackSettings, build_app

    settings = SlackSettings.from_env()
    if not settings.bot_token:
        raise DobbyError("set SLACK_BOT_TOKEN (xoxb-…) to run the Slack bot")
    if port is None and not settings.app_token:
        raise DobbyError("set SLACK_APP_TOKEN (xapp-…) for Socket Mode, or use --http PORT")
    if port is not None and not settings.signing_secret:
        raise DobbyError("set SLACK_SIGNING_SECRET to receive Slack events over HTTP")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    hub = client()
    hub.health()  # fail now, with the hub's URL in the message, rather than on the first mention
    app, bot = build_app(settings, hub=hub)
    bot.notifier.start()
    if port is None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        click.echo(f"dobby slack: Socket Mode, hub {hub.url}", err=True)
        SocketModeHandler(app, settings.app_token).start()
        return
    serve_http(app, host=host, port=port, path=path)


def serve_http(app: Any, *, host: str, port: int, path: str) -> None:
    """Serve the Bolt app's HTTP endpoint with Tornado until interrupted."""
    import asyncio

    import tornado.httpserver
    import tornado.netutil
    import tornado.web

    from dobby.core import descriptors
    from dobby.integrations.slack.http import EventsHandler

    async def run() -> None:
        web = tornado.web.Application([(path, EventsHandler, {"app": app})])
        server = tornado.httpserver.HTTPServer(web)
        sockets = tornado.netutil.bind_sockets(port, address=host)
        # Out of descriptors, Slack's requests wait instead of an accept failing in a loop.
        server.add_sockets([descriptors.Listener.wrap(s, "dobby slack") for s in sockets])
        click.echo(f"dobby slack: HTTP events at http://{host}:{port}{path}", err=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


COMMANDS = [mcp_config, slack]
