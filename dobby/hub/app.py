"""The hub's route table and OpenAPI document."""

from __future__ import annotations

from typing import Any

import tornado.web

from dobby import __version__
from dobby.hub.base import BaseHandler, NotFoundHandler
from dobby.hub.core import Dobby
from dobby.hub.handlers import scheduler as hs
from dobby.hub.handlers import tasks as h
from dobby.hub.handlers.dashboard import DASHBOARD_ROUTES
from dobby.hub.handlers.machines import ROUTES as MACHINES_ROUTES
from dobby.hub.handlers.results import RESULTS_ROUTES

ID = r"([A-Za-z0-9_-]+)"

# (pattern, handler, {method: summary}) — the single source of the routes and of /openapi.json.
ROUTES: list[tuple[str, type[BaseHandler], dict[str, str]]] = [
    (r"/health", h.HealthHandler, {"get": "Liveness and counts (no API key needed)"}),
    (
        r"/tasks",
        hs.TasksHandler,  # POST answers once the task is durable
        {"get": "List tasks (?project=&status=&limit=)", "post": "Submit a task"},
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
    (r"/events", h.EventsHandler, {"get": "SSE: every hub event (Last-Event-ID / ?since=)"}),
    (r"/projects", h.ProjectsHandler, {"get": "List projects", "post": "Register a project"}),
    (rf"/projects/{ID}", hs.ProjectHandler, {"get": "One project", "patch": "Set its policies"}),
    (r"/hosts", h.HostsHandler, {"get": "Inventory hosts with reachability and versions"}),
    (r"/spokes/register", h.SpokesRegisterHandler, {"post": "Add a host to the inventory"}),
    (r"/spokes", h.SpokesHandler, {"get": "Hosts added through /spokes/register"}),
]
ROUTES += hs.SCHEDULER_ROUTES  # drafts, schedules, batches (dobby/hub/handlers_scheduler.py)
ROUTES += DASHBOARD_ROUTES  # the web dashboard (dobby/hub/dashboard.py)
ROUTES += RESULTS_ROUTES  # results, artifacts, stats, export (dobby/hub/handlers_results.py)
ROUTES += MACHINES_ROUTES  # GPUs and `dobby remote` sessions (dobby/hub/handlers_machines.py)


def openapi() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the routes above."""
    paths: dict[str, Any] = {}
    for pattern, _handler, methods in ROUTES:
        if not methods:
            continue  # a page, not an API route (the dashboard)
        path = pattern.replace(ID, "{id}").replace("(.+)", "{name}")
        ops = {}
        for method, summary in methods.items():
            op: dict[str, Any] = {
                "summary": summary,
                "responses": {
                    "200": {"description": "OK"},
                    "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"},
                    "404": {"$ref": "#/components/responses/Error"},
                },
            }
            if "{id}" in path:
                op["parameters"] = [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ]
            if "{name}" in path:
                op.setdefault("parameters", []).append(
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                )
            if method in ("post", "patch"):
                op["requestBody"] = {
                    "content": {"application/json": {"schema": {"type": "object"}}}
                }
            ops[method] = op
        paths[path] = ops
    paths["/openapi.json"] = {
        "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Dobby hub", "version": __version__},
        "components": {
            "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Dobby-Key"}},
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
        "security": [{"key": []}],
        "paths": paths,
    }


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send(openapi())


def make_app(dobby: Dobby) -> tornado.web.Application:
    """Build the Tornado application for a hub."""
    args = {"dobby": dobby}
    routes: list[Any] = [(pattern, handler, args) for pattern, handler, _ in ROUTES]
    routes.append((r"/openapi.json", OpenAPIHandler, args))
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
    )
