"""Batches: many tasks submitted at once, all or nothing, and their progress.

``POST /batches`` takes either a batch file's text (``{"yaml": TEXT, "file": NAME}``, errors
then say ``NAME:LINE: …``) or the same structure as JSON (``{"name", "defaults", "tasks"}``).
Every task is validated and placed before the first one is stored.
"""

from __future__ import annotations

import json
from typing import Any

from dobby.core.errors import DobbyError, ValidationError
from dobby.core.events import EventBus
from dobby.core.models import Batch, Task, TaskStatus
from dobby.core.ports import SaveTask
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


def _spec(body: Any) -> BatchSpec:
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    if "yaml" in body:
        shape = parse(BatchText, body)
        return parse_batch(shape.yaml, shape.file or "<batch>")
    return batch_of_json(body)  # the same structure, checked by the same rules


class Batches:
    """Submit and report on batches."""

    def __init__(self, *, store: Store, bus: EventBus, save: SaveTask, intake: Intake) -> None:
        self.store = store
        self.bus = bus
        self._save = save
        self.intake = intake

    def submit(self, body: Any) -> str:
        """Validate every task of a batch, then queue them all; return its view as JSON text."""
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
        for entry, task in zip(spec.entries, built, strict=True):
            task.batch_id = batch.id
            if entry.body.get("draft"):
                task.status, task.waiting_on = TaskStatus.DRAFT, "approval"
                self._save(task, "task.created")
            else:
                self.intake.enqueue(task, "task.created")
        self.store.put_batch(batch)
        self.bus.publish("batch.created", data=batch.to_dict())
        return self._view(batch, built)

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
