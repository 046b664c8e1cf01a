"""The ``local`` transport: the hub's own machine, no SSH."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from typing import IO

from dobby.core.errors import TransportError
from dobby.transport.base import HUB_SECRETS, IDENT_COMMAND, RunResult, Stream, Transport


def _task_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HUB_SECRETS}
    env.pop("TMUX", None)  # a hub started inside tmux must still create its own sessions
    return env


def _read(fh: IO[bytes]) -> bytes:
    fh.seek(0)
    return fh.read()


class LocalTransport(Transport):
    """Run commands with asyncio subprocesses and move bytes with plain files."""

    def __init__(self, *, host, max_processes: int = 16) -> None:  # type: ignore[no-untyped-def]
        super().__init__(host=host)
        self._sem = asyncio.Semaphore(max_processes)

    async def _connect(self) -> None:
        """Learn home and uid (no connection to open)."""
        res = await self.run(IDENT_COMMAND)
        self.home, self.uid = self._parse_ident(res.stdout)

    async def run(
        self, command: str, *, input: str | None = None, timeout: float | None = None
    ) -> RunResult:
        """Run ``command`` with bash, stdin from ``input`` or /dev/null.

        Output goes to anonymous files, not pipes: a process the command leaves behind in a
        session of its own (out of reach of the kill below) would hold a pipe open, and
        waiting for that pipe would hang a cancelled call — and a stopping hub — for good.
        The call ends when bash does.
        """
        async with self._sem:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                proc = await asyncio.create_subprocess_exec(
                    "bash",
                    "-c",
                    command,
                    stdin=asyncio.subprocess.PIPE
                    if input is not None
                    else asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=_task_env(),
                    start_new_session=True,
                )
                data = input.encode() if input is not None else None
                try:
                    await asyncio.wait_for(proc.communicate(data), timeout)
                except (TimeoutError, asyncio.CancelledError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    await proc.wait()  # SIGKILL ends bash now: no pipe of ours to wait for
                    raise
                stdout, stderr = _read(out), _read(err)
        return RunResult(
            exit_status=proc.returncode if proc.returncode is not None else -1,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
        )

    async def put(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write a file atomically enough for a task bundle (written before launch)."""
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(path, mode)
        except OSError as exc:
            raise TransportError(f"cannot write {path}: {exc}", host=self.host.name) from exc

    async def put_file(self, local_path: str, path: str) -> None:
        """Copy a file."""
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(local_path, path)
        except OSError as exc:
            raise TransportError(f"cannot copy to {path}: {exc}", host=self.host.name) from exc

    async def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes | None:
        """Read bytes from an offset."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(limit)
        except FileNotFoundError:
            return None

    async def stat(self, path: str) -> int | None:
        """Return a file's size."""
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    streams = True

    async def open_stream(self, command: str) -> Stream:
        """Start ``command`` with bash, its stdin and stdout as pipes."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=_task_env(),
                start_new_session=True,
                limit=1 << 20,
            )
        except OSError as exc:
            raise TransportError(f"cannot start a stream: {exc}", host=self.host.name) from exc
        return _LocalStream(proc, self.host.name)

    async def close(self) -> None:
        """Nothing to close (but a connect under way)."""
        await self._give_up_connecting()


class _LocalStream(Stream):
    """A local bash process as a :class:`Stream`."""

    def __init__(self, proc: asyncio.subprocess.Process, host: str) -> None:
        self._proc = proc
        self._host = host

    def write(self, data: bytes) -> None:
        """Send ``data`` to stdin."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except (OSError, RuntimeError) as exc:  # a closed pipe: the reader sees the end too
            raise TransportError(f"stream lost: {exc}", host=self._host) from exc

    async def readline(self) -> bytes:
        """Return the next line of stdout (b"" at its end)."""
        assert self._proc.stdout is not None
        return await self._proc.stdout.readline()

    async def readexactly(self, n: int) -> bytes:
        """Return ``n`` bytes of stdout."""
        assert self._proc.stdout is not None
        try:
            return await self._proc.stdout.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise TransportError("stream ended mid-frame", host=self._host) from exc

    async def close(self) -> None:
        """Kill the process group (nothing of it outlives the stream) and reap it."""
        if self._proc.returncode is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        await self._proc.wait()
