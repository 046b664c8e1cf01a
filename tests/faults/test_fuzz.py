"""API fuzzing with schemathesis: a real hub, every operation of its own /openapi.json.

Cases are generated from the declared shapes, schema-valid ones (positive) and ones that break
the schema in one place (negative), for every operation; the ids of a project, tasks, a
schedule, a batch and a race the hub holds are mixed into the positive cases' paths so they get
past "not found". Every answer is checked:

- never a 5xx, and always an answer (one not there after REQUEST_TIMEOUT is a finding);
- its status, content type, headers and body are ones the document declares for the operation
  (schemathesis' status-code, content-type, header and response-schema conformance checks);
- a request that breaks the schema is refused: the document never forbids what the hub takes.

Requests the schema allows but the hub refuses (a project path that is no git checkout, a cron
line croniter rejects, a host that is unreachable) are counted as "schema-valid refused", not
failed: the document cannot say everything.

Short form in CI (DEFAULT_CASES); the long campaign by hand prints the same figures:
``DOBBY_FUZZ_CASES=2000 python -m pytest tests/faults/test_fuzz.py -s -p no:cacheprovider``
(``DOBBY_FUZZ_SEED=N`` draws other cases; the default seed is fixed, so CI repeats itself).

Nothing the fuzzer creates runs: the hub's only host is an ssh port nothing listens on, a spoke
registered as ``connection: local`` is sent as ``ssh`` (the hub refuses local spokes too; a
fuzzed prompt there would be a shell command on this machine), and the hub works in an empty
directory.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
import schemathesis.checks as checks
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

from dobby.core.models import Task, TaskStatus
from dobby.core.timefmt import utcnow
from tests.fixtures.hub import HubProcess, free_port, make_git_project, write_inventory

pytestmark = pytest.mark.slow  # a hub process and a few hundred requests: about a minute

DEFAULT_CASES = 150
CASES = int(os.environ.get("DOBBY_FUZZ_CASES") or DEFAULT_CASES)
SEED = int(os.environ.get("DOBBY_FUZZ_SEED") or 13)
KEY = "fuzz-key"
HEADERS = {"X-Dobby-Key": KEY}
REQUEST_TIMEOUT = 30.0  # seconds; no answer by then is a hang
STREAM_SECONDS = 0.5  # SSE routes never end: read this long, then check what came
PARKED = {"backend": "shell", "labels": ["nowhere"], "wait_for_host": True}  # never starts

# What must never happen (gated), and what is only counted.
GATED = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
COUNTED = [checks.positive_data_acceptance]
REFUSED_VALID = "ST202"  # positive_data_acceptance: a schema-valid request refused
ACCEPTED_INVALID = "ST201"  # negative_data_rejection: a schema-violating request taken
SERVER_ERROR = ("ST101", "ST102")  # not_a_server_error
# The one 5xx that is no fault of the hub: a host an operation works on did not answer (the
# only host here never does). The document declares it where it can happen (status checked).
UNREACHABLE = (502, ("host_unreachable", "connection_lost", "transport_error"))


@dataclass
class Figures:
    """What one campaign saw: cases, answers by status class, and the findings."""

    seed: int = SEED
    operations: int = 0
    cases: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    findings: dict[str, list[str]] = field(default_factory=dict)  # code and title → examples
    refused_valid: Counter[str] = field(default_factory=Counter)  # operation → count
    unreachable: Counter[str] = field(default_factory=Counter)  # operation → 502s
    slowest: tuple[float, str] = (0.0, "")

    def add(self, kind: str, example: str) -> None:
        self.findings.setdefault(kind, []).append(example)

    def count(self, *codes: str) -> int:
        return sum(len(v) for k, v in self.findings.items() if k.split()[0] in codes)

    def bad(self) -> int:
        return sum(len(examples) for examples in self.findings.values())

    def line(self) -> str:
        answers = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        off = self.bad() - self.count(*SERVER_ERROR, ACCEPTED_INVALID, "hang")
        return (
            f"fuzz seed {self.seed}: {self.cases} cases over {self.operations} operations "
            f"({answers}); server errors {self.count(*SERVER_ERROR)} (besides "
            f"{sum(self.unreachable.values())} documented 502s of the unreachable host), "
            f"no answer {self.count('hang')}, answers off the document {off}, "
            f"schema-violating requests accepted {self.count(ACCEPTED_INVALID)}; "
            f"schema-valid requests refused {sum(self.refused_valid.values())}; "
            f"slowest answer {self.slowest[0]:.2f}s ({self.slowest[1]})"
        )

    def report(self) -> str:
        lines = [self.line()]
        for kind, examples in sorted(self.findings.items()):
            lines.append(f"  {kind}: {len(examples)}")
            lines += [f"    {example}" for example in examples[:3]]
        return "\n".join(lines)


@pytest.fixture
def fuzz_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubProcess]:
    """Run a hub with an API key whose only host is an ssh port nothing listens on."""
    nowhere = {"name": "nowhere", "address": "127.0.0.1", "port": free_port()}
    inventory = write_inventory(tmp_path / "inventory.yaml", [nowhere])
    workdir = tmp_path / "cwd"  # a relative project path finds no git checkout here
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    with HubProcess(home=tmp_path / "home", inventory=inventory, api_key=KEY) as hub:
        yield hub


def api(hub: HubProcess, method: str, path: str, body: Any = None) -> Any:
    """Call the hub with the key; return the decoded answer of a 2xx."""
    resp = requests.request(
        method, hub.url + path, json=body, headers=HEADERS, timeout=REQUEST_TIMEOUT
    )
    assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
    return resp.json()


def seed_state(hub: HubProcess, tmp_path: Path) -> dict[str, list[str]]:
    """Create one of each thing the API names by id; return the ids by kind."""
    repo = make_git_project(tmp_path / "app")
    api(hub, "POST", "/projects", {"name": "app", "path": str(repo)})
    pending = api(hub, "POST", "/tasks", {"prompt": "waits", "project": "app", **PARKED})
    draft = api(hub, "POST", "/tasks", {"prompt": "a plan", "draft": True, **PARKED})
    done = [
        Task(prompt="done", id="fz000001", status=TaskStatus.COMPLETED, project="app",
             finished_at=utcnow(), cost_usd=0.25, summary="ok"),
        Task(prompt="broke", id="fz000002", status=TaskStatus.FAILED, reason="exit_code",
             finished_at=utcnow(), exit_code=1),
    ]  # fmt: skip
    api(hub, "POST", "/import", [task.to_dict() for task in done])
    schedule = api(hub, "POST", "/schedules", {"every": "1h", "prompt": "tick", **PARKED})
    batch = api(hub, "POST", "/batches", {"tasks": [{"name": "a", "prompt": "x", **PARKED}]})
    race_body = {"prompt": "race", "k": 2, "verify": "true", "project": "app", **PARKED}
    race = api(hub, "POST", "/races", race_body)
    return {
        "tasks": [pending["id"], draft["id"], *(task.id for task in done)],
        "projects": ["app"],
        "schedules": [schedule["id"]],
        "batches": [batch["id"]],
        "races": [race["id"]],
        "hosts": ["nowhere"],
    }


def known_paths(path: str, ids: dict[str, list[str]]) -> list[dict[str, str]]:
    """Return path parameters naming things the hub holds, for an operation's path."""
    if "{name}" in path and path.startswith("/hosts/"):
        return [{"name": name} for name in ids["hosts"]]
    if "{id}" not in path:
        return []
    first = path.split("/")[3 if path.startswith("/dashboard/") else 1]
    kind = "tasks" if first == "results" else first
    return [{"id": value} for value in ids.get(kind, [])]


def defuse(case: schemathesis.Case) -> None:
    """Keep a case from making the hub run anything on this machine."""
    body = case.body
    if case.operation.path == "/spokes/register" and isinstance(body, dict):
        if body.get("connection") == "local":
            body["connection"] = "ssh"


def send(
    case: schemathesis.Case, hub: HubProcess, session: requests.Session, figures: Figures
) -> None:
    """Send one case, check its answer, and count it in ``figures``."""
    defuse(case)
    label = case.operation.label
    sse = case.operation.path.endswith("/events")
    started = time.monotonic()
    try:
        response = case.call(
            base_url=hub.url,
            session=session,
            headers=HEADERS,
            timeout=STREAM_SECONDS if sse else REQUEST_TIMEOUT,
        )
    except requests.RequestException as exc:
        figures.cases += 1
        figures.add("hang: no answer", f"{label}: {type(exc).__name__}: {case.as_curl_command()}")
        return
    took = time.monotonic() - started
    figures.cases += 1
    figures.statuses[f"{response.status_code // 100}xx"] += 1
    if not sse and took > figures.slowest[0]:
        figures.slowest = (took, label)
    try:
        case.validate_response(
            response,
            checks=GATED + COUNTED,
            headers=HEADERS,
            transport_kwargs={"base_url": hub.url, "session": session, "headers": HEADERS},
        )
    except FailureGroup as group:
        for failure in group.exceptions:
            if failure.code == REFUSED_VALID:
                figures.refused_valid[label] += 1
                continue
            if failure.code in SERVER_ERROR and unreachable(response):
                figures.unreachable[label] += 1
                continue
            curl = case.as_curl_command(headers=HEADERS).replace(KEY, "[key]")
            figures.add(
                f"{failure.code} {failure.title}",
                f"{label} -> {response.status_code} {response.text[:300]!r}\n"
                f"      {' '.join(failure.message.split())[:300]}\n      {curl[:800]}",
            )


def unreachable(response: schemathesis.Response) -> bool:
    """Tell whether an answer is the hub's 502 for a host it could not reach."""
    status, codes = UNREACHABLE
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return False
    return response.status_code == status and code in codes


def campaign(hub: HubProcess, ids: dict[str, list[str]], cases: int) -> Figures:
    """Fuzz every operation of the hub's document with about ``cases`` cases in all."""
    config = schemathesis.Config.from_dict({"max-stream-events": 1})
    schema = schemathesis.openapi.from_url(
        hub.url + "/openapi.json", headers=HEADERS, timeout=REQUEST_TIMEOUT, config=config
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    figures = Figures(operations=len(operations))
    per_run = max(1, math.ceil(cases / (2 * len(operations))))
    session = requests.Session()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            if mode is GenerationMode.POSITIVE:
                known = known_paths(operation.path, ids)
                strategy = st.one_of(
                    strategy,
                    *(operation.as_strategy(mode, path_parameters=p) for p in known),
                )

            @hypothesis.seed(SEED)
            @hypothesis.settings(
                max_examples=per_run,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def run(case: schemathesis.Case) -> None:
                send(case, hub, session, figures)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to break in this operation (GET /health takes no input)
    session.close()
    return figures


def test_fuzzing_every_operation_finds_no_5xx_and_no_answer_off_the_document(
    fuzz_hub: HubProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed_state(fuzz_hub, tmp_path)
    figures = campaign(fuzz_hub, ids, CASES)
    with capsys.disabled():
        print("\n" + figures.report())
    assert figures.bad() == 0, figures.report()
    assert figures.cases >= min(CASES, 200), figures.line()
    assert figures.statuses["2xx"] >= figures.cases // 10, figures.line()  # past validation too
    assert fuzz_hub.proc is not None and fuzz_hub.proc.poll() is None, fuzz_hub.log()[-3000:]
    assert "Traceback" not in fuzz_hub.log(), fuzz_hub.log()[-5000:]
