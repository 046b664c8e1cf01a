"""Launch a task on its host, follow its output, collect its result, cancel it.

The runner wires three parts: the launch (here: bundle, delivery, tmux), the followers
(:mod:`dobby.runner.follower`: output by byte offset into the hub's copy, never giving up on
a task that may be alive) and the collector (:mod:`dobby.runner.collector`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from dobby.backends import get_backend
from dobby.backends.pricing import ModelPrice
from dobby.core.aio import Turns, stop_tasks
from dobby.core.errors import (
    DispatchError,
    HostUnreachable,
    LaunchUnknown,
    NotFound,
    TransportError,
)
from dobby.core.models import Task
from dobby.core.ports import GetTask, LimitHit, SaveTask, TaskRevision
from dobby.core.slurm import SlurmSettings
from dobby.hostside import scripts
from dobby.hostside import slurm as slurm_scripts
from dobby.machines.gpu import gpu_env
from dobby.machines.hosts import HostManager
from dobby.machines.slurm.jobs import parse_submit
from dobby.results import followup, halves
from dobby.results.collect import BASE_FILE
from dobby.runner import verify
from dobby.runner.collector import Collector
from dobby.runner.follower import Followers
from dobby.runner.slurm import SlurmJobs
from dobby.store.git import RepoLocks, create_bundle, head_commit
from dobby.store.tasklog import TaskLogs
from dobby.transport import RunResult, Transport

log = logging.getLogger("dobby.runner")

LAUNCH_TIMEOUT = 60.0
LAUNCHES_PER_HOST = 2  # launches in flight on one host (see Runner._gate)
BUILD_TURN = 0.005  # seconds of launches built back to back, then one per turn of the loop
STOP_TIMEOUT = 10.0
# A cancel is answered once its stop reached the host, or after this long at most (the stop
# goes on in the background; the follower sends it again if the host never got it).
CANCEL_WAIT = 0.3


@dataclasses.dataclass(frozen=True)
class _Built:
    """A launch ready to run on its host (see Runner._build)."""

    transport: Transport
    paths: scripts.TaskPaths
    launch: str
    payload: str | None  # the files on stdin, when they are too big for the command's text
    start: str | None  # the commit the worktree starts from
    slurm: bool


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
        revision: TaskRevision | None = None,
    ) -> None:
        self.hosts = hosts
        self.logs = logs
        self.locks = locks
        self._get_task = get_task
        self._save = save
        self._publish_log = publish_log
        self._project_path = project_path
        self._prices = prices
        self._deliveries: dict[str, asyncio.Lock] = {}
        self._launching: dict[str, asyncio.Semaphore] = {}
        # Built back to back, the 40 first launches of a batch (2 on each of 20 hosts) held
        # the loop for 0.15-0.3 s, and no answer of theirs was read before the last was sent.
        self._turns = Turns(BUILD_TURN)
        self._stops: set[asyncio.Task[None]] = set()  # cancels' stops still on their way
        self.collector = Collector(
            logs=logs,
            locks=locks,
            get_task=get_task,
            project_path=project_path,
            prices=prices,
            host_model=self._host_model,
        )
        self.followers = Followers(
            logs=logs,
            get_task=get_task,
            save=save,
            publish_log=publish_log,
            locate=self._paths,
            record=hosts.record,
            collector=self.collector,
            kill=self._kill,
            on_limit=on_limit,
            revision=revision,
        )
        # Tasks on `connection: slurm` hosts; ``requeue`` queues one lost with its node again.
        self.slurm = SlurmJobs(
            hosts=hosts,
            get_task=get_task,
            save=save,
            follow=self.follow,
            finish=self.followers.finish,
            requeue=requeue,
        )
        self.followers.slurm = self.slurm

    async def _paths(self, task: Task) -> tuple[Transport, scripts.TaskPaths]:
        assert task.host is not None
        transport = self.hosts.transport(task.host)
        if not transport.connected:
            self.followers.streams.warm(transport)  # its log stream: at the handshake's end
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
        # Built once it is this launch's turn on its host, and in turns with the loop: the
        # first launches of a batch go out, and their answers are read, before the hub builds
        # the hundreds queued behind them.
        gate = self._gate(task.host or "")
        async with gate:
            await self._turns.take()
            built = await self._build(task, resume_session, prompt)
            # The stream follows the task from the start of this run's output once it began.
            follow = None if built.slurm else (task.id, built.paths.task_dir, task.log_base)
            res = await self._run_launch(
                task, built.transport, built.launch, built.payload, follow=follow
            )
        if res.exit_status == scripts.NEED_BUNDLE_EXIT and task.project and built.start:
            await self.deliver(
                task.project, built.start, res.stdout.strip() or None, built.transport, built.paths
            )
            async with gate:
                res = await self._run_launch(
                    task, built.transport, built.launch, built.payload, follow=follow
                )
        if res.exit_status == scripts.CLAIMED_EXIT:
            raise LaunchUnknown(f"{task.host}: launch {task.launch_id} was claimed already")
        if not res.ok:
            what = "sbatch" if built.slurm else "launch"
            raise DispatchError(
                f"{task.host}: {what} failed (exit {res.exit_status}): "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )
        if built.slurm:
            try:
                task.slurm_job = parse_submit(res.stdout)
            except ValueError as exc:
                raise DispatchError(f"{task.host}: {exc}") from None
        self.hosts.record(task.host or "", ok=True)

    def _gate(self, host: str) -> asyncio.Semaphore:
        """Return the semaphore that lets LAUNCHES_PER_HOST launches of ``host`` run at once.

        A host runs them in the order they came: a batch of hundreds then starts its first
        tasks in milliseconds instead of sharing the host's CPU among all of them until they
        all start together.
        """
        return self._launching.setdefault(host, asyncio.Semaphore(LAUNCHES_PER_HOST))

    async def _build(self, task: Task, resume_session: str | None, prompt: str | None) -> _Built:
        """Write what a launch needs (on Slurm, its files too) and return its command."""
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
        if not task.model and host.models.get(task.backend):  # the host's default model
            agent_view = dataclasses.replace(agent_view, model=host.models[task.backend])
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
        bundle = [
            ("prompt.md", task.prompt if prompt is None else prompt, 0o600),
            ("env", scripts.render_env(env), 0o600),
            ("run.sh", run_sh, 0o600),  # run by `bash run.sh`: it needs no exec bit
            *((name, data.decode("utf-8"), 0o600) for name, data in verify.files(task).items()),
            # The commit the worktree starts from, kept on the host too: a hub killed before
            # its own record of it reached the disk reads it back at collection.
            *([(BASE_FILE, base, 0o600)] if base else []),
        ]
        reuse = bool(resume_session)
        payload: str | None = None
        if slurm:
            job_sh = slurm_scripts.render_job_script(paths=paths)
            await asyncio.gather(
                *(transport.put(paths.file(n), t.encode(), mode=m) for n, t, m in bundle),
                transport.put(paths.file(slurm_scripts.JOB_SCRIPT), job_sh.encode()),
            )
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
            # One round trip: the files ride in the launch command's own text, or on its stdin
            # when they are too big for a command line.
            claim = scripts.claim_name(task.launch_id) if task.launch_id else None
            texts = {n: t for n, t, _ in bundle}
            embed = claim is not None and scripts.embeddable(list(texts.values()))
            payload = None if embed else "".join(texts.values())
            launch = scripts.render_launch(
                paths=paths,
                project=task.project,
                base=start,
                reuse_worktree=reuse,
                keep_output=goes_on,
                claim=claim,
                files=[(n, len(t.encode("utf-8")), m) for n, t, m in bundle],
                texts=texts if embed else None,
            )
        return _Built(transport, paths, launch, payload, start, slurm)

    async def _run_launch(
        self,
        task: Task,
        transport: Transport,
        launch: str,
        payload: str | None,
        *,
        follow: tuple[str, str, int] | None = None,
    ) -> RunResult:
        """Run the launch command (its caller holds the host's gate); a lost answer: LaunchUnknown.

        A launch without ``payload`` goes through the host's log stream: one fork there and
        0.5 ms of the hub's CPU, where an exec costs an SSH channel, an sshd session and
        1.2-1.5 ms of the hub's CPU (bench/dispatch.py). One with a payload, or on a host that
        cannot stream, is an exec of its own. ``follow``: the stream joins the task once it
        began (see HostStreams.launch).
        """
        try:
            if payload is None:
                async with asyncio.timeout(LAUNCH_TIMEOUT):
                    res = await self.followers.streams.launch(transport, launch, follow=follow)
                if res is not None:
                    return res
            return await transport.run(launch, input=payload, timeout=LAUNCH_TIMEOUT)
        except HostUnreachable:
            raise  # never connected: nothing was sent
        except (TransportError, TimeoutError) as exc:
            raise LaunchUnknown(
                f"{task.host}: the launch's answer was lost ({exc or 'timed out'})"
            ) from exc

    async def settle_launch(self, task: Task) -> dict[str, str]:
        """Ask the host what became of the task's launch, fencing it off if it never began."""
        transport, paths = await self._paths(task)
        if self.hosts.get(task.host or "").connection == "slurm":
            # sbatch is the launch there: its job, if Slurm has one, is the evidence.
            job = await self.slurm.find_job(transport, paths)
            return {"job": job} if job else {"fenced": "1"}
        if task.launch_id:
            command = scripts.render_settle(paths=paths, claim=scripts.claim_name(task.launch_id))
        else:  # launched by a hub from before claims: no pid file means it never began
            command = scripts.render_probe(session=paths.session, paths=paths)
        res = await transport.run(command, timeout=20)
        if not res.ok:
            raise TransportError(
                f"settle probe failed (exit {res.exit_status}): {res.stderr.strip()[-300:]}",
                host=task.host,
            )
        state = scripts.parse_kv(res.stdout)
        if not task.launch_id:
            state["fenced"] = "0" if state.get("started") == "1" else "1"
        return state

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
        # Two tasks of one project starting together on one account (under one inventory
        # name or several) must not init or fetch into its mirror at the same time.
        key = f"{transport.account}\0{project}"
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
        self.followers.follow(task, adopt=adopt)

    def watch(self, task: Task) -> None:
        """Watch a task's Slurm job in its cluster's queue (see dobby.runner.slurm)."""
        self.slurm.start()
        self.slurm.watch(task)

    def _host_model(self, task: Task) -> str | None:
        """Return the inventory's default model of the task's backend on its host."""
        try:
            host = self.hosts.get(task.host or "")
        except NotFound:  # removed from the inventory since: the CLI's own default
            return None
        return host.models.get(task.backend)

    @property
    def following(self) -> int:
        return self.followers.following

    # -- cancel / recover --------------------------------------------------------------
    async def _kill(self, task: Task, transport: Transport, paths: scripts.TaskPaths) -> None:
        if task.slurm_job:
            await self.slurm.cancel(task, transport)
            return
        res = await transport.run(scripts.render_stop(paths=paths), timeout=STOP_TIMEOUT)
        if not res.ok:
            raise TransportError(
                f"stop of {paths.task_id} failed (exit {res.exit_status}): "
                f"{res.stderr.strip()[-300:]}",
                host=transport.host.name,
            )

    async def kill(self, task: Task) -> None:
        """Stop a task on its host and forget it (best effort, logged): nothing is collected."""
        self.followers.stop(task.id)
        if not task.host:
            return
        try:
            transport, paths = await self._paths(task)
            await self._kill(task, transport, paths)
        except (TransportError, TimeoutError) as exc:
            log.warning("kill of %s: could not reach %s: %s", task.id, task.host, exc)

    async def cancel(self, task: Task) -> None:
        """Stop a cancelled task's agent, then collect it like any other ending.

        Returns once the stop is sent, or after ``CANCEL_WAIT`` at most: a host slow to answer
        gets it a moment later (or, unreachable, from the follower once it answers again). The
        follower then gathers what the run left — session id, tokens and cost so far, the
        partial work on ``dobby/<id>`` — and the task stays ``cancelled`` with all of it.
        """
        if not task.host:
            return
        if task.kind == "interactive" or task.slurm_job:  # nothing to collect: just end it
            await self.kill(task)
            return
        self.followers.cancel(task)
        job = asyncio.ensure_future(self._send_stop(task))
        self._stops.add(job)
        job.add_done_callback(self._stops.discard)
        await asyncio.wait({job}, timeout=CANCEL_WAIT)

    async def _send_stop(self, task: Task) -> None:
        try:
            transport, paths = await self._paths(task)
            await self._kill(task, transport, paths)
        except (TransportError, TimeoutError) as exc:
            log.warning("cancel of %s: could not reach %s yet: %s", task.id, task.host, exc)
            return
        self.followers.stop_sent(task.id)

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
        # Stops still on their way get a moment more; one cut short leaves that agent running
        # on its host (a cancelled task is not followed again after a restart).
        await stop_tasks(self._stops, timeout=0.2, what="the stops of cancelled tasks")
        await self.slurm.stop()
        await self.followers.close()
