// Usage: each account's quota windows as the agents report them, limits in force and budgets
// (GET /usage); tokens and cost per backend over the rolling 5-hour and 7-day windows, and cost
// per day (GET /dashboard/api/usage).

import { api } from "../api.js";
import { el, fmtCost, fmtTime, fmtTokens, replace, svg, throttle } from "../dom.js";
import { state } from "../hub.js";

const KINDS = ["input", "output", "cache_read", "cache_write"];
const WINDOW_TITLE = { "5h": "Last 5 hours", "7d": "Last 7 days" };
const backendClass = (b) => (["claude", "codex", "shell"].includes(b) ? `b-${b}` : "b-other");

const WINDOW_NAME = { five_hour: "5-hour window", seven_day: "weekly window", seven_day_opus: "weekly Opus", seven_day_sonnet: "weekly Sonnet" };

// One account: limited or not, each window's utilisation (real figures from the agents; a
// configured guess only where no agent reported that window), the tasks waiting on it.
function accountCard(acc) {
  const windows = (acc.windows || []).map((w) => {
    const pct = typeof w.utilization === "number" ? Math.round(100 * w.utilization) : null;
    const bits = [pct === null ? "no figure" : `${pct}% used`];
    if (w.status) bits.push(w.status.replace("_", " "));
    if (w.resets_at) bits.push(`resets ${fmtTime(w.resets_at)}`);
    if (w.source === "configured") bits.push("configured guess");
    return el("div", { class: "urow uwindow", "data-window": w.window, "data-source": w.source || "" },
      el("span", { class: "uname muted small" }, WINDOW_NAME[w.window] || w.window),
      el("div", { class: "ubar", role: "img", "aria-label": `${WINDOW_NAME[w.window] || w.window}: ${bits[0]}` },
        el("span", { class: `seg ${pct !== null && pct >= 90 ? "k-over" : "k-input"}`, style: { width: `${Math.min(100, pct || 0)}%` } })),
      el("span", { class: "unums" }, bits.join(" · ")));
  });
  const waiting = acc.waiting || [];
  return el("div", { class: `card account ${acc.limited ? "down" : "up"}`, "data-account": acc.account, "data-limited": String(acc.limited) },
    el("div", { class: "card-head" }, el("strong", {}, acc.account), el("span", { class: "muted small" }, (acc.hosts || []).join(", ") || "no host")),
    acc.limited ? el("p", { class: "error small" }, `Limited until ${fmtTime(acc.limited_until)}`, acc.limit?.note ? ` — ${acc.limit.note}` : "") : el("p", { class: "muted small" }, "Not limited"),
    windows.length ? windows : el("p", { class: "muted small" }, "No window reported yet."),
    waiting.length ? el("p", { class: "small" }, `Waiting: `, waiting.map((id) => el("a", { href: `#/tasks/${encodeURIComponent(id)}`, class: "mono" }, id, " "))) : null);
}

function accountsPanel(usage) {
  const budgets = (usage.budgets || []).map((b) => el("p", { class: b.over ? "error small" : "small", "data-budget": b.scope },
    `Budget of the ${b.scope}: `, Object.entries(b.windows || {}).map(([w, v]) => `${w} ${fmtCost(v.spent)} of ${fmtCost(v.cap)}`).join(", "), b.over ? ` — ${b.over}` : ""));
  return el("section", { class: "panel", id: "accounts" },
    el("h2", {}, "Accounts"),
    el("p", { class: "muted small" }, "Usage limits belong to accounts (inventory account:/accounts:); windows as the agents last reported them."),
    el("div", { class: "cards" }, (usage.accounts || []).map(accountCard)),
    budgets);
}

function windowCard(win, real) {
  const max = Math.max(1, ...win.backends.map((b) => b.tokens.total));
  const rows = win.backends.map((b) => {
    const bar = el("div", { class: "ubar", role: "img", "aria-label": `${b.backend}: ${b.tokens.total} tokens` },
      KINDS.map((k) => el("span", { class: `seg k-${k}`, style: { width: `${(100 * b.tokens[k]) / max}%` }, title: `${k.replace("_", " ")}: ${b.tokens[k].toLocaleString()}` })));
    const row = el("div", { class: "urow", "data-backend": b.backend },
      el("span", { class: "uname" }, b.backend),
      bar,
      el("span", { class: "unums" }, `${fmtTokens(b.tokens.total)} tokens · ${fmtCost(b.cost_usd)} · ${b.tasks} task${b.tasks === 1 ? "" : "s"}`));
    // Real figures from the agents replace the configured guesses (shown under Accounts).
    return b.limit && !real.has(b.backend) ? el("div", {}, row, limitRow(b)) : row;
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
    el("p", { class: "muted" }, "Each account's usage windows and limits, then tokens and cost of finished tasks per backend (codex runs are priced from the hub's price table). Where no agent reported a window, limits come from the hub's usage_limits setting; without them bars compare backends with each other.")), body);
  let alive = true;
  let draw = null;
  const resized = throttle(() => draw?.(), 200);
  window.addEventListener("resize", resized);

  async function load() {
    let data;
    let usage;
    try {
      [data, usage] = await Promise.all([api("/dashboard/api/usage"), api("/usage")]);
    } catch (err) {
      replace(body, el("p", { class: "error" }, `Cannot load usage: ${err.message}`));
      return;
    }
    if (!alive) return;
    state.usage = usage;
    const real = new Set((usage.accounts || []).filter((a) => (a.windows || []).some((w) => w.source !== "configured")).map((a) => a.backend));
    const cost = costPanel(data);
    replace(body, accountsPanel(usage), tokenLegend(), el("div", { class: "cols" }, data.windows.map((w) => windowCard(w, real))), cost.panel);
    draw = cost.draw;
    draw();
  }
  load();
  // Each load makes the hub read every finished task: only when one finishes, at most every 10 s.
  const reload = throttle(load, 10000);
  return {
    update(kind, task) {
      if (kind === "reset" || kind === "account" || (kind === "task" && ["completed", "failed", "cancelled"].includes(task?.status))) reload();
    },
    destroy() {
      alive = false;
      window.removeEventListener("resize", resized);
    },
  };
}
