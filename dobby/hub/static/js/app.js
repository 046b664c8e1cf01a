// The dashboard's entry point: theme, API-key prompt, sidebar, hash router, live connection.

import { api, authReady, authResolved, getKey, HttpError, setAuthHandler, setKey, sleep } from "./api.js";
import { el, fmtTime, replace, safeUrl, throttle } from "./dom.js";
import { run, state, subscribe } from "./hub.js";
import * as batches from "./views/batches.js";
import * as drafts from "./views/drafts.js";
import * as heatmap from "./views/heatmap.js";
import * as live from "./views/live.js";
import * as network from "./views/network.js";
import * as races from "./views/races.js";
import * as task from "./views/task.js";
import * as tasks from "./views/tasks.js";
import * as usage from "./views/usage.js";

const VIEWS = { network, live, tasks, task, heatmap, usage, batches, drafts, races };
const TITLES = { network: "Agent network", live: "Live jobs", tasks: "Tasks", task: "Task", heatmap: "Heatmap", usage: "Usage", batches: "Batches", drafts: "Drafts", races: "Races" };
// Views that need routes only some hubs have (the scheduler's): shown when /dashboard/api/config says so.
const OPTIONAL = { batches: "batches", drafts: "drafts" };
const $ = (id) => document.getElementById(id);

// -- theme ---------------------------------------------------------------------------------------
function setTheme(theme, save) {
  document.documentElement.dataset.theme = theme;
  if (save) localStorage.setItem("dobby.theme", theme);
  const other = theme === "dark" ? "light" : "dark";
  $("theme-toggle").textContent = other === "dark" ? "Dark theme" : "Light theme";
  $("theme-toggle").setAttribute("aria-label", `Switch to the ${other} theme`);
}

// -- API key -------------------------------------------------------------------------------------
function needKey() {
  const hadKey = !!getKey();
  setKey("");
  $("forget-key").hidden = true;
  if (!$("key-overlay").hidden && !hadKey) return;
  $("key-overlay").hidden = false;
  $("key-error").textContent = hadKey ? "The hub refused this key. Check it and try again." : "";
  $("key-input").focus();
}

async function submitKey(event) {
  event.preventDefault();
  const input = $("key-input");
  setKey(input.value.trim());
  $("key-error").textContent = "";
  try {
    state.config = await api("/dashboard/api/config");
  } catch (err) {
    if (!(err instanceof HttpError && err.status === 401)) $("key-error").textContent = `Cannot reach the hub: ${err.message}`;
    return;
  }
  input.value = "";
  $("key-overlay").hidden = true;
  $("forget-key").hidden = false;
  renderSidebar();
  authResolved();
  route(true);
}

// -- sidebar -------------------------------------------------------------------------------------
function renderSidebar() {
  const cfg = state.config || {};
  const rows = [];
  if (cfg.hub_url) rows.push(el("dt", {}, "Hub"), el("dd", { class: "mono", id: "hub-url" }, cfg.hub_url));
  const gh = safeUrl(cfg.github_url);
  if (gh) rows.push(el("dt", {}, "GitHub"), el("dd", {}, el("a", { href: gh, rel: "noopener noreferrer", target: "_blank", id: "github-url" }, gh.replace(/^https?:\/\//, ""))));
  if (cfg.version) rows.push(el("dt", {}, "Version"), el("dd", {}, cfg.version));
  replace($("hubinfo"), rows);
  $("forget-key").hidden = !getKey();
  for (const [view, feature] of Object.entries(OPTIONAL)) $(`nav-${view}`).hidden = !cfg.features?.[feature];
}

const CONN_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", locked: "Waiting for the API key" };

function renderConn() {
  const conn = $("conn");
  conn.dataset.state = state.conn;
  conn.querySelector(".conn-text").textContent = CONN_TEXT[state.conn] || state.conn;
}

function renderCounts() {
  const { running, draft, total } = state.counts;
  $("count-live").textContent = running ? String(running) : "";
  $("count-drafts").textContent = draft ? String(draft) : "";
  $("count-tasks").textContent = total === null ? "" : total.toLocaleString();
}

// Accounts at their usage limit: one line on top of every view, until their tasks go on.
function renderBanner() {
  const box = $("limit-banner");
  const limited = (state.usage?.accounts || []).filter((a) => a.limited);
  box.hidden = !limited.length;
  replace(box, limited.length ? [
    el("strong", {}, "Usage limit: "),
    limited.map((a, i) => {
      const waiting = (a.waiting || []).length;
      return el("span", { class: "limited-account", "data-account": a.account }, i ? " · " : "",
        `${a.account} until ${fmtTime(a.limited_until)}`,
        waiting ? `, ${waiting} task${waiting === 1 ? "" : "s"} waiting` : "");
    }),
    " ", el("a", { href: "#/usage" }, "Usage"),
  ] : []);
}

// -- router --------------------------------------------------------------------------------------
/** Parse "#/tasks/ID/tab?x=1" into {name, id, tab, query, key}. */
export function parseHash(hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, qs = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(qs);
  if (parts[0] === "tasks" && parts[1]) return { name: "task", id: parts[1], tab: parts[2] || "logs", query, key: `task:${parts[1]}` };
  const known = VIEWS[parts[0]] && (!OPTIONAL[parts[0]] || state.config?.features?.[OPTIONAL[parts[0]]]);
  const name = known ? parts[0] : "network";
  return { name, id: parts[1], query, key: name };
}

let current = null;

function route(force) {
  const next = parseHash(location.hash);
  const view = $("view");
  if (current && !force && current.route.key === next.key && current.view.setRoute) {
    current.route = next;
    current.view.setRoute(next);
  } else {
    if (current) current.view.destroy?.();
    view.replaceChildren();
    current = { route: next, view: VIEWS[next.name].mount(view, next) };
  }
  document.title = `${TITLES[next.name]} · Dobby`;
  for (const a of document.querySelectorAll("#nav a")) {
    const active = a.dataset.route === next.name || (next.name === "task" && a.dataset.route === "tasks");
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// -- boot ----------------------------------------------------------------------------------------
async function boot() {
  setTheme(document.documentElement.dataset.theme || "light", false);
  $("theme-toggle").addEventListener("click", () => setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark", true));
  $("forget-key").addEventListener("click", () => {
    setKey("");
    location.reload();
  });
  $("key-form").addEventListener("submit", submitKey);
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault(); // "#view" is not a route: move the focus instead
    $("view").focus();
  });
  setAuthHandler(needKey);
  for (;;) {
    try {
      state.config = await api("/dashboard/api/config");
      break;
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) await authReady();
      else {
        state.conn = "reconnecting";
        renderConn();
        await sleep(1000);
      }
    }
  }
  renderSidebar();
  const counts = throttle(renderCounts, 300);
  subscribe((kind, detail) => {
    if (kind === "conn") renderConn();
    if (kind === "reset" || kind === "counts") counts();
    if (kind === "usage") renderBanner();
    if (current?.view.update) current.view.update(kind, detail);
  });
  window.addEventListener("hashchange", () => route(false));
  route(true);
  run();
}

boot();
