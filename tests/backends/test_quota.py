"""Usage-limit detection against every recorded quota transcript, and the reset-time parsers.

The codex cases read their facts the way the hub does: the real host command
(:func:`render_codex_facts`) runs in bash over a task directory and a CODEX_HOME laid out as
codex lays them out, holding the recorded session file and config.toml.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import subprocess
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dobby.backends import get_backend
from dobby.backends.codex import parse_facts
from dobby.backends.quota import parse_claude_reset, parse_codex_reset
from dobby.core.models import Reason, Result, TaskStatus, Tokens
from dobby.hostside.results import render_codex_facts
from dobby.hostside.scripts import TaskPaths
from dobby.replay.playbook import QUOTA

START = 1796025120  # when the recording's stand-in started (07:52:00 UTC)
R5, R7 = START + 3600, START + 3 * 86400  # its five-hour and weekly resets
COMPLETED, FAILED = TaskStatus.COMPLETED, TaskStatus.FAILED
LIMIT, NO_RESET = "usage_limit", "rate_limited_no_reset"
STDOUTS = sorted(
    p.name
    for p in QUOTA.iterdir()
    if p.suffix in (".jsonl", ".json", ".txt") and not p.name.endswith(".rollout.jsonl")
)


def quota(kind: str, window: str | None, resets_at: float | None, source: str, worked: bool):
    return {"kind": kind, "window": window, "resets_at": resets_at, "source": source,
            "worked": worked}  # fmt: skip


FIVE_H = quota(LIMIT, "five_hour", R5, "event", False)
FIVE_H_TEXT = quota(LIMIT, "five_hour", R5, "text", False)
WEEK = quota(LIMIT, "seven_day", R7, "event", False)
FIVE_H_WORKED = quota(LIMIT, "five_hour", R5, "event", True)
CODEX_MID = quota(LIMIT, "five_hour", R5, "rollout", True)
WARN_COST = (1500 * 1.5 + 3000 * 0.15 + 150 * 12) / 1e6
API_KEY_429 = quota(NO_RESET, None, None, "none", False)
CODEX_5H = quota(LIMIT, "five_hour", R5, "rollout", False)

# file → expected: status, reason, quota (None: no limit), api status, windows' statuses, cost
# fmt: off
CASES: dict[str, dict[str, Any]] = {
    "claude-oauth-quota-5h.jsonl": dict(status=FAILED, reason=Reason.USAGE_LIMIT, quota=FIVE_H,
                                        api=429, windows=["rejected"], cost=0.0),
    "claude-oauth-quota-5h-defaultretries.jsonl": dict(status=FAILED, quota=FIVE_H, api=429),
    "claude-oauth-quota-5h-max.jsonl": dict(status=FAILED, quota=FIVE_H),
    "claude-oauth-quota-5h-pro.jsonl": dict(status=FAILED, quota=FIVE_H),
    "claude-oauth-quota-5h-tz-shanghai.jsonl": dict(status=FAILED, quota=FIVE_H),
    # --output-format json: no event, the reset read from "resets 8:52am (UTC)"
    "claude-oauth-quota-5h.json": dict(
        status=FAILED, reason=Reason.USAGE_LIMIT, quota=FIVE_H_TEXT,
        windows=[]),
    "claude-oauth-quota-5h.txt": dict(status=FAILED, reason=Reason.EXIT_CODE, quota=None),
    "claude-oauth-quota-7d.jsonl": dict(
        status=FAILED, reason=Reason.USAGE_LIMIT, quota=WEEK),
    "claude-oauth-quota-mid.jsonl": dict(
        status=FAILED, reason=Reason.USAGE_LIMIT, quota=FIVE_H_WORKED,
        windows=["allowed", "rejected"], cost=0.006555, turns=2),
    "claude-oauth-quota-ok.jsonl": dict(status=COMPLETED, quota=None, windows=["allowed"]),
    "claude-oauth-quota-resume.jsonl": dict(status=COMPLETED, quota=None, windows=["allowed"]),
    "claude-oauth-quota-short-watchdog.jsonl": dict(status=COMPLETED, quota=None),
    "claude-oauth-quota-warn.jsonl": dict(status=COMPLETED, windows=["allowed"]),
    "claude-oauth-quota-warn-early.jsonl": dict(status=COMPLETED, windows=["allowed_warning"],
                                                utilization=0.91),
    "claude-oauth-quota-warn-early.json": dict(status=COMPLETED, windows=[]),
    "claude-oauth-quota-warn-threshold.jsonl": dict(status=COMPLETED, windows=["allowed_warning"]),
    # waiting in CLAUDE_CODE_RETRY_WATCHDOG until killed: no result, no limit claimed
    "claude-oauth-quota-5h-watchdog.jsonl": dict(status=FAILED, reason=Reason.EXIT_CODE,
                                                 quota=None),
    "claude-quota-5h.jsonl": dict(status=FAILED, reason=Reason.USAGE_LIMIT, quota=API_KEY_429,
                                  api=429, windows=[], cost=0.0),
    "claude-quota-5h-defaultretries.jsonl": dict(status=FAILED, quota=API_KEY_429),
    "claude-quota-5h.json": dict(status=FAILED, quota=API_KEY_429),
    "claude-quota-mid.jsonl": dict(status=FAILED, quota=quota(NO_RESET, None, None, "none", True)),
    "claude-quota-ok.jsonl": dict(status=COMPLETED, quota=None, windows=[]),
    "claude-quota-warn.jsonl": dict(status=COMPLETED, quota=None),
    "codex-quota.jsonl": dict(status=FAILED, reason=Reason.USAGE_LIMIT, quota=CODEX_5H, api=429,
                              models=["gpt-5.5"], cost=0.0),
    "codex-quota-defaultretries.jsonl": dict(status=FAILED, quota=CODEX_5H),
    "codex-quota-retries0.jsonl": dict(status=FAILED, quota=CODEX_5H),
    "codex-quota-tz-shanghai.jsonl": dict(status=FAILED, quota=CODEX_5H),
    "codex-quota-weekly.jsonl": dict(
        status=FAILED, quota=quota(LIMIT, "seven_day", R7, "rollout", False)),
    # the text's reset (from the error body, +2 h) is later than the headers' (+1 h): it wins
    "codex-quota-reset-sources.jsonl": dict(
        status=FAILED, quota=quota(LIMIT, "five_hour", START + 2 * 3600 + 180, "text", False)),
    # a tool call ran before the limit: tokens and cost from the rollout's last token count
    "codex-quota-mid.jsonl": dict(
        status=FAILED, reason=Reason.USAGE_LIMIT, quota=CODEX_MID,
        tokens=Tokens(input=1500, output=50, cache_read=1000),
        cost=(500 * 1.50 + 1000 * 0.15 + 50 * 12.00) / 1e6, duration_ms=843),
    "codex-quota-plain429.jsonl": dict(status=FAILED, reason=Reason.USAGE_LIMIT,
                                       quota=quota(NO_RESET, None, None, "none", False), api=429),
    "codex-quota-plain429-defaultretries.jsonl": dict(
        status=FAILED, quota=quota(NO_RESET, None, None, "none", False)),
    "codex-quota-resume.jsonl": dict(
        status=COMPLETED, quota=None, models=["gpt-5.5"], windows=["allowed", "allowed"],
        tokens=Tokens(input=6000, output=200, cache_read=4000)),
    "codex-quota-warn.jsonl": dict(status=COMPLETED, quota=None, windows=["allowed", "allowed"],
                                   utilization=0.85, cost=WARN_COST),
}
# fmt: on


def test_every_quota_transcript_has_a_case() -> None:
    assert set(CASES) == set(STDOUTS)


def exit_code(name: str) -> int:
    return int((QUOTA / f"{name}.exitcode").read_text())


def codex_facts(name: str, tmp: Path) -> str:
    """Lay out a host as codex leaves it and run the real facts command over it."""
    stem = name.removesuffix(".jsonl")
    rollout = QUOTA / f"{stem}.rollout.jsonl"
    home = tmp / "codex-home"
    thread = parse_facts_thread(QUOTA / name)
    day = home / "sessions" / "2026" / "11" / "30"
    day.mkdir(parents=True)
    shutil.copyfile(rollout, day / f"rollout-2026-11-30T07-54-53-{thread}.jsonl")
    shutil.copyfile(QUOTA / f"{stem}.config.toml", home / "config.toml")
    paths = TaskPaths(workdir=str(tmp / "dobby"), task_id="t1")
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    shutil.copyfile(QUOTA / name, task_dir / "out.jsonl")
    zone = "Asia/Shanghai" if "shanghai" in name else "Etc/UTC"
    (task_dir / "env").write_text(f"export CODEX_HOME='{home}'\nexport TZ='{zone}'\n")
    done = subprocess.run(
        ["bash", "-c", render_codex_facts(paths=paths)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout


def parse_facts_thread(stream: Path) -> str:
    first = stream.read_text(encoding="utf-8").splitlines()[0]
    return first.split('"thread_id":"')[1].split('"')[0]


def collect(name: str, tmp: Path) -> Result:
    backend = "codex" if name.startswith("codex") else "claude"
    facts = codex_facts(name, tmp) if backend == "codex" else ""
    lines = (QUOTA / name).read_text(encoding="utf-8").splitlines(keepends=True)
    return get_backend(backend).collect(
        lines, exit_code=exit_code(name), host_facts=facts, now=START
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_quota_transcript(name: str, tmp_path: Path) -> None:
    expected = CASES[name]
    result = collect(name, tmp_path)
    assert result.status is expected["status"]
    if "reason" in expected:
        assert result.reason is expected["reason"]
    if "quota" in expected:
        got = result.quota.to_dict() if result.quota else None
        if got is not None:
            assert got.pop("message")  # the CLI's own words are kept
            if got["resets_at"] is not None:
                got["resets_at"] = int(got["resets_at"])
        assert got == expected["quota"]
        if expected["quota"] is not None:
            assert result.reason is Reason.USAGE_LIMIT and result.api_error_status == 429
    if "api" in expected:
        assert result.api_error_status == expected["api"]
    if "windows" in expected:
        assert [w.status for w in result.windows] == expected["windows"]
    if "utilization" in expected:
        assert result.windows[0].utilization == pytest.approx(expected["utilization"])
    if "cost" in expected:
        assert result.cost_usd == pytest.approx(expected["cost"])
    for key in ("models", "tokens", "turns", "duration_ms"):
        if key in expected:
            assert getattr(result, key) == expected[key], key
    if result.status is COMPLETED:
        assert result.quota is None and result.reason is None


def test_codex_limit_without_its_rollout_reads_the_text_in_no_zone() -> None:
    """With no facts there is no zone: the reset stays unknown rather than guessed."""
    lines = (QUOTA / "codex-quota.jsonl").read_text(encoding="utf-8").splitlines()
    result = get_backend("codex").collect(lines, exit_code=1, now=START)
    assert result.quota is not None and result.quota.kind == LIMIT
    assert (result.quota.resets_at, result.quota.source) == (None, "none")
    assert result.reason is Reason.USAGE_LIMIT and result.cost_usd == 0.0


# -- the model and cost of a codex run ----------------------------------------------------------

CODEX_RUN = (QUOTA / "codex-quota-warn.jsonl").read_text(encoding="utf-8").splitlines()


def facts_text(*, model: str = "", config: str = "", rollout: list[str] | None = None) -> str:
    lines = list(rollout or [])
    if model:
        lines.append('6:{"type":"turn_context","payload":{"model":"' + model + '"}}')
    body = "\n".join(lines)
    return (
        f"now={START}\nutc_offset=+0000\nzone=Etc/UTC\nconfig_model={config}\n"
        f"thread_id=t\nrollout=/r\n--- rollout ---\n{body}\n"
    )


# fmt: off
@pytest.mark.parametrize(
    ("facts", "task_model", "models", "cost", "warning"),
    [
        (facts_text(model="gpt-5.5", config='"o3"'), None, ["gpt-5.5"], WARN_COST, None),
        (facts_text(config='"gpt-5.5"  # pinned'), None, ["gpt-5.5"], WARN_COST, None),
        (facts_text(config="'gpt-5.5'"), None, ["gpt-5.5"], WARN_COST, None),
        (facts_text(), "gpt-5.5", ["gpt-5.5"], WARN_COST, None),
        (facts_text(model="gpt-9-turbo"), None, ["gpt-9-turbo"], None,
         "model 'gpt-9-turbo' has no price; add it to dobby.yaml as `prices: {gpt-9-turbo: "),
        (facts_text(config="not toml ["), None, [], None, "the run's model is not known"),
        ("", None, [], None, "the run's model is not known"),
    ],
)
def test_codex_model_and_cost(
    facts: str, task_model: str | None, models: list[str], cost: float | None,
    warning: str | None,
) -> None:
    result = get_backend("codex").collect(CODEX_RUN, exit_code=0, model=task_model,
                                          host_facts=facts)
    assert result.status is COMPLETED and result.models == models
    if cost is None:
        assert result.cost_usd is None
        assert warning is not None and len(result.warnings) == 1 and warning in result.warnings[0]
    else:
        assert result.cost_usd == pytest.approx(cost) and result.warnings == []
# fmt: on


def test_garbled_facts_are_ignored() -> None:
    facts = parse_facts("now=x\nzone=Nowhere/Else\nutc_offset=+0530\n--- rollout ---\nno:{\n9\n")
    assert facts.now is None and facts.model is None and facts.tokens is None
    assert facts.tz is not None and facts.tz.utcoffset(None) == _dt.timedelta(hours=5, minutes=30)


# -- reset texts --------------------------------------------------------------------------------

UTC = ZoneInfo("UTC")


def epoch(text: str, zone: _dt.tzinfo = UTC) -> float:
    return _dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


# fmt: off
@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("You've hit your session limit · resets 8:52am (UTC)", START, R5),
        ("You've hit your session limit · resets 4:52pm (Asia/Shanghai)", START, R5),
        ("You've hit your weekly limit · resets Dec 3, 7:52am (UTC)", START, R7),
        ("resets 12:05am (UTC)", START, epoch("2026-12-01T00:05")),  # past midnight: tomorrow
        ("resets 7:52am (UTC)", START + 30, START),  # printed in whole minutes: still now
        ("resets 12pm (UTC)", START, epoch("2026-11-30T12:00")),
        ("resets Jan 2, 9:00am (UTC)", epoch("2026-12-30T10:00"), epoch("2027-01-02T09:00")),
        ("resets Feb 30, 9:00am (UTC)", START, None),
        ("resets 8:52am (Mars/Olympus)", START, None),
        ("You've hit your session limit", START, None),
        ("API Error: Request rejected (429) · try later", START, None),
    ],
)
def test_parse_claude_reset(text: str, now: float, expected: float | None) -> None:
    assert parse_claude_reset(text, now=now) == expected


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("… or try again at 8:52 AM.", UTC, R5),
        ("… or try again at 4:52 PM.", ZoneInfo("Asia/Shanghai"), R5),
        ("… or try again at Dec 3rd, 2026 7:52 AM.", UTC, R7),
        ("… or try again at Dec 1st, 2026 12:00 AM.", UTC, epoch("2026-12-01T00:00")),
        ("… or try again at 8:52 AM.", _dt.timezone(_dt.timedelta(hours=-5)),
         epoch("2026-11-30T08:52", _dt.timezone(_dt.timedelta(hours=-5)))),
        ("… or try again at 8:52 AM.", None, None),  # no zone known: no guess
        ("… or try again at 25:99 AM.", UTC, None),
        ("exceeded retry limit, last status: 429 Too Many Requests", UTC, None),
    ],
)
def test_parse_codex_reset(text: str, zone: _dt.tzinfo | None, expected: float | None) -> None:
    assert parse_codex_reset(text, now=START, tz=zone) == expected
# fmt: on
