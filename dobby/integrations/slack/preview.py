"""Previews waiting for ✅/❌: their state, how they read in Slack, and thread-reply edits."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace

from dobby.integrations.slack.parser import (
    Catalog,
    Problem,
    TaskSpec,
    match_host,
    match_project,
    parse_line,
)

CONFIRM = ("white_check_mark", "heavy_check_mark", "ballot_box_with_check")
CANCEL = ("x", "negative_squared_cross_mark")
MAX_CANDIDATES = 10


@dataclass
class Draft:
    """Tasks a user asked for in a thread, shown in a preview message until confirmed."""

    requester: str
    channel: str
    thread_ts: str
    tasks: list[TaskSpec]
    problems: list[Problem] = field(default_factory=list)
    preview_ts: str | None = None
    state: str = "open"  # open | submitting | submitted | cancelled

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.preview_ts or "")


def _describe(spec: TaskSpec) -> str:
    project = spec.project if spec.project else ("none" if spec.project == "" else "❓")
    host = spec.host or (f"any with label {', '.join(spec.labels)}" if spec.labels else "any")
    parts = [
        f"project *{project}*",
        f"backend *{spec.backend or 'claude'}*",
        f"host *{host}*",
        f"priority *{spec.priority or 'normal'}*",
    ]
    if spec.model:
        parts.append(f"model *{spec.model}*")
    if spec.timeout:
        parts.append(f"timeout *{spec.timeout:g}s*")
    if spec.plan:
        parts.append("*plan first*, then your approval")
    if spec.race:
        spread = f" over *{', '.join(spec.backends)}*" if spec.backends else ""
        parts.append(f"*race of {spec.race}*{spread}: the first attempt whose check passes wins")
    if spec.verify:
        fixes = f", fixed up to *{spec.fix_attempts}* time(s)" if spec.fix_attempts else ""
        check = spec.verify.replace("`", "'")
        parts.append(f"check `{check}`{fixes}")
    return " · ".join(parts)


def _quote(text: str, limit: int = 1500) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "\n".join("> " + line for line in (text.splitlines() or [""]))


def problem_text(problem: Problem) -> str:
    """Return one question for the user, with the candidates to pick from."""
    where = f" (task {problem.task + 1})" if problem.task is not None else ""
    text = f"❓ {problem.message}{where}"
    if problem.candidates:
        shown = ", ".join(f"`{c}`" for c in problem.candidates[:MAX_CANDIDATES])
        more = len(problem.candidates) - MAX_CANDIDATES
        text += f" Candidates: {shown}" + (f" (and {more} more)" if more > 0 else "")
    if problem.field in ("project", "host"):
        text += f" — reply in this thread with the {problem.field} name."
    return text


def render_preview(draft: Draft) -> str:
    """Return the preview message (Slack mrkdwn) for a draft in its current state."""
    n = len(draft.tasks)
    title = "Task preview" if n == 1 else f"Batch preview: {n} tasks"
    lines = [f"*{title}* for <@{draft.requester}>"]
    if n == 1:
        lines += [_describe(draft.tasks[0]), _quote(draft.tasks[0].prompt)]
    else:
        for i, spec in enumerate(draft.tasks, 1):
            lines += [f"*{i}.* {_describe(spec)}", _quote(spec.prompt, 500)]
    lines += [problem_text(p) for p in draft.problems]
    if draft.state == "open":
        if draft.problems:
            lines.append("_Answer the question(s) above by replying in this thread._")
        else:
            lines.append(
                "React ✅ to submit or ❌ to cancel; reply in this thread to edit "
                "(`in PROJECT`, `on HOST`, `using codex`, `high priority`, `plan first`, "
                "`prompt: …`)."
            )
    elif draft.state == "cancelled":
        lines.append("❌ _Cancelled._")
    elif draft.state == "submitting":
        lines.append("⏳ _Submitting…_")
    return "\n".join(lines)


def apply_edit(draft: Draft, reply: str, catalog: Catalog) -> tuple[Draft, str | None]:
    """Apply a thread reply to a draft; return the new draft and a note if nothing applied."""
    text = reply.strip()
    if not text:
        return draft, None
    tasks = [replace(t, labels=list(t.labels)) for t in draft.tasks]
    targets = range(len(tasks))
    m = re.match(r"^(?:task\s+)?#?(\d+)\s*[:.)]\s*(.*)$", text, re.S)
    if m and len(tasks) > 1:
        index = int(m.group(1)) - 1
        if not 0 <= index < len(tasks):
            return draft, f"There is no task {index + 1} (1–{len(tasks)})."
        targets, text = range(index, index + 1), m.group(2).strip()
    drop = re.fullmatch(r"(?:drop|remove|delete)\s+(?:task\s+)?#?(\d+)", text, re.I)
    if drop and len(tasks) > 1:
        index = int(drop.group(1)) - 1
        if not 0 <= index < len(tasks):
            return draft, f"There is no task {index + 1} (1–{len(tasks)})."
        del tasks[index]
        return _rechecked(draft, tasks, catalog), None
    new_prompt = re.match(r"^prompt\s*:\s*(.+)$", text, re.S | re.I)
    if new_prompt:
        if len(targets) != 1:
            return draft, "Say which task: `2: prompt: …`."
        tasks[targets[0]].prompt = new_prompt.group(1).strip()
        return _rechecked(draft, tasks, catalog), None
    changed = False
    for i in targets:
        edit, _, rest = parse_line(text, catalog, index=i)
        changed |= _apply_fields(tasks[i], edit, rest, catalog)
        if rest and not _is_name(rest, catalog):
            if len(targets) != 1:
                return draft, "Say which task to re-word: `2: new prompt`, or `prompt: …`."
            tasks[i].prompt = rest
            changed = True
    if not changed:
        return draft, "I did not understand that edit."
    return _rechecked(draft, tasks, catalog), None


def _is_name(text: str, catalog: Catalog) -> bool:
    word = re.sub(r"^(?:project|host|in|on|use)\s+", "", text.strip(), flags=re.I)
    return bool(re.fullmatch(r"\S+", word)) and bool(
        match_project(word, catalog) or match_host(word, catalog)
    )


def _apply_fields(task: TaskSpec, edit: TaskSpec, rest: str, catalog: Catalog) -> bool:
    """Copy the fields an edit set onto ``task``; a bare project or host name sets that field."""
    changed = False
    for name in ("project", "backend", "host", "priority", "model", "timeout", "verify",
                 "fix_attempts", "race"):  # fmt: skip
        value = getattr(edit, name)
        if value is not None:
            setattr(task, name, value)
            changed = True
    if edit.plan:
        task.plan, changed = True, True
    if edit.labels:
        task.labels, changed = list(edit.labels), True
    if edit.backends:
        task.backends, changed = list(edit.backends), True
    word = re.sub(r"^(?:project|host|in|on|use)\s+", "", rest.strip(), flags=re.I)
    if word and re.fullmatch(r"\S+", word):
        host = match_host(word, catalog)
        found = match_project(word, catalog)
        if host:
            task.host, changed = host, True
        elif len(found) == 1:
            task.project, changed = found[0], True
    return changed


def _rechecked(draft: Draft, tasks: list[TaskSpec], catalog: Catalog) -> Draft:
    """Return the draft with new tasks and the problems that remain."""
    problems: list[Problem] = []
    single = len(tasks) == 1
    for i, spec in enumerate(tasks):
        index = None if single else i
        if not spec.prompt.strip():
            problems.append(
                Problem("prompt", "What should the task do? The prompt is empty.", (), index)
            )
        if spec.host and not match_host(spec.host, catalog) and catalog.hosts:
            problems.append(Problem("host", f"No host named '{spec.host}'.", catalog.hosts, index))
        if spec.project and spec.project not in catalog.projects:
            problems.append(
                Problem("project", f"No project named '{spec.project}'.", catalog.projects, index)
            )
        if spec.project is None and catalog.projects and spec.backend != "shell":
            problems.append(
                Problem("project", "Which project should this run in?", catalog.projects, index)
            )
    return replace(draft, tasks=tasks, problems=problems)


class Drafts:
    """The open previews of this bot process, by preview message and by thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], Draft] = {}
        self._by_thread: dict[tuple[str, str], tuple[str, str]] = {}

    def put(self, draft: Draft) -> None:
        """Remember a draft whose preview has been posted."""
        with self._lock:
            self._by_key[draft.key] = draft
            self._by_thread[(draft.channel, draft.thread_ts)] = draft.key

    def get(self, channel: str, preview_ts: str) -> Draft | None:
        """Return the draft shown in message ``preview_ts``."""
        with self._lock:
            return self._by_key.get((channel, preview_ts))

    def in_thread(self, channel: str, thread_ts: str) -> Draft | None:
        """Return the latest open draft of a thread."""
        with self._lock:
            key = self._by_thread.get((channel, thread_ts))
            draft = self._by_key.get(key) if key else None
            return draft if draft is not None and draft.state == "open" else None

    def claim(self, channel: str, preview_ts: str) -> Draft | None:
        """Mark an open draft as being submitted; None if it was not open (a double ✅)."""
        with self._lock:
            draft = self._by_key.get((channel, preview_ts))
            if draft is None or draft.state != "open":
                return None
            draft.state = "submitting"
            return draft

    def finish(self, draft: Draft, state: str) -> None:
        """Set a draft's final state (``open`` again lets the user fix it and retry)."""
        with self._lock:
            draft.state = state
            if state in ("submitted", "cancelled"):
                self._by_key.pop(draft.key, None)
                if self._by_thread.get((draft.channel, draft.thread_ts)) == draft.key:
                    del self._by_thread[(draft.channel, draft.thread_ts)]
