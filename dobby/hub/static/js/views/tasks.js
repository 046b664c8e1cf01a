// Task list: search, filters, sort and pages, all answered by the hub (GET /tasks?limit=50&…):
// the page holds one page of rows whatever the history's size. The filters live in the URL.

import { api } from "../api.js";
import { badge, el, fmtCost, fmtDuration, fmtTime, syncRows, taskElapsed, taskLink, taskNotes, throttle } from "../dom.js";
import { rememberListed, state, tasksPath } from "../hub.js";
import { actionButtons } from "./actions.js";

const PAGE = 50;
const STATUSES = ["draft", "pending", "running", "completed", "failed", "cancelled"];
const BACKENDS = ["claude", "codex", "shell"];
const FILTERS = ["status", "project", "host", "backend"];
// The orders the hub sorts by (GET /tasks?sort=).
const SORTS = {
  newest: "Newest first",
  oldest: "Oldest first",
  finished: "Recently finished",
  longest: "Longest running",
  cost: "Most expensive",
};

function select(name, label, values, labels) {
  return el("label", { class: "field" }, el("span", {}, label),
    el("select", { name, id: `filter-${name}` }, el("option", { value: "" }, "any"),
      values.map((v) => el("option", { value: v }, labels ? labels[v] : v))));
}

function setOptions(selectEl, values, wanted) {
  const all = wanted && !values.includes(wanted) ? [...values, wanted].sort() : values;
  const have = [...selectEl.options].slice(1).map((o) => o.value);
  if (have.join("\n") !== all.join("\n")) {
    selectEl.replaceChildren(el("option", { value: "" }, "any"), ...all.map((v) => el("option", { value: v }, v)));
  }
  selectEl.value = wanted || "";
}

// A finished task whose result needs a look (denied actions, an API error, a warning).
function warnMark(task) {
  const notes = taskNotes(task);
  return notes.length ? el("span", { class: "warn-mark", title: notes.join("\n"), "aria-label": notes[0] }, " ⚠") : null;
}

function row(task) {
  const tr = el("tr", { "data-task": task.id, class: "clickable" },
    el("td", { class: "title-cell" }, taskLink(task), warnMark(task), el("div", { class: "mono muted small" }, task.id)),
    el("td", {}, badge(task.status, task.status === "pending" ? task.waiting_on?.replace(/_/g, " ") : task.reason)),
    el("td", { class: "opt" }, task.project || "—"),
    el("td", {}, task.host || task.want_host || "—"),
    el("td", { class: "opt2" }, task.backend),
    el("td", { class: "opt" }, task.priority),
    el("td", { class: "opt nowrap" }, fmtTime(task.created_at)),
    el("td", { class: "num opt2 duration", "data-started": task.status === "running" ? task.started_at : null }, fmtDuration(taskElapsed(task))),
    el("td", { class: "num opt" }, fmtCost(task.cost_usd)),
    el("td", {}, actionButtons(task)));
  tr.addEventListener("click", (event) => {
    if (!event.target.closest("a, button")) location.hash = `#/tasks/${encodeURIComponent(task.id)}`;
  });
  return tr;
}

const sig = (t) => [t.status, t.reason, t.waiting_on, t.title, t.project, t.host, t.want_host, t.backend, t.priority, t.cost_usd, t.started_at, t.finished_at, taskNotes(t).join("\n")].join("\u0001");

export function mount(root, route) {
  const search = el("input", { type: "search", id: "task-search", placeholder: "Search title, prompt or id", "aria-label": "Search tasks", autocomplete: "off" });
  const sort = el("select", { id: "task-sort", name: "sort" }, Object.entries(SORTS).map(([k, v]) => el("option", { value: k }, v)));
  const filters = {
    status: select("status", "Status", STATUSES),
    project: select("project", "Project", []),
    host: select("host", "Host", []),
    backend: select("backend", "Backend", BACKENDS),
  };
  const count = el("p", { class: "muted", id: "task-count", role: "status" });
  const tbody = el("tbody", { id: "task-rows" });
  const prev = el("button", { type: "button", class: "btn small", id: "page-prev" }, "← Previous");
  const next = el("button", { type: "button", class: "btn small", id: "page-next" }, "Next →");
  const pageInfo = el("span", { class: "muted", id: "page-info" });
  const empty = el("p", { class: "empty muted" }, "No task matches.");
  const head = ["Task", "Status", "Project", "Host", "Backend", "Priority", "Created", "Duration", "Cost", ""];
  const optional = { Project: "opt", Priority: "opt", Created: "opt", Cost: "opt", Backend: "opt2", Duration: "opt2" };
  root.append(
    el("header", { class: "view-head" }, el("h1", {}, "Tasks"), count),
    el("form", { class: "toolbar", role: "search", onsubmit: (e) => e.preventDefault() },
      el("label", { class: "field grow" }, el("span", {}, "Search"), search),
      Object.values(filters),
      el("label", { class: "field" }, el("span", {}, "Sort"), sort)),
    el("div", { class: "table-wrap" }, el("table", { class: "grid", id: "task-table" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", class: optional[h] || null }, h)))),
      tbody)),
    empty,
    el("nav", { class: "pager", "aria-label": "Pages" }, prev, pageInfo, next));

  let page = 0;
  const selected = {}; // the filters asked for, even before their options are known
  const selectOf = (name) => filters[name].querySelector("select");
  const value = (name) => selected[name] || "";

  function fromQuery(query) {
    search.value = query.get("q") || "";
    sort.value = SORTS[query.get("sort")] ? query.get("sort") : "newest";
    for (const name of FILTERS) selected[name] = query.get(name) || "";
    refreshOptions();
    page = Math.max(0, (parseInt(query.get("page"), 10) || 1) - 1);
  }

  function toQuery() {
    const q = new URLSearchParams();
    if (search.value.trim()) q.set("q", search.value.trim());
    for (const name of FILTERS) if (value(name)) q.set(name, value(name));
    if (sort.value !== "newest") q.set("sort", sort.value);
    if (page) q.set("page", String(page + 1));
    const qs = q.toString();
    history.replaceState(null, "", `#/tasks${qs ? "?" + qs : ""}`);
  }

  // Hosts and projects of the whole history (from the stats rollup), not only of the inventory.
  const seen = { host: new Set(), project: new Set() };
  async function loadSeen() {
    if (!state.config?.features?.stats) return;
    try {
      const stats = await api("/stats");
      for (const [name, key] of [["host", "by_host"], ["project", "by_project"]]) {
        seen[name] = new Set(Object.keys(stats[key] || {}).filter((v) => v !== "(none)"));
      }
      refreshOptions();
    } catch (err) { /* the inventory's hosts and the projects still list */ }
  }

  function refreshOptions() {
    const projects = new Set([...state.projects.map((p) => p.name), ...seen.project]);
    const hosts = new Set([...state.hosts.map((h) => h.name), ...seen.host]);
    setOptions(selectOf("project"), [...projects].sort(), selected.project);
    setOptions(selectOf("host"), [...hosts].sort(), selected.host);
    for (const name of ["status", "backend"]) setOptions(selectOf(name), { status: STATUSES, backend: BACKENDS }[name], selected[name]);
  }

  let rows = []; // the page shown
  let found = null; // how many tasks match (the hub's total), null before the first answer
  let asked = 0; // the newest request: older answers (typing) are dropped
  let failure = null;

  function query() {
    const params = { limit: PAGE, offset: page * PAGE, q: search.value.trim(), sort: sort.value === "newest" ? "" : sort.value };
    for (const name of FILTERS) params[name] = value(name);
    return params;
  }

  async function load() {
    const mine = ++asked;
    try {
      const since = state.lastSeq;
      const answer = await api(tasksPath(query()));
      if (mine !== asked) return;
      failure = null;
      found = answer.total;
      rows = answer.tasks;
      rememberListed(rows, since);
      const last = Math.max(0, Math.ceil(found / PAGE) - 1);
      if (page > last) { // the list shrank under this page: show its new last page
        page = last;
        toQuery();
        return load();
      }
    } catch (err) {
      if (mine !== asked) return;
      failure = err.message;
    }
    render();
  }

  function render() {
    const shown = rows.map((t) => state.tasks.get(t.id) || t);
    syncRows(tbody, shown, { key: (t) => t.id, sig, build: row });
    const filtered = !!(search.value.trim() || FILTERS.some((n) => value(n)));
    empty.hidden = !!shown.length || found === null;
    const total = state.counts.total;
    count.textContent = failure ? `Cannot load tasks: ${failure}` : found === null ? "Loading…"
      : !filtered || total === null ? `${found.toLocaleString()} tasks`
        : `${found.toLocaleString()} of ${total.toLocaleString()} tasks match`;
    const pages = Math.max(1, Math.ceil((found || 0) / PAGE));
    pageInfo.textContent = found ? `${page * PAGE + 1}–${page * PAGE + shown.length} of ${found.toLocaleString()} · page ${page + 1} of ${pages.toLocaleString()}` : "";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  const changed = () => {
    page = 0;
    toQuery();
    load();
  };
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(changed, 150);
  });
  sort.addEventListener("change", changed);
  for (const name of FILTERS) {
    selectOf(name).addEventListener("change", () => {
      selected[name] = selectOf(name).value;
      changed();
    });
  }
  prev.addEventListener("click", () => { page--; toQuery(); load(); });
  next.addEventListener("click", () => { page++; toQuery(); load(); });

  fromQuery(route.query);
  load().then(loadSeen); // the filters' full lists after the first rows, off the first load's path
  // A task changed: show it at once if it is on this page, and ask again for the page (new
  // tasks, new order) at most once a second.
  const reload = throttle(load, 1000);
  const tick = setInterval(() => {
    for (const cell of tbody.querySelectorAll("td.duration[data-started]")) {
      cell.textContent = fmtDuration((Date.now() - Date.parse(cell.dataset.started)) / 1000);
    }
  }, 1000);
  return {
    destroy() {
      clearInterval(tick);
      asked++;
    },
    setRoute(r) {
      fromQuery(r.query);
      load();
    },
    update(kind, task) {
      if (kind === "task") {
        if (rows.some((t) => t.id === task.id)) render();
        reload();
      } else if (kind === "reset") load();
      else if (kind === "counts") render();
      else if (kind === "hosts" || kind === "projects") refreshOptions();
    },
  };
}
