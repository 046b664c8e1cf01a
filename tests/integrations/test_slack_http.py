"""``dobby slack --http PORT`` as a real process: Slack's signed HTTP events in, Web API calls
out to the local stand-in, tasks into a real hub."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.fixtures.hub import HubProcess, free_port, make_git_project
from tests.fixtures.procs import out_of_descriptors
from tests.fixtures.slack_api import (
    SECRET,
    FakeSlack,
    event_request,
    mention,
    reaction,
    signed_headers,
)
from tests.fixtures.wait import wait_listening, wait_until

pytestmark = pytest.mark.slow  # the dobby slack process against a hub process


@pytest.fixture
def hub(hub: HubProcess, tmp_path: Path) -> HubProcess:
    """The shared hub with project ``spare`` registered."""
    hub.client().register_project("spare", str(make_git_project(tmp_path / "spare")))
    return hub


class Bot(NamedTuple):
    url: str  # its events endpoint
    slack: FakeSlack
    proc: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr


@pytest.fixture
def bot_process(hub: HubProcess, tmp_path: Path) -> Iterator[Bot]:
    """Run ``dobby slack --http`` against the fake Slack API."""
    with FakeSlack() as slack:
        port = free_port()
        env = {
            **hub.env(),
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.base_url,
            "DOBBY_HUB_URL": "https://dobby.example.com",
        }
        log = open(tmp_path / "slack.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "dobby", "slack", "--http", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(
                port,
                proc=proc,
                timeout=20,
                what="dobby slack --http",
                detail=lambda: (tmp_path / "slack.log").read_text(),
            )
            yield Bot(f"http://127.0.0.1:{port}/slack/events", slack, proc, tmp_path / "slack.log")
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


def post(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def send(url: str, event: dict) -> int:
    req = event_request(event)
    return post(url, req.raw_body, signed_headers(req.raw_body))[0]


def test_http_events_mode_end_to_end(bot_process: Bot, hub: HubProcess) -> None:
    url, slack = bot_process.url, bot_process.slack
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    forged = {**signed_headers(challenge), "x-slack-signature": "v0=" + "0" * 64}
    assert post(url, challenge, forged)[0] == 401
    stale = {**signed_headers(challenge), "x-slack-request-timestamp": "soon"}
    assert post(url, challenge, stale) == (
        400,
        "X-Slack-Request-Timestamp must be a number of seconds",
    )
    status, body = post(url, challenge, signed_headers(challenge))
    assert status == 200 and "c-123" in body

    thread = "1690000100.000001"
    assert send(url, mention("echo over-http in spare using shell", ts=thread)) == 200
    preview = slack.wait_for(lambda: slack.posts(thread))[0]
    assert "backend *shell*" in preview["text"] and "> echo over-http" in preview["text"]
    preview_ts = next(t for t, m in slack.messages.items() if m["thread_ts"] == thread)
    assert send(url, reaction("white_check_mark", ts=preview_ts)) == 200
    done = slack.wait_for(
        lambda: [p["text"] for p in slack.posts(thread) if "completed" in p["text"]]
    )
    [task] = hub.client().tasks()["tasks"]
    assert task["prompt"] == "echo over-http" and task["status"] == "completed"
    assert f"https://dobby.example.com/dashboard#/tasks/{task['id']}" in done[0]
    assert "over-http" in done[0]


def test_out_of_descriptors_slack_requests_wait_and_are_answered(bot_process: Bot) -> None:
    challenge = json.dumps({"type": "url_verification", "challenge": "c-456", "token": "t"})
    answers: list[tuple[int, str]] = []
    asking = threading.Thread(
        target=lambda: answers.append(post(bot_process.url, challenge, signed_headers(challenge)))
    )
    with out_of_descriptors(bot_process.proc.pid):
        asking.start()  # its connection cannot be accepted now: it waits, it does not fail
        wait_until(
            lambda: "out of file descriptors" in bot_process.log.read_text(),
            what="dobby slack to say it is out of descriptors",
        )
        assert not answers
    asking.join(30)
    assert answers and answers[0][0] == 200 and "c-456" in answers[0][1]
    wait_until(
        lambda: "dobby slack accepts connections again" in bot_process.log.read_text(),
        what="dobby slack to say it accepts again",
    )
    log = bot_process.log.read_text()
    # Said once, not a traceback for every try of the accept loop.
    assert log.count("dobby slack is out of file descriptors") == 1, log
    assert "Traceback" not in log and "Exception in callback" not in log, log


def test_http_mode_needs_a_signing_secret(hub: HubProcess) -> None:
    env = {**hub.env(), "SLACK_BOT_TOKEN": "xoxb-test"}
    res = subprocess.run(
        [sys.executable, "-m", "dobby", "slack", "--http", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "SLACK_SIGNING_SECRET" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "dobby", "slack"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "SLACK_APP_TOKEN" in res.stderr
