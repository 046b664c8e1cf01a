"""Unit tests of the CLI side: timefmt, rendering, HubClient and click commands against a real
tiny HTTP server (the end-to-end tests against the real hub live elsewhere)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shlex
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dobby.cli import render as render
from dobby.cli.main import main
from dobby.client import wire
from dobby.client.http import HubClient, _query
from dobby.core.errors import HubError, ValidationError
from dobby.core.retry import Backoff
from dobby.core.timefmt import ago, format_duration, local_time, parse_duration, seconds_between
from tests.fixtures.keepalive import self_signed, tls_server_context

KEY = "sk-secret-key-123"
TASK = {
    "id": "abcd1234",
    "title": "Fix the flaky test",
    "prompt": "Fix the flaky test",
    "project": "demo",
    "backend": "claude",
    "model": None,
    "priority": "normal",
    "status": "running",
    "reason": None,
    "host": "gpu1",
    "created_at": "2026-11-25T07:00:00Z",
    "started_at": "2026-11-25T07:00:05Z",
    "finished_at": None,
    "cost_usd": None,
    "tokens": {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0},
}
DONE = {**TASK, "status": "completed", "finished_at": "2026-11-25T07:01:10Z", "cost_usd": 0.0437}
NOT_FOUND = {"error": {"code": "not_found", "message": "unknown task 'x'"}}

# -- a real tiny hub ---------------------------------------------------------------------

Route = Callable[["_Handler", dict[str, str], bytes], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the answer ends when the connection closes
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.hub.requests.append((self.command, parts.path, query, body, dict(self.headers)))
        route = self.hub.routes.get((self.command, parts.path))
        if route is None:
            return self.send_json(404, {"error": {"code": "not_found", "message": "no route"}})
        route(self, query, body)

    do_GET = do_POST = do_PATCH = _dispatch

    def send_json(self, status: int, body: Any) -> None:
        """Answer with a JSON body."""
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def start_sse(self) -> None:
        """Begin an event stream."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def frame(self, event: str, data: Any) -> None:
        """Write one SSE frame."""
        self.wfile.write(f": ping\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


class FakeHub:
    """A ThreadingHTTPServer on 127.0.0.1 answering canned routes and recording requests."""

    def __init__(self, port: int = 0) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes, dict[str, str]]] = []
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """Answer ``method path`` with a fixed JSON body."""
        self.routes[(method, path)] = lambda h, q, b: h.send_json(status, body)

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _events_route(hub: FakeHub) -> None:
    """First connection: one log frame, then the connection drops; second: the rest + end."""

    def route(h: _Handler, query: dict[str, str], body: bytes) -> None:
        h.start_sse()
        if query.get("offset") == "0":
            h.frame(
                "log",
                {
                    "offset": 0,
                    "next_offset": 10,
                    "text": "a\n",
                    "events": [{"kind": "text", "text": "first"}],
                },
            )
            return  # drop before `end`
        h.frame(
            "log",
            {
                "offset": int(query["offset"]),
                "next_offset": 20,
                "text": "b\n",
                "events": [{"kind": "tool_use", "tool": "Bash", "target": "echo hi"}],
            },
        )
        h.frame("status", DONE)
        h.frame("end", DONE)

    hub.routes[("GET", "/tasks/abcd1234/events")] = route


def _invoke(hub_url: str, args: list[str], **kwargs: Any) -> Any:
    env = {"DOBBY_URL": hub_url, "DOBBY_API_KEY": KEY, "COLUMNS": "100"}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False, **kwargs)


# -- timefmt -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("30s", 30),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 45 ", 45),
        ("0", 0),
        (120, 120),
        ("2H", 7200),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5", "m30", "1h-30m", "1.2.3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "-"),
        (0, "0s"),
        (45.4, "45s"),
        (59.6, "1m00s"),
        (312, "5m12s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (86400 + 4 * 3600, "1d04h"),
        (-3, "0s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_local_time_converts_utc_to_the_given_zone() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert local_time("2026-11-25T07:30:00.123456Z", tz=plus2) == "2026-11-25 09:30:00"
    assert local_time("2026-11-25T23:30:00+00:00", tz=plus2) == "2026-11-26 01:30:00"
    assert local_time(None) == "-"
    assert local_time("not a time") == "not a time"


@pytest.mark.parametrize(
    "iso, text",
    [
        ("2026-11-25T12:00:00Z", "just now"),
        ("2026-11-25T11:59:30Z", "30s ago"),
        ("2026-11-25T11:55:00Z", "5m00s ago"),
        ("2026-11-25T09:58:59Z", "2h01m ago"),
        (None, "-"),
    ],
)
def test_ago(iso: str | None, text: str) -> None:
    now = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert ago(iso, now=now) == text


def test_seconds_between() -> None:
    assert seconds_between("2026-11-25T07:00:05Z", "2026-11-25T07:01:10Z") == 65
    assert seconds_between(None, "2026-11-25T07:01:10Z") is None


# -- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, line",
    [
        ({"kind": "text", "text": "I'll create hello.txt."}, "I'll create hello.txt."),
        ({"kind": "text", "text": "two\nlines"}, "two\nlines"),
        (
            {"kind": "tool_use", "tool": "Bash", "target": "echo hi", "text": "Bash"},
            "→ Bash: echo hi",
        ),
        ({"kind": "tool_use", "tool": "TodoWrite"}, "→ TodoWrite"),
        ({"kind": "tool_result", "text": "hello", "is_error": False}, "← ok"),
        ({"kind": "tool_result", "text": "exit 2\nmore", "is_error": True}, "← error: exit 2"),
        ({"kind": "retry", "text": "attempt 1/10 500"}, "! API retry attempt 1/10 500"),
        ({"kind": "retry", "text": "Reconnecting... 1/5"}, "! Reconnecting... 1/5"),
        ({"kind": "result", "text": "Done", "is_error": False}, "✓ result: Done"),
        ({"kind": "result", "text": "API Error: 401", "is_error": True}, "✗ API Error: 401"),
        ({"kind": "command", "target": "ls -la"}, "→ $ ls -la"),
        # codex: the command when it starts, its outcome (exit code, output) when it ends
        ({"kind": "command", "target": "ls", "data": {"status": "in_progress"}}, "→ $ ls"),
        (
            {"kind": "command", "target": "ls", "data": {"exit_code": 0, "output": "a ⏎ b"}},
            "← exit 0: a ⏎ b",
        ),
        (
            {
                "kind": "command",
                "target": "ls /x",
                "is_error": True,
                "data": {"exit_code": 2, "output": "ls: cannot access '/x'"},
            },
            "← error exit 2: ls: cannot access '/x'",
        ),
        (
            {"kind": "command", "target": "ls", "data": {"exit_code": None, "status": "declined"}},
            "← declined",
        ),
        ({"kind": "file_change", "text": "update /repo/a.py"}, "✎ update /repo/a.py"),
        ({"kind": "error", "text": "Falling back"}, "! error: Falling back"),
        ({"kind": "system", "text": "session 802c model opus"}, "· session 802c model opus"),
        ({"kind": "line", "text": "epoch 1 loss 0.3"}, "epoch 1 loss 0.3"),
        ({"kind": "text", "text": "red \x1b[31malert\x1b[0m"}, "red alert"),
        ({"kind": "system", "text": ""}, None),
    ],
)
def test_render_log_event(event: dict[str, Any], line: str | None) -> None:
    assert render.render_log_event(event) == line


def test_task_table_cuts_long_unicode_titles_to_the_width() -> None:
    now = dt.datetime(2026, 11, 25, 7, 10, tzinfo=dt.UTC)
    tasks = [
        {**TASK, "title": "修复" * 60},
        {**DONE, "id": "ef015678", "title": "emoji 🚀 " * 30, "project": None},
        {
            **TASK,
            "id": "0badc0de",
            "status": "pending",
            "title": "bad\x1b[2J\ttitle\nx",
            "started_at": None,
            "created_at": "2026-11-25T07:05:00Z",
        },
    ]
    for width in (80, 100, 140):
        lines = render.render_table(render.TASK_HEADERS, render.task_rows(tasks, now), width=width)
        assert lines[0].split() == render.TASK_HEADERS
        assert all(render.display_width(line) <= width for line in lines), lines
        assert lines[1].endswith("…") and lines[2].endswith("…")
    running, done, pending = render.task_rows(tasks, now)
    assert running[5] == "9m55s" and running[6] == "-"
    assert done[5] == "1m05s" and done[6] == "$0.0437" and done[2] == "-"
    assert pending[5] == "5m00s ago"
    line = render.render_table(render.TASK_HEADERS, [pending], width=200)[1]
    assert "\x1b" not in line and "bad" in line and "\n" not in line


def test_table_colors_do_not_shift_columns() -> None:
    rows = render.task_rows([TASK, DONE])
    plain = render.render_table(render.TASK_HEADERS, rows)
    colored = render.render_table(render.TASK_HEADERS, rows, colors={1: render.status_color})
    assert "\x1b[" in colored[1]
    unstyled = [render.clean(line) for line in colored]
    assert unstyled == plain


def test_host_rows() -> None:
    hosts = [
        {
            "name": "local",
            "connection": "local",
            "reachable": True,
            "running": ["a", "b"],
            "versions": {
                "tmux": "tmux 3.3a",
                "git": "git version 2.39.5",
                "claude": "2.1.197 (Claude Code)",
                "codex": None,
            },
            "labels": [],
        },
        {
            "name": "gpu1",
            "connection": "ssh",
            "address": "10.0.0.5",
            "port": 2222,
            "user": "dev",
            "reachable": None,
            "versions": {},
            "labels": ["gpu", "a100"],
        },
    ]
    assert render.host_rows(hosts) == [
        ["local", "local", "-", "yes", "3.3a", "2.39.5", "2.1.197", "-", "2", ""],
        ["gpu1", "ssh", "dev@10.0.0.5:2222", "?", "-", "-", "-", "-", "0", "gpu,a100"],
    ]


def test_attach_command_local_and_ssh() -> None:
    assert render.attach_command("abcd1234", {"name": "local", "connection": "local"}) == [
        "tmux",
        "attach",
        "-t",
        "dobby-abcd1234",
    ]
    ssh = {
        "name": "gpu1",
        "connection": "ssh",
        "address": "10.0.0.5",
        "port": 2222,
        "user": "dev",
        "identity_file": "/keys/id ed25519",
        "known_hosts": "/kh/known",
    }
    cmd = render.attach_command("abcd1234", ssh)
    assert cmd == [
        "ssh",
        "-t",
        "-p",
        "2222",
        "-i",
        "/keys/id ed25519",
        "-o",
        "UserKnownHostsFile=/kh/known",
        "--",
        "dev@10.0.0.5",
        "tmux attach -t dobby-abcd1234",
    ]
    bare = render.attach_command("abcd1234", {"name": "box", "connection": "ssh"})
    assert bare == ["ssh", "-t", "-p", "22", "--", "box", "tmux attach -t dobby-abcd1234"]
    hpc = {"name": "hpc", "connection": "slurm", "address": "login1", "user": "me"}
    with pytest.raises(ValidationError, match="has no Slurm job"):
        render.attach_command("abcd1234", hpc)
    assert render.attach_command("abcd1234", hpc, slurm_job="77") == [
        "ssh", "-t", "-p", "22", "--", "me@login1",
        "srun --jobid=77 --overlap --pty tmux -L dobby-77 attach -t dobby-abcd1234",
    ]  # fmt: skip
    with pytest.raises(ValidationError):
        render.attach_command("abcd1234", {"name": "k", "connection": "k8s"})


def test_attach_command_never_reads_the_address_as_an_option(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    host = {"name": "evil", "connection": "ssh", "address": f"-oProxyCommand=touch {marker}"}
    cmd = render.attach_command("abcd1234", host)
    assert cmd[cmd.index("--") + 1] == host["address"]
    # The real ssh client: with "--" it looks the "host" up (and fails); it runs nothing.
    done = subprocess.run(
        [*cmd[:1], "-F", "/dev/null", "-o", "BatchMode=yes", *cmd[1:]],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert not marker.exists(), done.stderr


def test_result_and_detail_lines() -> None:
    result = {
        "task_id": "abcd1234",
        "status": "failed",
        "reason": "agent_error",
        "summary": "line1\nline2",
        "error": "API Error: 401",
        "exit_code": 1,
        "cost_usd": None,
        "tokens": {"input": 5, "output": 7, "cache_read": 1, "cache_write": 2},
        "models": ["claude-opus-4-8"],
        "turns": 3,
        "duration_s": 65,
        "branch": "dobby/abcd1234",
        "session_id": "s-1",
    }
    text = "\n".join(render.result_lines(result))
    for part in (
        "  line1\n  line2",
        "failed (agent_error)",
        "API Error: 401",
        "exit code:  1",
        "cost:       unknown",
        "in 5 · out 7 · cache read 1 · cache write 2",
        "claude-opus-4-8",
        "1m05s",
        "dobby/abcd1234",
        "s-1",
    ):
        assert part in text
    assert "cost:       $0.0437" in "\n".join(render.result_lines({**result, "cost_usd": 0.0437}))
    limited = {
        **result, "reason": "usage_limit", "api_error_status": 429, "duration_ms": 2000,
        "warnings": ["1 action(s) denied by the host's permissions: Write a.txt"],
        "permission_denials": [{"tool": "Write", "target": "a.txt"}],
        "quota": {"kind": "usage_limit", "window": "five_hour", "resets_at": 1796028720,
                  "source": "event", "worked": True, "message": "…"},
    }  # fmt: skip
    text = "\n".join(render.result_lines(limited))
    assert text.startswith("! 1 action(s) denied by the host's permissions: Write a.txt\n")
    for part in ("limit:      usage limit (five_hour), resets ", "(from event)",
                 "api status: 429", "agent time: 2s", "denied:     Write a.txt"):  # fmt: skip
        assert part in text
    noreset = {**limited, "quota": {"kind": "rate_limited_no_reset", "resets_at": None}}
    assert "limit:      rate limited, no reset given" in "\n".join(render.result_lines(noreset))
    detail = "\n".join(render.task_detail_lines(DONE))
    assert "duration:" in detail and "$0.0437" in detail and "prompt:\n  Fix the flaky" in detail
    assert render.final_line(DONE) == "✓ abcd1234 completed · 1m05s · $0.0437"


def test_show_and_final_line_carry_denials_and_the_api_status() -> None:
    denied = {
        **DONE,
        "warnings": ["1 action(s) denied by the host's permissions: Write hello.txt"],
        "permission_denials": [{"tool": "Write", "target": "hello.txt"}],
    }
    lines = render.task_detail_lines(denied)
    assert lines[:2] == [
        "! 1 action(s) denied by the host's permissions: Write hello.txt",
        "! denied: Write hello.txt",
    ]
    assert any(line.split() == ["permission_denials:", "Write", "hello.txt"] for line in lines)
    failed = {**DONE, "status": "failed", "reason": "agent_error", "api_error_status": 401}
    assert "! API error status 401" in render.task_detail_lines(failed)
    assert " · API 401" in render.final_line(failed)


# -- HubClient against a real server ----------------------------------------------------------


def test_client_sends_key_and_decodes_json(hub: FakeHub) -> None:
    hub.json("GET", "/tasks", {"tasks": [TASK]})
    client = HubClient(url=hub.url + "/", api_key=KEY)
    assert client.tasks(project="demo", limit=5) == {"tasks": [TASK]}
    method, path, query, _, headers = hub.requests[-1]
    assert (method, path, query) == ("GET", "/tasks", {"project": "demo", "limit": "5"})
    assert headers["X-Dobby-Key"] == KEY


def test_client_error_bodies(hub: FakeHub) -> None:
    hub.json("GET", "/tasks/x", NOT_FOUND, status=404)
    hub.json(
        "POST",
        "/tasks/abcd1234/cancel",
        {"error": {"code": "conflict", "message": "task abcd1234 is completed"}},
        409,
    )
    hub.routes[("GET", "/health")] = lambda h, q, b: (
        h.send_response(500),
        h.end_headers(),
        h.wfile.write(b"oops"),
    )
    client = HubClient(url=hub.url, api_key=KEY)
    with pytest.raises(HubError) as err:
        client.task("x")
    assert (str(err.value), err.value.code, err.value.status) == (
        "unknown task 'x'",
        "not_found",
        404,
    )
    with pytest.raises(HubError) as err:
        client.cancel("abcd1234")
    assert (err.value.code, err.value.status) == ("conflict", 409)
    with pytest.raises(HubError) as err:
        client.health()
    assert err.value.status == 500 and "HTTP 500" in str(err.value)
    assert KEY not in str(err.value)


def test_client_hub_down_message() -> None:
    url = f"http://user:pw@127.0.0.1:{_free_port()}"
    with pytest.raises(HubError) as err:
        HubClient(url=url, api_key=KEY).health()
    assert err.value.code == "hub_unreachable" and err.value.status == 0
    assert str(err.value) == (
        f"cannot reach the hub at http://127.0.0.1:{url.rsplit(':', 1)[1]}:"
        " is `dobby start` running? (set DOBBY_URL)"
    )
    assert KEY not in str(err.value) and "pw" not in str(err.value)


def test_client_sends_url_credentials_and_encodes_the_query(hub: FakeHub) -> None:
    hub.json("GET", "/tasks", {"tasks": []})
    url = f"http://us%40er:p%3Aw@127.0.0.1:{hub.port}"
    assert HubClient(url=url).tasks(project="my proj/x", limit=3) == {"tasks": []}
    _, path, query, _, headers = hub.requests[-1]
    assert (path, query) == ("/tasks", {"project": "my proj/x", "limit": "3"})
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"us@er:p:w").decode()
    assert headers["User-Agent"] == "dobby-client" and "X-Dobby-Key" not in headers
    assert _query({"a": True, "b": None, "c": "x y/z", "d": False}) == "?a=true&c=x%20y%2Fz&d=false"
    assert _query({"b": None}) == ""


def test_client_reads_chunked_answers_and_retries_a_cut_one(hub: FakeHub) -> None:
    body = json.dumps(TASK).encode()
    cut = [True]

    def chunked(h: _Handler, query: dict[str, str], _: bytes) -> None:
        h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        h.wfile.write(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        h.wfile.write(b"5;ext=1\r\n" + body[:5] + b"\r\n")
        if cut[0]:
            cut[0] = False
            h.wfile.write(b"ff\r\n" + body[5:9])  # announced 255 bytes, sent 4, then closed
            return
        h.wfile.write(b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")

    hub.routes[("GET", "/tasks/abcd1234")] = chunked
    assert HubClient(url=hub.url, retry=FAST).task("abcd1234") == TASK
    assert len(hub.requests) == 2
    method, path, _, _, headers = hub.requests[-1]
    assert headers["Host"] == f"127.0.0.1:{hub.port}" and "Connection" not in headers  # kept


def test_client_refuses_a_header_that_would_split_the_request(hub: FakeHub) -> None:
    with pytest.raises(ValueError, match="X-Dobby-Key"):
        HubClient(url=hub.url, api_key="sk-1\r\nX-Evil: 1").task("abcd1234")
    assert hub.requests == []


def test_client_says_when_the_hub_does_not_answer() -> None:
    with socket.socket() as silent:  # listens (the connection opens) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(HubError) as err:
            HubClient(url=url, timeout=0.3).task("abcd1234")
    assert err.value.code == "hub_timeout" and err.value.status == 0
    assert str(err.value) == f"the hub at {url} did not answer within 0.3s"


def test_client_reaches_a_hub_behind_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    tls = FakeHub()
    tls.server.socket = tls_server_context(cert, key).wrap_socket(
        tls.server.socket, server_side=True
    )
    tls.json("GET", "/tasks/abcd1234", TASK)
    url = f"https://127.0.0.1:{tls.port}"
    try:
        with pytest.raises(HubError) as err:  # a certificate nobody vouches for: refused
            HubClient(url=url).task("abcd1234")
        assert err.value.code == "hub_unreachable"
        monkeypatch.setattr(wire, "_TLS", [])  # the next request builds the context again...
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ...trusting this certificate
        assert HubClient(url=url).task("abcd1234") == TASK
    finally:
        tls.stop()


def test_follow_reconnects_after_a_drop(hub: FakeHub) -> None:
    _events_route(hub)
    frames = list(HubClient(url=hub.url).follow("abcd1234"))
    assert [name for name, _ in frames] == ["log", "log", "status", "end"]
    offsets = [q.get("offset") for m, p, q, _, _ in hub.requests if p.endswith("/events")]
    assert offsets == ["0", "10"]
    assert frames[-1][1]["status"] == "completed"


def test_follow_survives_a_hub_restart() -> None:
    first = FakeHub()
    port = first.port
    gate = threading.Event()

    def drop_after_one(h: _Handler, query: dict[str, str], body: bytes) -> None:
        h.start_sse()
        h.frame("log", {"offset": 0, "next_offset": 7, "text": "x", "events": []})
        gate.wait(5)

    first.routes[("GET", "/tasks/abcd1234/events")] = drop_after_one
    stream = HubClient(url=first.url, timeout=5).follow("abcd1234")
    assert next(stream)[0] == "log"
    gate.set()
    first.stop()
    second: list[FakeHub] = []

    def restart() -> None:
        time.sleep(0.5)
        second.append(FakeHub(port))
        _events_route(second[0])

    threading.Thread(target=restart).start()
    try:
        rest = [name for name, _ in stream]
    finally:
        time.sleep(0.6)
        second[0].stop()
    assert rest == ["log", "status", "end"]
    assert second[0].requests[0][2] == {"offset": "7"}


def test_follow_gives_up_when_the_hub_stays_away() -> None:
    hub = FakeHub()
    hub.routes[("GET", "/tasks/abcd1234/events")] = lambda h, q, b: (
        h.start_sse(),
        h.frame("log", {"offset": 0, "next_offset": 3, "events": []}),
    )
    stream = HubClient(url=hub.url).follow("abcd1234", give_up_after=1.5)
    assert next(stream)[0] == "log"
    last_frame = time.monotonic()
    hub.stop()
    with pytest.raises(HubError) as err:
        list(stream)
    assert err.value.code == "hub_unreachable"
    assert 1.4 < time.monotonic() - last_frame < 6


def test_follow_unknown_task_fails_at_once(hub: FakeHub) -> None:
    with pytest.raises(HubError) as err:
        list(HubClient(url=hub.url).follow("nope"))
    assert err.value.status == 404


FAST = Backoff(first=0.01, cap=0.05, deadline=5.0)


def _busy_then(answer: dict[str, Any], status: int, busy: int = 1) -> Route:
    """Answer 503 ``busy`` times, then ``answer``."""
    left = [busy]

    def route(h: _Handler, query: dict[str, str], body: bytes) -> None:
        if left[0]:
            left[0] -= 1
            return h.send_json(503, {"error": {"code": "busy", "message": "starting"}})
        h.send_json(status, answer)

    return route


def test_a_retried_create_sends_the_same_idempotency_key(hub: FakeHub) -> None:
    hub.routes[("POST", "/tasks")] = _busy_then(TASK, 201)
    client = HubClient(url=hub.url, retry=FAST)
    assert client.add_task(prompt="hi")["id"] == TASK["id"]
    keys = [r[4].get("Idempotency-Key") for r in hub.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0] or "") == 32
    hub.routes[("POST", "/batches")] = _busy_then({"id": "b1"}, 201)
    client.submit_batch_file("tasks: []", "b.yaml")
    client.add_task(prompt="again")
    later = [r[4].get("Idempotency-Key") for r in hub.requests[2:]]
    assert len(later) == 3 and later[0] == later[1] and len(set(later) | {keys[0]}) == 3


def test_a_post_without_a_key_is_never_repeated(hub: FakeHub) -> None:
    hub.routes[("POST", "/tasks/abcd1234/cancel")] = _busy_then(TASK, 200)
    with pytest.raises(HubError) as err:
        HubClient(url=hub.url, retry=FAST).cancel("abcd1234")
    assert err.value.status == 503 and len(hub.requests) == 1
    assert "Idempotency-Key" not in hub.requests[0][4]


def test_a_read_survives_a_dropped_connection(hub: FakeHub) -> None:
    dropped = [False]

    def drop_once(h: _Handler, query: dict[str, str], body: bytes) -> None:
        if not dropped[0]:
            dropped[0] = True
            h.close_connection = True
            h.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n{")  # cut short
            return
        h.send_json(200, TASK)

    hub.routes[("GET", "/tasks/abcd1234")] = drop_once
    assert HubClient(url=hub.url, retry=FAST).task("abcd1234") == TASK
    assert len(hub.requests) == 2


def test_a_client_that_reached_the_hub_waits_out_a_restart() -> None:
    first = FakeHub()
    first.json("GET", "/health", {"status": "ok"})
    client = HubClient(url=first.url, retry=Backoff(first=0.05, cap=0.2, deadline=20))
    assert client.health() == {"status": "ok"}
    port = first.port
    first.stop()
    second: list[FakeHub] = []

    def restart() -> None:
        time.sleep(0.3)
        second.append(FakeHub(port))
        second[0].json("GET", "/tasks/abcd1234", TASK)

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        assert client.task("abcd1234") == TASK
    finally:
        thread.join()
        second[0].stop()


# -- click commands ---------------------------------------------------------------------------


def test_status_json_prints_exactly_the_body(hub: FakeHub) -> None:
    body = {"tasks": [TASK, {**DONE, "id": "ef015678", "title": "ünïcode ✓"}]}
    hub.json("GET", "/tasks", body)
    result = _invoke(hub.url, ["status", "--json"])
    assert result.exit_code == 0
    assert result.stdout == json.dumps(body, indent=2) + "\n"
    result = _invoke(hub.url, ["status", "demo", "--status", "running", "--limit", "3"])
    assert result.exit_code == 0 and "abcd1234" in result.stdout and "ünïcode" in result.stdout
    assert hub.requests[-1][2] == {"project": "demo", "status": "running", "limit": "3"}


def test_status_shows_the_newest_20_unless_asked(hub: FakeHub) -> None:
    many = [{**DONE, "id": f"{i:08x}", "title": f"task {i}"} for i in range(30)]

    def tasks(h: _Handler, query: dict[str, str], body: bytes) -> None:
        limit = int(query["limit"]) if "limit" in query else len(many)
        h.send_json(200, {"tasks": many[:limit], "total": len(many), "limit": limit})

    hub.routes[("GET", "/tasks")] = tasks
    result = _invoke(hub.url, ["status"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1 + 20  # the titles, then 20 tasks
    assert "the newest 20 of 30" in result.stderr and "`dobby status --all`" in result.stderr
    assert hub.requests[-1][2] == {"limit": "20"}
    result = _invoke(hub.url, ["status", "--all"])
    assert len(result.stdout.splitlines()) == 1 + 30 and result.stderr == ""
    assert hub.requests[-1][2] == {}
    result = _invoke(hub.url, ["status", "--limit", "30"])
    assert len(result.stdout.splitlines()) == 1 + 30 and result.stderr == ""
    as_json = json.loads(_invoke(hub.url, ["status", "--json", "--limit", "5"]).stdout)
    assert [t["id"] for t in as_json["tasks"]] == [t["id"] for t in many[:5]]
    assert as_json["limit"] == 5 and as_json["total"] == 30
    assert _invoke(hub.url, ["status", "--all", "--limit", "3"]).exit_code == 2


def test_add_reads_stdin_byte_identical(hub: FakeHub) -> None:
    def create(h: _Handler, query: dict[str, str], body: bytes) -> None:
        sent = json.loads(body)
        selector = sent.get("labels") or []  # the hub answers a task: labels → host_selector
        h.send_json(
            201, {**TASK, **sent, "host_selector": selector, "status": "pending", "host": None}
        )

    hub.routes[("POST", "/tasks")] = create
    prompt = "Fix \"this\"\n  and 'that' $(rm -rf /) `x` \\n ünï 🚀\n\n".encode()
    result = _invoke(
        hub.url,
        ["add", "-", "--project", "demo", "--timeout", "30m", "--label", "gpu", "--label", "a100"],
        input=prompt,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "task: abcd1234  status: pending  host: any labelled gpu,a100  "
        "follow: dobby logs -f abcd1234\n"
    )
    sent = json.loads(hub.requests[-1][3])
    assert sent["prompt"].encode() == prompt
    assert sent == {
        "prompt": sent["prompt"],
        "project": "demo",
        "labels": ["gpu", "a100"],
        "timeout": 1800.0,
    }


def test_unknown_task_is_one_error_line(hub: FakeHub) -> None:
    hub.json("GET", "/tasks/x", NOT_FOUND, status=404)
    result = _invoke(hub.url, ["show", "x"])
    assert result.exit_code == 1
    assert result.stderr == "error: unknown task 'x'\n" and result.stdout == ""


def test_hub_down_message_from_the_cli() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = _invoke(url, ["status"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot reach the hub at {url}: is `dobby start` running? (set DOBBY_URL)\n"
    )


def test_bad_timeout_is_a_usage_error(hub: FakeHub) -> None:
    result = _invoke(hub.url, ["add", "hi", "--timeout", "soon"])
    assert result.exit_code == 2 and "invalid duration" in result.stderr


def test_logs_follow_renders_and_exits_with_the_task_status(hub: FakeHub) -> None:
    _events_route(hub)
    result = _invoke(hub.url, ["logs", "abcd1234", "-f"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "first",
        "→ Bash: echo hi",
        "· abcd1234  completed  gpu1",
        "✓ abcd1234 completed · 1m05s · $0.0437",
    ]
    failed = {**DONE, "status": "failed", "reason": "agent_error"}
    hub.routes[("GET", "/tasks/abcd1234/events")] = lambda h, q, b: (
        h.start_sse(),
        h.frame("end", failed),
    )
    result = _invoke(hub.url, ["logs", "abcd1234", "--follow"])
    assert result.exit_code == 1 and "failed (agent_error)" in result.stdout


def test_logs_raw_and_json(hub: FakeHub) -> None:
    body = {
        "task_id": "abcd1234",
        "offset": 0,
        "next_offset": 5,
        "text": "raw\n\x01",
        "events": [{"kind": "text", "text": "raw"}],
        "status": "running",
        "done": False,
    }
    empty = {**body, "offset": 5, "text": "", "events": []}
    hub.routes[("GET", "/tasks/abcd1234/logs")] = lambda h, q, b: h.send_json(
        200, body if q.get("offset") == "0" else empty
    )
    assert _invoke(hub.url, ["logs", "abcd1234", "--raw"]).stdout == "raw\n\x01"
    assert _invoke(hub.url, ["logs", "abcd1234"]).stdout == "raw\n"
    as_json = _invoke(hub.url, ["logs", "abcd1234", "--json"]).stdout
    assert as_json == json.dumps(body, indent=2) + "\n"


def test_attach_print(hub: FakeHub) -> None:
    hub.json("GET", "/tasks/abcd", TASK)
    hub.json(
        "GET",
        "/hosts",
        {
            "hosts": [
                {
                    "name": "gpu1",
                    "connection": "ssh",
                    "address": "10.0.0.5",
                    "port": 22,
                    "user": "dev",
                }
            ],
            "inventory": {"files": [], "error": None},
        },
    )
    result = _invoke(hub.url, ["attach", "abcd", "--print"])
    assert result.exit_code == 0
    assert shlex.split(result.stdout) == [
        "ssh",
        "-t",
        "-p",
        "22",
        "--",
        "dev@10.0.0.5",
        "tmux attach -t dobby-abcd1234",
    ]
    hub.json("GET", "/tasks/abcd", DONE)
    result = _invoke(hub.url, ["attach", "abcd"])
    assert result.exit_code == 1 and "not running" in result.stderr


def test_hosts_table_shows_the_inventory_error(hub: FakeHub) -> None:
    hub.json(
        "GET",
        "/hosts",
        {
            "hosts": [
                {
                    "name": "local",
                    "connection": "local",
                    "reachable": True,
                    "versions": {},
                    "running": [],
                }
            ],
            "inventory": {"files": ["inv.yaml"], "error": "inv.yaml:3: bad port"},
        },
    )
    result = _invoke(hub.url, ["hosts"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split()[:4] == ["NAME", "CONN", "ADDRESS", "REACH"]
    assert "inventory error: inv.yaml:3: bad port (last good inventory in force)" in result.stdout


def test_register_and_agent(hub: FakeHub, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.routes[("POST", "/projects")] = lambda h, q, b: h.send_json(201, json.loads(b))
    hub.routes[("POST", "/spokes/register")] = lambda h, q, b: h.send_json(201, json.loads(b))
    monkeypatch.chdir(tmp_path)
    result = _invoke(hub.url, ["register", "repo", "--name", "demo"])
    assert result.exit_code == 0
    # No --context: the hub keeps the project's own (re-registering never wipes it).
    assert json.loads(hub.requests[-1][3]) == {"name": "demo", "path": str(tmp_path / "repo")}
    assert result.stdout == f"registered project demo → {tmp_path / 'repo'}\n"
    result = _invoke(
        hub.url,
        [
            "agent",
            "--hub",
            hub.url,
            "--id",
            "box",
            "--address",
            "10.1.1.1",
            "--user",
            "dev",
            "--label",
            "gpu",
        ],
    )
    assert result.exit_code == 0, result.stderr
    sent = json.loads(hub.requests[-1][3])
    assert {k: sent[k] for k in ("name", "address", "port", "user", "labels")} == {
        "name": "box",
        "address": "10.1.1.1",
        "port": 22,
        "user": "dev",
        "labels": ["gpu"],
    }
    assert "X-Dobby-Key" in hub.requests[-1][4]  # DOBBY_API_KEY still applies
