"""The hub's view of its hosts: one transport each, reachability and tool versions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dobby.core.aio import stop_task, wait_event
from dobby.core.errors import NotFound, TransportError
from dobby.core.models import Host
from dobby.core.timefmt import utcnow
from dobby.hostside.scripts import VERSION_TOOLS, VERSIONS_EVERY, parse_kv, render_versions
from dobby.transport import Transport, make_transport

log = logging.getLogger("dobby.machines.hosts")
AGENT_CLIS = ("claude", "codex")  # backends that need their CLI on the host (shell needs bash)


@dataclass
class HostState:
    """Last known state of one host."""

    reachable: bool | None = None
    last_contact: str | None = None
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    is_root: bool | None = None
    checked_at: float = 0.0
    probed: bool = False  # a probe read the host's tool versions at least once
    tools: dict[str, str] | None = None  # where the last reading of the versions found each tool
    read_at: float = 0.0  # when (monotonic) the versions were last read
    # The agent CLIs the last probe found (None: no probe has answered yet). Set by the probe,
    # not made from the versions when asked: it is asked for every host at each submit and
    # each scheduling pass (40 times a task over 20 hosts).
    clis: frozenset[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "last_contact": self.last_contact,
            "error": self.error,
            "versions": self.versions,
            "is_root": self.is_root,
        }


class HostManager:
    """Own the transports of all inventory hosts and probe them.

    A host that leaves the inventory while tasks still run there is *retired*, not dropped:
    its transport stays open for those tasks' followers until the last one ends (``in_use``
    says how many remain), and it takes no new task. If it comes back unchanged, it is simply
    active again.
    """

    def __init__(
        self,
        *,
        on_change: Callable[[str, HostState], None],
        probe_interval: float = 30.0,
        tofu_known_hosts: str | None = None,
        in_use: Callable[[str], int] = lambda name: 0,
    ) -> None:
        self._hosts: dict[str, Host] = {}
        self.retired: dict[str, Host] = {}
        self._in_use = in_use
        self._transports: dict[str, Transport] = {}
        self.states: dict[str, HostState] = {}
        self._on_change = on_change
        self._probe_interval = probe_interval
        self._tofu = tofu_known_hosts
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    def set_hosts(self, hosts: dict[str, Host]) -> None:
        """Adopt a (re)loaded inventory; transports of changed hosts are closed, removed
        hosts with tasks running are retired (see the class)."""
        for name, old in list(self._hosts.items()):
            if name not in hosts and self._in_use(name):
                log.warning("host %s left the inventory with tasks running: retired", name)
                self.retired[name] = old
            elif name not in hosts or hosts[name] != old:
                self._close(name, forget=name not in hosts)
        for name, old in list(self.retired.items()):
            if name in hosts:
                del self.retired[name]
                if hosts[name] != old:
                    self._close(name, forget=False)
        self._hosts = dict(hosts)
        for name in hosts:
            self.states.setdefault(name, HostState())
        self._wake.set()

    def _close(self, name: str, *, forget: bool) -> None:
        transport = self._transports.pop(name, None)
        if transport is not None:
            asyncio.ensure_future(transport.close())
        if forget:
            self.states.pop(name, None)

    def sweep_retired(self) -> None:
        """Close the transports of retired hosts whose last task has ended."""
        for name in list(self.retired):
            if not self._in_use(name):
                log.info("retired host %s has no task left: closing its connection", name)
                del self.retired[name]
                self._close(name, forget=name not in self._hosts)

    @property
    def hosts(self) -> dict[str, Host]:
        return self._hosts

    def get(self, name: str) -> Host:
        """Return a host by name."""
        try:
            return self._hosts[name]
        except KeyError:
            raise NotFound(f"unknown host '{name}'") from None

    def transport(self, name: str) -> Transport:
        """Return (creating) the pooled transport of a host, retired ones included."""
        transport = self._transports.get(name)
        if transport is None:
            host = self.retired.get(name) or self.get(name)
            transport = make_transport(host, tofu_known_hosts=self._tofu)
            self._transports[name] = transport
        return transport

    def record(self, name: str, *, ok: bool, error: str | None = None) -> None:
        """Note the outcome of any operation on a host (keeps reachability current)."""
        state = self.states.setdefault(name, HostState())
        changed = state.reachable != ok or (not ok and state.error != error)
        state.reachable = ok
        if ok:
            state.last_contact = utcnow()
            state.error = None
        else:
            state.error = error
        if changed:
            if not ok:
                log.warning("host %s unreachable: %s", name, error)
                self._wake.set()
            self._on_change(name, state)

    async def probe(self, name: str) -> HostState:
        """Connect, look at the host's tools (reading their versions when they changed, see
        :func:`render_versions`), and update the host's state."""
        host = self.get(name)
        transport = self.transport(name)
        state = self.states.setdefault(name, HostState())
        now = state.checked_at = time.monotonic()
        known = state.tools if now - state.read_at < VERSIONS_EVERY else None
        try:
            await transport.connect()
            script = render_versions(host.env, host=name, workdir=transport.workdir, known=known)
            res = await transport.run(script, timeout=20)
        except (TransportError, TimeoutError) as exc:
            self.record(name, ok=False, error=str(exc).removeprefix(f"{name}: "))
            return state
        found = parse_kv(res.stdout)
        if found.get("versions") == "1":
            state.tools = {tool: found.get(f"{tool}_at", "") for tool in VERSION_TOOLS}
            state.read_at = now
            state.versions = {
                k: v for k, v in found.items() if v and (k in VERSION_TOOLS or k == "bash")
            }
        state.is_root = transport.is_root
        state.probed = True
        state.clis = frozenset(cli for cli in AGENT_CLIS if state.versions.get(cli))
        self.record(name, ok=True)
        self._on_change(name, state)
        return state

    def start(self, *, after: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start the background probe loop (its first round once ``after()`` is done)."""
        self._task = asyncio.ensure_future(self._loop(after))

    async def _loop(self, after: Callable[[], Awaitable[None]] | None = None) -> None:
        if after is not None:
            await after()
        while not self._closed:  # a cancellation swallowed on the way still ends it
            self._wake.clear()
            now = time.monotonic()
            due = []
            for name in list(self._hosts):
                state = self.states.get(name) or HostState()
                interval = (
                    self._probe_interval if state.reachable else min(5.0, self._probe_interval)
                )
                if now - state.checked_at >= interval:
                    due.append(name)
            if due:
                await asyncio.gather(*(self.probe(n) for n in due), return_exceptions=True)
            self.sweep_retired()
            await wait_event(self._wake, 1.0)

    async def close(self) -> None:
        """Stop probing and close every transport."""
        self._closed = True
        await stop_task(self._task, timeout=0.5, what="the host probes")
        await asyncio.gather(
            *(t.close() for t in self._transports.values()), return_exceptions=True
        )
        self._transports.clear()
