"""Collect a task that ended: its result from the stream, its stderr, branch and artifacts.

Collection may be tried again and again (a host that drops, a hub disk that is full): every
step is idempotent, and nothing is saved until all of it worked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dobby.backends import Backend, get_backend
from dobby.backends.pricing import ModelPrice
from dobby.core.errors import TransportError
from dobby.core.models import Reason, Result, Task, TaskStatus
from dobby.core.ports import GetTask
from dobby.core.timefmt import utcnow
from dobby.hostside import scripts
from dobby.results import followup, halves
from dobby.results.collect import BASE_FILE, collect_outputs, recorded_base
from dobby.runner import verify
from dobby.store.git import RepoLocks
from dobby.store.tasklog import TaskLogs
from dobby.transport import Transport

log = logging.getLogger("dobby.runner")

ERR_LIMIT = 1 << 20


@dataclass(frozen=True)
class Left:
    """What a run left besides its output, as its host's log stream saw at its end."""

    stderr: bool = True  # a non-empty err.log
    artifacts: bool = True  # something in the artifacts directory


class Collector:
    """Turn an ended task's output into its result fields."""

    def __init__(
        self,
        *,
        logs: TaskLogs,
        locks: RepoLocks,
        get_task: GetTask,
        project_path: Callable[[str], str],
        prices: Mapping[str, ModelPrice],
        host_model: Callable[[Task], str | None] = lambda task: None,
    ) -> None:
        self.logs = logs
        self._host_model = host_model
        self.locks = locks
        self._get_task = get_task
        self._project_path = project_path
        self._prices = prices

    async def collect(
        self,
        task: Task,
        transport: Transport,
        paths: scripts.TaskPaths,
        exit_code: int | None,
        *,
        cancelled: bool = False,
        left: Left | None = None,
    ) -> Task | None:
        """Return the task with its result applied (unsaved), None if it changed meanwhile.

        ``cancelled``: it was cancelled and its agent stopped; it keeps status ``cancelled``
        and gains everything else a result has (session, tokens, cost, branch).
        ``left``: what the log stream saw the run leave (None: unknown, look on the host).
        """
        left = left or Left()
        err = b""
        if left.stderr:
            err = await transport.read_from(paths.file("err.log"), 0, ERR_LIMIT) or b""
            transport.release(paths.file("err.log"))
        err_path = self.logs.task_dir(task.id) / "err.log"
        if err or err_path.exists():  # an earlier attempt's must not stay
            await asyncio.to_thread(_write, err_path, err)
        stderr_tail = err[-4000:].decode("utf-8", "replace")
        backend = get_backend(task.backend)
        host_facts = await self._host_facts(backend, transport, paths)
        checked = await verify.read_outcome(task, transport, paths, self.logs, exit_code)
        result = backend.collect(
            # This run's lines (a half after a limit: its own), not the check's after them.
            self.logs.lines(task.id, task.log_base, end=checked.agent_end),
            exit_code=exit_code,
            stderr_tail=stderr_tail,
            model=task.model or self._host_model(task),
            prices=self._prices,
            host_facts=host_facts,
            now=time.time(),
        )
        if task.project and not task.base_commit:
            task.base_commit = await recorded_base(transport, paths.file(BASE_FILE))
        outputs = await collect_outputs(
            task=task,
            transport=transport,
            paths=paths,
            project_path=self._project_path(task.project) if task.project else None,
            results_dir=self.logs.task_dir(task.id),
            lock=self.locks.project(task.project or ""),
            artifacts_left=left.artifacts,
        )
        current = self._get_task(task.id)
        expected = TaskStatus.CANCELLED if cancelled else TaskStatus.RUNNING
        if current.status != expected.value:
            return None  # cancelled (or ended otherwise) meanwhile: that wins
        task = current
        task.exit_code = exit_code
        task.summary = result.summary
        task.cost_usd = result.cost_usd
        task.tokens = result.tokens
        task.models = result.models
        task.turns = result.turns
        task.session_id = result.session_id or task.session_id
        apply_agent_facts(task, result)
        followup.settle_usage(task, self._get_task, self._prices)
        own = halves.settle(task, prices=self._prices)
        outputs.apply(task)
        for path in ("out.jsonl", "exit"):
            transport.release(paths.file(path))
        if cancelled:
            task.summary = result.summary if result.status == TaskStatus.COMPLETED else None
            return task
        task.error = result.error
        task.status = result.status
        reason = result.reason
        if exit_code in (124, 137) and task.timeout:
            reason = Reason.TIMEOUT
            task.error = f"timed out after {task.timeout:g}s"
        if reason is Reason.USAGE_LIMIT and result.quota is not None:
            # A limit is no verdict on the work: this half is recorded and the task waits
            # (the follower hands it to the hub's usage-limit handling).
            halves.record_half(task, own, finished_at=utcnow())
            task.reason = reason.value
            return task
        status, reason, task.error = verify.judge(task, result.status, reason, task.error, checked)
        task.status = status
        task.reason = reason.value if reason else None
        return task

    async def _host_facts(
        self, backend: Backend, transport: Transport, paths: scripts.TaskPaths
    ) -> str:
        """Return what the backend reads on the host beyond the stream ("" when unreachable)."""
        command = backend.facts_command(paths=paths)
        if command is None:
            return ""
        try:
            res = await transport.run(command, timeout=30)
        except TransportError as exc:
            log.warning("facts of %s on %s: %s", paths.task_id, transport.host.name, exc)
            return ""
        return res.stdout if res.ok else ""


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (the hub's copy of a run that printed nothing has no dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def apply_agent_facts(task: Task, result: Result) -> None:
    """Copy what the backend read beyond the summary onto the task (denials, limits, timing)."""
    task.api_error_status = result.api_error_status
    task.duration_ms = result.duration_ms
    task.permission_denials = list(result.permission_denials)
    task.warnings = list(result.warnings)
    task.quota = result.quota.to_dict() if result.quota is not None else None
    task.usage_windows = [w.to_dict() for w in result.windows]


def parse_exit(text: bytes | str) -> int | None:
    """Return the exit code an ``exit`` file holds (None when it is not a number)."""
    try:
        return int(text.strip())
    except ValueError:
        return None
