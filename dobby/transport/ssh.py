"""The ``ssh`` transport: one pooled asyncssh connection per host.

Why one connection: sshd caps channels per connection (MaxSessions, default 10) and a fresh
connect costs ~14 ms vs ~3 ms for a command on a warm one. Exec channels are bounded by a
semaphore below that cap; SFTP uses one long-lived channel for all file traffic, and keeps the
files the follower reads open so each poll is one round trip.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dobby.core.aio import retrieved
from dobby.core.errors import ConnectionLost, HostUnreachable, TransportError
from dobby.core.models import Host
from dobby.core.retry import Backoff, Retry
from dobby.transport.base import IDENT_COMMAND, RunResult, Stream, Transport
from dobby.transport.sshlib import asyncssh

_LOST = (asyncssh.Error, OSError, EOFError)
CLOSE_WAIT = 0.5  # for the server's side of a close, before the connection is dropped

# AES-GCM first: asyncssh builds a new cipher object per packet for chacha20-poly1305, which
# made crypto the hub's top CPU cost when following many tasks; GCM reuses one context.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


def _default_known_hosts() -> str:
    return os.path.expanduser("~/.ssh/known_hosts")


def host_key_known(known_hosts: str, address: str, port: int) -> bool:
    """Return True if ``known_hosts`` has any key for ``address:port``."""
    if not os.path.exists(known_hosts):
        return False
    entries = asyncssh.read_known_hosts(known_hosts)
    trusted, trusted_ca, *_ = entries.match(address, address, port)
    return bool(trusted or trusted_ca)


async def pin_host_key(known_hosts: str, address: str, port: int) -> str:
    """Fetch the server's host key and append it to ``known_hosts``; return the line."""
    key = await asyncssh.get_server_host_key(address, port)
    if key is None:
        raise HostUnreachable("server sent no host key", host=address)
    name = address if port == 22 else f"[{address}]:{port}"
    line = f"{name} {key.export_public_key().decode().strip()}\n"
    Path(known_hosts).parent.mkdir(parents=True, exist_ok=True)
    with open(known_hosts, "a", encoding="utf-8") as fh:
        fh.write(line)
    return line


class SshTransport(Transport):
    """Run commands and move files over one asyncssh connection."""

    def __init__(
        self,
        *,
        host: Host,
        max_channels: int = 6,
        connect_timeout: float = 10.0,
        keepalive: float = 10.0,
        backoff_cap: float = 5.0,
        tofu_known_hosts: str | None = None,
    ) -> None:
        super().__init__(host=host)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_lock = asyncio.Lock()  # concurrent first users share one SFTP channel
        self._channels = asyncio.Semaphore(max_channels)
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        # After a failed connect, calls fail fast until the wait is over: 0.5 s, 1 s… up to the cap.
        self._reconnect = Retry(Backoff(first=0.5, factor=2.0, cap=backoff_cap, jitter=0.1))
        self._retry_at = 0.0
        self._last_error = ""
        self._readers: OrderedDict[str, Any] = OrderedDict()
        self._dirs: dict[str, asyncio.Future[None]] = {}
        self._tofu_known_hosts = tofu_known_hosts
        self._shaken = asyncio.Event()  # the connection's handshake is done (see _early_conn)

    @property
    def connected(self) -> bool:
        # Not before the identity probe is done: callers need home (workdir) at once.
        return self._conn is not None and not self._conn.is_closed() and self.home is not None

    def _known_hosts(self) -> str:
        return os.path.expanduser(self.host.known_hosts or _default_known_hosts())

    async def _connect(self) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            raise HostUnreachable(
                f"{self._last_error} (retrying in {self._retry_at - now:.1f}s)",
                host=self.host.name,
            )
        try:
            await self._open()
        except HostUnreachable as exc:
            self._last_error = exc.message.removeprefix(f"{self.host.name}: ")
            self._retry_at = time.monotonic() + (self._reconnect.next_delay() or 0.0)
            raise
        self._reconnect.reset()
        self._retry_at = 0.0

    async def _open(self) -> None:
        host = self.host
        address = host.address or host.name
        known = self._known_hosts()
        if host.trust_on_first_use:
            known = self._tofu_known_hosts or known
            if not host_key_known(known, address, host.port):
                try:
                    await asyncio.wait_for(
                        pin_host_key(known, address, host.port), self._connect_timeout
                    )
                except (OSError, TimeoutError, asyncssh.Error) as exc:
                    raise HostUnreachable(_describe(exc), host=host.name) from exc
        options: dict[str, Any] = {
            "port": host.port,
            "known_hosts": known,
            "keepalive_interval": self._keepalive,
            "keepalive_count_max": 3,
            "connect_timeout": self._connect_timeout,
            "encryption_algs": list(CIPHERS),
        }
        if host.user:
            options["username"] = host.user
        if host.identity_file:
            options["client_keys"] = [os.path.expanduser(host.identity_file)]
            options["agent_path"] = None
        try:
            conn = await asyncssh.connect(address, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostUnreachable(
                f"host key not verified against {known} ({exc.reason}); add it with "
                f"`ssh-keyscan -p {host.port} {address} >> {known}` or set trust_on_first_use",
                host=host.name,
            ) from exc
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            raise HostUnreachable(_describe(exc), host=host.name) from exc
        self._conn = conn
        self._shaken.set()
        self.home = None
        self._sftp = None
        self._readers.clear()
        self._dirs.clear()
        try:
            res = await self._exec(IDENT_COMMAND, None, self._connect_timeout)
            self.home, self.uid = self._parse_ident(res.stdout)
        except (TransportError, ValueError) as exc:
            self._drop()
            raise HostUnreachable(f"identity probe failed: {exc}", host=host.name) from exc

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.abort()
        self._conn = None
        self._shaken.clear()
        self._sftp = None
        self._readers.clear()
        self._dirs.clear()

    def _lost(self, exc: BaseException) -> ConnectionLost:
        self._drop()
        return ConnectionLost(f"connection lost: {_describe(exc)}", host=self.host.name)

    async def _exec(self, command: str, input: str | None, timeout: float | None) -> RunResult:
        assert self._conn is not None
        async with self._channels:
            try:
                # Empty input is no input: asyncssh sends neither data nor EOF for "", so a
                # command reading its stdin would wait for ever.
                res = await self._conn.run(
                    command,
                    input=input or None,
                    check=False,
                    timeout=timeout,
                    stdin=asyncssh.PIPE if input else asyncssh.DEVNULL,
                )
            except asyncssh.TimeoutError:
                raise
            except asyncssh.ProcessError as exc:  # pragma: no cover - check=False
                raise TransportError(str(exc), host=self.host.name) from exc
            except _LOST as exc:
                raise self._lost(exc) from exc
        if res.exit_status is None and res.exit_signal is None:
            # asyncssh returns normally with no status when the connection is cut.
            raise self._lost(ConnectionError("no exit status"))
        status = res.exit_status if res.exit_status is not None else -1
        return RunResult(exit_status=status, stdout=_text(res.stdout), stderr=_text(res.stderr))

    async def run(
        self, command: str, *, input: str | None = None, timeout: float | None = None
    ) -> RunResult:
        """Run ``command`` on the host (through the login user's shell)."""
        await self.connect()
        return await self._exec(command, input, timeout)

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        await self.connect()
        if self._sftp is None:
            async with self._sftp_lock:
                # Without the lock, a burst of launches on a fresh connection each opened an
                # SFTP channel and together passed sshd's MaxSessions.
                if self._sftp is None:
                    assert self._conn is not None
                    try:
                        self._sftp = await self._conn.start_sftp_client()
                    except _LOST as exc:
                        raise self._lost(exc) from exc
        return self._sftp

    async def _ensure_dir(self, sftp: asyncssh.SFTPClient, directory: str) -> None:
        """Create ``directory`` once per connection; concurrent callers share one attempt."""
        pending = self._dirs.get(directory)
        if pending is None:
            pending = asyncio.ensure_future(self._mkdir(sftp, directory))
            self._dirs[directory] = pending
        try:
            await asyncio.shield(pending)
        except BaseException:
            self._dirs.pop(directory, None)
            raise

    @staticmethod
    async def _mkdir(sftp: asyncssh.SFTPClient, directory: str) -> None:
        try:
            await sftp.mkdir(directory)  # one round trip when the parent exists (the usual case)
        except asyncssh.SFTPNoSuchFile:
            await sftp.makedirs(directory, exist_ok=True)
        except asyncssh.SFTPError:
            if not await sftp.isdir(directory):
                raise

    async def put(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write a file over SFTP with the given mode (set at creation: no window)."""
        sftp = await self._sftp_client()
        try:
            directory = os.path.dirname(path)
            await self._ensure_dir(sftp, directory)
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            try:
                fh = await sftp.open(path, "wb", attrs=attrs)
            except asyncssh.SFTPNoSuchFile:  # removed behind our back (cleanup): create again
                self._dirs.pop(directory, None)
                await self._ensure_dir(sftp, directory)
                fh = await sftp.open(path, "wb", attrs=attrs)
            async with fh:
                await fh.write(data)
        except asyncssh.SFTPError as exc:
            raise TransportError(f"cannot write {path}: {exc.reason}", host=self.host.name) from exc
        except _LOST as exc:
            raise self._lost(exc) from exc

    async def put_file(self, local_path: str, path: str) -> None:
        """Upload a local file over SFTP."""
        sftp = await self._sftp_client()
        try:
            await sftp.makedirs(os.path.dirname(path), exist_ok=True)
            await sftp.put(local_path, path)
        except asyncssh.SFTPError as exc:
            raise TransportError(
                f"cannot upload {path}: {exc.reason}", host=self.host.name
            ) from exc
        except _LOST as exc:
            raise self._lost(exc) from exc

    async def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes | None:
        """Read from a file kept open across calls (one round trip per poll)."""
        sftp = await self._sftp_client()
        try:
            fh = self._readers.get(path)
            if fh is None:
                fh = await sftp.open(path, "rb")
                self._readers[path] = fh
                while len(self._readers) > 256:
                    _, old = self._readers.popitem(last=False)
                    asyncio.ensure_future(_quiet_close(old))
            data: bytes = await fh.read(limit, offset)
            return data
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            raise TransportError(f"cannot read {path}: {exc.reason}", host=self.host.name) from exc
        except _LOST as exc:
            raise self._lost(exc) from exc

    def release(self, path: str) -> None:
        """Close the cached handle of ``path``."""
        fh = self._readers.pop(path, None)
        if fh is not None:
            asyncio.ensure_future(_quiet_close(fh))

    async def stat(self, path: str) -> int | None:
        """Return a file's size over SFTP."""
        sftp = await self._sftp_client()
        try:
            attrs = await sftp.stat(path)
            return attrs.size
        except asyncssh.SFTPNoSuchFile:
            return None
        except asyncssh.SFTPError as exc:
            raise TransportError(f"cannot stat {path}: {exc.reason}", host=self.host.name) from exc
        except _LOST as exc:
            raise self._lost(exc) from exc

    streams = True

    async def open_stream(self, command: str) -> Stream:
        """Start ``command`` on its own channel, kept open until the stream is closed."""
        conn = await self._early_conn()
        try:
            process = await conn.create_process(command, encoding=None, stderr=asyncssh.DEVNULL)
        except _LOST as exc:
            raise self._lost(exc) from exc
        return _SshStream(process, self.host.name)

    async def _early_conn(self) -> Any:
        """Return the connection as soon as its handshake is done, for a channel that needs
        neither the home nor the uid: it opens beside the identity probe, not after it.

        A restarted hub's log streams start a round trip sooner on each host so. Should the
        probe fail, the connection is dropped, and the channel with it.
        """
        if not self.connected:
            if self._conn is None or self._conn.is_closed():
                self._shaken.clear()  # a connection lost: wait for the next one's handshake
            connecting = asyncio.ensure_future(self.connect())  # starts one, or joins it
            shaken = asyncio.ensure_future(self._shaken.wait())
            try:
                await asyncio.wait({connecting, shaken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                shaken.cancel()
                if not connecting.done():
                    connecting.add_done_callback(retrieved)
                    connecting.cancel()  # this caller's share of it only (connect shields it)
            if connecting.done() and not connecting.cancelled():
                connecting.result()  # the connect failed: HostUnreachable
        conn = self._conn
        if conn is None or conn.is_closed():
            raise HostUnreachable("connection lost while connecting", host=self.host.name)
        return conn

    async def close(self) -> None:
        """Close the connection (and give up a connect under way)."""
        await self._give_up_connecting()
        self._shaken.clear()
        conn, self._conn = self._conn, None
        self._sftp = None
        self._readers.clear()
        if conn is not None:
            conn.close()
            # A host that answers nothing (stopped, half dead) must not hold a hub's stop: the
            # connection is dropped without its goodbye after a short wait.
            closing = asyncio.ensure_future(conn.wait_closed())
            await asyncio.wait({closing}, timeout=CLOSE_WAIT)
            if not closing.done():
                closing.cancel()
                conn.abort()
            else:
                retrieved(closing)


class _SshStream(Stream):
    """A command's channel: its stdin and stdout as a :class:`Stream`."""

    def __init__(self, process: Any, host: str) -> None:
        self._process = process
        self._host = host

    def write(self, data: bytes) -> None:
        """Send ``data`` to stdin."""
        try:
            self._process.stdin.write(data)
        except _LOST as exc:
            raise ConnectionLost(f"stream lost: {_describe(exc)}", host=self._host) from exc

    async def readline(self) -> bytes:
        """Return the next line of stdout (b"" at its end)."""
        try:
            line: bytes = await self._process.stdout.readline()
        except _LOST as exc:
            raise ConnectionLost(f"stream lost: {_describe(exc)}", host=self._host) from exc
        return line

    async def readexactly(self, n: int) -> bytes:
        """Return ``n`` bytes of stdout."""
        try:
            data: bytes = await self._process.stdout.readexactly(n)
        except (asyncio.IncompleteReadError, *_LOST) as exc:
            raise ConnectionLost(f"stream lost: {_describe(exc)}", host=self._host) from exc
        return data

    async def close(self) -> None:
        """Close the channel (the command sees its stdin end and exits)."""
        self._process.close()
        try:
            await asyncio.wait_for(self._process.wait_closed(), 2)
        except (TimeoutError, *_LOST):
            pass


async def _quiet_close(fh: Any) -> None:
    try:
        await fh.close()
    except _LOST:
        pass


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "permission denied (key refused)"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    text = str(exc) or type(exc).__name__
    return text
