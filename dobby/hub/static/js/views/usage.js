// Usage: tokens and cost per backend over the rolling 5-hour and 7-day windows, and cost per
// day (GET /dashboard/api/usage).

import { api } from "../api.js";
import { el, fmtCost, fmtTokens, replace, svg, throttle } from "../dom.js";

const KINDS = ["input", "output", "cache_read", "cache_write"];
const WINDOW_TITLE = { "5h": "Last 5 hours", "7d": "Last 7 days" };
const backendClass = (b) => (["claude", "codex", "shell"].includes(b) ? `b-${b}` : "b-other");

function windowCard(win) {
  const max = Math.max(1, ...win.backends.map((b) => b.tokens.total));
  const rows = win.backends.map((b) => {
    const bar = el("div", { class: "ubar", role: "img", "aria-label": `${b.backend}: ${b.tokens.total} tokens` },
      KINDS.map((k) => el("span", { class: `seg k-${k}`, style: { width: `${(100 * b.tokens[k]) / max}%` }, title: `${k.replace("_", " ")}: ${b.tokens[k].toLocaleString()}` })));
    const row = el("div", { class: "urow", "data-backend": b.backend },
      el("span", { class: "uname" }, b.backend),
      bar,
      el("span", { class: "unums" }, `${fmtTokens(b.tokens.total)} tokens · ${fmtCost(b.cost_usd)} · ${b.tasks} task${b.tasks === 1 ? "" : "s"}`));
    return b.limit ? el("div", {}, row, limitRow(b)) : row;
  });
  return el("section", { class: "panel", "data-window": win.name },
    el("h2", {}, WINDOW_TITLE[win.name] || win.name),
    rows.length ? rows : el("p", { class: "muted" }, "Nothing finished in this window."));
}

// Utilisation of the limits set in the hub's `usage_limits` setting (one bar per limit).
function limitRow(b) {
  const parts = [];
  if (b.limit.tokens) parts.push(["tokens", b.limit.tokens_used, `${fmtTokens(b.limit.tokens)} tokens`]);
  if (b.limit.cost_usd) parts.push(["cost", b.limit.cost_used, fmtCost(b.limit.cost_usd)]);
  return el("div", { class: "ulimits" }, parts.map(([kind, used, of]) => {
    const pct = Math.round(100 * used);
    return el("div", { class: "urow ulimit", "data-limit": kind, "data-used": String(pct) },
      el("span", { class: "uname muted small" }, `${kind} limit`),
      el("div", { class: "ubar", role: "img", "aria-label": `${pct}% of the ${kind} limit` },
        el("span", { class: `seg ${pct >= 90 ? "k-over" : "k-input"}`, style: { width: `${Math.min(100, pct)}%` } })),
      el("span", { class: "unums" }, `${pct}% of ${of}`));
  }));
}

function tokenLegend() {
  return el("p", { class: "ulegend muted small" }, KINDS.map((k) => el("span", {}, el("span", { class: `swatch k-${k}` }), ` ${k.replace("_", " ")} `)));
}

function costChart(data, width) {
  const W = Math.max(360, width);
  const H = 220;
  const L = 52;
  const B = 24;
  const days = data.days;
  const max = Math.max(0.01, ...days.map((d) => d.total));
  const bw = (W - L - 8) / days.length;
  const y = (v) => H - B - (v / max) * (H - B - 12);
  const parts = [
    svg("line", { x1: L, x2: W, y1: H - B, y2: H - B, class: "axis" }),
    svg("text", { x: L - 6, y: 16, class: "tick", "text-anchor": "end" }, fmtCost(max)),
    svg("text", { x: L - 6, y: H - B, class: "tick", "text-anchor": "end" }, "$0"),
  ];
  days.forEach((d, i) => {
    let base = 0;
    const x = L + i * bw + 1;
    for (const b of data.backends) {
      const v = d.cost_usd[b] || 0;
      if (!v) continue;
      parts.push(svg("rect", { x, y: y(base + v), width: Math.max(bw - 2, 1), height: Math.max(y(base) - y(base + v), 1), class: `cbar ${backendClass(b)}` },
        svg("title", {}, `${d.date} · ${b}: ${fmtCost(v)}`)));
      base += v;
    }
    parts.push(svg("rect", { x, y: 12, width: Math.max(bw - 2, 1), height: H - B - 12, class: "chit", "data-date": d.date, "data-total": d.total },
      svg("title", {}, `${d.date}: ${fmtCost(d.total)}`)));
    if (i % 5 === 0 || i === days.length - 1) parts.push(svg("text", { x: x + bw / 2, y: H - 6, class: "tick", "text-anchor": "middle" }, d.date.slice(5)));
  });
  const total = days.reduce((s, d) => s + d.total, 0);
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "cost-chart", id: "cost-chart", role: "img", "aria-label": `Cost per day, total ${fmtCost(total)}` }, parts);
}

function costPanel(data) {
  const total = data.days.reduce((s, d) => s + d.total, 0);
  const box = el("div", { class: "chart-scroll" });
  const panel = el("section", { class: "panel" },
    el("h2", {}, "Cost per day", el("span", { class: "muted small" }, ` · ${fmtCost(total)} over ${data.days.length} days`)),
    el("p", { class: "ulegend muted small" }, data.backends.map((b) => el("span", {}, el("span", { class: `swatch ${backendClass(b)}` }), ` ${b} `))),
    box);
  return { panel, draw: () => replace(box, costChart(data, box.clientWidth - 4)) };
}

export function mount(root) {
  const body = el("div", { id: "usage" }, el("p", { class: "muted" }, "Loading…"));
  root.append(el("header", { class: "view-head" }, el("h1", {}, "Usage"),
    el("p", { class: "muted" }, "Tokens and cost of finished tasks per backend (codex runs are priced from the hub's price table). Limits come from the hub's usage_limits setting; without them bars compare backends with each other.")), body);
  let alive = true;
  let draw = null;
  const resized = throttle(() => draw?.(), 200);
  window.addEventListener("resize", resized);

  async function load() {
    let data;
    try {
      data = await api("/dashboard/api/usage");
    } catch (err) {
      replace(body, el("p", { class: "error" }, `Cannot load usage: ${err.message}`));
      return;
    }
    if (!alive) return;
    const cost = costPanel(data);
    replace(body, tokenLegend(), el("div", { class: "cols" }, data.windows.map(windowCard)), cost.panel);
    draw = cost.draw;
    draw();
  }
  load();
  // Each load makes the hub read every finished task: only when one finishes, at most every 10 s.
  const reload = throttle(load, 10000);
  return {
    update(kind, task) {
      if (kind === "reset" || (kind === "task" && ["completed", "failed", "cancelled"].includes(task?.status))) reload();
    },
    destroy() {
      alive = false;
      window.removeEventListener("resize", resized);
    },
  };
}
