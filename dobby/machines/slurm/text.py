"""Slurm's text conventions: ``scontrol -o`` Key=Value lines, GRES strings, ``None``."""

from __future__ import annotations

import re

_FIELD = re.compile(r"(?:^|(?<=\s))([A-Za-z][\w/:.]*)=")
_COUNT = re.compile(r"^(\d+)")


def none_to_empty(text: str) -> str:
    """Return Slurm's ``None``/``(null)`` as an empty string, other text stripped."""
    text = text.strip()
    return "" if text in ("None", "(null)") else text


def parse_fields(line: str) -> dict[str, str]:
    """Split one ``scontrol show ... -o`` line into Key=Value; a value runs to the next key.

    Values may hold spaces (Reason, OS, paths); a repeated key (per-node ``Nodes=``) keeps
    its first value.
    """
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(line))
    for number, match in enumerate(matches):
        end = matches[number + 1].start() if number + 1 < len(matches) else len(line)
        fields.setdefault(match.group(1), line[match.end() : end].strip())
    return fields


def split_gres(text: str) -> list[str]:
    """Split a GRES list on the commas outside parentheses (``gpu:a100:2(IDX:0,2),fpga:1``)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip() and p.strip() not in ("(null)", "N/A")]


def gpu_count(text: str) -> int:
    """Return how many GPUs a GRES string holds (``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:0``)."""
    total = 0
    for item in split_gres(text):
        words = item.split("(", 1)[0].split(":")
        if words[0] != "gpu":
            continue
        match = _COUNT.match(words[-1]) if len(words) > 1 else None
        total += int(match.group(1)) if match else 1  # plain "gpu" means one
    return total


def gpu_indices(text: str) -> tuple[int, ...]:
    """Return the GPU indices in ``GRES=gpu:2(IDX:0-1)`` (scontrol show job -d)."""
    found: list[int] = []
    for item in split_gres(text):
        if not item.startswith("gpu"):
            continue
        match = re.search(r"IDX:([0-9,\-]+)", item)
        if not match:
            continue
        for part in match.group(1).split(","):
            low, _, high = part.partition("-")
            if low.isdigit() and (not high or high.isdigit()):
                found.extend(range(int(low), int(high or low) + 1))
    return tuple(sorted(set(found)))
