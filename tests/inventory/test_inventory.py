"""Tests of inventory parsing, validation, spokes and the watcher."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from dobby.core.errors import Conflict, InventoryError, NotFound
from dobby.inventory.load import (
    Inventory,
    InventoryWatcher,
    add_spoke,
    check_inventory,
    implicit_local,
    list_spokes,
    load_inventory,
    remove_spoke,
)
from tests.fixtures.wait import wait_until_async


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


GOOD = """
defaults:
  workdir: ~/work
  labels: [all]
  env: {A: "1", B: x}
groups:
  gpu:
    labels: [gpu]
    max_agents: 2
    env: {B: group}
    hosts:
      gpu-1: {address: 10.0.0.5, user: ubuntu, gpus: auto, labels: [a100, gpu]}
      gpu-2:
        address: 10.0.0.6
        max_agents: 1
hosts:
  box-1:
    address: 192.168.1.20
    port: 2222
    user: dev
    identity_file: ~/.ssh/id_ed25519
    labels: [cpu, fast]
    backends: [claude, shell]
    env: {PATH: "/opt/node/bin:/usr/bin:/bin", N: 3}
    permissions: bypass
  local:
    max_agents: 2
"""


def test_good_file_merges_defaults_groups_and_hosts(tmp_path: Path) -> None:
    f = write(tmp_path / "inv.yaml", GOOD)
    inv = load_inventory(f)
    assert list(inv.hosts) == ["gpu-1", "gpu-2", "box-1", "local"]
    assert inv.files == [str(f)]
    g1, g2, box, local = (inv.get(n) for n in inv.hosts)
    assert g1.labels == ["all", "gpu", "a100"]  # unioned, order kept, no duplicates
    assert g1.max_agents == 2 and g1.gpus == "auto" and g1.user == "ubuntu"
    assert g1.env == {"A": "1", "B": "group"}
    assert g1.workdir == "~/work"  # remote path: never expanded on the hub
    assert g1.source == f"{f}:11"
    assert g2.max_agents == 1 and g2.labels == ["all", "gpu"] and g2.source == f"{f}:12"
    assert box.port == 2222 and box.backends == ["claude", "shell"]
    assert box.permissions == "bypass" and box.connection == "ssh"
    assert box.identity_file == os.path.expanduser("~/.ssh/id_ed25519")
    assert box.env == {"A": "1", "B": "x", "PATH": "/opt/node/bin:/usr/bin:/bin", "N": "3"}
    assert box.labels == ["all", "cpu", "fast"]
    assert local.connection == "local" and local.address is None and local.max_agents == 2
    # Hosts sharing a default must not share its list.
    g1.labels.append("x")
    assert "x" not in g2.labels


def test_models_merge_per_backend_from_defaults_to_host(tmp_path: Path) -> None:
    text = (
        "defaults:\n  models: {claude: opus, codex: gpt-5.5}\n"
        "hosts:\n  a: {address: h}\n  b: {address: h, models: {codex: gpt-5-codex}}\n"
    )
    inv = load_inventory(write(tmp_path / "inv.yaml", text))
    assert inv.get("a").models == {"claude": "opus", "codex": "gpt-5.5"}
    assert inv.get("b").models == {"claude": "opus", "codex": "gpt-5-codex"}


def test_list_form(tmp_path: Path) -> None:
    f = write(
        tmp_path / "inv.yaml",
        """
        hosts:
          - name: a
            address: h1
          - {name: b, connection: local}
        """,
    )
    inv = load_inventory(f)
    assert [h.name for h in inv.hosts.values()] == ["a", "b"]
    assert inv.get("a").source == f"{f}:2"
    assert inv.get("b").source == f"{f}:4"


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    f = write(
        tmp_path / "inv.yaml",
        """
        hosts:
          a: &base {address: h1, user: u, labels: [x]}
          b:
            <<: *base
            address: h2
        """,
    )
    inv = load_inventory(f)
    assert inv.get("b").address == "h2" and inv.get("b").user == "u"
    assert inv.get("b").labels == ["x"]


def test_unsafe_tag_is_a_yaml_error(tmp_path: Path) -> None:
    f = write(tmp_path / "inv.yaml", "hosts:\n  a:\n    address: !!python/name:os.system x\n")
    with pytest.raises(InventoryError, match=f"^{f}:3: invalid YAML: could not determine"):
        load_inventory(f)


@pytest.mark.parametrize("path_kind", ["none", "dir_without_yaml"])
def test_implicit_local_without_an_inventory_file(tmp_path: Path, path_kind: str) -> None:
    path = None
    if path_kind == "dir_without_yaml":  # the ./inventory default, a fresh `dobby init`
        path = tmp_path / "inventory"
        write(path / "README.md", "put yaml here")
        write(path / "hosts.yaml.example", "hosts: {x: {}}")
    inv = load_inventory(path)
    assert list(inv.hosts) == ["local"]
    assert inv.get("local") == implicit_local()
    assert inv.get("local").connection == "local"


@pytest.mark.parametrize(
    "path_kind", ["comments_only", "empty_file", "hosts_empty", "dir_with_an_empty_file"]
)
def test_an_empty_inventory_file_is_an_error_not_local(tmp_path: Path, path_kind: str) -> None:
    path = tmp_path / "inv.yaml"
    if path_kind == "comments_only":
        write(path, "# nothing yet\n")
    elif path_kind == "empty_file":
        write(path, "")
    elif path_kind == "hosts_empty":
        write(path, "hosts: {}\n")
    else:
        path = tmp_path / "inventory"
        write(path / "hosts.yaml", "")  # an editor halfway through its save
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert str(exc.value).startswith(f"{path}: defines no hosts")
    assert "\n" not in str(exc.value)


def test_watcher_keeps_its_hosts_when_every_inventory_file_goes(tmp_path: Path) -> None:
    d = tmp_path / "inventory"
    f = write(d / "hosts.yaml", "hosts:\n  a: {address: h1}\n")
    errors: list[InventoryError] = []
    watcher = InventoryWatcher(d, None, lambda inv: None, errors.append)
    assert watcher.check_now() is True and watcher.error is None
    f.unlink()  # an editor that deletes and then writes, a checkout switching branches
    assert watcher.check_now() is True
    assert watcher.error is not None and watcher.error.startswith(f"{d}: defines no hosts")
    assert watcher.current is not None and list(watcher.current.hosts) == ["a"]
    write(f, "")  # half saved
    assert watcher.check_now() is True and list(watcher.current.hosts) == ["a"]
    write(f, "hosts:\n  b: {address: h2}\n")
    assert watcher.check_now() is True and watcher.error is None
    assert list(watcher.current.hosts) == ["b"]
    assert len(errors) == 2


@pytest.mark.parametrize(
    "text",
    [
        "hosts:\n  a:\n    labels: " + "[" * 5000 + "]" * 5000 + "\n",
        "hosts: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    ],
    ids=["lists", "mappings"],
)
def test_a_deeply_nested_inventory_is_a_one_line_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "inv.yaml", text)
    with pytest.raises(InventoryError) as exc:
        load_inventory(path)
    assert str(exc.value) == f"{path}: invalid YAML: nested too deeply"


def test_missing_explicit_path(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path / "nope.yaml")
    assert str(exc.value) == f"{tmp_path / 'nope.yaml'}: no such file or directory"


def test_unknown_host_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="unknown host 'x'"):
        load_inventory(None).get("x")


def test_directory_merges_sorted_yaml_files(tmp_path: Path) -> None:
    d = tmp_path / "inventory"
    write(d / "b.yml", "hosts: {b: {address: hb}}\n")
    write(d / "a.yaml", "hosts: {a: {address: ha}}\n")
    write(d / "notes.txt", "hosts: {c: {address: hc}}\n")
    inv = load_inventory(d)
    assert list(inv.hosts) == ["a", "b"]
    assert inv.files == [str(d / "a.yaml"), str(d / "b.yml")]
    assert "local" not in inv.hosts


def test_duplicate_host_across_files_names_both_places(tmp_path: Path) -> None:
    d = tmp_path / "inventory"
    write(d / "a.yaml", "hosts:\n  x: {address: h}\n  box: {address: h}\n")
    write(d / "b.yaml", "# second\nhosts:\n  box: {address: h2}\n")
    with pytest.raises(InventoryError) as exc:
        load_inventory(d)
    assert str(exc.value) == (
        f"{d / 'b.yaml'}:3: duplicate host 'box' (also defined at {d / 'a.yaml'}:3)"
    )
    assert exc.value.file == str(d / "b.yaml") and exc.value.line == 3


BAD = [
    ("hosts: {a: {address: h}\n", 2, "invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ("- a\n- b\n", 1, "expected a mapping with defaults, groups or hosts"),
    ("hosts: {}\nhost: {}\n", 2, "unknown top-level key 'host' (did you mean 'hosts'?)"),
    (
        "hosts:\n  box-1:\n    adress: h\n",
        3,
        "unknown field 'adress' in host 'box-1' (did you mean 'address'?)",
    ),
    (
        "hosts:\n  box-1:\n    address: h\n    colour: red\n",
        4,
        "unknown field 'colour' in host 'box-1'",
    ),
    ("defaults:\n  labls: [a]\n", 2, "unknown field 'labls' in defaults (did you mean 'labels'?)"),
    (
        "groups:\n  g:\n    max_agent: 1\n    hosts: {a: {address: h}}\n",
        3,
        "unknown field 'max_agent' in group 'g' (did you mean 'max_agents'?)",
    ),
    (
        "hosts:\n  b:\n    address: h\n    models: {claude: opus, shell: x}\n",
        4,
        "unknown backend 'shell' in 'models' of host 'b' (use claude, codex)",
    ),
    (
        "hosts:\n  b:\n    address: h\n    models: {codex: 'gpt 5'}\n",
        4,
        "invalid model 'gpt 5' for codex in 'models' of host 'b'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    port: 70000\n",
        4,
        "'port' in host 'b' must be an integer 1..65535, got 70000",
    ),
    (
        "hosts:\n  b:\n    address: h\n    port: '22'\n",
        4,
        "'port' in host 'b' must be an integer 1..65535, got '22'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    labels: gpu\n",
        4,
        "'labels' in host 'b' must be a list of strings, got 'gpu'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    labels:\n      - 3\n",
        5,
        "'labels' in host 'b' must be a list of strings, got [3]",
    ),
    (
        "hosts:\n  b: {address: h, max_agents: 0}\n",
        2,
        "'max_agents' in host 'b' must be an integer >= 1, got 0",
    ),
    (
        "hosts:\n  b:\n    address: h\n    env: {TOKEN: [secret-value]}\n",
        4,
        "env value of 'TOKEN' in host 'b' must be a string or number",
    ),
    (
        "hosts:\n  b:\n    address: h\n    env: {'BAD NAME': x}\n",
        4,
        "invalid env name 'BAD NAME' in host 'b'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    backends: [claude, gemini]\n",
        4,
        "unknown backend 'gemini' in host 'b' (use claude, codex, shell)",
    ),
    (
        "hosts:\n  b:\n    address: h\n    permissions: yolo\n",
        4,
        "'permissions' in host 'b' must be one of bypass, edits, plan, got 'yolo'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    connection: k8s\n",
        4,
        "'connection' in host 'b' must be one of ssh, local, slurm, got 'k8s'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    gpus: 2\n",
        4,
        "'gpus' in host 'b' must be true, false or 'auto', got 2",
    ),
    (
        "hosts:\n  b:\n    address: h\n    trust_on_first_use: maybe\n",
        4,
        "'trust_on_first_use' in host 'b' must be true or false, got 'maybe'",
    ),
    ("# c\nhosts:\n  box-1:\n    user: dev\n", 3, "host 'box-1' has connection ssh but no address"),
    (
        "hosts:\n  box 1: {address: h}\n",
        2,
        "invalid host name 'box 1' (use letters, digits, '.', '_', '-')",
    ),
    ("hosts:\n  a: {address: h}\n  a: {address: h2}\n", 3, "duplicate key 'a' (first at line 2)"),
    ("hosts:\n  - address: h\n", 2, "host entry needs a 'name'"),
    ("hosts:\n  a: [1, 2]\n", 2, "host 'a' must be a mapping of fields"),
    ("groups:\n  g:\n    labels: [x]\n", 2, "group 'g' has no hosts"),
    ("hosts: 3\n", 1, "'hosts' must be a mapping"),
    ("hosts:\n  c: {connection: slurm}\n", 2, "host 'c' has connection slurm but no address"),
    (
        "hosts:\n  c:\n    address: login\n    slurm: {partition: gpu}\n    connection: ssh\n",
        2,
        "host 'c' has slurm settings but connection ssh",
    ),
    (
        "hosts:\n  c:\n    address: login\n    connection: slurm\n    slurm:\n"
        "      partition: gpu\n      time_limit: soon\n",
        7,
        "invalid Slurm time limit 'soon': use minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]] "
        "in host 'c'",
    ),
    (
        "hosts:\n  c:\n    address: login\n    connection: slurm\n    slurm:\n"
        "      extra_args: --mem=8G --exclusive\n",
        6,
        "'slurm.extra_args' must be a list of words such as ['--mem=8G'], not one string "
        "in host 'c'",
    ),
    (
        "groups:\n  hpc:\n    connection: slurm\n    slurm: {partiton: gpu}\n"
        "    hosts: {c: {address: login}}\n",
        4,
        "unknown slurm setting 'partiton' (known: account, constraint, extra_args, gpu_request, "
        "gpus_per_task, partition, qos, time_limit, workdir) in group 'hpc'",
    ),
    (
        "hosts:\n  c:\n    address: login\n    connection: slurm\n    slurm: gpu\n",
        5,
        "'slurm' in host 'c' must be a mapping of Slurm settings (partition, ...), got 'gpu'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    account: 'team max'\n",
        4,
        "'account' in host 'b' must be a name, got 'team max'",
    ),
    (
        "hosts:\n  b:\n    address: h\n    accounts: {gemini: x}\n",
        4,
        "'accounts' in host 'b' must be a mapping of backend: account name, got {'gemini': 'x'}",
    ),
]


def test_accounts_merge_from_defaults_and_groups(tmp_path: Path) -> None:
    f = write(
        tmp_path / "inv.yaml",
        "defaults:\n  accounts: {codex: shared}\n"
        "groups:\n  team:\n    account: team-max\n    hosts:\n      a: {address: h}\n"
        "      b: {address: h, accounts: {claude: own}}\n",
    )
    hosts = load_inventory(f).hosts
    assert (hosts["a"].account, hosts["a"].accounts) == ("team-max", {"codex": "shared"})
    assert hosts["b"].accounts == {"codex": "shared", "claude": "own"}


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_files(tmp_path: Path, text: str, line: int, message: str) -> None:
    f = write(tmp_path / "inv.yaml", text)
    with pytest.raises(InventoryError) as exc:
        load_inventory(f)
    assert str(exc.value) == f"{f}:{line}: {message}"
    assert (exc.value.file, exc.value.line, exc.value.reason) == (str(f), line, message)
    assert "\n" not in str(exc.value)
    assert "secret-value" not in str(exc.value)


def test_problems_are_collected_first_reported(tmp_path: Path) -> None:
    f = write(tmp_path / "inv.yaml", "hosts:\n  a: {adress: h}\n  b: {address: h, port: 0}\n")
    problems = check_inventory(f)
    assert [p.line for p in problems] == [2, 3]
    with pytest.raises(InventoryError) as exc:
        load_inventory(f)
    assert exc.value.line == 2
    assert check_inventory(write(tmp_path / "ok.yaml", GOOD)) == []


# --- spokes -------------------------------------------------------------------------------------


def test_spokes_add_list_update_remove(tmp_path: Path) -> None:
    extra = tmp_path / "home" / "spokes.yaml"
    assert list_spokes(extra) == []
    host = add_spoke(extra, {"name": "sp-1", "address": "10.1.1.1", "labels": ["gpu"]})
    assert host.address == "10.1.1.1" and host.labels == ["gpu"]
    assert host.source == f"{extra}:3"
    add_spoke(extra, {"name": "sp-2", "connection": "local"})
    add_spoke(extra, {"name": "sp-1", "address": "10.1.1.2"})  # re-register updates
    spokes = list_spokes(extra)
    assert [(h.name, h.address) for h in spokes] == [("sp-1", "10.1.1.2"), ("sp-2", None)]
    assert not list(extra.parent.glob(".*tmp"))  # no temp file left behind

    inv = load_inventory(None, extra)
    assert list(inv.hosts) == ["local", "sp-1", "sp-2"]
    assert inv.extra_hosts == ["sp-1", "sp-2"]
    assert str(extra) in inv.files

    assert remove_spoke(extra, "sp-2") is True
    assert remove_spoke(extra, "sp-2") is False
    assert [h.name for h in list_spokes(extra)] == ["sp-1"]


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ({"address": "h"}, "a spoke needs a 'name'"),
        (
            {"name": "x", "adress": "h"},
            "unknown field 'adress' in host 'x' (did you mean 'address'?)",
        ),
        (
            {"name": "x", "address": "h", "port": "22"},
            "'port' in host 'x' must be an integer 1..65535, got '22'",
        ),
        ({"name": "x"}, "host 'x' has connection ssh but no address"),
        (
            {"name": "x y", "address": "h"},
            "invalid host name 'x y' (use letters, digits, '.', '_', '-')",
        ),
    ],
)
def test_bad_spoke_rejected_without_touching_file(
    tmp_path: Path, host: dict[str, object], message: str
) -> None:
    extra = tmp_path / "spokes.yaml"
    add_spoke(extra, {"name": "ok", "address": "h"})
    before = extra.read_bytes()
    with pytest.raises(InventoryError) as exc:
        add_spoke(extra, host)
    assert str(exc.value) == message
    assert extra.read_bytes() == before


def test_spoke_cannot_shadow_inventory_host(tmp_path: Path) -> None:
    inv_file = write(tmp_path / "inv.yaml", "hosts: {box: {address: h}}\n")
    extra = tmp_path / "spokes.yaml"
    inv = load_inventory(inv_file, extra)
    with pytest.raises(Conflict, match=f"host 'box' is already defined at {inv_file}:1"):
        add_spoke(extra, {"name": "box", "address": "h2"}, inventory=inv)
    with pytest.raises(Conflict, match="already defined at implicit"):
        add_spoke(extra, {"name": "local", "connection": "local"}, inventory=load_inventory(None))
    assert not extra.exists()


def test_spoke_duplicating_inventory_fails_load(tmp_path: Path) -> None:
    inv_file = write(tmp_path / "inv.yaml", "hosts: {box: {address: h}}\n")
    extra = tmp_path / "spokes.yaml"
    add_spoke(extra, {"name": "box", "address": "h2"})
    with pytest.raises(InventoryError, match=rf"duplicate host 'box' \(also defined at {inv_file}"):
        load_inventory(inv_file, extra)


def test_spoke_file_is_plain_inventory_yaml(tmp_path: Path) -> None:
    extra = tmp_path / "spokes.yaml"
    add_spoke(extra, {"name": "s", "address": "h", "env": {"K": "v"}})
    data = yaml.safe_load(extra.read_text())
    assert data == {"hosts": {"s": {"address": "h", "env": {"K": "v"}}}}


# --- watcher ------------------------------------------------------------------------------------


async def test_watcher_reloads_and_keeps_last_good(tmp_path: Path) -> None:
    d = tmp_path / "inventory"
    f = write(d / "hosts.yaml", "hosts:\n  a: {address: h1}\n")
    changes: list[Inventory] = []
    errors: list[InventoryError] = []
    watcher = InventoryWatcher(d, tmp_path / "spokes.yaml", changes.append, errors.append, 0.05)
    watcher.start()
    try:
        assert watcher.current is not None and list(watcher.current.hosts) == ["a"]
        assert len(changes) == 1 and watcher.error is None

        write(f, "hosts:\n  a: {address: h1}\n  b: {address: h2}\n")  # good edit
        await wait_until_async(lambda: len(changes) == 2, timeout=5, interval=0.02, what="reload 2")
        assert list(watcher.current.hosts) == ["a", "b"]

        write(f, "hosts:\n  a: {address: h1}\n  b: {adress: h2}\n")  # bad edit
        await wait_until_async(lambda: len(errors) == 1, timeout=5, interval=0.02, what="error 1")
        assert watcher.error == (
            f"{f}:3: unknown field 'adress' in host 'b' (did you mean 'address'?)"
        )
        assert list(watcher.current.hosts) == ["a", "b"]  # last good stays in force
        assert len(changes) == 2

        write(f, "hosts:\n  c: {address: h3}\n")  # fixed
        await wait_until_async(lambda: len(changes) == 3, timeout=5, interval=0.02, what="reload 3")
        assert watcher.error is None and list(watcher.current.hosts) == ["c"]

        write(d / "more.yaml", "hosts:\n  d: {address: h4}\n")  # a new file in the directory
        await wait_until_async(lambda: len(changes) == 4, timeout=5, interval=0.02, what="reload 4")
        assert list(watcher.current.hosts) == ["c", "d"]

        add_spoke(tmp_path / "spokes.yaml", {"name": "s", "connection": "local"})
        await wait_until_async(lambda: len(changes) == 5, timeout=5, interval=0.02, what="reload 5")
        assert "s" in watcher.current.hosts
    finally:
        await watcher.stop()


async def test_watcher_started_with_what_its_owner_loaded_reads_only_what_changed_since(
    tmp_path: Path,
) -> None:
    """A hub loads the inventory itself (a bad one stops its start) and hands it over with
    the fingerprint taken before its read: not parsed twice, and an edit made between the
    fingerprint and the hand-over is still loaded at the first check."""
    f = write(tmp_path / "inv.yaml", "hosts:\n  a: {address: h1}\n")
    changes: list[Inventory] = []
    watcher = InventoryWatcher(f, None, changes.append, lambda e: None)
    seen = watcher.fingerprint()
    loaded = load_inventory(f)
    watcher.start(loaded=(seen, loaded))
    try:
        assert watcher.current is loaded and changes == []
        assert watcher.check_now() is False  # nothing changed since: nothing read

        other = InventoryWatcher(f, None, changes.append, lambda e: None)
        before = other.fingerprint()
        write(f, "hosts:\n  a: {address: h1}\n  b: {address: h2}\n")  # after the fingerprint
        other.start(loaded=(before, loaded))
        assert other.check_now() is True and list(changes[-1].hosts) == ["a", "b"]
        await other.stop()
    finally:
        await watcher.stop()


def test_watcher_check_now_is_sync_and_idempotent(tmp_path: Path) -> None:
    f = write(tmp_path / "inv.yaml", "hosts:\n  a: {address: h1}\n")
    errors: list[InventoryError] = []
    watcher = InventoryWatcher(f, None, lambda inv: None, errors.append)
    assert watcher.check_now() is True
    assert watcher.check_now() is False  # nothing changed
    write(f, "hosts: [\n")
    assert watcher.check_now() is True
    assert watcher.error is not None and watcher.error.startswith(f"{f}:2: invalid YAML")
    assert watcher.current is not None and list(watcher.current.hosts) == ["a"]
    f.unlink()
    assert watcher.check_now() is True
    assert watcher.error == f"{f}: no such file or directory"


def test_watcher_survives_a_failing_callback(tmp_path: Path) -> None:
    f = write(tmp_path / "inv.yaml", "hosts:\n  a: {address: h1}\n")

    def boom(inv: Inventory) -> None:
        raise RuntimeError("listener bug")

    watcher = InventoryWatcher(f, None, boom, lambda e: None)
    assert watcher.check_now() is True
    assert watcher.current is not None


SLURM = """
groups:
  hpc:
    connection: slurm
    user: me
    labels: [hpc]
    slurm:
      partition: gpu
      account: lab
      time_limit: "4:00:00"
      extra_args: ["--mem=16G"]
    hosts:
      cluster-a: {address: login-a}
      cluster-b:
        address: login-b
        slurm: {partition: debug, workdir: /shared/dobby, gpus_per_task: 1}
"""


def test_slurm_hosts_merge_group_and_host_settings(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "inv.yaml", SLURM))
    a, b = inv.get("cluster-a"), inv.get("cluster-b")
    assert (a.connection, a.address, a.workdir) == ("slurm", "login-a", "~/.dobby")
    assert a.slurm is not None and b.slurm is not None
    assert (a.slurm.partition, a.slurm.account, a.slurm.time_limit) == ("gpu", "lab", "4:00:00")
    assert a.slurm.extra_args == ("--mem=16G",)
    # a host's keys go over its group's, key by key; slurm.workdir is where Dobby's files live
    assert (b.slurm.partition, b.slurm.account, b.slurm.gpus_per_task) == ("debug", "lab", 1)
    assert b.workdir == "/shared/dobby"
    assert b.to_dict()["slurm"]["extra_args"] == ["--mem=16G"]
    plain = load_inventory(
        write(tmp_path / "p.yaml", "hosts: {c: {connection: slurm, address: x}}")
    )
    assert plain.get("c").slurm is not None and plain.get("c").slurm.partition is None
