"""Launch a task on its host, follow its output by byte offset, collect its result.

The hub's copy of a task's stdout (:mod:`dobby.store.tasklog`) only ever receives whole
lines; its size *is* the follower's offset. So a hub killed at any instant resumes exactly
where its copy ends: no gap, no duplicate line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from dobby.backends import Backend, get_backend
from dobby.backends.pricing import ModelPrice
from dobby.core.errors import DispatchError, TransportError
from dobby.core.models import Reason, Result, Task, TaskStatus
from dobby.core.ports import GetTask, LimitHit, SaveTask
from dobby.core.slurm import SlurmSettings
from dobby.core.timefmt import parse_time, utcnow
from dobby.hostside import scripts
from dobby.hostside import slurm as slurm_scripts
from dobby.machines.gpu import gpu_env
from dobby.machines.hosts import HostManager
from dobby.machines.slurm.jobs import parse_submit
from dobby.machines.slurm.outcome import Action, job_outcome
from dobby.results import followup, halves
from dobby.results.collect import BASE_FILE, collect_outputs, recorded_base
from dobby.runner import verify
from dobby.runner.slurm import SlurmJobs, resubmits_left
from dobby.store import tasklog
from dobby.store.git import RepoLocks, create_bundle, head_commit
from dobby.store.tasklog import LogWriter, TaskLogs
from dobby.transport import Transport

log = logging.getLogger("dobby.runner")

READ_LIMIT = 1 << 20
TIMEOUT_GRACE = 30.0  # run.sh's own timeout(1) normally ends the task first
PROBE_EVERY = 5.0


FAST_POLL = 0.02


def next_poll(previous: float, idle: float) -> float:
    """Return the wait before the next read: fast while output flows, backing off when quiet.

    Each poll costs the host an SFTP round trip; doubling while idle keeps a host with dozens
    of quiet agents cheap, and any new output snaps back to FAST_POLL.
    """
    if idle < 0.5:
        return FAST_POLL  # output is flowing: the next line is likely close
    cap = 0.25 if idle < 60 else 1.0
    return min(cap, max(FAST_POLL, previous) * 2)


class Runner:
    """Launch, follow, collect and cancel tasks on hosts."""

    def __init__(
        self,
        *,
        hosts: HostManager,
        logs: TaskLogs,
        locks: RepoLocks,
        get_task: GetTask,
        save: SaveTask,
        publish_log: Callable[[Task, dict[str, Any]], None],
        project_path: Callable[[str], str],
        prices: Mapping[str, ModelPrice],
        requeue: Callable[[Task], None],
        on_limit: LimitHit | None = None,
    ) -> None:
        self.hosts = hosts
        self._on_limit = on_limit
        self.logs = logs
        self.locks = locks
        self._get_task = get_task
        self._save = save
        self._publish_log = publish_log
        self._project_path = project_path
        self._prices = prices
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._reading: dict[str, tuple[Transport, scripts.TaskPaths]] = {}  # follower's files
        self._deliveries: dict[str, asyncio.Lock] = {}
        # Tasks on `connection: slurm` hosts; ``requeue`` queues one lost with its node again.
        self.slurm = SlurmJobs(
            hosts=hosts,
            get_task=get_task,
            save=save,
            follow=self.follow,
            finish=self._finish,
            requeue=requeue,
        )

    async def _paths(self, task: Task) -> tuple[Transport, scripts.TaskPaths]:
        assert task.host is not None
        transport = self.hosts.transport(task.host)
        await transport.connect()
        # A follow-up works in the worktree of its chain's first task (see results.followup).
        worktree = followup.worktree_id(task, self._get_task)
        paths = scripts.TaskPaths(workdir=transport.workdir, task_id=task.id, worktree_id=worktree)
        return transport, paths

    # -- launch ------------------------------------------------------------------------
    async def launch(
        self, task: Task, *, resume_session: str | None = None, prompt: str | None = None
    ) -> None:
        """Write the bundle, deliver the project, start tmux; raise DispatchError on failure.

        ``prompt`` replaces the task's own (a run that goes on after a usage limit is told to
        continue, not to start again).
        """
        try:
            await self._launch(task, resume_session, prompt)
        except TransportError as exc:
            self.hosts.record(task.host or "", ok=False, error=str(exc))
            raise DispatchError(str(exc)) from exc

    async def _launch(self, task: Task, resume_session: str | None, prompt: str | None) -> None:
        transport, paths = await self._paths(task)
        # The half after a usage limit goes on in its own session and worktree, and its output
        # continues the log: the host's out.jsonl grows on exactly as the hub's copy does.
        goes_on = bool(resume_session) and resume_session == task.resume_session
        if goes_on:
            task.log_base = self.logs.size(task.id)
        else:
            if self.logs.size(task.id):
                self.logs.reset(task.id)  # a fresh start after a limit: a clean copy
            task.log_base = 0
        host = self.hosts.get(task.host or "")
        slurm = host.connection == "slurm"
        if task.permissions == "plan":  # a planning run is read-only whatever the host allows
            host = dataclasses.replace(host, permissions="plan")
        backend = get_backend(task.backend)
        # task.resume stays the parent task's id (the chain); the agent gets its session id.
        agent_view = dataclasses.replace(task, resume=resume_session) if resume_session else task
        argv = backend.argv(task=agent_view, host=host, is_root=transport.is_root)
        env = {**host.env, **backend.env(task=task, host=host, is_root=transport.is_root)}
        if task.gpu_indices and not slurm:  # on Slurm, the job's GPUs are Slurm's to give
            env.update(gpu_env(task.gpu_indices))  # reserved by the scheduler (machines.gpu)
        base = start = None
        if task.project:
            if task.base_commit and halves.halves(task):
                base = task.base_commit  # a run after a limit: the work of all halves counts
            elif resume_session:
                base = followup.followup_base(task, self._get_task)
            base = base or await head_commit(self._project_path(task.project))
            task.base_commit = base
            # Another backend taking over starts from what the halves before it brought back.
            start = task.head_commit if task.fallback_from and task.head_commit else base
        run_sh = scripts.render_run_sh(
            paths=paths,
            argv=argv,
            timeout=task.timeout,
            cwd=paths.worktree,
            after=verify.run_sh_block(task, paths),
        )
        text = task.prompt if prompt is None else prompt
        files = [
            transport.put(paths.file("prompt.md"), text.encode("utf-8"), mode=0o600),
            transport.put(paths.file("env"), scripts.render_env(env).encode(), mode=0o600),
            transport.put(paths.file("run.sh"), run_sh.encode(), mode=0o700),
            *(
                transport.put(paths.file(name), data, mode=0o600)
                for name, data in verify.files(task).items()
            ),
            # The commit the worktree starts from, kept on the host too: a hub killed before
            # its own record of it reached the disk reads it back at collection.
            *([transport.put(paths.file(BASE_FILE), base.encode(), mode=0o600)] if base else []),
        ]
        reuse = bool(resume_session)
        if slurm:
            job_sh = slurm_scripts.render_job_script(paths=paths)
            files.append(transport.put(paths.file(slurm_scripts.JOB_SCRIPT), job_sh.encode()))
            sbatch = slurm_scripts.sbatch_argv(
                paths=paths,
                settings=host.slurm or SlurmSettings(),
                # The job holds run.sh's verify phase too: Slurm's limit must not cut the check.
                timeout=verify.run_seconds(task),
                gpus=task.gpus or None,
            )
            prepare = scripts.render_prepare(
                paths=paths, project=task.project, base=start, reuse_worktree=reuse
            )
            launch = slurm_scripts.render_submit(
                paths=paths, argv=sbatch, prepare=prepare, keep_output=goes_on
            )
        else:
            launch = scripts.render_launch(
                paths=paths,
                project=task.project,
                base=start,
                reuse_worktree=reuse,
                keep_output=goes_on,
            )
        await asyncio.gather(*files)
        res = await transport.run(launch, timeout=60)
        if res.exit_status == scripts.NEED_BUNDLE_EXIT and task.project and start:
            await self.deliver(task.project, start, res.stdout.strip() or None, transport, paths)
            res = await transport.run(launch, timeout=60)
        if not res.ok:
            what = "sbatch" if slurm else "launch"
            raise DispatchError(
                f"{task.host}: {what} failed (exit {res.exit_status}): "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )
        if slurm:
            try:
                task.slurm_job = parse_submit(res.stdout)
            except ValueError as exc:
                raise DispatchError(f"{task.host}: {exc}") from None
        self.hosts.record(task.host or "", ok=True)

    async def deliver(
        self,
        project: str,
        base: str,
        have: str | None,
        transport: Transport,
        paths: scripts.TaskPaths,
    ) -> None:
        """Send ``base`` of a project into the host's mirror as an incremental git bundle.

        ``have`` is what the launch script found in the mirror (None: nothing yet).
        """
        # Two tasks of one project starting together on one host must not init or fetch
        # into the host's mirror at the same time.
        key = f"{transport.host.name}\0{project}"
        async with self._deliveries.setdefault(key, asyncio.Lock()):
            with tempfile.TemporaryDirectory(prefix="dobby-bundle-") as tmp:
                local = os.path.join(tmp, f"{project}.bundle")
                async with self.locks.project(project):
                    await create_bundle(self._project_path(project), local, base=base, have=have)
                remote = paths.file("project.bundle")
                await transport.put_file(local, remote)
            res = await transport.run(
                scripts.render_receive_bundle(paths=paths, project=project, bundle_path=remote),
                timeout=300,
            )
        if not res.ok:
            raise DispatchError(
                f"{transport.host.name}: git fetch of bundle failed: {res.stderr.strip()[-500:]}"
            )

    # -- follow ------------------------------------------------------------------------
    def follow(self, task: Task, *, adopt: bool = False) -> None:
        """Start following a running task (``adopt``: after a hub restart)."""
        if task.slurm_job:
            self.watch(task)  # Slurm tells how a job ended when no exit file does
        if task.id in self._followers and not self._followers[task.id].done():
            return
        self._followers[task.id] = asyncio.ensure_future(self._follow(task.id, adopt))

    def watch(self, task: Task) -> None:
        """Watch a task's Slurm job in its cluster's queue (see dobby.runner.slurm)."""
        self.slurm.start()
        self.slurm.watch(task)

    @property
    def following(self) -> int:
        return sum(1 for f in self._followers.values() if not f.done())

    async def _follow(self, task_id: str, adopt: bool) -> None:
        try:
            await self._follow_loop(task_id, adopt)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a follower must never die silently
            log.exception("follower of %s crashed", task_id)
            task = self._get_task(task_id)
            if task.status == TaskStatus.RUNNING.value:
                self._finish(task, TaskStatus.FAILED, Reason.STALE, "internal error following task")
        finally:
            self._followers.pop(task_id, None)
            reading = self._reading.pop(task_id, None)
            if reading is not None:
                # A retried or re-submitted task writes new files under the same names: a
                # handle kept on the old ones would read the previous attempt's output.
                transport, paths = reading
                for name in ("out.jsonl", "exit"):
                    transport.release(paths.file(name))

    async def _follow_loop(self, task_id: str, adopt: bool) -> None:
        last_data = time.monotonic()
        interval = FAST_POLL
        last_probe = 0.0 if adopt else time.monotonic()
        failures = 0
        draining = False  # exit seen: one more read, issued after it, gets the last lines
        with self.logs.writer(task_id) as sink:
            while True:
                task = self._get_task(task_id)
                if task.status != TaskStatus.RUNNING.value:
                    return
                try:
                    transport, paths = await self._paths(task)
                    self._reading[task_id] = (transport, paths)
                    data, exit_text = await asyncio.gather(
                        transport.read_from(paths.file("out.jsonl"), sink.size, READ_LIMIT),
                        transport.read_from(paths.file("exit"), 0, 64),
                    )
                    failures = 0
                except TransportError as exc:
                    self.hosts.record(task.host or "", ok=False, error=str(exc))
                    failures += 1
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                    continue
                self.hosts.record(task.host or "", ok=True)
                now = time.monotonic()
                if data:
                    self._append(task, sink, data, final=draining)
                    if len(data) >= READ_LIMIT:
                        continue
                    last_data = now
                    interval = FAST_POLL
                if exit_text is not None and exit_text.strip():
                    if not draining:
                        draining = True
                        continue
                    await self._collect(task, transport, paths, _parse_exit(exit_text))
                    return
                if task.slurm_job:
                    if await self._slurm_ended(task, transport, paths):
                        return
                elif now - last_probe >= PROBE_EVERY:
                    last_probe = now
                    if await self._probe_lost(task, transport, paths):
                        return
                if self._timed_out(task):
                    await self._kill(task, transport, paths)
                    self._finish(
                        task,
                        TaskStatus.FAILED,
                        Reason.TIMEOUT,
                        f"timed out after {task.timeout:g}s",
                    )
                    return
                interval = next_poll(interval, now - last_data)
                await asyncio.sleep(interval)

    def _append(self, task: Task, sink: LogWriter, data: bytes, *, final: bool) -> None:
        """Append the whole lines of ``data`` to the hub's copy and publish their events."""
        offset = sink.size
        chunk = sink.append(data, final=final)  # final: the agent ended without a newline
        if chunk:
            events = tasklog.events(task.backend, chunk)
            self._publish_log(task, {"offset": offset, "next_offset": sink.size, "events": events})

    def _timed_out(self, task: Task) -> bool:
        if not task.timeout or not task.started_at:
            return False
        started = parse_time(task.started_at).timestamp()
        limit = task.timeout + TIMEOUT_GRACE + verify.extra_seconds(task)
        return time.time() - started > limit

    async def _slurm_ended(
        self, task: Task, transport: Transport, paths: scripts.TaskPaths
    ) -> bool:
        """Return True (and end the task) if its Slurm job ended and no exit file explains it."""
        info = self.slurm.ended(task.id)
        if info is None:
            return False
        outcome = job_outcome(info, exit_code=None, resubmits_left=resubmits_left(task))
        if outcome.action is Action.COLLECT:  # the job's status is run.sh's (see job.sh)
            await self._collect(task, transport, paths, outcome.exit_code)
        elif outcome.action in (Action.FINISH, Action.RESUBMIT):
            self.slurm.settle(task, outcome)
        else:
            return False
        return True

    async def _probe_lost(self, task: Task, transport: Transport, paths: scripts.TaskPaths) -> bool:
        """Return True (and fail the task) if its session is gone without an exit code."""
        res = await transport.run(
            scripts.render_probe(session=paths.session, paths=paths), timeout=20
        )
        state = scripts.parse_kv(res.stdout)
        if state.get("session") == "1" or state.get("exit"):
            return False
        self._finish(
            task,
            TaskStatus.FAILED,
            Reason.HOST_LOST,
            f"tmux session {paths.session} is gone and left no exit code on {task.host}",
        )
        return True

    # -- collect -----------------------------------------------------------------------
    async def _collect(
        self, task: Task, transport: Transport, paths: scripts.TaskPaths, exit_code: int | None
    ) -> None:
        err = await transport.read_from(paths.file("err.log"), 0, 1 << 20) or b""
        (self.logs.task_dir(task.id) / "err.log").write_bytes(err)
        stderr_tail = err[-4000:].decode("utf-8", "replace")
        backend = get_backend(task.backend)
        host_facts = await self._host_facts(backend, transport, paths)
        checked = await verify.read_outcome(task, transport, paths, self.logs, exit_code)
        result = backend.collect(
            # This run's lines (a half after a limit: its own), not the check's after them.
            self.logs.lines(task.id, task.log_base, end=checked.agent_end),
            exit_code=exit_code,
            stderr_tail=stderr_tail,
            model=task.model,
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
        )
        current = self._get_task(task.id)
        if current.status != TaskStatus.RUNNING.value:
            return  # cancelled meanwhile: cancellation wins
        task = current
        task.exit_code = exit_code
        task.summary = result.summary
        task.error = result.error
        task.cost_usd = result.cost_usd
        task.tokens = result.tokens
        task.models = result.models
        task.turns = result.turns
        task.session_id = result.session_id or task.session_id
        apply_agent_facts(task, result)
        followup.settle_usage(task, self._get_task, self._prices)
        own = halves.settle(task, prices=self._prices)
        outputs.apply(task)
        reason = result.reason
        if exit_code in (124, 137) and task.timeout:
            reason = Reason.TIMEOUT
            task.error = f"timed out after {task.timeout:g}s"
        for path in ("out.jsonl", "exit"):
            transport.release(paths.file(path))
        if reason is Reason.USAGE_LIMIT and result.quota is not None and self._on_limit:
            await self._wait_out(task, own, transport, paths)
            return
        status, reason, error = verify.judge(task, result.status, reason, task.error, checked)
        self._finish(task, status, reason, error)

    async def _wait_out(
        self,
        task: Task,
        own: halves.HalfUsage,
        transport: Transport,
        paths: scripts.TaskPaths,
    ) -> None:
        """Hand a run a usage limit stopped to the hub: the task waits, it does not fail."""
        assert self._on_limit is not None
        halves.record_half(task, own, finished_at=utcnow())
        try:
            self._on_limit(task)  # saves the task pending (waiting_on usage_limit)
        except Exception:  # noqa: BLE001 - a bad decision must not leave the task running
            log.exception("usage-limit handling of %s failed", task.id)
            self._finish(task, TaskStatus.FAILED, Reason.USAGE_LIMIT, task.error)
            return
        try:  # the next launch must not take this run's exit code for its own
            await transport.run(scripts.render_clear_run(paths=paths), timeout=30)
        except TransportError as exc:
            log.warning("could not clear the run files of %s: %s", task.id, exc)

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

    def _finish(
        self, task: Task, status: TaskStatus, reason: Reason | None, error: str | None
    ) -> None:
        task.status = status.value
        task.reason = reason.value if reason else None
        task.error = error
        task.waiting_on = None
        task.finished_at = utcnow()
        self._save(task, "task.finished")

    # -- cancel / recover --------------------------------------------------------------
    async def _kill(self, task: Task, transport: Transport, paths: scripts.TaskPaths) -> None:
        if task.slurm_job:
            await self.slurm.cancel(task, transport)
        else:
            await transport.run(scripts.render_cancel(paths=paths), timeout=30)

    async def kill(self, task: Task) -> None:
        """End a task's processes and tmux session on its host (best effort, logged)."""
        follower = self._followers.pop(task.id, None)
        if follower is not None:
            follower.cancel()
        if not task.host:
            return
        try:
            transport, paths = await self._paths(task)
            await self._kill(task, transport, paths)
        except TransportError as exc:
            log.warning("cancel of %s: could not reach %s: %s", task.id, task.host, exc)

    async def session_state(self, task: Task) -> dict[str, str]:
        """Return ``{"session": "0|1", "exit": code}`` for a task on its host; on a Slurm
        host ``{"job": id}`` when its submission reached Slurm."""
        transport, paths = await self._paths(task)
        if self.hosts.get(task.host or "").connection == "slurm":
            job = await self.slurm.find_job(transport, paths)
            return {"job": job} if job else {}
        res = await transport.run(
            scripts.render_probe(session=paths.session, paths=paths), timeout=20
        )
        return scripts.parse_kv(res.stdout)

    async def close(self) -> None:
        """Stop every follower (tasks keep running on their hosts)."""
        await self.slurm.stop()
        followers = list(self._followers.values())
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


def apply_agent_facts(task: Task, result: Result) -> None:
    """Copy what the backend read beyond the summary onto the task (denials, limits, timing)."""
    task.api_error_status = result.api_error_status
    task.duration_ms = result.duration_ms
    task.permission_denials = list(result.permission_denials)
    task.warnings = list(result.warnings)
    task.quota = result.quota.to_dict() if result.quota is not None else None
    task.usage_windows = [w.to_dict() for w in result.windows]


def _parse_exit(text: bytes) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
