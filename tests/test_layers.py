"""Imports inside dobby/ point one way: no import circle, no import up a layer (tools/layers.py)."""

from __future__ import annotations

from tools import layers


def test_imports_point_one_way() -> None:
    found = layers.problems()
    assert found == [], "\n".join(found)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in layers.PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(layers.ALLOWED), sorted(packages - set(layers.ALLOWED))


def test_a_new_upward_import_is_reported() -> None:
    edges = {"dobby.core.models": [(3, "dobby.hub.core")], "dobby.hub.core": []}
    assert layers.upward(edges) == [
        "dobby.core.models:3: imports dobby.hub.core ('core' may not import 'hub')"
    ]
    assert layers.circles({"dobby.a.x": [(1, "dobby.b.y")], "dobby.b.y": [(1, "dobby.a.x")]})
