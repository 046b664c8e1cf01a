"""Check that imports inside ``dobby/`` point one way: no circle, no import up a layer.

``python -m tools.layers`` prints every violation and exits 1 when there is one. The layers
below are the architecture: a package may import only the packages listed for it (and itself).
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dobby"

# Each package and the packages it may import, lowest layer first. Read top to bottom, this is
# core ← pure logic ← adapters ← services ← hub ← clients.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "replay": set(),  # the fake agents: stdlib only, copied onto test hosts
    "hostside": {"core"},
    "backends": {"core", "hostside"},
    "inventory": {"core"},
    "transport": {"core"},
    "store": {"core", "hostside", "backends"},
    "machines": {"core", "hostside", "backends", "inventory", "transport"},
    "results": {"core", "hostside", "backends", "transport", "store"},
    "runner": {"core", "hostside", "backends", "transport", "store", "machines", "results"},
    "scheduler": {"core", "backends", "store", "machines", "results", "runner"},
    "races": {"core", "backends", "store", "machines", "results", "runner", "scheduler"},
    "hub": {
        "core",
        "hostside",
        "backends",
        "inventory",
        "transport",
        "store",
        "machines",
        "results",
        "runner",
        "scheduler",
        "races",
    },  # fmt: skip
    "offline": {"core", "hostside", "backends", "inventory", "transport", "store", "machines"},
    "client": {"core"},
    "integrations": {"core", "client"},
    "cli": {"core", "client", "offline", "replay", "integrations"},
}
# The CLI starts a hub (`dobby start`, `dobby demo`) through this one entry point only.
ENTRY_POINTS = {("cli", "dobby.hub.server")}
TOP_LEVEL = {"dobby", "dobby.__main__"}


def module_name(path: Path) -> str:
    """Return the dotted module name of a file under dobby/."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, module) for every ``dobby`` module a file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dobby"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = (
                    here.split(".")[: -node.level]
                    if path.name != "__init__.py"
                    else here.split(".")
                )
                base = ".".join(pkg + ([node.module] if node.module else []))
            if not base.startswith("dobby"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if _is_module(candidate) else base


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def package_of(module: str) -> str | None:
    """Return the layer package of a module (``dobby.store.db`` → ``store``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, list[tuple[int, str]]]:
    """Return module → [(line, imported module)] for every module of dobby/."""
    edges: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        edges[mod] = [(line, dep) for line, dep in imports(path) if _is_module(dep)]
    return edges


def upward(edges: dict[str, list[tuple[int, str]]]) -> list[str]:
    """Return one message per import a layer does not allow."""
    found: list[str] = []
    for mod, deps in edges.items():
        src = package_of(mod)
        for line, dep in deps:
            dst = package_of(dep)
            if src is None or dst is None or src == dst or dep in TOP_LEVEL or mod in TOP_LEVEL:
                continue
            if (src, dep) in ENTRY_POINTS:
                continue
            if src not in ALLOWED:
                found.append(f"{mod}: package '{src}' has no layer in tools/layers.py")
            elif dst not in ALLOWED[src]:
                found.append(f"{mod}:{line}: imports {dep} ('{src}' may not import '{dst}')")
    return list(dict.fromkeys(found))


def circles(edges: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Return the import circles between modules (strongly connected components > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for _, dep in edges.get(node, []):
            if dep not in edges:
                continue
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in edges:
        if node not in index:
            visit(node)
    return found


def problems() -> list[str]:
    """Return every layering problem of dobby/ as one line each."""
    edges = graph()
    found = upward(edges)
    # A package's __init__ importing its own modules is not a circle worth reporting.
    for component in circles(edges):
        found.append("import circle: " + " ↔ ".join(component))
    return found


def main() -> int:
    """Print the problems; return 1 when there is any."""
    found = problems()
    for line in found:
        print(line)
    edges = graph()
    print(
        f"{len(edges)} modules, {sum(len(d) for d in edges.values())} imports, "
        f"{len(found)} problem(s)",
        file=sys.stderr,
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
