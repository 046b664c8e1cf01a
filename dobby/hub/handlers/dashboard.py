"""The web dashboard: the page, its static files, and the read-only JSON views it needs."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dobby import __version__
from dobby.backends import get_backend
from dobby.core.errors import DobbyError, NotFound, ValidationError
from dobby.core.models import Task, TaskStatus
from dobby.core.timefmt import maybe_time
from dobby.hub import dashboard_data as data
from dobby.hub.base import BaseHandler

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_SAFE_PATH = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*\.[a-z]+")
STEP_TAIL = 32 * 1024  # bytes of a running task's log read to find its current step
TIMELINE_LIMIT = 8 << 20  # bytes of log the timeline renders at most
ID = r"([A-Za-z0-9_-]+)"
LIVE_DETAIL = ("step", "cost_usd", "cost_estimated", "tokens", "turns", "last_tool", "last_target")


class PageHandler(BaseHandler):
    """Serve the dashboard's HTML page (no key: it holds no data, the API calls do)."""

    public = True

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")

    def serve(self, path: Path) -> None:
        """Send one file of the static directory with its content type."""
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            raise NotFound(f"no such dashboard file: {path.name}")
        self.set_header("Content-Type", content_type)
        self.finish(path.read_bytes())  # finish() adds an ETag and answers 304 when it matches

    def get(self) -> None:
        self.serve(STATIC_DIR / "index.html")


class StaticHandler(PageHandler):
    """Serve the dashboard's scripts, styles and images from the package."""

    def get(self, name: str) -> None:  # type: ignore[override]
        path = (STATIC_DIR / name).resolve()
        if not _SAFE_PATH.fullmatch(name) or not path.is_relative_to(STATIC_DIR):
            raise NotFound(f"no such dashboard file: {name}")
        self.serve(path)


def _timezone(name: str | None) -> _dt.tzinfo:
    """Return the configured zone, or the hub machine's local one."""
    if name:
        return ZoneInfo(name)
    return _dt.datetime.now().astimezone().tzinfo or _dt.UTC


def _days_arg(handler: BaseHandler, default: int, most: int) -> int:
    raw = handler.get_query_argument("days", None)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValidationError(f"query parameter 'days' must be an integer from 1 to {most}")
    return int(raw)


def _slim(task: Task) -> dict[str, Any]:
    """Return the fields the heatmap and usage read (Task.to_dict() costs ~0.1 ms a task)."""
    return {
        "status": task.status,
        "project": task.project,
        "backend": task.backend,
        "finished_at": task.finished_at,
        "cost_usd": task.cost_usd,
        "tokens": dict(vars(task.tokens)),
    }


def _route_patterns(handler: BaseHandler) -> set[str]:
    """Return the URL patterns this hub serves (to tell the page which views exist)."""
    from dobby.hub.app import ROUTES  # the route table imports this module

    return {pattern for pattern, _handler, _methods in ROUTES}


class ConfigHandler(BaseHandler):
    def get(self) -> None:
        settings = self.dobby.settings
        routes = _route_patterns(self)
        github = settings.github_url
        if github and not github.startswith(("https://", "http://")):
            github = None  # never hand the page a javascript: or data: link
        self.send(
            {
                "version": __version__,
                "hub_url": settings.to_public_dict().get("hub_url"),
                "github_url": github,
                "timezone": settings.timezone,
                "auth": bool(settings.api_key),
                "features": {
                    "batches": "/batches" in routes and rf"/batches/{ID}" in routes,
                    "drafts": rf"/tasks/{ID}/approve" in routes
                    and rf"/tasks/{ID}/reject" in routes,
                    "gpus": "/gpus" in routes,
                    "artifacts": rf"/tasks/{ID}/artifacts/(.+)" in routes,
                    "detail_status": rf"/tasks/{ID}/detail-status" in routes,
                    "stats": "/stats" in routes,
                },
            }
        )


class HeatmapHandler(BaseHandler):
    def get(self) -> None:
        tz = _timezone(self.dobby.settings.timezone)
        days = _days_arg(self, 365, 3660)
        tasks = [_slim(t) for t in self.dobby.store.tasks(status=TaskStatus.COMPLETED.value)]
        today = _dt.datetime.now(tz).date()
        self.send(data.heatmap(tasks, today=today, tz=tz, days=days))


class UsageHandler(BaseHandler):
    def get(self) -> None:
        tz = _timezone(self.dobby.settings.timezone)
        days = _days_arg(self, 30, 366)
        tasks = [_slim(t) for t in self.dobby.store.tasks()]
        self.send(
            data.usage(
                tasks,
                now=_dt.datetime.now(_dt.UTC),
                tz=tz,
                days=days,
                limits=self.dobby.settings.usage_limits,
            )
        )


class LiveHandler(BaseHandler):
    def get(self) -> None:
        steps: dict[str, Any] = {}
        details: dict[str, Any] = {}
        results = getattr(self.dobby, "results", None)  # detail-status, when the hub has it
        for task in self.dobby.store.tasks(status=TaskStatus.RUNNING.value):
            size = self.dobby.log_size(task.id)
            start = max(0, size - STEP_TAIL)
            raw, _ = self.dobby.read_log(task.id, start, STEP_TAIL)
            lines = raw.decode("utf-8", "replace").splitlines()
            if start > 0:
                lines = lines[1:]  # the first line is cut in the middle
            backend = get_backend(task.backend)
            events = [e.to_dict() for line in lines for e in backend.render(line)]
            steps[task.id] = data.last_step(events)
            if results is not None:
                try:
                    detail = results.detail_status(task.id)
                except DobbyError:
                    continue
                details[task.id] = {k: detail.get(k) for k in LIVE_DETAIL}
        self.send({"steps": steps, "details": details})


class TimelineHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        task = self.dobby.get_task(task_id)
        raw, _ = self.dobby.read_log(task.id, 0, TIMELINE_LIMIT)
        backend = get_backend(task.backend)
        entries: list[tuple[int, dict[str, Any]]] = []
        offset = 0
        for line in raw.splitlines(keepends=True):
            text = line.decode("utf-8", "replace")
            entries.extend((offset, e.to_dict()) for e in backend.render(text.rstrip("\r\n")))
            offset += len(line)
        started = maybe_time(task.started_at)
        arrivals = []
        for event in self.dobby.bus.since(0, task_id=task.id):
            ts = maybe_time(event.ts)
            if event.type != "task.log" or ts is None or (started and ts < started):
                continue  # a retried task's older attempt wrote another log
            arrivals.append(
                (int(event.data["offset"]), int(event.data["next_offset"]), ts.timestamp())
            )
        out = data.timeline(
            task.to_dict(),
            entries,
            arrivals=arrivals,
            log_size=self.dobby.log_size(task.id),
            now=_dt.datetime.now(_dt.UTC),
        )
        out["truncated"] = offset < self.dobby.log_size(task.id)
        self.send(out)


# (pattern, handler, {method: summary}); app.py adds these to its route table. The page and its
# files have no summaries: they are not part of the API and stay out of /openapi.json.
DASHBOARD_ROUTES: list[tuple[str, type[BaseHandler], dict[str, str]]] = [
    (r"/dashboard/?", PageHandler, {}),
    (r"/dashboard/static/(.+)", StaticHandler, {}),
    (
        r"/dashboard/api/config",
        ConfigHandler,
        {"get": "Dashboard: public settings (hub_url, github_url) and which views exist"},
    ),
    (
        r"/dashboard/api/heatmap",
        HeatmapHandler,
        {"get": "Dashboard: completed tasks per project per day (?days=365)"},
    ),
    (
        r"/dashboard/api/usage",
        UsageHandler,
        {"get": "Dashboard: tokens and cost per backend over 5h/7d, cost per day (?days=30)"},
    ),
    (
        r"/dashboard/api/live",
        LiveHandler,
        {"get": "Dashboard: the current step (and cost so far) of every running task"},
    ),
    (
        rf"/dashboard/api/tasks/{ID}/timeline",
        TimelineHandler,
        {"get": "Dashboard: a task's states and tool calls on a time axis"},
    ),
]
