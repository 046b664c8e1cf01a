"""The fields of an inventory host, declared once as a pydantic model.

``defaults``, each group and each host are checked with :class:`HostFields` (all fields
optional: layers are merged afterwards). A bad value's message names the field and where it is
("'port' in host 'b' must be an integer 1..65535, got 70000"); the loader adds ``file:line``.
The where-part comes in the validation context (``{"where": "host 'b'"}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

from dobby.core.fields import before, bounds
from dobby.core.models import BackendName, Permissions
from dobby.core.slurm import SlurmSettingError, make_settings
from dobby.inventory.spokes import SPOKE_NAME

CONNECTIONS = ("ssh", "local", "slurm")  # slurm: a login node reached over ssh
BACKENDS = tuple(b.value for b in BackendName)
PERMISSIONS = tuple(p.value for p in Permissions)
MAX_AGENTS = 1_000_000
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")  # an account name
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # exported by run.sh: must be a shell name


class Bad(ValueError):
    """A field value is invalid (message only; the loader adds file and line).

    ``line`` is set when the problem sits deeper than the field's value (a ``slurm:`` key).
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _where(info: ValidationInfo) -> str:
    context = info.context or {}
    return str(context.get("where", "the host"))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rule(valid: Callable[[Any], bool], expected: str, *, optional: bool = False) -> Any:
    """Return a before-validator: ``valid(value)`` or the message "'key' in … must be …"."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None and optional:
            return None
        if not valid(value):
            raise Bad(
                f"'{info.field_name}' in {_where(info)} must be {expected}, got {_show(value)}"
            )
        return value

    return check


def _is_int(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(_NAME_RE.fullmatch(value))


def _is_accounts(value: Any) -> bool:
    return isinstance(value, dict) and all(k in BACKENDS and _is_name(a) for k, a in value.items())


def _is_strs(value: Any) -> bool:
    return isinstance(value, list) and all(map(_is_str, value))


def _local_path(value: Any, info: ValidationInfo) -> Any:
    value = _rule(_is_str, "a string", optional=True)(value, info)
    # Read by the hub, so ~ is the hub user's home.
    return None if value is None else os.path.expanduser(value)


def _backends(value: Any, info: ValidationInfo) -> Any:
    value = _rule(_is_strs, "a list of strings")(value, info)
    for item in value:
        if item not in BACKENDS:
            raise Bad(f"unknown backend '{item}' in {_where(info)} (use {', '.join(BACKENDS)})")
    return list(value)


def _env(value: Any, info: ValidationInfo) -> Any:
    """Return env with string values; names must be shell names, values strings or numbers."""
    where = _where(info)
    if not isinstance(value, dict):
        # env values are secrets: never shown, not even the wrong value.
        raise Bad(f"'env' in {where} must be a mapping of NAME: value")
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            raise Bad(f"invalid env name {_show(name)} in {where}")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise Bad(f"env value of '{name}' in {where} must be a string or number")
        out[name] = str(item)
    return out


def _models(value: Any, info: ValidationInfo) -> Any:
    """Check ``models: {claude: MODEL, codex: MODEL}``: agent backends to model ids."""
    from dobby.core.fields import MODEL_RE

    where = _where(info)
    if not isinstance(value, dict):
        raise Bad(f"'models' in {where} must be a mapping of backend to model, got {_show(value)}")
    for backend, model in value.items():
        if backend not in ("claude", "codex"):
            raise Bad(
                f"unknown backend {_show(backend)} in 'models' of {where} (use claude, codex)"
            )
        if not isinstance(model, str) or not MODEL_RE.fullmatch(model):
            raise Bad(f"invalid model {_show(model)} for {backend} in 'models' of {where}")
    return dict(value)


def _slurm(value: Any, info: ValidationInfo) -> Any:
    """Check a ``slurm:`` mapping per layer (a host's keys go over its group's when merged)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Bad(
            f"'slurm' in {_where(info)} must be a mapping of Slurm settings (partition, ...), "
            f"got {_show(value)}"
        )
    try:
        make_settings(value)
    except SlurmSettingError as exc:
        # A mapping read from YAML knows the line of each key (inventory/load.py _Located).
        line = getattr(value, "lines", {}).get(exc.key)
        raise Bad(f"{exc} in {_where(info)}", line=line) from None
    return dict(value)


def _one_of(choices: tuple[str, ...]) -> Any:
    return _rule(lambda v: v in choices, "one of " + ", ".join(choices))


Str = Annotated[str, before(_rule(_is_str, "a string"), str)]
OptionalStr = Annotated[str | None, before(_rule(_is_str, "a string", optional=True), str | None)]
LocalPath = Annotated[str | None, before(_local_path, str | None)]
Strings = Annotated[list[str], before(_rule(_is_strs, "a list of strings"), list[str])]


class SlurmFields(BaseModel):
    """The ``slurm:`` settings of a ``connection: slurm`` host, as a schema (checked by
    :func:`dobby.core.slurm.make_settings`)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="Partition(s), comma-separated.")
    account: str | None = None
    qos: str | None = None
    time_limit: str | int | None = Field(
        None, description="Longest a job may ask for: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]."
    )
    gpus_per_task: int = Field(0, ge=0, le=64, description="GPUs a task gets without --gpus.")
    gpu_request: Literal["gres", "gpus"] = Field(
        "gres", description="gres: --gres=gpu:N; gpus: --gpus=N."
    )
    constraint: str | None = Field(None, description="sbatch --constraint.")
    extra_args: list[str] = Field(
        default_factory=list, max_length=64, description="More sbatch words, each quoted."
    )
    workdir: str | None = Field(None, description="Dobby's directory on the shared filesystem.")


class HostFields(BaseModel):
    """What an inventory file (or POST /spokes/register) may say about a host."""

    model_config = ConfigDict(extra="forbid")

    connection: Annotated[Literal["ssh", "local", "slurm"], before(_one_of(CONNECTIONS), str)] = (
        Field(
            "ssh",
            description="ssh, local (the hub's own machine) or slurm (a login node reached over "
            "ssh; tasks become jobs).",
        )
    )
    address: OptionalStr = Field(None, description="Host name or IP address for ssh.")
    port: Annotated[
        int,
        before(_rule(_is_int(1, 65535), "an integer 1..65535"), int),
        bounds(minimum=1, maximum=65535),
    ] = 22
    user: OptionalStr = None
    identity_file: LocalPath = Field(None, description="Private key file on the hub.")
    known_hosts: LocalPath = Field(None, description="known_hosts file (default: the user's).")
    trust_on_first_use: Annotated[
        bool, before(_rule(lambda v: isinstance(v, bool), "true or false"), bool)
    ] = False
    labels: Strings = Field(default_factory=list)
    backends: Annotated[list[BackendName], before(_backends, list[str])] = Field(
        default_factory=lambda: list(BackendName)
    )
    max_agents: Annotated[
        int,
        before(_rule(_is_int(1, MAX_AGENTS), "an integer >= 1"), int),
        bounds(minimum=1, maximum=MAX_AGENTS),
    ] = 4
    workdir: Str = Field("~/.dobby", description="Remote path; its ~ is the host's.")
    gpus: Annotated[
        bool | Literal["auto"],
        before(_rule(lambda v: isinstance(v, bool) or v == "auto", "true, false or 'auto'"),
               bool | Literal["auto"]),
    ] = False  # fmt: skip
    env: Annotated[dict[str, str], before(_env, dict[str, str | int | float])] = Field(
        default_factory=dict, description="Extra environment of the host's tasks (secret)."
    )
    permissions: Annotated[
        Literal["bypass", "edits", "plan"], before(_one_of(PERMISSIONS), str)
    ] = "edits"
    slurm: Annotated[dict[str, Any] | None, before(_slurm, SlurmFields | None)] = Field(
        None, description="How a connection: slurm host's tasks become jobs."
    )
    account: Annotated[str | None, before(_rule(_is_name, "a name", optional=True), str | None)] = (
        Field(
            None,
            description="The subscription the host's agents use (usage limits are per account); "
            "default: one account per host and backend.",
        )
    )
    accounts: Annotated[
        dict[str, str],
        before(_rule(_is_accounts, "a mapping of backend: account name"), dict[str, str]),
    ] = Field(default_factory=dict, description="The account per backend, over 'account'.")
    models: Annotated[dict[str, str], before(_models, dict[str, str])] = Field(
        default_factory=dict,
        description="Default model per backend for the host's tasks, e.g. {claude: opus, "
        "codex: gpt-5.5} (a task's or its project's model wins).",
    )


FIELDS = tuple(HostFields.model_fields)


class SpokeRegister(HostFields):
    """``POST /spokes/register``: add (or update) a host in the hub's spokes file."""

    name: str = Field(
        description="Host name: letters, digits, '.', '_', '-'.",
        json_schema_extra={"pattern": SPOKE_NAME},  # checked by spokes.spoke_name
    )
    host_key: str | None = Field(
        None, description="The host's public key line, pinned in the hub's known_hosts."
    )
