"""The hub's route table and OpenAPI document."""

from __future__ import annotations

import functools
from typing import Any

import tornado.web

from dobby.hub.base import ID, BaseHandler, NotFoundHandler, log_request
from dobby.hub.core import Hub
from dobby.hub.guard import Guard
from dobby.hub.handlers import dashboard as dash
from dobby.hub.handlers import machines as hm
from dobby.hub.handlers import races as hr_
from dobby.hub.handlers import results as hr
from dobby.hub.handlers import scheduler as hs
from dobby.hub.handlers import tasks as h
from dobby.hub.handlers.ws import EventsSocket

# (pattern, handler, {method: summary}): the one route table of the hub, and the source of
# /openapi.json. Routes without summaries are pages, not API, and stay out of the document.
ROUTES: list[tuple[str, type[BaseHandler], dict[str, str]]] = [
    (r"/health", h.HealthHandler, {"get": "Liveness and counts (no API key needed)"}),
    (
        r"/tasks",
        hs.TasksHandler,  # POST answers once the task is durable
        {
            "get": "List tasks newest first (?status=a,b&project=&host=&backend=&batch=&q="
            "&limit=&offset= or &before=ID; ?sort=oldest|finished|cost|longest)",
            "post": "Submit a task (Idempotency-Key honoured)",
        },
    ),
    (rf"/tasks/{ID}", h.TaskHandler, {"get": "One task", "patch": "Edit a draft/pending task"}),
    (rf"/tasks/{ID}/cancel", h.TaskCancelHandler, {"post": "Cancel a task"}),
    (
        rf"/tasks/{ID}/retry",
        hs.TaskRetryHandler,
        {"post": "Queue a failed/cancelled task again ({cascade: true}: and its dependents)"},
    ),
    (rf"/tasks/{ID}/logs", h.TaskLogsHandler, {"get": "Task output from ?offset="}),
    (
        rf"/tasks/{ID}/events",
        h.TaskEventsHandler,
        {"get": "SSE: a task's log (from ?offset=), status changes, end"},
    ),
    (
        r"/events",
        h.EventsHandler,
        {"get": "SSE: the hub's events (Last-Event-ID / ?since=; ?types=task.finished,race.*)"},
    ),
    (r"/projects", h.ProjectsHandler, {"get": "List projects", "post": "Register a project"}),
    (rf"/projects/{ID}", hs.ProjectHandler, {"get": "One project", "patch": "Set its policies"}),
    (r"/hosts", h.HostsHandler, {"get": "Inventory hosts with reachability and versions"}),
    (r"/spokes/register", h.SpokesRegisterHandler, {"post": "Add a host to the inventory"}),
    (r"/spokes", h.SpokesHandler, {"get": "Hosts added through /spokes/register"}),
    # -- drafts, schedules, batches (handlers/scheduler.py)
    (rf"/tasks/{ID}/approve", hs.TaskApproveHandler, {"post": "Queue a draft (with its plan)"}),
    (rf"/tasks/{ID}/reject", hs.TaskRejectHandler, {"post": "Drop a draft"}),
    (
        r"/schedules",
        hs.SchedulesHandler,
        {"get": "List schedules with next fire", "post": "Create a schedule"},
    ),
    (
        rf"/schedules/{ID}",
        hs.ScheduleHandler,
        {"get": "One schedule", "delete": "Delete a schedule"},
    ),
    (rf"/schedules/{ID}/pause", hs.SchedulePauseHandler, {"post": "Pause a schedule"}),
    (rf"/schedules/{ID}/resume", hs.ScheduleResumeHandler, {"post": "Resume a schedule"}),
    (r"/batches", hs.BatchesHandler, {"get": "List batches", "post": "Submit a batch of tasks"}),
    (rf"/batches/{ID}", hs.BatchHandler, {"get": "A batch: counts, cost, tasks"}),
    (
        r"/usage",
        hs.UsageHandler,
        {"get": "Accounts' usage windows and limits, budgets, tasks waiting on them"},
    ),
    # -- the web dashboard (handlers/dashboard.py); its files are added by make_app
    (
        r"/dashboard/api/config",
        dash.ConfigHandler,
        {"get": "Dashboard: public settings (hub_url, github_url) and which views exist"},
    ),
    (
        r"/dashboard/api/heatmap",
        dash.HeatmapHandler,
        {"get": "Dashboard: completed tasks per project per day (?days=365)"},
    ),
    (
        r"/dashboard/api/usage",
        dash.UsageHandler,
        {"get": "Dashboard: tokens and cost per backend over 5h/7d, cost per day (?days=30)"},
    ),
    (
        r"/dashboard/api/live",
        dash.LiveHandler,
        {"get": "Dashboard: the current step (and cost so far) of every running task"},
    ),
    (
        rf"/dashboard/api/tasks/{ID}/timeline",
        dash.TimelineHandler,
        {"get": "Dashboard: a task's states and tool calls on a time axis"},
    ),
    # -- results, artifacts, stats, export (handlers/results.py)
    (
        r"/results",
        hr.ResultsHandler,
        {"get": "Results newest first (?project=&status=&host=&backend=&q=&limit=&offset=)"},
    ),
    (rf"/results/{ID}", hr.ResultHandler, {"get": "A task's result, with its follow-up chain"}),
    (
        rf"/tasks/{ID}/detail-status",
        hr.DetailStatusHandler,
        {"get": "What the agent is doing now"},
    ),
    (rf"/tasks/{ID}/artifacts", hr.ArtifactsHandler, {"get": "List a task's artifacts"}),
    (rf"/tasks/{ID}/artifacts/(.+)", hr.ArtifactHandler, {"get": "Download one artifact"}),
    (rf"/tasks/{ID}/diff", hr.DiffHandler, {"get": "The task's diff (?format=text for a patch)"}),
    (
        rf"/tasks/{ID}/merge",
        hr.MergeHandler,
        {"post": "Merge the task's branch into the project"},
    ),
    (r"/stats", hr.StatsHandler, {"get": "Stats and cost accounting (?since=24h&project=)"}),
    (
        r"/export",
        hr.ExportHandler,
        {"get": "Every task as CSV or JSON (?format=&project=&since=)"},
    ),
    (r"/import", hr.ImportHandler, {"post": "Import a JSON export"}),
    (r"/gc", hr.GcHandler, {"post": "Free finished tasks' directories on hosts"}),
    # -- races: K attempts at one task, judged by its check (handlers/races.py)
    (
        r"/races",
        hr_.RacesHandler,
        {"get": "Races newest first (?limit=)", "post": "Start a race (Idempotency-Key honoured)"},
    ),
    (rf"/races/{ID}", hr_.RaceHandler, {"get": "A race: one column per attempt"}),
    (rf"/races/{ID}/cancel", hr_.RaceCancelHandler, {"post": "Cancel a race and its attempts"}),
    (rf"/races/{ID}/merge", hr_.RaceMergeHandler, {"post": "Merge the winner's branch"}),
    # -- GPUs, host checks and `dobby remote` sessions (handlers/machines.py)
    (
        r"/hosts/([A-Za-z0-9._-]+)/check",
        hm.HostCheckHandler,
        {"post": "Check a host from the hub: SSH, key, tools, disk, GPUs, shell speed"},
    ),
    (
        r"/hosts/([A-Za-z0-9._-]+)/bootstrap",
        hm.HostBootstrapHandler,
        {"post": "Create a host's workdir; {install: true} installs a missing tmux/git"},
    ),
    (r"/gpus", hm.GpusHandler, {"get": "GPUs of every GPU host, their users (?history=1)"}),
    (
        r"/remote",
        hm.RemoteHandler,
        {"get": "Interactive sessions (?all=1: ended ones too)", "post": "Open one"},
    ),
]


@functools.cache
def openapi() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the routes above (see dobby/hub/openapi.py).

    Built once per process (read-only): building takes ~0.3 s of CPU. Its module is imported
    here, not with the hub: the response models cost every hub start 50 ms of CPU, and a
    restarted hub's tasks wait for its start.
    """
    from dobby.hub.openapi import document

    return document(ROUTES)


class OpenAPIHandler(BaseHandler):
    # Like every route but /health: needs the key when the hub has one (it maps the attack
    # surface, and nothing that lacks the key needs it).

    def get(self) -> None:
        self.send(openapi())


def make_app(dobby: Hub) -> tornado.web.Application:
    """Build the Tornado application for a hub."""
    args = {"dobby": dobby}
    routes: list[Any] = [(pattern, handler, args) for pattern, handler, _ in ROUTES]
    routes.append((r"/openapi.json", OpenAPIHandler, args))
    routes.append((r"/ws", EventsSocket, args))  # GET /events over a WebSocket (not in OpenAPI)
    files = {"path": str(dash.STATIC_DIR)}
    routes.append((r"/dashboard/?()", dash.DashboardFiles, files))
    routes.append((rf"/dashboard/static/{dash.STATIC_NAME}", dash.DashboardFiles, files))
    settings = dobby.settings
    guard = Guard.build(
        bind=settings.host,
        hub_url=settings.hub_url,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
    )
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        route_patterns=frozenset(pattern for pattern, _, _ in ROUTES),
        guard=guard,
        log_function=log_request,
    )
