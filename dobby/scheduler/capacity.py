"""Pure capacity accounting and host choice for one planning pass.

Three caps hold at once: the hub's ``max_concurrent_agents``, each project's
``max_concurrent`` (default 1), each host's ``max_agents``. ``Capacity`` counts what runs now
and what the pass has started so far; ``HostIndex`` answers "which host, if any" per task.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dobby.core.errors import NoEligibleHost, NotFound, ValidationError
from dobby.core.models import Host, Task
from dobby.scheduler.queue import Signature, signature

DEFAULT_PROJECT_LIMIT = 1


@dataclass(frozen=True)
class HostSlot:
    """What the planner needs to know about one host."""

    host: Host
    running: int = 0
    reachable: bool | None = None  # None = not probed yet
    gpus_free: tuple[int, ...] = ()  # GPU indices free now (dobby.machines.gpu.gpus_free)
    clis: frozenset[str] | None = None  # agent CLIs the host probe found; None = no answer yet


AGENT_BACKENDS = ("claude", "codex")


def has_backend(slot: HostSlot, backend: str) -> bool | None:
    """Tell whether the host has ``backend``'s CLI as its probe found it (None: not known yet).

    A host whose probes never answered is known to be unreachable: it stays a candidate, so
    a launch there fails with the connection's own error rather than waiting for ever.
    """
    if backend not in AGENT_BACKENDS:
        return True
    if slot.clis is None:
        return True if slot.reachable is False else None
    return backend in slot.clis


def missing_cli_message(backend: str, names: Sequence[str]) -> str:
    """Return why no host can run a ``backend`` task: its CLI was found on none of them."""
    return (
        f"no host has {backend} installed: `{backend} --version` printed nothing on "
        f"{', '.join(names)} (see `dobby hosts`; install it or set env.PATH in the inventory)"
    )


def eligible(task: Task, host: Host) -> bool:
    """Return True if ``host`` could ever run ``task`` (ignoring load and reachability)."""
    if task.want_host and task.want_host != host.name:
        return False
    if task.resume_host and task.resume_host != host.name:
        return False  # its agent session and worktree live there (a half after a usage limit)
    if task.backend not in host.backends:
        return False
    if task.gpus and host.gpus not in (True, "auto"):
        return False
    return all(label in host.labels for label in task.host_selector)


def check_placeable(
    task: Task, hosts: Collection[Host], slots: Iterable[HostSlot] | None = None
) -> None:
    """Raise a clear error at submit if no inventory host can ever run ``task``.

    With ``slots``, a host whose probe found no CLI for the task's backend counts as unable.
    Each answer stops at the first host that settles it (``slots`` may be made as it is
    read): a task most hosts can run costs a look at one or two, however many there are.
    """
    if task.want_host and not any(h.name == task.want_host for h in hosts):
        names = ", ".join(h.name for h in hosts) or "none"
        raise NotFound(f"unknown host '{task.want_host}' (hosts: {names})")
    if not any(eligible(task, h) for h in hosts):
        want = []
        if task.want_host:
            want.append(f"host {task.want_host}")
        if task.host_selector:
            want.append("labels " + ",".join(task.host_selector))
        want.append(f"backend {task.backend}")
        if task.gpus:
            want.append(f"{task.gpus} GPU(s) (inventory gpus: true|auto)")
        raise NoEligibleHost(f"no host matches {' + '.join(want)}")
    if slots is None:
        return
    without = []  # the eligible hosts known to lack the backend's CLI, so far
    for slot in slots:
        if eligible(task, slot.host):
            if has_backend(slot, task.backend) is not False:
                return
            without.append(slot.host.name)
    if without:
        raise NoEligibleHost(missing_cli_message(task.backend, without))


@dataclass
class Capacity:
    """Running counts against every cap; ``take`` records a start decided by the pass."""

    max_total: int
    running_total: int = 0
    project_running: dict[str, int] = field(default_factory=dict)
    project_limits: Mapping[str, int] = field(default_factory=dict)
    host_load: dict[str, int] = field(default_factory=dict)

    @property
    def room(self) -> int:
        """Return how many more tasks may start hub-wide."""
        return self.max_total - self.running_total

    def project_limit(self, project: str | None) -> int | None:
        """Return the project's cap (None: a task without project has no project cap)."""
        if project is None:
            return None
        return self.project_limits.get(project, DEFAULT_PROJECT_LIMIT)

    def project_full(self, project: str | None) -> bool:
        """Return True if the project runs as many tasks as its policy allows."""
        limit = self.project_limit(project)
        return limit is not None and self.project_running.get(project or "", 0) >= limit

    def take(self, task: Task, host: str) -> None:
        """Count ``task`` as started on ``host``."""
        self.running_total += 1
        self.host_load[host] = self.host_load.get(host, 0) + 1
        if task.project is not None:
            self.project_running[task.project] = self.project_running.get(task.project, 0) + 1


# Why a task found no host this pass: no host may ever run it, or none has room / is reachable,
# or every one that could run it uses an account at its usage limit.
NEVER, WAIT_HOST, WAIT_CAPACITY, WAIT_USAGE = "never", "host", "capacity", "usage_limit"


class HostIndex:
    """Eligible hosts per placement signature, computed once per pass, plus a full-host cache.

    Host load only grows during a pass, so a signature whose hosts are all full stays full:
    a queue of thousands of tasks that want the same busy hosts costs one scan, not thousands.
    """

    def __init__(
        self, hosts: Sequence[HostSlot], limited: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self.hosts = list(hosts)
        self.limited = limited or {}  # backend -> hosts whose account for it is limited now
        self._held: set[Signature] = set()  # signatures only limited accounts could run
        self._candidates: dict[Signature, list[HostSlot]] = {}
        self._full: set[Signature] = set()
        self._heaps: dict[Signature, list[tuple[int, str, int]]] = {}
        self._ready: dict[Signature, list[HostSlot]] = {}
        self.gpu_room = {s.host.name: list(s.gpus_free) for s in self.hosts}

    @staticmethod
    def signature(task: Task) -> Signature:
        """Return what placement depends on for ``task``."""
        return signature(task)

    def candidates(self, task: Task, sig: Signature | None = None) -> list[HostSlot]:
        """Return the hosts that could run ``task``, best first among equals by name."""
        sig = signature(task) if sig is None else sig
        found = self._candidates.get(sig)
        if found is None:
            found = [
                s
                for s in self.hosts
                if eligible(task, s.host) and has_backend(s, task.backend) is not False
            ]
            # An automatic retry goes to another host when there is one.
            others = [s for s in found if s.host.name not in task.avoid_hosts]
            found = others or found
            if task.wait_for_host:
                found = [s for s in found if s.reachable is not False]
            else:
                # Unreachable hosts are used only when no other candidate is left: the launch
                # is then a fresh connection attempt whose error (not a stale one) fails it.
                found = [s for s in found if s.reachable is not False] or found
            held = self.limited.get(task.backend, ())
            if held:
                free = [s for s in found if s.host.name not in held]
                if found and not free:
                    self._held.add(sig)
                found = free
            self._candidates[sig] = found
        return found

    def pick(
        self, task: Task, load: Mapping[str, int], sig: Signature | None = None
    ) -> tuple[HostSlot | None, str]:
        """Return the least-loaded host with room for ``task``, or None and why not.

        Every reason but NEVER holds for all the tasks of ``task``'s signature until the
        pass ends (loads only grow during a pass).
        """
        sig = signature(task) if sig is None else sig
        if sig in self._full:
            return None, WAIT_CAPACITY
        found = self.candidates(task, sig)
        if not found:
            if sig in self._held:
                return None, WAIT_USAGE
            return None, WAIT_HOST if task.wait_for_host else NEVER
        ready = self._ready.get(sig)
        if ready is None:  # hosts whose CLIs are not known yet: wait for their first probe
            ready = self._ready[sig] = [s for s in found if has_backend(s, task.backend)]
        if not ready:
            return None, WAIT_HOST
        found = ready
        # A heap of (load, name) per signature, fixed lazily: loads only grow during a pass, so
        # an entry whose load is out of date is pushed back with the new one, and a host with
        # no room (or too few free GPUs) for this signature leaves its heap for good.
        heap = self._heaps.get(sig)
        if heap is None:
            heap = [(load.get(s.host.name, s.running), s.host.name, i) for i, s in enumerate(found)]
            heapq.heapify(heap)
            self._heaps[sig] = heap
        while heap:
            used, name, i = heap[0]
            slot = found[i]
            now = load.get(name, slot.running)
            if now != used:
                heapq.heapreplace(heap, (now, name, i))
            elif used >= slot.host.max_agents:
                heapq.heappop(heap)
            elif (
                task.gpus
                and slot.host.connection != "slurm"  # Slurm queues the job until GPUs free up
                and len(self.gpu_room.get(name, ())) < task.gpus
            ):
                heapq.heappop(heap)  # not enough free GPUs there now (dobby.machines.gpu)
            else:
                return slot, ""
        self._full.add(sig)
        return None, WAIT_CAPACITY


def never_reason(task: Task, slots: Sequence[HostSlot], default: str) -> str:
    """Return why ``task`` can never start: its CLI is on none of its hosts, or ``default``."""
    fit = [s for s in slots if eligible(task, s.host)]
    if fit and all(has_backend(s, task.backend) is False for s in fit):
        return missing_cli_message(task.backend, [s.host.name for s in fit])
    return default


def choose_session_host(task: Task, slots: Sequence[HostSlot], wanted: str | None) -> str:
    """Return the host of an interactive session: ``wanted``, else the least busy one.

    A session is not queued: it starts now on a host that runs its backend and is not known to
    be unreachable, the one running the fewest tasks (ties by name).
    """
    if wanted:
        slot = next((s for s in slots if s.host.name == wanted), None)
        if slot is None:
            raise NotFound(f"unknown host '{wanted}'")
        if task.backend not in slot.host.backends:
            raise ValidationError(f"host {wanted} does not run {task.backend}")
        if has_backend(slot, task.backend) is False:
            raise ValidationError(missing_cli_message(task.backend, [wanted]))
        if slot.host.connection == "slurm":  # its login node is no place for long processes
            raise ValidationError(
                f"host {wanted} is a Slurm cluster: run a task there and `dobby attach` to it"
            )
        return wanted
    found = [
        s
        for s in slots
        if eligible(task, s.host)
        and s.reachable is not False
        and s.host.connection != "slurm"
        and has_backend(s, task.backend) is not False
    ]
    if not found:
        raise ValidationError(f"no reachable host runs {task.backend}; name one with --host")
    return min(found, key=lambda s: (s.running, s.host.name)).host.name
