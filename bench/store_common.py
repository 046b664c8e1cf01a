"""Shared parts of the store benchmarks: realistic task histories, a lean HTTP client, RSS."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dobby.core.models import Project, Task  # noqa: E402
from dobby.core.timefmt import iso_from_epoch  # noqa: E402
from dobby.store.db import Store  # noqa: E402

PROJECTS = ["web", "api", "ml", "infra", "docs"]
WORDS = (
    "fix flaky parser module refactor cache build deploy docs endpoint migrate database "
    "upgrade dependency race condition timeout retry logging metrics dashboard test coverage"
).split()


def history_task(rng: random.Random, i: int, n: int, now: float, *, span_s: float) -> Task:
    """Return task ``i`` of ``n`` finished over the last ``span_s`` seconds, as a hub leaves it."""
    created = now - span_s + span_s * i / n - rng.random() - 1800
    started = created + rng.uniform(0.05, 30)
    finished = started + rng.uniform(5, 1800)
    backend = rng.choice(["claude", "claude", "codex", "shell"])
    status = rng.choices(["completed", "failed", "cancelled"], weights=[8, 2, 1])[0]
    words = " ".join(rng.choices(WORDS, k=12))
    task = Task(
        prompt=f"{words} (job {i})\n\n" + "Context: " + " ".join(rng.choices(WORDS, k=80)),
        backend=backend,
        project=rng.choice(PROJECTS),
        status=status,
        host=f"host{rng.randrange(20):02d}",
        model={"claude": "claude-sonnet-4-5", "codex": "gpt-5-codex"}.get(backend),
        created_at=iso_from_epoch(created),
        started_at=iso_from_epoch(started),
        finished_at=iso_from_epoch(finished),
        summary=("Done: " + " ".join(rng.choices(WORDS, k=40))) if status == "completed" else None,
        reason={"failed": "exit_code"}.get(status),
        exit_code=0 if status == "completed" else 1,
        cost_usd=None if backend == "shell" else round(rng.uniform(0.01, 2.5), 4),
    )
    task.id = f"{rng.getrandbits(64):016x}"
    task.tokens.input = rng.randint(1000, 200_000)
    task.tokens.output = rng.randint(100, 20_000)
    task.tokens.cache_read = rng.randint(0, 500_000)
    return task


def parked_task(rng: random.Random, i: int) -> Task:
    """Return a pending task that waits for a host that never comes (as bench submits do)."""
    task = Task(
        prompt=f"echo queued {i}",
        backend="shell",
        host_selector=["nowhere"],
        wait_for_host=True,
        waiting_on="host",
    )
    task.id = f"{rng.getrandbits(64):016x}"
    return task


def seed(home: Path, tasks: list[Task]) -> float:
    """Write tasks and the projects into a hub home's database; return the seconds it took."""
    home.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    store = Store(path=home / "dobby.db")
    for name in PROJECTS:
        store.put_project(Project(name=name, path=f"/src/{name}"))
    for n, task in enumerate(tasks, 1):
        store.put_task(task)
        if n % 5000 == 0:
            store.commit()
    asyncio.run(store.close())
    return time.perf_counter() - began


def rss_mb(pid: int) -> tuple[float, float]:
    """Return (current, peak) resident memory of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Http:
    """One keep-alive HTTP/1.1 connection (asyncio streams): the client costs little CPU."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(data)}")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw.split(b" ", 2)[1])
        length, chunked = 0, False
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return status, b"".join(p[:-2] for p in parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
