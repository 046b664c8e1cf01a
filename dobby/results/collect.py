"""The runner's collection hook: bring a finished task's branch and artifacts back.

Called once a task's exit file exists, over the task's own transport. It never raises: a
failure to bring something back is recorded in ``collect_error`` and the task keeps the
status its agent earned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dobby.core.errors import DobbyError
from dobby.core.models import Task
from dobby.hostside.scripts import TaskPaths
from dobby.results import artifacts, gitback
from dobby.transport import Transport

log = logging.getLogger("dobby.results")

BASE_FILE = "base"  # tasks/<id>/base: the commit the task's worktree started from


async def recorded_base(transport: Transport, path: str) -> str | None:
    """Return the base commit the launch wrote on the host (None when there is none)."""
    try:
        data = await transport.read_from(path, 0, 128)
    except DobbyError as exc:
        log.warning("reading %s on %s: %s", path, transport.host.name, exc)
        return None
    finally:
        transport.release(path)
    text = (data or b"").decode("ascii", "replace").strip()
    return text if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text) else None


@dataclass
class Outputs:
    """What collection brought back, applied to the task in one step."""

    git: gitback.GitResult | None = None
    artifacts: list[dict[str, Any]] | None = None
    errors: list[str] = field(default_factory=list)

    def apply(self, task: Task) -> None:
        """Set the task's result fields from what came back."""
        if self.git is not None or task.project:
            # Describe this attempt only: nothing of an earlier one survives a failed retrieval.
            task.head_commit = self.git.head if self.git else None
            task.branch = self.git.branch if self.git else None
            task.diff_stat = (self.git.diff_stat or None) if self.git else None
        if self.artifacts is not None:
            task.artifacts = self.artifacts
        task.collect_error = "; ".join(self.errors) or None


async def collect_outputs(
    *,
    task: Task,
    transport: Transport,
    paths: TaskPaths,
    project_path: str | None,
    results_dir: Path,
    lock: asyncio.Lock,
    artifacts_left: bool = True,
) -> Outputs:
    """Bring back the task's git work (project tasks) and its artifacts.

    ``artifacts_left`` False: the run is known to have left no artifacts directory.
    """
    out = Outputs()
    if task.project and task.base_commit and project_path:
        try:
            out.git = await gitback.bring_back(
                task=task, transport=transport, paths=paths, project_path=project_path, lock=lock
            )
        except Exception as exc:  # noqa: BLE001 - recorded on the task, never fatal
            out.errors.append(_describe("git", exc))
    try:
        out.artifacts = await artifacts.bring_back(
            transport=transport,
            paths=paths,
            globs=list(task.artifact_globs),
            root=results_dir / "artifacts",
            left=artifacts_left,
        )
    except Exception as exc:  # noqa: BLE001
        out.errors.append(_describe("artifacts", exc))
    return out


def _describe(what: str, exc: Exception) -> str:
    if not isinstance(exc, DobbyError | OSError):
        log.exception("collecting %s failed", what)
    return f"{what}: {exc}"
