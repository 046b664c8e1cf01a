"""The notifier: which hub events become thread replies, exactly once; and catching up."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest

from dobby.client.http import HubClient
from dobby.core.events import type_filter
from dobby.integrations.slack.notify import (
    NOTIFY_EVENTS,
    Notifier,
    Thread,
    render_notification,
)
from tests.fixtures.hub import HubProcess

HUB = "https://dobby.example.com"
WHERE = Thread("C1", "1.0")


class Recorder:
    """Collect what the notifier posts (the Slack side is tested in test_slack_bot.py)."""

    def __init__(self) -> None:
        self.posts: list[tuple[Thread, str]] = []
        self.waiting: list[tuple[Thread, str, str]] = []

    def post(self, where: Thread, text: str) -> str:
        self.posts.append((where, text))
        return f"2.{len(self.posts)}"

    def on_waiting(self, where: Thread, ts: str, task: dict[str, Any]) -> None:
        self.waiting.append((where, ts, task["id"]))


def notifier(rec: Recorder, url: str = "http://127.0.0.1:9") -> Notifier:
    return Notifier(hub=HubClient(url=url), post=rec.post, hub_url=HUB, on_waiting=rec.on_waiting)


def task(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "t1", "status": status, **fields}


def event(data: dict[str, Any], kind: str = "task.updated") -> dict[str, Any]:
    return {"type": kind, "task_id": data["id"], "data": data}


def test_finished_tracked_task_posts_once_with_summary_cost_and_link() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.track("t1", WHERE)
    n.handle(event(task("running")))
    assert rec.posts == []
    done = task("completed", summary="All tests pass.\nDetails…", cost_usd=0.0437, host="h1")
    n.handle(event(done, "task.finished"))
    n.handle(event(done, "task.finished"))
    [(where, text)] = rec.posts
    assert where == WHERE
    assert "completed on *h1* · $0.0437" in text and "> All tests pass." in text
    assert f"<{HUB}/dashboard#/tasks/t1|Open in the dashboard>" in text
    assert n.tracked() == {}


def test_a_task_that_finished_before_track_is_posted_at_track() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.handle(event(task("failed", reason="agent_error", error="API 500"), "task.finished"))
    assert rec.posts == []
    n.track("t1", WHERE)
    assert "failed (agent_error)" in rec.posts[0][1] and "> API 500" in rec.posts[0][1]


def test_a_retried_task_is_no_longer_finished() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.handle(event(task("cancelled"), "task.finished"))
    n.handle(event(task("pending")))
    n.track("t1", WHERE)
    assert rec.posts == [] and n.tracked() == {"t1": WHERE}


def test_untracked_and_malformed_events_are_ignored() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.handle({"type": "host.updated", "data": {"name": "h1"}})
    n.handle({"type": "task.log", "task_id": "t1", "data": {"text": "x"}})
    n.handle(event(task("completed", summary="x")))
    assert rec.posts == []


def test_approval_is_asked_once_when_the_plan_is_attached() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.track("t1", WHERE)
    n.handle(event(task("draft", plan_task="p1", waiting_on="approval"), "task.created"))
    assert rec.posts == []  # the agent is still writing the plan
    ready = task("draft", plan_task="p1", plan="1. split\n2. test", waiting_on="approval")
    n.handle(event(ready, "task.awaiting_approval"))
    n.handle(event(ready))
    [(_, text)] = rec.posts
    assert "plan for task" in text and "> 1. split" in text and "React ✅ to approve" in text
    assert rec.waiting == [(WHERE, "2.1", "t1")]
    n.handle(event(task("pending"), "task.approved"))
    n.handle(event(task("completed", summary="done", cost_usd=0.5), "task.finished"))
    assert len(rec.posts) == 2 and "completed" in rec.posts[1][1]


def test_render_shows_warnings_api_status_and_denied_actions() -> None:
    denied = [{"tool": "Write", "target": "hello.txt"}, {"tool": "Bash", "target": "rm -rf x"}]
    warning = "2 action(s) denied by the host's permissions: Write hello.txt, Bash rm -rf x"
    text = render_notification(
        task("completed", summary="Done", warnings=[warning], permission_denials=denied), HUB
    )
    assert (
        f":warning: {warning}" in text
        and ":warning: denied: Write hello.txt, Bash rm -rf x" in text
    )
    assert text.index(":warning:") < text.index("> Done")  # before the summary: not missed
    text = render_notification(task("failed", error="API Error: 529", api_error_status=529), HUB)
    assert ":warning: API error status 529" in text and "> API Error: 529" in text
    assert ":warning:" not in render_notification(task("completed", summary="ok"), HUB)


def test_render_cancelled_and_failed_plan() -> None:
    assert "was cancelled" in render_notification(task("cancelled"), HUB)
    text = render_notification(task("draft", plan_task="p", error="planning run p failed"), HUB)
    assert "its plan failed: planning run p failed" in text


@pytest.mark.slow  # a hub process
def test_reconcile_catches_up_with_tasks_that_ended_unseen(hub: HubProcess) -> None:
    client = hub.client()
    done = client.add_task(prompt="echo caught-up", backend="shell")
    hub.wait_status(done["id"])
    rec = Recorder()
    n = notifier(rec, hub.url)
    n.track(done["id"], WHERE)
    n.track("gone0000", WHERE)  # unknown to the hub: dropped, not retried forever
    assert rec.posts == []
    n.reconcile()
    [(_, text)] = rec.posts
    assert done["id"] in text and "caught-up" in text
    assert n.tracked() == {}


def test_a_usage_limit_is_announced_as_a_wait_then_the_resume_once_each() -> None:
    rec = Recorder()
    n = notifier(rec)
    n.track("t1", WHERE)
    half = {"kind": "usage_limit", "reason": "usage_limit"}
    waiting = task(
        "pending",
        waiting_on="usage_limit",
        account="claude/h1",
        attempts=[half],
        resume_session="s-1",
        wait_reason="claude/h1 hit its five_hour limit; resumes session s-1 on h1 at 09:52",
    )
    n.handle(event(waiting))
    n.handle(event({**waiting, "wait_reason": "still waiting"}))  # no second notice
    running = {**waiting, "status": "running", "waiting_on": None, "host": "h1"}
    n.handle(event(running, "task.started"))
    n.handle(event(running))
    assert [text.split(" ")[0] for _, text in rec.posts] == [
        ":hourglass_flowing_sand:",
        ":arrow_forward:",
    ]
    limit, resume = (text for _, text in rec.posts)
    assert "hit the usage limit of *claude/h1*; it waits." in limit
    assert "> claude/h1 hit its five_hour limit; resumes session s-1" in limit
    assert "goes on in the same session on *h1* after the usage limit" in resume
    done = {**running, "status": "completed", "summary": "done", "cost_usd": 0.5}
    n.handle(event(done, "task.finished"))
    assert len(rec.posts) == 3 and "completed" in rec.posts[2][1] and n.tracked() == {}


def test_the_notifier_asks_the_hub_for_task_and_race_events_but_no_output() -> None:
    wanted = type_filter(",".join(NOTIFY_EVENTS))  # the hub refuses a type it does not know
    assert wanted is not None
    assert all(wanted(t) for t in ("task.finished", "task.awaiting_approval", "race.finished"))
    assert not any(wanted(t) for t in ("task.log", "gpus.updated", "host.updated"))


class OutOfDescriptors(HubClient):
    """A hub client on a machine out of file descriptors: every call fails as the OS does
    (the slack bot's import of its HTTP stack hit it once, under a lowered limit)."""

    def __init__(self) -> None:
        super().__init__(url="http://127.0.0.1:9")
        self.notifier: Notifier | None = None

    def _fail(self) -> Any:
        assert self.notifier is not None
        self.notifier.stop()  # one round of each loop is enough
        raise OSError(errno.EMFILE, "Too many open files")

    def events(self, *args: Any, **kwargs: Any) -> Any:
        return self._fail()

    def task(self, *args: Any, **kwargs: Any) -> Any:
        return self._fail()


def test_out_of_descriptors_is_one_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    hub = OutOfDescriptors()
    n = Notifier(hub=hub, post=Recorder().post, hub_url=HUB, poll_interval=0.01)
    hub.notifier = n
    with caplog.at_level(logging.INFO, logger="dobby.integrations.slack.notify"):
        n.run()  # the event stream: fails, says so, and would retry
        n._stop.clear()
        n.track("t1", WHERE)
        n._poll()  # the safety net's poll of tracked tasks
    said = [r.getMessage() for r in caplog.records]
    assert "cannot follow the hub's events: [Errno 24] Too many open files (retrying in 1s)" in said
    assert "could not poll tracked tasks: [Errno 24] Too many open files" in said
    assert not [r for r in caplog.records if r.exc_info], said  # no traceback
