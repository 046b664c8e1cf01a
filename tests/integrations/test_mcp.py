"""The MCP server: the official MCP client launches the real ``dobby-mcp`` console script over
stdio (and streamable HTTP) and calls every tool against a real hub, sshd hosts, fake agents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from dobby.integrations import mcp
from dobby.integrations.mcp import mcp_snippet
from tests.fixtures.hub import HubProcess, free_port, make_git_project
from tests.fixtures.keepalive import TASK, KeepAliveServer
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_listening, wait_until

pytestmark = pytest.mark.slow  # the dobby-mcp process against a hub process

CALC_TESTS = (
    "import unittest\n\nfrom calc import mul\n\n\nclass T(unittest.TestCase):\n"
    "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n"
)
TOOLS = {
    "dobby_add_task",
    "dobby_batch_add",
    "dobby_plan_task",
    "dobby_status",
    "dobby_get_task",
    "dobby_results",
    "dobby_list_results",
    "dobby_cancel",
    "dobby_retry",
    "dobby_detail_status",
    "dobby_stats",
    "dobby_usage",
    "dobby_projects",
    "dobby_register",
    "dobby_start_race",
    "dobby_race",
}


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost], local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [ssh_hosts[0].inventory_entry(), local_entry]


def stdio_params(hub_url: str, cwd: Path | None = None) -> StdioServerParameters:
    exe = shutil.which("dobby-mcp")
    assert exe, "the dobby-mcp console script is installed (pip install -e .)"
    env = {"DOBBY_URL": hub_url}
    if os.environ.get("PYTHONPATH"):  # the checkout under test, not another installed copy
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return StdioServerParameters(command=exe, env=env, cwd=cwd)


async def call(client: Client, tool: str, /, **args: Any) -> tuple[str, dict[str, Any]]:
    """Call a tool that must succeed; return its text and structured content."""
    result = await client.call_tool(tool, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, text
    assert isinstance(result.structured_content, dict)
    return text, result.structured_content


async def error_of(client: Client, tool: str, /, **args: Any) -> str:
    """Call a tool that must fail; return the error text."""
    result: CallToolResult = await client.call_tool(tool, args)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def test_stdio_lists_16_tools_with_schemas_and_descriptions(
    hub: HubProcess, tmp_path: Path
) -> None:
    async with Client(stdio_params(hub.url, cwd=tmp_path)) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 30, tool.name
            assert tool.input_schema["type"] == "object"
        add = tools["dobby_add_task"].input_schema
        assert add["required"] == ["prompt"]
        assert set(add["properties"]["backend"]["enum"]) == {"claude", "codex", "shell"}
        assert "description" in add["properties"]["project"]
        batch = tools["dobby_batch_add"].input_schema
        assert batch["properties"]["tasks"]["items"]["$ref"].endswith("BatchTask")


async def test_every_tool_against_a_real_hub(hub: HubProcess, tmp_path: Path) -> None:
    async with Client(stdio_params(hub.url, cwd=tmp_path)) as mcp:
        repo = make_git_project(tmp_path / "app")
        text, project = await call(mcp, "dobby_register", path="app", context="web backend")
        assert project["name"] == "app" and project["path"] == str(repo)  # relative to the cwd
        text, _ = await call(mcp, "dobby_projects")
        assert "app:" in text and "web backend" in text

        text, task = await call(
            mcp, "dobby_add_task", prompt="[scenario:success] write tests", project="app", host="h1"
        )
        assert text.startswith(f"Queued task {task['id']}") and task["host"] is None
        shell_text, shell = await call(
            mcp,
            "dobby_add_task",
            prompt="echo from-mcp",
            backend="shell",
            host="local",
            timeout="5m",
        )
        assert shell["timeout"] == 300
        done = hub.wait_status(task["id"])
        assert done["status"] == "completed" and done["host"] == "h1"
        hub.wait_status(shell["id"])

        text, body = await call(mcp, "dobby_status", project="app")
        assert (
            task["id"] in text and shell["id"] not in text and body["tasks"][0]["id"] == task["id"]
        )
        text, got = await call(mcp, "dobby_get_task", task_id=task["id"][:5])
        assert got["id"] == task["id"] and "summary:" in text
        text, result = await call(mcp, "dobby_results", task_id=task["id"])
        assert result["task_id"] == task["id"] and f"${done['cost_usd']:.4f}" in text
        assert done["summary"].splitlines()[0] in text
        _, denied = await call(mcp, "dobby_add_task", prompt="go [scenario:denied]", host="h1")
        assert hub.wait_status(denied["id"])["status"] == "completed"
        text, _ = await call(mcp, "dobby_results", task_id=denied["id"])
        assert "! 1 action(s) denied by the host's permissions: Write hello.txt" in text
        assert "! denied: Write hello.txt" in text
        text, _ = await call(mcp, "dobby_get_task", task_id=denied["id"])
        assert "! denied: Write hello.txt" in text
        text, results = await call(mcp, "dobby_list_results", project="app")
        assert [r["task_id"] for r in results["results"]] == [task["id"]] and task["id"] in text
        text, detail = await call(mcp, "dobby_detail_status", task_id=task["id"])
        assert detail["task_id"] == task["id"] and "completed on h1" in text
        text, stats = await call(mcp, "dobby_stats", since="24h")
        assert stats["tasks"] >= 2 and "cost $" in text
        text, usage = await call(mcp, "dobby_usage")
        assert "claude/h1: ok" in text and "claude/h1" in [a["account"] for a in usage["accounts"]]

        text, batch = await call(
            mcp,
            "dobby_batch_add",
            name="pair",
            defaults={"project": "app", "backend": "shell", "host": "h1"},
            tasks=[
                {"name": "first", "prompt": "echo one"},
                {"prompt": "echo two", "after": ["first"]},
            ],
        )
        first, second = batch["tasks"]
        assert second["after"] == [first["id"]] and "2 tasks queued" in text
        assert hub.wait_status(second["id"])["status"] == "completed"

        text, draft = await call(
            mcp, "dobby_plan_task", prompt="[scenario:success] plan it", project="app"
        )
        assert draft["status"] == "draft" and "runs once approved" in text

        _, slow = await call(
            mcp, "dobby_add_task", prompt="sleep 60", backend="shell", host="local"
        )
        hub.wait_status(slow["id"], ("running",))
        text, cancelled = await call(mcp, "dobby_cancel", task_id=slow["id"])
        assert cancelled["status"] == "cancelled" and text.startswith("Cancelled.")
        text, retried = await call(mcp, "dobby_retry", task_id=slow["id"])
        assert retried["attempt"] == 1 and "attempt 1" in text
        await call(mcp, "dobby_cancel", task_id=slow["id"])


async def test_a_race_started_and_compared_through_mcp(hub: HubProcess, tmp_path: Path) -> None:
    files = {"calc.py": "def add(a, b):\n    return a + b\n", "test_calc.py": CALC_TESTS}
    make_git_project(tmp_path / "calc", files)
    async with Client(stdio_params(hub.url, cwd=tmp_path)) as mcp:
        await call(mcp, "dobby_register", path="calc")
        text, race = await call(
            mcp, "dobby_start_race", prompt="[scenario:patch_good] add mul", project="calc",
            verify="python3 -m unittest -q test_calc", k=2, hosts=["h1", "local"],
            pick="smallest",
        )  # fmt: skip
        assert race["k"] == 2 and text.startswith(f"Race {race['id']} running (pick smallest")
        assert [c["host"] for c in race["attempts"]] == ["h1", "local"]
        hub.cli("projects", "set", "calc", "max_concurrent=2", check=True)
        for col in race["attempts"]:
            hub.wait_status(col["task_id"])

        def decided() -> dict[str, Any] | None:
            view = hub.client().race(race["id"])
            return view if view["status"] != "running" else None

        view = wait_until(decided, what=f"race {race['id']} to be decided", timeout=60)
        assert view["status"] == "completed"
        text, shown = await call(mcp, "dobby_race", race_id=race["id"])
        assert shown["winner"] == view["winner"] and f"winner {view['winner']}" in text
        assert "#1" in text and "#2" in text and "check passed" in text
        text = await error_of(mcp, "dobby_start_race", prompt="x", project="calc", verify="t", k=0)
        assert "k" in text


async def test_bad_arguments_and_hub_errors_are_tool_errors(
    hub: HubProcess, tmp_path: Path
) -> None:
    async with Client(stdio_params(hub.url, cwd=tmp_path)) as mcp:
        text = await error_of(mcp, "dobby_add_task", prompt="x", backend="perl")
        assert "backend" in text and "'claude', 'codex' or 'shell'" in text
        text = await error_of(mcp, "dobby_status", limit=0)
        assert "limit" in text
        text = await error_of(mcp, "dobby_add_task", prompt="x", project="nope")
        assert "nope" in text and "project" in text  # the hub's own message
        text = await error_of(mcp, "dobby_get_task", task_id="zzzz9999")
        assert "zzzz9999" in text
        text = await error_of(mcp, "dobby_retry", task_id="zzzz9999")
        assert "zzzz9999" in text


async def test_hub_down_is_a_tool_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(stdio_params(url)) as client:
        text = await error_of(client, "dobby_projects")
    assert f"cannot reach the hub at {url}" in text


async def test_streamable_http(hub: HubProcess) -> None:
    port = free_port()
    exe = shutil.which("dobby-mcp") or sys.executable
    proc = subprocess.Popen(
        [exe, "--http", str(port)],
        env={**hub.env(), "DOBBY_URL": hub.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(
            port,
            proc=proc,
            what="dobby-mcp --http",
            # stderr only once it exited: reading a live process's pipe would block
            detail=lambda: proc.stderr.read() if proc.stderr and proc.poll() is not None else "",
        )
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            text, body = await call(client, "dobby_projects")
            assert body == {"projects": []} and text == "No projects registered."
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_mcp_config_prints_the_snippet(hub: HubProcess) -> None:
    res = hub.cli("mcp-config", check=True)
    snippet = json.loads(res.stdout)
    entry = snippet["mcpServers"]["dobby"]
    assert entry["env"]["DOBBY_URL"] == hub.url
    assert Path(entry["command"]).name in ("dobby-mcp", Path(sys.executable).name)
    assert mcp_snippet("http://h:1")["mcpServers"]["dobby"]["env"] == {"DOBBY_URL": "http://h:1"}


def test_the_server_keeps_one_client_per_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp, "_CLIENTS", {})
    monkeypatch.delenv("DOBBY_API_KEY", raising=False)
    server = KeepAliveServer()
    try:
        monkeypatch.setenv("DOBBY_URL", server.url)
        assert mcp._hub().task("abcd1234") == TASK
        assert mcp._hub().task("abcd1234") == TASK
        assert [s.conn for s in server.seen] == [1, 1]  # a session's calls: one connection
        monkeypatch.setenv("DOBBY_URL", "http://127.0.0.1:9")
        assert mcp._hub().url == "http://127.0.0.1:9"  # the hub named now, not the first one
    finally:
        for client in mcp._CLIENTS.values():
            client.close()
        server.stop()
