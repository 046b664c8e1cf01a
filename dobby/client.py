"""HubClient: the only way the CLI, Slack and MCP reach the hub (stdlib HTTP, synchronous)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterator
from typing import Any

from dobby.errors import HubError

DEFAULT_URL = "http://127.0.0.1:8420"

# Network failures that mean "the stream dropped" rather than "the hub said no".
_DROPS = (OSError, http.client.HTTPException)


_Frame = tuple[str, Any, "str | None"]  # (event name, decoded data, last event id)


class _Dropped(Exception):
    """The SSE connection ended or failed before its last event."""


class HubClient:
    """Call the hub's REST API; errors come back as :class:`HubError`."""

    def __init__(
        self, *, url: str | None = None, api_key: str | None = None, timeout: float = 30
    ) -> None:
        self.url = (url or os.environ.get("DOBBY_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("DOBBY_API_KEY")
        self.timeout = timeout
        # Direct connections only: a proxy from the environment would see the API key, and
        # would break the usual 127.0.0.1 hub when no_proxy is unset.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"HubClient(url={self._display_url!r})"

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

    def _request_obj(
        self, method: str, path: str, query: dict[str, Any] | None, body: Any, accept: str
    ) -> urllib.request.Request:
        url = self.url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": accept, "User-Agent": "dobby-client"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["X-Dobby-Key"] = self._api_key
        return urllib.request.Request(url, data=data, headers=headers, method=method)

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        accept: str = "application/json",
    ) -> http.client.HTTPResponse:
        """Send a request and return the open response; raise HubError on any failure."""
        req = self._request_obj(method, path, query, body, accept)
        try:
            return self._opener.open(req, timeout=self.timeout)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            with exc:
                raise _http_error(exc.code, exc.reason, exc.read()) from None
        except TimeoutError:
            raise HubError(
                f"the hub at {self._display_url} did not answer within {self.timeout:g}s",
                code="hub_timeout",
                status=0,
            ) from None
        except (urllib.error.URLError, *_DROPS):
            raise self._unreachable() from None

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send a request and return the decoded JSON answer."""
        with self._open(method, path, query=query, body=body) as resp:
            try:
                raw = resp.read()
            except _DROPS:
                raise self._unreachable() from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise HubError(
                f"the hub at {self._display_url} sent a non-JSON answer to {method} {path}",
                code="bad_response",
                status=resp.status,
            ) from None

    def _sse(self, path: str, query: dict[str, Any]) -> Generator[_Frame, None, None]:
        """Yield (event, data, id) frames of one SSE connection; raise _Dropped when it ends."""
        resp = self._open("GET", path, query=query, accept="text/event-stream")
        with resp:
            event, data_lines, last_id = "message", list[str](), None
            while True:
                try:
                    line = resp.readline()
                except _DROPS:
                    raise _Dropped() from None
                if not line:
                    raise _Dropped()
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if not text:
                    if data_lines:
                        yield event, _json_or_text("\n".join(data_lines)), last_id
                    event, data_lines = "message", []
                    continue
                if text.startswith(":"):
                    continue  # keep-alive comment
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data_lines.append(value)
                elif name == "id":
                    last_id = value

    def _reconnecting(
        self, open_stream: Callable[[], Generator[_Frame, None, None]], give_up_after: float
    ) -> Generator[_Frame, None, None]:
        """Yield frames of ``open_stream()``, reopening it after drops; give up after a silence."""
        # The first connection fails fast: a hub that was never up is a usage error, not a drop.
        first = True
        last_seen = time.monotonic()
        delay = 0.2
        while True:
            try:
                with contextlib.closing(open_stream()) as stream:
                    for frame in stream:
                        first = False
                        last_seen = time.monotonic()
                        delay = 0.2
                        yield frame
            except _Dropped:
                first = False
            except HubError as exc:
                retryable = exc.status == 0 or exc.status >= 500
                if first or not retryable:
                    raise
            remaining = give_up_after - (time.monotonic() - last_seen)
            if remaining <= 0:
                raise self._unreachable()
            time.sleep(min(delay, remaining + 0.01))
            delay = min(delay * 2, 2.0)

    # -- the API ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return the hub's health (no API key needed)."""
        return self._call("GET", "/health")  # type: ignore[no-any-return]

    def add_task(self, **fields: Any) -> dict[str, Any]:
        """Create a task from API fields (``prompt``, ``project``…); None values are dropped."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("POST", "/tasks", body=body)  # type: ignore[no-any-return]

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

    def retry(self, id: str) -> dict[str, Any]:
        """Re-queue a failed or cancelled task."""
        return self._call("POST", f"/tasks/{_q(id)}/retry", body={})  # type: ignore[no-any-return]

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
        self, since: int | None = None, *, give_up_after: float = 60.0
    ) -> Iterator[dict[str, Any]]:
        """Yield every bus event from sequence ``since`` on, forever, reconnecting on drops."""
        state: dict[str, Any] = {"since": since}

        def open_stream() -> Generator[_Frame, None, None]:
            return self._sse("/events", {"since": state["since"]})

        with contextlib.closing(self._reconnecting(open_stream, give_up_after)) as frames:
            for _, data, last_id in frames:
                seq = data.get("seq") if isinstance(data, dict) else None
                if seq is not None or last_id:
                    state["since"] = seq if seq is not None else last_id
                yield data

    def result(self, id: str) -> dict[str, Any]:
        """Return the task's result (summary, cost, tokens, branch…)."""
        return self._call("GET", f"/results/{_q(id)}")  # type: ignore[no-any-return]

    def projects(self) -> dict[str, Any]:
        """Return the raw ``{"projects": [...]}`` body."""
        return self._call("GET", "/projects")  # type: ignore[no-any-return]

    def register_project(self, name: str, path: str, context: str = "") -> dict[str, Any]:
        """Register a project (a git repository path) under ``name``."""
        body = {"name": name, "path": path, "context": context}
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


def _q(id: str) -> str:
    """Quote an id for use as one path segment."""
    return urllib.parse.quote(str(id), safe="")


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
