"""The words of a Slack mention: modifier patterns peeled off a prompt's ends (data only).

Each pattern is ``(field, regex)``. ``SUFFIX`` patterns end at the end of the text and
``PREFIX`` patterns start at its beginning; ``parser._Peeler`` decides whether a match applies
(an unknown project name after "in" stays part of the prompt).
"""

from __future__ import annotations

import re

NAME = r"[A-Za-z0-9][\w.-]*"
PRIORITY_WORDS = {
    "urgent": "urgent", "urgently": "urgent", "asap": "urgent", "critical": "urgent",
    "immediately": "urgent", "right away": "urgent", "p0": "urgent",
    "high": "high", "important": "high", "p1": "high", "hi": "high",
    "normal": "normal", "medium": "normal", "p2": "normal",
    "low": "low", "p3": "low", "no rush": "low", "not urgent": "low", "whenever": "low",
}  # fmt: skip
BACKEND_WORDS = {
    "claude": "claude", "claude code": "claude", "claude-code": "claude",
    "codex": "codex", "shell": "shell", "bash": "shell",
}  # fmt: skip
BACKEND = r"(?P<b>claude[\s-]code|claude|codex|shell|bash)"
# Two or more backends for a race: "using claude and codex", "with claude, codex".
BACKENDS = r"(?P<bs>(?:claude|codex)(?:\s*(?:,|\band\b|&|\+)\s*(?:claude|codex))+)"
# A check is a command: always a code span, so its words never mix with the prompt's.
CHECK = r"`(?P<v>[^`\n]+)`"
LEVEL = r"(?P<p>urgent|high|normal|medium|low)"
DUR = r"(?P<t>\d+(?:\.\d+)?\s*(?:s|m|h|d|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?)\b)"
FILLER_END = re.compile(
    r"(?:[\s,;:.!(]+|\b(?:please|pls|thanks|thank you|thx|ty|and|then)\s*)$", re.I
)
FILLER_START = re.compile(
    r"^(?:[\s,;:]+|(?:please|pls|hey|hi|ok|okay|can you|could you)\b[\s,]*)", re.I
)
USD = r"(?:\$\s*(?P<u>\d+(?:\.\d+)?)|(?P<v>\d+(?:\.\d+)?)\s*(?:\$|usd|dollars?)?)"
USD_STRICT = r"(?:\$\s*(?P<u>\d+(?:\.\d+)?)|(?P<v>\d+(?:\.\d+)?)\s*(?:usd|dollars?))"
BULLET = re.compile(r"^\s*(?:[-*•◦‣▪–]|\d+[.)])\s+(?P<t>\S.*)$")
BATCH_FILLER = {"", "batch", "tasks", "do these", "the following", "these", "please do these"}

# (field, pattern) peeled off the END of the text; the regexes end at $ and start at a word.
SUFFIX: list[tuple[str, re.Pattern[str]]] = [
    (f, re.compile(r"(?:^|(?<=[\s,;(]))" + p + r"\)?$", re.I))
    for f, p in [
        ("priority", rf"(?:(?:with|at|as|in)\s+)?(?:an?\s+)?{LEVEL}[\s-]*(?:pri(?:ority)?|prio)"),
        ("priority", r"(?:with\s+)?prio(?:rity)?\s*[:=]?\s*(?P<p>urgent|high|normal|low|p[0-3])"),
        ("priority", r"(?:as\s+)?(?P<p>urgent(?:ly)?|asap|critical|right away|immediately|p[0-3])"),
        ("priority", r"(?P<p>no rush|not urgent|when(?:ever)? you (?:have|get) time|whenever)"),
        ("verify", rf"(?:and\s+)?(?:verify|check|test)(?:\s+it)?\s+(?:with|using|by)\s+{CHECK}"),
        ("verify", rf"(?:verified|checked)\s+(?:with|by)\s+{CHECK}"),
        ("fix", r"(?:and\s+)?fix(?:\s+it)?\s+up\s+to\s+(?P<n>\d+)\s+times?"),
        ("race", r"(?:as\s+)?(?:a\s+)?race\s+(?:of\s+)?(?P<k>\d+)(?:\s+ways?|\s+attempts?)?"),
        ("backends", rf"(?:using|with|via|on)\s+{BACKENDS}"),
        ("backend", rf"(?:using|use|with|via|in|on)\s+(?:the\s+)?{BACKEND}(?:\s+backend)?"),
        ("backend", rf"backend\s*[:=]?\s*{BACKEND}"),
        ("plan", r"(?:with\s+)?(?:an?\s+)?(?:agent\s+)?plan\s+first"),
        ("backend", r"as\s+an?\s+(?P<b>shell)\s+(?:command|script|job)"),
        ("model", r"(?:with|using)\s+(?:the\s+)?model\s+(?P<m>[\w.:/-]+)"),
        ("model", r"model\s*[:=]\s*(?P<m>[\w.:/-]+)"),
        ("max_turns", r"(?:with\s+|in\s+)?(?:at\s+most\s+|max(?:imum)?\s+)?"
                      r"(?P<n>\d+)\s+(?:max\s+)?turns?"),
        ("max_turns", r"max[_ -]?turns\s*[:=]?\s*(?P<n>\d+)"),
        ("max_budget_usd", rf"(?:with\s+)?(?:an?\s+)?budget\s*(?:of\s+|[:=]\s*)?{USD}"),
        ("max_budget_usd", rf"max[_ -]?budget(?:[_ -]?usd)?\s*[:=]?\s*{USD}"),
        ("max_budget_usd", rf"(?:for\s+)?(?:at\s+most|under|max(?:imum)?)\s+{USD_STRICT}"),
        ("timeout", rf"(?:with\s+)?(?:an?\s+)?{DUR}\s+time\s?out"),
        ("timeout", rf"(?:with\s+)?(?:a\s+)?time\s?out\s*(?:of\s+|[:=]\s*)?{DUR}"),
        ("labels", rf"on\s+(?:an?|any|some|the)\s+(?P<l>{NAME})\s+(?:host|machine|box|node)"),
        ("labels", rf"labels?\s*[:=]\s*(?P<l>{NAME})"),
        ("target", rf"on\s+(?:host\s+|machine\s+|box\s+|server\s+|node\s+)?(?P<x>{NAME})"),
        ("host", rf"host\s*[:=]\s*(?P<x>{NAME})"),
        ("project", rf"project\s*[:=]?\s*(?P<x>{NAME})"),
        ("project", rf"(?:in|to|for|into|at|of|from|inside)\s+(?:the\s+)?(?:project\s+|repo\s+)?"
                    rf"(?P<x>{NAME})(?:\s+(?:project|repo|repository|codebase|code base))?"),
    ]
]  # fmt: skip
# (field, pattern) peeled off the START of the text.
PREFIX: list[tuple[str, re.Pattern[str]]] = [
    (f, re.compile("^" + p, re.I))
    for f, p in [
        ("priority", r"\[(?P<p>urgent|high|normal|low)\]\s*"),
        ("priority", r"(?P<p>urgent|asap|p[0-3])\s*[:!,-]\s*"),
        ("priority", rf"{LEVEL}[\s-]*pri(?:ority)?\s*[:!,-]\s*"),
        ("backend", rf"(?:using|with|via)\s+{BACKEND}\s*[:,]\s*"),
        ("backend", r"(?P<b>shell|sh)\s*:\s*"),
        ("plan", r"plan\s*:\s*"),
        ("race", r"race\s+(?:of\s+)?(?P<k>\d+)(?:\s+ways?|\s+attempts?)?\s*[:,]\s*"),
        ("target", rf"(?:in|for|on)\s+(?P<x>{NAME})\s*[:,]\s*"),
        ("target", rf"(?P<x>{NAME})\s*:\s+"),
    ]
]  # fmt: skip
