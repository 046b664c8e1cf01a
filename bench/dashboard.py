"""Dashboard first-load benchmark: a hub with 10k/100k finished tasks, opened in Chromium.

For each size, a hub home is seeded with that many finished tasks (as bench/history.py does),
a real hub process is started on it, and the dashboard's task list is opened in a fresh
browser context (no cache) ``--repeat`` times with Playwright and Debian's chromium:

- first load: navigation start to the first task row visible (``performance.now()`` at the
  first animation frame after ``#task-rows tr`` enters the DOM), median of the runs
- bytes the page received by then, and 3 s later (headers and bodies, as the wire carried
  them: Chromium's ``encodedDataLength``; the event stream's bytes so far included)
- the hub's resident memory after the loads and after the page stayed open ``--stay`` s

Baseline in the same run: ``GET /tasks?limit=50`` on the same hub (p50, keep-alive).

Run: ``python bench/dashboard.py [--sizes 10000,100000] [--repeat 5] [--data DIR]``
(``--data`` keeps the seeded databases there for the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402

from bench.store_common import Http, history_task, pct, rss_mb, seed  # noqa: E402
from tests.fixtures.dashboard import VIEWPORT, launch  # noqa: E402
from tests.fixtures.hub import HubProcess, write_inventory  # noqa: E402

QUIET_MS = 3000
# Installed before the page's own scripts (an init script: the page's CSP does not apply): the
# time the first task row enters the DOM, and the next animation frame, when it is painted.
WATCH_FIRST_ROW = """(() => {
  const obs = new MutationObserver(() => {
    if (window.__rowAt || !document.querySelector("#task-rows tr")) return;
    window.__rowAt = performance.now();
    requestAnimationFrame(() => { window.__rowPainted = performance.now(); });
    obs.disconnect();
  });
  obs.observe(document, { childList: true, subtree: true });
})();"""
FIRST_ROW = "() => window.__rowPainted || null"


def seeded_home(n: int, root: Path, data: Path | None) -> Path:
    """Return a hub home holding ``n`` finished tasks (seeded once per ``data`` directory)."""
    home = root / "home"
    cached = data / f"{n}.db" if data is not None else None
    if cached is not None and cached.exists():
        home.mkdir(parents=True)
        shutil.copyfile(cached, home / "dobby.db")
        return home
    rng = random.Random(n)
    now = time.time()
    tasks = [history_task(rng, i, n, now, span_s=90 * 86400.0) for i in range(n)]
    took = seed(home, tasks)
    print(f"   (seeded {n:,} tasks in {took:.1f} s)")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(home / "dobby.db", cached)
    return home


class Wire:
    """Count the bytes a page receives, from Chromium's own network events (CDP)."""

    def __init__(self, context: Any, page: Any) -> None:
        self.done: dict[str, int] = {}  # request id -> bytes, once finished
        self.partial: dict[str, int] = {}  # request id -> bytes so far (streams)
        self.cdp = context.new_cdp_session(page)
        self.cdp.on("Network.dataReceived", self._data)
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.send("Network.enable")

    def _data(self, event: dict[str, Any]) -> None:
        rid = event["requestId"]
        self.partial[rid] = self.partial.get(rid, 0) + int(event.get("encodedDataLength") or 0)

    def _finished(self, event: dict[str, Any]) -> None:
        self.done[event["requestId"]] = int(event["encodedDataLength"])

    def total(self) -> int:
        """Return the bytes received so far (finished responses whole, open streams so far)."""
        open_ = sum(v for k, v in self.partial.items() if k not in self.done)
        return sum(self.done.values()) + open_


def first_load(browser: Any, url: str) -> tuple[float, int, int]:
    """Open the task list once; return (ms to the first row, bytes then, bytes when quiet)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.add_init_script(WATCH_FIRST_ROW)
        wire = Wire(context, page)
        page.goto(url, wait_until="commit")
        shown = page.wait_for_function(FIRST_ROW, polling=20, timeout=300_000)
        ms = float(shown.json_value())
        at_row = wire.total()
        # What the views fetch right after the first paint (the event stream stays open, so
        # the network is never idle: a fixed wait instead).
        page.wait_for_timeout(QUIET_MS)
        return ms, at_row, wire.total()
    finally:
        context.close()


async def raw_list(port: int, repeat: int) -> tuple[float, int]:
    """Return the p50 seconds and bytes of ``GET /tasks?limit=50``."""
    http = Http(port)
    times, size = [], 0
    try:
        for _ in range(repeat):
            began = time.perf_counter()
            status, body = await http.request("GET", "/tasks?limit=50")
            times.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"GET /tasks?limit=50: HTTP {status}")
            size = len(body)
    finally:
        http.close()
    return pct(times, 50), size


def browse(url: str, repeat: int, stay: int, hub: HubProcess) -> dict[str, Any]:
    """Load the task list ``repeat`` times, then keep it open ``stay`` s; return the figures."""
    assert hub.proc is not None
    with sync_playwright() as p:
        browser = launch(p)
        try:
            loads = [first_load(browser, url) for _ in range(repeat)]
            rss_loaded, _ = rss_mb(hub.proc.pid)
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.add_init_script(WATCH_FIRST_ROW)
            page.goto(url)
            page.wait_for_function(FIRST_ROW, polling=20, timeout=300_000)
            page.wait_for_timeout(stay * 1000)
            rss_open, peak = rss_mb(hub.proc.pid)
            context.close()
        finally:
            browser.close()
    return {"loads": loads, "rss_loaded": rss_loaded, "rss_open": rss_open, "peak": peak}


def run_size(n: int, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="dobby-dashboard-") as tmp:
        root = Path(tmp)
        home = seeded_home(n, root, Path(args.data) if args.data else None)
        inv = write_inventory(root / "inv.yaml", [{"name": "local", "connection": "local"}])
        hub = HubProcess(home=home, inventory=inv).start()
        try:
            api_p50, api_bytes = asyncio.run(raw_list(hub.port, 20))
            got = browse(f"{hub.url}/dashboard#/tasks", args.repeat, args.stay, hub)
        finally:
            hub.stop()
    loads = got["loads"]
    ms = statistics.median(x[0] for x in loads)
    at_row = statistics.median(x[1] for x in loads)
    quiet = statistics.median(x[2] for x in loads)
    load = os.getloadavg()[0]
    print(f"\n{n:,} tasks ({args.repeat} fresh loads, medians; load average {load:.1f} "
          f"on {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"   dobby  first task row visible  {ms:9.0f} ms   (runs: "
          f"{', '.join(f'{x[0]:.0f}' for x in loads)})")  # fmt: skip
    print(f"   dobby  bytes at first row      {at_row / 1e6:9.3f} MB")
    print(f"   dobby  bytes 3 s later         {quiet / 1e6:9.3f} MB")
    print(f"   base   GET /tasks?limit=50     {api_p50 * 1000:9.2f} ms   "
          f"{api_bytes / 1024:.1f} KiB")  # fmt: skip
    print(f"   dobby  hub RSS after loads {got['rss_loaded']:.0f} MB, after {args.stay} s open "
          f"{got['rss_open']:.0f} MB (peak {got['peak']:.0f} MB)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stay", type=int, default=10, help="seconds the page stays open")
    parser.add_argument("--data", default=None, help="keep seeded databases in this directory")
    args = parser.parse_args()
    print("== dashboard first load (Chromium, hub process; fresh browser context per load) ==")
    for n in (int(s) for s in args.sizes.split(",")):
        run_size(n, args)


if __name__ == "__main__":
    main()
