"""The dashboard in a real browser (Debian's chromium via Playwright) against a real hub process,
real sshd hosts, tmux and the fake agents."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

from dobby.hub.handlers import dashboard as dash
from tests.fixtures.dashboard import CHROMIUM, NEEDLE, VIEWPORT, history, launch, seed_history
from tests.fixtures.hub import HubProcess, make_git_project, write_inventory
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a real browser against hub processes

expect = playwright_sync.expect
expect.set_options(timeout=15_000)  # generous: the suite may run on a busy machine
XSS = "<img src=x onerror=alert(1)>"
SEEDED = 10_000


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # A missing browser fails the run (CI installs chromium): a skipped dashboard is untested.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with playwright_sync.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


class Page:
    """A browser tab on a hub's dashboard that records page errors, dialogs and requests."""

    def __init__(self, browser: Any, hub: HubProcess, **context: Any) -> None:
        self.hub = hub
        self.context = browser.new_context(viewport=VIEWPORT, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[Any] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r))

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)  # something inline slipped in

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, hash_: str = "", *, live: bool = True) -> Any:
        self.page.goto(f"{self.hub.url}/dashboard{hash_}")
        if live:
            self.wait_live()
        return self.page

    def wait_live(self, timeout: float = 30_000) -> None:
        expect(self.page.locator("#conn")).to_have_attribute("data-state", "live", timeout=timeout)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def make(hub: HubProcess, **context: Any) -> Page:
        pages.append(Page(browser, hub, **context))
        return pages[-1]

    yield make
    for p in pages:
        p.close()
    errors = [e for p in pages for e in p.errors]
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost], local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [h.inventory_entry() for h in ssh_hosts[:2]] + [local_entry]


@pytest.fixture
def hub(hub: HubProcess) -> HubProcess:
    """The shared hub, once its ssh hosts are reachable."""
    wait_reachable(hub, "h1", "h2")
    return hub


def wait_reachable(hub: HubProcess, *names: str, timeout: float = 30) -> None:
    """Wait for the hosts' first probe (work sent before it can stick in dispatch: reported)."""
    client = hub.client()

    def reachable() -> bool:
        hosts = {h["name"]: h for h in client.hosts()["hosts"]}
        return all(hosts[n]["reachable"] for n in names)

    wait_until(
        reachable,
        timeout=timeout,
        what=f"hosts {', '.join(names)} to be reachable",
        interval=0.1,
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, fake_bin: Path) -> Iterator[HubProcess]:
    """A hub with a year of history: 10,000 finished tasks in three projects."""
    root = tmp_path_factory.mktemp("seeded")
    now = dt.datetime.now(dt.UTC)
    projects = {name: make_git_project(root / name) for name in ("app", "web", "infra")}
    seed_history(root / "home", history(SEEDED, now=now), projects)
    limits = "usage_limits:\n  claude:\n    7d: {cost_usd: 1000}\n"
    (root / "home" / "dobby.yaml").write_text(limits)
    inventory = write_inventory(
        root / "inventory.yaml",
        [
            {
                "name": "local",
                "connection": "local",
                "workdir": str(root / "work"),
                "env": {"PATH": f"{fake_bin}:$PATH"},
            }
        ],
    )
    proc = HubProcess(
        home=root / "home", inventory=inventory, extra_env={"DOBBY_TIMEZONE": "UTC"}
    ).start()
    yield proc
    proc.stop()


def add(hub: HubProcess, *args: str) -> str:
    return json.loads(hub.cli("add", *args, "--json", check=True).stdout)["id"]


def api(hub: HubProcess, path: str) -> Any:
    with urllib.request.urlopen(hub.url + path, timeout=30) as resp:
        return json.loads(resp.read())


def ssh(host: SshHost, command: str) -> str:
    return subprocess.run(
        host.ssh_argv(command), capture_output=True, text=True, check=True, timeout=30
    ).stdout


# -- the page and its headers -----------------------------------------------------------------


def test_page_and_files_are_served_with_a_strict_csp(seeded: HubProcess) -> None:
    with urllib.request.urlopen(seeded.url + "/dashboard") as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Content-Type"].startswith("text/html")
        page = resp.read().decode()
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert "<script>" not in page and " style=" not in page  # nothing inline
    # Every module is preloaded from the page (no import-by-import waterfall on first load).
    js = Path(dash.STATIC_DIR) / "js"
    modules = {f.relative_to(js).as_posix() for f in js.rglob("*.js")} - {"app.js", "theme-init.js"}
    preloaded = set(re.findall(r'rel="modulepreload" href="/dashboard/static/js/([^"]+)"', page))
    assert preloaded == modules
    with urllib.request.urlopen(seeded.url + "/dashboard/static/js/app.js") as resp:
        assert resp.headers["Content-Type"].startswith("text/javascript")
    for bad in (
        "/dashboard/static/../dashboard.py",
        "/dashboard/static/js/nope.js",
        "/dashboard/static/%2e%2e/dashboard.py",
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(seeded.url + bad)
        err.value.close()
        assert err.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(seeded.url + "/dashboard/api/heatmap?days=0")
    err.value.close()
    assert err.value.code == 400
    assert api(seeded, "/dashboard/api/heatmap?days=7")["days"] == 7
    paths = api(seeded, "/openapi.json")["paths"]
    assert "/dashboard/api/heatmap" in paths and "/dashboard" not in paths


# -- live jobs, logs, cancel ------------------------------------------------------------------


def test_a_queue_answered_before_its_task_started_does_not_show_it_waiting(
    hub: HubProcess, tab: Any
) -> None:
    # The waiting list is asked for again as tasks come and go. An answer that left the hub
    # while a task waited, and reached the page after the task started, put the running task
    # back in the waiting table until the list was asked for again (seconds later).
    page = tab(hub).open("#/live")
    waiting_id: list[str] = []  # the task, once submitted
    held: list[tuple[Any, dict[str, Any]]] = []

    def hold(route: Any) -> None:
        answer = route.fetch()  # the hub answers now; the page gets it later
        body = answer.json()
        listed = [t for t in body["tasks"] if t["id"] in waiting_id and t["status"] == "pending"]
        if listed and not held:
            held.append((route, body))
        else:
            route.fulfill(response=answer)

    # Every answer passes through hold, run as this test next calls the browser: the task's
    # own arrival makes the page ask for the list, and the hub answers while it waits.
    page.route(re.compile(r"/tasks\?.*status=pending"), hold)
    first = add(hub, "sleep 5", "--backend", "shell", "--host", "h1")
    task_id = add(hub, "[scenario:lines:30:150] after the first", "--backend", "claude",
                  "--host", "h1", "--after", first)  # fmt: skip
    waiting_id.append(task_id)
    running = page.locator(f'#live-table tr[data-task="{task_id}"]')
    expect(running).to_be_visible(timeout=30_000)
    assert held, "no answer listed the task as waiting"
    route, body = held[0]
    route.fulfill(json={**body, "total": 999})  # 999: the page has read this answer
    expect(page.locator("#waiting-table-title")).to_contain_text("999")
    # Looked at once, as that answer was rendered (the heading and the rows render together):
    # the task's next change would ask for the list again and hide a stale row.
    assert page.locator(f'#waiting-table tr[data-task="{task_id}"]').count() == 0
    assert running.count() == 1


def test_cli_task_shows_in_live_jobs_at_once_and_its_log_streams(hub: HubProcess, tab: Any) -> None:
    t = tab(hub)
    page = t.open("#/live")
    task_id = add(
        hub, "[scenario:lines:30:150] stream some lines", "--backend", "claude", "--host", "h1"
    )
    row = page.locator(f'tr[data-task="{task_id}"]')
    expect(row).to_be_visible(timeout=1000)  # pushed over the event stream, no reload
    running = page.locator(f'#live-table tr[data-task="{task_id}"]')
    expect(running).to_be_visible(timeout=15_000)
    expect(running.locator("td").nth(1)).to_have_text("h1")
    expect(running.locator("td.step")).to_contain_text("line", timeout=15_000)

    running.locator("a.tasklink").click()
    assert page.url.endswith(f"#/tasks/{task_id}/logs")
    log = page.locator("#log-events")
    expect(log).to_contain_text("line 3", timeout=15_000)
    # lines arrive while the agent writes them: the end is not there yet
    assert "line 30" not in log.inner_text()
    assert hub.client().task(task_id)["status"] == "running"
    expect(page.locator("#log-status")).to_have_text("End of log · task completed", timeout=30_000)
    texts = page.locator("#log-events .ev-text p").all_inner_texts()
    assert texts == [f"line {i}" for i in range(1, 31)]
    expect(page.locator("#task-title + .task-meta .badge")).to_have_text("completed")
    page.locator("#log-raw").check()
    raw = page.locator("#log-raw-text").inner_text()
    assert raw == hub.client().logs(task_id)["text"]


def test_cancel_from_the_ui_kills_the_tmux_session(
    hub: HubProcess, tab: Any, ssh_hosts: list[SshHost]
) -> None:
    h1 = ssh_hosts[0]
    task_id = add(hub, "sleep 300 & sleep 301; wait", "--backend", "shell", "--host", "h1")
    page = tab(hub).open("#/live")
    row = page.locator(f'#live-table tr[data-task="{task_id}"]')
    expect(row).to_be_visible(timeout=15_000)
    assert ssh(h1, f"tmux has-session -t dobby-{task_id} && echo alive").strip() == "alive"
    button = row.locator('button[data-action="cancel"]')
    button.click()
    expect(button).to_have_text("Confirm cancel")
    assert hub.client().task(task_id)["status"] == "running"  # one click is not enough
    button.click()
    expect(row).to_have_count(0, timeout=15_000)
    assert hub.client().task(task_id)["status"] == "cancelled"
    assert (
        ssh(
            h1, f"tmux has-session -t dobby-{task_id} 2>/dev/null && echo alive || echo gone"
        ).strip()
        == "gone"
    )
    assert ssh(h1, "pgrep -u $(id -u) -f '[s]leep 30[01]' || echo none").strip() == "none"
    page.goto(f"{hub.url}/dashboard#/tasks?status=cancelled")
    expect(page.locator(f'#task-rows tr[data-task="{task_id}"] .badge')).to_have_text("cancelled")


def test_a_task_without_output_yet_says_what_it_waits_for(hub: HubProcess, tab: Any) -> None:
    parked = hub.client().add_task(
        prompt="echo never", backend="shell", labels=["nowhere"], wait_for_host=True
    )
    task_id = add(hub, "sleep 300", "--backend", "shell", "--host", "h1")
    page = tab(hub).open("#/live")
    waiting = page.locator(f'#waiting-table tr[data-task="{parked["id"]}"] td.waiting-on')
    expect(waiting).not_to_be_empty()
    reason = waiting.get_attribute("data-waiting")
    words = {"capacity": "a free slot on a host", "host": "to come back"}
    assert reason == (hub.client().task(parked["id"])["waiting_on"] or "capacity")
    if reason in words:
        expect(waiting).to_contain_text(words[reason])
    row = page.locator(f'#live-table tr[data-task="{task_id}"]')
    expect(row.locator("td.step")).to_have_text("waiting for output…", timeout=15_000)
    row.locator("a.tasklink").click()
    expect(page.locator("#log-waiting")).to_have_text("Waiting for output…")
    expect(page.locator("#log-box")).not_to_contain_text("No output")
    hub.client().cancel(task_id)
    hub.client().cancel(parked["id"])
    expect(page.locator("#log-status")).to_contain_text("End of log", timeout=15_000)
    expect(page.locator("#log-waiting")).to_have_text("No output.")


# -- the hub restarts under the page ----------------------------------------------------------


def test_page_reconnects_after_a_hub_restart_and_shows_the_end(hub: HubProcess, tab: Any) -> None:
    task_id = add(hub, "[scenario:lines:40:100] long one", "--backend", "claude", "--host", "h1")
    t = tab(hub)
    page = t.open(f"#/tasks/{task_id}")
    expect(page.locator("#log-events")).to_contain_text("line 2", timeout=15_000)
    hub.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    hub.start()  # same port, same home: the task kept running in tmux on h1
    t.wait_live(timeout=20_000)
    expect(page.locator("#log-status")).to_have_text("End of log · task completed", timeout=60_000)
    expect(page.locator(".task-meta .badge")).to_have_text("completed", timeout=10_000)
    texts = page.locator("#log-events .ev-text p").all_inner_texts()
    assert texts == [f"line {i}" for i in range(1, 41)]  # no gap, no duplicate
    # the list caught up too, through the replayed events
    page.locator("#nav a[data-route=tasks]").click()
    expect(page.locator(f'#task-rows tr[data-task="{task_id}"] .badge')).to_have_text("completed")
    # and a deep link survives a reload
    page.goto(f"{hub.url}/dashboard#/tasks/{task_id}/details")
    page.reload()
    expect(page.locator("#task-summary")).to_have_text("line 40")
    expect(page.locator("#tab-details")).to_have_attribute("aria-current", "page")


def restart_from(hub: HubProcess, seq: int, edit: Callable[[sqlite3.Connection], Any]) -> None:
    """Restart ``hub`` with its event numbering set to go on from ``seq``, after ``edit``."""
    hub.stop()
    with contextlib.closing(sqlite3.connect(hub.home / "dobby.db")) as db, db:
        db.execute("UPDATE docs SET doc = ? WHERE kind = 'meta' AND key = 'seq'", (str(seq),))
        edit(db)
    hub.start()
    wait_reachable(hub, "h1", "h2")


def test_lists_refresh_what_the_page_holds_after_a_hub_that_numbers_its_events_lower(
    hub: HubProcess, tab: Any
) -> None:
    # A hub killed before its last events reached its disk starts numbering them from lower
    # than the page has seen. The page kept each cached task's seq of its old event, so every
    # list the new hub answered looked older than the cached version, which stayed on screen.
    restart_from(hub, 100_000, lambda db: None)  # far above what the next hub will number
    t = tab(hub)
    page = t.open("#/live")
    draft = hub.client().add_task(prompt="echo hi", backend="shell", draft=True, title="before")
    page.evaluate("import('/dashboard/static/js/hub.js').then((m) => { window.dobbyHub = m; })")
    page.wait_for_function("id => window.dobbyHub.state.tasks.has(id)", arg=draft["id"])

    def edit(db: sqlite3.Connection) -> None:
        # A version of the draft that no event of the next hub announces (as a change whose
        # events were lost with the hub that made it).
        (seq,) = db.execute("SELECT seq FROM tasks WHERE id = ?", (draft["id"],)).fetchone()
        db.execute("UPDATE task_docs SET doc = json_set(doc, '$.title', 'after') WHERE seq = ?",
                   (seq,))  # fmt: skip

    restart_from(hub, 0, edit)
    t.wait_live(timeout=20_000)
    page.wait_for_function("() => window.dobbyHub.state.lastSeq < 100_000")  # its numbering
    page.locator("#nav a[data-route=tasks]").click()
    row = page.locator(f'#task-rows tr[data-task="{draft["id"]}"]')
    expect(row).to_contain_text("after", timeout=10_000)
    hub.client().reject(draft["id"])  # the hub's other tests see no draft of this one


# -- list, search, filters --------------------------------------------------------------------


def task_requests(t: Any) -> list[Any]:
    """Return the page's requests for task lists (GET /tasks with a query or none)."""
    return [r for r in t.requests if urllib.parse.urlsplit(r.url).path == "/tasks"]


def test_search_filter_sort_and_pages_over_10000_tasks(seeded: HubProcess, tab: Any) -> None:
    tasks = api(seeded, "/tasks")["tasks"]
    assert len(tasks) == SEEDED
    t = tab(seeded)
    page = t.open("#/tasks")
    expect(page.locator("#task-count")).to_have_text(f"{SEEDED:,} tasks")
    expect(page.locator("#task-rows tr")).to_have_count(50)
    expect(page.locator("#page-info")).to_contain_text(f"of {SEEDED:,}")
    expect(page.locator("#count-tasks")).to_have_text(f"{SEEDED:,}")

    page.locator("#task-search").fill("needle payments")
    expect(page.locator("#task-rows tr")).to_have_count(1)
    expect(page.locator("#task-rows a.tasklink")).to_have_text(NEEDLE)
    needle = next(t for t in tasks if t["title"] == NEEDLE)
    page.locator("#task-search").fill(needle["id"][:6])  # an id prefix
    expect(page.locator(f'#task-rows tr[data-task="{needle["id"]}"]')).to_be_visible()
    assert "q=" in page.url  # the filter lives in the URL

    page.locator("#task-search").fill("")
    page.locator("#filter-status").select_option("failed")
    page.locator("#filter-backend").select_option("codex")
    page.locator("#filter-project").select_option("web")
    want = [
        t for t in tasks if (t["status"], t["backend"], t["project"]) == ("failed", "codex", "web")
    ]
    expect(page.locator("#task-count")).to_have_text(f"{len(want):,} of {SEEDED:,} tasks match")
    page.locator("#task-sort").select_option("cost")
    first = max(want, key=lambda t: (t["cost_usd"] or 0, t["created_at"]))
    expect(page.locator("#task-rows tr").first).to_have_attribute("data-task", first["id"])

    page.locator("#filter-status").select_option("")
    page.locator("#filter-backend").select_option("")
    page.locator("#filter-project").select_option("")
    page.locator("#filter-host").select_option("h2")
    page.locator("#task-sort").select_option("longest")
    want = [t for t in tasks if t["host"] == "h2"]
    expect(page.locator("#task-count")).to_have_text(f"{len(want):,} of {SEEDED:,} tasks match")

    def ran(task: dict[str, Any]) -> float:
        start, end = (dt.datetime.fromisoformat(task[k]) for k in ("started_at", "finished_at"))
        return (end - start).total_seconds()

    longest = sorted(want, key=ran, reverse=True)
    expect(page.locator("#task-rows tr").first).to_have_attribute("data-task", longest[0]["id"])
    page.locator("#page-next").click()
    expect(page.locator("#page-info")).to_contain_text("page 2")
    expect(page.locator("#task-rows tr").first).to_have_attribute("data-task", longest[50]["id"])
    shown = page.locator("#task-rows tr").evaluate_all("rs => rs.map(r => r.dataset.task)")
    assert shown == [t["id"] for t in longest[50:100]]
    # filters survive a reload (they are in the URL)
    page.reload()
    t.wait_live()
    expect(page.locator("#filter-host")).to_have_value("h2")
    expect(page.locator("#task-sort")).to_have_value("longest")
    expect(page.locator("#task-count")).to_have_text(f"{len(want):,} of {SEEDED:,} tasks match")
    expect(page.locator("#page-info")).to_contain_text("page 2")
    # The hub paged, filtered and sorted every list: the page never asked for all the tasks.
    for view in ("live", "network", "drafts", "tasks"):
        page.locator(f"#nav a[data-route={view}]").click()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    lists = task_requests(t)
    assert lists, "the views fetched no task list"
    for request in lists:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
        # a page of the history, or the running tasks (which the hosts' capacity bounds)
        most = 2000 if query.get("status") == ["running"] else 200
        assert "limit" in query and int(query["limit"][0]) <= most, request.url


# -- heatmap and usage ------------------------------------------------------------------------


def test_heatmap_cells_show_the_api_counts(seeded: HubProcess, tab: Any) -> None:
    data = api(seeded, "/dashboard/api/heatmap")
    tasks = api(seeded, "/tasks?status=completed")["tasks"]
    start = dt.date.fromisoformat(data["start"])
    expected = Counter(
        t["finished_at"][:10]
        for t in tasks
        if dt.date.fromisoformat(t["finished_at"][:10]) >= start
    )
    assert data["total"]["days"] == dict(sorted(expected.items()))
    page = tab(seeded).open("#/heatmap")
    cells = page.locator('svg.heatmap[data-project=""] rect.hm-cell')
    expect(cells).to_have_count(365)
    shown = cells.evaluate_all("cs => cs.map(c => [c.dataset.date, +c.dataset.count])")
    assert {d: c for d, c in shown if c} == data["total"]["days"]
    for project in data["projects"]:
        grid = page.locator(f'svg.heatmap[data-project="{project["project"]}"] rect.hm-cell')
        counts = grid.evaluate_all("cs => cs.map(c => [c.dataset.date, +c.dataset.count])")
        assert {d: c for d, c in counts if c} == project["days"]
    busiest = max(data["total"]["days"], key=data["total"]["days"].get)
    page.locator(f'svg.heatmap[data-project=""] rect[data-date="{busiest}"]').hover()
    expect(page.locator("#hm-status")).to_contain_text(
        f"{data['total']['days'][busiest]} completions on"
    )


def test_usage_shows_the_api_numbers(seeded: HubProcess, tab: Any) -> None:
    data = api(seeded, "/dashboard/api/usage")
    page = tab(seeded).open("#/usage")
    week = next(w for w in data["windows"] if w["name"] == "7d")
    claude = next(b for b in week["backends"] if b["backend"] == "claude")
    row = page.locator('[data-window="7d"] .urow[data-backend="claude"]')
    expect(row).to_contain_text(f"{claude['tasks']} task")
    used = round(100 * claude["limit"]["cost_used"])
    limit = page.locator('[data-window="7d"] .ulimit[data-limit="cost"]')
    expect(limit).to_contain_text(f"{used}% of $1000")
    bars = page.locator("#cost-chart rect.chit")
    expect(bars).to_have_count(30)
    totals = bars.evaluate_all("bs => bs.map(b => +b.dataset.total)")
    assert totals == pytest.approx([d["total"] for d in data["days"]])


def test_a_usage_limit_shows_as_a_banner_a_waiting_task_and_a_limited_account(
    tmp_path: Path, ssh_hosts: list[SshHost], tab: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dobby.yaml").write_text("quota_grace: 1\n")
    inventory = write_inventory(tmp_path / "inv.yaml", [ssh_hosts[0].inventory_entry()])
    hub = HubProcess(home=home, inventory=inventory).start()
    try:
        page = tab(hub).open("#/usage")
        task_id = add(hub, "go [scenario:quota_mid:20]", "--backend", "claude", "--host", "h1")
        banner = page.locator("#limit-banner")
        expect(banner).to_contain_text("Usage limit: claude/h1 until", timeout=30_000)
        expect(banner).to_contain_text("1 task waiting")
        card = page.locator('.account[data-account="claude/h1"]')
        expect(card).to_have_attribute("data-limited", "true")
        expect(card).to_contain_text("Limited until")
        expect(card.locator('.uwindow[data-window="five_hour"]')).to_contain_text("rejected")
        expect(card.locator(f'a[href="#/tasks/{task_id}"]')).to_be_visible()
        page.goto(f"{hub.url}/dashboard#/tasks")
        row = page.locator(f'tr[data-task="{task_id}"] .badge')
        expect(row).to_have_text("pending · usage limit")
        page.goto(f"{hub.url}/dashboard#/tasks/{task_id}/details")
        expect(page.locator('[data-field="not_before"]')).to_contain_text("resumes in")
        expect(page.locator('[data-field="wait_reason"]')).to_contain_text("resumes session")
        # At the reset the banner goes and the task goes on in its session, to the end.
        expect(banner).to_be_hidden(timeout=60_000)
        assert hub.wait_status(task_id, timeout=90)["status"] == "completed"
    finally:
        hub.stop()


# -- safety: escaping, theme, API key ---------------------------------------------------------


def test_task_text_is_rendered_as_text_never_markup(seeded: HubProcess, tab: Any) -> None:
    client = seeded.client()
    task = client.add_task(
        prompt="printf '%s\\n' '<b>bold?</b>' '<script>alert(2)</script>'",
        backend="shell",
        title=XSS,
    )
    t = tab(seeded)
    page = t.open(f"#/tasks?q={task['id']}")
    link = page.locator(f'#task-rows tr[data-task="{task["id"]}"] a.tasklink')
    expect(link).to_have_text(XSS)
    assert page.locator("#task-rows img").count() == 0
    link.click()
    expect(page.locator("#task-title")).to_have_text(XSS)
    expect(page.locator("#log-status")).to_contain_text("End of log", timeout=30_000)
    expect(page.locator("#log-events")).to_contain_text("<script>alert(2)</script>")
    page.locator("#tab-details").click()
    expect(page.locator("#task-prompt")).to_contain_text("<b>bold?</b>")
    assert page.locator("#view img, #view script, #view b").count() == 0
    page.locator("#nav a[data-route=live]").click()
    page.locator("#nav a[data-route=network]").click()
    assert t.dialogs == []
    assert not [r.url for r in t.requests if r.url.rstrip("/").endswith("/x")]


def test_details_show_results_and_download_artifacts(seeded: HubProcess, tab: Any) -> None:
    task = seeded.client().add_task(
        prompt='mkdir -p "$DOBBY_ARTIFACTS" && printf "42 passed" > "$DOBBY_ARTIFACTS/report.txt"'
        " && echo done",
        backend="shell",
        title="write a report",
    )
    done = seeded.wait_status(task["id"])
    assert done["status"] == "completed", done
    page = tab(seeded).open(f"#/tasks/{task['id']}/details")
    expect(page.locator("#task-summary")).to_have_text("done")
    expect(page.locator('#task-fields dd[data-field="exit_code"]')).to_have_text("0")
    button = page.locator("#task-artifacts button", has_text="report.txt")
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "report.txt"
    assert Path(download.path()).read_text() == "42 passed"


def test_denied_actions_and_warnings_are_shown_with_the_result(
    seeded: HubProcess, tab: Any
) -> None:
    task_id = add(seeded, "go [scenario:denied]", "--backend", "claude")
    done = seeded.wait_status(task_id)
    assert done["status"] == "completed" and done["permission_denials"], done
    page = tab(seeded).open(f"#/tasks/{task_id}/details")
    expect(page.locator("#task-warnings")).to_contain_text(
        "1 action(s) denied by the host's permissions: Write hello.txt"
    )
    expect(page.locator("#task-denials tbody tr")).to_have_text(["Writehello.txt"])
    page.goto(f"{seeded.url}/dashboard#/tasks")
    mark = page.locator(f'tr[data-task="{task_id}"] .warn-mark')
    expect(mark).to_have_attribute("aria-label", done["warnings"][0])


def test_details_are_grouped_labelled_with_units_and_keep_every_field(
    seeded: HubProcess, tab: Any
) -> None:
    started = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
    doc = {
        "id": "detailsdemo00001",
        "prompt": "tidy the parser",
        "title": "tidy the parser",
        "backend": "claude",
        "status": "failed",
        "reason": "agent_error",
        "host": "h1",
        "created_at": iso_z(started - dt.timedelta(seconds=30)),
        "started_at": iso_z(started),
        "finished_at": iso_z(started + dt.timedelta(seconds=125)),
        "timeout": 1800,
        "cost_usd": 1.5,
        "tokens": {"input": 1234567, "output": 8901, "cache_read": 0, "cache_write": 0},
        "api_error_status": 529,
        "permission_denials": [{"tool": "Bash", "target": "rm -rf build"}],
        "warnings": ["model claude-x has no price"],
        "quota": {"kind": "usage_limit", "window": "five_hour", "resets_at": 1772361000},
        "error": "API Error: 529 overloaded",
    }
    req = urllib.request.Request(
        seeded.url + "/import",
        data=json.dumps([doc]).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["imported"] == 1
    page = tab(seeded).open(f"#/tasks/{doc['id']}/details")
    groups = page.locator("#task-fields .field-group h3")
    expect(groups).to_contain_text(["Task", "Where", "Timing", "Result", "Cost & tokens", "Errors"])
    field = lambda key: page.locator(f'#task-fields dd[data-field="{key}"]')  # noqa: E731
    expect(field("cost_usd")).to_have_text("$1.50")
    expect(field("tokens")).to_contain_text("1,243,468 tokens (input 1,234,567 · output 8,901)")
    expect(field("timeout")).to_have_text("30m 00s (1,800 s)")
    expect(field("@duration")).to_have_text("2m 05s")
    expect(field("api_error_status")).to_have_text("HTTP 529")
    expect(field("quota")).to_contain_text("usage limit (five_hour), resets")
    started_at = field("started_at").locator("time")
    expect(started_at).to_have_attribute("title", "2026-03-01 09:30:00 UTC")
    local = page.evaluate("iso => new Date(iso).getHours()", doc["started_at"])
    expect(started_at).to_contain_text(f" {local:02d}:30:00")
    label = page.locator('#task-fields dt[title="api_error_status"]')
    expect(label).to_have_text("Model API status")  # words, the raw name on hover
    warned = page.locator("#task-warnings")
    expect(warned).to_contain_text("1 permission denial (Bash)")
    expect(warned).to_contain_text("model claude-x has no price")
    expect(page.locator(".task-meta .warn-link")).to_have_text("⚠ 3 warnings")
    # Every field the API answers is reachable (empty ones folded under one summary).
    task = api(seeded, f"/tasks/{doc['id']}")
    shown = set(page.locator("#task-fields dd").evaluate_all("ds => ds.map(d => d.dataset.field)"))
    elsewhere = {"prompt", "summary", "diff_stat", "artifacts", "plan"}
    assert set(task) - elsewhere <= shown
    expect(page.locator("#task-fields details.blank summary")).to_contain_text("no value")


def iso_z(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post(hub: HubProcess, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        hub.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_drafts_inbox_edit_approve_and_reject(seeded: HubProcess, tab: Any) -> None:
    keep = post(
        seeded,
        "/tasks",
        {
            "prompt": "echo from the draft",
            "backend": "shell",
            "title": "draft to approve",
            "draft": True,
        },
    )
    drop = post(
        seeded,
        "/tasks",
        {"prompt": "echo never", "backend": "shell", "title": "draft to reject", "draft": True},
    )
    page = tab(seeded).open("#/drafts")
    expect(page.locator("#count-drafts")).to_have_text("2")
    card = page.locator(f'article.draft[data-task="{keep["id"]}"]')
    expect(card).to_contain_text("No plan")
    card.locator('button[data-action="edit"]').click()
    page.locator(f"#edit-plan-{keep['id']}").fill("1. say hello\n2. <b>stop</b>")
    card.locator('button[type="submit"]').click()
    expect(card.locator("pre.plan")).to_have_text("1. say hello\n2. <b>stop</b>")
    assert api(seeded, f"/tasks/{keep['id']}")["plan"] == "1. say hello\n2. <b>stop</b>"

    other = page.locator(f'article.draft[data-task="{drop["id"]}"]')
    other.locator('button[data-action="reject"]').click()
    other.locator('button[data-action="reject"]').click()  # the confirming second click
    expect(other).to_have_count(0)
    assert api(seeded, f"/tasks/{drop['id']}")["status"] == "cancelled"
    card.locator('button[data-action="approve"]').click()
    expect(card).to_have_count(0)
    expect(page.locator("#drafts-count")).to_have_text("0 waiting for review")
    approved = seeded.wait_status(keep["id"], ("pending", "running", "completed", "failed"))
    assert "2. <b>stop</b>" in approved["prompt"]  # it runs with the approved plan


def test_batches_show_progress_by_status(seeded: HubProcess, tab: Any) -> None:
    batch = post(
        seeded,
        "/batches",
        {
            "name": "nightly <i>evals</i>",
            "tasks": [
                {"name": "first", "prompt": "echo one", "backend": "shell"},
                {"name": "second", "prompt": "echo two", "backend": "shell", "after": ["first"]},
                {"name": "broken", "prompt": "exit 3", "backend": "shell"},
            ],
        },
    )
    page = tab(seeded).open("#/batches")
    card = page.locator(f'article.batch[data-batch="{batch["id"]}"]')
    expect(card).to_contain_text("nightly <i>evals</i>")
    expect(card).to_contain_text("3/3 finished · 2 completed, 1 failed", timeout=30_000)
    expect(card.locator(".pill")).to_have_text("done")
    card.locator("h3 a").click()
    rows = page.locator("#batch-tasks tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2).locator(".badge")).to_contain_text("failed")
    assert rows.locator("td.mono").all_inner_texts() == ["first", "second", "broken"]


def test_theme_follows_the_os_first_then_the_saved_choice(seeded: HubProcess, tab: Any) -> None:
    dark = tab(seeded, color_scheme="dark").open()
    assert dark.evaluate("document.documentElement.dataset.theme") == "dark"
    t = tab(seeded, color_scheme="light")
    page = t.open()
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "light")
    page.locator("#theme-toggle").click()
    expect(html).to_have_attribute("data-theme", "dark")
    assert page.evaluate("localStorage.getItem('dobby.theme')") == "dark"
    page.reload()
    t.wait_live()
    expect(html).to_have_attribute("data-theme", "dark")  # the choice beats the OS
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(15, 19, 24)"


def test_api_key_prompt_refuses_a_wrong_key_and_keeps_the_key_out_of_urls(
    tmp_path: Path, local_entry: dict[str, Any], tab: Any
) -> None:
    key = "k3y-for-the-dashboard"
    inv = write_inventory(tmp_path / "inv.yaml", [local_entry])
    hub = HubProcess(home=tmp_path / "home", inventory=inv, api_key=key).start()
    try:
        add(hub, "echo hello from a locked hub", "--backend", "shell")
        t = tab(hub)
        page = t.open("#/tasks", live=False)
        overlay = page.locator("#key-overlay")
        expect(overlay).to_be_visible()
        page.locator("#key-input").fill("wrong")
        page.locator("#key-form button").click()
        expect(page.locator("#key-error")).to_contain_text("refused")
        expect(overlay).to_be_visible()
        expect(page.locator("#task-rows tr")).to_have_count(0)
        page.locator("#key-input").fill(key)
        page.locator("#key-form button").click()
        expect(overlay).to_be_hidden()
        t.wait_live()
        expect(page.locator("#task-rows tr")).to_have_count(1)
        assert page.evaluate("sessionStorage.getItem('dobby.key')") == key
        assert page.evaluate("localStorage.getItem('dobby.key')") is None
        page.reload()  # same tab: the key is still there, no prompt
        t.wait_live()
        expect(overlay).to_be_hidden()
        assert not [r.url for r in t.requests if key in r.url]
        sent = [r for r in t.requests if r.url.endswith("/events")]
        assert sent and all(r.headers.get("x-dobby-key") == key for r in sent)
    finally:
        hub.stop()
