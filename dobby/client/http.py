"""HubClient: the only way the CLI, Slack and MCP reach the hub (synchronous).

Each request is one HTTP/1.1 exchange (:mod:`dobby.client.wire` says why by hand); a
connection whose answer was read to its end is kept for the next request. Event streams are
read with httpx2's server-sent-events reader (:mod:`dobby.client.sse`, imported only by a
stream) and reopened after a drop.
Failures that a second try can fix — the connection dropped, the hub restarting (after this
client reached it once), 502/503/504 — are retried with :mod:`dobby.core.retry`, for requests
that are safe to repeat: reads, and creations sent with an ``Idempotency-Key`` (a uuid4 per
logical request, the same on every try, so the hub creates the thing once).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

from dobby.client import wire
from dobby.core.errors import HubError
from dobby.core.retry import Backoff, Retry, call

DEFAULT_URL = "http://127.0.0.1:8420"
# A request that failed in a way a second try can fix is tried again for up to 10 s.
REQUEST_RETRY = Backoff(first=0.2, factor=2.0, cap=2.0, jitter=0.2, deadline=10.0)
# An event stream that dropped is reopened quickly, then every 2 s (deadline: give_up_after).
STREAM_RETRY = Backoff(first=0.2, factor=2.0, cap=2.0, jitter=0.1)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})

T = TypeVar("T")
_Frame = tuple[str, Any, "str | None"]  # (event name, decoded data, last event id)


class _Dropped(Exception):
    """The SSE connection ended or failed before its last event."""


class _Transient(Exception):
    """A failure a second try may fix; ``error`` is what to raise when the tries run out."""

    def __init__(self, error: HubError) -> None:
        super().__init__(str(error))
        self.error = error


class HubClient:
    """Call the hub's REST API; errors come back as :class:`HubError`."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30,
        retry: Backoff = REQUEST_RETRY,
    ) -> None:
        self.url = (url or os.environ.get("DOBBY_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("DOBBY_API_KEY")
        self.timeout = timeout
        self.retry_policy = retry
        self._reached = False  # set once the hub answered: a refusal after that is a restart
        self._pool = wire.Pool()
        # A client nobody closed closes its kept connections when it goes: no socket is left
        # to the garbage collector (which warns about each).
        weakref.finalize(self, self._pool.close)
        # No proxy from the environment, ever: it would see the API key, and would break the
        # usual 127.0.0.1 hub when no_proxy is unset.
        self._headers = {"User-Agent": "dobby-client"}
        parts = urllib.parse.urlsplit(self.url)
        if parts.username is not None or parts.password is not None:
            # user:password in DOBBY_URL (a hub behind a proxy's basic auth) is sent as such.
            pair = f"{urllib.parse.unquote(parts.username or '')}:"
            pair += urllib.parse.unquote(parts.password or "")
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()

    def __repr__(self) -> str:
        return f"HubClient(url={self._display_url!r})"

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections kept for the next requests (a later request opens one)."""
        self._pool.close()

    @property
    def _display_url(self) -> str:
        """Return the hub URL without any user:password part."""
        parts = urllib.parse.urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # -- plumbing ------------------------------------------------------------------------

    def _unreachable(self) -> HubError:
        return HubError(
            f"cannot reach the hub at {self._display_url}: is `dobby start` running? "
            "(set DOBBY_URL)",
            code="hub_unreachable",
            status=0,
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        accept: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        repeatable: bool = False,
        keep: bool = True,
    ) -> wire.Reply:
        """Send one request; return the open reply of a success, else raise.

        Raises :class:`_Transient` for what a retry may fix, :class:`HubError` otherwise.
        ``repeatable``: the request may go on a kept connection (see wire.Pool); ``keep``: its
        connection is kept once its answer was read (not an event stream's).
        """
        all_headers = {**self._headers, "Accept": accept, **(headers or {})}
        if self._api_key:
            all_headers["X-Dobby-Key"] = self._api_key
        if body is not None:
            content = json.dumps(body).encode("utf-8")
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            reply = wire.exchange(
                method,
                self.url + path + _query(query),
                headers=all_headers,
                body=content,
                timeout=timeout if timeout is not None else self.timeout,
                pool=self._pool if keep else None,
                reuse=repeatable,
            )
        except wire.TimedOut:
            raise HubError(
                f"the hub at {self._display_url} did not answer within {self.timeout:g}s",
                code="hub_timeout",
                status=0,
            ) from None
        except wire.ConnectFailed:
            # Never reached: a usage error (no hub), said at once. Reached before: a restart.
            if not self._reached:
                raise self._unreachable() from None
            raise _Transient(self._unreachable()) from None
        except wire.WireError:
            raise _Transient(self._unreachable()) from None
        self._reached = True
        if reply.status < 400:
            return reply
        try:
            raw = reply.read()
        except wire.WireError:
            raw = b""
        finally:
            reply.close()
        error = _http_error(reply.status, reply.reason, raw)
        if reply.status in RETRY_STATUSES:
            raise _Transient(error)
        raise error

    def _retrying(self, fn: Callable[[], T], *, repeatable: bool) -> T:
        """Return ``fn()``, retrying transient failures when the request is safe to repeat."""
        try:
            return call(
                fn,
                policy=self.retry_policy,
                retry_if=lambda exc: repeatable and isinstance(exc, _Transient),
            )
        except _Transient as exc:
            raise exc.error from None

    def _request(self, method: str, path: str, **kwargs: Any) -> wire.Reply:
        """Send a request (retried when safe) and return the open reply, body unread."""
        repeatable = method in SAFE_METHODS
        return self._retrying(
            lambda: self._send(method, path, repeatable=repeatable, **kwargs),
            repeatable=repeatable,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON answer."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None

        repeatable = method in SAFE_METHODS or idempotency_key is not None

        def exchange() -> tuple[int, bytes]:
            reply = self._send(
                method,
                path,
                query=query,
                body=body,
                headers=headers,
                timeout=timeout,
                repeatable=repeatable,
            )
            with contextlib.closing(reply):
                try:
                    return reply.status, reply.read()
                except wire.WireError:
                    raise _Transient(self._unreachable()) from None

        status, raw = self._retrying(exchange, repeatable=repeatable)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise HubError(
                f"the hub at {self._display_url} sent a non-JSON answer to {method} {path}",
                code="bad_response",
                status=status,
            ) from None

    def _create(self, path: str, body: dict[str, Any]) -> Any:
        """POST a creation with a fresh Idempotency-Key, so a retried POST creates one thing."""
        return self._call("POST", path, body=body, idempotency_key=uuid.uuid4().hex)

    def _sse(self, path: str, query: dict[str, Any]) -> Generator[_Frame, None, None]:
        """Yield (event, data, id) frames of one SSE connection; raise _Dropped when it ends."""
        from dobby.client import sse

        reply = self._send("GET", path, query=query, accept="text/event-stream", keep=False)
        with contextlib.closing(reply):
            try:
                for event, data, last_id in sse.events(reply, self.url + path):
                    if data:
                        yield event, _json_or_text(data), last_id or None
            except wire.WireError:
                raise _Dropped() from None
        raise _Dropped()

    def _reconnecting(
        self, open_stream: Callable[[], Generator[_Frame, None, None]], give_up_after: float
    ) -> Generator[_Frame, None, None]:
        """Yield frames of ``open_stream()``, reopening it after drops; give up after a silence."""
        retry = Retry(dataclasses.replace(STREAM_RETRY, deadline=give_up_after))
        # The first connection fails fast: a hub that was never up is a usage error, not a drop.
        first = True
        while True:
            try:
                with contextlib.closing(open_stream()) as stream:
                    for frame in stream:
                        first = False
                        retry.reset()
                        yield frame
            except _Dropped:
                first = False
            except _Transient as exc:
                if first:
                    raise exc.error from None
            wait = retry.next_delay()
            if wait is None:
                raise self._unreachable()
            time.sleep(wait)

    # -- the API ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return the hub's health (no API key needed)."""
        return self._call("GET", "/health")  # type: ignore[no-any-return]

    def add_task(self, **fields: Any) -> dict[str, Any]:
        """Create a task from API fields (``prompt``, ``project``…); None values are dropped."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._create("/tasks", body)  # type: ignore[no-any-return]

    def tasks(
        self, project: str | None = None, status: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """Return the raw ``{"tasks": [...]}`` body, newest first."""
        query = {"project": project, "status": status, "limit": limit}
        return self._call("GET", "/tasks", query=query)  # type: ignore[no-any-return]

    def task(self, id: str) -> dict[str, Any]:
        """Return one task (an id prefix of 4+ chars works)."""
        return self._call("GET", f"/tasks/{_q(id)}")  # type: ignore[no-any-return]

    def patch_task(self, id: str, **fields: Any) -> dict[str, Any]:
        """Change a draft or pending task."""
        return self._call("PATCH", f"/tasks/{_q(id)}", body=fields)  # type: ignore[no-any-return]

    def cancel(self, id: str) -> dict[str, Any]:
        """Cancel a task."""
        return self._call("POST", f"/tasks/{_q(id)}/cancel", body={})  # type: ignore[no-any-return]

    def retry(self, id: str, cascade: bool = False) -> dict[str, Any]:
        """Re-queue a failed or cancelled task (``cascade``: and what failed because of it)."""
        body = {"cascade": True} if cascade else {}
        return self._call("POST", f"/tasks/{_q(id)}/retry", body=body)  # type: ignore[no-any-return]

    def logs(self, id: str, offset: int = 0) -> dict[str, Any]:
        """Return the task's log from byte ``offset`` (text, parsed events, next_offset)."""
        path = f"/tasks/{_q(id)}/logs"
        return self._call("GET", path, query={"offset": offset})  # type: ignore[no-any-return]

    def follow(
        self, id: str, offset: int = 0, *, give_up_after: float = 60.0
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event, data) from the task's SSE stream until ``end``, reconnecting on drops."""
        state = {"offset": offset}

        def open_stream() -> Generator[_Frame, None, None]:
            return self._sse(f"/tasks/{_q(id)}/events", {"offset": state["offset"]})

        with contextlib.closing(self._reconnecting(open_stream, give_up_after)) as frames:
            for event, data, _ in frames:
                moved = data.get("next_offset") if isinstance(data, dict) else None
                if event == "log" and moved is not None:
                    state["offset"] = moved
                yield event, data
                if event == "end":
                    return

    def events(
        self,
        since: int | None = None,
        *,
        types: Iterable[str] | None = None,
        give_up_after: float = 60.0,
    ) -> Iterator[dict[str, Any]]:
        """Yield the bus events from sequence ``since`` on, forever, reconnecting on drops.

        ``types``: only those (``task.finished``, or a family ``race.*``); else every one.
        """
        state: dict[str, Any] = {"since": since}
        wanted = ",".join(types) if types is not None else None

        def open_stream() -> Generator[_Frame, None, None]:
            return self._sse("/events", {"since": state["since"], "types": wanted})

        with contextlib.closing(self._reconnecting(open_stream, give_up_after)) as frames:
            for _, data, last_id in frames:
                seq = data.get("seq") if isinstance(data, dict) else None
                if seq is not None or last_id:
                    state["since"] = seq if seq is not None else last_id
                yield data

    def result(self, id: str) -> dict[str, Any]:
        """Return the task's result (summary, cost, tokens, branch…)."""
        return self._call("GET", f"/results/{_q(id)}")  # type: ignore[no-any-return]

    def results(
        self, project: str | None = None, status: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """Return the raw ``{"results": [...]}`` body, newest first."""
        query = {"project": project, "status": status, "limit": limit}
        return self._call("GET", "/results", query=query)  # type: ignore[no-any-return]

    def detail_status(self, id: str) -> dict[str, Any]:
        """Return what the task's agent is doing now (step, tool, files, commands, tokens)."""
        return self._call("GET", f"/tasks/{_q(id)}/detail-status")  # type: ignore[no-any-return]

    def artifacts(self, id: str) -> dict[str, Any]:
        """Return ``{"task_id", "artifacts": [{name, size}]}``."""
        return self._call("GET", f"/tasks/{_q(id)}/artifacts")  # type: ignore[no-any-return]

    def download_artifact(self, id: str, name: str, sink: Any) -> int:
        """Write one artifact into the binary file object ``sink``; return its size."""
        path = f"/tasks/{_q(id)}/artifacts/{_artifact_path(name)}"
        return self._stream("GET", path, None, sink)

    def diff(self, id: str) -> dict[str, Any]:
        """Return the task's diff: ``{"diff", "diff_stat", "branch", "base_commit", …}``."""
        return self._call("GET", f"/tasks/{_q(id)}/diff")  # type: ignore[no-any-return]

    def merge(self, id: str) -> dict[str, Any]:
        """Merge the task's branch into its project's checkout."""
        return self._call("POST", f"/tasks/{_q(id)}/merge", body={})  # type: ignore[no-any-return]

    # -- races -----------------------------------------------------------------------------

    def add_race(self, **fields: Any) -> dict[str, Any]:
        """Start a race (a task body plus ``k``, ``backends``, ``models``, ``hosts``, ``pick``)."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._create("/races", body)  # type: ignore[no-any-return]

    def race(self, id: str) -> dict[str, Any]:
        """Return a race with one column per attempt."""
        return self._call("GET", f"/races/{_q(id)}")  # type: ignore[no-any-return]

    def races(self, limit: int | None = None) -> dict[str, Any]:
        """Return the raw ``{"races": [...]}`` body, newest first."""
        return self._call("GET", "/races", query={"limit": limit})  # type: ignore[no-any-return]

    def cancel_race(self, id: str) -> dict[str, Any]:
        """Cancel a race and every attempt that has not ended."""
        return self._call("POST", f"/races/{_q(id)}/cancel", body={})  # type: ignore[no-any-return]

    def merge_race(self, id: str) -> dict[str, Any]:
        """Merge a race's winner into its project's checkout."""
        return self._call("POST", f"/races/{_q(id)}/merge", body={})  # type: ignore[no-any-return]

    def stats(self, since: str | None = None, project: str | None = None) -> dict[str, Any]:
        """Return stats and cost accounting."""
        query = {"since": since, "project": project}
        return self._call("GET", "/stats", query=query)  # type: ignore[no-any-return]

    def export(
        self, sink: Any, *, fmt: str = "csv", project: str | None = None, since: str | None = None
    ) -> int:
        """Stream an export into the binary file object ``sink``; return the bytes written."""
        query = {"format": fmt, "project": project, "since": since}
        return self._stream("GET", "/export", query, sink)

    def import_tasks(self, data: bytes) -> dict[str, Any]:
        """Import a JSON export (bytes of ``dobby export --format json``)."""
        reply = self._request("POST", "/import", content=data, timeout=max(self.timeout, 300))
        with contextlib.closing(reply):
            try:
                return json.loads(reply.read())  # type: ignore[no-any-return]
            except wire.WireError:
                raise self._unreachable() from None

    def gc(self, older_than: str | float | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Free finished tasks' directories on hosts (older than the retention by default)."""
        body = {"older_than": older_than, "dry_run": dry_run}
        body = {k: v for k, v in body.items() if v is not None}
        return self._call("POST", "/gc", body=body)  # type: ignore[no-any-return]

    def _stream(self, method: str, path: str, query: dict[str, Any] | None, sink: Any) -> int:
        """Copy a response body into ``sink`` in chunks; return its size."""
        total = 0
        reply = self._request(method, path, query=query, accept="*/*")
        with contextlib.closing(reply):
            try:
                for chunk in reply.chunks():
                    sink.write(chunk)
                    total += len(chunk)
            except wire.WireError:
                raise self._unreachable() from None
        return total

    def projects(self) -> dict[str, Any]:
        """Return the raw ``{"projects": [...]}`` body."""
        return self._call("GET", "/projects")  # type: ignore[no-any-return]

    def project(self, name: str) -> dict[str, Any]:
        """Return one project and its policies."""
        return self._call("GET", f"/projects/{_q(name)}")  # type: ignore[no-any-return]

    def register_project(self, name: str, path: str, context: str | None = None) -> dict[str, Any]:
        """Register a project (a git repository path) under ``name``; re-registering keeps
        the settings it does not name (``context`` is kept when None)."""
        body = {"name": name, "path": path}
        if context is not None:
            body["context"] = context
        return self._call("POST", "/projects", body=body)  # type: ignore[no-any-return]

    def hosts(self) -> dict[str, Any]:
        """Return the raw ``{"hosts": [...], "inventory": {...}}`` body."""
        return self._call("GET", "/hosts")  # type: ignore[no-any-return]

    def register_spoke(self, **fields: Any) -> dict[str, Any]:
        """Add a host through ``POST /spokes/register``; None fields are dropped."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", "/spokes/register", body=body)  # type: ignore[no-any-return]

    def spokes(self) -> dict[str, Any]:
        """Return the raw ``{"spokes": [...]}`` body."""
        return self._call("GET", "/spokes")  # type: ignore[no-any-return]

    def check_host(self, name: str) -> dict[str, Any]:
        """Have the hub check one of its hosts (``dobby hosts check --hub``)."""
        return self._call("POST", f"/hosts/{_q(name)}/check", body={})  # type: ignore[no-any-return]

    def bootstrap_host(self, name: str, *, install: bool = False) -> dict[str, Any]:
        """Have the hub prepare one of its hosts: ``{"host", "ok", "lines"}``."""
        path = f"/hosts/{_q(name)}/bootstrap"
        # Installing packages on a host may take many minutes.
        timeout = max(self.timeout, 1800) if install else None
        body = {"install": install}
        return self._call("POST", path, body=body, timeout=timeout)  # type: ignore[no-any-return]

    def gpus(self, history: bool = False) -> dict[str, Any]:
        """Return ``GET /gpus``: every GPU host, its GPUs and who uses them."""
        query = {"history": 1} if history else None
        return self._call("GET", "/gpus", query=query)  # type: ignore[no-any-return]

    def open_remote(self, **fields: Any) -> dict[str, Any]:
        """Open an interactive session (``host``, ``project``, ``backend``…); return its task."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", "/remote", body=body)  # type: ignore[no-any-return]

    def remote_sessions(self, include_finished: bool = False) -> dict[str, Any]:
        """Return the raw ``{"sessions": [task...]}`` body of interactive sessions."""
        query = {"all": 1} if include_finished else None
        return self._call("GET", "/remote", query=query)  # type: ignore[no-any-return]

    def add_batch(self, **fields: Any) -> dict[str, Any]:
        """Submit a batch (``tasks``, optional ``name`` and ``defaults``) via ``POST /batches``."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._create("/batches", body)  # type: ignore[no-any-return]

    # -- scheduler: drafts, schedules, batches, project policies --------------------------

    def approve(self, id: str) -> dict[str, Any]:
        """Queue a draft (with its approved plan)."""
        return self._call("POST", f"/tasks/{_q(id)}/approve", body={})  # type: ignore[no-any-return]

    def reject(self, id: str) -> dict[str, Any]:
        """Drop a draft."""
        return self._call("POST", f"/tasks/{_q(id)}/reject", body={})  # type: ignore[no-any-return]

    def add_schedule(self, **fields: Any) -> dict[str, Any]:
        """Create a schedule: ``cron`` or ``every``, ``overlap``, and the task's fields."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", "/schedules", body=body)  # type: ignore[no-any-return]

    def schedules(self) -> dict[str, Any]:
        """Return the raw ``{"schedules": [...]}`` body."""
        return self._call("GET", "/schedules")  # type: ignore[no-any-return]

    def schedule_action(self, id: str, action: str) -> dict[str, Any]:
        """Pause, resume or delete a schedule; return it."""
        if action == "delete":
            return self._call("DELETE", f"/schedules/{_q(id)}")  # type: ignore[no-any-return]
        path = f"/schedules/{_q(id)}/{action}"
        return self._call("POST", path, body={})  # type: ignore[no-any-return]

    def submit_batch_file(self, text: str, file: str) -> dict[str, Any]:
        """Submit a batch file's YAML text; errors name ``file:line``."""
        body = {"yaml": text, "file": file}
        return self._create("/batches", body)  # type: ignore[no-any-return]

    def batch(self, id: str) -> dict[str, Any]:
        """Return a batch: counts by status, cost so far, each task."""
        return self._call("GET", f"/batches/{_q(id)}")  # type: ignore[no-any-return]

    def batches(self) -> dict[str, Any]:
        """Return the raw ``{"batches": [...]}`` body."""
        return self._call("GET", "/batches")  # type: ignore[no-any-return]

    def usage(self) -> dict[str, Any]:
        """Return ``GET /usage``: accounts' windows and limits, budgets, waiting tasks."""
        return self._call("GET", "/usage")  # type: ignore[no-any-return]

    def update_project(self, name: str, **fields: Any) -> dict[str, Any]:
        """Set project policies (``max_concurrent``, ``auto_chain``…)."""
        return self._call("PATCH", f"/projects/{_q(name)}", body=fields)  # type: ignore[no-any-return]


def _query(query: dict[str, Any] | None) -> str:
    """Return ``?a=1&b=x`` of the values that are not None ("" when none are), httpx-style."""
    params = [(k, _text(v)) for k, v in (query or {}).items() if v is not None]
    if not params:
        return ""
    return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _text(value: Any) -> str:
    """Return a query value as text; booleans as JSON spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _q(id: str) -> str:
    """Quote an id for use as one path segment."""
    return urllib.parse.quote(str(id), safe="")


def _artifact_path(name: str) -> str:
    """Quote an artifact name as URL path segments, ``.`` and ``..`` included.

    A client resolving dot segments as RFC 3986 says (httpx, browsers, proxies) would turn
    ``../x`` into another route; encoded, they reach the hub, which refuses a name leaving the
    task's artifacts.
    """
    segments = name.split("/")
    return "/".join(
        seg.replace(".", "%2E") if seg in (".", "..") else urllib.parse.quote(seg, safe="")
        for seg in segments
    )


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _http_error(status: int, reason: str, raw: bytes) -> HubError:
    """Turn an HTTP error answer into a HubError, using the hub's JSON error body if any."""
    try:
        err = json.loads(raw)["error"]
        message, code = str(err["message"]), str(err.get("code") or "error")
    except (ValueError, KeyError, TypeError):
        return HubError(
            f"the hub answered HTTP {status} {reason}".rstrip(), code="http_error", status=status
        )
    if status == 401 and "DOBBY_API_KEY" not in message:
        message += " (set DOBBY_API_KEY)"
    return HubError(message, code=code, status=status)
