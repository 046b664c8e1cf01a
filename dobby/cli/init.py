"""``dobby init``: first-run wizard writing .env, dobby.yaml and the inventory.

Every question has a default and a flag; ``--yes`` takes the defaults without asking. An existing
file is never replaced without a "yes" (or ``--force``). The current directory is registered as
a project at once when a hub answers, else recorded in DOBBY_HOME/pending-projects.yaml and
registered by the hub when it next starts.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from dobby.cli import render
from dobby.cli.app import client
from dobby.core.errors import DobbyError, ValidationError
from dobby.core.files import atomic_write
from dobby.core.names import NAME_RE

DEFAULT_URL = "http://127.0.0.1:8420"


def render_env_file(values: dict[str, str | None]) -> str:
    """Return .env text: ``NAME='value'`` lines for the values that are set (pure)."""
    lines = ["# written by `dobby init`; every dobby command run here reads it"]
    for name, value in values.items():
        if value:
            quoted = "'" + value.replace("'", "'\\''") + "'"
            lines.append(f"{name}={quoted}")
    return "\n".join(lines) + "\n"


def render_hub_config(*, url: str, inventory: Path, api_key: str | None) -> str:
    """Return dobby.yaml for a hub serving ``url`` with this inventory (pure)."""
    import yaml

    parts = urlsplit(url)
    config: dict[str, Any] = {"port": parts.port or 8420, "inventory": str(inventory)}
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        config["host"] = host  # off loopback the hub needs api_key (it refuses otherwise)
    if api_key:
        config["api_key"] = api_key
    return "# written by `dobby init`\n" + yaml.safe_dump(config, sort_keys=False)


def render_inventory(hosts: list[dict[str, Any]]) -> str:
    """Return inventory/hosts.yaml: the local machine plus the given SSH hosts (pure)."""
    import yaml

    body: dict[str, Any] = {"hosts": {"local": {"connection": "local"}}}
    for h in hosts:
        body["hosts"][h["name"]] = {k: v for k, v in h.items() if k != "name" and v is not None}
    head = "# written by `dobby init`; every field is described in inventory.yaml.example\n"
    return head + yaml.safe_dump(body, sort_keys=False)


def parse_host_spec(spec: str) -> dict[str, Any]:
    """Parse ``NAME=USER@ADDRESS[:PORT]`` (user and port optional)."""
    name, sep, target = spec.partition("=")
    if not sep or not NAME_RE.fullmatch(name) or not target:
        raise ValidationError(f"--host {spec!r}: expected NAME=USER@ADDRESS[:PORT]")
    user, _, rest = target.rpartition("@")
    address, _, port = rest.partition(":")
    if not address or (port and not port.isdigit()):
        raise ValidationError(f"--host {spec!r}: expected NAME=USER@ADDRESS[:PORT]")
    return {
        "name": name,
        "address": address,
        "port": int(port) if port else 22,
        "user": user or None,
    }


class Writer:
    """Write files, asking before replacing one that differs (never without consent)."""

    def __init__(self, *, interactive: bool, force: bool) -> None:
        self.interactive = interactive
        self.force = force

    def write(self, path: Path, text: str, *, mode: int = 0o644) -> str:
        """Write ``text`` to ``path`` unless the user keeps the existing file; say what happened."""
        if path.exists():
            if path.read_text(encoding="utf-8", errors="replace") == text:
                return f"unchanged {path}"
            if not self.force:
                if not self.interactive:
                    return f"kept {path} (exists; --force replaces it)"
                if not click.confirm(f"{path} exists. Overwrite it?", default=False):
                    return f"kept {path}"
        atomic_write(path, text, mode=mode)
        return f"wrote {path}"


def _is_git_repo(path: Path) -> bool:
    res = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--verify", "-q", "HEAD"],
        capture_output=True,
        text=True,
    )
    return res.returncode == 0


def _ask(interactive: bool, text: str, default: Any, **kwargs: Any) -> Any:
    return click.prompt(text, default=default, **kwargs) if interactive else default


def _ask_hosts(
    interactive: bool, known_hosts: str | None, identity: str | None
) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = []
    question = "Add an SSH host to the inventory?"
    while interactive and click.confirm(question, default=False):
        name = click.prompt("Host name", value_proc=_name)
        address = click.prompt("Address (name or IP)")
        port = click.prompt("SSH port", default=22, type=click.IntRange(1, 65535))
        user = click.prompt("User", default=_user())
        key = click.prompt(
            "Identity file (empty: your ssh agent / default keys)",
            default=identity or "",
            show_default=bool(identity),
        )
        hosts.append(
            {
                "name": name,
                "address": address,
                "port": port,
                "user": user,
                "identity_file": key or None,
                "known_hosts": known_hosts,
            }
        )
        question = "Add another SSH host?"
    return hosts


def _secret(text: str) -> str | None:
    return click.prompt(text, hide_input=True, default="", show_default=False) or None


def _ask_slack(
    interactive: bool, bot: str | None, app: str | None, secret: str | None
) -> tuple[str | None, str | None, str | None]:
    """Return the Slack bot token, app token (Socket Mode) and signing secret (HTTP mode)."""
    if not interactive or bot or not click.confirm("Connect Slack?", default=False):
        return bot, app, secret
    bot = _secret("Slack bot token (xoxb-…)")
    app = _secret("Slack app token for Socket Mode (xapp-…, empty: HTTP mode)")
    if bot and not app and not secret:
        secret = _secret("Slack signing secret (for the HTTP Events mode)")
    return bot, app, secret


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise click.BadParameter("use letters, digits, '.', '_', '-'")
    return value


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


def _check_hosts(inventory_dir: Path, names: list[str]) -> None:
    from dobby.offline.hosts import check_hosts

    for report in check_hosts(names, inventory=str(inventory_dir)):
        for line in render.report_lines(report):
            click.echo(line)


def _mcp_snippet(url: str) -> dict[str, Any]:
    from dobby.integrations.mcp import mcp_snippet

    return mcp_snippet(url)


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=".",
    help="Project directory to set up (default: here).",
)
@click.option("--hub-url", help=f"URL of the hub (default {DEFAULT_URL}).")
@click.option("--home", type=click.Path(file_okay=False), help="Hub state directory.")
@click.option("--api-key", help="API key the hub requires (needed off loopback).")
@click.option("--slack-bot-token", help="Slack bot token (xoxb-…).")
@click.option("--slack-app-token", help="Slack app-level token for Socket Mode (xapp-…).")
@click.option("--slack-signing-secret", help="Slack signing secret (HTTP Events mode).")
@click.option("--host", "host_specs", multiple=True, help="Add NAME=USER@ADDRESS[:PORT].")
@click.option("--identity-file", help="SSH key for the added hosts.")
@click.option("--known-hosts", help="known_hosts file for the added hosts.")
@click.option("--project", "project_name", help="Project name (default: the directory's).")
@click.option("--no-project", is_flag=True, help="Do not register the directory.")
@click.option("--no-check", is_flag=True, help="Do not check the added hosts.")
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: flags and defaults only.")
@click.option("--force", is_flag=True, help="Replace existing files without asking.")
def init(
    directory: str,
    hub_url: str | None,
    home: str | None,
    api_key: str | None,
    slack_bot_token: str | None,
    slack_app_token: str | None,
    slack_signing_secret: str | None,
    host_specs: tuple[str, ...],
    identity_file: str | None,
    known_hosts: str | None,
    project_name: str | None,
    no_project: bool,
    no_check: bool,
    yes: bool,
    force: bool,
) -> None:
    """Set Dobby up here: .env, hub config, inventory with SSH hosts, project, MCP snippet."""
    from dobby.core.config import CONFIG_FILE, DEFAULT_HOME

    interactive = not yes
    root = Path(directory).expanduser().resolve()
    click.echo(f"Setting up Dobby in {root}")
    url = _ask(interactive, "Hub URL", hub_url or os.environ.get("DOBBY_URL") or DEFAULT_URL)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValidationError(f"hub URL must start with http:// or https://, got {url!r}")
    hub_home = Path(home or os.environ.get("DOBBY_HOME") or DEFAULT_HOME).expanduser().resolve()
    bot, app, secret = _ask_slack(
        interactive, slack_bot_token, slack_app_token, slack_signing_secret
    )
    added = [parse_host_spec(s) for s in host_specs]
    for h in added:
        h.update(identity_file=identity_file, known_hosts=known_hosts)
    added += _ask_hosts(interactive, known_hosts, identity_file)

    writer = Writer(interactive=interactive, force=force)
    inventory_dir = root / "inventory"
    env = {
        "DOBBY_URL": url,
        "DOBBY_HOME": str(hub_home),
        "DOBBY_API_KEY": api_key,
        "SLACK_BOT_TOKEN": bot,
        "SLACK_APP_TOKEN": app,
        "SLACK_SIGNING_SECRET": secret,
    }
    done = [
        writer.write(root / ".env", render_env_file(env), mode=0o600),
        writer.write(
            hub_home / CONFIG_FILE,
            render_hub_config(url=url, inventory=inventory_dir, api_key=api_key),
            mode=0o600,
        ),
        writer.write(inventory_dir / "hosts.yaml", render_inventory(added)),
    ]
    for line in done:
        click.echo(line)
    if added and not no_check and done[-1].startswith("wrote"):
        click.echo("Checking the new hosts…")
        _check_hosts(inventory_dir, [h["name"] for h in added])

    if not no_project:
        _register(root, project_name, interactive, url, api_key, hub_home)
    click.echo("Add Dobby's tools to Claude Code with this .mcp.json (also: dobby mcp-config):")
    click.echo(json.dumps(_mcp_snippet(url), indent=2))
    click.echo(f"Next: `dobby start` here (state in {hub_home}), then `dobby hosts check`.")


def _register(
    root: Path, name: str | None, interactive: bool, url: str, api_key: str | None, hub_home: Path
) -> None:
    if not _is_git_repo(root):
        click.echo(
            f"{root} is not a git repository with a commit: not registered "
            "(git init && git commit, then `dobby register . --name NAME`)"
        )
        return
    default = name or (root.name if NAME_RE.fullmatch(root.name) else "project")
    if interactive and not click.confirm(f"Register {root} as a project?", default=True):
        return
    project = _ask(interactive, "Project name", default, value_proc=_name)
    hub = client(url=url, api_key=api_key, timeout=5)
    try:
        hub.health()
    except DobbyError:
        from dobby.offline.projects import record_pending_project

        path = record_pending_project(hub_home, name=project, path=str(root))
        click.echo(
            f"no hub answers at {url}: project {project} recorded in {path}; "
            "the hub registers it when it starts"
        )
        return
    try:
        hub.register_project(project, str(root))
        click.echo(f"registered project {project} → {root}")
    except DobbyError as exc:
        click.echo(f"could not register project {project}: {exc}")


COMMANDS = [init]
