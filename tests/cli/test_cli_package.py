"""The CLI as a package: its shape (no circles, no reach into the hub), no deprecated click API,
and a fast start — checked by which modules a command imports, never by the clock."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from dobby.cli.app import DobbyGroup
from tools.layers import circles, graph, problems

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "dobby" / "cli"
# Modules the shared layer of the CLI may be imported from: the group, and pure rendering.
SHARED = {"dobby.cli.app", "dobby.cli.render", "dobby.cli.results_render", "dobby.cli.races_render"}
# Heavy or hub-side modules no quick command may import (bench/cli_start.py measures why).
HEAVY = {
    "asyncssh",
    "tornado",
    "yaml",
    "pydantic",
    "mcp",
    "slack_bolt",
    "slack_sdk",
    "httpcore2",
    "anyio",
    "trio",
    "croniter",
    "tinydb",
    "dobby.hub",
    "dobby.store",
    "dobby.scheduler",
    "dobby.runner",
    "dobby.transport",
    "dobby.inventory",
    "dobby.offline",
}
DEPRECATED_CLICK = {
    "get_binary_stream",
    "get_text_stream",
    "BaseCommand",
    "MultiCommand",
    "OptionParser",
    "__version__",
}


def test_the_layer_check_finds_nothing_in_the_cli_or_offline() -> None:
    mine = ("dobby.cli", "dobby.offline")
    assert [p for p in problems() if p.startswith(mine)] == []
    assert [c for c in circles(graph()) if any(m.startswith(mine) for m in c)] == []


def test_command_modules_import_only_the_shared_module() -> None:
    edges = graph()
    for module, deps in edges.items():
        if not module.startswith("dobby.cli.") or module == "dobby.cli.main":
            continue
        cli_deps = {dep for _, dep in deps if dep.startswith("dobby.cli.")}
        allowed = SHARED | ({"dobby.cli.demo"} if module == "dobby.cli.hub" else set())
        assert cli_deps <= allowed, f"{module} imports {sorted(cli_deps - allowed)}"


def _deprecated_click_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in DEPRECATED_CLICK:
            if isinstance(node.value, ast.Name) and node.value.id == "click":
                found.append(f"{path.name}:{node.lineno}: click.{node.attr}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("click"):
            found += [f"{path.name}:{node.lineno}: {a.name}" for a in node.names
                      if a.name in DEPRECATED_CLICK]  # fmt: skip
    return found


def test_no_deprecated_click_api() -> None:
    # click 8.5 deprecates these (removed in 9.0); with filterwarnings=error a newer click on a
    # fresh machine turns each use into a failure that an older click never shows.
    uses = [u for p in sorted((ROOT / "dobby").rglob("*.py")) for u in _deprecated_click_uses(p)]
    assert uses == []


def _command_modules() -> list[str]:
    """Return the CLI modules that export ``COMMANDS`` (read from their source)."""
    found = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in targets):
                found.append(f"dobby.cli.{path.stem}")
    return [m for m in found if m != "dobby.cli.main"]


def _real_commands() -> dict[str, tuple[str, click.Command]]:
    """Return every command of every command module: name → (module, command)."""
    real: dict[str, tuple[str, click.Command]] = {}
    for module in _command_modules():
        for command in importlib.import_module(module).COMMANDS:
            assert command.name not in real, f"{command.name} is defined twice"
            real[str(command.name)] = (module, command)
    return real


def test_the_lazy_table_names_every_command_its_module_and_help() -> None:
    from dobby.cli.main import COMMANDS

    real = _real_commands()
    assert sorted(COMMANDS) == sorted(real)
    for name, (module, command) in real.items():
        summary = " ".join((command.help or "").split("\n\n")[0].split())
        entry = (module.removeprefix("dobby.cli."), summary)
        assert COMMANDS[name] == entry, f"dobby/cli/main.py COMMANDS[{name!r}] should be {entry}"
        assert command.short_help is None and not command.hidden and not command.deprecated


def _groups() -> tuple[DobbyGroup, click.Group]:
    """Return a fresh lazy group from the table, and a group holding every real command."""
    from dobby.cli.main import COMMANDS, cli

    settings = {"help_option_names": ["-h", "--help"]}
    lazy = DobbyGroup("dobby", help=cli.help, params=cli.params, context_settings=settings)
    lazy.lazy({name: (f"dobby.cli.{m}", summary) for name, (m, summary) in COMMANDS.items()})
    commands = {name: command for name, (_, command) in _real_commands().items()}
    eager = click.Group("dobby", commands, help=cli.help, params=cli.params)
    eager.context_settings = settings
    return lazy, eager


@pytest.mark.parametrize("width", [50, 80, 120, 200])
def test_lazy_help_reads_as_the_real_commands_help(width: int) -> None:
    lazy, eager = _groups()
    runner = CliRunner()
    shown = runner.invoke(lazy, ["--help"], terminal_width=width, prog_name="dobby")
    assert lazy.commands == {}  # the listing imported no command
    expected = runner.invoke(eager, ["--help"], terminal_width=width, prog_name="dobby")
    assert shown.exit_code == expected.exit_code == 0
    assert shown.stdout == expected.stdout


def test_a_lazy_command_runs_and_helps_as_itself() -> None:
    lazy, eager = _groups()
    runner = CliRunner()
    for args in (["status", "--help"], ["hosts", "check", "--help"], ["schedules", "--help"]):
        shown = runner.invoke(lazy, args, prog_name="dobby")
        expected = runner.invoke(eager, args, prog_name="dobby")
        assert shown.exit_code == expected.exit_code == 0
        assert shown.stdout == expected.stdout
    assert set(lazy.commands) >= {"status", "show", "hosts", "schedules"}
    assert runner.invoke(lazy, ["nope"]).exit_code == 2


class _Hub(BaseHTTPRequestHandler):
    """Just enough of a hub for status, show, add, cancel and logs."""

    protocol_version = "HTTP/1.0"
    task = {"id": "abcd1234", "status": "pending", "host": None, "title": "t", "prompt": "t"}

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "/events" in self.path:
            end = json.dumps({**self.task, "status": "completed"})
            raw = f"event: end\ndata: {end}\n\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(raw)
            return
        body: dict[str, Any] = self.task
        if self.path.startswith("/tasks?"):
            body = {"tasks": [self.task]}
        elif "/logs?offset=0" in self.path:
            body = {"offset": 0, "next_offset": 3, "text": "hi\n", "events": []}
        elif "/logs" in self.path:
            body = {"offset": 3, "next_offset": 3, "text": "", "events": []}
        raw = json.dumps(body).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer


@pytest.fixture(scope="module")
def tiny_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


PROBE = """
import sys
from dobby.cli.main import main
try:
    main(sys.argv[1:], prog_name="dobby")
except SystemExit as exc:
    code = exc.code
print("\\n" + " ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def _imported(args: list[str], url: str) -> tuple[int, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    env.update(DOBBY_URL=url, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return res.returncode, set(res.stderr.splitlines()[-1].split())


QUICK = [
    ["--help"],
    ["status"],
    ["show", "abcd1234"],
    ["add", "hi"],
    ["add", "--help"],
    ["cancel", "abcd1234"],
    ["logs", "abcd1234"],
]


@pytest.mark.parametrize("args", QUICK)
def test_quick_commands_import_nothing_heavy(args: list[str], tiny_hub: str) -> None:
    code, modules = _imported(args, tiny_hub)
    assert code == 0
    heavy = {m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY}
    heavy |= {m for m in modules if any(m.startswith(h + ".") for h in HEAVY)}
    assert heavy == set()
    # A quick request is one exchange on a socket (dobby/client/wire.py): httpx2 is for event
    # streams, http.client's email parser and ssl (an https:// hub) are not needed at all.
    assert {"httpx2", "dobby.client.sse", "http.client", "email", "ssl"} & modules == set()
    if args[-1] == "--help":
        assert "dobby.client.http" not in modules and "socket" not in modules
    # Only the module holding the command is imported, beside the shared ones.
    own = {"--help": set(), "logs": {"dobby.cli.results"}}.get(args[0], {"dobby.cli.tasks"})
    cli_modules = {m for m in modules if m.startswith("dobby.cli.")}
    assert cli_modules <= SHARED | {"dobby.cli.main"} | own


def test_following_a_log_reads_the_event_stream_with_httpx2(tiny_hub: str) -> None:
    code, modules = _imported(["logs", "-f", "abcd1234"], tiny_hub)
    assert code == 0
    assert "dobby.client.sse" in modules and "httpx2" in modules


def test_documented_options_of_add_exist() -> None:
    from dobby.cli.tasks import add

    known = {opt for param in add.params for opt in getattr(param, "opts", [])}
    for doc in ("inventory.yaml.example", "README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        for line in text.splitlines():
            if "dobby add " not in line:
                continue
            used = {w.strip("`'\",.;:()") for w in line.split("dobby add ", 1)[1].split()}
            options = {w for w in used if w.startswith("--")}
            assert options <= known, f"{doc}: {line.strip()} uses {sorted(options - known)}"


def test_documented_shell_completion_works() -> None:
    assert "_DOBBY_COMPLETE=bash_source dobby" in (ROOT / "README.md").read_text()
    script = "from dobby.cli.main import main; main(prog_name='dobby')"
    env = {**os.environ, "_DOBBY_COMPLETE": "bash_source", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "complete -o nosort -F _dobby_completion dobby" in res.stdout
    env = {
        **env,
        "_DOBBY_COMPLETE": "bash_complete",
        "COMP_WORDS": "dobby hosts ch",
        "COMP_CWORD": "2",
    }
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert "plain,check" in res.stdout.split()
    # Command names complete from the lazy table, without importing the commands.
    env = {**env, "COMP_WORDS": "dobby sta", "COMP_CWORD": "1"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert res.stdout.split() == ["plain,start", "plain,stats", "plain,status"]
