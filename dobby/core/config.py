"""Typed settings of the hub and its clients, read from dobby.yaml, the environment and flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from dobby.core.errors import ConfigError, ValidationError
from dobby.core.validate import check_budget

CONFIG_FILE = "dobby.yaml"
DEFAULT_HOME = "~/.dobby-hub"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Settings that hold credentials: masked in to_public_dict(), kept out of repr().
SECRET_SETTINGS = frozenset({"api_key", "webhook_url", "webhook_secret"})
# Settings the environment cannot set as DOBBY_<NAME> (structured values belong in dobby.yaml).
_NO_ENV = frozenset({"prices", "usage_limits", "budget_usd"})


def _setting(default: Any = None, *, help: str, factory: Any = None) -> Any:
    """Declare one setting with its default and a one-line description."""
    meta = {"help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _derived(help: str) -> Any:
    """Declare a setting whose default is computed from others in ``__post_init__``."""
    # None is only a placeholder: __post_init__ always replaces it, so readers see the real type.
    return field(default=None, metadata={"help": help, "derived": True})


@dataclass(kw_only=True, repr=False)
class Settings:
    """All settings of Dobby, each with a default and a one-line description."""

    home: Path = _setting(
        factory=lambda: Path(DEFAULT_HOME).expanduser(),
        help="State directory of the hub (env DOBBY_HOME); holds dobby.yaml, db and results.",
    )
    host: str = _setting("127.0.0.1", help="Address the hub binds to; non-loopback needs api_key.")
    port: int = _setting(8420, help="TCP port of the hub's REST API and dashboard.")
    max_concurrent_agents: int = _setting(8, help="Most tasks running at once across all hosts.")
    default_timeout: float = _setting(3600, help="Seconds a task may run when it sets no timeout.")
    gpu_poll_interval: float = _setting(30, help="Seconds between GPU usage polls of GPU hosts.")
    results_dir: Path = _derived("Directory for collected results and artifacts (home/results).")
    db_path: Path = _derived("The hub's SQLite database (home/dobby.db).")
    api_key: str | None = _setting(
        None, help="Key clients must send; env DOBBY_API_KEY overrides dobby.yaml."
    )
    webhook_url: str | None = _setting(
        None, help="URL that receives a JSON POST per finished task and per draft to approve."
    )
    webhook_secret: str | None = _setting(
        None, help="Key of the webhook's HMAC-SHA256 signature header (X-Dobby-Signature)."
    )
    stale_timeout: float = _setting(
        600, help="Seconds a running task may go without new output before it is stale."
    )
    stale_action: str = _setting(
        "kill", help="What happens to a stale task: kill (fail it, reason stale) or mark."
    )
    priority_aging: float = _setting(
        600, help="Seconds of waiting that raise a pending task one priority level (0: off)."
    )
    hub_url: str = _derived("URL clients use to reach the hub (default http://HOST:PORT).")
    allowed_hosts: list[str] = _setting(
        factory=list,
        help="Extra Host names the hub answers to (DNS rebinding guard), e.g. [dobby.lan]; "
        "'*' turns the check off.",
    )
    allowed_origins: list[str] = _setting(
        factory=list,
        help="Extra origins whose pages may send changes, e.g. [https://dobby.example.com] "
        "behind a proxy.",
    )
    github_url: str | None = _setting(None, help="Base URL used to link task branches on GitHub.")
    inventory: Path | None = _setting(
        None,
        help="Inventory file or directory (env DOBBY_INVENTORY; ./inventory if it exists, "
        "else the implicit local host).",
    )
    usage_limits: dict[str, Any] = _setting(
        factory=dict,
        help="Limits per backend and rolling window for the dashboard's usage bars, e.g. "
        "{claude: {5h: {cost_usd: 20}, 7d: {tokens: 50000000}}}.",
    )
    prices: dict[str, Any] = _setting(
        factory=dict, help="Token prices per model (USD per million tokens), for codex costs."
    )
    budget_usd: dict[str, Any] = _setting(
        factory=dict,
        help="Hub-wide spend caps in USD per day, week and/or month, e.g. {day: 20, month: "
        "300}; over a cap, agent tasks wait (waiting_on budget) until the window rolls.",
    )
    quota_grace: float = _setting(
        60, help="Seconds after an account's usage-limit reset before its work goes on."
    )
    quota_backoff: float = _setting(
        900,
        help="First wait after a limit that gave no usable reset time; doubles per repeat, up "
        "to the limit's window.",
    )
    max_quota_wait: float = _setting(
        3600,
        help="Longest usage-limit wait a task with fallback_backends accepts before it runs "
        "on the next backend instead.",
    )
    host_retention: float = _setting(
        604800,
        help="Seconds a finished task's worktree and tasks/<id> stay on its host (0: remove "
        "right after collection).",
    )
    verify_timeout: float = _setting(
        600, help="Seconds a task's --verify check may run when it sets no --verify-timeout."
    )
    max_race: int = _setting(8, help="Most attempts one race (dobby add --race K) may start.")
    timezone: str | None = _setting(None, help="IANA zone for displayed times (None = local).")
    write_timeout: float = _setting(
        5.0, help="Seconds a change may wait for the disk before the API answers 503."
    )
    log_level: str = _setting("info", help="Logging level: debug, info, warning, error.")

    def __post_init__(self) -> None:
        if self.results_dir is None:
            self.results_dir = self.home / "results"
        if self.db_path is None:
            self.db_path = self.home / "dobby.db"
        if self.hub_url is None:
            # IPv6 literals need brackets inside a URL.
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.hub_url = f"http://{host}:{self.port}"

    def validate(self) -> None:
        """Raise ConfigError unless the settings are safe and usable."""
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"setting 'port' must be between 1 and 65535, got {self.port}")
        if self.max_concurrent_agents < 1:
            raise ConfigError("setting 'max_concurrent_agents' must be at least 1")
        if self.max_race < 1:
            raise ConfigError("setting 'max_race' must be at least 1")
        for name in (
            "default_timeout",
            "gpu_poll_interval",
            "stale_timeout",
            "verify_timeout",
            "write_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting '{name}' must be a positive number of seconds")
        if self.host_retention < 0:
            raise ConfigError("setting 'host_retention' must be a number of seconds >= 0")
        if self.stale_action not in ("kill", "mark"):
            raise ConfigError(
                f"setting 'stale_action' must be kill or mark, got {self.stale_action!r}"
            )
        for name in ("quota_grace", "max_quota_wait"):
            if getattr(self, name) < 0:
                raise ConfigError(f"setting '{name}' must be a number of seconds >= 0")
        if self.quota_backoff <= 0:
            raise ConfigError("setting 'quota_backoff' must be a positive number of seconds")
        try:
            self.budget_usd = check_budget(self.budget_usd, "setting 'budget_usd'")
        except ValidationError as exc:
            raise ConfigError(str(exc)) from None
        if self.priority_aging < 0:
            raise ConfigError("setting 'priority_aging' must be a number of seconds >= 0")
        if self.webhook_url and urlsplit(self.webhook_url).scheme not in ("http", "https"):
            raise ConfigError("setting 'webhook_url' must be an http(s) URL")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"setting 'log_level' must be one of {', '.join(LOG_LEVELS)}, "
                f"got {self.log_level!r}"
            )
        if urlsplit(self.hub_url).scheme not in ("http", "https"):
            raise ConfigError(f"setting 'hub_url' must be an http(s) URL, got {self.hub_url!r}")
        if self.timezone is not None:
            _check_timezone(self.timezone)
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(
                f"refusing to bind {self.host} without api_key: "
                "set api_key in dobby.yaml or DOBBY_API_KEY"
            )

    def to_public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON with every secret masked as ``***``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS:
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif f.name.endswith("_url") and isinstance(value, str):
                value = _strip_password(value)
            elif isinstance(value, dict | list):
                value = type(value)(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        # The dataclass repr would print secrets into logs and tracebacks.
        body = ", ".join(f"{k}={v!r}" for k, v in self.to_public_dict().items())
        return f"Settings({body})"

    @classmethod
    def describe(cls) -> list[tuple[str, str]]:
        """Return (name, one-line description) for every setting, in declaration order."""
        return [(f.name, f.metadata["help"]) for f in dataclasses.fields(cls)]


def is_loopback(host: str) -> bool:
    """Return whether binding ``host`` keeps the hub reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def load_settings(
    *,
    home: Path | None = None,
    overrides: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings from home/dobby.yaml, then DOBBY_* env, then overrides; validate them."""
    env = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    cwd = Path.cwd()
    if home is None and "home" in overrides:
        home = Path(str(overrides.pop("home")))
    overrides.pop("home", None)
    if home is None:
        home = Path(env.get("DOBBY_HOME") or DEFAULT_HOME)
    home = _absolute(home, cwd)

    values: dict[str, Any] = {"home": home}
    config_file = home / CONFIG_FILE
    if config_file.is_file():
        values.update(_read_yaml(config_file, home))
    for name, hint in _hints().items():
        if name == "home" or name in _NO_ENV:
            continue
        raw = env.get(f"DOBBY_{name.upper()}")
        if raw:  # an empty variable counts as unset
            values[name] = _coerce(name, raw, hint, cwd, where=f"DOBBY_{name.upper()}")
    hints = _hints()
    for name, value in overrides.items():
        if name not in hints:
            raise ConfigError(f"unknown setting '{name}'")
        values[name] = _coerce(name, value, hints[name], cwd, where=f"setting '{name}'")
    if "inventory" not in values and (cwd / "inventory").exists():
        values["inventory"] = cwd / "inventory"  # the default is resolved once, at load
    settings = Settings(**values)
    settings.validate()
    return settings


def _read_yaml(path: Path, home: Path) -> dict[str, Any]:
    """Return the settings in dobby.yaml, checking names and types with their line numbers."""
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        raise ConfigError(f"{path}:{line} invalid YAML: {exc.problem or exc.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}: expected a mapping of settings")
    hints = _hints()
    values: dict[str, Any] = {}
    loader.flatten_mapping(root)  # resolve `<<: *anchor` merges
    for key_node, value_node in root.value:
        name, line = str(key_node.value), key_node.start_mark.line + 1
        if name == "home":
            raise ConfigError(f"{path}:{line}: 'home' cannot be set in dobby.yaml; use DOBBY_HOME")
        if name not in hints:
            raise ConfigError(f"{path}:{line}: unknown setting '{name}'")
        try:
            value = loader.construct_object(value_node, deep=True)
        except yaml.MarkedYAMLError as exc:  # e.g. an unsafe !!python tag
            raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem}") from None
        where = f"{path}:{value_node.start_mark.line + 1}: setting '{name}'"
        values[name] = _coerce(name, value, hints[name], home, where=where)
    return values


def _hints() -> dict[str, Any]:
    """Return the resolved type of every setting."""
    return typing.get_type_hints(Settings)


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a path",
    dict: "a mapping",
    list: "a list of strings",
    bool: "true or false",
}


def _coerce(name: str, value: Any, hint: Any, base: Path, *, where: str) -> Any:
    """Return ``value`` as the declared type of setting ``name``, or raise ConfigError."""
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    kind = next(a for a in args if a is not type(None)) if optional else hint
    kind = typing.get_origin(kind) or kind
    if name == "budget_usd":
        try:
            return check_budget(value, where)
        except ValidationError as exc:
            raise ConfigError(str(exc)) from None
    if value is None:
        if optional:
            return None
    elif isinstance(value, str) and kind is not str:
        parsed = _parse_text(value, kind)
        if parsed is not None:
            return _absolute(Path(parsed), base) if kind is Path else parsed
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    elif kind is dict and isinstance(value, dict):
        return value
    elif kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    elif kind is str and isinstance(value, str):
        return value
    # Secrets are never echoed back, not even in an error.
    shown = (
        f"a value of type {type(value).__name__}" if name in SECRET_SETTINGS else repr(value)[:60]
    )
    expected = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
    raise ConfigError(f"{where} must be {expected}, got {shown}")


def _parse_text(text: str, kind: Any) -> Any:
    """Parse a setting given as text (env or a flag); None if it does not parse."""
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        return None
    if kind is Path:
        return text
    if kind is list:  # DOBBY_ALLOWED_HOSTS=a,b
        return [item.strip() for item in text.split(",") if item.strip()]
    return None  # structured settings cannot come from text


def _absolute(path: Path, base: Path) -> Path:
    """Expand ``~`` and make ``path`` absolute relative to ``base``."""
    return Path(os.path.normpath(base / path.expanduser()))


def _check_timezone(name: str) -> None:
    """Raise ConfigError unless ``name`` is a known IANA time zone."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"setting 'timezone': unknown time zone {name!r}") from None


def _strip_password(url: str) -> str:
    """Mask the password of a URL such as https://user:token@host/."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
