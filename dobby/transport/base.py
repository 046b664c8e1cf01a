"""The Transport interface: the only seam between the hub and a host."""

from __future__ import annotations

import abc
import asyncio
import posixpath
from dataclasses import dataclass

from dobby.core.aio import retrieved
from dobby.core.errors import HostUnreachable, TransportError
from dobby.core.models import Host

GIVE_UP_WAIT = 0.5  # a close waits this long for a connect it cancelled (a stop is bounded)

# Environment variables of the hub that must never reach a task's process.
HUB_SECRETS = ("DOBBY_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")


@dataclass
class RunResult:
    """Outcome of one command on a host."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Stream(abc.ABC):
    """A long-lived command on a host: lines in on its stdin, bytes out of its stdout."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin (buffered: never blocks)."""

    @abc.abstractmethod
    async def readline(self) -> bytes:
        """Return the next line of stdout, with its newline; b"" at its end."""

    @abc.abstractmethod
    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes of stdout; raise TransportError if it ends before."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the command and wait until it is gone."""


class Transport(abc.ABC):
    """Run commands and move bytes on one host; implementations: local, ssh."""

    def __init__(self, *, host: Host) -> None:
        self.host = host
        self.home: str | None = None
        self.uid: int | None = None
        self._connecting: asyncio.Future[None] | None = None

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def connected(self) -> bool:
        return self.home is not None

    async def connect(self) -> None:
        """Open the connection (idempotent) and learn the remote home and uid.

        Callers that arrive while a connect is under way share it and all go on as it ends.
        Behind a lock they went on one per turn of the event loop: after a restart, the 25
        tasks of a host were followed again over 25 turns, seconds on a loaded hub.
        """
        if self.connected:
            return
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connected)
        try:
            await asyncio.shield(connecting)  # a caller that gives up leaves it to the others
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and task is not None and not task.cancelling():
                raise HostUnreachable("closed while connecting", host=self.host.name) from None
            raise

    def _connected(self, connecting: asyncio.Future[None]) -> None:
        if self._connecting is connecting:
            self._connecting = None
        retrieved(connecting)  # each caller has it raised; none left is no warning

    async def _give_up_connecting(self) -> None:
        """Cancel a connect under way (a close) and let it end: its callers get
        HostUnreachable. Its own task would otherwise be left to a loop that may close first,
        with its command (the local identity probe) still running."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            await asyncio.wait({connecting}, timeout=GIVE_UP_WAIT)

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the connection and learn home and uid (one at a time: see connect)."""

    @abc.abstractmethod
    async def run(
        self, command: str, *, input: str | None = None, timeout: float | None = None
    ) -> RunResult:
        """Run ``command`` with bash on the host; raise TransportError if the host is lost."""

    @abc.abstractmethod
    async def put(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` (absolute), creating parent directories."""

    @abc.abstractmethod
    async def put_file(self, local_path: str, path: str) -> None:
        """Copy a local file to ``path`` on the host."""

    @abc.abstractmethod
    async def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes | None:
        """Return up to ``limit`` bytes of ``path`` from ``offset``; None if it does not exist."""

    @abc.abstractmethod
    async def stat(self, path: str) -> int | None:
        """Return the size of ``path``, or None if it does not exist."""

    streams = False  # True where open_stream works; elsewhere callers poll with read_from

    async def open_stream(self, command: str) -> Stream:
        """Start ``command`` as a long-lived :class:`Stream`; raise TransportError if it cannot."""
        raise TransportError(f"{type(self).__name__} has no streams", host=self.host.name)

    def release(self, path: str) -> None:  # noqa: B027 - optional hook
        """Forget any cached handle on ``path`` (the follower is done with it)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection."""

    def expand(self, path: str) -> str:
        """Return ``path`` with a leading ``~`` replaced by the host's home."""
        if self.home is None:
            raise RuntimeError("transport is not connected")
        if path == "~":
            return self.home
        if path.startswith("~/"):
            return posixpath.join(self.home, path[2:])
        return path

    @property
    def workdir(self) -> str:
        return self.expand(self.host.workdir).rstrip("/")

    @property
    def account(self) -> str:
        """Return who runs commands where (uid@address:port and workdir), once connected.

        Several inventory names may reach one account: what they share there (the project
        mirrors under the workdir) must be changed by one of them at a time.
        """
        host = self.host
        who = str(self.uid) if self.uid is not None else (host.user or "")
        where = "localhost" if host.connection == "local" else f"{host.address}:{host.port}"
        return f"{who}@{where}:{self.workdir}"

    @staticmethod
    def _parse_ident(text: str) -> tuple[str, int]:
        lines = text.strip().splitlines()
        if len(lines) < 2:
            raise ValueError(f"unexpected answer to the identity probe: {text!r}")
        return lines[0], int(lines[1])


# bash and zsh know their effective uid ($EUID): no `id` process to fork on every connect
# (half the probe's cost on the host); a shell that does not runs `id -u`.
IDENT_COMMAND = 'printf "%s\\n%s\\n" "$HOME" "${EUID:-$(id -u)}"'
