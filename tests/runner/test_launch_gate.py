"""How launches reach a host: through its log stream (or an exec of their own), a bounded
number at once, in the order they came."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dobby.core.errors import LaunchUnknown
from dobby.core.models import Task
from dobby.hostside import scripts
from dobby.runner.runner import LAUNCHES_PER_HOST, _Built
from tests.fixtures.app import AppHub
from tests.fixtures.execs import count_runs
from tests.runner.test_streams import KILL_ITS_STREAM


async def test_launches_on_one_host_wait_their_turn(
    app_hub: AppHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = app_hub.core.runner
    transport = runner.hosts.transport("local")
    paths = scripts.TaskPaths(workdir=str(tmp_path), task_id="feed0001")
    marks, counts = tmp_path / "marks", tmp_path / "counts"
    marks.mkdir()
    counts.mkdir()
    launches = LAUNCHES_PER_HOST * 3

    async def build(task: Task, resume_session: str | None, prompt: str | None) -> _Built:
        # Each launch notes how many launches run beside it, holds a moment, and leaves.
        i = task.prompt
        command = (
            f"mkdir {marks}/{i}; ls {marks} | wc -l >{counts}/{i}; sleep 0.2; rmdir {marks}/{i}"
        )
        return _Built(transport, paths, command, None, None, slurm=False)

    monkeypatch.setattr(runner, "_build", build)
    tasks = [Task(prompt=str(i), backend="shell", host="local") for i in range(launches)]
    await asyncio.gather(*(runner.launch(task) for task in tasks))
    seen = [int((counts / str(i)).read_text()) for i in range(launches)]
    assert max(seen) <= LAUNCHES_PER_HOST, seen


async def test_a_launch_goes_through_the_hosts_stream_and_one_with_a_payload_is_an_exec(
    app_hub: AppHub,
) -> None:
    runner = app_hub.core.runner
    transport = runner.hosts.transport("local")
    await transport.connect()
    execs = count_runs(transport)
    task = Task(prompt="x", backend="shell", host="local")
    # The hub's own probes of the host may run meanwhile: only these commands count.
    res = await runner._run_launch(task, transport, "echo streamed", None)
    assert (res.exit_status, res.stdout) == (0, "streamed\n")
    assert "echo streamed" not in execs
    res = await runner._run_launch(task, transport, "cat", "from stdin")
    assert res.stdout == "from stdin" and "cat" in execs


async def test_a_launch_whose_stream_dies_is_a_launch_unknown(app_hub: AppHub) -> None:
    """Its answer is lost as an exec's would be: the claim and the settle probe decide."""
    runner = app_hub.core.runner
    transport = runner.hosts.transport("local")
    await transport.connect()
    task = Task(prompt="x", backend="shell", host="local")
    with pytest.raises(LaunchUnknown, match="answer was lost"):
        await runner._run_launch(task, transport, KILL_ITS_STREAM, None)


async def test_a_settle_probe_that_raises_is_asked_again(
    app_hub: AppHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a host's fault (an answer this hub cannot read, a bug): the task waits for the
    host's answer as it would for a host out of reach; it is neither dropped nor placed twice."""
    runner = app_hub.core.runner
    launch, settle_launch = runner.launch, runner.settle_launch
    launches: list[str] = []
    faults: list[str] = []

    async def lost_once(task: Task, **kw: object) -> None:
        launches.append(task.launch_id or "")
        if len(launches) == 1:
            raise LaunchUnknown("the launch's answer was lost")
        await launch(task, **kw)  # type: ignore[arg-type]

    async def unreadable_twice(task: Task) -> dict[str, str]:
        if len(faults) < 2:
            faults.append(task.id)
            raise ValueError("a reply this hub cannot read")
        return await settle_launch(task)

    monkeypatch.setattr(runner, "launch", lost_once)
    monkeypatch.setattr(runner, "settle_launch", unreadable_twice)
    status, task = await app_hub.call("POST", "/tasks", {"prompt": "echo hi", "backend": "shell"})
    assert status == 201, task
    done = await app_hub.wait_status(task["id"], timeout=60)
    # The first launch never ran (the settle probe fenced it off): placed once more, it ran.
    assert (done["status"], len(faults), len(launches)) == ("completed", 2, 2)
    assert launches[0] != launches[1]
