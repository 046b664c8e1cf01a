"""The CLI as a package: its shape (no circles, no reach into the hub), no deprecated click API,
and a fast start — checked by which modules a command imports, never by the clock."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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


class _Hub(BaseHTTPRequestHandler):
    """Just enough of a hub for status, show and add."""

    protocol_version = "HTTP/1.0"
    task = {"id": "abcd1234", "status": "pending", "host": None, "title": "t", "prompt": "t"}

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = {"tasks": [self.task]} if self.path.startswith("/tasks?") else self.task
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


@pytest.mark.parametrize(
    "args", [["--help"], ["status"], ["show", "abcd1234"], ["add", "hi"], ["add", "--help"]]
)
def test_quick_commands_import_nothing_heavy(args: list[str], tiny_hub: str) -> None:
    code, modules = _imported(args, tiny_hub)
    assert code == 0
    heavy = {m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY}
    heavy |= {m for m in modules if any(m.startswith(h + ".") for h in HEAVY)}
    assert heavy == set()
    if args[-1] == "--help":
        assert "httpx2" not in modules  # no hub is asked: no HTTP stack at all


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
