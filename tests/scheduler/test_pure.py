"""The scheduler's pure decisions: queue order, caps, placement, dependencies."""

from __future__ import annotations

import datetime as _dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dobby.core.errors import NoEligibleHost, NotFound, ValidationError
from dobby.core.models import Host, Task
from dobby.scheduler import deps
from dobby.scheduler.capacity import HostSlot, check_placeable
from dobby.scheduler.plan import NO_HOST_ANY_MORE, PlanInput, plan
from dobby.scheduler.queue import (
    PRIORITY_RANK,
    PendingQueue,
    aging_bound,
    effective_rank,
    order_key,
    ordered,
)

T0 = 1_800_000_000.0  # a fixed epoch: tests never read the clock
PRIOS = list(PRIORITY_RANK)


def iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task(
    tid: str,
    *,
    priority: str = "normal",
    at: float = 0.0,
    project: str | None = None,
    backend: str = "shell",
    host: str | None = None,
    labels: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    wait: bool = False,
    schedule: str | None = None,
) -> Task:
    return Task(
        prompt=f"task {tid}",
        id=tid,
        priority=priority,
        created_at=iso(T0 + at),
        queued_at=iso(T0 + at),
        project=project,
        backend=backend,
        want_host=host,
        host_selector=list(labels),
        after=list(after),
        wait_for_host=wait,
        schedule_id=schedule,
    )


def host(name: str, *, max_agents: int = 4, labels: tuple[str, ...] = (), backends=None) -> Host:
    return Host(
        name=name,
        max_agents=max_agents,
        labels=list(labels),
        backends=list(backends or ["claude", "codex", "shell"]),
    )


BOTH = frozenset({"claude", "codex"})


def slot(
    h: Host, running: int = 0, reachable: bool | None = True, clis: frozenset[str] | None = BOTH
) -> HostSlot:
    return HostSlot(host=h, running=running, reachable=reachable, clis=clis)


def run_plan(tasks, slots, *, max_total=100, **kw):
    return plan(
        PlanInput(pending=tasks, hosts=slots, running_total=kw.pop("running_total", 0),
                  max_total=max_total, **kw)
    )  # fmt: skip


def started(result) -> dict[str, str]:
    return {d.task_id: d.host for d in result.decisions if d.host}


# --- queue order ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "waited", "aging", "expected"),
    [
        (3, 0, 600, 3),
        (3, 599, 600, 3),
        (3, 600, 600, 2),
        (3, 1799, 600, 1),
        (3, 1800, 600, 0),
        (3, 99999, 600, 0),
        (0, 5000, 600, 0),
        (2, 5000, 0, 2),  # aging off
        (2, -50, 600, 2),  # clock skew: never worse than its own priority
    ],
)
def test_effective_rank(rank: int, waited: float, aging: float, expected: int) -> None:
    assert effective_rank(rank, waited, aging) == expected


def test_priority_then_fifo() -> None:
    tasks = [
        task("a", priority="low", at=0),
        task("b", priority="normal", at=1),
        task("c", priority="urgent", at=2),
        task("d", priority="normal", at=3),
        task("e", priority="high", at=4),
        task("f", priority="urgent", at=5),
    ]
    assert [t.id for t in ordered(tasks)] == ["c", "f", "e", "b", "d", "a"]


def test_aging_lifts_an_old_low_task_above_new_urgent_ones() -> None:
    old = task("old", priority="low", at=0)
    new = task("new", priority="urgent", at=2000)
    assert [t.id for t in ordered([new, old], now=T0 + 1000)] == ["new", "old"]
    assert [t.id for t in ordered([new, old], now=T0 + 2001)] == ["old", "new"]
    assert aging_bound("low", 600) == 1800 and aging_bound("urgent", 600) == 0


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 30),
            st.sampled_from(PRIOS),
            st.integers(0, 5000),
        ),
        max_size=80,
    ),
    now=st.integers(0, 8000),
    aging=st.sampled_from([0, 100, 600]),
)
def test_incremental_queue_matches_a_full_sort(ops, now, aging) -> None:
    queue = PendingQueue(aging=aging)
    model: dict[str, Task] = {}
    for add, n, prio, at in ops:
        tid = f"t{n:02d}"
        if add:
            t = task(tid, priority=prio, at=at)
            queue.put(t)
            model[tid] = t
        else:
            queue.discard(tid)
            model.pop(tid, None)
    assert len(queue) == len(model)
    expected = [t.id for t in ordered(model.values(), T0 + now, aging)]
    assert [t.id for t in queue.ordered(T0 + now)] == expected


# --- placement -----------------------------------------------------------------------------------


def test_ties_go_to_the_host_with_fewest_running() -> None:
    slots = [slot(host("a"), running=2), slot(host("b"), running=0), slot(host("c"), running=1)]
    result = run_plan([task("1"), task("2", at=1), task("3", at=2)], slots)
    assert [d.host for d in result.decisions] == ["b", "b", "c"]


def test_labels_all_must_match_and_backend_must_be_offered() -> None:
    slots = [
        slot(host("cpu", labels=("cpu",))),
        slot(host("gpu", labels=("gpu", "cuda"), backends=["shell"])),
    ]
    result = run_plan(
        [
            task("1", labels=("gpu", "cuda")),
            task("2", labels=("gpu", "big"), at=1),
            task("3", backend="claude", labels=("gpu",), at=2),
            task("4", labels=("gpu", "big"), wait=True, at=3),
        ],
        slots,
    )
    assert started(result) == {"1": "gpu"}
    assert [(d.task_id, d.error) for d in result.decisions if d.host is None] == [
        ("2", NO_HOST_ANY_MORE),
        ("3", NO_HOST_ANY_MORE),
    ]
    assert result.waiting == {"4": "host"}


def test_unreachable_hosts_are_skipped_unless_they_are_the_only_choice() -> None:
    a, b = host("a"), host("b")
    result = run_plan([task("1"), task("2", host="a", at=1)], [slot(a, reachable=False), slot(b)])
    assert started(result) == {"1": "b", "2": "a"}  # 2 wants a: the launch will say why
    waiting = run_plan([task("3", host="a", wait=True)], [slot(a, reachable=False), slot(b)])
    assert waiting.decisions == [] and waiting.waiting == {"3": "host"}


def test_check_placeable_errors_at_submit() -> None:
    hosts = [host("a", labels=("cpu",)), host("b", backends=["shell"])]
    check_placeable(task("ok", labels=("cpu",)), hosts)
    with pytest.raises(NotFound, match="unknown host 'zz'"):
        check_placeable(task("x", host="zz"), hosts)
    with pytest.raises(NoEligibleHost, match="no host matches labels gpu"):
        check_placeable(task("x", labels=("gpu",)), hosts)


def eager_check(task: Task, hosts: list[Host], slots: list[HostSlot] | None) -> None:
    """The placement check as it was: every host looked at, every slot made first."""
    from dobby.scheduler.capacity import eligible, has_backend, missing_cli_message

    names = [h.name for h in hosts]
    if task.want_host and task.want_host not in names:
        raise NotFound(f"unknown host '{task.want_host}' (hosts: {', '.join(names) or 'none'})")
    if not any(eligible(task, h) for h in hosts):
        raise NoEligibleHost("no host matches")
    if slots is not None:
        fit = [s for s in slots if eligible(task, s.host)]
        if fit and all(has_backend(s, task.backend) is False for s in fit):
            raise NoEligibleHost(missing_cli_message(task.backend, [s.host.name for s in fit]))


def outcome(check, *args) -> str:  # type: ignore[no-untyped-def]
    try:
        check(*args)
    except (NotFound, NoEligibleHost) as exc:
        text = str(exc)
        return f"{type(exc).__name__}: {'no host matches' if 'no host matches' in text else text}"
    return "ok"


CLIS = st.sampled_from([None, frozenset(), frozenset({"codex"}), frozenset({"claude"}), BOTH])


@settings(max_examples=400, deadline=None)
@given(
    hosts=st.lists(
        st.tuples(
            st.sampled_from(["cpu", "gpu"]),
            st.sampled_from([("shell",), ("claude", "shell"), ("claude", "codex", "shell")]),
            st.sampled_from([None, True, False]),
            CLIS,
            st.booleans(),  # probed: a host with no state yet has no slot
        ),
        max_size=6,
    ),
    want=st.sampled_from([None, "h0", "h3", "zz"]),
    label=st.sampled_from([None, "cpu", "gpu"]),
    backend=st.sampled_from(["shell", "claude", "codex"]),
    lazily=st.booleans(),
)
def test_the_placement_check_decides_as_the_eager_one_did(  # type: ignore[no-untyped-def]
    hosts, want, label, backend, lazily
) -> None:
    """Stopping at the first host that settles it (slots made as they are read) gives the
    same answer and the same message, whatever the hosts, their probes and the task."""
    models = [
        host(f"h{i}", labels=(lab,), backends=list(backends))
        for i, (lab, backends, *_) in enumerate(hosts)
    ]
    slots = [
        slot(h, reachable=reachable, clis=clis)
        for h, (_, _, reachable, clis, probed) in zip(models, hosts, strict=True)
        if probed
    ]
    t = task("t", host=want, labels=(label,) if label else (), backend=backend)
    expected = outcome(eager_check, t, models, slots)
    given_slots = iter(slots) if lazily else slots
    assert outcome(check_placeable, t, models, given_slots) == expected
    assert outcome(check_placeable, t, models) == outcome(eager_check, t, models, None)


def test_project_caps_skip_to_the_next_project() -> None:
    tasks = [task(f"a{i}", project="a", at=i) for i in range(3)]
    tasks += [task(f"b{i}", project="b", at=10 + i) for i in range(3)]
    result = run_plan(tasks, [slot(host("h", max_agents=10))], project_limits={"b": 2})
    assert sorted(started(result)) == ["a0", "b0", "b1"]  # a: default 1; b: 2
    # a full project's later tasks are not even looked at: they wait on capacity
    assert set(result.waiting.values()) <= {"capacity"} and result.examined == 3
    busy = run_plan(tasks, [slot(host("h", max_agents=10))], busy_projects={"a": 1})
    assert sorted(started(busy)) == ["b0"]


def test_global_cap_and_schedule_overlap() -> None:
    tasks = [task("s1", schedule="s-1"), task("s2", schedule="s-1", at=1), task("x", at=2)]
    result = run_plan(tasks, [slot(host("h"))], max_total=2)
    assert sorted(started(result)) == ["s1", "x"]
    assert result.waiting == {"s2": "schedule"}
    assert started(run_plan(tasks, [slot(host("h"))], max_total=3, running_total=3)) == {}


# --- hypothesis: caps, dependencies, priority, starvation ----------------------------------------


@st.composite
def worlds(draw):
    """A random hub: hosts with load, projects with limits, pending tasks with dependencies."""
    hosts = [
        host(f"h{i}", max_agents=draw(st.integers(0, 3)),
             labels=tuple(draw(st.sets(st.sampled_from(["cpu", "gpu"])))),
             backends=draw(st.sets(st.sampled_from(["claude", "shell"]), min_size=1)))
        for i in range(draw(st.integers(1, 4)))
    ]  # fmt: skip
    slots = [
        slot(h, running=draw(st.integers(0, h.max_agents)),
             reachable=draw(st.sampled_from([True, None, False])))
        for h in hosts
    ]  # fmt: skip
    projects = {f"p{i}": draw(st.integers(1, 3)) for i in range(draw(st.integers(0, 3)))}
    busy = {p: draw(st.integers(0, lim)) for p, lim in projects.items()}
    n = draw(st.integers(0, 25))
    external = {f"x{i}": draw(st.sampled_from(["completed", "running", "failed", "pending"]))
                for i in range(3)}  # fmt: skip
    tasks = []
    for i in range(n):
        earlier = [f"t{j:02d}" for j in range(i)] + list(external)
        tasks.append(
            task(
                f"t{i:02d}",
                priority=draw(st.sampled_from(PRIOS)),
                at=draw(st.integers(0, 3000)),
                project=draw(st.sampled_from([None, *projects])),
                backend=draw(st.sampled_from(["claude", "shell"])),
                labels=tuple(draw(st.sets(st.sampled_from(["cpu", "gpu"]), max_size=1))),
                after=tuple(draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
                            if earlier else ()),
            )
        )  # fmt: skip
    running_total = sum(s.running for s in slots)
    max_total = draw(st.integers(running_total, running_total + 6))
    return slots, projects, busy, tasks, external, running_total, max_total


@pytest.mark.slow  # hundreds of generated cases: seconds to tens of seconds
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), now=st.integers(0, 5000))
def test_plan_never_exceeds_a_cap_nor_starts_before_dependencies(world, now) -> None:
    slots, projects, busy, tasks, external, running_total, max_total = world
    statuses = {**external, **{t.id: "pending" for t in tasks}}
    found = deps.resolve(tasks, statuses.get)
    blocked = {tid: "dependencies" for tid, b in found.items() if b.failed_dep is None}
    doomed = {tid for tid, b in found.items() if b.failed_dep is not None}
    pending = [t for t in tasks if t.id not in doomed]
    result = run_plan(
        pending,
        slots,
        max_total=max_total,
        running_total=running_total,
        project_limits=projects,
        busy_projects=busy,
        blocked=blocked,
        now=T0 + now,
    )
    starts = started(result)
    by_id = {t.id: t for t in tasks}
    # global, host and project caps hold
    assert running_total + len(starts) <= max_total
    for s in slots:
        placed = sum(1 for h in starts.values() if h == s.host.name)
        assert placed == 0 or s.running + placed <= s.host.max_agents
        assert placed == 0 or all(
            by_id[t].backend in s.host.backends for t, h in starts.items() if h == s.host.name
        )
    for p, limit in projects.items():
        placed = sum(1 for t in starts if by_id[t].project == p)
        assert placed == 0 or busy[p] + placed <= limit
    # nothing starts before every dependency completed
    for tid in starts:
        assert all(statuses[d] == "completed" for d in by_id[tid].after)
    # a doomed task is one with a broken dependency, directly or through another task
    for tid in doomed:
        dep = found[tid].failed_dep
        assert statuses.get(dep) == "failed" or dep in doomed


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(PRIOS), st.integers(0, 4000)), min_size=1, max_size=30
    ),
    capacity=st.integers(0, 8),
    now=st.one_of(st.none(), st.integers(0, 9000)),
    aging=st.sampled_from([0, 300, 600]),
)
def test_priorities_respected_and_no_starvation_beyond_the_aging_bound(specs, capacity, now, aging):
    tasks = [task(f"t{i:02d}", priority=p, at=at) for i, (p, at) in enumerate(specs)]
    clock = None if now is None else T0 + now
    result = run_plan(tasks, [slot(host("h", max_agents=capacity))], now=clock, aging=aging)
    chosen = set(started(result))
    # exactly the `capacity` best tasks by (effective priority, queue time) start
    best = [t.id for t in ordered(tasks, clock, aging)][:capacity]
    assert chosen == set(best)
    if clock is None or aging == 0:
        # without aging: a started task never has a lower priority than one left waiting
        worst_started = max(
            (PRIORITY_RANK[t.priority] for t in tasks if t.id in chosen), default=-1
        )
        best_waiting = min(
            (PRIORITY_RANK[t.priority] for t in tasks if t.id not in chosen), default=9
        )
        assert worst_started <= best_waiting
        return
    # starvation bound: a task that waited past rank × aging is never passed by a newer task
    for old in tasks:
        queued = order_key(old)[1]
        if clock - queued < aging_bound(old.priority, aging):
            continue
        newer_started = any(t.id in chosen and order_key(t)[1] > queued for t in tasks)
        assert not newer_started or old.id in chosen


# --- dependencies --------------------------------------------------------------------------------


def test_find_cycle_names_the_loop() -> None:
    assert deps.find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert deps.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert deps.find_cycle({"a": ["a"]}) == ["a", "a"]
    with pytest.raises(ValidationError, match="dependency cycle: x → y → x"):
        deps.check_no_cycle({"x": ["y"], "y": ["x"]})


def test_failures_propagate_transitively_in_one_pass() -> None:
    a = task("a", after=("root",))
    b = task("b", after=("a",))
    c = task("c", after=("b", "ok"))
    d = task("d", after=("ok",))
    statuses = {"root": "failed", "ok": "completed", "a": "pending", "b": "pending", "c": "pending"}
    found = deps.resolve([c, b, a, d], statuses.get)
    assert {k: v.failed_dep for k, v in found.items()} == {"a": "root", "b": "a", "c": "b"}
    assert deps.failure_message(found["a"]) == "dependency root failed"
    waiting = deps.resolve(
        [task("w", after=("ok", "run"))], {"ok": "completed", "run": "running"}.get
    )
    assert waiting["w"].failed_dep is None
    gone = deps.resolve([task("g", after=("nope",))], {}.get)
    assert deps.failure_message(gone["g"]) == "dependency nope no longer exists"


def _done(t: Task, status: str, reason: str | None = None) -> Task:
    t.status, t.reason = status, reason
    return t


def test_cascade_takes_only_what_failed_because_of_the_root() -> None:
    tasks = {
        "root": _done(task("root"), "failed", "exit_code"),
        "a": _done(task("a", after=("root",)), "failed", "dependency_failed"),
        "b": _done(task("b", after=("a",)), "failed", "dependency_failed"),
        "c": _done(task("c", after=("a", "other")), "failed", "dependency_failed"),
        "other": _done(task("other"), "failed", "exit_code"),
        "d": _done(task("d", after=("root",)), "failed", "exit_code"),  # its own failure
        "e": _done(task("e", after=("root",)), "completed"),
        "f": _done(task("f", after=("c",)), "failed", "dependency_failed"),
    }
    assert deps.cascade("root", tasks) == ["root", "a", "b"]


# --- placement by the CLIs each host's probe found -------------------------------------------


def test_an_agent_task_goes_only_where_its_cli_was_found() -> None:
    slots = [slot(host("a"), clis=frozenset({"codex"})), slot(host("b"), running=3)]
    result = run_plan([task("t", backend="claude"), task("u", backend="codex")], slots)
    assert started(result) == {"t": "b", "u": "a"}  # a is idler, but has no claude


def test_a_host_not_probed_yet_is_waited_for_not_guessed() -> None:
    slots = [slot(host("a"), clis=None, reachable=None)]
    result = run_plan([task("t", backend="claude"), task("s", backend="shell")], slots)
    assert started(result) == {"s": "a"} and result.waiting == {"t": "host"}
    # A host whose probes never answered is unreachable: a launch there says why it fails.
    result = run_plan([task("t", backend="claude")], [slot(host("a"), clis=None, reachable=False)])
    assert started(result) == {"t": "a"}


def test_no_host_with_the_cli_fails_the_task_naming_the_hosts() -> None:
    slots = [slot(host("a"), clis=frozenset()), slot(host("b"), clis=frozenset({"codex"}))]
    (decision,) = run_plan([task("t", backend="claude")], slots).decisions
    assert decision.host is None
    assert decision.error is not None and decision.error.startswith("no host has claude installed")
    assert "`claude --version` printed nothing on a, b" in decision.error


def test_submit_is_refused_only_when_every_probed_host_lacks_the_cli() -> None:
    hosts = [host("a"), host("b")]
    none = [slot(h, clis=frozenset({"codex"})) for h in hosts]
    with pytest.raises(NoEligibleHost, match="no host has claude installed"):
        check_placeable(task("t", backend="claude"), hosts, none)
    check_placeable(task("t", backend="codex"), hosts, none)
    unknown = [none[0], slot(hosts[1], clis=None, reachable=None)]
    check_placeable(task("t", backend="claude"), hosts, unknown)  # b may have it: accepted
