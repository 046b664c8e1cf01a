"""Routes of the machines features: GPUs (``/gpus``) and interactive sessions (``/remote``)."""

from __future__ import annotations

from typing import Any

from dobby.core.shapes import HostBootstrap, parse
from dobby.hub.base import BaseHandler
from dobby.hub.core import Hub
from dobby.machines.gpu import HostGpus, is_busy, reservations


def gpus_view(dobby: Hub, *, history: bool = False) -> dict[str, Any]:
    """Return every GPU host with its GPUs, their processes, users and reservations."""
    monitor = dobby.gpu
    running = dobby.running_tasks()
    holders: dict[tuple[str, int], str] = {}
    for task in running:
        for index in task.gpu_indices or []:
            holders[(task.host or "", index)] = task.id
    reserved = reservations(running)
    hosts = []
    for name in monitor.gpu_hosts():
        state = monitor.latest.get(name)
        # A Slurm host's GPUs are numbered across its nodes; its jobs' indices are per node.
        mine = holders if state is None or state.source != "slurm" else {}
        entry: dict[str, Any] = {
            "host": name,
            "checked_at": monitor.checked_at.get(name),
            "reason": state.reason if state else "not polled yet",
            "source": state.source if state else None,
            "gpus": _gpus(name, state, mine, reserved.get(name, set()), monitor.thresholds)
            if state
            else [],
        }
        if state is not None and state.slurm is not None:
            entry["slurm"] = state.slurm  # the partition: nodes, GPUs, free, unavailable
        if history:
            entry["history"] = list(monitor.history.get(name, ()))
        hosts.append(entry)
    return {
        "hosts": hosts,
        "polls": monitor.polls,
        "interval": monitor.interval,
        "thresholds": {
            "max_utilization": monitor.thresholds.max_utilization,
            "max_memory_fraction": monitor.thresholds.max_memory_fraction,
        },
    }


def _gpus(
    host: str,
    state: HostGpus,
    holders: dict[tuple[str, int], str],
    reserved: set[int],
    thresholds: Any,
) -> list[dict[str, Any]]:
    out = []
    for gpu in state.gpus:
        procs = [
            {"pid": p.pid, "used_memory": p.used_memory, "task_id": p.task_id}
            for p in state.processes
            if p.gpu_uuid == gpu.uuid  # by uuid: indices can differ between tools
        ]
        busy = is_busy(gpu, thresholds)
        tasks = sorted({p["task_id"] for p in procs if p["task_id"]})
        holder = holders.get((host, gpu.index))
        out.append(
            {
                "index": gpu.index,
                "uuid": gpu.uuid,
                "name": gpu.name,
                "utilization": gpu.utilization,
                "memory_used": gpu.memory_used,
                "memory_total": gpu.memory_total,
                "temperature": gpu.temperature,
                "power_draw": gpu.power_draw,
                "processes": procs,
                "tasks": tasks,
                "reserved_by": holder,
                "busy": busy,
                "free": not busy and gpu.index not in reserved,
            }
        )
    return out


class GpusHandler(BaseHandler):
    def get(self) -> None:
        history = self.get_query_argument("history", "") not in ("", "0", "false")
        self.send(gpus_view(self.dobby, history=history))


class RemoteHandler(BaseHandler):
    def get(self) -> None:
        include = self.get_query_argument("all", "") not in ("", "0", "false")
        sessions = self.dobby.remote.sessions(include_finished=include)
        self.send({"sessions": [t.to_dict() for t in sessions]})

    async def post(self) -> None:
        task = await self.dobby.remote.open(self.body_json())
        self.send(task.to_dict(), 201)


class HostCheckHandler(BaseHandler):
    async def post(self, name: str) -> None:
        from dobby.machines.checks import check_host

        host = self.dobby.hosts.get(name)
        tofu = str(self.dobby.settings.known_hosts_file)
        report = await check_host(host, tofu_known_hosts=tofu)
        self.send(report.to_dict())


class HostBootstrapHandler(BaseHandler):
    async def post(self, name: str) -> None:
        from dobby.machines.bootstrap import bootstrap_host

        install = parse(HostBootstrap, self.body_json() or {}).install
        host = self.dobby.hosts.get(name)
        tofu = str(self.dobby.settings.known_hosts_file)
        report = await bootstrap_host(host, install=install, tofu_known_hosts=tofu)
        self.send(report.to_dict())
