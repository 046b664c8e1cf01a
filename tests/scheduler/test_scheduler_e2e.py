"""End to end on real sshd hosts: caps, dependencies, schedules, batches, drafts, staleness."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from dobby.core.timefmt import parse_time
from dobby.store.db import task_docs_on_disk
from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process and agents on several sshd hosts


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost], local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [h.inventory_entry() for h in ssh_hosts] + [local_entry]


def register(hub: HubProcess, tmp_path: Path, name: str) -> Path:
    path = make_git_project(tmp_path / name)
    hub.cli("register", str(path), "--name", name, check=True)
    return path


def add(hub: HubProcess, *args: str) -> str:
    return json.loads(hub.cli("add", *args, "--json", check=True).stdout)["id"]


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


def max_overlap(tasks: list[dict]) -> int:
    """Return how many of the tasks ran at the same time at most (from their own timestamps)."""
    points = []
    for t in tasks:
        points.append((parse_time(t["started_at"]).timestamp(), 1))
        points.append((parse_time(t["finished_at"]).timestamp(), -1))
    running = peak = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at a tie
        running += step
        peak = max(peak, running)
    return peak


# --- concurrency ---------------------------------------------------------------------------------


def test_two_projects_with_max_concurrent_one_and_two(hub: HubProcess, tmp_path: Path) -> None:
    register(hub, tmp_path, "one")
    register(hub, tmp_path, "two")
    res = hub.cli("projects", "set", "two", "max_concurrent=2", "default_backend=shell", check=True)
    assert "max_concurrent=2" in res.stdout
    # Every task runs until the gate opens, so what overlaps is what the caps allow, however
    # slowly this machine submits (the hosts' users must see the gate: not under tmp_path).
    gate = Path(tempfile.mkdtemp(prefix="dobby-gate-")) / "open"
    gate.parent.chmod(0o755)
    work = f"while [ ! -e {gate} ]; do sleep 0.05; done; sleep 0.2"
    try:
        ids = {p: [add(hub, work, "--project", p, "--backend", "shell") for _ in range(3)]
               for p in ("one",)}  # fmt: skip
        ids["two"] = [add(hub, work, "--project", "two") for _ in range(4)]
        client = hub.client()

        def running(project: str) -> list[str]:
            return [t for t in ids[project] if client.task(t)["status"] == "running"]

        wait_until(
            lambda: len(running("two")) == 2 and len(running("one")) == 1,
            what="both caps full",
            timeout=60,
        )
        gate.touch()
        done = {p: [hub.wait_status(t) for t in tids] for p, tids in ids.items()}
    finally:
        shutil.rmtree(gate.parent)
    assert all(t["status"] == "completed" for ts in done.values() for t in ts)
    assert all(t["backend"] == "shell" for t in done["two"])  # the project's default_backend
    assert max_overlap(done["one"]) == 1
    assert max_overlap(done["two"]) == 2
    listing = json.loads(hub.cli("projects", "--json", check=True).stdout)["projects"]
    assert {p["name"]: p["max_concurrent"] for p in listing} == {"one": 1, "two": 2}


# --- dependencies --------------------------------------------------------------------------------


def test_dependency_chain_failure_in_the_middle_and_retry_cascade(
    hub: HubProcess, tmp_path: Path
) -> None:
    flag = tmp_path / "b-may-pass"
    a = add(hub, "echo a", "--backend", "shell", "--host", "local")
    b = add(hub, f"test -e {flag}", "--backend", "shell", "--host", "local", "--after", a)
    res = hub.cli("add", "echo c", "--backend", "shell", "--after", b[:6], "--json", check=True)
    queued_c = json.loads(res.stdout)
    c = queued_c["id"]
    d = add(hub, "echo d", "--backend", "shell", "--after", c)
    assert queued_c["after"] == [b]  # the prefix resolved to the full id
    assert queued_c["waiting_on"] == "dependencies"
    assert hub.wait_status(a)["status"] == "completed"
    failed_b = hub.wait_status(b)
    assert (failed_b["status"], failed_b["reason"]) == ("failed", "exit_code")
    for tid, dep in ((c, b), (d, c)):
        task = hub.wait_status(tid)
        assert (task["status"], task["reason"]) == ("failed", "dependency_failed")
        assert task["error"] == f"dependency {dep} failed" and task["started_at"] is None
    # a plain retry of a dependent says what to do instead
    res = hub.cli("retry", d)
    assert res.returncode == 1 and f"dobby retry {c} --cascade" in res.stderr
    flag.touch()
    res = hub.cli("retry", b, "--cascade", check=True)
    assert f"also re-queued: {c}, {d}" in res.stdout
    for tid in (b, c, d):
        task = hub.wait_status(tid)
        assert task["status"] == "completed", task
        assert task["attempt"] == 1 and task["attempts"][0]["status"] == "failed"
    order = [hub.client().task(t) for t in (a, b, c, d)]
    for earlier, later in zip(order, order[1:], strict=False):
        assert parse_time(later["started_at"]) >= parse_time(earlier["finished_at"])


# --- schedules -----------------------------------------------------------------------------------


def test_every_2s_schedule_across_a_hub_restart_fires_once_then_keeps_its_pace(
    hub: HubProcess,
) -> None:
    out = hub.cli("add", "echo tick", "--backend", "shell", "--host", "local", "--every", "2s")
    assert out.returncode == 0 and out.stdout.startswith("schedule s-"), out.stderr
    sid = out.stdout.split()[1]

    def spawned() -> list[dict]:
        tasks = [t for t in hub.client().tasks()["tasks"] if t["schedule_id"] == sid]
        return sorted(tasks, key=lambda t: t["created_at"])

    wait_until(lambda: len(spawned()) >= 2, what="two fires", timeout=60)
    hub.stop()
    stopped_at = time.time()
    time.sleep(5)  # the hub is down for more than two periods (the scenario, not a sync)
    before = len(spawned_offline(hub, sid))
    hub.start()
    wait_until(
        lambda: len(spawned()) >= before + 2,
        what="two fires after the restart",
        timeout=60,
        detail=lambda: schedule_story(hub, sid, spawned()),
    )
    tasks = spawned()
    times = [parse_time(t["created_at"]).timestamp() for t in tasks]
    # one catch-up fire at start for the missed ones, never a burst: fires stay a period apart
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1.7, gaps
    assert not any(stopped_at < t < stopped_at + 5 for t in times)
    assert all(t["every"] == "2s" and t["status"] != "failed" for t in tasks)
    listing = hub.cli("schedules", check=True).stdout
    assert sid in listing and "every 2s" in listing
    hub.cli("schedules", "pause", sid, check=True)
    body = json.loads(hub.cli("schedules", "--json", check=True).stdout)["schedules"][0]
    assert body["paused"] is True and body["next_at"] is None
    assert body["fires"] == len(spawned())
    hub.cli("schedules", "delete", sid, check=True)
    assert json.loads(hub.cli("schedules", "--json", check=True).stdout) == {"schedules": []}


def schedule_story(hub: HubProcess, sid: str, tasks: list[dict]) -> str:
    """What a failed wait on a schedule needs: its state, its tasks' states, the hub log."""
    schedule = hub.client().schedules()["schedules"]
    lines = [json.dumps(schedule)[:800]]
    lines += [f"{t['id']} {t['status']} {t['reason']} {t['created_at']}" for t in tasks]
    return "\n".join(lines) + "\n--- hub log ---\n" + hub.log_tail(120)


def spawned_offline(hub: HubProcess, sid: str) -> list[dict]:
    """Read the schedule's tasks from the stopped hub's database file."""
    tasks = task_docs_on_disk(hub.home / "dobby.db")
    return [t for t in tasks.values() if t.get("schedule_id") == sid]


# --- batches -------------------------------------------------------------------------------------


def test_thirty_task_batch_across_three_hosts(hub: HubProcess, tmp_path: Path) -> None:
    lines = ["name: thirty", "defaults:", "  backend: shell", "  labels: [test]", "tasks:"]
    for i in range(1, 30):
        lines += [f"  - name: t{i}", f"    prompt: echo {i} on $(hostname); sleep 0.3"]
    lines += ["  - name: report", "    prompt: echo all done", "    priority: high",
              f"    after: [{', '.join(f't{i}' for i in range(1, 30))}]"]  # fmt: skip
    batch_file = tmp_path / "thirty.yaml"
    batch_file.write_text("\n".join(lines) + "\n")
    res = hub.cli("batch", str(batch_file), "--json", check=True)
    body = json.loads(res.stdout)
    assert body["total"] == 30 and body["name"] == "thirty"
    bid = body["id"]
    wait_until(lambda: hub.client().batch(bid)["done"], what="the batch to finish", timeout=120)
    view = hub.client().batch(bid)
    assert view["counts"] == {"completed": 30}, [
        (t["name"], t["host"], t["reason"], t["error"]) for t in view["tasks"] if t["error"]
    ]
    tasks = {t["name"]: t for t in view["tasks"]}
    assert {t["host"] for t in tasks.values()} == {"h1", "h2", "h3"}  # labels: [test]
    report = tasks.pop("report")
    assert all(
        parse_time(report["started_at"]) >= parse_time(t["finished_at"]) for t in tasks.values()
    )
    assert all(t["batch_id"] == bid for t in view["tasks"])
    status = hub.cli("batch-status", bid, check=True).stdout
    assert "30 completed" in status and "report: echo all done" in status
    assert bid in hub.cli("batches", check=True).stdout


# --- drafts --------------------------------------------------------------------------------------


def test_agent_plan_then_approve_runs_with_the_plan(
    hub: HubProcess, tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    register(hub, tmp_path, "app")
    res = hub.cli("plan", "add a cache", "--project", "app", "--host", "h1", "--agent-plan",
                  "--json", check=True)  # fmt: skip
    draft = json.loads(res.stdout)
    assert draft["status"] == "draft" and draft["waiting_on"] == "approval"
    planner_id = draft["plan_task"]
    planner = hub.wait_status(planner_id)
    assert planner["status"] == "completed" and planner["permissions"] == "plan"
    seen = json.loads(ssh(ssh_hosts[0], f"cat ~/.dobby/tasks/{planner_id}/fake-agent.json"))
    argv = seen["argv"]
    assert argv[argv.index("--permission-mode") + 1] == "plan"  # read-only, whatever the host
    assert "read-only planning mode" in seen["prompt"] and "add a cache" in seen["prompt"]
    draft = wait_until(
        lambda: (t := hub.client().task(draft["id"]))["plan"] and t, what="the plan", timeout=60
    )
    assert draft["status"] == "draft" and draft["plan"] == planner["summary"]
    hub.cli("edit", draft["id"], "--plan", "1. add cache.py\n2. test it", check=True)
    approved = json.loads(hub.cli("approve", draft["id"], "--json", check=True).stdout)
    assert approved["status"] == "pending"
    done = hub.wait_status(draft["id"])
    assert done["status"] == "completed"
    run = json.loads(ssh(ssh_hosts[0], f"cat ~/.dobby/tasks/{draft['id']}/fake-agent.json"))
    assert run["prompt"].startswith("add a cache\n\n## Approved plan")
    assert run["prompt"].rstrip().endswith("1. add cache.py\n2. test it")
    assert "acceptEdits" in run["argv"]  # the execution runs with the host's permissions
    again = hub.cli("approve", draft["id"])
    assert again.returncode == 1 and "only drafts can be approved" in again.stderr


def test_plain_draft_never_runs_until_approved_and_can_be_rejected(hub: HubProcess) -> None:
    keep = json.loads(hub.cli("plan", "echo kept", "--backend", "shell", "--json",
                              check=True).stdout)  # fmt: skip
    drop = json.loads(hub.cli("plan", "echo dropped", "--backend", "shell", "--json",
                              check=True).stdout)  # fmt: skip
    marker = add(hub, "echo later", "--backend", "shell")
    assert hub.wait_status(marker)["status"] == "completed"  # the scheduler did run passes
    assert hub.client().task(keep["id"])["status"] == "draft"
    rejected = json.loads(hub.cli("reject", drop["id"], "--json", check=True).stdout)
    assert (rejected["status"], rejected["error"]) == ("cancelled", "rejected")
    hub.cli("approve", keep["id"], check=True)
    assert hub.wait_status(keep["id"])["summary"] == "kept"


# --- timeouts and staleness ----------------------------------------------------------------------


def test_project_default_timeout_ends_a_hung_agent(hub: HubProcess, tmp_path: Path) -> None:
    register(hub, tmp_path, "slow")
    hub.cli("projects", "set", "slow", "default_timeout=2s", check=True)
    task = hub.wait_status(
        add(hub, "[scenario:hang] wait", "--project", "slow", "--backend", "codex", "--host", "h2")
    )
    assert (task["status"], task["reason"], task["timeout"]) == ("failed", "timeout", 2.0)
    assert "timed out after 2s" in task["error"]


@pytest.mark.parametrize("hub_env", [{"DOBBY_STALE_TIMEOUT": "2"}])
def test_silent_task_is_killed_as_stale_and_a_chatty_one_is_not(
    hub: HubProcess, ssh_hosts: list[SshHost]
) -> None:
    silent = add(hub, "[scenario:hang] say one thing then nothing", "--backend", "claude",
                 "--host", "h3")  # fmt: skip
    chatty = add(hub, "[scenario:lines:12:400] keep talking", "--backend", "claude",
                 "--host", "h3")  # fmt: skip
    task = hub.wait_status(silent)
    assert (task["status"], task["reason"]) == ("failed", "stale")
    assert "stale_timeout 2s" in task["error"]
    assert hub.wait_status(chatty)["status"] == "completed"  # 4.8 s, never 2 s silent
    alive = ssh(ssh_hosts[2], f"tmux has-session -t dobby-{silent} 2>/dev/null && echo alive "
                              "|| echo gone")  # fmt: skip
    assert alive.strip() == "gone"


# --- bad input -----------------------------------------------------------------------------------


def test_bad_scheduler_input_gets_one_line_errors_and_changes_nothing(
    hub: HubProcess, tmp_path: Path
) -> None:
    a = json.loads(hub.cli("plan", "echo a", "--backend", "shell", "--json", check=True).stdout)
    b = json.loads(hub.cli("plan", "echo b", "--backend", "shell", "--after", a["id"], "--json",
                           check=True).stdout)  # fmt: skip
    typo = tmp_path / "typo.yaml"
    typo.write_text("tasks:\n  - prompt: echo 1\n    backend: shell\n  - promt: echo 2\n")
    cases = [
        (["edit", a["id"], "--after", b["id"]],
         f"dependency cycle: {a['id']} → {b['id']} → {a['id']}"),
        (["add", "x", "--backend", "shell", "--after", "ffffffff", "--after", "eeeeeeee"],
         "unknown task id(s) in 'after': ffffffff, eeeeeeee"),
        (["add", "x", "--backend", "shell", "--cron", "61 * * * *"],
         "invalid cron expression '61 * * * *': [61 * * * *] is not acceptable, out of range"),
        (["add", "x", "--backend", "shell", "--cron", "0 3 * * * *"],
         "expected 5 fields"),
        (["add", "x", "--backend", "shell", "--every", "soon"], "invalid --every"),
        (["batch", str(typo)], f"{typo}:4: unknown key 'promt' in task 2 (did you mean 'prompt'?)"),
        (["approve", "ffffffff"], "unknown task 'ffffffff'"),
        (["projects", "set", "nope", "max_concurrent=2"], "unknown project 'nope'"),
    ]  # fmt: skip
    client = hub.client()
    before = (client.tasks(), client.schedules(), client.batches())
    for args, message in cases:
        res = hub.cli(*args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert (client.tasks(), client.schedules(), client.batches()) == before
    res = hub.cli("add", "x", "--label", "gpu", "--backend", "shell", "--wait-for-host", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["status"] == "pending"
    tid = json.loads(res.stdout)["id"]
    assert wait_until(
        lambda: client.task(tid)["waiting_on"] == "host", what="waiting_on host", timeout=60
    )


def test_auto_retry_moves_a_lost_task_to_another_host(
    hub: HubProcess, tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    register(hub, tmp_path, "app")
    hub.cli("projects", "set", "app", "auto_retry=1", check=True)
    # Hangs on h1 only: the first run (h1: fewest running, then by name) is lost there, and
    # the automatic retry, on another host, completes.
    command = f'[ "$(whoami)" != {h1.user} ] || sleep 600'
    tid = add(hub, command, "--project", "app", "--backend", "shell", "--label", "test")
    assert hub.wait_status(tid, ("running",))["host"] == "h1"
    wait_until(
        lambda: ssh(h1, f"cat ~/.dobby/tasks/{tid}/pid 2>/dev/null || true").strip(),
        what="pid",
        timeout=60,
    )
    ssh(h1, f"tmux kill-session -t dobby-{tid}; pkill -KILL -s $(cat ~/.dobby/tasks/{tid}/pid)"
            " 2>/dev/null; true")  # fmt: skip
    done = hub.wait_status(tid, ("completed",), timeout=90)
    assert done["host"] in ("h2", "h3") and done["avoid_hosts"] == ["h1"]
    assert done["attempt"] == 1
    assert (done["attempts"][0]["host"], done["attempts"][0]["reason"]) == ("h1", "host_lost")
