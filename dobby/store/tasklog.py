"""The hub's copy of each task's output, ``results_dir/<id>/out.jsonl``: its one owner.

The follower appends whole lines only, and an append that fails half way (ENOSPC, EIO) is cut
back off, so the file's size *is* the follower's offset and a hub killed at any instant — or
a disk that fills up — resumes with no gap and no duplicate line. Appends are not fsynced one
by one: a killed process loses nothing the kernel has, and after a machine crash a shorter
copy is simply read again from the host (the copy is fsynced once, when the task ends).
Everything else reads it by byte offset: the logs API, SSE streams, detail-status, the
dashboard, staleness. Lines become display events here, through the task's backend, for
every reader alike. A retry moves the previous attempt's output aside (``out.<epoch>.jsonl``).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dobby.backends import get_backend
from dobby.backends.base import LogEvent
from dobby.hostside import verify

LOG_NAME = "out.jsonl"
READ_LIMIT = 4 << 20


class TaskLogs:
    """Where each task's output lives on the hub, and how it is read, written and reset."""

    def __init__(self, *, root: Path) -> None:
        self.root = Path(root)

    def task_dir(self, task_id: str) -> Path:
        """Return the hub's directory of a task: its output, err.log and artifacts."""
        return self.root / task_id

    def path(self, task_id: str) -> Path:
        """Return the hub's copy of a task's output."""
        return self.task_dir(task_id) / LOG_NAME

    def size(self, task_id: str) -> int:
        """Return the size of the copy (0 when there is none yet)."""
        try:
            return self.path(task_id).stat().st_size
        except FileNotFoundError:
            return 0

    def mtime(self, task_id: str) -> float | None:
        """Return when the copy last grew (None when there is none yet, or it cannot be read)."""
        try:
            return self.path(task_id).stat().st_mtime
        except OSError:
            return None

    def read(self, task_id: str, offset: int = 0, limit: int = READ_LIMIT) -> tuple[bytes, int]:
        """Return (bytes from ``offset``, at most ``limit``; the offset after them)."""
        try:
            with open(self.path(task_id), "rb") as fh:
                if offset >= os.fstat(fh.fileno()).st_size:
                    return b"", offset  # nothing there yet (a seek past 2**63 would fail)
                fh.seek(offset)
                data = fh.read(limit)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)

    def tail(self, task_id: str, limit: int) -> bytes:
        """Return the last whole lines of the copy, at most ``limit`` bytes of them."""
        start = max(0, self.size(task_id) - limit)
        data, _ = self.read(task_id, start, limit)
        if start > 0:
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""  # cut mid-line
        return data

    def lines(self, task_id: str, offset: int = 0, *, end: int | None = None) -> Iterator[str]:
        """Yield the copy's lines from byte ``offset`` up to byte ``end`` as text (undecodable
        bytes replaced): a half after a usage limit starts further on, a verify section ends
        the agent's part."""
        try:
            with open(self.path(task_id), "rb") as fh:
                fh.seek(max(0, offset))
                if end is not None:
                    data = fh.read(max(0, end - offset))
                    yield from io.StringIO(data.decode("utf-8", "replace"), newline=None)
                    return
                with io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline=None) as text:
                    yield from text
        except FileNotFoundError:
            return

    def writer(self, task_id: str) -> LogWriter:
        """Open the copy for appending (the follower's end of it); see LogWriter."""
        return LogWriter(self.path(task_id))

    def reset(self, task_id: str) -> None:
        """Move the output of a previous attempt aside, so a retry starts a clean copy."""
        path = self.path(task_id)
        if path.exists():
            path.rename(path.with_name(f"out.{int(time.time())}.jsonl"))


class LogWriter:
    """Append whole lines to one task's copy; ``size`` is the follower's offset.

    A copy that is not there yet is made with its first line: a task that prints nothing (a
    shell task's ``true``) costs the hub no directory and no file. Made when the follower
    began, they were its slowest calls on a hub dispatching 1,000 such tasks: ~1 ms each on
    the loop, where the disk was an ext4 without a journal (each new inode is found past
    every one freed in the last minute, and the hosts' files had just been deleted).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1
        self._closed = False
        self.dirty = False  # appended to since the last sync
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self.size = 0
        else:
            self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def _created(self) -> int:
        if self._closed:
            raise ValueError(f"the copy {self._path} is closed")
        if self._fd < 0:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.size = os.lseek(self._fd, 0, os.SEEK_END)
        return self._fd

    def append(self, data: bytes, *, final: bool = False) -> bytes:
        """Append the whole lines of ``data`` and return them (``final``: all of it).

        A partial last line waits for the rest of it in the next read, unless the agent has
        ended (``final``): then it is kept as it is. If the write fails part way, what it
        wrote is cut off again and the error raised: the copy never holds a torn line.
        """
        cut = data.rfind(b"\n") + 1
        if final and cut < len(data):
            cut = len(data)
        if cut == 0:
            return b""
        chunk = data[:cut]
        view = memoryview(chunk)
        fd = self._created()
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            try:
                os.ftruncate(fd, self.size)
            except OSError:  # the next writer() measures the file again
                self.size = os.lseek(fd, 0, os.SEEK_END)
            raise
        self.size += cut
        self.dirty = True
        return chunk

    def sync(self) -> None:
        """Flush the copy to disk (once, when the task ends)."""
        os.fsync(self._fd)
        self.dirty = False

    def close(self) -> None:
        """Close the file."""
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def entries(backend: str, data: bytes, *, offset: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """Render the lines of a log chunk starting at ``offset``: (line's offset, event) each."""
    agent = get_backend(backend)
    out: list[tuple[int, dict[str, Any]]] = []
    for line in data.splitlines(keepends=True):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        marker = verify.parse_marker(text)
        if marker is not None:  # the verify phase's section lines, whatever the backend
            out.append((offset, section_event(marker).to_dict()))
        else:
            out.extend((offset, event.to_dict()) for event in agent.render(text))
        offset += len(line)
    return out


def section_event(marker: dict[str, Any]) -> LogEvent:
    """Render a verify marker line as a ``section`` event (a heading in every log view)."""
    if marker.get("phase") == "start":
        return LogEvent("section", "verify", data={"phase": "start"})
    code = marker.get("exit_code")
    ms = marker.get("duration_ms")
    took = f", {ms / 1000:.1f}s" if isinstance(ms, int | float) else ""
    word = "passed" if code == 0 else "timed out" if code in verify.TIMEOUT_EXITS else "failed"
    return LogEvent(
        "section",
        f"verify {word} (exit {code}{took})",
        is_error=code != 0,
        data={"phase": "end", "exit_code": code, "duration_ms": ms},
    )


def events(backend: str, data: bytes) -> list[dict[str, Any]]:
    """Render the lines of a log chunk into display events through the backend's parser."""
    return [event for _, event in entries(backend, data)]
