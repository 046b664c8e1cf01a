"""The OpenAPI 3.1 document of the hub, generated from the route table and the declared shapes.

Every operation names the model of its request body (:mod:`dobby.core.shapes`) and of its
answer (:mod:`dobby.hub.answers`); the component schemas are pydantic's JSON schemas of those
models. :data:`OPERATIONS` is keyed by the OpenAPI path and method; a test checks that every
route of the table has an entry, so a new route is documented with its shapes or fails CI.

``/openapi.json`` needs the API key like every route but ``/health``: it maps the attack
surface, and nothing that lacks the key needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dobby import __version__
from dobby.core import raceshapes as rs
from dobby.core import shapes
from dobby.core.models import BackendName, TaskStatus
from dobby.core.records import TaskExport, TaskExportObject, TaskRecord
from dobby.hub import answers as a
from dobby.hub.handlers.dashboard import MAX_HEATMAP_DAYS, MAX_USAGE_DAYS
from dobby.inventory.shapes import SpokeRegister
from dobby.store.query import ORDERS

REF = "#/components/schemas/{model}"
_GROUPS = {
    r"([A-Za-z0-9_-]+)": "{id}",
    r"([A-Za-z0-9._-]+)": "{name}",
    r"(.+)": "{name}",
}


@dataclass(frozen=True)
class Query:
    """One query parameter (or, with ``where="header"``, a request header)."""

    name: str
    schema: dict[str, Any]
    description: str
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Op:
    """The shapes of one operation: request body, answer, status and query parameters."""

    answer: Any = None  # a model; or a media type (str) for a non-JSON answer
    body: Sequence[type[BaseModel]] = ()  # one model, or several alternatives
    status: int = 200
    query: Sequence[Query] = ()
    body_required: bool = True
    alternatives: dict[str, str] = field(default_factory=dict)  # other media types answered
    reaches_host: bool = False  # may answer 502 when a host it needs cannot be reached


def _q(name: str, kind: str, description: str, **extra: Any) -> Query:
    schema: dict[str, Any] = {"type": kind, **extra}
    if kind == "integer":
        # The hub reads ?limit= (empty) as no limit at all (base.int_arg, the dashboard's days).
        schema = {"anyOf": [schema, EMPTY_TEXT]}
    elif "enum" in extra:
        schema["enum"] = [*extra["enum"], ""]  # empty: as if absent, like the integers
    return Query(name, schema, description)


EMPTY_TEXT = {"type": "string", "maxLength": 0}


MAX_INT = 2**53 - 1
PROJECT = _q("project", "string", "Only tasks of this project (an unknown one is a 404).")
STATUS = _q(
    "status",
    "string",
    "Only tasks in these statuses, comma-separated (a,b); known: "
    + ", ".join(s.value for s in TaskStatus)
    + ".",
)
HOST = _q("host", "string", "Only tasks placed on this host.")
BACKEND = _q("backend", "string", "Only tasks of this backend.", enum=list(BackendName))
BATCH = _q("batch", "string", "Only tasks of this batch (its id).")
SEARCH = _q(
    "q",
    "string",
    "Search: every word must be a word of the id, title or prompt; the last may be the start "
    "of one (case-insensitive).",
)
LIMIT = _q(
    "limit",
    "integer",
    "A page of at most this many, newest first (absent: every match, streamed).",
    minimum=0,
    maximum=MAX_INT,
)
OFFSET = _q("offset", "integer", "Skip this many matches first.", minimum=0, maximum=MAX_INT)
SORT = _q(
    "sort",
    "string",
    "Order: newest (default), oldest, finished, cost or longest; `before` pages newest only.",
    enum=list(ORDERS),
)
BEFORE = _q("before", "string", "Only tasks older than this one (next_before of a page).")
SINCE = _q("since", "string", "A duration back from now (24h, 7d) or an ISO time.")
HEATMAP_DAYS = _q("days", "integer", "Days back from today.", minimum=1, maximum=MAX_HEATMAP_DAYS)
USAGE_DAYS = _q("days", "integer", "Days back from today.", minimum=1, maximum=MAX_USAGE_DAYS)
IDEMPOTENCY_KEY = Query(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "Repeating the key with the same body answers the first answer again "
    "(Idempotent-Replayed: true), never a second creation; with another body, 409.",
    where="header",
)
SSE = "text/event-stream"
EMPTY = (shapes.Empty,)

# (OpenAPI path, method) → Op. Paths are the route patterns with their groups named.
OPERATIONS: dict[tuple[str, str], Op] = {
    ("/health", "get"): Op(a.Health),
    ("/tasks", "get"): Op(
        a.TaskList,
        query=(STATUS, PROJECT, HOST, BACKEND, BATCH, SEARCH, LIMIT, OFFSET, BEFORE, SORT),
    ),
    ("/tasks", "post"): Op(TaskRecord, (shapes.TaskSubmit,), 201, query=(IDEMPOTENCY_KEY,)),
    ("/tasks/{id}", "get"): Op(TaskRecord),
    ("/tasks/{id}", "patch"): Op(TaskRecord, (shapes.TaskPatch,)),
    ("/tasks/{id}/cancel", "post"): Op(TaskRecord, EMPTY, body_required=False),
    ("/tasks/{id}/retry", "post"): Op(a.RetriedTask, (shapes.RetryBody,), 201, body_required=False),
    ("/tasks/{id}/logs", "get"): Op(
        a.LogChunk,
        query=(_q("offset", "integer", "Byte offset to read from.", minimum=0, maximum=MAX_INT),),
    ),
    ("/tasks/{id}/events", "get"): Op(
        SSE,
        query=(
            _q(
                "offset",
                "integer",
                "Byte offset of the log to start at.",
                minimum=0,
                maximum=MAX_INT,
            ),
        ),
    ),
    ("/events", "get"): Op(
        SSE,
        query=(
            _q("since", "integer", "Replay events after this number.", minimum=0, maximum=MAX_INT),
            _q(
                "types",
                "string",
                "Only these events: comma-separated types (task.finished) or families (race.*).",
            ),
        ),
    ),
    ("/projects", "get"): Op(a.ProjectList),
    ("/projects", "post"): Op(a.ProjectOut, (shapes.ProjectCreate,), 201),
    ("/projects/{id}", "get"): Op(a.ProjectOut),
    ("/projects/{id}", "patch"): Op(a.ProjectOut, (shapes.ProjectPatch,)),
    ("/hosts", "get"): Op(a.HostsView),
    ("/spokes/register", "post"): Op(a.HostOut, (SpokeRegister,), 201),
    ("/spokes", "get"): Op(a.SpokeList),
    ("/tasks/{id}/approve", "post"): Op(TaskRecord, EMPTY, body_required=False),
    ("/tasks/{id}/reject", "post"): Op(TaskRecord, EMPTY, body_required=False),
    ("/schedules", "get"): Op(a.ScheduleList),
    ("/schedules", "post"): Op(a.ScheduleOut, (shapes.ScheduleCreate,), 201),
    ("/schedules/{id}", "get"): Op(a.ScheduleOut),
    ("/schedules/{id}", "delete"): Op(a.ScheduleOut),
    ("/schedules/{id}/pause", "post"): Op(a.ScheduleOut, EMPTY, body_required=False),
    ("/schedules/{id}/resume", "post"): Op(a.ScheduleOut, EMPTY, body_required=False),
    ("/batches", "get"): Op(a.BatchList),
    ("/batches", "post"): Op(
        a.BatchView, (shapes.BatchFile, shapes.BatchText), 201, query=(IDEMPOTENCY_KEY,)
    ),
    ("/batches/{id}", "get"): Op(a.BatchView),
    ("/usage", "get"): Op(a.UsageView),
    ("/dashboard/api/config", "get"): Op(a.DashboardConfig),
    ("/dashboard/api/heatmap", "get"): Op(a.Heatmap, query=(HEATMAP_DAYS,)),
    ("/dashboard/api/usage", "get"): Op(a.Usage, query=(USAGE_DAYS,)),
    ("/dashboard/api/live", "get"): Op(a.Live),
    ("/dashboard/api/tasks/{id}/timeline", "get"): Op(a.Timeline),
    ("/results", "get"): Op(
        a.ResultList, query=(STATUS, PROJECT, HOST, BACKEND, BATCH, SEARCH, LIMIT, OFFSET)
    ),
    ("/results/{id}", "get"): Op(a.ResultOut),
    ("/tasks/{id}/detail-status", "get"): Op(a.DetailStatus),
    ("/tasks/{id}/artifacts", "get"): Op(a.ArtifactList),
    ("/tasks/{id}/artifacts/{name}", "get"): Op("application/octet-stream"),
    ("/tasks/{id}/diff", "get"): Op(
        a.Diff,
        query=(_q("format", "string", "json, or text for a patch.", enum=["json", "text"]),),
        alternatives={"text/x-diff": "The patch, with ?format=text."},
    ),
    ("/tasks/{id}/merge", "post"): Op(a.Merge, EMPTY, body_required=False),
    ("/stats", "get"): Op(a.Stats, query=(SINCE, PROJECT)),
    ("/export", "get"): Op(
        "text/csv",
        query=(_q("format", "string", "csv or json.", enum=["csv", "json"]), PROJECT, SINCE),
        alternatives={"application/json": "A JSON array of tasks, with ?format=json."},
    ),
    ("/import", "post"): Op(a.ImportReport, (TaskExport, TaskExportObject)),
    ("/gc", "post"): Op(a.GcReport, (shapes.GcBody,), body_required=False),
    ("/hosts/{name}/check", "post"): Op(a.HostCheck, EMPTY, body_required=False),
    ("/hosts/{name}/bootstrap", "post"): Op(
        a.Bootstrap, (shapes.HostBootstrap,), body_required=False, reaches_host=True
    ),
    ("/gpus", "get"): Op(
        a.Gpus, query=(_q("history", "string", "1: add each host's recent samples."),)
    ),
    ("/remote", "get"): Op(a.SessionList, query=(_q("all", "string", "1: ended sessions too."),)),
    ("/remote", "post"): Op(TaskRecord, (shapes.RemoteOpen,), 201),
    ("/races", "get"): Op(
        rs.RaceList,
        query=(
            _q("limit", "integer", "At most this many, newest first.", minimum=0, maximum=MAX_INT),
        ),  # fmt: skip
    ),
    ("/races", "post"): Op(rs.RaceView, (rs.RaceCreate,), 201, query=(IDEMPOTENCY_KEY,)),
    ("/races/{id}", "get"): Op(rs.RaceView),
    ("/races/{id}/cancel", "post"): Op(rs.RaceView, EMPTY, body_required=False),
    ("/races/{id}/merge", "post"): Op(rs.RaceMerged, EMPTY, body_required=False),
    ("/openapi.json", "get"): Op("application/json"),
}
PUBLIC = {"/health"}  # every other route needs the key when the hub has one


def api_path(pattern: str) -> str:
    """Return the OpenAPI path of a route pattern: its groups become ``{id}`` / ``{name}``."""
    path = pattern
    for group, name in _GROUPS.items():
        path = path.replace(group, name)
    if re.search(r"[()\\[\]]", path):
        raise ValueError(f"route {pattern!r} has a group api_path cannot name")
    return path


Mode = Literal["validation", "serialization"]


def _models() -> list[tuple[type[BaseModel], Mode]]:
    """Return every model the document refers to, with its mode (request or answer)."""
    out: dict[tuple[type[BaseModel], Mode], None] = {(a.Error, "serialization"): None}
    for op in OPERATIONS.values():
        for body in op.body:
            out[(body, "validation")] = None
        if isinstance(op.answer, type):
            out[(op.answer, "serialization")] = None
    return list(out)


def _params(path: str, op: Op) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    params += [
        {"name": q.name, "in": q.where, "schema": q.schema, "description": q.description}
        for q in op.query
    ]
    return params


def _operation(
    path: str, method: str, summary: str, op: Op, refs: dict[Any, Any]
) -> dict[str, Any]:
    if isinstance(op.answer, type):
        content = {"application/json": {"schema": refs[(op.answer, "serialization")]}}
    else:
        content = {op.answer or "application/json": {"schema": {}}}
    for media, text in op.alternatives.items():
        content[media] = {"schema": {}, "x-description": text}
    errors = {"$ref": "#/components/responses/Error"}
    # 503 storage_unavailable: a change the hub could not write to its database in time.
    codes = ("400", "401", "404", "409") + (("503",) if method != "get" else ())
    # 502 host_unreachable / connection_lost: a host the operation works on did not answer.
    codes += ("502",) if op.reaches_host else ()
    out: dict[str, Any] = {
        "summary": summary,
        "operationId": _operation_id(path, method),
        "responses": {
            str(op.status): {"description": summary, "content": content},
            **{code: errors for code in codes},
        },
    }
    params = _params(path, op)
    if params:
        out["parameters"] = params
    if op.body:
        schemas = [refs[(body, "validation")] for body in op.body]
        schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    if path in PUBLIC:
        out["security"] = []
    return out


def _operation_id(path: str, method: str) -> str:
    words = re.sub(r"[{}]", "", path).replace("-", "_").replace(".", "_").strip("/")
    return f"{method}_{words.replace('/', '_') or 'root'}"


def document(routes: Iterable[tuple[str, Any, dict[str, str]]]) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of ``routes`` (pattern, handler, {method: summary})."""
    refs, defs = models_json_schema(_models(), ref_template=REF)
    paths: dict[str, Any] = {}
    table = [(p, m, s) for p, _h, methods in routes for m, s in methods.items()]
    table.append(("/openapi.json", "get", "This document (no API key needed)"))
    for pattern, method, summary in table:
        path = api_path(pattern)
        op = OPERATIONS[(path, method)]
        paths.setdefault(path, {})[method] = _operation(path, method, summary, op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dobby hub",
            "version": __version__,
            "description": "Dispatch coding-agent tasks to hosts over SSH. Every route but "
            "/health, /openapi.json and the dashboard's config needs the API key (header "
            "X-Dobby-Key or Authorization: Bearer) when the hub has one.",
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "X-Dobby-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "responses": {
                "Error": {
                    "description": "Error: a stable code and a one-line message",
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model="Error")}}
                    },
                }
            },
        },
        "security": [{"key": []}, {"bearer": []}],
        "paths": paths,
    }
