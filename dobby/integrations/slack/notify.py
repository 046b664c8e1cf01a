"""Reply in a task's Slack thread when it finishes, fails, needs approval, or waits out a
usage limit (and again when it goes on).

The notifier follows the hub's ``GET /events`` stream (``HubClient.events``) in a thread. A task
submitted from Slack is *tracked* with the thread it came from. A fast task may finish before
``track()`` is called, so recently finished tasks are remembered too; and a slow poll re-reads
the tracked tasks from the hub, so an event missed while disconnected never loses a reply.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dobby.client.http import HubClient
from dobby.core.errors import HubError
from dobby.core.events import EventType
from dobby.core.notes import task_notes
from dobby.core.retry import Backoff, Retry
from dobby.core.timefmt import format_duration, parse_time
from dobby.integrations.slack.commands import cost, task_link

log = logging.getLogger(__name__)

FINISHED = ("completed", "failed", "cancelled")
# The events that carry a task or a race (handle): not a task's output (task.log), which comes
# for every chunk every task prints, nor the hosts' and GPUs' news.
NOTIFY_EVENTS = (
    *(t.value for t in EventType if t.startswith("task.") and t != EventType.TASK_LOG),
    "race.*",
)
RECENT = 2000  # finished tasks remembered for a late track()
SUMMARY_CHARS = 1500


@dataclass(frozen=True)
class Thread:
    """Where to reply: a channel and the thread's root message."""

    channel: str
    thread_ts: str


def approval_state(task: dict[str, Any]) -> tuple[str, str] | None:
    """Return (plan, error) of a draft ready for review, or None if it is not waiting on one.

    A draft with a planning run is ready once the plan (or the run's failure) is attached.
    """
    if task.get("status") != "draft":
        return None
    if task.get("plan_task") and not (task.get("plan") or task.get("error")):
        return None  # the agent is still writing the plan
    return (str(task.get("plan") or ""), str(task.get("error") or ""))


def _quote(text: str) -> str:
    text = text.strip()
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 1] + "…"
    return "\n".join("> " + line for line in text.splitlines())


def render_notification(task: dict[str, Any], hub_url: str) -> str:
    """Return the thread reply for a finished (or waiting) task."""
    tid = str(task.get("id"))
    link = task_link(hub_url, tid)
    status = task.get("status")
    where = f" on *{task['host']}*" if task.get("host") else ""
    duration = ""
    if task.get("started_at") and task.get("finished_at"):
        seconds = (parse_time(task["finished_at"]) - parse_time(task["started_at"])).total_seconds()
        duration = f" in {format_duration(seconds)}"
    if status == "completed":
        price = cost(task.get("cost_usd"))
        head = f":white_check_mark: Task {link} completed{where}{duration} · {price}"
        body = _quote(task.get("summary") or "") or "_(no summary)_"
    elif status == "failed":
        reason = f" ({task['reason']})" if task.get("reason") else ""
        head = f":x: Task {link} failed{reason}{where}{duration} · {cost(task.get('cost_usd'))}"
        body = _quote(task.get("error") or task.get("summary") or "") or "_(no error message)_"
    elif status == "cancelled":
        head, body = f":no_entry_sign: Task {link} was cancelled.", ""
    else:
        head = f":memo: Task {link} needs approval."
        if task.get("plan"):
            head = f":memo: The plan for task {link} is ready and needs approval:"
        elif task.get("error"):
            head = f":memo: Task {link} needs approval, but its plan failed: {task['error']}"
        body = _quote(task.get("plan") or "")
        body += (
            "\nReact ✅ to approve and run it, ❌ to reject it (or `dobby approve " + tid + "`)."
        )
    if status in FINISHED:
        notes = "\n".join(f":warning: {note}" for note in task_notes(task))
        body = "\n".join(x for x in (notes, body) if x)
    dashboard = f"<{hub_url.rstrip('/')}/dashboard#/tasks/{tid}|Open in the dashboard>"
    return "\n".join(x for x in (head, body, dashboard) if x)


RACE_TAIL_LINES = 4  # of each failed check's output in a race summary


def render_race_summary(race: dict[str, Any], hub_url: str) -> str:
    """Return the thread reply for a race that ended: the verdict, then one line per attempt."""
    rid = str(race.get("id"))
    link = task_link(hub_url, rid)
    columns = race.get("attempts") or []
    total = cost(race.get("cost_usd"))
    if race.get("status") == "completed":
        win: dict[str, Any] = next((c for c in columns if c.get("winner")), {})
        branch = f" · branch `{race['branch']}`" if race.get("branch") else ""
        head = (
            f":trophy: Race {link}: attempt #{win.get('n')} ({win.get('backend')} on "
            f"{win.get('host')}) won{branch} · {total} in all"
        )
    elif race.get("status") == "failed":
        head = f":x: Race {link} failed: no attempt passed its check · {total} in all"
    else:
        head = f":no_entry_sign: Race {link} was cancelled · {total} in all"
    lines = [head, f"Check: `{str(race.get('verify') or '').replace('`', chr(39))}`"]
    for col in columns:
        verify = col.get("verify") or {}
        parts = [str(col.get("state"))]
        if verify.get("status"):
            code = verify.get("exit_code")
            parts.append(
                f"check {verify['status']}" + (f" (exit {code})" if code is not None else "")
            )
        if col.get("duration_s") is not None:
            parts.append(format_duration(col["duration_s"]))
        if col.get("started_at"):  # an attempt cancelled before it started cost nothing
            parts += [cost(col.get("cost_usd")), _changes(col.get("diff_stat"))]
        star = " :star:" if col.get("winner") else ""
        where = col.get("host") or "no host yet"
        lines.append(
            f"• #{col.get('n')}{star} {col.get('backend')} on {where}: {' · '.join(parts)}"
        )
        if race.get("status") == "failed" and verify.get("tail"):
            tail = "\n".join(str(verify["tail"]).splitlines()[-RACE_TAIL_LINES:])
            lines.append(_quote(tail))
    dashboard = f"<{hub_url.rstrip('/')}/dashboard#/races/{rid}|Compare the attempts>"
    return "\n".join([*lines, dashboard])


def _changes(stat: Any) -> str:
    if not isinstance(stat, dict) or not stat:
        return "no changes"
    files, plus, minus = (stat.get(k, 0) for k in ("files_changed", "insertions", "deletions"))
    return f"{files} file(s) +{plus} -{minus}"


def limit_halves(task: dict[str, Any]) -> int:
    """Return how many times a usage limit has stopped the task's runs."""
    attempts = task.get("attempts") or []
    return sum(1 for a in attempts if isinstance(a, dict) and a.get("kind") == "usage_limit")


def render_limit_notice(task: dict[str, Any], hub_url: str) -> str:
    """Return the thread reply for a task a usage limit stopped: it waits, it did not fail."""
    link = task_link(hub_url, str(task.get("id")))
    account = f" of *{task['account']}*" if task.get("account") else ""
    head = f":hourglass_flowing_sand: Task {link} hit the usage limit{account}; it waits."
    body = _quote(str(task.get("wait_reason") or ""))
    return "\n".join(x for x in (head, body) if x)


def render_resume_notice(task: dict[str, Any], hub_url: str) -> str:
    """Return the thread reply for a task that goes on after a usage limit."""
    link = task_link(hub_url, str(task.get("id")))
    where = f" on *{task['host']}*" if task.get("host") else ""
    how = "in the same session" if task.get("resume_session") else "afresh"
    if task.get("fallback_from"):
        how = f"with {task.get('backend')} instead of {task['fallback_from']} (a new session)"
    return f":arrow_forward: Task {link} goes on {how}{where} after the usage limit."


class Notifier:
    """Follow the hub's events and post each tracked task's outcome in its thread."""

    def __init__(
        self,
        *,
        hub: HubClient,
        post: Callable[[Thread, str], str | None],
        hub_url: str,
        poll_interval: float = 30.0,
        on_waiting: Callable[[Thread, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.hub = hub
        self.post = post
        self.on_waiting = on_waiting  # told (thread, message ts, task) of each approval request
        self.hub_url = hub_url
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        # Held from posting an approval request until on_waiting has registered it: a reaction
        # arriving in between waits on it instead of finding an unknown message.
        self.announcing = threading.Lock()
        self._tracked: dict[str, Thread] = {}
        self._asked: dict[str, tuple[str, str]] = {}  # approval announced, for this plan/error
        self._paused: dict[str, int] = {}  # usage-limit stops announced per task
        self._resumed: dict[str, int] = {}  # ... and the restarts after them
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._since: int | None = None
        self._stop = threading.Event()

    # -- what the bot calls ----------------------------------------------------------------

    def track(self, task_id: str, where: Thread) -> None:
        """Reply in ``where`` when the task ends (now, if it already has)."""
        with self._lock:
            done = self._finished.get(task_id)
            if done is None:
                self._tracked[task_id] = where
        if done is not None:
            self._notify(where, done)

    def tracked(self) -> dict[str, Thread]:
        """Return the tasks still waiting for an outcome."""
        with self._lock:
            return dict(self._tracked)

    def start(self) -> None:
        """Follow the hub's events, and poll tracked tasks, in daemon threads."""
        threading.Thread(target=self.run, name="dobby-slack-events", daemon=True).start()
        threading.Thread(target=self._poll, name="dobby-slack-poll", daemon=True).start()

    def stop(self) -> None:
        """Ask the follower thread to stop after the current event or keep-alive."""
        self._stop.set()

    # -- the follower ------------------------------------------------------------------------

    def run(self) -> None:
        """Follow ``GET /events`` forever, reconnecting with backoff when the hub goes away."""
        retry = Retry(Backoff(first=1.0, factor=2.0, cap=30.0, jitter=0.1))
        while not self._stop.is_set():
            since = self._since
            try:
                self._follow()
                continue
            except HubError as exc:
                problem = f"event stream from the hub lost: {exc}"
            except OSError as exc:  # out of descriptors or memory here: the machine's, no bug
                problem = f"cannot follow the hub's events: {exc}"
            except Exception:  # a bug must not end notifications for good
                log.exception("notifier failed")
                problem = "notifier failed"
            if self._since != since:
                retry.reset()  # events came through since the last failure: a fresh one
            delay = retry.next_delay() or 0.0
            log.warning("%s (retrying in %.0fs)", problem, delay)
            self._stop.wait(delay)

    def _follow(self) -> None:
        # since=None at first: the hub starts at its newest event; later we resume without gaps.
        for event in self.hub.events(since=self._since, types=NOTIFY_EVENTS, give_up_after=30.0):
            if self._stop.is_set():
                return
            if isinstance(event, dict):
                if isinstance(event.get("seq"), int):
                    self._since = event["seq"]
                self.handle(event)

    def _poll(self) -> None:
        """Re-read the tracked tasks now and then; the safety net under the event stream."""
        while not self._stop.wait(self.poll_interval):
            try:
                self.reconcile()
            except (HubError, OSError) as exc:
                log.info("could not poll tracked tasks: %s", exc)
            except Exception:
                log.exception("polling tracked tasks failed")

    def reconcile(self) -> None:
        """Re-read tracked tasks (and races): events missed while disconnected still notify."""
        for task_id in list(self.tracked()):
            race = task_id.startswith("r-")
            try:
                task = self.hub.race(task_id) if race else self.hub.task(task_id)
            except HubError as exc:
                if exc.status == 404:
                    with self._lock:
                        self._tracked.pop(task_id, None)
                    continue
                raise
            kind = "race.updated" if race else "task.updated"
            self.handle({"type": kind, "task_id": task_id, "data": task})

    def handle(self, event: dict[str, Any]) -> None:
        """Act on one bus event: notify the thread of a tracked task that ended or waits.

        A race (``race.*`` events, ids ``r-…``) is tracked like a task: its thread gets the
        comparison of its attempts when it ends.
        """
        task = event.get("data")
        task_id = event.get("task_id")
        if str(event.get("type") or "").startswith("race.") and isinstance(task, dict):
            task_id = task.get("id")
            if task.get("status") == "completed" and not task.get("settled"):
                return  # the winner is known; wait for the losers to stop for the full tally
        if not task_id or not isinstance(task, dict) or "status" not in task:
            return
        status = task.get("status")
        text = None
        with self._lock:
            where = self._tracked.get(task_id)
            stops = limit_halves(task)
            if where is not None and status not in FINISHED and stops:
                if status == "pending" and stops > self._paused.get(task_id, 0):
                    self._paused[task_id] = stops
                    text = render_limit_notice(task, self.hub_url)
                elif status == "running" and self._paused.get(task_id, 0) > self._resumed.get(
                    task_id, 0
                ):
                    self._resumed[task_id] = self._paused[task_id]
                    text = render_resume_notice(task, self.hub_url)
        if text is not None and where is not None:
            self._notify(where, task, text)
            return
        with self._lock:
            if status in FINISHED:
                if where is None:
                    self._finished[task_id] = task
                    while len(self._finished) > RECENT:
                        self._finished.popitem(last=False)
                    return
                del self._tracked[task_id]
                self._asked.pop(task_id, None)
                self._paused.pop(task_id, None)
                self._resumed.pop(task_id, None)
            elif where is not None and _new_approval(task, self._asked.get(task_id)):
                self._asked[task_id] = approval_state(task) or ("", "")
            else:
                if status not in FINISHED:
                    self._finished.pop(task_id, None)  # retried: no longer finished
                return
        self._notify(where, task)

    def _notify(self, where: Thread, task: dict[str, Any], text: str | None = None) -> None:
        try:
            if str(task.get("id") or "").startswith("r-"):
                self.post(where, render_race_summary(task, self.hub_url))
                return
            if task.get("status") != "draft" or self.on_waiting is None:
                self.post(where, text or render_notification(task, self.hub_url))
                return
            with self.announcing:
                ts = self.post(where, text or render_notification(task, self.hub_url))
                if ts:
                    self.on_waiting(where, ts, task)
        except Exception:  # the post callback reports Slack errors itself; keep following
            log.exception("could not post the outcome of task %s", task.get("id"))


def _new_approval(task: dict[str, Any], announced: tuple[str, str] | None) -> bool:
    """Return True when a draft is ready for review and was not announced in this state."""
    state = approval_state(task)
    return state is not None and state != announced
