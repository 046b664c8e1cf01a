"""Typed settings of the hub and its clients, read from dobby.yaml, the environment and flags."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import pydantic
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from dobby.core.errors import ConfigError, ValidationError
from dobby.core.fields import MAX_TIMEOUT, check_budget, text_problem
from dobby.core.yamlerrors import compose, yaml_problem

CONFIG_FILE = "dobby.yaml"
DEFAULT_HOME = "~/.dobby-hub"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Settings that hold credentials: masked in to_public_dict(), kept out of repr().
SECRET_SETTINGS = frozenset({"api_key", "webhook_url", "webhook_secret"})
# Settings the environment cannot set as DOBBY_<NAME> (structured values belong in dobby.yaml).
_NO_ENV = frozenset({"prices", "usage_limits", "budget_usd"})
DAY = 86400.0
MAX_SECONDS = 3650 * DAY  # intervals and retention: finite and bounded
MAX_AGENTS = 100_000
MAX_RACE = 100  # attempts of one race: each is a task, its own agent run


Where = dict[str, str]  # setting name → where its value came from, for messages


class _Bad(ValueError):
    """A setting's value is invalid; the message is what follows "setting 'x'"."""


def _kind_check(kind: type, *, optional: bool = False) -> Any:
    """Return a before-validator accepting ``kind`` (or its text, for numbers and paths)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, str) and kind is not str:
            parsed = _parse_text(value, kind)
            if parsed is not None:
                return parsed
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Bad(f"must be a finite number, got {value!r}")
            return value
        elif kind in (dict, str) and isinstance(value, kind):
            return value
        elif kind is Path and isinstance(value, Path):
            return value
        # Secrets are never echoed back, not even in an error.
        shown = (
            f"a value of type {type(value).__name__}"
            if info.field_name in SECRET_SETTINGS
            else repr(value)[:60]
        )
        raise _Bad(f"must be {_TYPE_NAMES[kind]}, got {shown}")

    return check


def _seconds(minimum: float, *, inclusive: bool, maximum: float = MAX_SECONDS) -> Any:
    def check(value: float, info: ValidationInfo) -> float:
        too_small = value < minimum if inclusive else value <= minimum
        if too_small or value > maximum:
            if inclusive:
                raise _Bad(
                    f"must be a number of seconds >= {minimum:g} and <= {maximum:.0f}"
                    f", got {value!r}"
                )
            raise _Bad(f"must be a positive number of seconds up to {maximum:.0f}, got {value!r}")
        return value

    return check


def _choice(choices: tuple[str, ...], *, fold: bool = False) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        if (value.lower() if fold else value) not in choices:
            raise _Bad(f"must be {_words(choices)}, got {value!r}")
        return value

    return check


def _words(choices: tuple[str, ...]) -> str:
    if len(choices) == 2:
        return f"{choices[0]} or {choices[1]}"
    return f"one of {', '.join(choices)}"


def _port(value: int, info: ValidationInfo) -> int:
    if not 1 <= value <= 65535:
        raise _Bad(f"must be between 1 and 65535, got {value}")
    return value


def _at_least_one(value: int, info: ValidationInfo) -> int:
    if not 1 <= value <= MAX_AGENTS:
        raise _Bad(f"must be at least 1 (and at most {MAX_AGENTS}), got {value}")
    return value


def _race_size(value: int, info: ValidationInfo) -> int:
    if not 1 <= value <= MAX_RACE:
        raise _Bad(f"must be at least 1 (and at most {MAX_RACE}), got {value}")
    return value


def _budget(value: Any) -> dict[str, float]:
    try:
        return check_budget(value, "")
    except ValidationError as exc:
        raise _Bad(str(exc).lstrip(" ")) from None


def _http_url(value: str | None, info: ValidationInfo) -> str | None:
    if value and urlsplit(value).scheme not in ("http", "https"):
        shown = "" if info.field_name in SECRET_SETTINGS else f", got {value!r}"
        raise _Bad(f"must be an http(s) URL{shown}")
    return value


def _timezone(value: str | None, info: ValidationInfo) -> str | None:
    if value is not None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _Bad(f": unknown time zone {value!r}") from None
    return value


def _typed(kind: type, *after: Any, optional: bool = False) -> list[Any]:
    return [
        BeforeValidator(_kind_check(kind, optional=optional)),
        *(AfterValidator(check) for check in after),
    ]


Seconds = Annotated[float, *_typed(float, _seconds(0, inclusive=False))]
SecondsOrZero = Annotated[float, *_typed(float, _seconds(0, inclusive=True))]


def _str_list(value: Any) -> list[str]:
    """Return a list of strings; text is comma-separated (DOBBY_ALLOWED_HOSTS=a,b)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _Bad(f"must be a list of strings, got {repr(value)[:60]}")


StrList = Annotated[list[str], BeforeValidator(_str_list)]
OptionalStr = Annotated[str | None, *_typed(str, optional=True)]
OptionalUrl = Annotated[str | None, *_typed(str, _http_url, optional=True)]


def _derived() -> Any:
    """Stand for a setting computed from others after validation (see ``_derive``)."""
    return None


class Settings(BaseModel):
    """All settings of Dobby, each with a default and a one-line description."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    home: Annotated[Path, *_typed(Path)] = Field(
        default_factory=lambda: Path(DEFAULT_HOME).expanduser(),
        description="State directory of the hub (env DOBBY_HOME); holds dobby.yaml, db and "
        "results.",
    )
    host: Annotated[str, *_typed(str)] = Field(
        "127.0.0.1", description="Address the hub binds to; non-loopback needs api_key."
    )
    port: Annotated[int, *_typed(int, _port)] = Field(
        8420, description="TCP port of the hub's REST API and dashboard."
    )
    max_concurrent_agents: Annotated[int, *_typed(int, _at_least_one)] = Field(
        8, description="Most tasks running at once across all hosts."
    )
    default_timeout: Annotated[
        float, *_typed(float, _seconds(0, inclusive=False, maximum=MAX_TIMEOUT))
    ] = Field(3600, description="Seconds a task may run when it sets no timeout.")
    gpu_poll_interval: Seconds = Field(
        30, description="Seconds between GPU usage polls of GPU hosts."
    )
    results_dir: Annotated[Path, *_typed(Path)] = Field(
        default_factory=_derived,
        description="Directory for collected results and artifacts (home/results).",
    )
    db_path: Annotated[Path, *_typed(Path)] = Field(
        default_factory=_derived, description="The hub's SQLite database (home/dobby.db)."
    )
    allowed_hosts: StrList = Field(
        default_factory=list,
        description="Extra Host names the hub answers to (DNS rebinding guard), e.g. "
        "[dobby.lan]; '*' turns the check off.",
    )
    allowed_origins: StrList = Field(
        default_factory=list,
        description="Extra origins whose pages may send changes, e.g. "
        "[https://dobby.example.com] behind a proxy.",
    )
    api_key: OptionalStr = Field(
        None, description="Key clients must send; env DOBBY_API_KEY overrides dobby.yaml."
    )
    webhook_url: OptionalUrl = Field(
        None,
        description="URL that receives a JSON POST per finished task and per draft to approve.",
    )
    webhook_secret: OptionalStr = Field(
        None, description="Key of the webhook's HMAC-SHA256 signature header (X-Dobby-Signature)."
    )
    stale_timeout: Seconds = Field(
        600, description="Seconds a running task may go without new output before it is stale."
    )
    stale_action: Annotated[str, *_typed(str, _choice(("kill", "mark")))] = Field(
        "kill", description="What happens to a stale task: kill (fail it, reason stale) or mark."
    )
    priority_aging: SecondsOrZero = Field(
        600, description="Seconds of waiting that raise a pending task one priority level (0: off)."
    )
    hub_url: Annotated[str, *_typed(str, _http_url)] = Field(
        default_factory=_derived,
        description="URL clients use to reach the hub (default http://HOST:PORT).",
    )
    github_url: OptionalStr = Field(
        None, description="Base URL used to link task branches on GitHub."
    )
    inventory: Annotated[Path | None, *_typed(Path, optional=True)] = Field(
        None,
        description="Inventory file or directory (env DOBBY_INVENTORY; ./inventory if it exists, "
        "else the implicit local host).",
    )
    usage_limits: Annotated[dict[str, Any], *_typed(dict)] = Field(
        default_factory=dict,
        description="Limits per backend and rolling window for the dashboard's usage bars, e.g. "
        "{claude: {5h: {cost_usd: 20}, 7d: {tokens: 50000000}}}.",
    )
    prices: Annotated[dict[str, Any], *_typed(dict)] = Field(
        default_factory=dict,
        description="Token prices per model (USD per million tokens), for codex costs.",
    )
    budget_usd: Annotated[dict[str, float], BeforeValidator(_budget)] = Field(
        default_factory=dict,
        description="Hub-wide spend caps in USD per day, week and/or month, e.g. {day: 20, month: "
        "300}; over a cap, agent tasks wait (waiting_on budget) until the window rolls.",
    )
    quota_grace: SecondsOrZero = Field(
        60, description="Seconds after an account's usage-limit reset before its work goes on."
    )
    quota_backoff: Seconds = Field(
        900,
        description="First wait after a limit that gave no usable reset time; doubles per "
        "repeat, up to the limit's window.",
    )
    max_quota_wait: SecondsOrZero = Field(
        3600,
        description="Longest usage-limit wait a task with fallback_backends accepts before it "
        "runs on the next backend instead.",
    )
    host_retention: SecondsOrZero = Field(
        604800,
        description="Seconds a finished task's worktree and tasks/<id> stay on its host (0: "
        "remove right after collection).",
    )
    verify_timeout: Annotated[
        float, *_typed(float, _seconds(0, inclusive=False, maximum=MAX_TIMEOUT))
    ] = Field(
        600, description="Seconds a task's --verify check may run when it sets no --verify-timeout."
    )
    max_race: Annotated[int, *_typed(int, _race_size)] = Field(
        8, description="Most attempts one race (dobby add --race K) may start."
    )
    timezone: Annotated[str | None, *_typed(str, _timezone, optional=True)] = Field(
        None, description="IANA zone for displayed times (None = local)."
    )
    log_level: Annotated[str, *_typed(str, _choice(LOG_LEVELS, fold=True))] = Field(
        "info", description="Logging level: debug, info, warning, error."
    )
    write_timeout: Seconds = Field(
        5.0, description="Seconds a change may wait for the disk before the API answers 503."
    )

    def __init__(self, **values: Any) -> None:
        """Check every setting; a bad one raises ConfigError "setting 'x' must be …"."""
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            raise ConfigError(explain(exc, {})) from exc  # load() re-explains the cause

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.results_dir is None:
            self.results_dir = self.home / "results"
        if self.db_path is None:
            self.db_path = self.home / "dobby.db"
        if self.hub_url is None:
            # IPv6 literals need brackets inside a URL.
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.hub_url = f"http://{host}:{self.port}"
        return self

    @property
    def spokes_file(self) -> Path:
        """The hosts added with `dobby agent` (POST /spokes/register): part of the inventory."""
        return Path(self.home) / "spokes.yaml"

    @property
    def known_hosts_file(self) -> Path:
        """Where the keys of ``trust_on_first_use`` hosts are pinned at their first connect."""
        return Path(self.home) / "known_hosts"

    @classmethod
    def load(cls, values: dict[str, Any], where: Where) -> Settings:
        """Return checked settings; an error names where the bad value came from."""
        try:
            return cls(**values)
        except ConfigError as exc:
            cause = exc.__cause__
            if not isinstance(cause, pydantic.ValidationError):
                raise
            raise ConfigError(explain(cause, where)) from None

    def validate_bind(self) -> None:
        """Raise ConfigError unless binding ``host`` is safe: non-loopback needs ``api_key``."""
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(
                f"refusing to bind {self.host} without api_key: "
                "set api_key in dobby.yaml or DOBBY_API_KEY"
            )

    def to_public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON with every secret masked as ``***``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_SETTINGS:
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif name.endswith("_url") and isinstance(value, str):
                value = _strip_password(value)
            elif isinstance(value, dict | list):
                value = type(value)(value)
            out[name] = value
        return out

    def __repr__(self) -> str:
        # The default repr would print secrets into logs and tracebacks.
        body = ", ".join(f"{k}={v!r}" for k, v in self.to_public_dict().items())
        return f"Settings({body})"

    __str__ = __repr__

    @classmethod
    def describe(cls) -> list[tuple[str, str]]:
        """Return (name, one-line description) for every setting, in declaration order."""
        return [(name, f.description or "") for name, f in cls.model_fields.items()]


def explain(exc: pydantic.ValidationError, where: Where) -> str:
    """Return the message of the first bad setting: "<where> must be …"."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    place = where.get(name, f"setting '{name}'")
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{name}'"
    if error["type"] == "value_error" and isinstance(error["ctx"]["error"], _Bad):
        text = str(error["ctx"]["error"])
        return f"{place}{text}" if text.startswith(":") else f"{place} {text}"
    return f"{place}: {error['msg']}"


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
    where: Where = {}
    config_file = home / CONFIG_FILE
    if config_file.is_file():
        for name, (value, line) in _read_yaml(config_file).items():
            values[name] = _path(name, value, home)
            where[name] = f"{config_file}:{line}: setting '{name}'"
    for name in Settings.model_fields:
        if name == "home" or name in _NO_ENV:
            continue
        raw = env.get(f"DOBBY_{name.upper()}")
        if raw:  # an empty variable counts as unset
            values[name] = _path(name, raw, cwd)
            where[name] = f"DOBBY_{name.upper()}"
    for name, value in overrides.items():
        if name not in Settings.model_fields:
            raise ConfigError(f"unknown setting '{name}'")
        values[name] = _path(name, value, cwd)
        where[name] = f"setting '{name}'"
    if "inventory" not in values and (cwd / "inventory").exists():
        values["inventory"] = cwd / "inventory"  # the default is resolved once, at load
    settings = Settings.load(values, where)
    settings.validate_bind()
    return settings


def _path(name: str, value: Any, base: Path) -> Any:
    """Return a path setting given as text made absolute (relative to ``base``)."""
    annotation = str(Settings.model_fields[name].annotation)
    if isinstance(value, str) and "Path" in annotation:
        return _absolute(Path(value), base)
    return value


def _read_yaml(path: Path) -> dict[str, tuple[Any, int]]:
    """Return each setting of dobby.yaml with the line of its value; names checked here."""
    try:
        return _read_yaml_nodes(path)
    except RecursionError:  # e.g. [[[[…]]]]: PyYAML composes and builds recursively
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def _read_yaml_nodes(path: Path) -> dict[str, tuple[Any, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        loader, root = compose(text)
    except yaml.YAMLError as exc:
        line, message = yaml_problem(exc, text)
        raise ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}: expected a mapping of settings")
    values: dict[str, tuple[Any, int]] = {}
    loader.flatten_mapping(root)  # resolve `<<: *anchor` merges
    for key_node, value_node in root.value:
        name, line = str(key_node.value), key_node.start_mark.line + 1
        if name == "home":
            raise ConfigError(f"{path}:{line}: 'home' cannot be set in dobby.yaml; use DOBBY_HOME")
        if name not in Settings.model_fields:
            raise ConfigError(f"{path}:{line}: unknown setting '{name}'")
        try:
            value = loader.construct_object(value_node, deep=True)
        except yaml.MarkedYAMLError as exc:  # e.g. an unsafe !!python tag
            raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem}") from None
        problem = text_problem(value)
        if problem:
            raise ConfigError(f"{path}:{line}: setting '{name}': {problem}")
        values[name] = (value, value_node.start_mark.line + 1)
        _nested_lines(name, value_node, NESTED_LINES.setdefault(str(path), {}))
    return values


# Lines of the keys inside a mapping setting ("prices.gpt-5.input" -> 12), per dobby.yaml, so
# an entry checked later (the price table, by dobby.backends.pricing) names its own line.
NESTED_LINES: dict[str, dict[str, int]] = {}


def _nested_lines(prefix: str, node: yaml.Node, out: dict[str, int]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = f"{prefix}.{key_node.value}"
        out[key] = key_node.start_mark.line + 1
        _nested_lines(key, value_node, out)


def locate(settings: Settings, message: str) -> str:
    """Return ``message`` prefixed with ``dobby.yaml:LINE`` of the setting path it starts with.

    ``message`` reads ``prices.MODEL.FIELD: …`` (the longest known prefix of that path wins).
    """
    path = message.split(":", 1)[0].strip()
    config_file = settings.home / CONFIG_FILE
    lines = NESTED_LINES.get(str(config_file), {})
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        line = lines.get(".".join(parts[:end]))
        if line is not None:
            return f"{config_file}:{line}: {message}"
    return message


_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a path",
    dict: "a mapping",
    list: "a list of strings",
    bool: "true or false",
}


def _parse_text(text: str, kind: Any) -> Any:
    """Parse a setting given as text (env or a flag); None if it does not parse."""
    try:
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            return value if math.isfinite(value) else None
    except ValueError:
        return None
    if kind is Path:
        return Path(text)
    return None  # structured settings cannot come from text


def _absolute(path: Path, base: Path) -> Path:
    """Expand ``~`` and make ``path`` absolute relative to ``base``."""
    return Path(os.path.normpath(base / path.expanduser()))


def _strip_password(url: str) -> str:
    """Mask the password of a URL such as https://user:token@host/."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
