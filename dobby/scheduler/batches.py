"""Batches: many tasks submitted at once, all or nothing, and their progress.

``POST /batches`` takes either a batch file's text (``{"yaml": TEXT, "file": NAME}``, errors
then say ``NAME:LINE: …``) or the same structure as JSON (``{"name", "defaults", "tasks"}``).
Every task is validated (its placement checked) before the first one is stored. A batch is
stored last, after all of its tasks: one whose tasks are stored without it was never
acknowledged (the hub stopped while storing it), and its tasks are cancelled at the next
start (``SchedulerLoop._drop_unaccepted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from dobby.core.errors import DobbyError, StorageError, ValidationError
from dobby.core.events import EventBus
from dobby.core.models import Batch, Task, TaskStatus
from dobby.core.ports import Kick, LaunchAlone, SaveTask
from dobby.core.shapes import BatchText, parse
from dobby.scheduler import deps
from dobby.scheduler.batchfile import (
    BatchSpec,
    Entry,
    batch_of_json,
    key_in_message,
    parse_batch,
)
from dobby.scheduler.intake import Intake
from dobby.store.db import Store

# How a batch is queued, once every task of it is valid (see Batches.submit). Measured with
# 1,000 tasks over 20 loopback hosts (bench/dispatch.py part 3): queued whole, then committed,
# the first task ran 0.27 s after the submit.
FIRST = 1  # tasks queued, committed and launched before the rest are queued
CHUNK = 25  # tasks queued between two turns of the loop (50: the first launch began 20 ms later)
# ... while the first task's launch is in flight: each of its steps waits for a turn.
CHUNK_ALONE = 5
COMMIT_EVERY = 100  # tasks committed at a time meanwhile (25: no faster, more pages written)
UNACCEPTED = (
    "its batch was never stored whole (the hub stopped while storing it, before answering "
    "the submit): submit the batch again"
)


def _spec(body: Any) -> BatchSpec:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    if "yaml" in body:
        shape = parse(BatchText, body)
        return parse_batch(shape.yaml, shape.file or "<batch>")
    return batch_of_json(body)  # the same structure, checked by the same rules


class Batches:
    """Submit and report on batches."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        save: SaveTask,
        intake: Intake,
        place: Kick,
        alone: LaunchAlone,
        launching: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.bus = bus
        self._save = save
        self.intake = intake
        self._place = place  # a scheduling pass now (see SchedulerLoop.place_now)
        self._alone = alone  # see SchedulerLoop.launch_alone
        self._launching = launching  # is this task's launch in flight?

    async def submit(self, body: Any) -> str:
        """Validate every task of a batch, then queue them all; return its view as JSON text.

        Nothing is queued before every task is valid. The first task is then queued, placed
        and written to disk alone, so that it launches while the rest are queued: ``CHUNK``
        at a time, each chunk placed at once and followed by a turn of the event loop where
        the placed tasks launch and answers are read. The batch is stored last.
        """
        spec = _spec(body)
        names = {e.name: i for i, e in enumerate(spec.entries)}
        with self.intake.one_look():
            built = [self._build(entry, spec.file, names) for entry in spec.entries]
        ids = {e.name: t.id for e, t in zip(spec.entries, built, strict=True)}
        graph: dict[str, list[str]] = {}
        for entry, task in zip(spec.entries, built, strict=True):
            refs = [str(r) for r in entry.body.get("after") or []]
            local = [r for r in refs if r in names]
            graph[entry.name] = local
            task.after = [ids[r] for r in local] + task.after
        cycle = deps.find_cycle(graph)
        if cycle:
            line = spec.entries[names[cycle[0]]].line_of("after")
            raise ValidationError(f"{spec.file}:{line}: dependency cycle: {' → '.join(cycle)}")
        batch = Batch(name=spec.name, file=spec.file if spec.file != "<request>" else None)
        batch.tasks = [
            {"name": e.name, "id": t.id} for e, t in zip(spec.entries, built, strict=True)
        ]
        try:
            await self._queue(spec, built, ids, graph, batch)
        finally:
            self._alone(None)
        self._place()
        self.store.put_batch(batch)
        self.bus.publish("batch.created", data=batch.to_dict())
        # In one go: a turn of the loop every 25 tasks made the answer 0.4 s later (1,000
        # tasks), and the first launches' answers were read no sooner.
        return self._view(batch, self._found(batch))

    async def _queue(
        self,
        spec: BatchSpec,
        built: list[Task],
        ids: dict[str, str],
        graph: dict[str, list[str]],
        batch: Batch,
    ) -> None:
        """Queue the batch's tasks: the first alone, then a chunk between turns of the loop."""
        queued: set[str] = set()
        ahead: set[str] = set()  # tasks of the batch a queued one waits for, not queued yet
        first = ""
        for n, (entry, task) in enumerate(zip(spec.entries, built, strict=True), 1):
            task.batch_id = batch.id
            if entry.body.get("draft"):
                task.status, task.waiting_on = TaskStatus.DRAFT, "approval"
                self._save(task, "task.created")
            else:
                self.intake.enqueue(task, "task.created")
            queued.add(task.id)
            ahead.discard(task.id)
            ahead.update(ids[r] for r in graph[entry.name] if ids[r] not in queued)
            # Never between a task and one of the batch it waits for: a pass would take the
            # id it waits on, not stored yet, for a deleted task.
            if n == len(built) or ahead:
                continue
            if n == FIRST:
                self._place()
                self._alone(task.id)
                first = task.id
                await self._first_on_disk()
            elif n % (CHUNK_ALONE if self._launching(first) else CHUNK) == 0:
                self._place()
                if n % COMMIT_EVERY == 0:
                    self.store.commit_part()
                await asyncio.sleep(0)

    async def _first_on_disk(self) -> None:
        """Wait for the first task's commit and fsync: its launch goes before the others.

        Queued meanwhile, the rest joined the first launch in one wave (160 launches over 20
        hosts, the first answer read behind the others' work: 140-200 ms after the submit,
        against 100-125 ms alone). A disk that fails here is reported by the answer's own
        wait (503).
        """
        with contextlib.suppress(StorageError):
            await self.store.durable()

    def _build(self, entry: Entry, file: str, names: dict[str, int]) -> Task:
        """Build one entry's task; errors point at the entry's (or the key's) line."""
        body = dict(entry.body)
        after = body.pop("after", None)
        if after is not None and not isinstance(after, list):
            after = [after]
        outside = [str(r) for r in after or [] if str(r) not in names]
        if outside:
            body["after"] = outside
        try:
            task, flags = self.intake.build(body)
        except DobbyError as exc:
            message = str(exc)
            if message.startswith("unknown task id(s) in 'after'"):
                message += " (neither a task of this batch nor an existing task)"
            key = key_in_message(message, list(entry.body))
            raise ValidationError(f"{file}:{entry.line_of(key or '')}: {message}") from None
        del flags
        return task

    def view(self, batch_id: str) -> str:
        """Return a batch with counts by status, cost so far and each task, as JSON text."""
        batch = self.store.get_batch(batch_id)
        return self._view(batch, self._found(batch))

    def _view(self, batch: Batch, found: list[Task]) -> str:
        """Return the view of ``batch`` and its tasks ``found`` as JSON text.

        Each task's part is its stored document's text (``Store.task_json``), which a commit
        writes as it is: the answer to a batch of thousands encodes each task once.
        """
        name_of = {ref["id"]: ref["name"] for ref in batch.tasks}
        head = json.dumps(self._summary(batch, found), separators=(",", ":"))
        tasks = ",".join(
            # {"name": …, **document}: the name first, then the stored text's own keys
            f'{{"name":{json.dumps(name_of[t.id])},{self.store.task_json(t.id)[1:]}'
            for t in found
        )
        return f'{head[:-1]},"tasks":[{tasks}]}}'

    def _found(self, batch: Batch) -> list[Task]:
        """Return the batch's tasks that still exist, in the batch's order."""
        tasks = []
        for ref in batch.tasks:
            try:
                tasks.append(self.store.get_task(ref["id"]))
            except DobbyError:
                continue
        return tasks

    def _summary(self, batch: Batch, found: list[Task]) -> dict[str, Any]:
        """Return the batch (without its tasks) with counts by status, cost so far and done."""
        counts: dict[str, int] = {}
        cost = 0.0
        for task in found:
            counts[task.status] = counts.get(task.status, 0) + 1
            cost += (task.cost_usd or 0.0) + sum(a.get("cost_usd") or 0.0 for a in task.attempts)
        head = batch.to_dict()
        del head["tasks"]  # the {name, id} pairs: a view lists the tasks themselves
        return {
            **head,
            "total": len(batch.tasks),
            "counts": counts,
            "cost_usd": round(cost, 6),
            "done": all(TaskStatus(t.status).finished for t in found),
        }

    def list(self) -> list[dict[str, Any]]:
        """Return every batch with its counts (no task bodies), newest first."""
        return [self._summary(batch, self._found(batch)) for batch in self.store.batches()]
