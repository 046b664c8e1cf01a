"""The mention parser and the preview edits, from tables (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from dobby.integrations.slack.parser import (
    Catalog,
    Command,
    clean_text,
    match_project,
    parse_mention,
)
from dobby.integrations.slack.preview import Draft, apply_edit, render_preview

CATALOG = Catalog(
    projects=("spare", "dobby", "web-api", "web-ui", "ml"),
    hosts=("gpu-1", "gpu-2", "spare-tillicum", "box"),
    labels=("gpu", "cpu"),
    aliases={"st": "spare"},
)

# (mention text, expected prompt, the other fields that must be set: key=value ...)
TASKS: list[tuple[str, str, str]] = [
    ("fix the login bug in spare", "fix the login bug", "project=spare"),
    ("add docs to dobby with high priority", "add docs", "project=dobby priority=high"),
    (
        "run eval on spare-tillicum using codex",
        "run eval",
        "project=spare host=spare-tillicum backend=codex",
    ),
    ("fix the login bug in spare on gpu-1", "fix the login bug", "project=spare host=gpu-1"),
    (
        "refactor the router in web-api using claude code",
        "refactor the router",
        "project=web-api backend=claude",
    ),
    ("urgent: fix prod in dobby", "fix prod", "project=dobby priority=urgent"),
    ("fix prod in dobby asap", "fix prod", "project=dobby priority=urgent"),
    ("fix prod in dobby urgently", "fix prod", "project=dobby priority=urgent"),
    (
        "clean up the readme in dobby, low priority",
        "clean up the readme",
        "project=dobby priority=low",
    ),
    (
        "clean up the readme in dobby (low priority)",
        "clean up the readme",
        "project=dobby priority=low",
    ),
    ("clean up the readme in dobby, no rush", "clean up the readme", "project=dobby priority=low"),
    (
        "clean up the readme in dobby whenever you have time",
        "clean up the readme",
        "project=dobby priority=low",
    ),
    (
        "[high] add retries to the client in web-api",
        "add retries to the client",
        "project=web-api priority=high",
    ),
    ("add retries in web-api priority: p1", "add retries", "project=web-api priority=high"),
    (
        "add retries in web-api with normal priority",
        "add retries",
        "project=web-api priority=normal",
    ),
    ("fix the high priority bug in spare", "fix the high priority bug", "project=spare"),
    ("please fix the flaky test in spare, thanks", "fix the flaky test", "project=spare"),
    ("fix the flaky test in the spare repo", "fix the flaky test", "project=spare"),
    ("fix the flaky test in spare project", "fix the flaky test", "project=spare"),
    ("spare: fix the flaky test", "fix the flaky test", "project=spare"),
    ("in spare, fix the flaky test", "fix the flaky test", "project=spare"),
    ("for web-ui: make the buttons blue", "make the buttons blue", "project=web-ui"),
    ("fix the flaky test in st", "fix the flaky test", "project=spare"),
    ("fix the flaky test in sapre", "fix the flaky test", "project=spare"),
    ("fix the flaky test in Spare", "fix the flaky test", "project=spare"),
    ("make the spare tests faster", "make the spare tests faster", "project=spare"),
    ("train the model on gpu-2 in ml", "train the model", "project=ml host=gpu-2"),
    ("train the model in ml on a gpu host", "train the model", "project=ml labels=gpu"),
    ("train the model in ml on host box", "train the model", "project=ml host=box"),
    ("run `nvidia-smi` on gpu-1 as a shell command", "nvidia-smi", "host=gpu-1 backend=shell"),
    ("run `pytest -x` in spare using shell", "pytest -x", "project=spare backend=shell"),
    ("shell: df -h on gpu-2", "df -h", "host=gpu-2 backend=shell"),
    (
        "using codex: port the cli to click in dobby",
        "port the cli to click",
        "project=dobby backend=codex",
    ),
    (
        "port the cli to click in dobby via codex",
        "port the cli to click",
        "project=dobby backend=codex",
    ),
    (
        "port the cli in dobby with model gpt-5.5 using codex",
        "port the cli",
        "project=dobby backend=codex model=gpt-5.5",
    ),
    (
        "profile the loader in ml with a 30m timeout",
        "profile the loader",
        "project=ml timeout=1800",
    ),
    ("profile the loader in ml, timeout 2h", "profile the loader", "project=ml timeout=7200"),
    (
        "profile the loader in ml with a 45 minutes timeout",
        "profile the loader",
        "project=ml timeout=2700",
    ),
    (
        "update docs in dobby using codex on gpu-1 with high priority",
        "update docs",
        "project=dobby backend=codex host=gpu-1 priority=high",
    ),
    (
        "update docs with high priority using codex in dobby",
        "update docs",
        "project=dobby backend=codex priority=high",
    ),
    ("work on the search page in web-ui", "work on the search page", "project=web-ui"),
    (
        "move the status command to the cli in dobby",
        "move the status command to the cli",
        "project=dobby",
    ),
    (
        "check https://example.com/a?b=1 in spare",
        "check https://example.com/a?b=1",
        "project=spare",
    ),
    (
        "fix the bug in spare\nit crashes on login\nsee the trace",
        "fix the bug in spare\nit crashes on login\nsee the trace",
        "project=spare",
    ),
    ("fix a &lt;b&gt; tag &amp; more in web-ui", "fix a <b> tag & more", "project=web-ui"),
    ("run the eval on spare-tillicum", "run the eval", "project=spare host=spare-tillicum"),
    ("echo hi on box using bash", "echo hi", "host=box backend=shell"),
    ("fix the login bug in dobby with max 3 turns", "fix the login bug", "project=dobby turns=3"),
    ("fix it in dobby, budget $2.50", "fix it", "project=dobby budget=2.5"),
    ("fix it in dobby for at most 1 usd", "fix it", "project=dobby budget=1"),
    (
        "fix it in dobby max_turns=5 max_budget_usd=0.5 with model opus",
        "fix it",
        "project=dobby model=opus turns=5 budget=0.5",
    ),
    ("fix the 3 bugs in dobby", "fix the 3 bugs", "project=dobby"),
]


@pytest.mark.parametrize(("text", "prompt", "fields"), TASKS, ids=[t[0] for t in TASKS])
def test_task_phrasings(text: str, prompt: str, fields: str) -> None:
    parsed = parse_mention(clean_text(f"<@UBOT> {text}", "UBOT"), CATALOG)
    assert parsed.command is None
    assert parsed.problems == [], parsed.problems
    [task] = parsed.tasks
    got = {
        "project": task.project,
        "backend": task.backend,
        "host": task.host,
        "labels": ",".join(task.labels) or None,
        "priority": task.priority,
        "model": task.model,
        "timeout": f"{task.timeout:g}" if task.timeout else None,
        "turns": str(task.max_turns) if task.max_turns else None,
        "budget": f"{task.max_budget_usd:g}" if task.max_budget_usd else None,
    }
    expected = dict(pair.split("=", 1) for pair in fields.split())
    assert task.prompt == prompt
    assert {k: v for k, v in got.items() if v is not None} == expected


COMMANDS: list[tuple[str, Command]] = [
    ("status", Command("status", None, 4 * 3600)),
    ("status 12h", Command("status", None, 12 * 3600)),
    ("status for the last 2 hours", Command("status", None, 2 * 3600)),
    ("status spare", Command("status", "spare", 4 * 3600)),
    ("summary", Command("summary", None, 12 * 3600)),
    ("summary spare 24h", Command("summary", "spare", 24 * 3600)),
    ("summary 2d spare", Command("summary", "spare", 2 * 86400)),
    ("Summary of the last 30m", Command("summary", None, 1800)),
    ("status in spare", Command("status", "spare", 4 * 3600)),
    ("running", Command("running", None, None)),
    ("running spare", Command("running", "spare", None)),
    ("projects", Command("projects", None, None)),
    ("help", Command("help", None, None)),
    ("?", Command("help", None, None)),
    ("", Command("help", None, None)),
]


@pytest.mark.parametrize(("text", "expected"), COMMANDS, ids=[t or "empty" for t, _ in COMMANDS])
def test_commands(text: str, expected: Command | None) -> None:
    assert parse_mention(text, CATALOG).command == expected


@pytest.mark.parametrize(
    "text",
    ["running tests in spare", "status of the build is red, fix it in spare", "help me fix ml"],
)
def test_command_words_inside_tasks_stay_tasks(text: str) -> None:
    parsed = parse_mention(text, CATALOG)
    assert parsed.command is None and parsed.tasks


@pytest.mark.parametrize(
    ("text", "field", "message", "candidates"),
    [
        (
            "fix the bug in web",
            "project",
            "Which project did you mean by 'web'?",
            ("web-api", "web-ui"),
        ),
        ("fix the bug", "project", "Which project should this run in?", CATALOG.projects),
        ("fix the bug, project nope", "project", "No project named 'nope'.", CATALOG.projects),
        (
            "compare spare and dobby",
            "project",
            "Which project should this run in?",
            ("dobby", "spare"),
        ),
        ("train in ml on gpu-9", "host", "No host or project named 'gpu-9'.", ("gpu-1", "gpu-2")),
        ("", "prompt", "", ()),
    ],
)
def test_ambiguity_becomes_a_question(
    text: str, field: str, message: str, candidates: tuple[str, ...]
) -> None:
    if not text:
        assert parse_mention("in spare", CATALOG).problems[0].field == "prompt"
        return
    problems = [p for p in parse_mention(text, CATALOG).problems if p.field == field]
    assert problems and problems[0].message == message
    assert set(problems[0].candidates) == set(candidates)


def test_summary_with_ambiguous_project_asks() -> None:
    parsed = parse_mention("summary web 24h", CATALOG)
    assert parsed.command == Command("summary", "web", 86400)
    assert parsed.problems[0].candidates == ("web-api", "web-ui")


def test_shell_tasks_need_no_project() -> None:
    parsed = parse_mention("uptime on box using shell", CATALOG)
    assert parsed.problems == [] and parsed.tasks[0].project is None


def test_bullet_list_is_a_batch_with_header_defaults() -> None:
    text = (
        "in spare with high priority:\n"
        "- fix the login bug\n"
        "* add tests using codex\n"
        "• update docs in dobby with low priority\n"
        "1. run `make bench` on gpu-1 using shell"
    )
    parsed = parse_mention(text, CATALOG)
    assert parsed.is_batch and parsed.problems == []
    got = [(t.prompt, t.project, t.backend, t.priority, t.host) for t in parsed.tasks]
    assert got == [
        ("fix the login bug", "spare", None, "high", None),
        ("add tests", "spare", "codex", "high", None),
        ("update docs", "dobby", None, "low", None),
        ("make bench", "spare", "shell", "high", "gpu-1"),
    ]
    bodies = [t.body() for t in parsed.tasks]
    assert bodies[0] == {"prompt": "fix the login bug", "project": "spare", "priority": "high"}


def test_batch_header_text_becomes_context_and_problems_name_the_task() -> None:
    parsed = parse_mention("For the auth module:\n- add tests\n- add docs in nowhere", CATALOG)
    assert [t.prompt for t in parsed.tasks] == [
        "For the auth module:\nadd tests",
        "For the auth module:\nadd docs in nowhere",
    ]
    assert {p.task for p in parsed.problems} == {0, 1}


def test_clean_text_strips_the_bot_and_decodes_slack_markup() -> None:
    raw = (
        "<@UBOT> fix <https://github.com/x/y/issues/3|issue 3> for <@U123> and <@U9|ann> "
        "in <#C1|general> &amp; tell <!here> or <mailto:a@b.c|a@b.c>"
    )
    assert clean_text(raw, "UBOT") == (
        "fix https://github.com/x/y/issues/3 for @U123 and @ann in #general & tell @here or a@b.c"
    )


def test_match_project_rules() -> None:
    assert match_project("dobby", CATALOG) == ["dobby"]
    assert match_project("st", CATALOG) == ["spare"]
    assert match_project("spare-tillicum", CATALOG) == ["spare"]
    assert match_project("web", CATALOG) == ["web-api", "web-ui"]
    assert match_project("xyz", CATALOG) == []
    assert match_project("ml", CATALOG) == ["ml"] and match_project("m", CATALOG) == []


def _draft(text: str) -> Draft:
    parsed = parse_mention(text, CATALOG)
    return Draft(
        requester="U1", channel="C1", thread_ts="1.0", tasks=parsed.tasks, problems=parsed.problems
    )


@pytest.mark.parametrize(
    ("reply", "field", "value"),
    [
        ("spare", "project", "spare"),
        ("in web-ui", "project", "web-ui"),
        ("project dobby", "project", "dobby"),
        ("on gpu-2", "host", "gpu-2"),
        ("gpu-1", "host", "gpu-1"),
        ("using codex", "backend", "codex"),
        ("urgent", "priority", "urgent"),
        ("high priority", "priority", "high"),
        ("with a 10m timeout", "timeout", 600.0),
        ("prompt: do something else", "prompt", "do something else"),
        ("rewrite it in rust", "prompt", "rewrite it in rust"),
        ("project none", "project", ""),
    ],
)
def test_thread_reply_edits(reply: str, field: str, value: Any) -> None:
    draft, note = apply_edit(_draft("fix the login bug"), reply, CATALOG)
    assert note is None
    assert getattr(draft.tasks[0], field) == value


def test_edit_resolves_the_question_and_batch_edits_by_number() -> None:
    draft = _draft("fix the login bug")
    assert draft.problems and "❓" in render_preview(draft)
    draft, _ = apply_edit(draft, "dobby", CATALOG)
    assert draft.problems == [] and "React ✅" in render_preview(draft)
    batch = _draft("in spare:\n- one\n- two\n- three")
    batch, note = apply_edit(batch, "2: using codex", CATALOG)
    assert note is None and [t.backend for t in batch.tasks] == [None, "codex", None]
    batch, _ = apply_edit(batch, "drop 1", CATALOG)
    assert [t.prompt for t in batch.tasks] == ["two", "three"]
    _, note = apply_edit(batch, "7: x", CATALOG)
    assert note == "There is no task 7 (1–2)."
    _, note = apply_edit(batch, "something new", CATALOG)
    assert note and "Say which task" in note
