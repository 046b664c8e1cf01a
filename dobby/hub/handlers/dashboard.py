"""The web dashboard: its static files, and the read-only JSON views it needs."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import tornado.web

from dobby import __version__
from dobby.core.errors import DobbyError, ValidationError
from dobby.core.timefmt import maybe_time
from dobby.hub import dashboard_data as data
from dobby.hub.base import ID, BaseHandler, guard_of
from dobby.store import aggregates, tasklog

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
# The dashboard's file names: anything else (``..``, escapes) is not a dashboard file.
STATIC_NAME = r"([A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*\.[a-z]+)"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
STEP_TAIL = 32 * 1024  # bytes of a running task's log read to find its current step
TIMELINE_LIMIT = 8 << 20  # bytes of log the timeline renders at most
LIVE_DETAIL = ("step", "cost_usd", "cost_estimated", "tokens", "turns", "last_tool", "last_target")


class DashboardFiles(tornado.web.StaticFileHandler):
    """Serve the dashboard's page and files (no key: they hold no data, the API calls do)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")

    def prepare(self) -> None:
        # A navigation from another site is fine (a link to the dashboard); a foreign Host
        # (DNS rebinding) is not.
        try:
            guard_of(self).check_host(self.request.host)
        except DobbyError as exc:
            self.set_status(exc.status)
            self.send_error(exc.status, exc_info=(type(exc), exc, exc.__traceback__))

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")  # revalidate: the ETag answers 304

    def parse_url_path(self, url_path: str) -> str:
        return super().parse_url_path(url_path or "index.html")  # /dashboard is the page

    def get_content_type(self) -> str:
        suffix = Path(self.absolute_path or "").suffix
        return CONTENT_TYPES.get(suffix) or super().get_content_type()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DobbyError):
            self.finish(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
            return
        code = "not_found" if status_code == 404 else "http_error"
        message = "no such dashboard file" if status_code == 404 else self._reason
        self.finish(json.dumps({"error": {"code": code, "message": message}}))


def _timezone(name: str | None) -> _dt.tzinfo:
    """Return the configured zone, or the hub machine's local one."""
    if name:
        return ZoneInfo(name)
    return _dt.datetime.now().astimezone().tzinfo or _dt.UTC


MAX_HEATMAP_DAYS = 3660  # ?days= of /dashboard/api/heatmap (documented in /openapi.json)
MAX_USAGE_DAYS = 366  # ?days= of /dashboard/api/usage


def _days_arg(handler: BaseHandler, default: int, most: int) -> int:
    raw = handler.get_query_argument("days", None)
    if not raw:
        return default
    # isdigit() alone takes "²" and other digits int() refuses (a 500): ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ValidationError(f"query parameter 'days' must be an integer from 1 to {most}")
    return int(raw)


class ConfigHandler(BaseHandler):
    def get(self) -> None:
        settings = self.dobby.settings
        # The URL patterns this hub serves (app.py hands them over): which views exist.
        routes = self.application.settings.get("route_patterns", frozenset())
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
        days = _days_arg(self, 365, MAX_HEATMAP_DAYS)
        now = _dt.datetime.now(tz)
        today = now.date()
        # Buckets from a day before the first local day, in SQL; their local day here.
        first = _dt.datetime.combine(today, _dt.time(), tz) - _dt.timedelta(days=days)
        size = aggregates.bucket_size(tz, first, now)
        end = now.timestamp() + 86400
        conn = self.dobby.store.sql()
        rows = aggregates.completed_buckets(conn, start=first.timestamp(), end=end, bucket=size)
        counts = [(p, data.local_day(b * size, tz), n) for p, b, n in rows]
        self.send(data.heatmap_counts(counts, today=today, tz=tz, days=days))


class UsageHandler(BaseHandler):
    def get(self) -> None:
        tz = _timezone(self.dobby.settings.timezone)
        days = _days_arg(self, 30, MAX_USAGE_DAYS)
        now = _dt.datetime.now(_dt.UTC)
        conn, end = self.dobby.store.sql(), now.timestamp()
        per_window = {}
        for name, hours in data.USAGE_WINDOWS:
            start = (now - _dt.timedelta(hours=hours)).timestamp()
            per_window[name] = {
                b: data.usage_row(b, n, cost or 0.0, tokens)
                for b, n, cost, *tokens in aggregates.usage_window(conn, start=start, end=end)
            }
        first = _dt.datetime.combine(now.astimezone(tz).date(), _dt.time(), tz)
        first -= _dt.timedelta(days=days)
        size = aggregates.bucket_size(tz, first, now)
        buckets = aggregates.cost_buckets(conn, start=first.timestamp(), end=end, bucket=size)
        day_costs = [(b, data.local_day(n * size, tz), cost) for b, n, cost in buckets]
        self.send(
            data.usage_sums(
                per_window,
                day_costs,
                backends=aggregates.finished_backends(conn, end=end),
                now=now,
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
        for task in self.dobby.running_tasks():
            tail = self.dobby.logs.tail(task.id, STEP_TAIL)
            steps[task.id] = data.last_step(tasklog.events(task.backend, tail))
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
        raw, offset = self.dobby.logs.read(task.id, 0, TIMELINE_LIMIT)
        entries = tasklog.entries(task.backend, raw)
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
            log_size=self.dobby.logs.size(task.id),
            now=_dt.datetime.now(_dt.UTC),
        )
        out["truncated"] = offset < self.dobby.logs.size(task.id)
        self.send(out)
