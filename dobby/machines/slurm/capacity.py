"""Parse what a cluster offers: GRES strings, ``sinfo -N -O``, ``scontrol show node -d -o``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dobby.machines.gpu import Gpu, HostGpus
from dobby.machines.slurm.text import gpu_count, none_to_empty, parse_fields

# -- capacity --------------------------------------------------------------------------------

UNAVAILABLE = ("down", "drain", "fail", "maint", "reserved", "power", "reboot", "unknown", "*")


@dataclass(frozen=True)
class NodeSlot:
    """One node in one partition, from ``sinfo -N -O`` (see hostside.slurm.render_capacity)."""

    node: str
    partition: str
    default: bool  # the cluster's default partition ("debug*")
    state: str  # idle, mixed, allocated, drained, draining, down*, ...
    gpus: int
    gpus_used: int
    cpus_alloc: int
    cpus_idle: int
    cpus_total: int
    reason: str = ""  # why the node is down or drained ("" for none)

    @property
    def available(self) -> bool:
        """Tell whether the node takes new jobs (not down, drained, failing or not responding)."""
        return not any(word in self.state.lower() for word in UNAVAILABLE)

    @property
    def gpus_free(self) -> int:
        return max(0, self.gpus - self.gpus_used) if self.available else 0


def parse_sinfo(text: str) -> list[NodeSlot]:
    """Parse ``sinfo -h -N -O NodeList:|,Partition:|,StateLong:|,Gres:|,GresUsed:|,
    CPUsState:|,Reason:|`` (the reason is last: it is free text)."""
    slots = []
    for line in text.splitlines():
        parts = line.rstrip("\n").split("|", 6)
        if len(parts) < 7 or not parts[0].strip():
            continue
        node, partition, state, gres, used, cpus = (p.strip() for p in parts[:6])
        reason = parts[6].rstrip().removesuffix("|").strip()
        counts = [int(c) if c.isdigit() else 0 for c in cpus.split("/")] + [0, 0, 0, 0]
        slots.append(
            NodeSlot(
                node=node,
                partition=partition.rstrip("*"),
                default=partition.endswith("*"),
                state=state,
                gpus=gpu_count(gres),
                gpus_used=gpu_count(used),
                cpus_alloc=counts[0],
                cpus_idle=counts[1],
                cpus_total=counts[3],
                reason="" if reason in ("none", "(null)") else reason,
            )
        )
    return slots


@dataclass(frozen=True)
class NodeState:
    """One node as ``scontrol show node -d -o`` reports it."""

    node: str
    state: str  # IDLE, MIXED, ALLOCATED, IDLE+DRAIN, DOWN*+..., ...
    partitions: tuple[str, ...]
    gpus: int
    gpus_used: int
    cpus_alloc: int
    cpus_total: int
    reason: str = ""


def parse_scontrol_nodes(text: str) -> list[NodeState]:
    """Parse ``scontrol show node -d -o``: one line per node (GresUsed needs ``-d``)."""
    nodes = []
    for line in text.splitlines():
        fields = parse_fields(line)
        if not fields.get("NodeName"):
            continue
        nodes.append(
            NodeState(
                node=fields["NodeName"],
                state=fields.get("State", ""),
                partitions=tuple(p for p in fields.get("Partitions", "").split(",") if p),
                gpus=gpu_count(fields.get("Gres", "")),
                gpus_used=gpu_count(fields.get("GresUsed", "")),
                cpus_alloc=_int(fields.get("CPUAlloc", "")),
                cpus_total=_int(fields.get("CPUTot", "")),
                reason=none_to_empty(fields.get("Reason", "")),
            )
        )
    return nodes


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


@dataclass(frozen=True)
class Capacity:
    """What a host's partition(s) offer right now, summed over nodes that take jobs."""

    nodes: int = 0
    nodes_available: int = 0
    gpus: int = 0  # configured on available nodes
    gpus_free: int = 0
    max_gpus_per_node: int = 0  # the most one job can get on one node (--gres is per node)
    max_free_per_node: int = 0
    cpus_idle: int = 0
    partitions: tuple[str, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)  # node -> state and reason


def capacity(slots: Iterable[NodeSlot], partition: str | None = None) -> Capacity:
    """Sum the nodes of ``partition`` (a comma list, or the default partition when None)."""
    slots = list(slots)
    if partition:
        wanted = set(partition.split(","))
        chosen = [s for s in slots if s.partition in wanted]
    else:
        chosen = [s for s in slots if s.default] or slots
    by_node: dict[str, NodeSlot] = {}
    for slot in chosen:  # a node in two of the partitions counts once
        by_node.setdefault(slot.node, slot)
    usable = [s for s in by_node.values() if s.available]
    return Capacity(
        nodes=len(by_node),
        nodes_available=len(usable),
        gpus=sum(s.gpus for s in usable),
        gpus_free=sum(s.gpus_free for s in usable),
        max_gpus_per_node=max((s.gpus for s in usable), default=0),
        max_free_per_node=max((s.gpus_free for s in usable), default=0),
        cpus_idle=sum(s.cpus_idle for s in usable),
        partitions=tuple(sorted({s.partition for s in chosen})),
        unavailable={
            s.node: f"{s.state}: {s.reason}" if s.reason else s.state
            for s in by_node.values()
            if not s.available
        },
    )


def host_gpus(slots: Iterable[NodeSlot], partition: str | None = None) -> HostGpus:
    """Return a Slurm host's GPU view: one entry per GPU of each node of its partition(s).

    Slurm tells how many GPUs each node has and how many jobs hold (GresUsed), not which
    ones: a node's first ``used`` GPUs are shown allocated. Nodes that take no jobs are left
    out and listed under ``unavailable``.
    """
    slots = list(slots)
    room = capacity(slots, partition)
    summary = {
        "partitions": list(room.partitions),
        "nodes": room.nodes,
        "nodes_available": room.nodes_available,
        "gpus": room.gpus,
        "gpus_free": room.gpus_free,
        "max_gpus_per_node": room.max_gpus_per_node,
        "unavailable": dict(room.unavailable),
    }
    wanted = set(room.partitions)
    seen: set[str] = set()
    gpus: list[Gpu] = []
    for slot in slots:
        if slot.partition not in wanted or slot.node in seen or not slot.available:
            continue
        seen.add(slot.node)
        for k in range(slot.gpus):
            gpus.append(
                Gpu(
                    index=len(gpus),
                    uuid=f"slurm:{slot.node}:{k}",
                    name=f"{slot.node} gpu{k} (Slurm)",
                    allocated=k < slot.gpus_used,
                )
            )
    reason = None
    if not gpus:
        where = ",".join(room.partitions) or "the default partition"
        reason = f"no GPU on a node of {where} that takes jobs (Slurm GRES)"
    return HostGpus(gpus=gpus, reason=reason, source="slurm", slurm=summary)
