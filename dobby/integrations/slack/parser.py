"""Turn a Slack mention into tasks or a status command: pure functions, no I/O.

A mention is read as ``[prefix modifiers] prompt [suffix modifiers]``. Modifiers are only
peeled off the two ends (``urgent: fix the login bug in spare using codex``), so words in the
middle of a prompt ("fix the high priority bug") stay part of the prompt. A bullet list is a
batch: the non-bullet lines give defaults for every bullet. What cannot be decided (two projects
match, none does, an unknown host) becomes a :class:`Problem` that the bot asks about.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dobby.core.errors import ValidationError
from dobby.core.timefmt import parse_duration
from dobby.integrations.slack.grammar import (
    BACKEND_WORDS,
    BATCH_FILLER,
    BULLET,
    FILLER_END,
    FILLER_START,
    NAME,
    PREFIX,
    PRIORITY_WORDS,
    SUFFIX,
)

COMMANDS = ("help", "status", "summary", "running", "projects")
DEFAULT_WINDOWS = {"status": 4 * 3600.0, "summary": 12 * 3600.0}


@dataclass(frozen=True)
class Catalog:
    """What the parser can resolve names against: the hub's projects, hosts and labels."""

    projects: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> project


@dataclass
class TaskSpec:
    """One task as understood from Slack; ``project == ""`` means "explicitly none"."""

    prompt: str
    project: str | None = None
    backend: str | None = None
    host: str | None = None
    labels: list[str] = field(default_factory=list)
    priority: str | None = None
    model: str | None = None
    timeout: float | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    plan: bool = False  # a draft: an agent writes a plan first, a person approves it
    verify: str | None = None  # the check run after the agent (`verify with \`pytest\``)
    fix_attempts: int | None = None  # `fix it up to N times`
    race: int | None = None  # `race 3`: K attempts, the first to pass its check wins
    backends: list[str] = field(default_factory=list)  # a race's `using claude and codex`

    def body(self) -> dict[str, Any]:
        """Return the ``POST /tasks`` body (``POST /races`` for a race; unset fields left out)."""
        raw: dict[str, Any] = {
            "prompt": self.prompt,
            "project": self.project or None,
            "backend": self.backend,
            "host": self.host,
            "labels": self.labels or None,
            "priority": self.priority,
            "model": self.model,
            "timeout": self.timeout,
            "verify": self.verify,
            "fix_attempts": self.fix_attempts,
            "max_turns": self.max_turns,
            "max_budget_usd": self.max_budget_usd,
        }
        if self.race:
            raw["k"] = self.race
            raw["backends"] = self.backends or None
        elif self.backends and not self.backend:
            raw["backend"] = self.backends[0]
        if self.plan:
            raw["draft"] = True
            raw["agent_plan"] = self.backend != "shell" or None  # a shell command has no plan
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True)
class Problem:
    """Something the bot must ask about before the task can be submitted."""

    field: str  # project | host | prompt
    message: str
    candidates: tuple[str, ...] = ()
    task: int | None = None  # index in a batch, None for a single task


@dataclass(frozen=True)
class Command:
    """A status command: ``status 12h``, ``summary spare 24h``, ``running``, ``projects``…"""

    name: str
    project: str | None = None
    window_s: float | None = None


@dataclass
class Parsed:
    """What a mention asks for: a command, or tasks (several for a batch) plus problems."""

    tasks: list[TaskSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    command: Command | None = None

    @property
    def is_batch(self) -> bool:
        return len(self.tasks) > 1


def clean_text(text: str, bot_user_id: str | None = None) -> str:
    """Remove the bot's mention and decode Slack's markup (entities, ``<url|label>`` links)."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = re.sub(r"<#[A-Z0-9]+\|([^<>]*)>", r"#\1", text)
    text = re.sub(r"<[@!]([\w^]+?)(?:\^[^|<>]*)?(?:\|([^<>]*))?>", _ref, text)
    text = re.sub(r"<(?:mailto:)?([^<>|]+)(?:\|[^<>]*)?>", r"\1", text)  # the URL, not its label
    text = html.unescape(text)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip()


def _ref(m: re.Match[str]) -> str:
    """Render ``<@U123|ann>`` / ``<!here>`` as ``@ann`` / ``@here``."""
    return "@" + (m.group(2) or m.group(1))


def match_project(word: str, catalog: Catalog) -> list[str]:
    """Return the projects ``word`` may mean: exact, alias, prefix/component or close spelling."""
    w = word.strip("`'\"*_").lower()
    names = {p.lower(): p for p in catalog.projects}
    if w in names:
        return [names[w]]
    aliases = {a.lower(): p for a, p in catalog.aliases.items()}
    if w in aliases:
        return [aliases[w]]
    if len(w) < 3:
        return []
    hits = {
        p for low, p in names.items() if low.startswith(w) or re.match(rf"{re.escape(low)}[-_.]", w)
    }
    if not hits:
        hits = {names[m] for m in difflib.get_close_matches(w, list(names), n=5, cutoff=0.8)}
    return sorted(hits)


def match_host(word: str, catalog: Catalog) -> str | None:
    """Return the host named ``word`` (case-insensitive), if any."""
    w = word.lower()
    return next((h for h in catalog.hosts if h.lower() == w), None)


def parse_duration_words(text: str) -> float:
    """Return seconds from ``12h``, ``12 hours``, ``30 min``, ``2d``."""
    t = text.strip().lower()
    t = re.sub(r"\s*(?:hours?|hrs?)$", "h", t)
    t = re.sub(r"\s*(?:minutes?|mins?)$", "m", t)
    t = re.sub(r"\s*(?:seconds?|secs?)$", "s", t)
    t = re.sub(r"\s*days?$", "d", t)
    return parse_duration(t.replace(" ", ""))


def parse_command(text: str, catalog: Catalog) -> tuple[Command, list[Problem]] | None:
    """Return the status command ``text`` is, or None when it is a task."""
    words = re.sub(r"(\d)\s+(hours?|hrs?|minutes?|mins?|days?)\b", r"\1\2", text.strip()).split()
    if not words:
        return None
    name = words[0].lower()
    name = name if name == "?" else name.rstrip("?!.:")
    if name in ("?", "commands"):
        name = "help"
    if name not in COMMANDS:
        return None
    rest = [
        w.strip(",.?!")
        for w in words[1:]
        if w.lower() not in ("last", "past", "for", "the", "of", "in")
    ]
    if name in ("help", "projects") and rest or len(rest) > 2:
        return None
    project: str | None = None
    window = DEFAULT_WINDOWS.get(name)
    problems: list[Problem] = []
    for word in rest:
        if re.fullmatch(r"\d+(?:\.\d+)?[smhd]\w*", word, re.I):
            try:
                window = parse_duration_words(word)
            except ValidationError:
                return None
            continue
        if not re.fullmatch(NAME, word) or project is not None:
            return None
        found = match_project(word, catalog)
        if not found and not any(re.match(r"\d", w) for w in rest):
            return None  # "running tests": a task, not a command about project "tests"
        project = found[0] if len(found) == 1 else word
        if len(found) != 1:
            problems.append(_project_problem(word, found, catalog, None))
    return Command(name=name, project=project, window_s=window), problems


def _project_problem(
    word: str | None, found: list[str], catalog: Catalog, index: int | None
) -> Problem:
    if word is not None and len(found) > 1:
        return Problem("project", f"Which project did you mean by '{word}'?", tuple(found), index)
    if word is not None:
        close = difflib.get_close_matches(word.lower(), list(catalog.projects), n=5, cutoff=0.5)
        return Problem(
            "project", f"No project named '{word}'.", tuple(close or catalog.projects), index
        )
    return Problem("project", "Which project should this run in?", catalog.projects, index)


class _Peeler:
    """Peel modifiers off one line of text into a TaskSpec, collecting problems."""

    def __init__(self, catalog: Catalog, index: int | None) -> None:
        self.catalog = catalog
        self.index = index
        self.spec = TaskSpec(prompt="")
        self.problems: list[Problem] = []
        self.project_word: str | None = None
        self.set: set[str] = set()

    def apply(self, kind: str, m: re.Match[str]) -> bool:
        """Apply one modifier match; False when it does not apply (the words stay in the prompt)."""
        groups = m.groupdict()
        if kind == "target":
            return self._target(groups["x"])
        if kind in self.set:
            return False
        if kind == "priority":
            self.spec.priority = _priority(groups["p"])
        elif kind == "backend":
            self.spec.backend = BACKEND_WORDS[re.sub(r"\s+", " ", groups["b"].lower())]
        elif kind == "plan":
            self.spec.plan = True
        elif kind == "model":
            self.spec.model = groups["m"]
        elif kind == "verify":
            self.spec.verify = groups["v"].strip()
        elif kind == "fix":
            self.spec.fix_attempts = int(groups["n"])
        elif kind == "race":
            self.spec.race = int(groups["k"])
        elif kind == "backends":
            words = re.split(r"\s*(?:,|\band\b|&|\+)\s*", groups["bs"].lower())
            self.spec.backends = [BACKEND_WORDS[w] for w in words if w]
        elif kind == "timeout":
            self.spec.timeout = parse_duration_words(groups["t"])
        elif kind == "max_turns":
            self.spec.max_turns = int(groups["n"])
        elif kind == "max_budget_usd":
            self.spec.max_budget_usd = float(groups["u"] or groups["v"])
        elif kind == "labels":
            if groups["l"].lower() not in {x.lower() for x in self.catalog.labels}:
                return False
            self.spec.labels = [groups["l"]]
        elif kind == "host":
            return self._host(groups["x"], explicit=True)
        elif kind == "project":
            return self._project(groups["x"], explicit=m.group(0).lower().startswith("project"))
        self.set.add(kind)
        return True

    def _target(self, word: str) -> bool:
        """Resolve ``on X`` / ``X:``: a host first, then a project."""
        if "host" not in self.set and match_host(word, self.catalog):
            return self._host(word, explicit=True)
        if "project" not in self.set and match_project(word, self.catalog):
            return self._project(word, explicit=False)
        if "host" not in self.set and re.search(r"[\d-]", word) and not word.isdigit():
            return self._host(word, explicit=False)  # looks like a machine name: ask about it
        return False

    def _host(self, word: str, *, explicit: bool) -> bool:
        host = match_host(word, self.catalog)
        if host is None and not explicit and not self.catalog.hosts:
            return False
        self.spec.host = host or word
        self.set.add("host")
        if host is None:
            close = difflib.get_close_matches(word, list(self.catalog.hosts), n=5, cutoff=0.5)
            msg = f"No host or project named '{word}'."
            cands = tuple(close or self.catalog.hosts)
            self.problems.append(Problem("host", msg, cands, self.index))
        return True

    def _project(self, word: str, *, explicit: bool) -> bool:
        if explicit and word.lower() in ("none", "no", "-"):
            self.spec.project, self.project_word = "", word
            self.set.add("project")
            return True
        found = match_project(word, self.catalog)
        if not found and not explicit:
            return False
        self.spec.project = found[0] if len(found) == 1 else None
        self.project_word = word
        self.set.add("project")
        if len(found) != 1:
            self.problems.append(_project_problem(word, found, self.catalog, self.index))
        return True


def _priority(word: str) -> str:
    w = re.sub(r"\s+", " ", word.lower())
    return "low" if w.startswith("when") else PRIORITY_WORDS.get(w, "normal")


def _strip(pattern: re.Pattern[str], text: str) -> str:
    """Remove ``pattern`` from ``text`` until it no longer matches (", please" → "")."""
    while True:
        shorter = pattern.sub("", text, count=1)
        if shorter == text:
            return text
        text = shorter


def _peel(text: str, peeler: _Peeler) -> str:
    """Strip prefix and suffix modifiers from ``text`` and return what remains (the prompt)."""
    text = text.strip()
    changed = True
    while changed and text:
        changed = False
        text = _strip(FILLER_END, text)
        for kind, pattern in SUFFIX:
            m = pattern.search(text)
            if m and peeler.apply(kind, m):
                text, changed = text[: m.start()].rstrip(), True
                break
    changed = True
    while changed and text:
        changed = False
        text = _strip(FILLER_START, text)
        for kind, pattern in PREFIX:
            m = pattern.match(text)
            if m and peeler.apply(kind, m):
                text, changed = text[m.end() :], True
                break
    return text.strip()


def _infer_project(peeler: _Peeler, prompt: str) -> None:
    """Fill the project from a word of the prompt or the host's name when none was given."""
    catalog, spec = peeler.catalog, peeler.spec
    if spec.project is not None or peeler.project_word is not None:
        return
    words = {w.lower() for w in re.findall(r"[A-Za-z0-9][\w.-]*[A-Za-z0-9]|\w", prompt)}
    named = sorted({p for p in catalog.projects if p.lower() in words})
    if len(named) == 1:
        spec.project = named[0]
        return
    if spec.host:
        parts = set(re.split(r"[-_.]", spec.host.lower()))
        by_host = sorted({p for p in catalog.projects if p.lower() in parts})
        if len(by_host) == 1:
            spec.project = by_host[0]
            return
    if len(named) > 1:
        peeler.problems.append(
            Problem("project", "Which project should this run in?", tuple(named), peeler.index)
        )


def parse_line(
    text: str, catalog: Catalog, *, index: int | None = None
) -> tuple[TaskSpec, list[Problem], str]:
    """Parse one task's text; return the spec, its problems and the modifier-free prompt."""
    peeler = _Peeler(catalog, index)
    prompt = _peel(text, peeler)
    spec = peeler.spec
    if spec.backend == "shell":
        prompt = _unwrap_code(prompt)
    spec.prompt = prompt
    _infer_project(peeler, prompt)
    return spec, peeler.problems, prompt


def _unwrap_code(prompt: str) -> str:
    """Return the command inside a Slack code span or block, for shell tasks."""
    m = re.fullmatch(
        r"(?:run|execute|exec)?\s*(?:```(?:\w+\n)?(.*?)```|`([^`]+)`)", prompt.strip(), re.S
    )
    return (m.group(1) or m.group(2)).strip() if m else prompt


def _check(spec: TaskSpec, catalog: Catalog, problems: list[Problem], index: int | None) -> None:
    """Add the problems that concern the whole task: an empty prompt, a missing project."""
    if not spec.prompt:
        problems.append(
            Problem("prompt", "What should the task do? The prompt is empty.", (), index)
        )
    if spec.project is None and catalog.projects and spec.backend != "shell":
        if not any(p.field == "project" and p.task == index for p in problems):
            problems.append(_project_problem(None, [], catalog, index))


def parse_mention(text: str, catalog: Catalog) -> Parsed:
    """Parse a cleaned mention (see :func:`clean_text`) into a command or tasks."""
    text = text.strip()
    if not text:
        return Parsed(command=Command(name="help"))
    command = parse_command(text, catalog)
    if command is not None:
        return Parsed(command=command[0], problems=command[1])
    lines = text.split("\n")
    bullets = [m.group("t") for m in map(BULLET.match, lines) if m]
    if len(bullets) < 2:
        spec, problems, _ = parse_line(text, catalog)
        _check(spec, catalog, problems, None)
        return Parsed(tasks=[spec], problems=problems)
    header = " ".join(line for line in lines if not BULLET.match(line)).strip()
    defaults, header_problems, rest = (
        parse_line(header, catalog) if header else (TaskSpec(""), [], "")
    )
    context = "" if rest.lower().rstrip(":") in BATCH_FILLER else rest.rstrip(":")
    parsed = Parsed(problems=[p for p in header_problems if p.field != "prompt"])
    for i, bullet in enumerate(bullets):
        spec, problems, _ = parse_line(bullet, catalog, index=i)
        spec = _merge(spec, defaults)
        if context:
            spec.prompt = f"{context}:\n{spec.prompt}"
        parsed.tasks.append(spec)
        parsed.problems.extend(problems)
    for i, spec in enumerate(parsed.tasks):
        if not any(p.field == "project" and p.task is None for p in parsed.problems):
            _check(spec, catalog, parsed.problems, i)
    return parsed


def _merge(spec: TaskSpec, defaults: TaskSpec) -> TaskSpec:
    """Fill the bullet's unset fields from the header's."""
    return replace(
        spec,
        project=spec.project if spec.project is not None else defaults.project,
        backend=spec.backend or defaults.backend,
        host=spec.host or defaults.host,
        labels=spec.labels or list(defaults.labels),
        priority=spec.priority or defaults.priority,
        model=spec.model or defaults.model,
        timeout=spec.timeout or defaults.timeout,
        max_turns=spec.max_turns or defaults.max_turns,
        max_budget_usd=spec.max_budget_usd or defaults.max_budget_usd,
        plan=spec.plan or defaults.plan,
        verify=spec.verify or defaults.verify,
        fix_attempts=spec.fix_attempts if spec.fix_attempts is not None else defaults.fix_attempts,
    )
