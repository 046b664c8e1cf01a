#!/usr/bin/env python3
"""Stand in for the claude and codex CLIs by replaying recorded transcripts (stdlib only).

Run it as ``agent.py claude|codex ARGS`` or through a ``claude``/``codex`` wrapper; see
``playbook.py`` (loaded beside it) for the arguments and scenarios it understands.
"""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
import uuid
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__:
    from . import playbook, rollout
else:  # a copied script on a host, maybe under `python3 -I`: load the sibling files
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import playbook  # type: ignore[no-redef]
    import rollout  # type: ignore[no-redef]

RECORD_NAME = "fake-agent.json"
_RECORDED_ENV = ("CUDA_VISIBLE_DEVICES", "DOBBY_TASK_ID", "IS_SANDBOX")
_ECHO_TO_FILE = re.compile(r"echo (\S+) > ([\w.\-/]+)")
UsageError = playbook.UsageError


def _emit(obj: dict[str, Any]) -> None:
    """Print one JSON line and flush it at once, as the real CLIs do."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()


def _write_inside(cwd: Path, path: str, content: str) -> None:
    """Write a file the replayed agent creates, refusing paths outside the cwd."""
    target, root = (cwd / path).resolve(), cwd.resolve()
    if target == root or root in target.parents:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def do_work(line: dict[str, Any], cwd: Path) -> None:
    """Make the file change a transcript line reports, so git sees real results."""
    result = line.get("tool_use_result")
    if line.get("type") == "user" and isinstance(result, dict) and result.get("type") == "create":
        # Only Write creates: the recorded Edit (hi -> hello) is not replayed, hello.txt stays "hi".
        _write_inside(cwd, result["filePath"], result.get("content", ""))
    item = line.get("item")
    if line.get("type") != "item.completed" or not isinstance(item, dict):
        return
    if item.get("type") == "command_execution" and item.get("exit_code") == 0:
        match = _ECHO_TO_FILE.search(item.get("command", ""))
        if match:
            _write_inside(cwd, match.group(2), match.group(1) + "\n")
    elif item.get("type") == "file_change" and item.get("status") == "completed":
        for change in item.get("changes", []):
            if change.get("kind") == "add":
                _write_inside(cwd, change["path"], "# Notes\n\nWritten by the fake codex.\n")


def _stdin_is_pipe() -> bool:
    """Tell whether stdin is open and not a terminal (the real CLIs then read it)."""
    try:
        return not os.isatty(0)
    except OSError:
        return False


def _read_stdin(wait: float | None) -> str | None:
    """Read stdin to EOF; None when nothing arrived within ``wait`` seconds."""
    try:
        if wait is not None and not select.select([0], [], [], wait)[0]:
            return None
        return sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    except (OSError, ValueError):
        return ""


def _record(inv: playbook.Invocation, env: Mapping[str, str], extra: dict[str, Any]) -> None:
    """Write what this run received to $DOBBY_TASK_DIR/fake-agent.json, else ./.fake-agent.json."""
    task_dir = env.get("DOBBY_TASK_DIR")
    path = Path(task_dir) / RECORD_NAME if task_dir else Path.cwd() / f".{RECORD_NAME}"
    seen = {k: env.get(k) for k in _RECORDED_ENV}
    seen.update({k: v for k, v in env.items() if k.startswith("DOBBY_")})
    data = {
        "agent": inv.agent, "argv": inv.args, "prompt": inv.prompt, "cwd": os.getcwd(),
        "env": seen, "resume": inv.resume, "model": inv.opts.get("model"), **extra,
    }  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        tmp.write_bytes(text.encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)
    except OSError as exc:
        sys.stderr.write(f"fake {inv.agent}: cannot record the run in {path}: {exc}\n")


def _prepare_claude(inv: playbook.Invocation, env: Mapping[str, str]) -> str:
    """Apply claude's startup checks and stdin rules; return the session id."""
    bypass = inv.opts.get("skip_permissions") or (
        inv.opts.get("permission_mode") == "bypassPermissions"
    )
    if bypass and os.geteuid() == 0 and env.get("IS_SANDBOX") != "1":
        raise UsageError(playbook.ROOT_REFUSAL)
    data = _read_stdin(3.0) if _stdin_is_pipe() else ""
    if data is None:
        sys.stderr.write("Warning: no stdin data received in 3s, proceeding without it.\n")
    elif data and inv.prompt is not None:
        inv.opts["stdin"] = data
    if inv.prompt is None:
        if not data:
            raise UsageError(
                "Error: Input must be provided either through stdin or as a prompt argument "
                "when using --print"
            )
        inv.prompt = data
    return inv.resume or inv.opts.get("session_id") or str(uuid.uuid4())


def _prepare_codex(inv: playbook.Invocation, env: Mapping[str, str], home: str) -> str:
    """Apply codex's startup checks and stdin rules; return the thread id."""
    if inv.opts.get("cd"):
        os.chdir(inv.opts["cd"])
    cwd = Path.cwd()
    in_git = any((p / ".git").exists() for p in (cwd, *cwd.parents))
    if not (in_git or inv.opts.get("skip_git_repo_check") or inv.opts.get("bypass")):
        raise UsageError(playbook.UNTRUSTED_DIR)
    stderr = (playbook.TRANSCRIPTS / "codex-exec.stderr.txt").read_text(encoding="utf-8")
    warning, reading = stderr.splitlines()[:2]
    codex_home = env.get("CODEX_HOME") or f"{home}/.codex"
    sys.stderr.write(warning.replace("/home/dev/.codex", codex_home) + "\n")
    if _stdin_is_pipe():
        sys.stderr.write(reading + "\n")
        sys.stderr.flush()
        data = _read_stdin(None)  # like the real one: an open pipe blocks it until EOF
        if data and inv.prompt in (None, "-"):
            inv.prompt = data
        elif data:
            inv.opts["stdin"] = data
    if inv.prompt in (None, "-"):
        raise UsageError(
            "No prompt provided. Either specify one as an argument or pipe the prompt into stdin."
        )
    return inv.resume or playbook.uuid7()


def run(inv: playbook.Invocation, env: Mapping[str, str]) -> int:
    """Replay one run: checks, record, lines (doing their file work), exit status."""
    home = env.get("HOME") or os.path.expanduser("~")
    if inv.agent == "claude":
        session = _prepare_claude(inv, env)
    else:
        session = _prepare_codex(inv, env, home)
    cwd = Path.cwd()
    now = time.time()
    state = State(home, inv.agent)
    scenario = playbook.choose_scenario(inv.prompt, env)
    scenario, limit = state.decide(scenario, session=session if inv.resume else None, now=now)
    extra = {"scenario": scenario, "session_id": session, "stdin": inv.opts.get("stdin")}
    _record(inv, env, extra)
    quota = playbook.quota_spec(scenario)
    if quota is not None:
        replay = playbook.build_quota(inv.agent, quota[0], limit=limit, zone=_zone(env), now=now)
    elif inv.agent == "claude":
        replay = playbook.build_claude(inv, scenario, env)
    else:
        replay = playbook.build_codex(inv, scenario, env)
    if replay.limit is not None:
        state.limit(replay.limit, session=session)
    codex_home = env.get("CODEX_HOME") or f"{home}/.codex"
    same = {_recorded_session(replay.lines): session}
    if inv.agent == "codex":
        same.update(dict.fromkeys(rollout.threads(), session))
    fresh = playbook.Freshener(
        session_id=session, cwd=str(cwd), home=home, codex_home=codex_home, same=same
    )
    lines = [fresh(line) for line in replay.lines]
    if inv.agent == "claude" and lines and lines[0].get("subtype") == "init":
        lines[0]["model"] = inv.opts.get("model") or lines[0]["model"]
        mode = inv.opts.get("permission_mode", "default")
        lines[0]["permissionMode"] = (
            "bypassPermissions" if inv.opts.get("skip_permissions") else mode
        )
    session_file = None
    if inv.agent == "codex":
        name = quota[0] if quota is not None else scenario
        session_file = Rollout(codex_home, session, resumed=bool(inv.opts.get("resume")))
        model = _codex_model(inv, codex_home, thread=session_file)
        recorded = rollout.lines_for(name, resumed=session_file.exists)
        written = rollout.refresh(recorded, model=model, now=now, limit=replay.limit)
        session_file.write([fresh(line) for line in written[: rollout.HEAD]])
        session_file.pending = [fresh(line) for line in written[rollout.HEAD :]]
    stream = inv.opts.get("output_format") == "stream-json" or bool(inv.opts.get("json"))
    started = time.monotonic()
    for n, line in enumerate(lines):
        if n and replay.delay:
            time.sleep(replay.delay)
        if line.get("type") == "result":
            line["duration_ms"] = int((time.monotonic() - started) * 1000)
        if session_file is not None and n == len(lines) - 1:
            session_file.flush()  # the session file is whole before the stream ends
        do_work(line, cwd)
        if stream:
            _emit(line)
    _finish(inv, lines, stream=stream)
    if replay.hang_after is not None:
        if session_file is not None:
            session_file.flush()
        while True:  # waiting on a model that never answers: only a signal ends this
            time.sleep(3600)
    if replay.hang:
        _hang(inv.agent, float(env.get("FAKE_AGENT_HANG_INTERVAL") or 2.0))
    if session_file is not None:
        session_file.flush()
    sys.stderr.write(replay.stderr)
    return replay.exit_code


def _recorded_session(lines: list[dict[str, Any]]) -> str:
    """Return the session/thread id of a recorded run (its ids become the new session's)."""
    for line in lines[:2]:
        for key in ("session_id", "thread_id"):
            if isinstance(line.get(key), str):
                return str(line[key])
    return ""


def _zone(env: Mapping[str, str]) -> Any:
    """Return the zone the real CLIs print local times in: $TZ, /etc/timezone, else UTC."""
    names = [env.get("TZ", "").lstrip(":")]
    try:
        names.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    for name in names:
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return zoneinfo.ZoneInfo("UTC")


def _codex_model(inv: playbook.Invocation, codex_home: str, *, thread: Rollout) -> str:
    """Return the model codex would use: -m, then -c model=…, then a resumed thread's own,
    then config.toml, then its default."""
    if inv.opts.get("model"):
        return str(inv.opts["model"])
    for override in reversed(inv.opts.get("config") or []):
        key, _, value = override.partition("=")
        if key.strip() == "model" and value.strip():
            return value.strip().strip("\"'")
    if thread.exists:
        contexts = [ln for ln in _jsonl(thread.path) if ln.get("type") == "turn_context"]
        model = (contexts[-1].get("payload") or {}).get("model") if contexts else None
        if isinstance(model, str) and model:
            return model
    try:
        text = Path(codex_home, "config.toml").read_text(encoding="utf-8")
    except OSError:
        return playbook.DEFAULT_CODEX_MODEL
    for line in text.splitlines():
        if line.strip().startswith("["):
            break
        match = re.match(r"\s*model\s*=\s*[\"']([^\"']+)[\"']", line)
        if match:
            return match.group(1)
    return playbook.DEFAULT_CODEX_MODEL


class Rollout:
    """The session file of one codex thread, written the way codex writes it."""

    def __init__(self, codex_home: str, thread_id: str, *, resumed: bool) -> None:
        sessions = Path(codex_home) / "sessions"
        found = sorted(sessions.glob(f"*/*/*/rollout-*-{thread_id}.jsonl")) if resumed else []
        self.exists = bool(found)
        self.path = found[0] if found else sessions / rollout.file_name(thread_id, time.time())
        self.pending: list[dict[str, Any]] = []

    def write(self, lines: list[dict[str, Any]]) -> None:
        """Append lines (a resumed thread's file grows; a new one is created)."""
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(
            json.dumps(ln, ensure_ascii=False, separators=(",", ":")) + "\n" for ln in lines
        )
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
        self.exists = True

    def flush(self) -> None:
        """Write what is still pending."""
        lines, self.pending = self.pending, []
        self.write(lines)


class State:
    """What one account (a HOME) remembers across runs: its limit, and sessions a limit cut."""

    def __init__(self, home: str, agent: str) -> None:
        self.dir = Path(home) / ".fake-agent"
        self.account = self.dir / f"{agent}-limit.json"

    def decide(
        self, scenario: str, *, session: str | None, now: float
    ) -> tuple[str, dict[str, Any] | None]:
        """Return the scenario this run plays and the limit in force, if any.

        An explicit quota scenario sets a new limit; while one is in force every other run
        hits it at start; a session a limit cut, resumed after the reset, goes on to the end.
        """
        limit = _read_json(self.account)
        if limit is not None and float(limit.get("resets_at", 0)) <= now:
            limit = None  # the window has reset
        cut = session is not None and _read_json(self.dir / "sessions" / f"{session}.json")
        spec = playbook.quota_spec(scenario)
        if spec is not None and spec[0] != "quota_resume" and not cut:
            name, seconds = spec
            kind = "rate_limited_no_reset" if name == "quota_noreset" else "usage_limit"
            window = "seven_day" if name == "quota_weekly" else "five_hour"
            return scenario, {"resets_at": now + seconds, "window": window, "kind": kind}
        if limit is not None:
            name = (
                "quota_noreset" if limit.get("kind") == "rate_limited_no_reset" else "quota_start"
            )
            if limit.get("window") == "seven_day" and name == "quota_start":
                name = "quota_weekly"
            return name, limit
        # A session a limit cut goes on to the end once the limit is gone, whatever its prompt.
        return ("quota_resume" if cut else scenario), None

    def limit(self, limit: dict[str, Any], *, session: str) -> None:
        """Remember the account's limit and that it cut this session."""
        _write_json(self.account, limit)
        _write_json(self.dir / "sessions" / f"{session}.json", {"cut_by": limit})


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """Return the JSON objects of a JSONL file (unreadable lines skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _finish(inv: playbook.Invocation, lines: list[dict[str, Any]], *, stream: bool) -> None:
    """Print the non-streaming outputs: claude json/text, codex plain mode and its -o file."""
    last = lines[-1] if lines else {}
    if inv.agent == "claude" and last.get("type") == "result" and not stream:
        if inv.opts.get("output_format") == "json":
            _emit(last)
        else:
            print(last.get("result") or "\n".join(last.get("errors", [])), flush=True)
    if inv.agent == "codex":
        texts = [
            ln["item"]["text"] for ln in lines
            if ln.get("type") == "item.completed" and ln["item"].get("type") == "agent_message"
        ]  # fmt: skip
        if texts and inv.opts.get("output_last_message"):
            Path(inv.opts["output_last_message"]).write_text(texts[-1], encoding="utf-8")
        if texts and not stream:
            print(texts[-1], flush=True)


def _hang(agent: str, interval: float) -> None:
    """Never finish: claude waits silently, codex keeps announcing reconnects."""
    attempt = 0
    while True:
        if agent != "codex":
            time.sleep(3600)
            continue
        time.sleep(interval)
        attempt = attempt % 5 + 1
        message = f"Reconnecting... {attempt}/5 (stream disconnected before completion)"
        _emit({"type": "error", "message": message})


def main(argv: list[str] | None = None) -> int:
    """Run as ``claude``/``codex`` (by argv[0]'s name) or as ``agent.py claude|codex ARGS``."""
    argv = list(sys.argv if argv is None else argv)
    # Recover the exact bytes of each argument, whatever the locale.
    args = [os.fsencode(a).decode("utf-8", "surrogateescape") for a in argv[1:]]
    if args and args[0] in playbook.VERSIONS:
        agent = args.pop(0)
    elif argv and Path(argv[0]).name in playbook.VERSIONS:
        agent = Path(argv[0]).name
    else:
        sys.stderr.write("usage: agent.py claude|codex ARGS...\n")
        return 2
    try:
        if args[:1] in (["--version"], ["-v"], ["-V"]):
            print(playbook.VERSIONS[agent], flush=True)
            return 0
        if agent == "codex" and args[:2] == ["login", "status"]:
            home = os.environ.get("CODEX_HOME") or os.path.expanduser("~/.codex")
            text, status = playbook.codex_login_status(_read_json(Path(home) / "auth.json"))
            sys.stderr.write(text + "\n")  # codex 0.169 prints it on stderr
            return status
        parse = playbook.parse_claude if agent == "claude" else playbook.parse_codex
        return run(parse(args), os.environ)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
