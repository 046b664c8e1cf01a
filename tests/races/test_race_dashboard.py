"""The dashboard's race view in a real browser (Debian's chromium via Playwright): one column per
attempt of a race that ran on real sshd hosts with the replay agent and a real check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.hub import HubProcess
from tests.fixtures.sshd import SshHost
from tests.hub.test_dashboard import browser, tab  # noqa: F401 - the shared browser fixtures
from tests.races.helpers import CHECK, hub_for, settled, wait_race

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
XSS = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.slow


def test_race_view_shows_one_column_per_attempt(
    tmp_path: Path,
    ssh_hosts: list[SshHost],
    started: list[HubProcess],
    tab: Any,  # noqa: F811
) -> None:
    plays = [
        {"FAKE_AGENT_SCENARIO": "patch_bad"},
        {"FAKE_AGENT_SCENARIO": "patch_good", "FAKE_AGENT_DELAY": "0.2"},
        {"FAKE_AGENT_SCENARIO": "patch_wide", "FAKE_AGENT_DELAY": "0.4"},
    ]
    hub = hub_for(tmp_path, ssh_hosts, plays)
    started.append(hub)
    prompt = f"add mul to calc.py {XSS}"
    out = hub.cli(
        "add", prompt, "--project", "app", "--verify", CHECK, "--race", "3",
        "--hosts", "h1,h2,h3", "--pick", "smallest", "--json", check=True,
    )  # fmt: skip
    race_id = json.loads(out.stdout)["id"]
    view = wait_race(hub, race_id, settled)
    winner = view["winner"]

    page = tab(hub)
    p = page.open(f"#/races/{race_id}")
    cols = p.locator(".race-col")
    expect(cols).to_have_count(3)
    expect(p.locator("h1")).to_contain_text(XSS)  # the title as text, never markup
    expect(p.locator("#race-check")).to_have_text(CHECK)
    expect(p.locator("#race-verdict")).to_contain_text(winner)
    expect(cols.nth(1)).to_have_class("card race-col winner")
    expect(cols.nth(1)).to_have_attribute("data-state", "passed")
    expect(cols.nth(0)).to_have_attribute("data-state", "failed")
    for i, host in enumerate(("h1", "h2", "h3")):
        col = cols.nth(i)
        expect(col.locator('[data-field="host"]')).to_have_text(host)
        expect(col.locator('[data-field="backend"]')).to_have_text("claude")
        expect(col.locator('[data-field="cost"]')).to_contain_text("$")
    expect(cols.nth(0).locator('[data-field="check"]')).to_contain_text("failed · exit 1")
    expect(cols.nth(1).locator('[data-field="check"]')).to_contain_text("passed · exit 0")
    expect(cols.nth(0).locator(".race-tail pre")).to_contain_text("FAIL: test_mul")
    expect(cols.nth(2).locator('[data-field="diff"]')).to_contain_text("3 files")
    cols.nth(1).locator('[data-action="diff"]').click()
    expect(cols.nth(1).locator(".race-diff pre.diff")).to_contain_text("+def mul(a, b):")
    assert not page.dialogs

    p.locator(".crumbs a").click()
    expect(p.locator(f'#race-list tr[data-race="{race_id}"]')).to_contain_text("#2 passed")
    # a task of the race links back to it, shows its check, and its log has the check section
    p.goto(f"{hub.url}/dashboard#/tasks/{view['attempts'][0]['task_id']}/details")
    expect(p.locator("#task-check")).to_contain_text("failed (exit 1")
    expect(p.locator('[data-field="race_id"] a')).to_have_text(race_id)
    p.goto(f"{hub.url}/dashboard#/tasks/{view['attempts'][0]['task_id']}/logs")
    expect(p.locator(".ev-section").first).to_contain_text("verify")
    expect(p.locator(".ev-section.is-error")).to_contain_text("verify failed (exit 1")
