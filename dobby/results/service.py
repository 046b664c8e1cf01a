"""The hub's results operations: result views, detail-status, artifacts, diff and merge,
stats, export/import and host cleanup. HTTP handlers call these; the hub core owns one.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dobby.backends.pricing import ModelPrice
from dobby.core.aio import wait_event
from dobby.core.config import Settings
from dobby.core.errors import Conflict, NotFound, TransportError, ValidationError
from dobby.core.events import Event, EventBus
from dobby.core.models import Task, TaskStatus
from dobby.core.ports import SaveTask
from dobby.core.timefmt import parse_time, utcnow
from dobby.hostside import results as remote
from dobby.hostside import verify
from dobby.results import artifacts, export, followup, gc, gitback, stats
from dobby.results.detail import Detail
from dobby.store import aggregates
from dobby.store.db import Store
from dobby.store.git import RepoLocks
from dobby.store.query import TaskFilter, statuses
from dobby.store.tasklog import TaskLogs
from dobby.transport import Transport

log = logging.getLogger("dobby.results")

FINISHED = tuple(s.value for s in TaskStatus if s.finished)
RESULT_KEYS = (
    "status", "reason", "summary", "error", "exit_code", "cost_usd", "models", "turns",
    "session_id", "branch", "host", "backend", "model", "project", "title", "started_at",
    "finished_at", "base_commit", "head_commit", "diff_stat", "artifact_globs", "artifacts",
    "collect_error", "merged_at", "merge_commit", "host_cleaned_at", "api_error_status",
    "duration_ms", "permission_denials", "warnings", "quota", "max_turns", "max_budget_usd",
    "verify", "verify_timeout", "verify_result", "fix_attempts", "fix_round", "fix_task",
    "race_id", "race_slot",
)  # fmt: skip
READ_CHUNK = 4 << 20
MAX_DETAILS = 512  # cached detail summaries (one per recently viewed task)


@dataclass
class _Cached:
    detail: Detail
    attempt: int
    offset: int = 0
    checking: bool = False  # past the verify marker: the check's lines, not the agent's


class ResultsService:
    """Everything a user gets back from tasks, over the hub's store, runner and hosts."""

    def __init__(
        self,
        *,
        store: Store,
        logs: TaskLogs,
        locks: RepoLocks,
        bus: EventBus,
        settings: Settings,
        save: SaveTask,
        transport: Callable[[str], Transport],
        prices: Mapping[str, ModelPrice],
        running: Callable[[], list[Task]] | None = None,
    ) -> None:
        self.store = store
        # The running tasks as the hub holds them in memory (see Hub.running_tasks): at 1,000
        # running, building them from the store would cost each GET /stats ~30 ms.
        self._running = running or (lambda: self.store.tasks(status="running"))
        self.logs = logs
        self.locks = locks
        self.bus = bus
        self.settings = settings
        self._save = save
        self._transport = transport
        self.prices = prices
        self._details: dict[str, _Cached] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Follow task events and start the retention sweeper."""
        self.bus.subscribe(self._on_event)
        self._sweeper = asyncio.ensure_future(self._sweep_loop())

    async def stop(self) -> None:
        """Stop the sweeper."""
        self.bus.unsubscribe(self._on_event)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    def _on_event(self, event: Event) -> None:
        if event.type == "task.finished" and self.settings.host_retention <= 0:
            self._wake.set()

    # -- results -------------------------------------------------------------------------
    def result(self, task_id: str) -> dict[str, Any]:
        """Return the result of one task, with its follow-up chain."""
        task = self.store.get_task(task_id)
        return self._result(task, chain=followup.chain(task, self.store.get_task))

    def _result(self, task: Task, *, chain: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"task_id": task.id}
        out.update({k: getattr(task, k) for k in RESULT_KEYS})
        out["tokens"] = task.tokens.to_dict()
        out["duration_s"] = _duration(task)
        out["parent"] = task.resume
        out["chain"] = chain if chain is not None else [task.id]
        out["followups"] = self.store.children(task.id)
        return out

    def results(
        self,
        *,
        project: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        flt: TaskFilter | None = None,
    ) -> list[dict[str, Any]]:
        """Return results newest first (finished tasks unless ``status`` says otherwise)."""
        if flt is None:
            if project is not None:
                self.store.get_project(project)
            flt = TaskFilter(status=statuses(status or FINISHED), project=project)
        docs = self.store.page(flt, limit=limit or None, offset=offset)
        return [self._with_chain(Task.from_dict(d)) for d in docs]

    def iter_results(self, flt: TaskFilter) -> Iterator[list[str]]:
        """Yield every matching result as JSON text, newest first, in chunks (from a snapshot)."""
        for chunk in self.store.iter_task_json(flt, batch=200):
            tasks = [Task.from_dict(json.loads(d)) for d in chunk]
            yield [json.dumps(self._with_chain(t), ensure_ascii=False) for t in tasks]

    def _with_chain(self, task: Task) -> dict[str, Any]:
        return self._result(task, chain=followup.chain(task, self.store.get_task))

    # -- detail-status -------------------------------------------------------------------
    def detail_status(self, task_id: str) -> dict[str, Any]:
        """Return what the task's agent is doing now (or did), from its output so far."""
        task = self.store.get_task(task_id)
        cached = self._details.get(task.id)
        size = self.logs.size(task.id)
        if cached is None or cached.attempt != task.attempt or cached.offset > size:
            cached = _Cached(detail=self._new_detail(task), attempt=task.attempt)
        while cached.offset < size:
            data, _ = self.logs.read(task.id, cached.offset, READ_CHUNK)
            cut = data.rfind(b"\n") + 1
            if task.state.finished and len(data) < READ_CHUNK:
                cut = len(data)  # the last line may lack its newline
            if cut == 0:
                break
            for line in data[:cut].decode("utf-8", "replace").splitlines():
                if cached.checking or verify.parse_marker(line) is not None:
                    cached.checking = True  # what the agent did ends where its check begins
                    continue
                cached.detail.feed(line)
            cached.offset += cut
        self._details.pop(task.id, None)
        self._details[task.id] = cached  # most recent last
        while len(self._details) > MAX_DETAILS:
            self._details.pop(next(iter(self._details)))
        out = {
            "task_id": task.id,
            "status": task.status,
            "reason": task.reason,
            "backend": task.backend,
            "host": task.host,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
            "elapsed_s": _duration(task),
            "exit_code": task.exit_code,
            **cached.detail.to_dict(),
        }
        if task.verify:  # the check: running now (past the agent), or its result
            out["verifying"] = cached.checking and not task.state.finished
            out["verify_result"] = task.verify_result
            if out["verifying"]:
                out["step"] = "verifying"
        if task.state.finished and task.cost_usd is not None:
            out["cost_usd"], out["cost_estimated"] = task.cost_usd, False
            out["tokens"] = task.tokens.to_dict()
        return out

    def _new_detail(self, task: Task) -> Detail:
        parent = followup.parent_of(task, self.store.get_task)
        baseline = parent.tokens if parent is not None and parent.backend == "codex" else None
        return Detail(
            backend=task.backend,
            model=task.model,
            prices=self.prices,
            baseline=baseline if task.backend == "codex" else None,
        )

    # -- artifacts -----------------------------------------------------------------------
    def _artifact_root(self, task_id: str) -> Path:
        return self.logs.task_dir(task_id) / "artifacts"

    def artifacts(self, task_id: str) -> dict[str, Any]:
        """Return ``{task_id, artifacts: [{name, size}]}``."""
        task = self.store.get_task(task_id)
        return {
            "task_id": task.id,
            "artifacts": artifacts.list_artifacts(self._artifact_root(task.id)),
        }

    def artifact_file(self, task_id: str, name: str) -> Path:
        """Return the file of one artifact; refuse names outside the task's artifacts."""
        task = self.store.get_task(task_id)
        return artifacts.artifact_path(self._artifact_root(task.id), name)

    # -- git -----------------------------------------------------------------------------
    def _git_task(self, task_id: str) -> tuple[Task, str]:
        task = self.store.get_task(task_id)
        if not task.project:
            raise Conflict(f"task {task.id} has no project: there is no git work to show")
        if not task.head_commit or not task.base_commit:
            why = task.collect_error or f"task {task.id} is {task.status}"
            raise Conflict(f"no work of task {task.id} came back yet ({why})")
        return task, self.store.get_project(task.project).path

    async def diff(self, task_id: str) -> dict[str, Any]:
        """Return the task's diff (base..head) as text, with its stat."""
        task, path = self._git_task(task_id)
        assert task.base_commit and task.head_commit
        text, truncated = await gitback.diff_text(path, task.base_commit, task.head_commit)
        return {
            "task_id": task.id,
            "branch": task.branch,
            "base_commit": task.base_commit,
            "head_commit": task.head_commit,
            "diff_stat": task.diff_stat,
            "diff": text,
            "truncated": truncated,
        }

    async def merge(self, task_id: str) -> dict[str, Any]:
        """Merge the task's branch into the project's checkout, or raise why it cannot."""
        task, path = self._git_task(task_id)
        outcome = await gitback.merge(
            task=task, project_path=path, lock=self.locks.project(task.project or "")
        )
        if not outcome["already"]:
            current = self.store.get_task(task.id)
            current.merged_at = utcnow()
            current.merge_commit = outcome["commit"]
            self._save(current)
        return {"task_id": task.id, **outcome}

    # -- stats, export, import -----------------------------------------------------------
    def stats(self, *, since: str | None = None, project: str | None = None) -> dict[str, Any]:
        """Return stats and cost accounting (``since``: 24h, 7d or an ISO time)."""
        now = _dt.datetime.now(_dt.UTC)
        window = stats.parse_since(since, now)
        if project is not None:
            self.store.get_project(project)
        live = self.store.tasks(status=("pending", "draft"), project=project)
        live += [t for t in self._running() if project is None or t.project == project]
        groups = aggregates.stats_groups(self.store.sql(), since=window, project=project)
        return stats.from_groups(groups, queue=stats.queue(live), now=now, since=window,
                                 project=project)  # fmt: skip

    def export(
        self, *, fmt: str = "csv", project: str | None = None, since: str | None = None
    ) -> Iterator[str]:
        """Return the export as text chunks (validated before the first chunk)."""
        if fmt not in export.FORMATS:
            raise ValidationError(f"invalid format {fmt!r} (choose {', '.join(export.FORMATS)})")
        window = stats.parse_since(since, _dt.datetime.now(_dt.UTC))
        if project is not None:
            self.store.get_project(project)
        flt = TaskFilter(project=project, since_ts=window.timestamp() if window else None)
        # A snapshot, streamed from the database; an old bad value is exported repaired.
        docs = (Task.from_dict(doc).to_dict() for doc in self.store.iter_task_docs(flt))
        return export.csv_chunks(docs) if fmt == "csv" else export.json_chunks(docs)

    def import_tasks(self, data: bytes) -> dict[str, Any]:
        """Import a JSON export: new finished tasks go to the archive as they are."""
        # All or nothing: every document is checked, as a submit is, before one is stored.
        tasks = [export.check_task(doc, line) for line, doc in export.read_import(data)]
        fresh, existing, unfinished, seen = [], [], [], set()
        for task in tasks:
            if task.id in seen or self.store.has_task(task.id):
                existing.append(task.id)
            elif not task.state.finished:
                unfinished.append(task.id)  # it belongs to the hub that runs it
            else:
                fresh.append(task.to_dict())
            seen.add(task.id)
        self.store.import_finished(fresh)
        return {
            "imported": len(fresh),
            "skipped_existing": existing,
            "skipped_unfinished": unfinished,
        }

    # -- host cleanup --------------------------------------------------------------------
    async def gc(self, *, older_than: float | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Free finished tasks' directories on their hosts; report what was (or would be) freed."""
        retention = self.settings.host_retention if older_than is None else older_than
        if retention < 0:
            raise ValidationError("'older_than' must be >= 0 seconds")
        now = time.time()
        candidates = self.store.gc_candidates(finished_before=now - retention)
        items = gc.plan(candidates, now=now, older_than=retention)
        by_host: dict[str, list[remote.GcItem]] = {}
        for item in items:
            by_host.setdefault(item.host, []).append(item)
        results = await asyncio.gather(
            *(self._gc_host(host, group, dry_run) for host, group in sorted(by_host.items()))
        )
        report: dict[str, Any] = {
            "dry_run": dry_run, "older_than_s": retention, "freed_bytes": 0,
            "tasks": [], "busy": [], "errors": [],
        }  # fmt: skip
        for host, (freed, busy, error) in zip(sorted(by_host), results, strict=True):
            if error:
                report["errors"].append({"host": host, "error": error})
            report["busy"] += [{"task_id": t, "host": host} for t in busy]
            for task_id, size in sorted(freed.items()):
                report["tasks"].append({"task_id": task_id, "host": host, "bytes": size})
                report["freed_bytes"] += size
                if not dry_run:
                    self._mark_cleaned(task_id)
        return report

    async def _gc_host(
        self, host: str, items: list[remote.GcItem], dry_run: bool
    ) -> tuple[dict[str, int], list[str], str | None]:
        # Re-check right before acting: a follow-up may have been queued since the plan.
        active = {
            followup.worktree_id(t, self.store.get_task)
            for t in self.store.tasks(status=("pending", "running", "draft"))
        }
        items = [
            remote.GcItem(
                i.task_id, i.host, i.project, None if i.worktree in active else i.worktree
            )
            for i in items
            if self.store.get_task(i.task_id).state.finished
        ]
        try:
            transport = self._transport(host)
            await transport.connect()
            script = remote.render_gc(workdir=transport.workdir, items=items, dry_run=dry_run)
            res = await transport.run(script, timeout=600)
        except (TransportError, NotFound) as exc:
            return {}, [], str(exc)
        freed, busy = remote.parse_gc(res.stdout)
        error = None if res.ok else (res.stderr or res.stdout).strip()[-300:]
        return freed, busy, error

    def _mark_cleaned(self, task_id: str) -> None:
        try:
            task = self.store.get_task(task_id)
        except NotFound:
            return
        task.host_cleaned_at = utcnow()
        self._save(task)

    async def _sweep_loop(self) -> None:
        """Apply the retention periodically, and after each task when the retention is 0."""
        while True:
            # A sweep reads every task: not at start (a slower start), but after one interval.
            retention = self.settings.host_retention
            interval = min(max(retention / 10, 60.0), 3600.0)
            await wait_event(self._wake, interval)
            self._wake.clear()  # a task finishing during this sweep wakes the next one
            try:
                report = await self.gc()
                if report["tasks"] or report["errors"]:
                    log.info(
                        "retention: freed %d task dirs (%d bytes); errors: %s",
                        len(report["tasks"]), report["freed_bytes"], report["errors"],
                    )  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the sweeper must outlive one bad pass
                log.exception("retention sweep failed")


def _duration(task: Task) -> float | None:
    if not task.started_at:
        return None
    end = parse_time(task.finished_at).timestamp() if task.finished_at else time.time()
    return round(end - parse_time(task.started_at).timestamp(), 3)
