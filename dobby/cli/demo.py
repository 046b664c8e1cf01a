"""``dobby demo``: a throw-away hub, the ``local`` host, a sample project, real tasks.

The agent tasks use the bundled replay agent (``dobby.replay``): it prints the recorded
output formats of the real claude/codex CLIs, so the demo needs no API key and no internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dobby.cli import render
from dobby.client.http import HubClient
from dobby.core.errors import DobbyError
from dobby.hub.server import run_hub
from dobby.replay import install_fake_agents

if TYPE_CHECKING:
    from dobby.core.config import Settings

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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _describe(task: dict[str, Any]) -> str:
    what = task.get("title") or task.get("prompt") or ""
    return f"{task.get('backend')}: {what}"[:60]


class _HubThread:
    """The demo's hub, run in a thread of this process so that it stops when the demo does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._serve, name="dobby-demo-hub", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            started = asyncio.Event()
            waiter = asyncio.ensure_future(started.wait())
            waiter.add_done_callback(lambda _f: self.ready.set())
            try:
                await run_hub(self.settings, ready=started, stop=self.stop_event)
            finally:
                waiter.cancel()  # the hub failed to start: nothing will set `started`

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
        finally:
            self.ready.set()
            self.loop.close()

    def start(self) -> None:
        """Start the hub; raise what stopped it from starting (a busy port…)."""
        self.thread.start()
        if not self.ready.wait(60):
            raise DobbyError("the demo hub did not start within 60 s")
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """Stop the hub and wait for its thread."""
        if self.thread.is_alive() and self.stop_event is not None:
            # A hub that failed to start may be closing its loop right now: then it is ending.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def run_demo(*, port: int | None = None, keep: bool = False) -> None:
    """Run the demo in the foreground, then stop and remove everything it started.

    With ``keep`` the hub stays up after the tasks end, until Ctrl-C (or SIGTERM). The demo's
    tmux server (its tasks' sessions on host ``local``) has its own socket directory, so ending
    it never touches the user's own tmux.
    """
    previous = signal.signal(signal.SIGTERM, _terminated)
    # Taken explicitly: a process started in the background by a shell without job control
    # (`cmd &` in a script) inherits SIGINT ignored, and Python then leaves it so: the demo
    # would serve on through every SIGINT (its --keep waits for one).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    home = Path(tempfile.mkdtemp(prefix="dobby-demo-"))
    tmux_dir = home / "tmux"
    tmux_dir.mkdir()
    saved_tmux = os.environ.get("TMUX_TMPDIR")
    os.environ["TMUX_TMPDIR"] = str(tmux_dir)  # inherited by the local host's tmux commands
    hub: _HubThread | None = None
    try:
        port = port or _free_port()
        hub = _HubThread(_demo_settings(home, port))
        url = f"http://127.0.0.1:{port}"
        say(
            "Dobby demo: a throw-away hub on this machine runs a few tasks with the bundled "
            "stand-ins for claude and codex (no API key, no network)."
        )
        hub.start()
        say(f"1. Started a hub at {url} (dashboard: {url}/dashboard), state in {home}.")
        _run_tasks(HubClient(url=url, api_key=None), home, url, keep)
        if keep:
            while hub.thread.is_alive():
                time.sleep(0.5)
    except KeyboardInterrupt:
        say("Interrupted: stopping the demo hub and cleaning up.")
    finally:
        # A second Ctrl-C must not leave half the cleanup undone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if hub is not None:
                hub.stop()
            # A launch the hub had under way (bash running `tmux new-session`) outlives the
            # hub's loop: let it end first, or it would start a tmux server after the kill.
            _wait_for_children(timeout=15)
            with contextlib.suppress(OSError):  # no tmux at all: no server to end
                subprocess.run(["tmux", "kill-server"], capture_output=True, check=False)
            shutil.rmtree(home, ignore_errors=True)
        finally:
            if saved_tmux is None:
                os.environ.pop("TMUX_TMPDIR", None)
            else:
                os.environ["TMUX_TMPDIR"] = saved_tmux
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous)
            sys.stdout.flush()


def _live_children() -> list[int]:
    """Return the pids of this process's children that still run (Linux /proc; else [])."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(me) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _wait_for_children(*, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _live_children() and time.monotonic() < deadline:
        time.sleep(0.05)


def _demo_settings(home: Path, port: int) -> Settings:
    from dobby.core.config import load_settings  # pydantic: only when a demo runs

    bin_dir = install_fake_agents(home / "bin")
    inventory = write_demo_inventory(home, bin_dir)
    return load_settings(
        home=home, overrides={"port": port, "inventory": str(inventory)}, environ={}
    )


def _run_tasks(client: HubClient, home: Path, url: str, keep: bool) -> None:
    project = make_sample_project(home / "sample")
    client.register_project("sample", str(project), context="demo project")
    say(f'2. Registered {project}, a small git repository, as project "sample".')
    tasks = [client.add_task(**task) for task in DEMO_TASKS]
    ids = [t["id"] for t in tasks]
    say(
        f"3. Queued {len(ids)} tasks on host local: a shell command, a claude task, a codex "
        "task, a slow shell job and one that fails on purpose. Each runs in its own tmux "
        "session, in a git worktree of the project:"
    )
    _wait_all(client, tasks)
    say("4. All done. What each task gave back (`dobby results ID` shows all of it):")
    rows = []
    for task_id in ids:
        res = client.result(task_id)
        summary = (res["summary"] or res["error"] or "").strip().splitlines()
        rows.append(
            [
                task_id,
                res["status"],
                res["backend"],
                render.format_cost(res["cost_usd"], "-"),
                summary[-1] if summary else "",
            ]
        )
    headers = ["ID", "STATUS", "BACKEND", "COST", "SUMMARY"]
    for line in render.render_table(headers, rows, width=shutil.get_terminal_size().columns):
        say("   " + line)
    env = f"export DOBBY_URL={url}"
    if keep:
        say("The hub keeps running until Ctrl-C; then the demo stops and removes everything.")
        say(f"Dashboard: {url}/dashboard")
        say(f"Try next, in another terminal (after `{env}`):")
    else:
        say(f"Dashboard (while a demo hub runs): {url}/dashboard")
        say(f"Try next: `dobby demo --keep`, then in another terminal (after `{env}`):")
    say("  dobby status")
    say(f"  dobby logs {ids[1]}")
    say(f"  dobby diff {ids[2]}")


def say(text: str) -> None:
    """Print one line of the demo's story (flushed: the demo is often piped)."""
    print(text, flush=True)


def _wait_all(client: HubClient, tasks: list[dict[str, Any]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    ids = [t["id"] for t in tasks]
    what = {t["id"]: _describe(t) for t in tasks}
    while time.monotonic() < deadline:
        done = 0
        for task_id in ids:
            status = client.task(task_id)["status"]
            if seen.get(task_id) != status:
                seen[task_id] = status
                say(f"   {task_id}  {status:<9}  {what[task_id]}")
            done += status in ("completed", "failed", "cancelled")
        if done == len(ids):
            return
        time.sleep(0.2)
    raise DobbyError("the demo tasks did not finish within 120 s")
