"""GPUs of a host: the nvidia-smi probe, its parsers, and which GPUs are free (all pure).

The hub runs :func:`render_gpu_probe` over a host's pooled SSH connection (one round trip:
both nvidia-smi queries, the session id of every GPU process, the pid file of each running
task), parses the answer with :func:`parse_gpu_probe`, and matches GPU processes to tasks by
session id: run.sh writes its own pid, which is its session id (tmux setsid()s it), to
``tasks/<id>/pid``, and every process a task starts stays in that session.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dobby.hostside.scripts import quote_env_value, shell_quote

GPU_FIELDS = "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
GPU_QUERY = f"nvidia-smi --query-gpu={GPU_FIELDS} --format=csv,noheader,nounits"
APPS_QUERY = (
    "nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits"
)

# nvidia-smi exit statuses that mean "no GPU here", not "host down" (see LIBRARIES.md).
NO_GPU_EXITS = {
    127: "nvidia-smi is not installed (exit 127)",
    9: "the NVIDIA driver is not loaded (exit 9)",
    6: "no NVIDIA GPU found (exit 6)",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class GpuProcess:
    """One compute process on a GPU, and the Dobby task it belongs to (if any)."""

    pid: int
    gpu_uuid: str
    used_memory: int | None  # MiB
    task_id: str | None = None


@dataclass
class Gpu:
    """One GPU as nvidia-smi (or NVML) reports it; None where it says [N/A]."""

    index: int
    uuid: str
    name: str
    utilization: float | None = None  # percent
    memory_used: int | None = None  # MiB
    memory_total: int | None = None  # MiB
    temperature: float | None = None  # °C
    power_draw: float | None = None  # W
    allocated: bool | None = None  # Slurm hosts: held by a job (from GresUsed)


@dataclass
class HostGpus:
    """What one poll of a host found: its GPUs and their processes, or why there are none."""

    gpus: list[Gpu] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)
    reason: str | None = None  # set when the host reports no GPU (and why)
    source: str = "nvidia-smi"  # or "nvml" for the hub's own machine, "slurm" for a cluster
    slurm: dict[str, Any] | None = None  # a Slurm host's partition: nodes, GPUs, free, down

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuThresholds:
    """When a GPU counts as busy even though Dobby did not reserve it."""

    max_utilization: float = 20.0  # percent
    max_memory_fraction: float = 0.10  # of memory.total in use


def _number(text: str) -> float | None:
    """Return a CSV field as a number; None for [N/A], [Not Supported] and the like."""
    text = text.strip()
    if not text or text.startswith("["):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def parse_gpus(text: str) -> list[Gpu]:
    """Parse ``--query-gpu=GPU_FIELDS --format=csv,noheader,nounits`` output."""
    gpus = []
    for line in text.splitlines():
        # The name may not hold ", " but is the only free text: split around it from both ends.
        parts = [p.strip() for p in line.split(", ")]
        if len(parts) < 8:
            continue
        head, tail = parts[:2], parts[-5:]
        name = ", ".join(parts[2:-5])
        index = _int(head[0])
        if index is None or not head[1]:
            continue
        gpus.append(
            Gpu(
                index=index,
                uuid=head[1],
                name=name,
                utilization=_number(tail[0]),
                memory_used=_int(tail[1]),
                memory_total=_int(tail[2]),
                temperature=_number(tail[3]),
                power_draw=_number(tail[4]),
            )
        )
    return gpus


def parse_apps(text: str) -> list[GpuProcess]:
    """Parse ``--query-compute-apps=pid,gpu_uuid,used_memory`` output (may be empty)."""
    procs = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        pid = _int(parts[0])
        if pid is None or not parts[1]:
            continue
        procs.append(GpuProcess(pid=pid, gpu_uuid=parts[1], used_memory=_int(parts[2])))
    return procs


def render_gpu_probe(*, env: Mapping[str, str], workdir: str, task_ids: Iterable[str] = ()) -> str:
    """Return one command printing both queries, GPU process sessions and task pid files."""
    exports = "".join(
        f"export {k}={quote_env_value(str(v))}; " for k, v in env.items() if _ENV_NAME.match(k)
    )
    pid_files = " ".join(
        shell_quote(f"{workdir}/tasks/{t}/pid") for t in sorted(set(task_ids)) if _TASK_ID.match(t)
    )
    lines = [
        exports.rstrip(),
        f"gpus=$({GPU_QUERY} 2>&1); rc=$?",
        'printf "@rc %s\\n" "$rc"',
        'printf "@gpus\\n%s\\n" "$gpus"',
        '[ "$rc" = 0 ] || exit 0',
        f"apps=$({APPS_QUERY} 2>/dev/null)",
        'printf "@apps\\n%s\\n" "$apps"',
        'echo "@sids"',
        'for pid in $(printf "%s\\n" "$apps" | cut -d, -f1); do',
        '  printf "%s %s\\n" "$pid" "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d " ")"',
        "done",
        'echo "@tasks"',
    ]
    if pid_files:
        lines += [
            f"for f in {pid_files}; do",
            '  [ -r "$f" ] && printf "%s %s\\n" "$f" "$(head -c 32 "$f")"',
            "done",
        ]
    return "\n".join(line for line in lines if line) + "\nexit 0\n"


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            name, _, rest = line[1:].partition(" ")
            current = name
            out.setdefault(name, [])
            if rest:
                out[name].append(rest)
        elif current is not None:
            out[current].append(line)
    return out


def task_of_pid_file(path: str) -> str | None:
    """Return the task id in ``.../tasks/<id>/pid``."""
    parts = path.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == "pid" else None


def parse_gpu_probe(text: str) -> HostGpus:
    """Parse the answer of :func:`render_gpu_probe` into GPUs with processes matched to tasks."""
    sec = _sections(text)
    rc_text = (sec.get("rc") or ["?"])[0].strip()
    rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
    raw = "\n".join(sec.get("gpus") or []).strip()
    if rc != 0:
        reason = NO_GPU_EXITS.get(rc) if rc is not None else None
        if reason is None:
            detail = raw.splitlines()[-1] if raw else "no output"
            reason = f"nvidia-smi failed (exit {rc}): {detail[:200]}"
        return HostGpus(reason=reason)
    gpus = parse_gpus(raw)
    if not gpus:
        return HostGpus(reason="nvidia-smi listed no GPU")
    procs = parse_apps("\n".join(sec.get("apps") or []))
    sids: dict[int, int] = {}
    for line in sec.get("sids") or []:
        pid, _, sid = line.partition(" ")
        if pid.isdigit() and sid.strip().isdigit():
            sids[int(pid)] = int(sid)
    task_sids: dict[int, str] = {}
    for line in sec.get("tasks") or []:
        path, _, sid = line.rpartition(" ")
        task = task_of_pid_file(path)
        if task and sid.strip().isdigit():
            task_sids[int(sid)] = task
    return HostGpus(gpus=gpus, processes=match_tasks(procs, sids, task_sids))


def match_tasks(
    procs: Sequence[GpuProcess], sids: Mapping[int, int], task_sids: Mapping[int, str]
) -> list[GpuProcess]:
    """Return the processes with ``task_id`` set where their session is a task's session."""
    out = []
    for proc in procs:
        sid = sids.get(proc.pid)
        task = task_sids.get(sid) if sid is not None else None
        out.append(GpuProcess(proc.pid, proc.gpu_uuid, proc.used_memory, task))
    return out


def task_memory(host: HostGpus) -> dict[str, int]:
    """Return the GPU memory (MiB) each task uses on this host, summed over its processes."""
    out: dict[str, int] = {}
    for proc in host.processes:
        if proc.task_id:
            out[proc.task_id] = out.get(proc.task_id, 0) + (proc.used_memory or 0)
    return out


def is_busy(gpu: Gpu, thresholds: GpuThresholds) -> bool:
    """Return True if a GPU is in use by someone, judged by utilisation and memory."""
    if gpu.allocated:
        return True
    if gpu.utilization is not None and gpu.utilization > thresholds.max_utilization:
        return True
    if gpu.memory_used is not None and gpu.memory_total:
        return gpu.memory_used / gpu.memory_total > thresholds.max_memory_fraction
    return False


def gpus_free(
    host_gpus: HostGpus | None,
    reservations: Iterable[int],
    thresholds: GpuThresholds = GpuThresholds(),  # noqa: B008 - frozen, shared default
) -> list[int]:
    """Return the indices of GPUs neither reserved by a Dobby task nor busy, lowest first."""
    if host_gpus is None:
        return []
    reserved = set(reservations)
    return sorted(
        g.index for g in host_gpus.gpus if g.index not in reserved and not is_busy(g, thresholds)
    )


def reservations(tasks: Iterable[Any]) -> dict[str, set[int]]:
    """Return the GPU indices each host has reserved for the given (running) tasks."""
    out: dict[str, set[int]] = {}
    for task in tasks:
        indices = getattr(task, "gpu_indices", None) or []
        if task.host and indices:
            out.setdefault(task.host, set()).update(indices)
    return out


def gpu_env(indices: Sequence[int]) -> dict[str, str]:
    """Return the env giving a task exactly these GPUs (numbered as nvidia-smi numbers them)."""
    # CUDA's default order is "fastest first", not nvidia-smi's PCI order: pin it so the
    # indices Dobby reserved are the devices the job sees.
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices),
    }


def take_gpus(room: dict[str, list[int]], host: str, count: int) -> list[int]:
    """Remove and return the ``count`` lowest free GPU indices of ``host`` from ``room``."""
    if count <= 0:
        return []
    free = room.get(host, [])
    taken, room[host] = free[:count], free[count:]
    return taken
