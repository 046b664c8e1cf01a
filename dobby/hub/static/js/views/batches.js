// Batches: each batch with a progress bar by status; a batch's page lists its tasks.

import { api } from "../api.js";
import { badge, el, fmtCost, fmtDuration, fmtTime, replace, taskElapsed, taskLink, throttle } from "../dom.js";
import { state } from "../hub.js";

const ORDER = ["completed", "failed", "cancelled", "running", "pending", "draft"];

function progress(view) {
  const total = view.total || 0;
  const finished = ["completed", "failed", "cancelled"].reduce((n, s) => n + (view.counts[s] || 0), 0);
  const label = ORDER.filter((s) => view.counts[s]).map((s) => `${view.counts[s]} ${s}`).join(", ") || "no tasks";
  return el("div", { class: "progress-wrap" },
    el("div", { class: "progress", role: "img", "aria-label": `${finished} of ${total} finished: ${label}` },
      ORDER.map((s) => (view.counts[s] ? el("span", { class: `seg st-${s}`, style: { width: `${(100 * view.counts[s]) / Math.max(total, 1)}%` }, title: `${view.counts[s]} ${s}` }) : null))),
    el("span", { class: "muted small" }, `${finished}/${total} finished · ${label}`));
}

function batchRow(view) {
  return el("article", { class: "card batch", "data-batch": view.id },
    el("header", { class: "card-head" },
      el("h3", {}, el("a", { href: `#/batches/${encodeURIComponent(view.id)}` }, view.name || view.id)),
      view.done ? el("span", { class: "pill up" }, "done") : el("span", { class: "pill" }, "in progress")),
    el("p", { class: "mono muted small" }, `${view.id} · ${fmtTime(view.created_at)}${view.file ? " · " + view.file : ""} · ${fmtCost(view.cost_usd)}`),
    progress(view));
}

function taskTable(view) {
  return el("div", { class: "table-wrap" }, el("table", { class: "grid", id: "batch-tasks" },
    el("thead", {}, el("tr", {}, ["Name", "Task", "Status", "Host", "Duration", "Cost"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, view.tasks.map((t) => {
      const task = state.tasks.get(t.id) || t;
      return el("tr", { "data-task": t.id },
        el("td", { class: "mono" }, t.name),
        el("td", {}, taskLink(task)),
        el("td", {}, badge(task.status, task.reason)),
        el("td", {}, task.host || "—"),
        el("td", { class: "num" }, fmtDuration(taskElapsed(task))),
        el("td", { class: "num" }, fmtCost(task.cost_usd)));
    }))));
}

export function mount(root, route) {
  const head = el("header", { class: "view-head" });
  const body = el("div", { id: "batches" }, el("p", { class: "muted" }, "Loading…"));
  root.append(head, body);
  let id = route.id || null;
  let alive = true;
  let shown = new Set(); // task ids on screen, to refresh only when one of them changes

  async function load() {
    try {
      if (id) {
        const view = await api(`/batches/${encodeURIComponent(id)}`);
        if (!alive) return;
        shown = new Set(view.tasks.map((t) => t.id));
        replace(head, el("p", { class: "crumbs" }, el("a", { href: "#/batches" }, "← Batches")),
          el("h1", {}, view.name || view.id), el("p", { class: "muted" }, `${view.total} tasks · ${fmtCost(view.cost_usd)}`));
        replace(body, el("section", { class: "panel" }, progress(view)), taskTable(view));
      } else {
        const { batches } = await api("/batches");
        if (!alive) return;
        shown = null;
        replace(head, el("h1", {}, "Batches"), el("p", { class: "muted" }, `${batches.length} batch${batches.length === 1 ? "" : "es"}`));
        replace(body, batches.length ? el("div", { class: "batch-list" }, batches.map(batchRow)) : el("p", { class: "empty muted" }, "No batch yet (dobby batch FILE)."));
      }
    } catch (err) {
      replace(body, el("p", { class: "error" }, err.status === 404 ? `No batch ${id}.` : `Cannot load batches: ${err.message}`));
    }
  }
  load();
  const reload = throttle(load, 1000);
  return {
    setRoute(r) {
      id = r.id || null;
      load();
    },
    update(kind, task) {
      if (kind === "batches" || kind === "reset") reload();
      else if (kind === "task" && task?.batch_id && (shown === null || shown.has(task.id))) reload();
    },
    destroy() {
      alive = false;
    },
  };
}
