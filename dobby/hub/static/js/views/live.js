// Live jobs: what runs now (host, backend, elapsed, current step, cost) and what waits. The
// running tasks are the page's own (bounded by the hosts' capacity); the queue can be long, so
// the hub answers its oldest WAITING_SHOWN and its count.

import { api } from "../api.js";
import { el, fmtCost, fmtDuration, fmtTime, syncRows, taskElapsed, taskLink, throttle } from "../dom.js";
import { refreshLive, rememberListed, state, tasksPath } from "../hub.js";
import { waitingText } from "../words.js";
import { actionButtons } from "./actions.js";

const WAITING_SHOWN = 200;

const STEP_ICON = { tool_use: "⚙", command: "$", file_change: "✎", text: "›", reasoning: "…", tool_result: "↩", error: "!", line: "›" };

function costSoFar(task) {
  const detail = state.details.get(task.id);
  const cost = task.cost_usd ?? detail?.cost_usd;
  if (cost === null || cost === undefined) return "—";
  return detail?.cost_estimated && task.cost_usd == null ? `~${fmtCost(cost)}` : fmtCost(cost);
}

function stepCell(task) {
  const step = state.steps.get(task.id);
  const detail = state.details.get(task.id)?.step;
  if (!step) return el("td", { class: "step muted" }, detail || "waiting for output…");
  return el("td", { class: ["step", step.is_error && "error"], title: detail || null },
    el("span", { class: "step-kind", "aria-hidden": "true" }, STEP_ICON[step.kind] || "·"), " ",
    el("span", { class: "step-text" }, step.text));
}

function runningRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, taskLink(task, "logs"), el("div", { class: "mono muted small" }, task.id)),
    el("td", {}, el("a", { href: `#/network/${encodeURIComponent(task.host || "")}` }, task.host || "—")),
    el("td", {}, task.backend, task.model ? el("span", { class: "muted small" }, ` ${task.model}`) : null),
    el("td", { class: "elapsed num", "data-started": task.started_at || "" }, fmtDuration(taskElapsed(task))),
    stepCell(task),
    el("td", { class: "num cost" }, costSoFar(task)),
    el("td", {}, actionButtons(task)));
}

function waitingRow(task) {
  return el("tr", { "data-task": task.id },
    el("td", {}, taskLink(task), el("div", { class: "mono muted small" }, task.id)),
    el("td", { class: "waiting-on", "data-waiting": task.waiting_on || "capacity" }, waitingText(task)),
    el("td", {}, task.backend),
    el("td", {}, task.host || task.want_host || (task.host_selector?.length ? `labels: ${task.host_selector.join(", ")}` : "any")),
    el("td", {}, task.priority),
    el("td", {}, fmtTime(task.created_at)),
    el("td", {}, actionButtons(task)));
}

function section(id, title, head, emptyText) {
  const heading = el("h2", { id: `${id}-title` }, title);
  const tbody = el("tbody");
  const wrap = el("div", { class: "table-wrap" }, el("table", { class: "grid", id },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))), tbody));
  const empty = el("p", { class: "empty muted" }, emptyText);
  const node = el("section", { "aria-labelledby": `${id}-title` }, heading, wrap, empty);
  return { node, heading, tbody, wrap, empty };
}

const runSig = (t) => [t.status, t.title, t.host, t.backend, t.model, t.started_at].join("\u0001");
const waitSig = (t) => [t.status, t.title, t.waiting_on, t.slurm_state, t.not_before, t.host, t.want_host, t.priority, t.backend].join("\u0001");

function patchRunning(row, task) {
  row.children[4].replaceWith(stepCell(task));
  row.children[5].textContent = costSoFar(task);
}

export function mount(root) {
  const running = section("live-table", "Running", ["Task", "Host", "Backend", "Elapsed", "Current step", "Cost so far", ""], "No task is running.");
  const waiting = section("waiting-table", "Waiting", ["Task", "Waiting for", "Backend", "Host", "Priority", "Submitted", ""], "Nothing is queued.");
  root.append(el("header", { class: "view-head" }, el("h1", {}, "Live jobs")), running.node, waiting.node);

  let waitRows = []; // the oldest waiting tasks, as the hub last answered
  let waitTotal = null;
  let alive = true;

  async function loadWaiting() {
    try {
      const since = state.lastSeq;
      const answer = await api(tasksPath({ status: "pending", sort: "oldest", limit: WAITING_SHOWN }));
      if (!alive) return;
      waitRows = answer.tasks;
      waitTotal = answer.total;
      rememberListed(waitRows, since);
    } catch (err) { /* shown next time */ }
    later();
  }

  function render() {
    const run = [...state.running.values()];
    const wait = waitRows.map((t) => state.tasks.get(t.id) || t).filter((t) => t.status === "pending");
    run.sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    const counts = { running: run.length, waiting: waitTotal ?? wait.length }; // every running task is here
    for (const [part, items, build, sig, patch] of [[running, run, runningRow, runSig, patchRunning], [waiting, wait, waitingRow, waitSig, null]]) {
      const name = part === running ? "Running" : "Waiting";
      const n = part === running ? counts.running : counts.waiting;
      part.heading.textContent = items.length < n ? `${name} (${items.length} of ${n.toLocaleString()} shown)` : `${name} (${n.toLocaleString()})`;
      part.wrap.hidden = !items.length;
      part.empty.hidden = !!items.length;
      if (!state.loaded || waitTotal === null) part.empty.textContent = "Loading…";
      else part.empty.textContent = part === running ? "No task is running." : "Nothing is queued.";
      syncRows(part.tbody, items, { key: (t) => t.id, sig, build, patch });
    }
  }
  const later = throttle(render, 200);
  // The queue changes with every submit and start: asked again at most once a second.
  const reloadWaiting = throttle(loadWaiting, 1000);
  render();
  loadWaiting();
  const tick = setInterval(() => {
    for (const cell of root.querySelectorAll("td.elapsed")) {
      const t = Date.parse(cell.dataset.started);
      if (!Number.isNaN(t)) cell.textContent = fmtDuration((Date.now() - t) / 1000);
    }
  }, 1000);
  const poll = setInterval(() => refreshLive().catch(() => {}), 5000); // costs so far
  return {
    update(kind, task) {
      if (kind === "task") {
        const shown = waitRows.some((t) => t.id === task.id);
        // a new arrival joins the end of the queue at once; the hub's answer follows
        if (task.status === "pending" && !shown && waitRows.length < WAITING_SHOWN) waitRows.push(task);
        later();
        if (task.status === "pending" || shown) reloadWaiting();
      } else if (kind === "reset") {
        later();
        loadWaiting();
      } else if (kind === "step" || kind === "counts") later();
    },
    destroy() {
      alive = false;
      clearInterval(tick);
      clearInterval(poll);
    },
  };
}
