"""``dobby demo``: a throw-away hub, the ``local`` host, a sample project, real tasks.

The agent tasks use the bundled replay agent (``dobby.replay``): it prints the recorded
output formats of the real claude/codex CLIs, so the demo needs no API key and no internet.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dobby.client.http import HubClient
from dobby.core.config import load_settings
from dobby.hub.server import run_hub
from dobby.replay import install_fake_agents

SAMPLE_FILES = {
    "README.md": "# sample\n\nA tiny project the Dobby demo hands to its agents.\n",
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n",
}

DEMO_TASKS: list[dict[str, Any]] = [
    {
        "prompt": "ls -la && git log --oneline -n 3 && "
        "python3 -c 'import calc; print(calc.add(2, 3))'",
        "backend": "shell",
        "project": "sample",
        "title": "inspect the sample project",
    },
    {"prompt": "Create hello.txt with a greeting", "backend": "claude", "project": "sample"},
    {
        "prompt": "Create hello.txt and notes.md",
        "backend": "codex",
        "project": "sample",
        "model": "gpt-5.5",
    },
    {
        "prompt": "for i in 1 2 3 4 5; do echo step $i; sleep 0.3; done",
        "backend": "shell",
        "title": "a slow shell job",
    },
    {
        "prompt": "echo 'this one fails on purpose' >&2; exit 3",
        "backend": "shell",
        "title": "a failing command",
    },
]


def make_git_repo(path: Path, files: dict[str, str], *, message: str) -> Path:
    """Create a git repository holding ``files`` in one commit."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dobby demo",
        "GIT_AUTHOR_EMAIL": "demo@dobby.local",
        "GIT_COMMITTER_NAME": "Dobby demo",
        "GIT_COMMITTER_EMAIL": "demo@dobby.local",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)
    return path


def make_sample_project(path: Path) -> Path:
    """Create the demo's small git repository."""
    return make_git_repo(path, SAMPLE_FILES, message="sample")


def write_demo_inventory(home: Path, bin_dir: Path) -> Path:
    """Write an inventory with the ``local`` host whose PATH finds the replay agents."""
    inv = home / "inventory.yaml"
    inv.write_text(
        "hosts:\n"
        "  local:\n"
        "    connection: local\n"
        f"    workdir: {home / 'work'}\n"
        "    max_agents: 4\n"
        "    env:\n"
        f'      PATH: "{bin_dir}:$PATH"\n',
        encoding="utf-8",
    )
    return inv


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(*, port: int | None = None, keep: bool = False) -> None:
    """Run the demo in the foreground; with ``keep`` the hub stays up until Ctrl-C."""
    home = Path(tempfile.mkdtemp(prefix="dobby-demo-"))
    port = port or _free_port()
    bin_dir = install_fake_agents(home / "bin")
    project = make_sample_project(home / "sample")
    inventory = write_demo_inventory(home, bin_dir)
    settings = load_settings(
        home=home, overrides={"port": port, "inventory": str(inventory)}, environ={}
    )
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    def serve() -> None:
        nonlocal stop
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        started = asyncio.Event()

        async def main() -> None:
            waiter = asyncio.ensure_future(started.wait())
            waiter.add_done_callback(lambda _f: ready.set())
            await run_hub(settings, ready=started, stop=stop)

        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, name="dobby-demo-hub", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise SystemExit("error: the demo hub did not start")
    client = HubClient(url=url, api_key=None)
    print(f"Dobby demo hub: {url}   (state in {home})")
    print(f"  API: {url}/tasks   OpenAPI: {url}/openapi.json")
    client.register_project("sample", str(project), context="demo project")
    ids = [client.add_task(**task)["id"] for task in DEMO_TASKS]
    print(f"submitted {len(ids)} tasks: {' '.join(ids)}")
    _wait_all(client, ids)
    for task_id in ids:
        res = client.result(task_id)
        cost = "-" if res["cost_usd"] is None else f"${res['cost_usd']:.4f}"
        summary = (res["summary"] or res["error"] or "").strip().splitlines()
        print(
            f"  {task_id}  {res['status']:<9} {res['backend']:<6} cost {cost:<8} "
            f"{summary[-1][:70] if summary else ''}"
        )
    if keep:
        print(
            f"try:  export DOBBY_URL={url}; dobby status; dobby logs {ids[1]}; "
            f"dobby results {ids[2]}"
        )
    else:
        print("demo done; `dobby demo --keep` leaves the hub running to explore")
    try:
        if keep:
            print("hub keeps running; Ctrl-C to stop")
            while thread.is_alive():
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        sys.stdout.flush()


def _wait_all(client: HubClient, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        done = 0
        for task_id in ids:
            status = client.task(task_id)["status"]
            if seen.get(task_id) != status:
                seen[task_id] = status
                print(f"  {task_id} → {status}")
            done += status in ("completed", "failed", "cancelled")
        if done == len(ids):
            return
        time.sleep(0.2)
    raise SystemExit("error: demo tasks did not finish in time")
