"""One-line messages, with a line number, for what PyYAML refuses (pure; no I/O)."""

from __future__ import annotations

import yaml


def yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """Return (line, "invalid YAML: …") for a PyYAML error; the line is None if unknown."""
    if isinstance(exc, yaml.reader.ReaderError):
        # A control character: PyYAML's message spans lines and names no line.
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        return line, f"invalid YAML: unacceptable character #x{exc.character:04x} ({exc.reason})"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return (mark.line + 1 if mark else None), f"invalid YAML: {exc.problem or exc.context}"
    return None, "invalid YAML: " + " ".join(str(exc).split())
