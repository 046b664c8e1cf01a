"""SIGTERM ends the hub whatever is in flight; its tasks are settled at the next start.

The launches here hang inside ``tmux new-session`` (a wrapper in front of the real tmux), and
each leaves a process in a session of its own holding the command's stdout: a kill of the
launch's process group cannot reach it, so a hub waiting for that pipe to close never exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dobby.runner.runner import LAUNCHES_PER_HOST
from tests.fixtures.hub import HubProcess
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow

LAUNCHES = LAUNCHES_PER_HOST  # every one of them inside tmux (more would wait their turn)


@pytest.fixture
def stuck(tmp_path: Path) -> Iterator[Path]:
    """Return a directory whose ``tmux`` hangs in ``new-session``; kill its strays after."""
    bin_dir = tmp_path / "stuck-bin"
    bin_dir.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    real = subprocess.run(["bash", "-c", "command -v tmux"], capture_output=True, text=True)
    (bin_dir / "tmux").write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = new-session ] && [ -e {marks}/hang ]; then\n'
        "  setsid sleep 600 &\n"  # its own session: out of reach of the launch's group
        f"  echo $! >{marks}/stray.$$\n"
        f"  touch {marks}/launch.$$\n"
        "  exec sleep 600\n"
        "fi\n"
        f'exec {real.stdout.strip()} "$@"\n'
    )
    (bin_dir / "tmux").chmod(0o755)
    yield bin_dir
    for stray in marks.glob("stray.*"):
        try:
            os.kill(int(stray.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def hub_env(stuck: Path) -> dict[str, str]:
    return {"PATH": f"{stuck}:{os.environ['PATH']}"}


@pytest.fixture
def hub_hosts(local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**local_entry, "max_agents": LAUNCHES + 1}]


def add(hub: HubProcess, prompt: str) -> str:
    out = hub.cli("add", prompt, "--backend", "shell", "--json", check=True).stdout
    return str(json.loads(out)["id"])


def test_sigterm_ends_the_hub_with_tasks_running_and_launching(
    hub: HubProcess, stuck: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    running = add(hub, "sleep 600")
    hub.wait_status(running, ("running",))
    (marks / "hang").touch()
    launching = [add(hub, "echo hi") for _ in range(LAUNCHES)]
    wait_until(lambda: len(list(marks.glob("launch.*"))) == LAUNCHES, what="every launch to hang")
    hub.stop()  # fails the test (with the hub's stacks) if the hub does not exit
    assert "dobby hub stopped" in hub.log()

    (marks / "hang").unlink()
    cut = {}
    for task_id in launching:  # each claimed its attempt, and none started
        task_dir = tmp_path / f"localwork/tasks/{task_id}"
        [claim] = task_dir.glob("claim.*")
        cut[task_id] = claim.name.removeprefix("claim.")
        assert not (task_dir / "pid").exists()
    hub.start()
    client = hub.client()
    assert client.task(running)["status"] == "running"  # re-adopted: it kept running
    hub.stop()  # again, now with re-adopted followers and settles in flight
    hub.start()
    # The stop killed each launch between its claim and its session: the host shows its
    # launcher gone, so the task is placed again (a launch of its own) and runs.
    for task_id in launching:
        done = hub.wait_status(task_id)
        assert (done["status"], done["host"]) == ("completed", "local"), done
        assert done["launch_id"] != cut[task_id]
        assert client.logs(task_id)["text"] == "hi\n"
    client.cancel(running)
    hub.wait_status(running, ("cancelled",))
