"""Names and patterns from users (projects, artifacts), checked before a path or shell sees them.

Pure (no I/O), so the submit validation can use it.
"""

from __future__ import annotations

import re
from typing import Any

from dobby.core.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a project's name
MAX_GLOBS = 32
MAX_GLOB_LEN = 300


def validate_globs(value: Any) -> list[str]:
    """Check the ``artifacts`` of a POST /tasks body: relative globs inside the worktree."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("'artifacts' must be a list of glob patterns")
    if len(value) > MAX_GLOBS:
        raise ValidationError(f"at most {MAX_GLOBS} artifact patterns")
    for pattern in value:
        if not pattern.strip() or len(pattern) > MAX_GLOB_LEN:
            raise ValidationError(f"invalid artifact pattern {pattern!r}")
        if any(ord(c) < 32 for c in pattern) or pattern.startswith(("/", "~", "-")):
            raise ValidationError(
                f"invalid artifact pattern {pattern!r}: use a path relative to the worktree"
            )
        if ".." in pattern.split("/"):
            raise ValidationError(f"invalid artifact pattern {pattern!r}: '..' is not allowed")
    return list(value)


def safe_name(name: str) -> str:
    """Return ``name`` normalised as a relative path, or raise ValidationError."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise ValidationError(f"invalid artifact name {name!r}")
    if any(ord(c) < 32 for c in name) or name.startswith("/"):
        raise ValidationError(f"invalid artifact name {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValidationError(f"invalid artifact name {name!r}: must stay inside the artifacts")
    return "/".join(parts)
