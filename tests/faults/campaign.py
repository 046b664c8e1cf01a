"""Fault campaigns against a real hub process and real sshd hosts, and the figures they count.

Shared by the short suite (tests/faults, part of CI) and the long campaign by hand
(bench/faults.py). A campaign submits tasks, injects faults while they run — the hub killed
with -9, the sshd child serving the hub's connection killed, sshd down, the host's tmux server
killed — waits for every task to end, and then counts from the evidence on the hosts:

- lost: acknowledged (201) but unknown to the hub, or never finished;
- launched twice: run.sh started (its ``pid`` or ``exit`` file is there) on more than one host;
- truncated logs: a completed task whose hub copy of out.jsonl differs from the host's, byte
  for byte;
- failed while it succeeded: the hub says failed, the host's ``exit`` file says 0;
- hung answers: a request the hub took longer than its write bound to answer (disk full).

No pytest here: bench/faults.py imports it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dobby.core.errors import HubError
from tests.fixtures.disk import fill_disk
from tests.fixtures.hub import FINISHED, HubProcess
from tests.fixtures.sshd import SshHost, descendants, kill_user_processes
from tests.fixtures.wait import wait_until

# A claude run of the fake agent that writes N JSON lines M ms apart: long enough for a fault to
# land while it runs, short enough for a campaign of hundreds.
LINES = "[scenario:lines:{count}:{ms}]"


@dataclass
class Figures:
    """What one campaign counted (the goal: every count but ``acknowledged`` is 0)."""

    acknowledged: int = 0
    unanswered: int = 0  # submits the hub never answered (it was down): not owed anything
    faults: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    launched_twice: int = 0
    truncated_logs: int = 0
    failed_but_succeeded: int = 0
    abandoned_dirs: int = 0  # made on a host, nothing launched there (not a broken promise)
    refused: int = 0  # submits answered 503 (disk full), then retried with the same key
    hung_answers: int = 0  # requests not answered within the hub's write bound
    seconds: float = 0.0
    evidence: list[str] = field(default_factory=list)

    def bad(self) -> int:
        """Return the number of broken promises (0 is the goal)."""
        return (
            self.lost
            + self.launched_twice
            + self.truncated_logs
            + self.failed_but_succeeded
            + self.hung_answers
        )

    def line(self) -> str:
        """Return the figures as one line."""
        return (
            f"{self.acknowledged} acknowledged ({self.unanswered} unanswered), {self.faults} "
            f"faults, {self.completed} completed, {self.failed} failed | lost {self.lost}, "
            f"launched twice {self.launched_twice}, truncated logs {self.truncated_logs}, "
            f"failed while it succeeded {self.failed_but_succeeded}, hung answers "
            f"{self.hung_answers} | {self.refused} refused (503) and retried | "
            f"{self.abandoned_dirs} directories left unlaunched | {self.seconds:.1f} s"
        )


def host_task_dir(host: SshHost, task_id: str) -> Path:
    """Return a task's directory on ``host`` (the test user's home is on this machine)."""
    return host.home / ".dobby" / "tasks" / task_id


def submit(hub: HubProcess, prompt: str, figures: Figures, **fields: Any) -> str | None:
    """Submit one task (the client retries with its Idempotency-Key); return its id if acked."""
    try:
        task = hub.client().add_task(prompt=prompt, backend="claude", **fields)
    except HubError:
        figures.unanswered += 1
        return None
    figures.acknowledged += 1
    return str(task["id"])


def restart_hub(hub: HubProcess) -> None:
    """Kill the hub with SIGKILL and start it again on the same home and port."""
    hub.kill()
    hub.start()


def kill_sshd_children(host: SshHost) -> None:
    """Kill every sshd process serving a connection to ``host`` (the listener stays)."""
    if host.pid is not None:
        for pid in descendants(host.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kill_user_processes(host.user, name="sshd")


def kill_tmux_server(host: SshHost) -> None:
    """Kill the user's tmux server on ``host`` (every task session on it ends)."""
    kill_user_processes(host.user, name="tmux: server")


def wait_finished(hub: HubProcess, ids: Iterable[str], *, timeout: float) -> dict[str, Any]:
    """Wait until every task in ``ids`` has finished; return {id: task or None if unknown}."""
    client = hub.client()
    pending = set(ids)
    seen: dict[str, Any] = {}

    def done() -> bool:
        for task_id in sorted(pending):
            try:
                task = client.task(task_id)
            except HubError as exc:
                if exc.status == 404:
                    seen[task_id] = None
                    pending.discard(task_id)
                continue  # the hub is restarting: ask again
            seen[task_id] = task
            if task["status"] in FINISHED:
                pending.discard(task_id)
        return not pending

    try:
        wait_until(done, timeout=timeout, what="every task to finish", interval=0.5)
    except AssertionError:
        pass  # the ones left are counted as lost
    return seen


def count(
    hub: HubProcess,
    hosts: list[SshHost],
    ids: list[str],
    figures: Figures,
    *,
    timeout: float,
    may_fail: Callable[[dict[str, Any]], bool] = lambda task: False,
) -> Figures:
    """Wait for ``ids`` to finish and count the figures from the hub and the hosts' evidence."""
    tasks = wait_finished(hub, ids, timeout=timeout)
    for task_id in ids:
        task = tasks.get(task_id)
        if task is None or task["status"] not in FINISHED:
            figures.lost += 1
            state = "unknown" if task is None else task["status"]
            figures.evidence.append(f"{task_id}: lost ({state})")
            continue
        # A launch is run.sh having started (it writes ``pid`` first, ``exit`` last); a
        # directory the hub made and left before launching (killed meanwhile) ran nothing.
        made = [h for h in hosts if host_task_dir(h, task_id).is_dir()]
        where = [h for h in made if _started(host_task_dir(h, task_id))]
        figures.abandoned_dirs += len(made) - len(where)
        if len(where) > 1:
            figures.launched_twice += 1
            seen = "; ".join(f"{h.name}: {_dir_evidence(host_task_dir(h, task_id))}" for h in where)
            figures.evidence.append(f"{task_id}: launched on {seen} (hub says {task['host']})")
        exit_code = None
        for host in where:
            exit_file = host_task_dir(host, task_id) / "exit"
            if exit_file.is_file():
                exit_code = exit_file.read_text().strip()
        if task["status"] == "completed":
            figures.completed += 1
            if len(where) == 1:
                hub_copy = hub.home / "results" / task_id / "out.jsonl"
                host_copy = host_task_dir(where[0], task_id) / "out.jsonl"
                if _read(hub_copy) != _read(host_copy):
                    figures.truncated_logs += 1
                    figures.evidence.append(
                        f"{task_id}: hub log {len(_read(hub_copy))} B, host log "
                        f"{len(_read(host_copy))} B"
                    )
        else:
            figures.failed += 1
            if exit_code == "0":
                figures.failed_but_succeeded += 1
                figures.evidence.append(
                    f"{task_id}: {task['status']}/{task.get('reason')} "
                    f"({task.get('error')}) but exit 0 on the host"
                )
            elif not may_fail(task):
                figures.evidence.append(
                    f"{task_id}: {task['status']}/{task.get('reason')}: {task.get('error')}"
                )
    return figures


def _started(directory: Path) -> bool:
    return (directory / "pid").exists() or (directory / "exit").exists()


def _dir_evidence(directory: Path) -> str:
    """Return what a task directory on a host shows: its files, exit code, output size."""
    files = sorted(p.name for p in directory.iterdir())
    exit_file = directory / "exit"
    code = exit_file.read_text().strip() if exit_file.is_file() else "none"
    return f"{' '.join(files)} (exit {code}, out.jsonl {len(_read(directory / 'out.jsonl'))} B)"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def hub_kill_campaign(
    hub: HubProcess,
    hosts: list[SshHost],
    *,
    tasks: int,
    kills: int,
    seed: int,
    lines: tuple[int, int] = (20, 50),
    timeout: float = 300,
) -> Figures:
    """Submit ``tasks`` tasks and kill -9 the hub ``kills`` times at random points meanwhile."""
    rng = random.Random(seed)
    figures = Figures()
    began = time.monotonic()
    # Kill points: half while submitting (after the i-th submit), half while tasks run.
    during_submit = sorted(rng.sample(range(1, tasks), min(kills // 2, tasks - 1)))
    ids: list[str] = []
    for n in range(tasks):
        prompt = f"{LINES.format(count=lines[0], ms=lines[1])} fault task {n}"
        task_id = submit(hub, prompt, figures)
        if task_id is not None:
            ids.append(task_id)
        if during_submit and during_submit[0] == n:
            during_submit.pop(0)
            restart_hub(hub)
            figures.faults += 1
    for _ in range(kills - figures.faults):
        time.sleep(rng.uniform(0.2, 2.0))
        restart_hub(hub)
        figures.faults += 1
    count(hub, hosts, ids, figures, timeout=timeout)
    figures.seconds = time.monotonic() - began
    return figures


def ssh_fault_campaign(
    hub: HubProcess,
    hosts: list[SshHost],
    *,
    tasks: int,
    rounds: int,
    seed: int,
    down_seconds: float = 3.0,
    lines: tuple[int, int] = (30, 100),
    timeout: float = 300,
) -> Figures:
    """Run ``tasks`` tasks while sshd connection children are killed and sshd goes down."""
    rng = random.Random(seed)
    figures = Figures()
    began = time.monotonic()
    ids = [
        task_id
        for n in range(tasks)
        if (
            task_id := submit(
                hub, f"{LINES.format(count=lines[0], ms=lines[1])} ssh fault {n}", figures
            )
        )
    ]
    for _ in range(rounds):
        time.sleep(rng.uniform(0.3, 1.5))
        host = rng.choice(hosts)
        if rng.random() < 0.5:
            kill_sshd_children(host)
        else:
            host.stop(drop_connections=False)  # the connection half dead, then cut
            time.sleep(down_seconds / 2)
            kill_sshd_children(host)
            time.sleep(down_seconds / 2)
            host.start()
        figures.faults += 1
    count(hub, hosts, ids, figures, timeout=timeout)
    figures.seconds = time.monotonic() - began
    return figures


def post_task(hub: HubProcess, body: dict[str, Any], key: str) -> tuple[int, Any, float]:
    """POST /tasks once with ``key`` (no client retries); return (status, body, seconds)."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    req = urllib.request.Request(hub.url + "/tasks", data=data, method="POST", headers=headers)
    began = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        answer = err.code, json.loads(err.read() or b"null")
    return answer[0], answer[1], time.monotonic() - began


def disk_full_campaign(
    hub: HubProcess,
    hosts: list[SshHost],
    disk: Path,
    *,
    tasks: int,
    posts: int,
    write_timeout: float,
    full_seconds: float = 5.0,
    lines: tuple[int, int] = (60, 100),
    timeout: float = 300,
) -> Figures:
    """Fill the hub's disk (home: database and logs) while tasks run and clients submit.

    Submits while the disk is full must be answered within the write bound (a 503 naming the
    database, or a 201 that is on disk); each refused one is retried with its Idempotency-Key
    once there is room. Then every acknowledged task must run to success once, and its hub log
    must equal the host's byte for byte.
    """
    figures = Figures()
    began = time.monotonic()
    bound = write_timeout + 5.0  # the write bound, plus an answer on a busy machine
    prompt = LINES.format(count=lines[0], ms=lines[1])
    ids = [t for n in range(tasks) if (t := submit(hub, f"{prompt} disk {n}", figures))]
    wait_until(
        lambda: any(_read(hub.home / "results" / t / "out.jsonl") for t in ids),
        what="output to flow",
        timeout=60,
    )
    filler = fill_disk(disk)
    figures.faults += 1
    refused: dict[str, dict[str, Any]] = {}
    for n in range(posts):
        key, body = f"disk-full-{n}", {"prompt": f"{prompt} submitted while full {n}"}
        status, answer, seconds = post_task(hub, {**body, "backend": "claude"}, key)
        if seconds > bound:
            figures.hung_answers += 1
            figures.evidence.append(f"POST {key}: answered after {seconds:.1f} s ({status})")
        if status == 201:
            figures.acknowledged += 1
            ids.append(str(answer["id"]))
        elif status == 503 and "database" in answer["error"]["message"]:
            figures.refused += 1
            refused[key] = body
        else:
            figures.evidence.append(f"POST {key} while full: {status} {answer}")
    time.sleep(max(0.0, full_seconds - (time.monotonic() - began)))
    filler.unlink()
    for key, body in refused.items():  # the client's retry, once there is room again
        status, answer, _ = post_task(hub, {**body, "backend": "claude"}, key)
        if status == 201:
            figures.acknowledged += 1
            ids.append(str(answer["id"]))
        else:
            figures.evidence.append(f"POST {key} retried: {status} {answer}")
    count(hub, hosts, ids, figures, timeout=timeout)
    figures.seconds = time.monotonic() - began
    return figures
