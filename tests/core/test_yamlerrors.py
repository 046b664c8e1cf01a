"""Reading YAML with line numbers: libyaml composes, pure Python words the errors."""

from __future__ import annotations

import pytest
import yaml

from dobby.core import yamlerrors
from dobby.core.yamlerrors import compose, yaml_problem


def test_a_document_is_composed_with_the_line_of_each_node() -> None:
    loader, root = compose("hosts:\n  a:\n    port: 22\n")
    assert isinstance(root, yaml.MappingNode)
    ((key, value),) = root.value
    assert (key.value, key.start_mark.line) == ("hosts", 0)
    port = value.value[0][1].value[0][1]
    assert port.start_mark.line == 2
    assert loader.construct_object(port) == 22


def test_an_empty_document_has_no_root() -> None:
    assert compose("# nothing here\n")[1] is None


def test_a_refused_document_is_worded_by_pure_python() -> None:
    with pytest.raises(yaml.YAMLError) as exc:
        compose("port: [\n")
    assert yaml_problem(exc.value, "port: [\n") == (
        2,
        "invalid YAML: expected the node content, but found '<stream end>'",
    )


def test_a_control_character_is_named_with_its_line() -> None:
    text = "a: 1\nb: \x07\n"
    with pytest.raises(yaml.YAMLError) as exc:
        compose(text)
    assert yaml_problem(exc.value, text) == (
        2,
        "invalid YAML: unacceptable character #x0007 (special characters are not allowed)",
    )


def test_what_only_libyaml_refuses_is_read_by_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing(yaml.SafeLoader):
        def get_single_node(self) -> yaml.Node | None:
            raise yaml.YAMLError("libyaml's limit")

    monkeypatch.setattr(yamlerrors, "LOADER", Refusing)
    loader, root = compose("a: 1\n")
    assert type(loader) is yaml.SafeLoader
    assert loader.construct_document(root) == {"a": 1}
