"""Tests of settings: defaults, dobby.yaml, environment, overrides and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dobby.core.config import Settings, is_loopback, load_settings
from dobby.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test from an empty directory, so ./inventory is not picked up by accident."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dobby.yaml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    s = load_settings(home=home, environ={})
    assert (s.host, s.port, s.max_concurrent_agents) == ("127.0.0.1", 8420, 8)
    assert (s.default_timeout, s.gpu_poll_interval, s.stale_timeout) == (3600, 30, 600)
    assert s.home == home
    assert s.results_dir == home / "results" and s.db_path == home / "dobby.db"
    assert s.hub_url == "http://127.0.0.1:8420"
    assert s.api_key is None and s.webhook_url is None and s.github_url is None
    assert s.inventory is None and s.prices == {} and s.timezone is None
    assert s.log_level == "info"


def test_every_setting_has_a_description() -> None:
    described = dict(Settings.describe())
    assert list(described) == list(Settings.model_fields)
    assert all(text and "\n" not in text for text in described.values())


def test_home_from_environment(tmp_path: Path) -> None:
    s = load_settings(environ={"DOBBY_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h" and s.db_path == tmp_path / "h" / "dobby.db"


def test_yaml_then_env_then_overrides(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    config(
        home,
        "port: 9000\n"
        "max_concurrent_agents: 3\n"
        "api_key: from-yaml\n"
        "results_dir: res\n"  # relative to home
        "inventory: inv.yaml\n"
        "prices: {gpt-5: {input: 1.25, output: 10}}\n"
        "timezone: UTC\n",
    )
    s = load_settings(home=home, environ={})
    assert s.port == 9000 and s.max_concurrent_agents == 3 and s.api_key == "from-yaml"
    assert s.results_dir == home / "res" and s.inventory == home / "inv.yaml"
    assert s.hub_url == "http://127.0.0.1:9000"
    assert s.prices == {"gpt-5": {"input": 1.25, "output": 10}}

    env = {"DOBBY_API_KEY": "from-env", "DOBBY_PORT": "9100", "DOBBY_INVENTORY": "hosts"}
    s = load_settings(home=home, environ=env)
    assert s.api_key == "from-env" and s.port == 9100
    assert s.inventory == Path.cwd() / "hosts"  # env paths are relative to the cwd

    s = load_settings(home=home, environ=env, overrides={"port": 9200, "host": None})
    assert s.port == 9200 and s.host == "127.0.0.1"  # None means "flag not given"


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    config(home, "api_key: k\n")
    assert load_settings(home=home, environ={"DOBBY_API_KEY": ""}).api_key == "k"


def test_default_inventory_dir_resolved_from_cwd(tmp_path: Path, _cwd: Path) -> None:
    assert load_settings(home=tmp_path / "h", environ={}).inventory is None
    (_cwd / "inventory").mkdir()
    assert load_settings(home=tmp_path / "h", environ={}).inventory == _cwd / "inventory"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: 1\nprot: 2\n", "{file}:2: unknown setting 'prot'"),
        ("# hub\n\nhome: /x\n", "{file}:3: 'home' cannot be set in dobby.yaml; use DOBBY_HOME"),
        ("port: eighty\n", "{file}:1: setting 'port' must be an integer, got 'eighty'"),
        ("port: true\n", "{file}:1: setting 'port' must be an integer, got True"),
        ("default_timeout: [1]\n", "{file}:1: setting 'default_timeout' must be a number, got [1]"),
        ("host: 1\n", "{file}:1: setting 'host' must be a string, got 1"),
        ("prices: 3\n", "{file}:1: setting 'prices' must be a mapping, got 3"),
        (
            "port: 9000\nbudget_usd: {day: 0}\n",
            "{file}:2: setting 'budget_usd': day must be a positive number of USD, got 0",
        ),
        (
            "budget_usd:\n  month: -10\n",
            "{file}:2: setting 'budget_usd': month must be a positive number of USD, got -10",
        ),
        (
            "budget_usd: {year: 10}\n",
            "{file}:1: setting 'budget_usd': unknown window 'year' (use day, week, month)",
        ),
        (
            "api_key: 12345\n",
            "{file}:1: setting 'api_key' must be a string, got a value of type int",
        ),
        (
            "port: [\n",
            "{file}:2: invalid YAML: expected the node content, but found '<stream end>'",
        ),
        ("- port\n", "{file}:1: expected a mapping of settings"),
        (
            "port: !!python/name:os.system x\n",
            "{file}:1: invalid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/name:os.system'",
        ),
    ],
)
def test_bad_yaml(tmp_path: Path, text: str, message: str) -> None:
    home = tmp_path / "hub"
    file = config(home, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(home=home, environ={})
    assert str(exc.value) == message.format(file=file)
    assert "12345" not in str(exc.value).removeprefix(str(file))


def test_bad_env_and_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^DOBBY_PORT must be an integer, got 'x'$"):
        load_settings(home=tmp_path, environ={"DOBBY_PORT": "x"})
    with pytest.raises(ConfigError, match="^unknown setting 'colour'$"):
        load_settings(home=tmp_path, environ={}, overrides={"colour": "red"})
    with pytest.raises(ConfigError, match="^setting 'port' must be an integer"):
        load_settings(home=tmp_path, environ={}, overrides={"port": 1.5})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.4", "hub.example.com"])
def test_non_loopback_without_key_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(home=tmp_path, environ={}, overrides={"host": host})
    assert str(exc.value) == (
        f"refusing to bind {host} without api_key: set api_key in dobby.yaml or DOBBY_API_KEY"
    )
    s = load_settings(home=tmp_path, environ={"DOBBY_API_KEY": "k"}, overrides={"host": host})
    assert s.host == host


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 70000}, "setting 'port' must be between 1 and 65535, got 70000"),
        ({"max_concurrent_agents": 0}, "setting 'max_concurrent_agents' must be at least 1"),
        ({"stale_timeout": 0}, "setting 'stale_timeout' must be a positive number of seconds"),
        ({"log_level": "loud"}, "setting 'log_level' must be one of debug, info, warning"),
        ({"timezone": "Mars/Olympus"}, "setting 'timezone': unknown time zone 'Mars/Olympus'"),
        ({"hub_url": "ftp://x"}, "setting 'hub_url' must be an http(s) URL, got 'ftp://x'"),
        ({"quota_backoff": 0}, "setting 'quota_backoff' must be a positive number of seconds"),
        ({"quota_grace": -1}, "setting 'quota_grace' must be a number of seconds >= 0"),
        ({"budget_usd": {"week": 0}}, "setting 'budget_usd': week must be a positive number"),
    ],
)
def test_validate(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings(home=Path("/tmp/h"), **changes)  # type: ignore[arg-type]
    assert str(exc.value).startswith(message)


def test_secrets_never_shown(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    config(
        home,
        "api_key: sekrit-key\nwebhook_url: https://hooks.example/T0/sekrit-hook\n"
        "github_url: https://me:sekrit-token@github.com/org\n",
    )
    s = load_settings(home=home, environ={})
    public = s.to_public_dict()
    assert public["api_key"] == "***" and public["webhook_url"] == "***"
    assert public["github_url"] == "https://me:***@github.com/org"
    assert public["db_path"] == str(home / "dobby.db")
    text = json.dumps(public) + repr(s) + str(s)
    assert "sekrit" not in text
    assert load_settings(home=tmp_path / "other", environ={}).to_public_dict()["api_key"] is None


def test_ipv6_hub_url() -> None:
    assert Settings(host="::1", port=1).hub_url == "http://[::1]:1"


@pytest.mark.parametrize(
    ("entry", "line", "part"),
    [
        ("  gpt-9:\n    input: 1\n    output: cheap\n", 5, "prices.gpt-9.output"),
        ("  gpt-9: 3\n", 3, "prices.gpt-9: must be a mapping"),
        ("  gpt-9:\n    input: 1\n    outptu: 2\n", 5, "prices.gpt-9.outptu: unknown key"),
    ],
)
def test_a_bad_price_entry_names_its_line_in_dobby_yaml(
    tmp_path: Path, entry: str, line: int, part: str
) -> None:
    from dobby.hub.core import Hub

    home = tmp_path / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text("port: 8420\nprices:\n" + entry)
    settings = load_settings(home=home, environ={})
    with pytest.raises(ConfigError) as info:
        Hub(settings=settings)
    message = str(info.value)
    assert message.startswith(f"{home / 'dobby.yaml'}:{line}: ") and part in message
