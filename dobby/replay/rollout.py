"""Build the session file a fake codex run writes, from the real ones codex 0.171 wrote (no I/O).

Real codex records every run in ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<thread
id>.jsonl``; a resumed thread appends to the file it started. The recorded files in
``transcripts/quota/`` are replayed with ids, paths, times, the model and the rate-limit
windows substituted. Stdlib only, and no import of its siblings (see ``playbook.py``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

QUOTA = Path(__file__).resolve().parent / "transcripts" / "quota"
RECORDED_START = 1796025120  # the stand-in's start: recorded resets are this plus an offset
RECORDED_MODEL = "gpt-5.5"
HEAD = 8  # session_meta … the user's message: what codex writes before its first request
# Which recorded session file each scenario replays (resume: the second half of a thread).
FILES = {
    "success": "codex-quota-warn.rollout.jsonl",
    "quota_start": "codex-quota.rollout.jsonl",
    "quota_weekly": "codex-quota-weekly.rollout.jsonl",
    "quota_mid": "codex-quota-mid.rollout.jsonl",
    "quota_noreset": "codex-quota-plain429.rollout.jsonl",
    "quota_resume": "codex-quota-resume.rollout.jsonl",
}
_QUIET_USE = {"primary": 12.0, "secondary": 5.0}  # used_percent of a run far from any limit


def threads() -> list[str]:
    """Return the thread ids of the recorded files (each becomes the fake run's own)."""
    ids = []
    for name in FILES.values():
        first = load(name)[0]
        ids.append(str((first.get("payload") or {}).get("id")))
    return ids


def load(name: str) -> list[dict[str, Any]]:
    """Read one recorded session file."""
    text = (QUOTA / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def file_name(thread_id: str, started: float) -> str:
    """Return ``YYYY/MM/DD/rollout-YYYY-MM-DDTHH-MM-SS-<thread>.jsonl`` in local time."""
    local = time.localtime(started)
    day = time.strftime("%Y/%m/%d", local)
    return f"{day}/rollout-{time.strftime('%Y-%m-%dT%H-%M-%S', local)}-{thread_id}.jsonl"


def lines_for(scenario: str, *, resumed: bool) -> list[dict[str, Any]]:
    """Return the recorded lines a scenario writes (a resumed run: only what it appends).

    Scenarios with no recorded session file (API errors, crashes, hangs) write what codex
    writes before its first request; ``stall`` writes up to its first answered request.
    """
    if scenario == "quota_resume" or (resumed and scenario in ("success", "slow")):
        recorded = load(FILES["quota_resume"])
        ends = [i for i, d in enumerate(recorded) if _kind(d) == "task_complete"]
        return recorded[ends[0] + 1 :]  # the second turn, appended to the thread's file
    recorded = load(FILES.get(scenario, FILES["success"]))
    if resumed:  # a resumed thread's file has its head: a new turn starts at task_started
        recorded = [recorded[1], *recorded[5:]] if scenario in FILES else []
    if scenario in FILES or scenario in ("slow", "failed_command") or scenario.startswith("lines"):
        return recorded
    if scenario == "stall":
        first = next(i for i, d in enumerate(recorded) if _kind(d) == "token_count")
        return recorded[: first + 1]
    return recorded[:HEAD] if not resumed else []


def refresh(
    lines: Iterable[dict[str, Any]],
    *,
    model: str,
    now: float,
    limit: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Substitute the model, the epoch times and the rate-limit windows of recorded lines.

    ``limit`` is the account limit the run hits ({resets_at, window}); without one the
    windows read as a quiet account's.
    """
    out = []
    for line in lines:
        line = copy.deepcopy(line)
        _walk(line, model=model, now=now)
        payload = line.get("payload") or {}
        if _kind(line) == "token_count" and isinstance(payload.get("rate_limits"), dict):
            _windows(payload["rate_limits"], now=now, limit=limit)
        out.append(line)
    return out


def _kind(line: dict[str, Any]) -> str | None:
    payload = line.get("payload")
    return payload.get("type") if line.get("type") == "event_msg" and payload else None


def _walk(value: Any, *, model: str, now: float) -> None:
    """Set recorded models to ``model`` and recorded epochs (s, ms) to ``now``, in place."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in list(items):
        if isinstance(item, dict | list):
            _walk(item, model=model, now=now)
        elif key == "model" and item == RECORDED_MODEL:
            value[key] = model
        elif key in ("started_at", "completed_at") and isinstance(item, int):
            value[key] = int(now)
        elif key in ("started_at_ms", "completed_at_ms") and isinstance(item, int):
            value[key] = int(now * 1000)
        elif key == "create_time" and isinstance(item, float):
            value[key] = now


def _windows(rate_limits: dict[str, Any], *, now: float, limit: dict[str, Any] | None) -> None:
    """Point each window's reset at the limit (the full one) or its usual distance from now."""
    for key in ("primary", "secondary"):
        window = rate_limits.get(key)
        if not isinstance(window, dict):
            continue
        offset = (window.get("resets_at") or RECORDED_START) - RECORDED_START
        window["resets_at"] = int(now + offset)
        full = (window.get("used_percent") or 0) >= 100
        if limit is not None and full:
            window["resets_at"] = int(limit["resets_at"])
        elif limit is None:
            window["used_percent"] = _QUIET_USE[key]
