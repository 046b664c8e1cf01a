"""Attacks from web pages in a real browser (Debian's chromium via Playwright) against a real,
keyless hub process on loopback: a page on another origin (a second local HTTP server) can
neither submit a task nor read one, and a DNS-rebound page is refused by the Host check."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.dashboard import launch
from tests.fixtures.hub import HubProcess
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a real browser against a hub process

playwright_sync = pytest.importorskip("playwright.sync_api")
REBOUND = "attacker.example"  # resolved to 127.0.0.1 by chromium, as after a DNS rebinding
PAGE = b"<!doctype html><title>cat pictures</title><p>nothing to see here</p>"


class AttackerSite(BaseHTTPRequestHandler):
    """Serve an innocent-looking page: the attacks run in it with page.evaluate."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with playwright_sync.sync_playwright() as p:
        b = launch(p, args=(
            f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
            # Chromium's own guard (Local Network Access) would stop the rebound page's
            # requests first; off here, as in browsers without it, so the hub's guard is tested.
            "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
            "PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults",
        ))  # fmt: skip
        yield b
        b.close()


@pytest.fixture
def attacker() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AttackerSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def tasks(hub: HubProcess) -> list[dict[str, Any]]:
    return list(hub.client().tasks()["tasks"])


def refused(hub: HubProcess, method: str, path: str) -> int:
    """Return how many times the hub's access log shows a 403 or 415 for ``method path``."""
    lines = hub.log().splitlines()
    return sum(1 for ln in lines if f" {method} {path} " in ln and (" 403 " in ln or " 415 " in ln))


ATTACKS = """async (hub) => {
  const body = JSON.stringify({prompt: "touch /tmp/pwned", backend: "shell"});
  const out = {};
  const attempt = async (name, fn) => {
    try { out[name] = await fn(); } catch (e) { out[name] = "error: " + e.message; }
  };
  // A "simple" request: no preflight, the browser sends it and hides the answer.
  await attempt("text_plain", async () => (await fetch(hub + "/tasks", {method: "POST",
    mode: "no-cors", headers: {"Content-Type": "text/plain"}, body})).type);
  // JSON needs a preflight the hub never grants.
  await attempt("json", async () => (await fetch(hub + "/tasks", {method: "POST",
    headers: {"Content-Type": "application/json"}, body})).status);
  // Reading: CORS hides the answer, and the hub refuses the request anyway.
  await attempt("read", async () => (await (await fetch(hub + "/tasks")).text()).slice(0, 200));
  await attempt("read_no_cors", async () => (await fetch(hub + "/tasks", {mode: "no-cors"})).type);
  return out;
}"""

FORM = """(hub) => {
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.appendChild(frame);
  const form = document.createElement("form");
  form.method = "POST";
  form.action = hub + "/tasks";
  form.enctype = "text/plain";
  form.target = "sink";
  const field = document.createElement("input");
  field.name = '{"prompt": "touch /tmp/pwned", "backend": "shell", "x": "';
  field.value = '"}';
  form.appendChild(field);
  document.body.appendChild(form);
  form.submit();
}"""


def test_a_page_on_another_origin_can_neither_submit_nor_read(
    hub: HubProcess, attacker: str, page: Any
) -> None:
    page.goto(attacker)
    out = page.evaluate(ATTACKS, hub.url)
    assert out["text_plain"] == "opaque"  # the browser sent it; the hub refused it (below)
    assert str(out["json"]).startswith("error:"), out  # the preflight failed
    assert str(out["read"]).startswith("error:"), out  # nothing readable
    assert out["read_no_cors"] == "opaque"
    page.evaluate(FORM, hub.url)
    # The hub saw and refused each request: the text/plain fetch, the form post, the reads.
    wait_until(lambda: refused(hub, "POST", "/tasks") >= 2, what="two refused POSTs",
               detail=hub.log)  # fmt: skip
    wait_until(lambda: refused(hub, "GET", "/tasks") >= 2, what="two refused reads",
               detail=hub.log)  # fmt: skip
    assert tasks(hub) == []


def test_a_dns_rebound_page_is_refused_by_the_host_check(hub: HubProcess, page: Any) -> None:
    # After rebinding, attacker.example:PORT is the hub's own address: same origin for the page.
    evil = f"http://{REBOUND}:{hub.port}"
    page.route(
        f"{evil}/cats.html", lambda route: route.fulfill(body=PAGE, content_type="text/html")
    )
    page.goto(f"{evil}/cats.html")
    out = page.evaluate(
        """async () => {
      const read = await fetch("/tasks");
      const post = await fetch("/tasks", {method: "POST", headers: {"Content-Type":
        "application/json"}, body: JSON.stringify({prompt: "id", backend: "shell"})});
      const health = await fetch("/health");
      return {read: read.status, body: await read.text(), post: post.status,
              health: health.status};
    }"""
    )
    assert (out["read"], out["post"], out["health"]) == (403, 403, 403), out
    assert json.loads(out["body"])["error"]["code"] == "forbidden"
    assert tasks(hub) == []


def test_the_dashboard_itself_still_submits_and_reads(hub: HubProcess, page: Any) -> None:
    page.goto(f"{hub.url}/dashboard")
    out = page.evaluate(
        """async () => {
      const post = await fetch("/tasks", {method: "POST", headers: {"Content-Type":
        "application/json"}, body: JSON.stringify({prompt: "echo ok", backend: "shell"})});
      const read = await fetch("/tasks");
      return {post: post.status, count: (await read.json()).tasks.length};
    }"""
    )
    assert out == {"post": 201, "count": 1}
