"""Usage limits and budgets, pure: accounts, when a limited account may go on, the ledger,
halves that add up, and the planner holding back limited accounts and full budgets."""

from __future__ import annotations

import datetime as _dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dobby.core.errors import ValidationError
from dobby.core.fields import check_budget
from dobby.core.models import Host, QuotaSignal, Task, Tokens
from dobby.results import halves
from dobby.scheduler.accounts import (
    MAX_RESET_AHEAD,
    Account,
    account_hosts,
    account_key,
    blocked_until,
    decide_limit,
    limited_hosts,
)
from dobby.scheduler.budgets import Ledger, window_end, window_start
from dobby.scheduler.capacity import HostSlot
from dobby.scheduler.plan import PlanInput, plan

NOW = 1_800_000_000.0  # a fixed epoch: no test reads the clock
GRACE, BACKOFF = 60.0, 900.0


def signal(**fields: object) -> QuotaSignal:
    base: dict[str, object] = {"kind": "usage_limit", "window": "five_hour", "source": "event"}
    return QuotaSignal(**{**base, **fields})  # type: ignore[arg-type]


# -- accounts ---------------------------------------------------------------------------------


def test_accounts_default_per_host_and_backend_and_are_shared_by_name() -> None:
    alone = Host(name="h1")
    team = Host(name="h2", account="team")
    split = Host(name="h3", account="team", accounts={"codex": "personal"})
    assert account_key(alone, "claude") == "claude/h1"
    assert account_key(alone, "codex") == "codex/h1"  # never the claude login's quota
    assert account_key(alone, "shell") is None  # a shell command spends no quota
    assert account_key(team, "claude") == account_key(split, "claude") == "claude/team"
    assert account_key(split, "codex") == "codex/personal"
    assert account_hosts([alone, team, split], "claude/team") == ["h2", "h3"]


@pytest.mark.parametrize(
    ("fields", "until", "source", "note"),
    [
        ({"resets_at": NOW + 3600}, NOW + 3600 + GRACE, "event", "resets 2027-01-15 09:00:00 UTC"),
        ({"resets_at": NOW + 3600, "source": "rollout"}, NOW + 3600 + GRACE, "rollout", "rollout"),
        # text is whole minutes rounded down: a minute is added so the wall is past for sure
        ({"resets_at": NOW + 600, "source": "text"}, NOW + 660 + GRACE, "text", "from text"),
        ({"resets_at": None, "kind": "rate_limited_no_reset", "window": None}, NOW + BACKOFF,
         "backoff", "rate limited with no reset time; trying again in 15m00s (backoff 1)"),
        ({"resets_at": None, "source": "none"}, NOW + BACKOFF, "backoff",
         "no reset time could be read"),
        ({"resets_at": NOW - 120}, NOW + BACKOFF, "backoff", "is in the past"),
        ({"resets_at": NOW}, NOW + BACKOFF, "backoff", "is in the past"),
        ({"resets_at": NOW + MAX_RESET_AHEAD + 1}, NOW + BACKOFF, "backoff",
         "is more than 7 days away"),
    ],
)  # fmt: skip
def test_decide_limit(fields: dict, until: float, source: str, note: str) -> None:
    decision = decide_limit(signal(**fields), now=NOW, grace=GRACE, backoff=BACKOFF, level=0)
    assert (decision.until, decision.source) == (until, source)
    assert note in decision.note
    assert decision.backoff_level == (1 if source == "backoff" else 0)


@pytest.mark.parametrize(
    ("window", "level", "wait"),
    [
        (None, 0, 900),
        (None, 1, 1800),
        (None, 4, 14400),
        (None, 5, 18000),  # capped at the 5-hour window when none is known
        (None, 60, 18000),
        ("seven_day", 9, 900 * 2**9),  # under the weekly window: doubled again
        ("seven_day", 10, 7 * 86400),  # 900 * 2**10 > 7 days: capped at the weekly window
    ],
)
def test_backoff_doubles_up_to_the_window(window: str | None, level: int, wait: float) -> None:
    sig = signal(resets_at=None, window=window, kind="rate_limited_no_reset")
    decision = decide_limit(sig, now=NOW, grace=GRACE, backoff=BACKOFF, level=level)
    assert decision.until - NOW == wait and decision.backoff_level == level + 1


@settings(max_examples=200, deadline=None)
@given(
    resets=st.one_of(st.none(), st.floats(-1e7, 1e7, allow_nan=False)),
    level=st.integers(0, 100),
    backoff=st.floats(1, 5000),
    grace=st.floats(0, 600),
)
def test_a_limit_never_lets_work_go_on_at_once(
    resets: float | None, level: int, backoff: float, grace: float
) -> None:
    # Whatever the agent printed, the next launch on the account is in the future: no hot loop.
    sig = signal(resets_at=None if resets is None else NOW + resets)
    decision = decide_limit(sig, now=NOW, grace=grace, backoff=backoff, level=level)
    assert decision.until > NOW
    assert decision.until - NOW <= max(MAX_RESET_AHEAD + grace, 7 * 86400.0)


def test_an_account_remembers_windows_limits_and_round_trips() -> None:
    acc = Account(key="claude/team")
    assert acc.observe([], now=NOW) is False
    decision = decide_limit(signal(resets_at=NOW + 100), now=NOW, grace=1, backoff=BACKOFF, level=0)
    acc.hit(decision, signal(resets_at=NOW + 100, message="You've hit…"), now=NOW, task="t1")
    assert acc.limited(NOW) and acc.limited(NOW + 100) and not acc.limited(NOW + 101)
    assert acc.windows["five_hour"]["status"] == "rejected"
    again = Account.from_dict(acc.to_dict())
    assert again == acc and (again.backend, again.name) == ("claude", "team")
    acc.clear(now=NOW + 101)
    assert acc.limit is None and acc.windows["five_hour"]["status"] == "allowed"


def test_limited_hosts_and_the_earliest_reset_a_task_waits_for() -> None:
    hosts = [Host(name="h1", account="team"), Host(name="h2", account="team"), Host(name="h3")]
    team = Account(key="claude/team", limited_until=NOW + 50)
    own = Account(key="claude/h3", limited_until=NOW + 20)
    accounts = {a.key: a for a in (team, own)}
    assert limited_hosts(accounts, hosts, now=NOW) == {"claude": {"h1", "h2", "h3"}}
    assert limited_hosts(accounts, hosts, now=NOW + 30) == {"claude": {"h1", "h2"}}
    assert blocked_until(hosts, "claude", accounts, now=NOW) == (
        NOW + 20,
        ["claude/h3", "claude/team"],
    )
    assert blocked_until(hosts, "codex", accounts, now=NOW) == (None, [])


# -- planning -----------------------------------------------------------------------------------


def qtask(tid: str, **fields: object) -> Task:
    stamp = _dt.datetime.fromtimestamp(NOW, _dt.UTC).isoformat()
    fields = {"backend": "claude", "queued_at": stamp, "created_at": stamp, **fields}
    return Task(prompt=tid, id=tid, **fields)  # type: ignore[arg-type]


def slots(*names: str) -> list[HostSlot]:
    clis = frozenset({"claude", "codex"})  # probed: both agent CLIs are there
    return [HostSlot(host=Host(name=n), reachable=True, clis=clis) for n in names]


def test_limited_accounts_send_work_elsewhere_or_hold_it() -> None:
    tasks = [qtask("a"), qtask("b", want_host="h1"), qtask("c", backend="shell", want_host="h1")]
    result = plan(
        PlanInput(
            pending=tasks, hosts=slots("h1", "h2"), running_total=0, max_total=10,
            limited={"claude": {"h1"}}, now=NOW,
        )
    )  # fmt: skip
    assert {d.task_id: d.host for d in result.starts} == {"a": "h2", "c": "h1"}
    assert result.waiting == {"b": "usage_limit"}  # not failed: its only host comes back


def test_a_cut_task_goes_on_only_where_its_session_lives() -> None:
    cut = qtask("cut", resume_host="h2", resume_session="s1")
    result = plan(PlanInput(pending=[cut], hosts=slots("h1", "h2"), running_total=0, max_total=10))
    assert [(d.task_id, d.host) for d in result.starts] == [("cut", "h2")]
    held = plan(
        PlanInput(
            pending=[cut], hosts=slots("h1", "h2"), running_total=0, max_total=10,
            limited={"claude": {"h2"}},
        )
    )  # fmt: skip
    assert held.starts == [] and held.waiting == {"cut": "usage_limit"}


def test_full_budgets_hold_agent_tasks_never_shell_ones() -> None:
    tasks = [
        qtask("a", project="app"),
        qtask("b", project="web"),
        qtask("s", project="app", backend="shell"),
    ]

    def run(**kw: object) -> tuple[set[str], dict[str, str]]:
        state = PlanInput(pending=tasks, hosts=slots("h1"), running_total=0, max_total=10, **kw)  # type: ignore[arg-type]
        result = plan(state)
        return {d.task_id for d in result.starts}, result.waiting

    assert run(over_budget={"app"}) == ({"b", "s"}, {"a": "budget"})
    assert run(hub_over_budget=True) == ({"s"}, {"a": "budget", "b": "budget"})


# -- budgets ----------------------------------------------------------------------------------


D = _dt.date(2026, 11, 30)  # a Monday


@pytest.mark.parametrize(
    ("window", "start", "end"),
    [
        ("day", D, _dt.date(2026, 12, 1)),
        ("week", D, _dt.date(2026, 12, 7)),
        ("month", _dt.date(2026, 11, 1), _dt.date(2026, 12, 1)),
    ],
)
def test_budget_windows(window: str, start: _dt.date, end: _dt.date) -> None:
    assert window_start(window, D + _dt.timedelta(hours=0)) == start
    assert window_end(window, D) == end
    assert window_start("week", _dt.date(2026, 12, 6)) == D  # Sunday belongs to Monday's week


def test_the_ledger_counts_growth_once_and_forgets_finished_tasks() -> None:
    ledger = Ledger()
    assert ledger.charge("t1", 0.5, project="app", day=D, finished=False) == 0.5  # a half
    assert ledger.charge("t1", 0.5, project="app", day=D, finished=False) == 0.0  # saved again
    assert ledger.charge("t1", 1.25, project="app", day=D, finished=True) == 0.75  # the rest
    assert ledger.charge("t1", 0.4, project="app", day=D, finished=True) == 0.4  # a retry's run
    assert ledger.charge("t2", None, project=None, day=D, finished=True) == 0.0  # unknown cost
    ledger.charge("t3", 2.0, project=None, day=D - _dt.timedelta(days=1), finished=True)
    assert ledger.spent("day", D, "app") == 1.65 and ledger.spent("day", D) == 1.65
    assert ledger.spent("month", D) == 3.65 and ledger.counted == {}
    over = ledger.overrun({"day": 5.0, "month": 3.0}, D)
    assert over is not None and (over.window, over.cap, over.rolls) == (
        "month", 3.0, _dt.date(2026, 12, 1)
    )  # fmt: skip
    text = over.text(_dt.UTC)
    assert text.startswith("the hub spent $3.65 of its $3.00 month budget; waits until 2026-12-01")
    assert ledger.overrun({"day": 1.65}, D, "app") is not None
    assert ledger.overrun({"day": 1.66}, D, "app") is None
    assert Ledger.from_dict(ledger.to_dict()) == ledger
    ledger.prune(D + _dt.timedelta(days=400))
    assert ledger.days == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"day": 20, "month": 300}, {"day": 20.0, "month": 300.0}),
        ("day:20,week:$50.5", {"day": 20.0, "week": 50.5}),
        ('{"month": 10}', {"month": 10.0}),
        (None, {}),
        ("none", {}),
    ],
)
def test_budget_values(value: object, expected: dict[str, float]) -> None:
    assert check_budget(value, "budget_usd") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"day": 0}, "budget_usd: day must be a positive number of USD, got 0"),
        ({"day": -5}, "day must be a positive number of USD, got -5"),
        ("day:abc", "day must be a positive number of USD, got 'abc'"),
        ({"year": 5}, "unknown window 'year' (use day, week, month)"),
        ("20", "must look like day:20,month:300"),
        ({"day": True}, "day must be a positive number of USD, got True"),
        ({"day": float("inf")}, "day must be a positive number of USD"),
        ([20], "must map day/week/month to USD"),
    ],
)
def test_bad_budgets_are_refused_with_the_reason(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("$", r"\$").replace("(", r"\(")
                       .replace(")", r"\)")):  # fmt: skip
        check_budget(value, "budget_usd")


# -- halves -----------------------------------------------------------------------------------


def test_halves_add_up_and_a_resumed_codex_thread_counts_only_what_it_added() -> None:
    prices = {}
    task = Task(prompt="x", backend="claude", session_id="s1", cost_usd=0.3,
                tokens=Tokens(input=100, output=10))  # fmt: skip
    own = halves.settle(task, prices=prices)
    assert own.cost_usd == 0.3 and task.cost_usd == 0.3
    halves.record_half(task, own, finished_at="2026-11-30T10:00:00Z")
    task.attempt += 1
    task.cost_usd, task.tokens = 0.2, Tokens(input=50, output=5)  # the second run's own
    halves.settle(task, prices=prices)
    assert task.cost_usd == 0.5 and task.tokens == Tokens(input=150, output=15)
    # A retry starts the totals again.
    task.attempts = [*task.attempts, {"attempt": 1, "status": "failed"}]
    task.cost_usd, task.tokens = 0.1, Tokens(input=1)
    halves.settle(task, prices=prices)
    assert task.cost_usd == 0.1

    from dobby.backends.pricing import ModelPrice

    price = {"gpt-5.5": ModelPrice(input=1.0, output=10.0, cache_read=0.1)}
    codex = Task(prompt="x", backend="codex", session_id="th", models=["gpt-5.5"],
                 tokens=Tokens(input=1000, output=100), cost_usd=0.002)  # fmt: skip
    halves.record_half(codex, halves.settle(codex, prices=price), finished_at="t")
    codex.tokens = Tokens(input=3000, output=300)  # the thread's totals after the resume
    codex.cost_usd = 0.006
    own = halves.settle(codex, prices=price)
    assert own.tokens == Tokens(input=2000, output=200)
    assert own.cost_usd == pytest.approx((2000 * 1.0 + 200 * 10.0) / 1e6)
    assert codex.tokens == Tokens(input=3000, output=300)
    assert codex.cost_usd == pytest.approx(0.002 + own.cost_usd)


@pytest.mark.parametrize(
    "text",
    [
        "You've hit your session limit · resets soon (UTC)",
        "You've hit your session limit · resets 8:52am (Mars/Olympus)",
        "You've hit your session limit · resets 25:99pm (UTC)",
    ],
)
def test_reset_text_that_does_not_parse_means_a_backoff_not_a_relaunch(text: str) -> None:
    from dobby.backends.quota import claude_signal

    sig = claude_signal(text, rejected=None, worked=False, now=NOW)
    assert (sig.kind, sig.resets_at, sig.window) == ("usage_limit", None, "five_hour")
    decision = decide_limit(sig, now=NOW, grace=GRACE, backoff=BACKOFF, level=0)
    assert decision.until == NOW + BACKOFF and "no reset time could be read" in decision.note
