"""``dobby-mcp``: the hub's API as MCP tools for Claude Code (stdio) or any client (HTTP).

A thin client like the CLI: every tool is one or two :class:`HubClient` calls. A tool answers
with a short text for the model plus the hub's JSON as structured content; a hub error becomes
an MCP tool error carrying the hub's own message. ``DOBBY_URL`` / ``DOBBY_API_KEY`` select the
hub.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

import click
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field

from dobby.client.http import HubClient
from dobby.core.errors import HubError
from dobby.core.notes import task_notes

Backend = Literal["claude", "codex", "shell"]
Priority = Literal["urgent", "high", "normal", "low"]
Status = Literal["draft", "pending", "running", "completed", "failed", "cancelled"]
TaskId = Annotated[str, Field(description="Task id, or a unique prefix of 4+ characters.")]
Timeout = Annotated[
    str | float | None,
    Field(description="Time limit: seconds, or a duration like '30m', '2h'."),
]
MAX_LINES = 50
Verify = Annotated[
    str | None,
    Field(description="A check run in the worktree after the agent, e.g. 'pytest -x'."),
]
FixAttempts = Annotated[
    int | None,
    Field(description="On a failed check, resume the agent with its output up to N times.", ge=0),
]

server = MCPServer(
    "dobby",
    instructions=(
        "Dobby dispatches coding-agent tasks (Claude Code, Codex, shell commands) to machines "
        "over SSH. Submit work with dobby_add_task / dobby_batch_add / dobby_plan_task, follow "
        "it with dobby_status, dobby_detail_status and dobby_get_task, and read what came back "
        "with dobby_results / dobby_list_results. dobby_start_race runs K attempts judged by a "
        "check; dobby_race compares them. Task ids may be shortened to 4+ characters."
    ),
)


class BatchTask(BaseModel):
    """One task of a batch."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What the agent should do (or the shell command).")
    name: str | None = Field(None, description="Name other tasks of the batch use in 'after'.")
    title: str | None = Field(None, description="Short title (default: the prompt's first line).")
    project: str | None = Field(None, description="Registered project to work in.")
    backend: Backend | None = Field(None, description="claude, codex or shell.")
    priority: Priority | None = Field(None, description="urgent, high, normal or low.")
    host: str | None = Field(None, description="Run on this inventory host.")
    labels: list[str] | None = Field(None, description="Run on a host having all these labels.")
    model: str | None = Field(None, description="Model for the agent.")
    timeout: str | float | None = Field(None, description="Time limit: seconds or '30m'.")
    max_turns: int | None = Field(None, description="Stop the agent after N turns (claude).")
    max_budget_usd: float | None = Field(
        None, description="Stop the agent past this cost in USD (claude)."
    )
    after: list[str] | None = Field(
        None, description="Names of batch tasks (or ids of existing tasks) to wait for."
    )
    verify: str | None = Field(None, description="A check run in the worktree after the agent.")
    fix_attempts: int | None = Field(
        None, ge=0, description="On a failed check, resume the agent with its output N times."
    )


class BatchDefaults(BaseModel):
    """Fields every task of a batch gets unless it sets its own."""

    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    backend: Backend | None = None
    priority: Priority | None = None
    host: str | None = None
    labels: list[str] | None = None
    model: str | None = None
    timeout: str | float | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None


# -- plumbing ---------------------------------------------------------------------------------


_CLIENTS: dict[tuple[str | None, str | None], HubClient] = {}


def _hub() -> HubClient:
    """Return the client of the hub DOBBY_URL and DOBBY_API_KEY name now, one per pair, kept:
    a session's calls go on one connection (a TLS handshake each, for a hub behind https)."""
    key = (os.environ.get("DOBBY_URL"), os.environ.get("DOBBY_API_KEY"))
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = HubClient()
    return client


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the hub; its errors become tool errors with the hub's message."""
    try:
        return fn(*args, **kwargs)
    except HubError as exc:
        raise ToolError(str(exc)) from None


def _answer(text: str, data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _cost(value: Any) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else "cost unknown"


def _first_line(text: Any, limit: int = 100) -> str:
    line = next((x.strip() for x in str(text or "").splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _task_line(task: dict[str, Any]) -> str:
    """Return ``id status project/backend@host priority — title [cost]`` for one task."""
    tid = task.get("id") or task.get("task_id")
    where = f"{task.get('project') or '-'}/{task.get('backend')}"
    if task.get("host"):
        where += f"@{task['host']}"
    extra = f" ({task['reason']})" if task.get("reason") else ""
    if task.get("status") == "pending" and task.get("waiting_on") in ("usage_limit", "budget"):
        extra = f" ({task['waiting_on']}" + (
            f", not before {task['not_before']})" if task.get("not_before") else ")"
        )
    cost = f" [{_cost(task['cost_usd'])}]" if task.get("cost_usd") is not None else ""
    title = _first_line(task.get("title") or task.get("prompt"))
    return f"{tid} {task.get('status')}{extra} {where} {task.get('priority') or ''} — {title}{cost}"


def _notes(task: dict[str, Any]) -> list[str]:
    """Return ``! warning`` lines: warnings, the API error status, the denied actions."""
    return [f"! {_first_line(note, 300)}" for note in task_notes(task)]


def _lines(rows: list[str], empty: str) -> str:
    if not rows:
        return empty
    more = len(rows) - MAX_LINES
    return "\n".join(rows[:MAX_LINES] + ([f"…and {more} more"] if more > 0 else []))


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# -- tools ------------------------------------------------------------------------------------


@server.tool()
def dobby_add_task(
    prompt: Annotated[str, Field(description="What the agent should do (or the shell command).")],
    project: Annotated[str | None, Field(description="Registered project to work in.")] = None,
    backend: Annotated[Backend, Field(description="Agent to run.")] = "claude",
    priority: Annotated[Priority | None, Field(description="Queue priority.")] = None,
    host: Annotated[str | None, Field(description="Run on this inventory host.")] = None,
    labels: Annotated[
        list[str] | None, Field(description="Run on a host having all these labels.")
    ] = None,
    model: Annotated[str | None, Field(description="Model for the agent.")] = None,
    timeout: Timeout = None,
    title: Annotated[str | None, Field(description="Short title.")] = None,
    after: Annotated[
        list[str] | None, Field(description="Ids of tasks that must succeed first.")
    ] = None,
    resume: Annotated[
        str | None, Field(description="Continue the agent session of this earlier task.")
    ] = None,
    verify: Verify = None,
    verify_timeout: Timeout = None,
    fix_attempts: FixAttempts = None,
    max_turns: Annotated[
        int | None, Field(description="Stop the agent after N turns (claude).")
    ] = None,
    max_budget_usd: Annotated[
        float | None, Field(description="Stop the agent past this cost in USD (claude).")
    ] = None,
) -> CallToolResult:
    """Queue a coding-agent task (claude, codex or a shell command) on one of Dobby's hosts.

    With verify, a check (e.g. 'pytest -x') runs in the task's worktree after the agent; the
    task fails with reason verify_failed unless it passes (fix_attempts: resume the agent with
    the check's output that many times). Returns the new task; follow it with dobby_get_task /
    dobby_detail_status and read its outcome with dobby_results.
    """
    body = _body(
        prompt=prompt,
        project=project,
        backend=backend,
        priority=priority,
        host=host,
        labels=labels,
        model=model,
        timeout=timeout,
        title=title,
        after=after,
        resume=resume,
        verify=verify,
        verify_timeout=verify_timeout,
        fix_attempts=fix_attempts,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
    )
    task = _call(_hub().add_task, **body)
    return _answer(f"Queued task {task['id']}.\n{_task_line(task)}", task)


@server.tool()
def dobby_start_race(
    prompt: Annotated[str, Field(description="What every attempt's agent should do.")],
    verify: Annotated[
        str | None,
        Field(
            description="The check that judges each attempt, e.g. 'pytest -x' (default: the "
            "project's default_verify)."
        ),
    ] = None,
    k: Annotated[int, Field(description="How many attempts to start.", ge=1)] = 2,
    project: Annotated[str | None, Field(description="Registered project to work in.")] = None,
    backends: Annotated[
        list[Backend] | None, Field(description="Backends the attempts use, round-robin.")
    ] = None,
    models: Annotated[
        list[str] | None, Field(description="Models the attempts use, round-robin.")
    ] = None,
    hosts: Annotated[
        list[str] | None, Field(description="Hosts the attempts run on, round-robin; each once.")
    ] = None,
    pick: Annotated[
        Literal["first", "smallest", "cheapest"],
        Field(
            description="first: the first passing attempt wins, the others are cancelled; "
            "smallest / cheapest: once all ended, the passing one with the smallest diff / "
            "lowest cost."
        ),
    ] = "first",
    labels: Annotated[
        list[str] | None, Field(description="Run on hosts having all these labels.")
    ] = None,
    timeout: Timeout = None,
    verify_timeout: Timeout = None,
    fix_attempts: FixAttempts = None,
) -> CallToolResult:
    """Race K attempts at one task on different hosts, agents or models; the check judges.

    Each attempt is an ordinary task with its own worktree and branch. The race's result is
    the winner's branch; compare the attempts with dobby_race.
    """
    body = _body(
        prompt=prompt, verify=verify, k=k, project=project, backends=backends, models=models,
        hosts=hosts, pick=pick, labels=labels, timeout=timeout, verify_timeout=verify_timeout,
        fix_attempts=fix_attempts,
    )  # fmt: skip
    race = _call(_hub().add_race, **body)
    return _answer(_race_text(race), race)


@server.tool()
def dobby_race(
    race_id: Annotated[str, Field(description="Race id (r-…), or a unique prefix.")],
) -> CallToolResult:
    """Compare a race's attempts: backend, model, host, time, cost, tokens, diff, check result.

    Shows the winner (and its branch) once decided, or why no attempt passed, with the end of
    each attempt's check output.
    """
    race = _call(_hub().race, race_id)
    return _answer(_race_text(race), race)


def _race_text(race: dict[str, Any]) -> str:
    """Return a race as lines: its state and rule, then one line (and check tail) per attempt."""
    head = f"Race {race['id']} {race['status']} (pick {race['pick']}, check: {race['verify']})"
    if race.get("winner"):
        head += f"; winner {race['winner']}, branch {race.get('branch') or '(no changes)'}"
    elif race.get("error"):
        head += f"; {race['error']}"
    rows = [head]
    for col in race.get("attempts") or []:
        verify = col.get("verify") or {}
        stat = col.get("diff_stat") or {}
        changes = (
            f"{stat.get('files_changed', 0)} files +{stat.get('insertions', 0)} "
            f"-{stat.get('deletions', 0)}"
            if stat
            else "no changes"
        )
        rows.append(
            f"#{col['n']}{' (winner)' if col.get('winner') else ''} {col['backend']} "
            f"{col.get('model') or ''} on {col.get('host') or '?'}: {col['state']}, task "
            f"{col['task_id']}, check {verify.get('status') or '-'}, {_cost(col.get('cost_usd'))}, "
            f"{changes}"
        )
        if verify.get("tail") and verify.get("status") != "passed":
            rows += ["    " + ln for ln in str(verify["tail"]).splitlines()[-8:]]
    rows += [f"! {w}" for w in race.get("warnings") or []]
    return "\n".join(rows)


@server.tool()
def dobby_batch_add(
    tasks: Annotated[list[BatchTask], Field(description="The tasks, in order.", min_length=1)],
    defaults: Annotated[
        BatchDefaults | None, Field(description="Fields every task gets unless it sets its own.")
    ] = None,
    name: Annotated[str | None, Field(description="Name of the batch.")] = None,
) -> CallToolResult:
    """Submit several tasks at once as one batch (all or nothing); tasks may depend on each other.

    Dependencies use the batch tasks' names in 'after'. Returns the batch id and its tasks.
    """
    body = _body(
        name=name,
        defaults=defaults.model_dump(exclude_none=True) if defaults else None,
        tasks=[t.model_dump(exclude_none=True) for t in tasks],
    )
    batch = _call(_hub().add_batch, **body)
    rows = [_task_line(t) for t in batch.get("tasks") or []]
    head = f"Batch {batch.get('id') or batch.get('batch_id')}: {len(rows)} tasks queued."
    return _answer(head + "\n" + _lines(rows, ""), batch)


@server.tool()
def dobby_plan_task(
    prompt: Annotated[str, Field(description="What the agent should eventually do.")],
    project: Annotated[str | None, Field(description="Registered project to work in.")] = None,
    backend: Annotated[Backend, Field(description="Agent to run.")] = "claude",
    agent_plan: Annotated[
        bool, Field(description="Have the agent write a read-only plan first for review.")
    ] = True,
    priority: Annotated[Priority | None, Field(description="Queue priority once approved.")] = None,
    host: Annotated[str | None, Field(description="Run on this inventory host.")] = None,
    model: Annotated[str | None, Field(description="Model for the agent.")] = None,
    timeout: Timeout = None,
) -> CallToolResult:
    """Create a draft task that only runs once a person approves it (plan, then execute).

    With agent_plan the agent first studies the repository in read-only mode and attaches its
    plan to the draft; approve with `dobby approve ID` or the dashboard.
    """
    body = _body(
        prompt=prompt,
        project=project,
        backend=backend,
        priority=priority,
        host=host,
        model=model,
        timeout=timeout,
        draft=True,
        agent_plan=agent_plan or None,
    )
    task = _call(_hub().add_task, **body)
    note = " An agent is writing its plan." if agent_plan else ""
    text = f"Draft {task['id']} created; it runs once approved.{note}\n{_task_line(task)}"
    return _answer(text, task)


@server.tool()
def dobby_status(
    project: Annotated[str | None, Field(description="Only this project's tasks.")] = None,
    status: Annotated[Status | None, Field(description="Only tasks in this state.")] = None,
    limit: Annotated[int, Field(description="At most this many tasks.", ge=1, le=500)] = 20,
) -> CallToolResult:
    """List tasks newest first: id, status, project, backend, host, title and cost."""
    body = _call(_hub().tasks, project=project, status=status, limit=limit)
    rows = [_task_line(t) for t in body.get("tasks") or []]
    return _answer(_lines(rows, "No tasks."), body)


@server.tool()
def dobby_get_task(task_id: TaskId) -> CallToolResult:
    """Show one task: its state, where it runs, its prompt and (when finished) its summary."""
    task = _call(_hub().task, task_id)
    parts = [_task_line(task), *_notes(task), f"prompt: {_first_line(task.get('prompt'), 300)}"]
    if task.get("waiting_on") and task.get("status") == "pending":
        parts.append(f"waiting on: {task['waiting_on']}")
        if task.get("wait_reason"):
            parts.append(f"why: {task['wait_reason']}")
        if task.get("not_before"):
            parts.append(f"not before: {task['not_before']}")
    if task.get("summary"):
        parts.append(f"summary: {task['summary'][:2000]}")
    if task.get("error"):
        parts.append(f"error: {task['error'][:2000]}")
    return _answer("\n".join(parts), task)


@server.tool()
def dobby_results(task_id: TaskId) -> CallToolResult:
    """Show what a task produced: summary, status, cost, tokens, duration, branch and diff stat."""
    res = _call(_hub().result, task_id)
    tokens = res.get("tokens") or {}
    parts = [
        f"{res.get('task_id')} {res.get('status')}"
        + (f" ({res['reason']})" if res.get("reason") else "")
        + f" · {_cost(res.get('cost_usd'))} · tokens in {tokens.get('input', 0)}"
        + f" out {tokens.get('output', 0)}"
        + (
            f" · {res['duration_s']:.0f}s" if isinstance(res.get("duration_s"), int | float) else ""
        ),
        *_notes(res),
    ]
    if res.get("branch"):
        parts.append(f"branch: {res['branch']}")
    if res.get("summary"):
        parts.append(f"summary:\n{res['summary'][:4000]}")
    if res.get("error"):
        parts.append(f"error: {res['error'][:2000]}")
    return _answer("\n".join(parts), res)


@server.tool()
def dobby_list_results(
    project: Annotated[str | None, Field(description="Only this project's results.")] = None,
    status: Annotated[
        Literal["completed", "failed", "cancelled"] | None,
        Field(description="Only results in this state (default: every finished task)."),
    ] = None,
    limit: Annotated[int, Field(description="At most this many results.", ge=1, le=500)] = 20,
) -> CallToolResult:
    """List results of finished tasks newest first, each with its summary line and cost."""
    body = _call(_hub().results, project=project, status=status, limit=limit)
    rows = [
        f"{_task_line(r)}: {_first_line(r.get('summary') or r.get('error'), 160)}"
        + "".join(f" [{note}]" for note in _notes(r)[:1])
        for r in body.get("results") or []
    ]
    return _answer(_lines(rows, "No results."), body)


@server.tool()
def dobby_cancel(task_id: TaskId) -> CallToolResult:
    """Cancel a task; a running one is stopped on its host."""
    task = _call(_hub().cancel, task_id)
    return _answer(f"Cancelled.\n{_task_line(task)}", task)


@server.tool()
def dobby_retry(task_id: TaskId) -> CallToolResult:
    """Queue a failed or cancelled task again (same id, next attempt)."""
    task = _call(_hub().retry, task_id)
    return _answer(f"Queued again (attempt {task.get('attempt')}).\n{_task_line(task)}", task)


@server.tool()
def dobby_detail_status(task_id: TaskId) -> CallToolResult:
    """Show what a task's agent is doing now: step, last tool and target, files, commands, cost."""
    d = _call(_hub().detail_status, task_id)
    files = d.get("files") or {}
    parts = [
        f"{d.get('task_id')} {d.get('status')} on {d.get('host') or '-'}"
        + (f" · {d['elapsed_s']:.0f}s" if isinstance(d.get("elapsed_s"), int | float) else "")
        + f" · {_cost(d.get('cost_usd'))}",
    ]
    if d.get("step"):
        parts.append(f"step: {d['step']}")
    if d.get("last_tool"):
        parts.append(f"last tool: {d['last_tool']} {d.get('last_target') or ''}".rstrip())
    for kind, names in files.items():
        if names:
            parts.append(f"files {kind}: {', '.join(map(str, names[:20]))}")
    for cmd in (d.get("commands") or [])[-5:]:
        parts.append(f"$ {_first_line(cmd.get('command'), 120)} → {cmd.get('exit_code')}")
    if d.get("last_error"):
        parts.append(f"last error: {_first_line(d['last_error'], 300)}")
    return _answer("\n".join(parts), d)


@server.tool()
def dobby_stats(
    since: Annotated[
        str | None, Field(description="Window: a duration like '24h', '7d', or an ISO time.")
    ] = None,
    project: Annotated[str | None, Field(description="Only this project.")] = None,
) -> CallToolResult:
    """Show task counts by status, success rate, cost and tokens (by project, backend, model…)."""
    s = _call(_hub().stats, since=since, project=project)
    by_status = s.get("by_status") or {}
    counts = ", ".join(f"{v} {k}" for k, v in by_status.items() if v)
    rate = s.get("success_rate")
    parts = [
        f"{s.get('tasks', 0)} tasks" + (f": {counts}" if counts else ""),
        f"cost ${s.get('cost_usd') or 0:.4f}"
        + (f" (+{s['cost_unknown']} unknown)" if s.get("cost_unknown") else "")
        + (f" · success rate {rate:.0%}" if isinstance(rate, int | float) else ""),
    ]
    for name, group in (s.get("by_project") or {}).items():
        parts.append(f"  {name}: {group.get('tasks')} tasks, ${group.get('cost_usd') or 0:.4f}")
    return _answer("\n".join(parts), s)


@server.tool()
def dobby_usage() -> CallToolResult:
    """Show each account's usage-limit windows (live), which are limited until when, the spend
    budgets, and the tasks waiting on them."""
    body = _call(_hub().usage)
    rows = []
    for acc in body.get("accounts") or []:
        state = f"LIMITED until {acc.get('limited_until')}" if acc.get("limited") else "ok"
        windows = ", ".join(
            f"{w.get('window')} {w['utilization']:.0%}"
            for w in acc.get("windows") or []
            if isinstance(w.get("utilization"), int | float)
        )
        waiting = f"; waiting: {', '.join(acc['waiting'])}" if acc.get("waiting") else ""
        rows.append(
            f"{acc.get('account')}: {state}" + (f" ({windows})" if windows else "") + waiting
        )
    for budget in body.get("budgets") or []:
        spent = ", ".join(
            f"{w} ${v.get('spent', 0):.2f}/${v.get('cap', 0):.2f}"
            for w, v in (budget.get("windows") or {}).items()
        )
        rows.append(
            f"budget of the {budget.get('scope')}: {spent}"
            + (" (OVER)" if budget.get("over") else "")
        )
    return _answer(_lines(rows, "No accounts."), body)


@server.tool()
def dobby_projects() -> CallToolResult:
    """List the registered projects (git repositories tasks can work in)."""
    body = _call(_hub().projects)
    rows = [
        f"{p.get('name')}: {p.get('path')}"
        + (f" — {_first_line(p.get('context'))}" if p.get("context") else "")
        for p in body.get("projects") or []
    ]
    return _answer(_lines(rows, "No projects registered."), body)


@server.tool()
def dobby_register(
    path: Annotated[
        str, Field(description="Git repository on the hub's machine; relative to this directory.")
    ] = ".",
    name: Annotated[
        str | None, Field(description="Project name (default: the directory's name).")
    ] = None,
    context: Annotated[
        str | None,
        Field(description="Text given to every agent working on it (default: keep the current)."),
    ] = None,
) -> CallToolResult:
    """Register a git repository as a Dobby project so tasks can work in it."""
    absolute = os.path.abspath(os.path.expanduser(path))
    project = _call(
        _hub().register_project, name or os.path.basename(absolute.rstrip("/")), absolute, context
    )
    return _answer(f"Registered project {project.get('name')} → {project.get('path')}", project)


# -- entry points -----------------------------------------------------------------------------


def mcp_snippet(url: str | None = None) -> dict[str, Any]:
    """Return the ``.mcp.json`` entry that runs this server for Claude Code."""
    exe = shutil.which("dobby-mcp")
    command, args = (exe, []) if exe else (sys.executable, ["-m", "dobby.integrations.mcp"])
    env = {"DOBBY_URL": url or os.environ.get("DOBBY_URL") or "http://127.0.0.1:8420"}
    if os.environ.get("DOBBY_API_KEY"):
        env["DOBBY_API_KEY"] = "${DOBBY_API_KEY}"  # expanded by Claude Code; never the key itself
    return {"mcpServers": {"dobby": {"command": command, "args": args, "env": env}}}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--http", "port", type=int, help="Serve streamable HTTP on this port (at /mcp).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
def main(port: int | None, host: str) -> None:
    """Serve Dobby's MCP tools over stdio (default) or streamable HTTP."""
    if port is None:
        server.run()
    else:
        server.run("streamable-http", host=host, port=port)


if __name__ == "__main__":
    main()
