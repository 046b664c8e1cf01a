"""The webhook: a local HTTP server receives signed POSTs, through retries, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dobby.core.events import EventBus
from dobby.core.retry import Backoff
from dobby.hub.webhook import Webhook
from tests.fixtures.hub import HubProcess
from tests.fixtures.wait import wait_until, wait_until_async

SECRET = "whsec-test-123"


class Receiver:
    """A local HTTP server recording POSTs; the first ``fail_first`` answers are 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until ``count`` deliveries arrived; return them all."""
        wait_until(
            lambda: len(self.received) >= count,
            timeout=timeout,
            what=f"{count} webhook deliveries",
            detail=lambda: self.received,
        )
        return self.received


def verified(delivery: dict[str, Any]) -> dict[str, Any]:
    """Check the signature like a receiver would and return the decoded body."""
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery["headers"]["X-Dobby-Signature"], expected)
    return json.loads(delivery["body"])  # type: ignore[no-any-return]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=1) as r:
        yield r


@pytest.fixture
def hub_env(receiver: Receiver) -> dict[str, str]:
    return {"DOBBY_WEBHOOK_URL": receiver.url, "DOBBY_WEBHOOK_SECRET": SECRET}


@pytest.mark.slow  # a hub process
def test_hub_posts_finished_tasks_and_drafts_signed_with_retries(
    hub: HubProcess, receiver: Receiver
) -> None:
    done = json.loads(hub.cli("add", "echo hooked", "--backend", "shell", "--json",
                              check=True).stdout)  # fmt: skip
    first = verified(receiver.wait(1)[0])
    assert receiver.attempts == 2  # the 500 was retried
    assert first["event"] == "task.finished"
    assert first["task"]["id"] == done["id"] and first["task"]["status"] == "completed"
    assert first["result"]["summary"] == "hooked"
    headers = receiver.received[0]["headers"]
    assert headers["X-Dobby-Event"] == "task.finished"
    assert headers["X-Dobby-Delivery"] == str(first["seq"])
    draft = json.loads(hub.cli("plan", "echo later", "--backend", "shell", "--json",
                               check=True).stdout)  # fmt: skip
    second = verified(receiver.wait(2)[1])
    assert second["event"] == "task.awaiting_approval"
    assert second["task"]["id"] == draft["id"]
    assert SECRET not in hub.log() and receiver.url not in hub.log()


async def test_webhook_gives_up_after_its_retries_without_blocking_publish() -> None:
    bus = EventBus()
    hook = Webhook(
        url="http://127.0.0.1:9/unreachable",
        secret=None,
        retry=Backoff(first=0.01, cap=0.01, tries=3),
    )
    hook.start(bus)
    for i in range(3):
        bus.publish("task.finished", task_id=f"t{i}", data={"id": f"t{i}"})
    bus.publish("task.updated", task_id="t0", data={})  # not a webhook event
    assert hook.delivered == hook.failed == 0  # publish only queued them: delivery comes later
    await wait_until_async(lambda: hook.failed >= 3, timeout=10, what="three failed deliveries")
    assert (hook.delivered, hook.failed) == (0, 3)
    await hook.stop()


async def test_webhook_unsigned_without_secret() -> None:
    with Receiver() as r:
        bus = EventBus()
        hook = Webhook(url=r.url, secret=None)
        hook.start(bus)
        bus.publish("task.awaiting_approval", task_id="d1", data={"id": "d1", "status": "draft"})
        await wait_until_async(lambda: r.received, timeout=10, what="the delivery")
        await hook.stop()
    assert "X-Dobby-Signature" not in r.received[0]["headers"]
    assert json.loads(r.received[0]["body"])["task"]["id"] == "d1"
