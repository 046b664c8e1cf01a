"""The hub's core: owns store, event bus, hosts, runner and scheduler; HTTP handlers call it.

This is where the services are wired. Each receives only what it uses — the store, the task
logs, the bus, settings, and plain callables such as ``save`` (store write, then event) or
``kick`` (ask the scheduler for a pass) — never the hub itself (see ``dobby.core.ports``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from operator import attrgetter
from pathlib import Path
from typing import Any

from dobby import __version__
from dobby.backends.pricing import DEFAULT_PRICES, parse_prices
from dobby.core.aio import bounded, stop_task
from dobby.core.config import Settings, locate
from dobby.core.errors import (
    ConfigError,
    Conflict,
    DobbyError,
    Forbidden,
    InventoryError,
    NotFound,
    StorageError,
    ValidationError,
)
from dobby.core.events import EventBus
from dobby.core.files import atomic_write
from dobby.core.models import Project, Task, TaskStatus
from dobby.core.shapes import validate_policy_patch, validate_project
from dobby.hub.webhook import Webhook
from dobby.inventory.load import Inventory, InventoryWatcher, add_spoke, list_spokes, load_inventory
from dobby.inventory.spokes import key_file, known_hosts_entry, literal_address, spoke_name
from dobby.machines.gpumonitor import make_gpu_monitor
from dobby.machines.hosts import HostManager, HostState
from dobby.races.service import Races
from dobby.results.service import ResultsService
from dobby.runner.interactive import RemoteSessions
from dobby.runner.runner import Runner
from dobby.scheduler.batches import Batches
from dobby.scheduler.capacity import HostSlot, choose_session_host
from dobby.scheduler.intake import Intake
from dobby.scheduler.loop import SchedulerLoop
from dobby.scheduler.schedules import Schedules
from dobby.scheduler.usage import Usage
from dobby.store.db import Store
from dobby.store.git import RepoLocks
from dobby.store.pending import clear_pending, read_pending
from dobby.store.tasklog import TaskLogs

log = logging.getLogger("dobby.hub")

NEWEST = attrgetter("created_at", "id")  # sort key of tasks, newest first once reversed
HOUSEKEEP_EVERY = 3600.0  # drop old Idempotency-Key records
# After a restart the first host probes wait at most this long for the re-adopted tasks.
ADOPTION_FIRST = 5.0
# Each step of a stop gets this long; the whole stop stays within 3 s at any load.
STOP_STEP = 0.5


class Hub:
    """The hub's state and every operation on it."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        home = Path(settings.home)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.chmod(0o700)  # the database, results and logs hold prompts, output and keys
        self.spokes_file = settings.spokes_file
        self.store = Store(
            path=Path(settings.db_path),
            legacy_path=home / "dobby.json",  # a hub from before SQLite: imported once
            legacy_archive=home / "archive",
            write_timeout=settings.write_timeout,
        )
        results_dir = Path(settings.results_dir)
        results_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        results_dir.chmod(0o700)
        self.logs = TaskLogs(root=results_dir)
        self.locks = RepoLocks()
        self.bus = EventBus(start_seq=int(self.store.get_meta("seq", 0) or 0))
        prices = dict(DEFAULT_PRICES)
        try:
            prices.update(parse_prices(settings.prices or {}))
        except ConfigError as exc:  # name the entry's line in dobby.yaml
            raise ConfigError(locate(settings, str(exc))) from None
        self.hosts = HostManager(
            on_change=self._host_changed,
            tofu_known_hosts=str(settings.known_hosts_file),
            in_use=self._tasks_on,
        )
        self.runner = Runner(
            hosts=self.hosts,
            logs=self.logs,
            locks=self.locks,
            get_task=self.get_task,
            save=self.save,
            publish_log=self._publish_log,
            project_path=self._project_path,
            prices=prices,
            # A task whose Slurm job was lost with its node is queued again once (attempts).
            requeue=lambda task: self.intake.requeue(task, note={"requeued_by": "slurm"}),
            on_limit=self._limit_hit,
            revision=self.store.task_revision,
        )
        self.inventory: Inventory | None = None
        self.inventory_error: str | None = None
        self._watcher: InventoryWatcher | None = None
        self.gpu = make_gpu_monitor(
            hosts=self.hosts,
            interval=settings.gpu_poll_interval,
            running=self.running_tasks,
            save=self.save,
            bus=self.bus,
            kick=self.kick,
        )
        # Scheduler operations (dobby/scheduler/): tasks in, schedules, batches, the loop.
        self.intake = Intake(
            store=self.store,
            logs=self.logs,
            bus=self.bus,
            settings=settings,
            hosts=self.hosts,
            save=self.save,
            kick=self.kick,
            is_dispatching=self._is_dispatching,
            cancel=self.cancel,
        )
        self.usage = Usage(  # usage limits per account, spend budgets
            store=self.store,
            bus=self.bus,
            settings=settings,
            hosts=self.hosts,
            save=self.save,
            kick=self.kick,
        )
        self.schedules = Schedules(
            store=self.store, bus=self.bus, settings=settings, intake=self.intake
        )
        self.batches = Batches(
            store=self.store,
            bus=self.bus,
            save=self.save,
            intake=self.intake,
            place=lambda: self.scheduler.place_now(),
            alone=lambda task_id: self.scheduler.launch_alone(task_id),
            launching=self._is_dispatching,
        )
        self.scheduler = SchedulerLoop(
            store=self.store,
            settings=settings,
            hosts=self.hosts,
            runner=self.runner,
            intake=self.intake,
            schedules=self.schedules,
            save=self.save,
            free_gpus=self.gpu.free_gpus,
            usage=self.usage,
        )
        self.webhook = Webhook.from_settings(settings)
        self.results = ResultsService(
            store=self.store,
            logs=self.logs,
            locks=self.locks,
            bus=self.bus,
            settings=settings,
            save=self.save,
            transport=self.hosts.transport,
            prices=prices,
            running=self.running_tasks,
        )
        self.races = Races(  # dobby add --race K: attempts judged by their check
            store=self.store,
            bus=self.bus,
            settings=settings,
            hosts=self.hosts,
            intake=self.intake,
            cancel=self.cancel,
            merge=self.results.merge,
        )
        self.remote = RemoteSessions(  # `dobby remote`: interactive sessions
            store=self.store,
            hosts=self.hosts,
            runner=self.runner,
            save=self.save,
            choose_host=self._choose_session_host,
        )
        self._housekeeper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Load the inventory, re-adopt running tasks, start probing and scheduling."""
        inv_path = Path(self.settings.inventory) if self.settings.inventory else None
        self._watcher = InventoryWatcher(
            inv_path,
            self.spokes_file,
            on_change=self._set_inventory,
            on_error=self._inventory_failed,
        )
        seen = self._watcher.fingerprint()  # before the read: an edit meanwhile is seen
        inventory = load_inventory(inv_path, extra=self.spokes_file)  # a bad one stops the start
        self._set_inventory(inventory)
        self._watcher.start(loaded=(seen, inventory))
        self.store.start()
        self.usage.start()
        await self.scheduler.start()  # re-adopts the tasks that run: they come first
        self.hosts.start(after=lambda: self.runner.followers.adoption(ADOPTION_FIRST))
        self.races.start()
        self.webhook.start(self.bus)
        self.results.start()
        self.gpu.start()
        self.remote.start()
        self._register_pending_projects()
        self._housekeeper = asyncio.ensure_future(self._housekeep())
        self.bus.publish("hub.started", data={"version": __version__})

    async def stop(self) -> None:
        """Stop background work within a bound; tasks keep running on their hosts.

        Each step is bounded (a job that will not end is logged and left behind) and the store
        is closed whatever happened before: every acknowledged write is on disk already, and a
        launch or task cut short is settled with its host at the next start.
        """
        try:
            # First what starts work: no launch, race round or retry begins after this.
            await asyncio.gather(
                bounded(self.scheduler.stop(), timeout=STOP_STEP, what="stopping the scheduler"),
                bounded(self.races.stop(), timeout=STOP_STEP, what="stopping the races"),
            )
            self.usage.stop()
            await asyncio.gather(
                *(
                    bounded(step, timeout=STOP_STEP, what=f"stopping {what}")
                    for what, step in (
                        ("the followers", self.runner.close()),
                        ("the webhook", self.webhook.stop()),
                        ("the results sweeper", self.results.stop()),
                        ("the GPU monitor", self.gpu.stop()),
                        ("the remote sessions", self.remote.stop()),
                        (
                            "the housekeeper",
                            stop_task(self._housekeeper, timeout=STOP_STEP, what="housekeeper"),
                        ),
                        ("the inventory watcher", self._stop_watcher()),
                    )
                )
            )
            await bounded(self.hosts.close(), timeout=STOP_STEP, what="closing the connections")
        finally:
            self.store.set_meta("seq", self.bus.last_seq)
            await self.store.close()

    async def _stop_watcher(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()

    async def _housekeep(self) -> None:
        """Drop Idempotency-Key records older than a day, now and then."""
        while True:
            await asyncio.sleep(HOUSEKEEP_EVERY)
            try:
                self.store.forget_idempotency()
            except Exception:  # noqa: BLE001 - retried at the next round
                log.exception("dropping old Idempotency-Key records failed")

    def _set_inventory(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.inventory_error = None
        self.hosts.set_hosts(inventory.hosts)
        self.bus.publish("inventory.reloaded", data={"hosts": sorted(inventory.hosts)})
        self.scheduler.kick()

    def _inventory_failed(self, error: InventoryError) -> None:
        self.inventory_error = str(error)
        log.error("inventory not reloaded (last good one stays in force): %s", error)
        self.bus.publish("inventory.error", data={"error": str(error)})

    # -- events ------------------------------------------------------------------------
    def save(self, task: Task, event: str = "task.updated") -> None:
        """Persist a task, then publish the event (the one place tasks change)."""
        doc = task.to_dict()  # one copy for the store and the event (neither changes it)
        if event == "task.created":
            self.store.insert_doc(doc)  # never overwrites another task with the same id
        else:
            self.store.put_doc(doc)
        self.scheduler.observe(task)
        self.usage.observe(task, event)
        # The event carries the document as the store encoded it: one encoding per save.
        text = self.store.task_json(task.id)
        ev = self.bus.publish(event, task_id=task.id, data=doc, data_json=text)
        self.store.set_meta("seq", ev.seq)
        if event == "task.finished":
            self.scheduler.kick()
            # A failed check's fix round is queued now, before any await: it is in the same
            # commit as the failure, so a hub killed in between never loses the round.
            try:
                if self.races.allows_fix_round(task):
                    self.intake.fix_round(task)
            except DobbyError as exc:  # the failure itself is saved: say why no round followed
                log.warning("no fix round for %s: %s", task.id, exc)

    def _limit_hit(self, task: Task) -> None:
        """A usage limit stopped a run: the task waits for its account (see scheduler.usage)."""
        self.usage.limit_hit(task)

    def kick(self) -> None:
        """Ask the scheduler for a pass soon."""
        self.scheduler.kick()

    def _is_dispatching(self, task_id: str) -> bool:
        return task_id in self.scheduler.dispatching

    def _tasks_on(self, host: str) -> int:
        """Return how many tasks run (or are being launched) on ``host``."""
        return self.scheduler.active.hosts[host]

    def running_tasks(self) -> list[Task]:
        """Return the running tasks, newest first, as the scheduler holds them (no store read).

        Every saved task passes through the scheduler (``save``), which keeps each running
        one: reading them from there costs nothing, while building them from the store costs
        ~30 µs each — 30 ms per call at 1,000 running, on the event loop (GET /hosts, /stats).
        """
        running = [t for t in self.scheduler.active.values() if t.status == TaskStatus.RUNNING]
        running.sort(key=NEWEST, reverse=True)
        return running

    def _publish_log(self, task: Task, data: dict[str, Any]) -> None:
        self.bus.publish("task.log", task_id=task.id, data=data)

    def _choose_session_host(self, task: Task, wanted: str | None) -> str:
        """Return the host of an interactive session (see scheduler.capacity)."""
        running: dict[str, int] = {}
        for t in self.running_tasks():
            running[t.host or ""] = running.get(t.host or "", 0) + 1
        states = {name: self.hosts.states.get(name) or HostState() for name in self.hosts.hosts}
        slots = [
            HostSlot(
                host=host,
                running=running.get(name, 0),
                reachable=states[name].reachable,
                clis=states[name].clis,
            )
            for name, host in self.hosts.hosts.items()
        ]
        return choose_session_host(task, slots, wanted)

    def _host_changed(self, name: str, state: HostState) -> None:
        self.store.put_host_state(name, state.to_dict())
        self.bus.publish("host.updated", data={"name": name, **state.to_dict()})
        self.scheduler.kick()

    # -- tasks -------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Task:
        """Return a task by id (or unique prefix)."""
        return self.store.get_task(task_id)

    def submit(self, body: dict[str, Any]) -> Task:
        """Validate and queue a new task (or store a draft; see dobby.scheduler.intake)."""
        return self.intake.submit(body)

    def patch(self, task_id: str, body: dict[str, Any]) -> Task:
        """Edit a draft or a task that has not started."""
        return self.intake.patch(task_id, body)

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task; a running one is stopped on its host, then collected.

        Answers once the stop is sent: the agent's session id, tokens, cost and partial work
        arrive on the task a moment later (``task.updated``).
        """
        task = self.get_task(task_id)
        if TaskStatus(task.status).finished:
            raise Conflict(f"task {task.id} is already {task.status}")
        launched = (
            task.status == TaskStatus.RUNNING.value
            # waiting for its host: the launch settles it (scheduler/loop.py)
            or (task.id in self.scheduler.dispatching and task.waiting_on != "host")
            or bool(task.slurm_job)  # queued in a Slurm cluster: scancel it
        )
        task.end(TaskStatus.CANCELLED)
        self.save(task, "task.finished")
        if launched:
            # The stop travels while the cancel is written to disk: the answer (sent once it is
            # on disk, see BaseHandler.send_durable) waits for the slower of the two, not both.
            await asyncio.gather(self.runner.cancel(task), self._written())
        return task

    async def _written(self) -> None:
        """Wait for the store to be on disk; a failure is the answer's to report (503)."""
        with contextlib.suppress(StorageError):
            await self.store.durable()

    def retry(self, task_id: str, *, cascade: bool = False) -> Task:
        """Queue a failed or cancelled task again (``cascade``: and what failed because of it)."""
        return self.intake.retry(task_id, cascade=cascade)[0]

    def result(self, task_id: str) -> dict[str, Any]:
        """Return the result fields of a task (see dobby.results)."""
        return self.results.result(task_id)

    # -- projects and hosts ------------------------------------------------------------
    def register_project(self, body: dict[str, Any]) -> Project:
        """Register a local git checkout as a project; again: keep what the body leaves out."""
        project = validate_project(body)
        known = {p.name: p for p in self.store.projects()}.get(project.name)
        if known is not None:  # re-registering must not reset its policies and context
            given = {k: getattr(project, k) for k in body if k != "name" and hasattr(project, k)}
            project = dataclasses.replace(known, **given)
        self.store.put_project(project)
        event = "project.updated" if known is not None else "project.created"
        self.bus.publish(event, data=project.to_dict())
        return project

    def update_project(self, name: str, body: dict[str, Any]) -> Project:
        """Change a project's policies (or context)."""
        project = self.store.get_project(name)
        for key, value in validate_policy_patch(body).items():
            setattr(project, key, value)
        self.store.put_project(project)
        self.bus.publish("project.updated", data=project.to_dict())
        self.scheduler.kick()  # a larger max_concurrent may start tasks now
        return project

    def _register_pending_projects(self) -> None:
        """Register the projects `dobby init` recorded while no hub ran, then drop the file."""
        home = Path(self.settings.home)
        items = read_pending(home)
        for item in items:
            name = str(item["name"])
            try:
                self.store.get_project(name)
                continue  # registered meanwhile (by hand): the hub's copy wins
            except NotFound:
                pass
            body = {"name": name, "path": item["path"], "context": item.get("context") or ""}
            try:
                self.register_project(body)
                log.info("registered project %s (%s) recorded by `dobby init`", name, item["path"])
            except DobbyError as exc:
                log.warning("cannot register project %s recorded by `dobby init`: %s", name, exc)
        if items:
            clear_pending(home)

    def _project_path(self, name: str) -> str:
        return self.store.get_project(name).path

    def hosts_view(self) -> dict[str, Any]:
        """Return every host with its state and running tasks."""
        running: dict[str, list[str]] = {}
        for task in self.running_tasks():
            running.setdefault(task.host or "", []).append(task.id)
        hosts = []
        for name, host in sorted({**self.hosts.retired, **self.hosts.hosts}.items()):
            state = self.hosts.states.get(name) or HostState()
            item = {**host.to_dict(), **state.to_dict(), "running": running.get(name, [])}
            item["removed"] = name in self.hosts.retired
            if item["removed"]:
                item["note"] = f"removed, {len(item['running'])} task(s) still running"
            hosts.append(item)
        inv = self.inventory
        return {
            "hosts": hosts,
            "inventory": {
                "files": inv.files if inv else [],
                "error": self.inventory_error,
                "loaded_at": str(inv.loaded_at) if inv else None,
            },
        }

    def register_spoke(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add a host to the hub's spokes file (it joins the inventory at once).

        ``address`` must be a literal host name or IP address. A ``host_key`` is pinned in a
        known_hosts file of the spoke's own, never in the one other hosts trust, and only on a
        hub with an API key: on a keyless hub anyone who reaches the port could pin one.
        """
        body = dict(body)
        name = spoke_name(body.get("name"))
        if body.get("address") is not None:
            body["address"] = literal_address(body["address"])
        if "known_hosts" in body:
            raise ValidationError(
                "'known_hosts' cannot be set through the API: send 'host_key' to pin the key"
            )
        # A spoke is another machine reached over SSH: a `local` one would run tasks on the
        # hub's own machine, and bypass permissions are for the inventory's author to grant.
        if body.get("connection") == "local":
            raise ValidationError(
                "a spoke cannot have connection 'local' (it would run on the hub's machine): "
                "add the hub's machine to the inventory instead"
            )
        if body.get("permissions") == "bypass":
            raise ValidationError(
                "a spoke cannot register with permissions 'bypass': grant it in the inventory"
            )
        host_key = body.pop("host_key", None)
        path = key_file(Path(self.settings.home), name)
        pin = None
        if host_key is not None:
            if not self.settings.api_key:
                raise Forbidden(
                    "this hub has no api_key, so it pins no host key sent over HTTP: set "
                    "api_key (and DOBBY_API_KEY for `dobby agent`), or register without "
                    "host_key and add the key to the hub's known_hosts yourself"
                )
            if body.get("trust_on_first_use"):
                raise ValidationError("'host_key' and 'trust_on_first_use' exclude each other")
            port = body.get("port", 22)
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ValidationError("'port' must be an integer 1..65535")
            pin = known_hosts_entry(body.get("address") or name, port, host_key)
            body["known_hosts"] = str(path)
        host = add_spoke(self.spokes_file, body, inventory=self.inventory)
        if pin is not None:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            atomic_write(path, pin, mode=0o600)
        else:
            path.unlink(missing_ok=True)  # re-registered without a key: no stale pin remains
        inv_path = Path(self.settings.inventory) if self.settings.inventory else None
        self._set_inventory(load_inventory(inv_path, extra=self.spokes_file))
        return host.to_dict()

    def spokes(self) -> list[dict[str, Any]]:
        """List hosts added through /spokes/register."""
        return [h.to_dict() for h in list_spokes(self.spokes_file)]

    def health(self) -> dict[str, Any]:
        """Return the hub's liveness summary."""
        live = self.store.live_counts()
        return {
            "ok": True,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "hosts": len(self.hosts.hosts),
            "pid": os.getpid(),
            "tasks": {
                "running": live[TaskStatus.RUNNING.value],
                "pending": live[TaskStatus.PENDING.value],
                "draft": live[TaskStatus.DRAFT.value],
            },
        }
