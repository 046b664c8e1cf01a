"""Take the README's dashboard screenshots against a real hub, real sshd hosts and fake agents.

Run from the repository root, as root (it starts sshd hosts like the tests do), with chromium and
playwright installed (``apt-get install -y chromium``, ``pip install -e '.[test]'``)::

    python docs/screenshots/make.py

It seeds a year of task history (for the heatmap and usage views), starts live tasks, a draft,
a batch and a race, and writes one 1366x768 PNG per view into docs/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.fixtures.dashboard import VIEWPORT, history, launch, seed_history  # noqa: E402
from tests.fixtures.hub import HubProcess, make_git_project, write_inventory  # noqa: E402
from tests.fixtures.sshd import SshdCluster  # noqa: E402
from tests.races.helpers import CHECK  # noqa: E402
from tests.races.helpers import FILES as CALC_FILES  # noqa: E402

RACE_PLAYS = (
    {"FAKE_AGENT_SCENARIO": "patch_bad"},
    {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "0.3"},
    {"FAKE_AGENT_SCENARIO": "patch_wide", "FAKE_AGENT_DELAY": "0.6"},
)

OUT = Path(__file__).resolve().parent


def post(hub: HubProcess, path: str, body: dict[str, Any], method: str = "POST") -> Any:
    """Call the hub's API."""
    req = urllib.request.Request(
        hub.url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def start_work(hub: HubProcess) -> dict[str, Any]:
    """Start the tasks the live views show; return the ids worth a close-up."""
    for name in ("app", "web", "infra", "calc"):
        post(hub, f"/projects/{name}", {"max_concurrent": 4}, method="PATCH")
    ids: dict[str, Any] = {}
    # A race: each host plays another patch (its inventory env), the project's tests judge.
    ids["race"] = post(
        hub,
        "/races",
        {
            "prompt": "add mul(a, b) to calc.py so that test_calc passes",
            "project": "calc",
            "verify": CHECK,
            "k": 3,
            "hosts": ["h1", "h2", "h3"],
            "pick": "smallest",
        },
    )["id"]
    ids["slow"] = post(
        hub,
        "/tasks",
        {
            "prompt": "[scenario:slow] write unit tests for the auth module",
            "backend": "claude",
            "project": "app",
            "host": "h1",
            "title": "write unit tests for the auth module",
        },
    )["id"]
    post(
        hub,
        "/tasks",
        {
            "prompt": "[scenario:slow] refactor the billing API",
            "backend": "codex",
            "project": "web",
            "host": "h2",
            "title": "refactor the billing API",
        },
    )
    ids["long"] = []
    for host, what in (
        ("h1", "migrate the search index"),
        ("h2", "port the CLI parser"),
        ("h3", "speed up the cache layer"),
    ):
        long = post(
            hub,
            "/tasks",
            {
                "prompt": f"[scenario:lines:600:400] {what}",
                "backend": "claude",
                "project": "app",
                "host": host,
                "title": what,
            },
        )
        ids["long"].append(long["id"])
    post(
        hub,
        "/tasks",
        {
            "prompt": "sleep 600",
            "backend": "shell",
            "host": "local",
            "title": "nightly eval on the GPU box",
            "priority": "high",
        },
    )
    for what in ("document the upload handler", "review the scheduler"):
        post(
            hub,
            "/tasks",
            {
                "prompt": f"[scenario:success] {what}",
                "backend": "codex",
                "project": "infra",
                "host": "h3",
                "after": [ids["slow"]],
                "title": what,
            },
        )
    # What waits, and why: the Live view says it in words.
    post(
        hub,
        "/tasks",
        {
            "prompt": "[scenario:success] write the release notes",
            "backend": "claude",
            "project": "app",
            "after": [ids["long"][0]],
            "title": "write the release notes",
        },
    )
    post(
        hub,
        "/tasks",
        {
            "prompt": "python eval.py --suite full",
            "backend": "shell",
            "labels": ["a100x8"],
            "wait_for_host": True,
            "title": "full eval on an 8-GPU node",
        },
    )
    draft = post(
        hub,
        "/tasks",
        {
            "prompt": "Rename the `Account` model to `Customer` everywhere",
            "backend": "claude",
            "project": "app",
            "draft": True,
            "title": "rename Account to Customer",
        },
    )
    post(
        hub,
        f"/tasks/{draft['id']}",
        {
            "plan": (
                "1. Rename the class in models/account.py and move it to models/customer.py.\n"
                "2. Update the 14 imports (grep -rn 'Account').\n"
                "3. Add a migration renaming the table.\n4. Run the test suite."
            )
        },
        method="PATCH",
    )
    post(
        hub,
        "/batches",
        {
            "name": "weekly evals",
            "tasks": [
                {"name": "lint", "prompt": "echo lint ok", "backend": "shell"},
                {
                    "name": "unit",
                    "prompt": "sleep 2; echo 212 passed",
                    "backend": "shell",
                    "after": ["lint"],
                },
                {"name": "e2e", "prompt": "sleep 300", "backend": "shell", "host": "local"},
                {"name": "flaky", "prompt": "exit 3", "backend": "shell"},
            ],
        },
    )
    return ids


def wait_settled(hub: HubProcess, race_id: str, timeout: float = 120) -> None:
    """Wait until every attempt of a race has ended and it is decided."""
    deadline = time.monotonic() + timeout
    while not hub.client().race(race_id)["settled"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"race {race_id} did not settle")
        time.sleep(0.2)


def shoot(page: Any, name: str, ready: str | None = None, *, scroll: bool = False) -> None:
    """Save the viewport as docs/screenshots/NAME.png once ``ready`` (a selector) shows.

    ``scroll``: scroll the section holding ``ready`` to the top of the viewport first.
    """
    if ready:
        expect(page.locator(ready).first).to_be_visible(timeout=30_000)
        if scroll:
            page.locator(ready).first.evaluate("e => (e.closest('section') || e).scrollIntoView()")
    time.sleep(0.8)  # let throttled re-renders settle
    page.screenshot(path=str(OUT / f"{name}.png"))
    print("wrote", OUT / f"{name}.png")


def main() -> None:
    """Set everything up, take the screenshots, tear everything down."""
    work = Path(tempfile.mkdtemp(prefix="dobby-shots-"))
    with SshdCluster(count=3, user_prefix="dobbyshot") as cluster:
        now = dt.datetime.now(dt.UTC)
        projects = {n: make_git_project(work / n) for n in ("app", "web", "infra")}
        projects["calc"] = make_git_project(work / "calc", CALC_FILES)
        seed_history(
            work / "home", history(3000, now=now, hosts=("h1", "h2", "h3", "local")), projects
        )
        entries = [
            h.inventory_entry(env={"PATH": f"{cluster.fake_bin}:/usr/bin:/bin", **play})
            for h, play in zip(cluster.hosts, RACE_PLAYS, strict=True)
        ]
        entries[2]["labels"] = ["gpu", "a100"]
        entries.append(
            {
                "name": "local",
                "connection": "local",
                "workdir": str(work / "local"),
                "labels": ["hub"],
                "env": {"PATH": f"{cluster.fake_bin}:$PATH"},
            }
        )
        entries.append(
            {
                "name": "gpu-2",
                "address": "127.0.0.9",
                "port": 2222,
                "user": "ml",
                "labels": ["gpu"],
                "backends": ["shell"],
            }
        )  # down: nothing listens
        inventory = write_inventory(work / "inventory.yaml", entries)
        hub = HubProcess(
            home=work / "home",
            inventory=inventory,
            extra_env={"DOBBY_TIMEZONE": "UTC", "DOBBY_GITHUB_URL": "https://github.com/acme/app"},
        ).start()
        try:
            # Work submitted before the hosts' first probe can stick in "dispatch" (a hub bug
            # reported separately): wait until the sshd hosts answered once.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                hosts = {h["name"]: h for h in hub.client().hosts()["hosts"]}
                if all(hosts[f"h{i}"]["reachable"] for i in (1, 2, 3)):
                    break
                time.sleep(0.2)
            ids = start_work(hub)
            wait_settled(hub, ids["race"])
            hub.wait_status(ids["slow"], timeout=120)
            for task_id in ids["long"]:
                hub.wait_status(task_id, ("running",), timeout=120)
            with sync_playwright() as p:
                browser = launch(p)
                context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
                page = context.new_page()
                base = f"{hub.url}/dashboard"
                page.goto(base + "#/network")
                expect(page.locator("#conn")).to_have_attribute("data-state", "live")
                time.sleep(2)  # the first host probes
                for name, route, ready in (
                    ("network", "#/network", ".host-card"),
                    ("live-jobs", "#/live", "#live-table"),
                    ("tasks", "#/tasks", "#task-rows tr"),
                    ("heatmap", "#/heatmap", "svg.heatmap"),
                    ("usage", "#/usage", "#cost-chart"),
                    ("batches", "#/batches", ".batch"),
                    ("drafts", "#/drafts", ".draft"),
                ):
                    page.goto(base + route)
                    shoot(page, name, ready)
                page.goto(f"{base}#/races/{ids['race']}")
                shoot(page, "race", ".race-col.winner")
                for tab, ready in (
                    ("logs", ".ev-result"),
                    ("details", "#task-fields"),
                    ("timeline", "svg.timeline"),
                ):
                    page.goto(f"{base}#/tasks/{ids['slow']}/{tab}")
                    shoot(page, f"task-{tab}", ready, scroll=tab == "details")
                page.goto(base + "#/live")
                page.locator("#theme-toggle").click()
                shoot(page, "live-jobs-dark", "#live-table")
                phone = browser.new_context(
                    viewport={"width": 390, "height": 844},
                    color_scheme="dark",
                    device_scale_factor=1,
                )
                small = phone.new_page()
                small.goto(base + "#/tasks")
                expect(small.locator("#conn")).to_have_attribute("data-state", "live")
                shoot(small, "tasks-phone", "#task-rows tr")
                browser.close()
        finally:
            for task in hub.client().tasks()["tasks"]:  # leave nothing running behind
                if task["status"] in ("pending", "running"):
                    hub.client().cancel(task["id"])
            hub.stop()


if __name__ == "__main__":
    main()
