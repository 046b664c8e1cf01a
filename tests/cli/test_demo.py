"""`dobby demo`, the README's first command, as a new user runs it — and what it leaves behind:
nothing, whether it ends by itself, by Ctrl-C after --keep, or by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dobby.cli.demo import _HubThread
from dobby.core.config import load_settings

pytestmark = pytest.mark.slow  # the whole demo

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^   ([0-9a-f]{16})  (\w+)\s+(\w+)\s+(\S+)\s*(.*)$", re.M)


def demo_env(mark: str) -> dict[str, str]:
    """The user's environment plus a mark every process the demo starts inherits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOBBY_")}
    return {**env, "PYTHONPATH": str(ROOT), "DOBBY_DEMO_TEST_MARK": mark}


def live_processes(mark: str) -> list[str]:
    """Return ``pid cmdline`` of each live (not zombie) process carrying ``mark``."""
    found = []
    needle = f"DOBBY_DEMO_TEST_MARK={mark}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        if state != "Z":  # pid 1 here reaps no orphans: a zombie is already dead
            found.append(f"{proc.name} {cmdline}")
    return found


def wait_until(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


class Demo:
    """A `dobby demo` process whose output is read line by line as it comes."""

    def __init__(
        self, *args: str, tmpdir: Path | None = None, sigint_ignored: bool = False
    ) -> None:
        self.mark = uuid.uuid4().hex
        env = demo_env(self.mark)
        if tmpdir is not None:
            env["TMPDIR"] = str(tmpdir)  # where the demo makes its throw-away home
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dobby", "demo", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # As `dobby demo --keep &` in a script gets it: SIGINT ignored from the start.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if sigint_ignored
            else None,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, text: str, timeout: float = 180) -> str:
        """Return the output so far once a line contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return self.output
        raise AssertionError(f"{text!r} never came:\n{self.output}")

    def finish(self, timeout: float = 120) -> str:
        self.proc.wait(timeout)
        self.until_end()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.output

    def until_end(self) -> None:
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def home_of(output: str) -> Path:
    found = re.search(r"state in (/\S+)\.", output)
    assert found, output
    return Path(found.group(1))


def test_demo_tells_its_story_then_leaves_nothing_behind() -> None:
    demo = Demo()
    out = demo.finish(timeout=300)
    assert demo.proc.returncode == 0, out
    steps = [line for line in out.splitlines() if re.match(r"^\d\. ", line)]
    assert [s[:3] for s in steps] == ["1. ", "2. ", "3. ", "4. "], out
    assert re.search(r"^   ID\s+STATUS\s+BACKEND\s+COST\s+SUMMARY$", out, re.M), out
    rows = ROW.findall(out.split("4. All done")[1])
    assert len(rows) == 5, out
    outcome = {(backend, status) for _, status, backend, _, _ in rows}
    assert {("claude", "completed"), ("codex", "completed"), ("shell", "failed")} <= outcome
    claude = next(r for r in rows if r[2] == "claude")
    assert claude[3] == "$0.0437" and claude[4] == "Done: created hello.txt"
    tail = out.splitlines()[-5:]
    assert "/dashboard" in tail[0] and tail[1].startswith("Try next")
    assert [line.split()[:2] for line in tail[2:]] == [
        ["dobby", "status"],
        ["dobby", "logs"],
        ["dobby", "diff"],
    ]
    assert not home_of(out).exists()  # the throw-away home is removed
    assert wait_until(lambda: not live_processes(demo.mark)), live_processes(demo.mark)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "started-with-&"])
def test_demo_keep_serves_until_ctrl_c_then_removes_everything(sigint_ignored: bool) -> None:
    demo = Demo("--keep", sigint_ignored=sigint_ignored)
    try:
        out = demo.until("  dobby diff ")
        url = re.search(r"Dashboard: (http://\S+)/dashboard", out)
        assert url, out
        with urllib.request.urlopen(url.group(1) + "/health", timeout=10) as resp:
            assert resp.status == 200  # --keep: still serving after the story
        assert live_processes(demo.mark)  # the demo and its tmux server
        home = home_of(out)
        assert home.exists()
    finally:
        demo.proc.send_signal(signal.SIGINT)
    demo.finish()
    assert demo.proc.returncode == 0, demo.output
    assert "Interrupted: stopping the demo hub" in demo.output
    assert not home.exists()
    assert wait_until(lambda: not live_processes(demo.mark)), live_processes(demo.mark)


def test_demo_stopped_by_sigterm_midway_removes_everything() -> None:
    demo = Demo()
    try:
        out = demo.until("3. Queued")
        home = home_of(out)
        # Tasks are running in tmux on host local: there is something to clean up.
        assert wait_until(lambda: (home / "tmux").exists() and any((home / "tmux").iterdir()))
    finally:
        demo.proc.send_signal(signal.SIGTERM)
    demo.finish()
    assert "Interrupted: stopping the demo hub" in demo.output
    assert not home.exists()
    assert wait_until(lambda: not live_processes(demo.mark)), live_processes(demo.mark)


def _run_batch(url: str, file: Path, mark: str) -> list[dict[str, object]]:
    """Submit a batch file with the CLI and return its tasks once all ended."""
    env = {**demo_env(mark), "DOBBY_URL": url}
    cli = [sys.executable, "-m", "dobby"]
    res = subprocess.run([*cli, "batch", str(file), "--json"], env=env, text=True,
                         capture_output=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    batch_id = json.loads(res.stdout)["id"]
    body: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal body
        out = subprocess.run([*cli, "batch-status", batch_id, "--json"], env=env, text=True,
                             capture_output=True, timeout=60)  # fmt: skip
        body = json.loads(out.stdout)
        return all(t["status"] in ("completed", "failed", "cancelled") for t in body["tasks"])

    assert wait_until(ended, timeout=180), body
    return list(body["tasks"])


def test_the_examples_run_against_the_demo(tmp_path: Path) -> None:
    demo = Demo("--keep")
    try:
        out = demo.until("  dobby diff ")
        found = re.search(r"Dashboard: (http://\S+)/dashboard", out)
        assert found, out
        url = found.group(1)
        tasks = _run_batch(url, ROOT / "examples" / "batch-refactors.yaml", demo.mark)
        assert {t["name"]: t["status"] for t in tasks} == {
            "tests": "completed", "refactor": "completed", "docs": "completed",
            "check": "completed",
        }  # fmt: skip
        # batch-evals says at its top what to edit for the demo: delete the `# GPU:` lines.
        shipped = (ROOT / "examples" / "batch-evals.yaml").read_text(encoding="utf-8")
        edited = tmp_path / "batch-evals.yaml"
        edited.write_text(
            "".join(ln for ln in shipped.splitlines(True) if "# GPU:" not in ln), encoding="utf-8"
        )
        assert shipped.count("# GPU:") == 2
        tasks = _run_batch(url, edited, demo.mark)
        assert {t["status"] for t in tasks} == {"completed"}, tasks
    finally:
        demo.proc.send_signal(signal.SIGINT)
        demo.finish()


def test_demo_on_a_busy_port_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = Demo("--port", str(port), tmpdir=tmp_path)
        out = demo.finish()
    assert demo.proc.returncode == 1
    assert out.splitlines()[-1].startswith(f"error: port {port} on 127.0.0.1 is already in use")
    assert "Traceback" not in out and "Task was destroyed" not in out
    assert list(tmp_path.iterdir()) == []  # its throw-away home is gone too


def test_stopping_a_demo_hub_whose_loop_just_closed_is_no_error(tmp_path: Path) -> None:
    # A hub that failed to start (a busy port) closes its loop in its thread while the demo
    # cleans up: the stop raced it and ended the demo with "Event loop is closed".
    hub = _HubThread(load_settings(home=tmp_path, overrides={}, environ={}))
    hub.stop_event = asyncio.Event()
    hub.loop.close()
    gate = threading.Event()
    hub.thread = threading.Thread(target=gate.wait, args=(30,))  # still ending
    hub.thread.start()
    threading.Timer(0.2, gate.set).start()
    hub.stop()
    assert not hub.thread.is_alive()
