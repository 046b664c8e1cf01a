"""The Slack bot end to end: the real Bolt app and slack_sdk WebClient against a local stand-in
of Slack's Web API, signed Events API requests, a real hub process, a local host, fake agents."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.request import BoltRequest

from dobby.client.http import HubClient
from dobby.integrations.slack.app import SlackSettings, build_app, make_web_client
from tests.fixtures.hub import HubProcess, make_git_project, write_inventory
from tests.fixtures.slack_api import (
    SECRET,
    FakeSlack,
    event_request,
    mention,
    reaction,
    reply,
)

pytestmark = pytest.mark.slow  # the bot against a hub process

ADMIN = "UADMIN"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Iterator[HubProcess]:
    """One hub for the module (the shared ``hub`` is per test): a local host with the fake
    agents and labels cpu, projects spare and spare-api."""
    root = tmp_path_factory.mktemp("slack")
    local = {
        "name": "local",
        "connection": "local",
        "workdir": str(root / "work"),
        "labels": ["cpu"],
        "env": {"PATH": f"{fake_bin}:$PATH"},
    }
    inventory = write_inventory(root / "inventory.yaml", [local])
    with HubProcess(home=root / "home", inventory=inventory) as proc:
        client = proc.client()
        for name in ("spare", "spare-api"):
            client.register_project(name, str(make_git_project(root / name)))
        yield proc


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


class Harness:
    """A bot wired to the fake Slack and a hub; feeds it signed events like Slack would."""

    def __init__(self, slack: FakeSlack, hub_url: str) -> None:
        self.slack = slack
        settings = SlackSettings(
            bot_token="xoxb-test",
            signing_secret=SECRET,
            admins=frozenset({ADMIN}),
            hub_url="https://dobby.example.com",
        )
        client = make_web_client("xoxb-test", slack.base_url)
        self.app, self.bot = build_app(
            settings,
            hub=HubClient(url=hub_url, timeout=5),
            client=client,
            process_before_response=True,
            poll_interval=1.0,
        )
        self._ts = 100

    def ts(self) -> str:
        self._ts += 1
        return f"1690000000.{self._ts:06d}"

    def send(self, event: dict[str, Any]) -> None:
        resp = self.app.dispatch(event_request(event))
        assert resp.status == 200, resp.body

    def mention(self, text: str, **kw: Any) -> str:
        """Send a mention; return its ts (the thread the bot answers in)."""
        ts = self.ts()
        self.send(mention(text, ts=ts, **kw))
        return ts

    def preview(self, thread: str) -> dict[str, Any]:
        """Return the bot's preview message in a thread (its first post there)."""
        posts = self.slack.posts(thread)
        assert posts, f"no preview in thread {thread}: {self.slack.summary()}"
        ts = next(t for t, m in self.slack.messages.items() if m["thread_ts"] == thread)
        return {"ts": ts, **self.slack.messages[ts]}

    def replies(self, thread: str) -> list[str]:
        return [p["text"] for p in self.slack.posts(thread)]


@pytest.fixture
def bot(slack: FakeSlack, hub: HubProcess) -> Iterator[Harness]:
    harness = Harness(slack, hub.url)
    harness.bot.notifier.start()
    yield harness
    harness.bot.notifier.stop()


def tasks_with(hub: HubProcess, needle: str) -> list[dict[str, Any]]:
    return [t for t in hub.client().tasks()["tasks"] if needle in t["prompt"]]


# -- the main path ------------------------------------------------------------------------------


def test_mention_preview_confirm_runs_and_replies_with_result(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    assert slack.calls_of("auth.test"), "Bolt verifies the token against the stand-in"
    thread = bot.mention("[scenario:success] fix the login bug in spare")
    preview = bot.preview(thread)
    assert "project *spare*" in preview["text"]
    assert "backend *claude*" in preview["text"] and "priority *normal*" in preview["text"]
    assert "> [scenario:success] fix the login bug" in preview["text"]
    assert {c.params["name"] for c in slack.calls_of("reactions.add")} == {"white_check_mark", "x"}
    assert not tasks_with(hub, "fix the login bug")

    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    [task] = tasks_with(hub, "fix the login bug")
    assert task["project"] == "spare" and task["backend"] == "claude"
    assert task["prompt"] == "[scenario:success] fix the login bug"
    assert "Submitted by <@UALICE>" in slack.messages[preview["ts"]]["text"]
    assert any(task["id"] in text and "Submitted" in text for text in bot.replies(thread))

    done = slack.wait_for(lambda: [t for t in bot.replies(thread) if "completed" in t])
    finished = hub.wait_status(task["id"])
    assert finished["status"] == "completed"
    text = done[0]
    assert f"${finished['cost_usd']:.4f}" in text
    assert f"https://dobby.example.com/dashboard#/tasks/{task['id']}" in text
    assert finished["summary"].splitlines()[0].strip() in text
    # A second ✅ after submission does nothing.
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    assert len(tasks_with(hub, "fix the login bug")) == 1


def test_failed_task_reply_carries_the_error(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    thread = bot.mention("[scenario:api500] refactor the auth module in spare using codex")
    preview = bot.preview(thread)
    assert "backend *codex*" in preview["text"]
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    [task] = tasks_with(hub, "refactor the auth module")
    text = slack.wait_for(lambda: [t for t in bot.replies(thread) if "failed" in t])[0]
    finished = hub.wait_status(task["id"])
    assert finished["status"] == "failed"
    assert f"failed ({finished['reason']})" in text
    assert task["id"] in text and "/dashboard#/tasks/" in text


def test_only_requester_or_admin_can_confirm(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    thread = bot.mention("[scenario:success] bump the version in spare")
    preview = bot.preview(thread)
    bot.send(reaction("white_check_mark", ts=preview["ts"], user="UBOB"))
    assert any("only <@UALICE>" in t and "<@UBOB>" in t for t in bot.replies(thread))
    assert not tasks_with(hub, "bump the version")
    bot.send(reaction("x", ts=preview["ts"], user="UBOB"))
    assert not tasks_with(hub, "bump the version")
    bot.send(reaction("white_check_mark", ts=preview["ts"], user=ADMIN))
    assert len(tasks_with(hub, "bump the version")) == 1


def test_x_cancels_and_later_check_does_nothing(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    thread = bot.mention("[scenario:success] delete the old docs in spare")
    preview = bot.preview(thread)
    bot.send(reaction("x", ts=preview["ts"]))
    assert "Cancelled" in slack.messages[preview["ts"]]["text"]
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    assert not tasks_with(hub, "delete the old docs")


def test_thread_replies_edit_the_preview(bot: Harness, slack: FakeSlack, hub: HubProcess) -> None:
    thread = bot.mention("[scenario:success] write tests for the parser")
    preview = bot.preview(thread)
    assert "Which project" in preview["text"] and "`spare`" in preview["text"]
    assert not slack.calls_of("reactions.add"), "no ✅ offered while a question is open"
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    assert any("answer first" in t for t in bot.replies(thread))

    bot.send(reply("spare-api", thread_ts=thread, ts=bot.ts()))
    assert "project *spare-api*" in slack.messages[preview["ts"]]["text"]
    assert slack.calls_of("reactions.add")
    bot.send(reply("using shell with high priority", thread_ts=thread, ts=bot.ts()))
    bot.send(reply("prompt: echo edited-from-slack", thread_ts=thread, ts=bot.ts()))
    bot.send(reply("nice weather", thread_ts=thread, ts=bot.ts(), user="UBOB"))  # not the requester
    text = slack.messages[preview["ts"]]["text"]
    assert "backend *shell*" in text and "priority *high*" in text
    assert "> echo edited-from-slack" in text
    assert [c.params["ts"] for c in slack.calls_of("chat.update")] == [preview["ts"]] * 3

    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    [task] = tasks_with(hub, "edited-from-slack")
    assert (task["project"], task["backend"], task["priority"]) == ("spare-api", "shell", "high")
    done = slack.wait_for(lambda: [t for t in bot.replies(thread) if "completed" in t])
    assert "edited-from-slack" in done[0]  # a shell task's summary is its output


def test_ambiguous_and_unknown_projects_ask_with_candidates(bot: Harness, slack: FakeSlack) -> None:
    thread = bot.mention("fix the flaky test in spa")
    text = bot.preview(thread)["text"]
    assert "Which project did you mean by 'spa'?" in text
    assert "`spare`" in text and "`spare-api`" in text
    thread = bot.mention("add a changelog, project nope")
    text = bot.preview(thread)["text"]
    assert "No project named 'nope'" in text and "`spare`" in text
    thread = bot.mention("summary sparx-y 24h")
    assert any("No project named 'sparx-y'" in t for t in bot.replies(thread))


def test_status_commands(bot: Harness, slack: FakeSlack, hub: HubProcess) -> None:
    client = hub.client()
    done = client.add_task(prompt="echo summary-line-one", project="spare", backend="shell")
    hub.wait_status(done["id"])
    slow = client.add_task(prompt="sleep 30", project="spare-api", backend="shell")
    hub.wait_status(slow["id"], ("running",))
    try:
        thread = bot.mention("status")
        [text] = bot.replies(thread)
        assert "Tasks in the last 4h" in text and done["id"] in text and slow["id"] in text
        thread = bot.mention("status 12h")
        assert "last 12h" in bot.replies(thread)[0]
        thread = bot.mention("summary")
        text = bot.replies(thread)[0]
        assert "Summary for the last 12h" in text and "summary-line-one" in text
        assert re.search(r"\d+ completed", text) and "cost $" in text
        thread = bot.mention("summary spare 24h")
        text = bot.replies(thread)[0]
        assert "of *spare*" in text and "last 1d" in text and slow["id"] not in text
        thread = bot.mention("running")
        text = bot.replies(thread)[0]
        assert slow["id"] in text and done["id"] not in text and "*local*" in text
        thread = bot.mention("projects")
        assert "*spare*" in bot.replies(thread)[0] and "*spare-api*" in bot.replies(thread)[0]
        thread = bot.mention("help")
        assert "status" in bot.replies(thread)[0] and "✅" in bot.replies(thread)[0]
    finally:
        client.cancel(slow["id"])


def test_batch_from_a_bullet_list(bot: Harness, slack: FakeSlack, hub: HubProcess) -> None:
    text = (
        "in spare with high priority:\n"
        "- echo batch-one using shell\n"
        "- echo batch-two using shell\n"
        "• [scenario:success] document batch-three"
    )
    thread = bot.mention(text)
    preview = bot.preview(thread)
    assert "Batch preview: 3 tasks" in preview["text"]
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    if any("no such route: /batches" in t for t in bot.replies(thread)):
        pytest.skip("the hub has no POST /batches yet")
    tasks = tasks_with(hub, "batch-")
    assert len(tasks) == 3 and all(t["priority"] == "high" for t in tasks)
    assert {t["backend"] for t in tasks} == {"shell", "claude"}
    assert len({t["batch_id"] for t in tasks}) == 1 and tasks[0]["batch_id"]
    slack.wait_for(lambda: len([t for t in bot.replies(thread) if "completed" in t]) == 3)


def test_plan_first_then_approve_from_the_thread(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    thread = bot.mention("plan: [scenario:success] split the auth module in spare")
    preview = bot.preview(thread)
    assert "*plan first*" in preview["text"]
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    [draft] = [t for t in tasks_with(hub, "split the auth module") if not t.get("plan_for")]
    assert draft["status"] == "draft" and draft["plan_task"]

    def approval_message() -> str | None:
        return next(
            (ts for ts, m in slack.messages.items()
             if m["thread_ts"] == thread and "needs approval" in (m["text"] or "")),
            None,
        )  # fmt: skip

    ts = slack.wait_for(approval_message)
    planned = hub.client().task(draft["id"])
    assert planned["plan"] and planned["plan"].splitlines()[0] in slack.messages[ts]["text"]
    bot.send(reaction("white_check_mark", ts=ts, user="UBOB"))
    assert any("only <@UALICE>" in t and "approve" in t for t in bot.replies(thread))
    assert hub.client().task(draft["id"])["status"] == "draft"
    bot.send(reaction("white_check_mark", ts=ts))
    assert any("approved it" in t for t in bot.replies(thread))
    assert hub.wait_status(draft["id"])["status"] == "completed"
    slack.wait_for(lambda: [t for t in bot.replies(thread) if "completed" in t])


def test_socket_mode_requests_need_no_signature(slack: FakeSlack, hub: HubProcess) -> None:
    settings = SlackSettings(bot_token="xoxb-test", app_token="xapp-test")
    app, _ = build_app(
        settings,
        hub=HubClient(url=hub.url, timeout=5),
        client=make_web_client("xoxb-test", slack.base_url),
        process_before_response=True,
    )
    body = json.loads(event_request(mention("projects", ts="1690000001.000001")).raw_body)
    assert app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200
    assert "*spare*" in slack.posts("1690000001.000001")[0]["text"]


# -- errors -----------------------------------------------------------------------------------


def test_hub_down_is_answered_in_the_thread(slack: FakeSlack, tmp_path: Path) -> None:
    from tests.fixtures.hub import free_port

    harness = Harness(slack, f"http://127.0.0.1:{free_port()}")
    thread = harness.mention("fix the login bug in spare")
    [text] = harness.replies(thread)
    assert text.startswith(":warning: Hub error: cannot reach the hub at http://127.0.0.1:")
    thread = harness.mention("status")
    assert "cannot reach the hub" in harness.replies(thread)[0]


def test_hub_down_at_submit_keeps_the_preview_open(
    slack: FakeSlack, hub: HubProcess, tmp_path: Path, fake_bin: Path
) -> None:
    own = HubProcess(home=tmp_path / "home", inventory=hub.inventory).start()
    HubClient(url=own.url).register_project("spare", str(make_git_project(tmp_path / "spare")))
    harness = Harness(slack, own.url)
    thread = harness.mention("echo never-runs in spare using shell")
    preview = harness.preview(thread)
    own.stop()
    harness.send(reaction("white_check_mark", ts=preview["ts"]))
    assert any("Could not submit: cannot reach the hub" in t for t in harness.replies(thread))
    own.start()
    harness.send(reaction("white_check_mark", ts=preview["ts"]))  # fixed: ✅ again works
    assert [t["prompt"] for t in own.client().tasks()["tasks"]] == ["echo never-runs"]
    own.stop()


def test_rate_limited_post_is_retried_after_retry_after(bot: Harness, slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=1)
    thread = bot.mention("help")
    calls = slack.calls_of("chat.postMessage")
    assert len(calls) == 2 and calls[1].at - calls[0].at >= 1.0
    assert "status" in bot.replies(thread)[-1]


def test_rate_limit_that_persists_is_answered_in_the_thread(bot: Harness, slack: FakeSlack) -> None:
    thread = bot.mention("rename the module in spare")
    preview = bot.preview(thread)
    slack.fail("chat.update", status=429, retry_after=1, times=2)
    bot.send(reaction("x", ts=preview["ts"]))
    assert any(
        "Slack is rate-limiting `chat.update` (retry after 1s)" in t for t in bot.replies(thread)
    )


def test_slack_api_error_is_answered_in_the_thread(bot: Harness, slack: FakeSlack) -> None:
    slack.fail("reactions.add", error="missing_scope")
    thread = bot.mention("rename the package in spare")
    assert any(
        "Slack API error on `reactions.add`: missing_scope" in t for t in bot.replies(thread)
    )


def test_unsigned_or_stale_requests_are_refused(bot: Harness, slack: FakeSlack) -> None:
    good = event_request(mention("help", ts=bot.ts()))
    forged = BoltRequest(
        body=good.raw_body, headers={**good.headers, "x-slack-signature": ["v0=00"]}
    )
    assert bot.app.dispatch(forged).status == 401
    wrong_secret = event_request(mention("help", ts=bot.ts()), secret="not-the-secret")
    assert bot.app.dispatch(wrong_secret).status == 401
    assert not slack.posts()


def test_a_race_from_slack_gets_its_comparison_in_the_thread(
    bot: Harness, slack: FakeSlack, hub: HubProcess
) -> None:
    text = "race 2: [scenario:success] create hello in spare, verify with `test -f hello.txt`"
    thread = bot.mention(text)
    preview = bot.preview(thread)
    assert "*race of 2*" in preview["text"] and "check `test -f hello.txt`" in preview["text"]
    bot.send(reaction("white_check_mark", ts=preview["ts"]))
    submitted = slack.wait_for(lambda: [t for t in bot.replies(thread) if "Submitted" in t])
    race_id = re.search(r"dashboard#/races/(r-[0-9a-f]+)", submitted[0])
    assert race_id, submitted
    summary = slack.wait_for(lambda: [t for t in bot.replies(thread) if "Race <" in t])[0]
    race = hub.client().race(race_id.group(1))
    assert race["status"] == "completed" and race["verify"] == "test -f hello.txt"
    assert summary.startswith(":trophy: Race <https://dobby.example.com/dashboard#/races/")
    assert "attempt #1 (claude on local) won" in summary
    assert "• #1 :star: claude on local: passed · check passed (exit 0)" in summary
    # spare runs one task at a time: #2 never started before #1 won
    assert "• #2 claude on no host yet: cancelled\n" in summary


def test_a_replayed_signed_event_is_handled_once(bot: Harness, slack: FakeSlack) -> None:
    thread = bot.ts()
    signed = event_request(mention("echo once in spare using shell", ts=thread))
    assert bot.app.dispatch(signed).status == 200
    replay = BoltRequest(body=signed.raw_body, headers=signed.headers)
    assert bot.app.dispatch(replay).status == 200  # acknowledged, so Slack stops retrying
    assert len(slack.posts(thread)) == 1, slack.summary()
    assert len(slack.calls_of("reactions.add")) == 2  # ✅ and ❌ on the one preview
