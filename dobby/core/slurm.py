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


class SlurmSettingError(ValidationError):
    """One ``slurm:`` setting is invalid; ``key`` names it (for the line of an inventory)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def make_settings(data: Any) -> SlurmSettings:
    """Check an inventory ``slurm:`` mapping and return its settings; raise SlurmSettingError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SlurmSettingError("'slurm' must be a mapping of settings")
    unknown = sorted(str(k) for k in data if k not in _CHECKS)
    if unknown:
        raise SlurmSettingError(
            f"unknown slurm setting {unknown[0]!r} (known: {', '.join(sorted(_CHECKS))})",
            key=unknown[0],
        )
    values: dict[str, Any] = {}
    for key, check in _CHECKS.items():
        if key not in data:
            continue
        try:
            values[key] = check(data[key], key)
        except ValidationError as exc:
            raise SlurmSettingError(str(exc), key=key) from None
    return SlurmSettings(**values)


def _time_limit(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError("'slurm.time_limit' must be a Slurm time such as 60 or 1:00:00")
    parse_time_limit(str(value))
    return str(value)


def _gpus(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
        raise ValidationError("'slurm.gpus_per_task' must be a whole number from 0 to 64")
    return value


def _gpu_request(value: Any, key: str) -> str:
    if value not in GPU_REQUESTS:
        raise ValidationError(
            f"invalid slurm.gpu_request {value!r} (choose {', '.join(GPU_REQUESTS)})"
        )
    return str(value)


def _text(what: str) -> Any:
    def check(value: Any, key: str) -> str | None:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValidationError(f"'slurm.{key}' must be {what}")
        return value

    return check


def check_extra_args(value: Any, key: str = "extra_args") -> tuple[str, ...]:
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


_CHECKS: dict[str, Any] = {
    "partition": lambda v, k: _name(v, k),
    "account": lambda v, k: _name(v, k),
    "qos": lambda v, k: _name(v, k),
    "time_limit": _time_limit,
    "gpus_per_task": _gpus,
    "gpu_request": _gpu_request,
    "constraint": _text("a non-empty string"),
    "extra_args": check_extra_args,
    "workdir": _text("a path on the cluster's shared filesystem"),
}


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
