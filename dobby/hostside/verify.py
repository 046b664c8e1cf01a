"""The verify phase of run.sh: the task's check, run in its worktree after the agent ends.

Pure builders and parsers, like :mod:`dobby.hostside.scripts`. The check is user text: it
reaches the host as ``tasks/<id>/verify.sh`` and runs as ``bash verify.sh``, never pasted into
a shell line. The phase runs inside the task's own tmux session, so a person attached to it
sees the check run, and the task's ``exit`` file is written only after it.

What the phase does, when the agent exited 0:

1. commits what the agent left (the same commit collection would make, message from
   ``commit.msg``, build junk such as ``__pycache__/`` left out the same way), so the check
   cannot add its own leftovers to the task's work;
2. appends a start marker line to ``out.jsonl``, runs the check under its own ``timeout(1)``
   with its output appended to ``out.jsonl`` (a section of the task's log), then an end
   marker line with the exit code and duration;
3. puts the worktree back to the agent's commit (``git reset --hard; git clean -fd``: files
   the check wrote go, ignored ones stay), and writes ``tasks/<id>/verify`` (key=value lines:
   ``exit_code``, ``duration_ms``, ``offset`` of the section in ``out.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dobby.core.models import VerifyResult, VerifyStatus
from dobby.hostside.results import COMMIT_JUNK, GIT_IDENTITY
from dobby.hostside.scripts import TaskPaths, parse_kv, shell_quote

MARKER_TYPE = "dobby.verify"
START_MARKER = json.dumps({"type": MARKER_TYPE, "phase": "start"}, separators=(",", ":"))
RESULT_FILE = "verify"
SCRIPT_FILE = "verify.sh"
COMMIT_MESSAGE_FILE = "commit.msg"
TAIL_BYTES = 3000  # of the check's output kept on the result
KILL_AFTER = 10  # seconds timeout(1) waits after TERM before KILL
TIMEOUT_EXITS = (124, 137)  # timeout(1): the check ran too long (KILL after --kill-after)


def phase_seconds(verify_timeout: float | None) -> float:
    """Return the longest the phase can add to a task's run (its check, commit and reset)."""
    return float(verify_timeout or 0) + KILL_AFTER + 30


def render_verify_phase(
    *, paths: TaskPaths, timeout: float, ignore: Sequence[str] = COMMIT_JUNK
) -> str:
    """Return the block run.sh runs after the agent (``$rc`` holds the agent's exit code).

    Untracked files matching ``ignore`` (gitignore patterns) stay out of the commit it checks.
    """
    d = shell_quote(paths.task_dir)
    out = f"{d}/out.jsonl"
    seconds = int(max(1, round(timeout)))
    excludes = shell_quote(paths.file("commit-ignore"))
    patterns = " ".join(shell_quote(p) for p in ignore)
    end = (
        f'printf \'{{"type":"{MARKER_TYPE}","phase":"end","exit_code":%s,'
        f'"duration_ms":%s}}\\n\' "$vrc" "$vms"'
    )
    return f"""# -- verify phase (dobby.hostside.verify): the task's check, after the agent --
if [ "$rc" = 0 ]; then
  printf '%s\\n' {patterns} >{excludes}
  git -c core.excludesFile={excludes} add -A 2>>{d}/err.log && \\
    {{ git diff --cached --quiet 2>/dev/null || \\
    git {GIT_IDENTITY} commit -q --no-verify -F {d}/{COMMIT_MESSAGE_FILE} >>{d}/err.log 2>&1; }}
  [ -z "$(tail -c 1 {out} 2>/dev/null)" ] || printf '\\n' >>{out}
  voffset=$(wc -c <{out})
  printf '%s\\n' {shell_quote(START_MARKER)} | tee -a {out}
  t0=$(date +%s%3N)
  timeout --kill-after={KILL_AFTER} {seconds} bash {d}/{SCRIPT_FILE} </dev/null 2>&1 | tee -a {out}
  vrc=${{PIPESTATUS[0]}}
  vms=$(( $(date +%s%3N) - t0 ))
  git reset -q --hard HEAD >/dev/null 2>&1; git clean -fdq >/dev/null 2>&1
  [ -z "$(tail -c 1 {out})" ] || printf '\\n' >>{out}
  {end} | tee -a {out}
  printf 'exit_code=%s\\nduration_ms=%s\\noffset=%s\\n' "$vrc" "$vms" "$voffset" \\
    >{d}/{RESULT_FILE}.tmp && mv -f {d}/{RESULT_FILE}.tmp {d}/{RESULT_FILE}
fi
"""


def parse_marker(line: str) -> dict[str, Any] | None:
    """Return a verify marker line's fields (``phase``, ``exit_code``…), None for other lines."""
    text = line.strip()
    if not text.startswith('{"type":"' + MARKER_TYPE + '"'):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("type") == MARKER_TYPE else None


def parse_result(text: str | bytes | None, *, tail: str = "") -> VerifyResult | None:
    """Parse the ``verify`` file into a result (None when the phase did not finish)."""
    if not text:
        return None
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    state = parse_kv(raw)
    code, ms, offset = (_int(state.get(k)) for k in ("exit_code", "duration_ms", "offset"))
    if code is None:
        return None
    if code == 0:
        status = VerifyStatus.PASSED
    elif code in TIMEOUT_EXITS:
        status = VerifyStatus.TIMEOUT
    else:
        status = VerifyStatus.FAILED
    return VerifyResult(
        status=status.value, exit_code=code, duration_ms=ms, tail=tail, offset=offset
    )


def section_tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    """Return the end of the check's output from its log section (markers left out)."""
    lines = [ln for ln in data.splitlines() if parse_marker(ln.decode("utf-8", "replace")) is None]
    text = b"\n".join(lines)
    if len(text) > limit:
        text = text[-limit:]
        cut = text.find(b"\n")
        text = text[cut + 1 :] if 0 <= cut < len(text) - 1 else text
    return text.decode("utf-8", "replace").strip("\n")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
