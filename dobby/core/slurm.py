"""The ``slurm:`` settings of a ``connection: slurm`` host, and Slurm's time-limit format.

Plain data and pure checks: the inventory builds :class:`SlurmSettings`, the host-side
renderer turns them into sbatch options, and every check here raises
:class:`~dobby.core.errors.ValidationError` with a one-line message the inventory prefixes
with ``file:line``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dobby.core.errors import ValidationError

GPU_REQUESTS = ("gres", "gpus")  # --gres=gpu:N (works everywhere) or --gpus=N (cons_tres)
# Partition, account, QOS names: what Slurm itself accepts, and nothing a shell cares about.
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
# minutes | minutes:seconds | hours:minutes:seconds | days-hours[:minutes[:seconds]]
_TIME = re.compile(
    r"^(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
    r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$"
)
UNLIMITED = ("UNLIMITED", "INFINITE")
MAX_EXTRA_ARGS = 64
_JOB_ID = re.compile(r"^\d+(?:_\d+)?$")


@dataclass(frozen=True)
class SlurmSettings:
    """How Dobby submits a host's tasks as Slurm jobs (the inventory's ``slurm:`` block)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None  # Slurm time: the longest a job may ask for (--time)
    gpus_per_task: int = 0  # GPUs asked for when a task does not say --gpus
    gpu_request: str = "gres"  # "gres": --gres=gpu:N; "gpus": --gpus=N
    constraint: str | None = None  # --constraint, Slurm's feature expression
    extra_args: tuple[str, ...] = field(default_factory=tuple)  # more sbatch words, each quoted
    workdir: str | None = None  # Dobby's directory on the cluster's shared filesystem

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON."""
        return {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "time_limit": self.time_limit,
            "gpus_per_task": self.gpus_per_task,
            "gpu_request": self.gpu_request,
            "constraint": self.constraint,
            "extra_args": list(self.extra_args),
            "workdir": self.workdir,
        }


def parse_time_limit(text: str) -> int | None:
    """Return the seconds of a Slurm time (``90``, ``1:30:00``, ``2-00``); None if unlimited."""
    raw = text.strip()
    if raw.upper() in UNLIMITED:
        return None
    match = _TIME.match(raw)
    if not match:
        raise ValidationError(
            f"invalid Slurm time limit {text!r}: use minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]"
        )
    g = {k: int(v) if v is not None else None for k, v in match.groupdict().items()}
    if g["days"] is not None:
        seconds = g["days"] * 86400 + (g["dh"] or 0) * 3600 + (g["dm"] or 0) * 60 + (g["ds"] or 0)
    elif g["c"] is not None:
        seconds = (g["a"] or 0) * 3600 + (g["b"] or 0) * 60 + g["c"]
    elif g["b"] is not None:
        seconds = (g["a"] or 0) * 60 + g["b"]
    else:
        seconds = (g["a"] or 0) * 60
    if seconds <= 0:
        raise ValidationError(f"invalid Slurm time limit {text!r}: must be more than zero")
    return seconds


def minutes_for(seconds: float) -> int:
    """Return whole minutes covering ``seconds`` (Slurm rounds a time limit up to minutes)."""
    return max(1, math.ceil(seconds / 60))


def make_settings(data: Any) -> SlurmSettings:
    """Check an inventory ``slurm:`` mapping and return its settings; raise ValidationError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError("'slurm' must be a mapping of settings")
    known = set(SlurmSettings.__dataclass_fields__)
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ValidationError(
            f"unknown slurm setting {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    names = {key: _name(data.get(key), key) for key in ("partition", "account", "qos")}
    time_limit = data.get("time_limit")
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, str | int):
            raise ValidationError("'slurm.time_limit' must be a Slurm time such as 60 or 1:00:00")
        time_limit = str(time_limit)
        parse_time_limit(time_limit)
    gpus = data.get("gpus_per_task", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= 64:
        raise ValidationError("'slurm.gpus_per_task' must be a whole number from 0 to 64")
    gpu_request = data.get("gpu_request", "gres")
    if gpu_request not in GPU_REQUESTS:
        raise ValidationError(
            f"invalid slurm.gpu_request {gpu_request!r} (choose {', '.join(GPU_REQUESTS)})"
        )
    constraint = data.get("constraint")
    if constraint is not None and (not isinstance(constraint, str) or not constraint.strip()):
        raise ValidationError("'slurm.constraint' must be a non-empty string")
    workdir = data.get("workdir")
    if workdir is not None and (not isinstance(workdir, str) or not workdir.strip()):
        raise ValidationError("'slurm.workdir' must be a path on the cluster's shared filesystem")
    return SlurmSettings(
        partition=names["partition"],
        account=names["account"],
        qos=names["qos"],
        time_limit=time_limit,
        gpus_per_task=gpus,
        gpu_request=gpu_request,
        constraint=constraint,
        extra_args=check_extra_args(data.get("extra_args")),
        workdir=workdir,
    )


def check_extra_args(value: Any) -> tuple[str, ...]:
    """Return ``slurm.extra_args`` as words; a shell string is refused, never split."""
    if value is None:
        return ()
    if isinstance(value, str):
        raise ValidationError(
            "'slurm.extra_args' must be a list of words such as ['--mem=8G'], not one string"
        )
    if not isinstance(value, Sequence) or not all(isinstance(w, str) for w in value):
        raise ValidationError("'slurm.extra_args' must be a list of strings")
    if len(value) > MAX_EXTRA_ARGS:
        raise ValidationError(f"'slurm.extra_args' holds at most {MAX_EXTRA_ARGS} words")
    for word in value:
        if not word or "\x00" in word or "\n" in word:
            raise ValidationError(f"invalid word {word!r} in 'slurm.extra_args'")
    return tuple(value)


def _name(value: Any, key: str) -> str | None:
    if value is None:
        return None
    # a job may name several partitions (--partition=a,b): Slurm takes the first that fits
    words = value.split(",") if isinstance(value, str) and key == "partition" else [value]
    if not all(isinstance(w, str) and _SLURM_NAME.match(w) for w in words):
        raise ValidationError(f"invalid slurm.{key} {value!r}: letters, digits and . _ + - only")
    return str(value)


def attach_command(*, job_id: str, task_id: str) -> list[str]:
    """Return the command, run with a tty on the login node, that attaches to a task's tmux.

    The session lives on the compute node, inside the job: ``srun --overlap`` runs a step of
    the job there, next to it, and the job's private socket ``dobby-JOB`` finds the server.
    """
    if not _JOB_ID.match(job_id):
        raise ValidationError(f"invalid Slurm job id {job_id!r}")
    return [
        "srun", f"--jobid={job_id}", "--overlap", "--pty",
        "tmux", "-L", f"dobby-{job_id}", "attach", "-t", f"dobby-{task_id}",
    ]  # fmt: skip
