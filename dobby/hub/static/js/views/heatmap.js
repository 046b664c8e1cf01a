// Heatmap: a GitHub-style grid of completed tasks per day, for all projects and for each one
// (GET /dashboard/api/heatmap). Hover or focus a grid and use the arrow keys for counts.

import { api } from "../api.js";
import { el, replace, svg, throttle } from "../dom.js";

const CELL = 12;
const GAP = 3;
const LEFT = 30;
const TOP = 18;
const DAY_MS = 86400000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const dayOf = (iso) => Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10));
const isoOf = (ms) => new Date(ms).toISOString().slice(0, 10);

function level(count, max) {
  if (!count) return 0;
  return Math.min(4, Math.max(1, Math.ceil((4 * count) / Math.max(max, 1))));
}

function describe(count, date, project) {
  const d = new Date(dayOf(date));
  const when = `${WEEKDAYS[d.getUTCDay()]} ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
  return `${count} completion${count === 1 ? "" : "s"} on ${when}${project ? ` · ${project}` : ""}`;
}

function grid(data, days, project, status) {
  const start = dayOf(data.start);
  const end = dayOf(data.end);
  const offset = new Date(start).getUTCDay();
  const n = Math.round((end - start) / DAY_MS) + 1;
  const weeks = Math.ceil((n + offset) / 7);
  const max = Math.max(0, ...Object.values(days));
  const cells = [];
  const labels = [];
  let lastMonth = -1;
  let lastLabelCol = -9;
  for (let i = 0; i < n; i++) {
    const date = isoOf(start + i * DAY_MS);
    const col = Math.floor((i + offset) / 7);
    const row = (i + offset) % 7;
    const count = days[date] || 0;
    const month = new Date(start + i * DAY_MS).getUTCMonth();
    if (row === 0 && month !== lastMonth) {
      if (col - lastLabelCol < 3) labels.pop(); // no room for the previous (partial) month
      labels.push(svg("text", { x: LEFT + col * (CELL + GAP), y: TOP - 6, class: "hm-month" }, MONTHS[month]));
      lastMonth = month;
      lastLabelCol = col;
    }
    cells.push(svg("rect", { x: LEFT + col * (CELL + GAP), y: TOP + row * (CELL + GAP), width: CELL, height: CELL, rx: 2,
      class: `hm-cell lvl-${level(count, max)}`, "data-date": date, "data-count": count, "data-index": i },
    svg("title", {}, describe(count, date, project))));
  }
  const rows = [1, 3, 5].map((r) => svg("text", { x: 0, y: TOP + r * (CELL + GAP) + CELL - 2, class: "hm-weekday" }, WEEKDAYS[r]));
  const width = LEFT + weeks * (CELL + GAP);
  const height = TOP + 7 * (CELL + GAP);
  const label = `${project || "All projects"}: completions per day from ${data.start} to ${data.end}; arrow keys move between days`;
  const node = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "heatmap", tabindex: "0", role: "img",
    "aria-label": label, "data-project": project || "" }, rows, labels, cells);
  let sel = n - 1;
  const show = (target) => {
    if (!target?.dataset?.date) return;
    for (const c of node.querySelectorAll(".sel")) c.classList.remove("sel");
    target.classList.add("sel");
    status.textContent = describe(+target.dataset.count, target.dataset.date, project);
  };
  node.addEventListener("mouseover", (e) => show(e.target.closest("rect")));
  node.addEventListener("focus", () => show(cells[sel]));
  node.addEventListener("keydown", (e) => {
    const move = { ArrowLeft: -7, ArrowRight: 7, ArrowUp: -1, ArrowDown: 1, Home: -n, End: n }[e.key];
    if (move === undefined) return;
    e.preventDefault();
    sel = Math.min(n - 1, Math.max(0, sel + move));
    show(cells[sel]);
  });
  return node;
}

function legend() {
  return el("p", { class: "hm-legend muted small", "aria-hidden": "true" }, "Less ",
    [0, 1, 2, 3, 4].map((l) => svg("svg", { width: CELL, height: CELL, class: "hm-key" }, svg("rect", { width: CELL, height: CELL, rx: 2, class: `hm-cell lvl-${l}` }))),
    " More");
}

function block(data, entry, project, status) {
  return el("section", { class: "panel hm-block", "data-project": project || "" },
    el("h2", {}, project || "All projects", el("span", { class: "muted small" }, ` · ${entry.total.toLocaleString()} completed`)),
    el("div", { class: "hm-scroll" }, grid(data, entry.days, project, status)));
}

export function mount(root) {
  const status = el("p", { class: "hm-status", id: "hm-status", role: "status", "aria-live": "polite" }, "Hover a day (or focus a grid and use the arrow keys) to see its count.");
  const body = el("div", { id: "heatmap" }, el("p", { class: "muted" }, "Loading…"));
  const sub = el("p", { class: "muted" });
  root.append(el("header", { class: "view-head" }, el("h1", {}, "Heatmap"), sub), status, body);
  let alive = true;

  async function load() {
    let data;
    try {
      data = await api("/dashboard/api/heatmap");
    } catch (err) {
      replace(body, el("p", { class: "error" }, `Cannot load the heatmap: ${err.message}`));
      return;
    }
    if (!alive) return;
    sub.textContent = `Completed tasks per day, ${data.start} to ${data.end} (${data.timezone})`;
    replace(body, legend(), block(data, data.total, null, status), data.projects.map((p) => block(data, p, p.project, status)));
  }
  load();
  // Each load makes the hub read every finished task: only when one finishes, at most every 10 s.
  const reload = throttle(load, 10000);
  return {
    update(kind, task) {
      if (kind === "reset" || (kind === "task" && task?.status === "completed")) reload();
    },
    destroy() {
      alive = false;
    },
  };
}
