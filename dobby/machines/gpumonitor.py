"""Poll the GPUs of every ``gpus: true|auto`` host; keep the latest state and a short history.

Remote hosts answer one probe command (:func:`dobby.machines.gpu.render_gpu_probe`) over
their pooled transport. The hub's own machine is read with NVML (``nvidia-ml-py``) when a
driver is loaded, else through the same nvidia-smi probe, whose exit status then says why there
is no GPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from dobby.core.errors import NotFound, TransportError
from dobby.core.events import EventBus
from dobby.core.models import Task
from dobby.core.ports import Kick, SaveTask
from dobby.core.timefmt import utcnow
from dobby.hostside.slurm import render_capacity
from dobby.machines.gpu import (
    NO_GPU_EXITS,
    Gpu,
    GpuProcess,
    GpuThresholds,
    HostGpus,
    gpus_free,
    match_tasks,
    parse_gpu_probe,
    render_gpu_probe,
    reservations,
    task_memory,
)
from dobby.machines.hosts import HostManager
from dobby.machines.slurm.capacity import host_gpus, parse_sinfo

log = logging.getLogger("dobby.machines.gpu")

HISTORY = 240  # samples kept per host (two hours at the default 30 s interval)
AUTO_BACKOFF = 10  # an `auto` host that has no GPU is asked again only every 10 intervals


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no library, no driver)."""


def read_nvml() -> tuple[list[Gpu], list[GpuProcess]]:
    """Read GPUs and compute processes of this machine through NVML."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise NvmlUnavailable("nvidia-ml-py is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(str(exc)) from exc
    try:
        gpus: list[Gpu] = []
        procs: list[GpuProcess] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            mem = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
            power = _try(pynvml.nvmlDeviceGetPowerUsage, handle)
            util = _try(pynvml.nvmlDeviceGetUtilizationRates, handle)
            temp = _try(pynvml.nvmlDeviceGetTemperature, handle, 0)  # 0: the GPU die
            gpus.append(
                Gpu(
                    index=index,
                    uuid=uuid,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    utilization=float(util.gpu) if util is not None else None,
                    memory_used=int(mem.used) >> 20 if mem is not None else None,
                    memory_total=int(mem.total) >> 20 if mem is not None else None,
                    temperature=float(temp) if temp is not None else None,
                    power_draw=power / 1000.0 if power is not None else None,
                )
            )
            running = _try(pynvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
            for p in running:
                used = getattr(p, "usedGpuMemory", None)
                procs.append(GpuProcess(int(p.pid), uuid, int(used) >> 20 if used else None))
        return gpus, procs
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _try(call: Callable[..., Any], *args: Any) -> Any:
    import pynvml

    try:
        return call(*args)
    except pynvml.NVMLError:  # [N/A] / not supported on this board
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _local_sessions(
    pids: list[int], pid_files: dict[str, str]
) -> tuple[dict[int, int], dict[int, str]]:
    sids: dict[int, int] = {}
    for pid in pids:
        try:
            sids[pid] = os.getsid(pid)
        except OSError:
            pass
    task_sids: dict[int, str] = {}
    for task_id, path in pid_files.items():
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read(32).strip()
        except OSError:
            continue
        if text.isdigit():
            task_sids[int(text)] = task_id
    return sids, task_sids


class GpuMonitor:
    """Own the GPU state of the hub's hosts; ``on_update`` runs after every poll of a host."""

    def __init__(
        self,
        *,
        hosts: HostManager,
        interval: float,
        running_on: Callable[[str], list[str]],
        on_update: Callable[[str, HostGpus], None],
        thresholds: GpuThresholds | None = None,
    ) -> None:
        self.hosts = hosts
        self.interval = interval
        self.thresholds = thresholds or GpuThresholds()
        self._running_on = running_on
        self._on_update = on_update
        self.latest: dict[str, HostGpus] = {}
        self.checked_at: dict[str, str] = {}
        self.history: dict[str, deque[dict[str, Any]]] = {}
        self.polls = 0  # total polls done: lets clients wait for "a fresh answer"
        self._due: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._nvml_ok = True

    def gpu_hosts(self) -> list[str]:
        """Return the hosts whose inventory entry says ``gpus: true`` or ``auto``."""
        return sorted(n for n, h in self.hosts.hosts.items() if h.gpus in (True, "auto"))

    def free_gpus(self, busy: Iterable[Task]) -> dict[str, tuple[int, ...]]:
        """Return the free GPU indices per host, given the tasks that hold reservations."""
        reserved = reservations(busy)
        return {
            name: tuple(gpus_free(state, reserved.get(name, ()), self.thresholds))
            for name, state in self.latest.items()
        }

    def start(self) -> None:
        """Start polling in the background."""
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            names = self.gpu_hosts()
            for gone in set(self.latest) - set(names):
                self.latest.pop(gone, None)
                self.history.pop(gone, None)
            due = [n for n in names if self._due.get(n, 0.0) <= now]
            if due:
                await asyncio.gather(*(self.poll(n) for n in due), return_exceptions=True)
            await asyncio.sleep(min(1.0, self.interval))

    async def poll(self, name: str) -> HostGpus:
        """Read one host's GPUs now and record the answer."""
        try:
            host = self.hosts.get(name)
        except NotFound:
            return HostGpus(reason="not in the inventory")
        try:
            result = await self._read(name)
        except (TransportError, TimeoutError, OSError) as exc:
            result = HostGpus(reason=f"cannot poll: {str(exc) or type(exc).__name__}")
        self.polls += 1
        # An `auto` host that has no GPU at all is asked rarely; one we could not reach is not.
        no_gpu = result.reason in NO_GPU_EXITS.values()
        backoff = AUTO_BACKOFF if host.gpus == "auto" and no_gpu else 1
        self._due[name] = time.monotonic() + self.interval * backoff
        before = self.latest.get(name)
        if result.reason and (before is None or before.reason != result.reason):
            level = logging.INFO if host.gpus == "auto" else logging.WARNING
            log.log(level, "host %s reports no GPU: %s", name, result.reason)
        self.latest[name] = result
        self.checked_at[name] = utcnow()
        self._remember(name, result)
        self._on_update(name, result)
        return result

    async def _read(self, name: str) -> HostGpus:
        host = self.hosts.get(name)
        transport = self.hosts.transport(name)
        await transport.connect()
        if host.connection == "slurm":  # the cluster's partition, as Slurm accounts it
            partition = host.slurm.partition if host.slurm else None
            res = await transport.run(render_capacity(partition), timeout=40)
            if not res.ok:
                tail = (res.stderr or res.stdout).strip()[-200:]
                return HostGpus(reason=f"sinfo failed (exit {res.exit_status}): {tail}")
            return host_gpus(parse_sinfo(res.stdout), partition)
        running = self._running_on(name)
        if host.connection == "local" and self._nvml_ok:
            try:
                gpus, procs = await asyncio.get_running_loop().run_in_executor(None, read_nvml)
            except NvmlUnavailable as exc:
                log.info("NVML unavailable on the hub's machine (%s): using nvidia-smi", exc)
                self._nvml_ok = False  # no driver now means none later: stop trying
            else:
                files = {t: f"{transport.workdir}/tasks/{t}/pid" for t in running}
                sids, task_sids = _local_sessions([p.pid for p in procs], files)
                return HostGpus(
                    gpus=gpus, processes=match_tasks(procs, sids, task_sids), source="nvml"
                )
        command = render_gpu_probe(env=host.env, workdir=transport.workdir, task_ids=running)
        res = await transport.run(command, timeout=30)
        return parse_gpu_probe(res.stdout)

    def _remember(self, name: str, result: HostGpus) -> None:
        ring = self.history.setdefault(name, deque(maxlen=HISTORY))
        if result.gpus:
            ring.append(
                {
                    "t": utcnow(),
                    "gpus": [
                        {
                            "index": g.index,
                            "utilization": g.utilization,
                            "memory_used": g.memory_used,
                            "memory_total": g.memory_total,
                        }
                        for g in result.gpus
                    ],
                }
            )


def make_gpu_monitor(
    *,
    hosts: HostManager,
    interval: float,
    running: Callable[[], list[Task]],
    save: SaveTask,
    bus: EventBus,
    kick: Kick,
) -> GpuMonitor:
    """Return the hub's GPU monitor, wired to its running tasks and scheduler."""

    last: dict[str, dict[str, Any]] = {}

    def running_on(host: str) -> list[str]:
        return [t.id for t in running() if t.host == host]

    def updated(host: str, result: HostGpus) -> None:
        # Per-task GPU memory, matched by session: shown in the task JSON and `dobby status`.
        used = task_memory(result)
        for task in running():
            if task.host != host or not (task.gpus or task.id in used):
                continue
            if result.source == "slurm":  # Slurm does not tell a job's GPU memory
                continue
            value = used.get(task.id, 0) if result.gpus else None
            if value != task.gpu_memory_mib:
                task.gpu_memory_mib = value
                save(task)
        summary = _summary(result)
        if last.get(host) != summary:  # not every poll: only what a person would notice
            last[host] = summary
            bus.publish("gpus.updated", data={"host": host, **summary})
        kick()  # a GPU may have come free

    return GpuMonitor(
        hosts=hosts,
        interval=interval,
        running_on=running_on,
        on_update=updated,
    )


def _summary(result: HostGpus) -> dict[str, Any]:
    tasks = sorted({p.task_id for p in result.processes if p.task_id})
    return {"count": len(result.gpus), "reason": result.reason, "tasks": tasks}
