// DOM building and formatting helpers. Data only ever reaches the page as text nodes or
// attribute values: nothing here (or anywhere in the dashboard) assigns innerHTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Create an HTML element: el("a", {href, class, onclick}, "text", child...). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  return append(node, children);
}

/** Create an SVG element the same way. */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  apply(node, attrs);
  return append(node, children);
}

/** Replace all children of a node. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const pad = (n) => String(n).padStart(2, "0");

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** Local date and time, e.g. 2026-11-25 08:30:12. */
export function fmtTime(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in seconds as 4s, 3m 05s, 2h 10m, 3d 4h. */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** How long ago, e.g. "12s ago". */
export function fmtAgo(iso) {
  const t = parseTime(iso);
  return t === null ? "never" : `${fmtDuration((Date.now() - t) / 1000)} ago`;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "—";
  return usd >= 100 ? `$${usd.toFixed(0)}` : usd >= 1 ? `$${usd.toFixed(2)}` : `$${usd.toFixed(4)}`;
}

export function fmtTokens(n) {
  if (!n) return "0";
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

/** Seconds a task ran (or has been running). */
export function taskElapsed(task) {
  const start = parseTime(task.started_at);
  if (start === null) return null;
  const end = parseTime(task.finished_at) ?? Date.now();
  return (end - start) / 1000;
}

export function totalTokens(task) {
  const t = task.tokens || {};
  return (t.input || 0) + (t.output || 0) + (t.cache_read || 0) + (t.cache_write || 0);
}

/** A status pill. */
export function badge(status, extra) {
  return el("span", { class: `badge st-${status}`, "data-status": status }, status, extra ? ` · ${extra}` : null);
}

/** A link to a task's page. */
export function taskLink(task, tab) {
  const label = task.title || task.id;
  return el("a", { href: `#/tasks/${encodeURIComponent(task.id)}${tab ? "/" + tab : ""}`, class: "tasklink", title: task.prompt ? task.prompt.slice(0, 300) : label }, label);
}

/** Show a short message at the bottom of the screen. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = el("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** Call fn at most once per `ms`, always with the latest call honoured. */
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  return (...args) => {
    const wait = Math.max(0, last + ms - Date.now());
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn(...args);
    }, wait);
  };
}

/** Only http(s) URLs may become links. */
export function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

/**
 * Make `container`'s children match `items`, keyed by `key(item)`: a row whose `sig(item)` is
 * unchanged is kept (so focus and half-done clicks survive updates) and `patch`ed in place; a
 * changed one is rebuilt; order follows `items`.
 */
export function syncRows(container, items, { key, sig, build, patch }) {
  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.key, child);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    const s = sig(item);
    let node = existing.get(k);
    if (node) {
      existing.delete(k);
      if (node.dataset.sig !== s) {
        const fresh = build(item);
        node.replaceWith(fresh);
        node = fresh;
      } else if (patch) patch(node, item);
    } else node = build(item);
    node.dataset.key = k;
    node.dataset.sig = s;
    const want = prev ? prev.nextSibling : container.firstChild;
    if (node !== want) container.insertBefore(node, want);
    prev = node;
  }
  for (const node of existing.values()) node.remove();
}

/** Return what a finished task's reader must not miss: warnings, API error status, denied actions. */
export function taskNotes(task) {
  const notes = [...(task.warnings || [])];
  if (task.api_error_status !== null && task.api_error_status !== undefined) notes.push(`API error status ${task.api_error_status}`);
  const denials = task.permission_denials || [];
  if (denials.length) notes.push(`denied: ${denials.map((d) => `${d.tool || "?"} ${d.target || ""}`.trim()).join(", ")}`);
  return notes;
}
