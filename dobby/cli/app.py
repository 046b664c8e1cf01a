"""The ``dobby`` click group and the helpers every command module shares.

Command modules (``tasks``, ``projects``, ``scheduler``, ``results``, ``hosts``, ``hub``,
``init``, ``deploy``, ``integrations``) import this module and nothing of each other;
:mod:`dobby.cli.main` tells :data:`cli` which module holds each command, and the group imports a
module only when one of its commands runs. Start time matters (``bench/cli_start.py``): this
module and the command modules import only click and light helpers at the top; the HTTP client,
asyncssh, tornado, yaml, pydantic… are imported inside the commands that use them.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from dobby.cli import render
from dobby.core.errors import DobbyError, ValidationError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from dobby.client.http import HubClient

ENV_FILE = ".env"
_ENV_KEYS = ("DOBBY_", "SLACK_")
PRIORITIES = click.Choice(["urgent", "high", "normal", "low"])
BACKENDS = click.Choice(["claude", "codex", "shell"])


class DobbyGroup(click.Group):
    """A click group of lazily imported commands; a DobbyError prints as one ``error:`` line.

    :meth:`lazy` names each command's module and the first paragraph of its help, so ``dobby
    --help`` lists every command and ``dobby status`` runs one without importing the other
    modules (tests/cli/test_cli_package.py checks the table against the real commands).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, tuple[str, str]] = {}

    def lazy(self, table: Mapping[str, tuple[str, str]]) -> None:
        """Add commands by name: ``{name: (module, summary)}``; a module exports ``COMMANDS``."""
        self._lazy.update(table)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return every command's name, sorted, without importing any."""
        return sorted({*self.commands, *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the command, importing its module the first time."""
        if cmd_name not in self.commands and cmd_name in self._lazy:
            module = importlib.import_module(self._lazy[cmd_name][0])
            for command in module.COMMANDS:
                self.commands.setdefault(str(command.name), command)
        return self.commands.get(cmd_name)

    def summary(self, cmd_name: str) -> click.Command:
        """Return the command if imported, else a stand-in carrying its name and summary."""
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        return click.Command(cmd_name, help=self._lazy[cmd_name][1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their short help, from the table (click's layout)."""
        commands = [(name, self.summary(name)) for name in self.list_commands(ctx)]
        commands = [(name, cmd) for name, cmd in commands if not cmd.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in commands])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete command names (from the table) and the group's options."""
        from click.shell_completion import CompletionItem

        named = [self.summary(n) for n in self.list_commands(ctx) if n.startswith(incomplete)]
        items = [CompletionItem(c.name, help=c.get_short_help_str()) for c in named if not c.hidden]
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; turn DobbyError into ``error: message`` on stderr."""
        try:
            return super().invoke(ctx)
        except DobbyError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


def load_dotenv(path: Path = Path(ENV_FILE)) -> None:
    """Export DOBBY_*/SLACK_* settings from ./.env (written by `dobby init`); env wins."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not name.startswith(_ENV_KEYS) or name in os.environ:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ[name] = value


@click.group(cls=DobbyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dobby")
def cli() -> None:
    """Dispatch coding-agent tasks to your machines over SSH."""
    # Every command reads ./.env first, so `dobby init`'s answers apply in that directory.
    load_dotenv()


def client(**kwargs: Any) -> HubClient:
    """Return a client of the hub at DOBBY_URL (the HTTP stack is imported on first use)."""
    from dobby.client.http import HubClient

    return HubClient(**kwargs)


def print_json(body: Any) -> None:
    """Print a hub answer as indented JSON."""
    click.echo(json.dumps(body, indent=2))


def width() -> int:
    """Return the terminal's width in cells (120 when unknown)."""
    return shutil.get_terminal_size((120, 24)).columns


def echo_lines(lines: Iterable[str]) -> None:
    """Print each line."""
    for line in lines:
        click.echo(line)


def echo_task(task: dict[str, Any], as_json: bool) -> None:
    """Print a task as JSON or as its one-line summary."""
    if as_json:
        print_json(task)
    else:
        click.echo(render.task_line(task))


json_option = click.option("--json", "as_json", is_flag=True, help="Print the hub's JSON answer.")


def _parse_timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from dobby.core.timefmt import parse_duration

    try:
        return parse_duration(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


def timeout_option(
    help: str = "Time limit: seconds, 30m, 2h.", *, name: str = "--timeout"
) -> Callable[..., Any]:
    """Return the ``--timeout`` option (or another duration option), parsed to seconds."""
    return click.option(name, callback=_parse_timeout, help=help)


def read_stdin(what: str) -> str:
    """Return standard input as text, byte for byte; ``what`` names it in the UTF-8 error."""
    # click.open_file("-") is click's non-deprecated way to the binary stdin (8.5+).
    with click.open_file("-", "rb") as stream:
        raw = stream.read()
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationError(f"the {what} on stdin is not valid UTF-8") from None


def text_arg(value: str | None, what: str) -> str | None:
    """Return ``value``, reading stdin for ``-``."""
    return read_stdin(what) if value == "-" else value


def binary_stdout() -> IO[bytes]:
    """Return standard output for raw bytes (downloads written to stdout)."""
    return click.open_file("-", "wb")  # type: ignore[no-any-return]
