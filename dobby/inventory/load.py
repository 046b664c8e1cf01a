"""Parse, validate and watch the inventory: the hosts Dobby may run tasks on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dobby.core.errors import Conflict, InventoryError, NotFound
from dobby.core.files import atomic_write
from dobby.core.models import Host
from dobby.core.slurm import make_settings
from dobby.core.timefmt import utcnow
from dobby.core.yamlerrors import compose, yaml_problem

log = logging.getLogger(__name__)

TOP_KEYS = ("defaults", "groups", "hosts")
# The fields of Host that a file may set; HostFields (dobby/inventory/shapes.py) checks them.
HOST_FIELDS = tuple(f.name for f in dataclasses.fields(Host) if f.name not in ("name", "source"))
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_NULL = "tag:yaml.org,2002:null"
NESTED = "invalid YAML: nested too deeply"
NO_HOSTS = "defines no hosts (add hosts, or remove the inventory to run on this machine alone)"


def implicit_local() -> Host:
    """Return the host Dobby uses when no inventory defines any: this machine."""
    # Spelled out, not left to Host's defaults: this is the documented embedded default.
    backends = ["claude", "codex", "shell"]
    return Host(name="local", connection="local", backends=backends, max_agents=4,
                permissions="edits", workdir="~/.dobby", source="implicit")  # fmt: skip


def is_implicit(inventory: Inventory) -> bool:
    """Tell whether ``inventory`` is the implicit one (this machine alone, no file)."""
    return all(host.source == "implicit" for host in inventory.hosts.values())


@dataclass
class Inventory:
    """The hosts of the inventory, as of one successful load."""

    hosts: dict[str, Host] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    loaded_at: str = field(default_factory=utcnow)
    extra_hosts: list[str] = field(default_factory=list)  # names that came from spokes.yaml

    def get(self, name: str) -> Host:
        """Return the host called ``name`` or raise NotFound."""
        try:
            return self.hosts[name]
        except KeyError:
            raise NotFound(f"unknown host '{name}'") from None


# Each item: (key, key line, value line, value); lines are None for plain dicts (spokes API).
_Item = tuple[str, int | None, int | None, Any]
_Layer = dict[str, Any]


class _Parser:
    """Collect hosts and problems from inventory documents, in order."""

    def __init__(self) -> None:
        self.problems: list[InventoryError] = []
        self.hosts: dict[str, Host] = {}
        self.file = ""
        self.loader: yaml.SafeLoader = yaml.SafeLoader("")

    def report(self, message: str, line: int | None) -> None:
        self.problems.append(InventoryError(message, file=self.file or None, line=line))

    def report_yaml(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        self.report(f"invalid YAML: {exc.problem or exc.context}", mark.line + 1 if mark else None)

    def parse_file(self, path: Path) -> list[str]:
        """Add the hosts defined in ``path``; return their names."""
        self.file = str(path)
        try:
            return self._parse_file(path)
        except RecursionError:  # e.g. [[[[…]]]]: PyYAML composes and builds recursively
            self.report("invalid YAML: nested too deeply", None)
            return []

    def _parse_file(self, path: Path) -> list[str]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.report(f"cannot read: {exc}", None)
            return []
        try:
            loader, root = compose(text)
        except yaml.YAMLError as exc:
            line, message = yaml_problem(exc, text)
            self.report(message, line)
            return []
        if root is None:
            return []  # an empty file (or only comments) defines nothing
        if not isinstance(root, yaml.MappingNode):
            self.report("expected a mapping with defaults, groups or hosts", _line(root))
            return []
        self.loader = loader
        try:
            return self._walk(root)
        except yaml.MarkedYAMLError as exc:  # e.g. an unknown !tag or a bad `<<` merge
            self.report_yaml(exc)
            return []

    def _walk(self, root: yaml.MappingNode) -> list[str]:
        """Add the hosts of one document's root mapping; return their names."""
        top = {key: (kline, node) for key, kline, node in self._pairs(root)}
        for key, (kline, _) in top.items():
            if key not in TOP_KEYS:
                self.report(f"unknown top-level key '{key}'{_suggest(key, TOP_KEYS)}", kline)
        defaults: _Layer = {}
        if "defaults" in top:
            items = self._items(top["defaults"][1], "defaults")
            defaults = self.layer(items, "defaults", HOST_FIELDS)
        names: list[str] = []
        if "groups" in top:
            for group, gline, gnode in self._pairs(top["groups"][1], "groups"):
                where = f"group '{group}'"
                items = self._items(gnode, where)
                hosts_node = next((i[3] for i in items if i[0] == "hosts"), None)
                glayer = self.layer([i for i in items if i[0] != "hosts"], where, HOST_FIELDS)
                if hosts_node is None:
                    self.report(f"{where} has no hosts", gline)
                    continue
                names += self._host_nodes(hosts_node, [defaults, glayer])
        if "hosts" in top:
            names += self._host_nodes(top["hosts"][1], [defaults])
        return names

    def _host_nodes(self, node: yaml.Node, parents: list[_Layer]) -> list[str]:
        """Add the hosts of a ``hosts:`` node (mapping or list form) on top of ``parents``."""
        names = []
        if isinstance(node, yaml.SequenceNode):
            for entry in node.value:
                items = self._items(entry, "host entry")
                named = [i for i in items if i[0] == "name"]
                if not named or not isinstance(named[0][3], str | int):
                    if entry.tag != _NULL:
                        self.report("host entry needs a 'name'", _line(entry))
                    continue
                name, nline = str(named[0][3]), named[0][1]
                rest = [i for i in items if i[0] != "name"]
                if self.add(name, nline, parents, rest):
                    names.append(name)
        else:
            for name, nline, hnode in self._pairs(node, "hosts"):
                items = self._items(hnode, f"host '{name}'")
                if self.add(name, nline, parents, items):
                    names.append(name)
        return names

    def _pairs(self, node: yaml.Node, what: str = "") -> list[tuple[str, int, yaml.Node]]:
        """Return (key, key line, value node) of a mapping node, reporting duplicate keys."""
        if node.tag == _NULL:
            return []  # `hosts:` with every entry commented out
        if not isinstance(node, yaml.MappingNode):
            self.report(f"'{what}' must be a mapping", _line(node))
            return []
        seen: dict[str, int] = {}
        for knode, _ in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged from an anchor may be overridden
            key, kline = str(knode.value), _line(knode)
            if key in seen:
                self.report(f"duplicate key '{key}' (first at line {seen[key]})", kline)
            seen.setdefault(key, kline)
        self.loader.flatten_mapping(node)  # resolve `<<: *anchor` merges
        pairs: dict[str, tuple[int, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = str(knode.value)
            if key not in seen or _line(knode) == seen[key]:
                pairs[key] = (_line(knode), vnode)  # later wins, as YAML merges want
        return [(key, kline, vnode) for key, (kline, vnode) in pairs.items()]

    def _items(self, node: yaml.Node, where: str) -> list[_Item]:
        """Return the fields of a mapping node as items, with constructed values."""
        if node.tag == _NULL:
            return []
        if not isinstance(node, yaml.MappingNode):
            self.report(f"{where} must be a mapping of fields", _line(node))
            return []
        out: list[_Item] = []
        for key, kline, vnode in self._pairs(node, where):
            # `hosts` stays a node: it is walked, not validated as a field.
            value = vnode if key == "hosts" else self.loader.construct_object(vnode, deep=True)
            if key == "slurm" and isinstance(vnode, yaml.MappingNode) and isinstance(value, dict):
                # where each Slurm setting is written: its error points at its own line
                value = _Located(value)
                value.lines = {str(k.value): _line(k) for k, _ in vnode.value}
            out.append((key, kline, _line(vnode), value))
        return out

    def layer(self, items: Iterable[_Item], where: str, allowed: Iterable[str]) -> _Layer:
        """Validate fields with HostFields; return the good ones, reporting the bad ones."""
        allowed = tuple(allowed)
        values: dict[str, Any] = {}
        lines: dict[str, int | None] = {}
        for key, kline, vline, value in items:
            if key not in allowed:
                self.report(f"unknown field '{key}' in {where}{_suggest(key, allowed)}", kline)
                continue
            values[key], lines[key] = value, vline
        # Imported here: pydantic's models cost the CLI's start, which reads inventories too.
        import pydantic

        from dobby.core.fields import error_message
        from dobby.inventory.shapes import HostFields

        context = {"where": where}
        while values:
            try:
                shape = HostFields.model_validate(values, context=context)
            except pydantic.ValidationError as exc:
                for error in exc.errors(include_url=False):
                    key = str(error["loc"][0]) if error["loc"] else ""
                    # A slurm setting's error points at its own line (Bad.line).
                    line = getattr(error.get("ctx", {}).get("error"), "line", None)
                    self.report(error_message(error), line or lines.get(key))
                    # Report each bad field once and check the rest again; a problem with no
                    # field (there is none today) drops the whole layer.
                    if key in values:
                        del values[key]
                    else:
                        values.clear()
                continue
            return shape.model_dump(mode="json", include=set(values))
        return {}

    def add(self, name: str, line: int | None, parents: list[_Layer], items: list[_Item]) -> bool:
        """Validate and add one host; return whether it was added."""
        before = len(self.problems)
        if not _NAME_RE.fullmatch(name):
            self.report(f"invalid host name '{name}' (use letters, digits, '.', '_', '-')", line)
        where = f"host '{name}'"
        values = _merge([*parents, self.layer(items, where, HOST_FIELDS)])
        if "connection" not in values and name == "local":
            values["connection"] = "local"  # `local:` alone means this machine
        connection = values.get("connection", "ssh")
        if connection in ("ssh", "slurm") and not values.get("address"):
            if len(self.problems) == before:
                self.report(f"{where} has connection {connection} but no address", line)
        if values.get("slurm") is not None and connection != "slurm":
            if len(self.problems) == before:
                self.report(f"{where} has slurm settings but connection {connection}", line)
        if connection == "slurm":
            values["slurm"] = make_settings(values.get("slurm"))
            if values["slurm"].workdir:  # Dobby's files live on the shared filesystem
                values["workdir"] = values["slurm"].workdir
        source = f"{self.file}:{line}" if self.file and line else (self.file or "api")
        if name in self.hosts:
            self.report(
                f"duplicate host '{name}' (also defined at {self.hosts[name].source})", line
            )
        if len(self.problems) > before:
            return False
        self.hosts[name] = Host(name=name, source=source, **values)
        return True


class _Located(dict[str, Any]):
    """A mapping read from YAML that remembers the line of each of its keys."""

    lines: dict[str, int]


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _merge(layers: list[_Layer]) -> dict[str, Any]:
    """Merge field layers (defaults < group < host); labels are unioned; env, slurm, accounts
    and models mappings merged key by key."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "labels" and key in values:
                values[key] = values[key] + [v for v in value if v not in values[key]]
            elif key in ("env", "slurm", "accounts", "models") and key in values:
                values[key] = {**values[key], **value}
            else:
                # Copy so hosts sharing a group default never share one list or dict.
                values[key] = type(value)(value) if isinstance(value, list | dict) else value
    return values


def inventory_files(path: Path | None) -> list[Path]:
    """Return the YAML files of an inventory path (a file, or a directory's *.yaml sorted)."""
    if path is None:
        return []
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.suffix in (".yaml", ".yml") and p.is_file() and not p.name.startswith(".")
        )
    raise InventoryError("no such file or directory", file=str(path))


def check_inventory(path: Path | None, extra: Path | None = None) -> list[InventoryError]:
    """Return every problem of the inventory (empty when it loads), in file and line order."""
    try:
        return _load(path, extra)[1]
    except InventoryError as exc:
        return [exc]


def load_inventory(path: Path | None, extra: Path | None = None) -> Inventory:
    """Load the inventory at ``path`` plus the registered spokes in ``extra``."""
    inventory, problems = _load(path, extra)
    if problems:
        raise problems[0]
    return inventory


def _load(path: Path | None, extra: Path | None) -> tuple[Inventory, list[InventoryError]]:
    files = inventory_files(path)
    parser = _Parser()
    order: list[str] = []
    for file in files:
        try:
            parser.parse_file(file)
        except RecursionError:  # [[[[…]]]]: PyYAML composes and builds recursively
            parser.problems.append(InventoryError(NESTED, file=str(file)))
        order.append(str(file))
    if not files:
        # No inventory, or a directory with no inventory file yet (the ./inventory default, a
        # fresh `dobby init`): run on this machine.
        parser.hosts["local"] = implicit_local()
    elif not parser.hosts and not parser.problems:
        # A file that is there but defines nothing is a mistake, or an editor halfway through
        # a save: never a reason to run tasks on the hub's own machine instead.
        parser.problems.append(InventoryError(NO_HOSTS, file=str(path)))
    extra_names: list[str] = []
    if extra is not None and extra.is_file():
        extra_names = parser.parse_file(extra)
        order.append(str(extra))
    rank = {name: i for i, name in enumerate(order)}
    problems = sorted(parser.problems, key=lambda e: (rank.get(e.file or "", -1), e.line or 0))
    inventory = Inventory(hosts=parser.hosts, files=order, extra_hosts=extra_names)
    return inventory, problems


# --- spokes: hosts added through the API, kept in DOBBY_HOME/spokes.yaml -----------------------

_SPOKES_HEADER = "# Hosts registered with POST /spokes/register. Managed by dobby.\n"


def list_spokes(extra: Path) -> list[Host]:
    """Return the hosts registered in ``extra`` (none if the file does not exist)."""
    if not extra.is_file():
        return []
    parser = _Parser()
    parser.parse_file(extra)
    if parser.problems:
        raise parser.problems[0]
    return list(parser.hosts.values())


def add_spoke(extra: Path, host: dict[str, Any], *, inventory: Inventory | None = None) -> Host:
    """Validate a host mapping and add or update it in ``extra`` atomically."""
    name = host.get("name")
    if not isinstance(name, str):
        raise InventoryError("a spoke needs a 'name'")
    fields = {k: v for k, v in host.items() if k != "name"}
    if inventory is not None and name in inventory.hosts and name not in inventory.extra_hosts:
        raise Conflict(f"host '{name}' is already defined at {inventory.hosts[name].source}")
    parser = _Parser()  # no file: problems read "message", fit for an API error
    parser.add(name, None, [], [(k, None, None, v) for k, v in fields.items()])
    if parser.problems:
        raise parser.problems[0]
    hosts = _read_spokes(extra)
    hosts[name] = fields
    atomic_write(extra, _SPOKES_HEADER + yaml.safe_dump({"hosts": hosts}, sort_keys=False))
    return next(h for h in list_spokes(extra) if h.name == name)


def remove_spoke(extra: Path, name: str) -> bool:
    """Remove a registered host from ``extra``; return whether it was there."""
    hosts = _read_spokes(extra)
    if hosts.pop(name, None) is None:
        return False
    atomic_write(extra, _SPOKES_HEADER + yaml.safe_dump({"hosts": hosts}, sort_keys=False))
    return True


def _read_spokes(extra: Path) -> dict[str, Any]:
    """Return the raw ``hosts`` mapping of the spokes file."""
    if not extra.is_file():
        return {}
    try:
        data = yaml.safe_load(extra.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid YAML: {exc}", file=str(extra)) from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        raise InventoryError("expected a 'hosts' mapping", file=str(extra))
    return {str(k): v or {} for k, v in hosts.items()}


# --- watcher ------------------------------------------------------------------------------------


class InventoryWatcher:
    """Reload the inventory when its files change; keep the last good one on a bad edit."""

    def __init__(
        self,
        path: Path | None,
        extra: Path | None,
        on_change: Callable[[Inventory], None],
        on_error: Callable[[InventoryError], None],
        interval: float = 1.0,
    ) -> None:
        self.path = path
        self.extra = extra
        self.on_change = on_change
        self.on_error = on_error
        self.interval = interval
        self.current: Inventory | None = None
        self.error: str | None = None
        self._seen: object = None
        self._task: asyncio.Task[None] | None = None

    def fingerprint(self) -> object:
        """Return what identifies the files' state: names, inodes, sizes and mtimes."""
        try:
            files = inventory_files(self.path)
        except InventoryError:
            files = []
        paths = [*files, *([self.extra] if self.extra is not None else [])]
        state: list[object] = [self.path is not None and self.path.exists()]
        for p in paths:
            try:
                st = p.stat()
                state.append((str(p), st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                state.append((str(p), None))
        return tuple(state)

    def check_now(self) -> bool:
        """Reload if the files changed since the last check; return whether they had."""
        # Fingerprint before reading: a write during the load shows up at the next check.
        seen = self.fingerprint()
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            inventory = load_inventory(self.path, self.extra)
            if is_implicit(inventory) and self.current and not is_implicit(self.current):
                # Every inventory file gone at once (an editor's save, a checkout): keep the
                # hosts rather than start running tasks on the hub's own machine.
                raise InventoryError(NO_HOSTS, file=str(self.path) if self.path else None)
        except InventoryError as exc:
            self.error = str(exc)
            log.warning("inventory not reloaded, keeping the last good one: %s", exc)
            self._call(self.on_error, exc)
            return True
        self.current, self.error = inventory, None
        self._call(self.on_change, inventory)
        return True

    @staticmethod
    def _call(callback: Callable[[Any], None], arg: object) -> None:
        try:
            callback(arg)
        except Exception:  # a failing listener must not stop the watcher
            log.exception("inventory watcher callback failed")

    def start(self, loaded: tuple[object, Inventory] | None = None) -> None:
        """Load now, then poll in a task of the running event loop.

        ``loaded``: the :meth:`fingerprint` taken before the caller loaded the inventory
        itself, and what it loaded: not read again (a hub starting with 500 tasks to re-adopt
        parsed it twice before its first connect).
        """
        if loaded is None:
            self.check_now()
        else:
            self._seen, self.current = loaded
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        said = ""  # a failure to read the files, said once while it lasts (every second)
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check_now()
                said = ""
            except OSError as exc:  # unreadable for now (the hub out of descriptors…)
                if str(exc) != said:
                    log.warning(
                        "inventory check failed (tried again each %gs): %s", self.interval, exc
                    )
                said = str(exc)
            except Exception:
                log.exception("inventory check failed")

    async def stop(self) -> None:
        """Stop polling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
