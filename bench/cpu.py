"""CPU time used by this benchmark and everything it starts (hub, sshd hosts, their tasks).

On a shared machine wall-clock rates move with the load; the CPU each task costs does not.
:func:`join_cgroup` moves the process into a cgroup of its own (v1 cpuacct or v2), which its
children (hub, sshd, tmux, every task) inherit; :func:`used` reads what the group has used.
"""

from __future__ import annotations

import os
from pathlib import Path

from dobby.hostside import scripts

_V2 = Path("/sys/fs/cgroup/cgroup.controllers")
_V1 = Path("/sys/fs/cgroup/cpuacct")
_group: Path | None = None


def join_cgroup(name: str = "dobby-bench") -> bool:
    """Move this process into a fresh cgroup; return False when the machine has none for us."""
    global _group
    base = Path("/sys/fs/cgroup") if _V2.exists() else _V1
    group = base / f"{name}-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return False
    _group = group
    return True


def used() -> float | None:
    """Return the CPU seconds the group used so far (None without a group)."""
    if _group is None:
        return None
    stat = _group / "cpu.stat"
    if stat.exists():
        for line in stat.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    usage = _group / "cpuacct.usage"
    return int(usage.read_text()) / 1e9 if usage.exists() else None


def per_task_ms(start: float | None, tasks: int) -> str:
    """Return "X ms CPU/task" since ``start`` (a :func:`used` reading), or "" without a group."""
    now = used()
    if start is None or now is None or tasks <= 0:
        return ""
    return f"{(now - start) * 1000 / tasks:6.1f} ms CPU/task"


def processes() -> int:
    """Return how many processes this machine has started since it booted (``/proc/stat``).

    Machine-wide: read on a machine that runs nothing but the benchmark.
    """
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return 0


def processes_per_task(start: int, tasks: int) -> str:
    """Return ", N processes/task" since ``start`` (a :func:`processes` reading)."""
    return f", {(processes() - start) / max(tasks, 1):4.1f} processes/task"


def process_seconds(pid: int) -> float:
    """Return the CPU seconds process ``pid`` used (its own threads, not its children); NaN
    when there is no such process (any more)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def waited_seconds(pid: int) -> float:
    """Return how long the main thread of process ``pid`` (the hub's event loop) waited,
    runnable, for a CPU (``/proc/PID/schedstat``); NaN when there is no such process."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def weigh_down(pids: list[int], shares: int, name: str = "dobby-bench-hosts") -> Path | None:
    """Move ``pids`` (and what they start from then on) into a v1 ``cpu`` cgroup of CPU weight
    ``shares`` (a session of its own weighs 1024); return the group, None when the machine has
    none. For loopback hosts that stand in for machines with CPUs of their own.
    """
    group = Path("/sys/fs/cgroup/cpu") / f"{name}-{os.getpid()}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cpu.shares").write_text(str(shares))
        for pid in pids:
            (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        return None
    return group


# The start of the command line of a stream's `tail -F` (render_follow).
STREAM_TAIL = "\0".join([*scripts.WATCH_TAIL, ""]).encode()


def is_stream(cmdline: bytes) -> bool:
    """Return True if ``cmdline`` (from /proc) is a host's log stream: its bash, forwarder or
    relay (bash of the same text)."""
    return b"dobby-follow" in cmdline and cmdline.startswith(b"bash\0-c\0")


def streams_seconds() -> float:
    """Return the CPU seconds the hosts' log streams alive now used (found by their text):
    each stream's bash, its forwarder and relay (bash of the same text), and its `tail -F`."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if is_stream(cmdline) or cmdline.startswith(STREAM_TAIL):
            used = process_seconds(int(proc.name))
            if used == used:  # not NaN: it did not end in between
                total += used
    return total


def _part(pid: str, comm: str, cmdline: bytes, hub: int | None) -> str:
    if hub is not None and pid == str(hub):
        return "hub"
    if pid == str(os.getpid()):
        return "bench"
    if is_stream(cmdline):
        return "streams"
    if comm.startswith("tmux"):
        return "tmux"
    if comm == "sshd":
        return "sshd"
    return "other"


def _in_group(proc: Path) -> bool:
    if _group is None:
        return True
    try:
        return f"/{_group.name}" in (proc / "cgroup").read_text()
    except OSError:
        return False


def by_part(hub: int | None = None) -> dict[str, tuple[str, float, float]]:
    """Return the CPU seconds each process of this benchmark alive now used so far: pid →
    (part, its own, its reaped children's). Parts: ``hub``, ``bench`` (this process),
    ``streams`` (the hosts' log streams: a launch is a child of its stream), ``tmux`` (servers:
    a task is a child of its pane), ``sshd`` (an exec, a login shell, SFTP), ``other``.

    Only processes in this benchmark's cgroup (:func:`join_cgroup`): init reaps orphans of
    earlier parts lazily here, and would count them in the part after.
    """
    seen: dict[str, tuple[str, float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not _in_group(proc):
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / tick
        kids = (int(fields[13]) + int(fields[14])) / tick
        seen[proc.name] = (_part(proc.name, comm, cmdline, hub), own, kids)
    return seen


PARTS = ("hub", "bench", "streams", "tmux", "sshd", "other")


def parts_per_task(
    start: dict[str, tuple[str, float, float]], tasks: int, hub: int | None = None
) -> str:
    """Return the CPU per task of each part since ``start`` (a :func:`by_part` reading), e.g.
    "streams 3.1+5.8" (its own + its reaped children's, ms).

    A process counts once reaped by one alive at both readings (or born since): read after
    the tasks ended, the parts hold what they cost, children and all. One gone since
    ``start`` counts nothing more (its reaper, if it is ours, counts what it used since).
    """
    return _shown(_since(start, hub), 1000 / max(tasks, 1), PARTS)


def parts_share(
    start: dict[str, tuple[str, float, float]],
    seconds: float,
    hub: int | None = None,
    parts: tuple[str, ...] = ("hub", "streams", "tmux", "sshd"),
) -> str:
    """Return each part's CPU since ``start`` as a share of one core over ``seconds``, e.g.
    "streams 16.1+11.6%" (own + reaped children's; see :func:`parts_per_task`)."""
    return _shown(_since(start, hub), 100 / max(seconds, 1e-9), parts, "%")


def _since(start: dict[str, tuple[str, float, float]], hub: int | None) -> dict[str, list[float]]:
    sums: dict[str, list[float]] = {}
    for pid, (part, own, kids) in by_part(hub).items():
        _, own0, kids0 = start.get(pid, (part, 0.0, 0.0))
        used = sums.setdefault(part, [0.0, 0.0])
        used[0] += own - own0
        used[1] += kids - kids0
    return sums


def _shown(
    sums: dict[str, list[float]], scale: float, parts: tuple[str, ...], unit: str = ""
) -> str:
    shown = []
    for name in parts:
        own, kids = (x * scale for x in sums.get(name, [0.0, 0.0]))
        if own + kids >= 0.05:
            text = f"{own:.1f}+{kids:.1f}" if kids >= 0.05 else f"{own:.1f}"
            shown.append(f"{name} {text}{unit}")
    return ", ".join(shown)


def self_seconds() -> float:
    """Return the CPU seconds this process used."""
    times = os.times()
    return times.user + times.system
