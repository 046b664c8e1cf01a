"""/openapi.json is generated from the declared shapes, and real answers match it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import dobby.hub
from dobby.hub.app import ROUTES, openapi
from dobby.hub.openapi import OPERATIONS, api_path
from tests.fixtures.hub import HubProcess, make_git_project

RAW_PYDANTIC = {"ge", "gt", "le", "lt"}  # pydantic-only words: not JSON Schema keywords


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Yield every object inside a JSON document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_every_route_has_declared_shapes_and_no_stale_entry() -> None:
    routes = {(api_path(p), m) for p, _h, methods in ROUTES for m in methods}
    routes.add(("/openapi.json", "get"))
    assert routes == set(OPERATIONS)


def test_every_query_parameter_a_handler_reads_is_documented() -> None:
    hub_dir = Path(dobby.hub.__file__).parent
    read = re.compile(r'(?:get_query_argument|int_arg\((?:self|handler),|\barg)\(?\s*"(\w+)"')
    names = {name for path in hub_dir.rglob("*.py") for name in read.findall(path.read_text())}
    names.discard("key")  # read only to refuse it: the key goes in a header (hub/base.py)
    documented = {q.name for op in OPERATIONS.values() for q in op.query}
    assert names and names <= documented, names - documented


def test_bodies_and_answers_are_typed_component_schemas() -> None:
    doc = openapi()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
            for media, content in ok["content"].items():
                if media == "application/json" and content["schema"]:
                    ref = content["schema"]["$ref"]
                    assert ref.split("/")[-1] in schemas, (path, method)
            if "requestBody" in op:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                refs = [s["$ref"] for s in body.get("oneOf", [body])]
                assert all(r.split("/")[-1] in schemas for r in refs), (path, method)
            assert {"type": "object"} not in [ok["content"].get("application/json", {}).get(
                "schema"), op.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema")]  # fmt: skip
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert not any(RAW_PYDANTIC & set(node) for node in walk(schema)), name
    # The Task answer comes from the Task model; status and priority are its enums.
    task = schemas["Task-Output"]
    assert task["properties"]["status"]["$ref"].endswith("/TaskStatus")
    assert task["properties"]["priority"]["$ref"].endswith("/Priority")
    assert schemas["TaskStatus"]["enum"] == [
        "draft", "pending", "running", "completed", "failed", "cancelled"
    ]  # fmt: skip
    submit = schemas["TaskSubmit"]["properties"]
    assert submit["timeout"]["anyOf"][0]["maximum"] == 30 * 86400
    assert submit["prompt"]["maxLength"] == 10 << 20
    assert doc["paths"]["/health"]["get"]["security"] == []  # the one route without the key
    assert "security" not in doc["paths"]["/openapi.json"]["get"]  # needs the key like the rest


# -- real answers against the document -----------------------------------------------------------


def call(
    hub: HubProcess, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(hub.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def check_answer(doc: dict[str, Any], template: str, method: str, status: int, body: Any) -> None:
    """Validate an answer against the schema /openapi.json gives for it."""
    response = doc["paths"][template][method]["responses"][str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].split("/")[-1]]
    schema = response["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method.upper()} {template}: {errors[0].message} at {list(errors[0].path)}"


@pytest.mark.slow
def test_real_answers_match_the_document(hub: HubProcess, tmp_path: Path) -> None:
    hub.client().register_project("app", str(make_git_project(tmp_path / "app")))
    status, doc = call(hub, "GET", "/openapi.json")
    assert status == 200

    def check(
        method: str,
        path: str,
        template: str,
        body: Any = None,
        want: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Any:
        got_status, got = call(hub, method, path, body, headers)
        assert got_status == want, got
        check_answer(doc, template, method.lower(), want, got)
        return got

    submit = {"prompt": "echo hi > hi.txt", "project": "app", "backend": "shell", "timeout": "10m"}
    key = {"Idempotency-Key": "openapi-1"}
    task = check("POST", "/tasks", "/tasks", submit, 201, key)
    assert check("POST", "/tasks", "/tasks", submit, 201, key)["id"] == task["id"]  # replayed
    hub.wait_status(task["id"])
    tid = task["id"]
    for path, template in [
        ("/health", "/health"), ("/tasks", "/tasks"), (f"/tasks/{tid}", "/tasks/{id}"),
        ("/tasks?limit=1&status=completed,failed&backend=shell&q=echo", "/tasks"),
        ("/results?limit=1&offset=0&project=app", "/results"),
        (f"/tasks/{tid}/logs", "/tasks/{id}/logs"), ("/projects", "/projects"),
        ("/projects/app", "/projects/{id}"), ("/hosts", "/hosts"), ("/spokes", "/spokes"),
        ("/results", "/results"), (f"/results/{tid}", "/results/{id}"),
        (f"/tasks/{tid}/detail-status", "/tasks/{id}/detail-status"),
        (f"/tasks/{tid}/artifacts", "/tasks/{id}/artifacts"),
        (f"/tasks/{tid}/diff", "/tasks/{id}/diff"), ("/stats?since=7d", "/stats"),
        ("/gpus?history=1", "/gpus"), ("/remote?all=1", "/remote"),
        ("/dashboard/api/config", "/dashboard/api/config"),
        ("/dashboard/api/heatmap", "/dashboard/api/heatmap"),
        ("/dashboard/api/usage", "/dashboard/api/usage"),
        ("/dashboard/api/live", "/dashboard/api/live"),
        (f"/dashboard/api/tasks/{tid}/timeline", "/dashboard/api/tasks/{id}/timeline"),
    ]:  # fmt: skip
        check("GET", path, template)
    check("POST", f"/tasks/{tid}/merge", "/tasks/{id}/merge", {})
    check("PATCH", "/projects/app", "/projects/{id}", {"max_concurrent": 2})
    parked = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}
    draft = check("POST", "/tasks", "/tasks", {"prompt": "later", "draft": True, **parked}, 201)
    check("PATCH", f"/tasks/{draft['id']}", "/tasks/{id}", {"title": "renamed"})
    check("POST", f"/tasks/{draft['id']}/reject", "/tasks/{id}/reject", {})
    pending = check("POST", "/tasks", "/tasks", {"prompt": "wait", **parked}, 201)
    check("POST", f"/tasks/{pending['id']}/cancel", "/tasks/{id}/cancel", {})
    check("POST", f"/tasks/{pending['id']}/retry", "/tasks/{id}/retry", {"cascade": True}, 201)
    sched = check("POST", "/schedules", "/schedules", {"every": "1h", "prompt": "x", **parked},
                  201)  # fmt: skip
    check("GET", "/schedules", "/schedules")
    check("POST", f"/schedules/{sched['id']}/pause", "/schedules/{id}/pause", {})
    check("DELETE", f"/schedules/{sched['id']}", "/schedules/{id}")
    batch = check("POST", "/batches", "/batches",
                  {"tasks": [{"name": "a", "prompt": "x", **parked}]}, 201)  # fmt: skip
    check("GET", f"/batches/{batch['id']}", "/batches/{id}")
    check("GET", "/batches", "/batches")
    check("POST", "/spokes/register", "/spokes/register",
          {"name": "spare", "address": "127.0.0.9", "port": 2299, "labels": ["x"]},
          201)  # fmt: skip
    check("POST", "/gc", "/gc", {"dry_run": True})
    check("POST", "/hosts/local/check", "/hosts/{name}/check", {})
    check("POST", "/hosts/local/bootstrap", "/hosts/{name}/bootstrap", {"install": False})
    export = urllib.request.urlopen(hub.url + "/export?format=json", timeout=30).read()
    check("POST", "/import", "/import", json.loads(export))
    # errors have the documented shape too
    bad_status, bad = call(hub, "POST", "/tasks", {"prompt": "x", "timeout": "forever"})
    assert bad_status == 400
    check_answer(doc, "/tasks", "post", 400, bad)
