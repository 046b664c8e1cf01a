// Task list: search, filters, sort and pages over every task the page holds (10,000+ is fine:
// filtering is one pass in memory and only one page of rows is in the DOM).

import { badge, el, fmtCost, fmtDuration, fmtTime, syncRows, taskElapsed, taskLink, taskNotes, throttle } from "../dom.js";
import { state } from "../hub.js";
import { actionButtons } from "./actions.js";

const PAGE = 50;
const STATUSES = ["draft", "pending", "running", "completed", "failed", "cancelled"];
const BACKENDS = ["claude", "codex", "shell"];
const PRIORITIES = ["urgent", "high", "normal", "low"];
const PRIORITY_RANK = { urgent: 0, high: 1, normal: 2, low: 3 };
const HELD = ["usage_limit", "budget"]; // waits shown beside the status
const FILTERS = ["status", "project", "host", "backend", "priority"];
const by = (f) => (a, b) => { const x = f(a); const y = f(b); return x < y ? -1 : x > y ? 1 : 0; };
const SORTS = {
  newest: { label: "Newest first", cmp: (a, b) => by((t) => t.created_at || "")(b, a) },
  oldest: { label: "Oldest first", cmp: by((t) => t.created_at || "") },
  finished: { label: "Recently finished", cmp: (a, b) => by((t) => t.finished_at || "")(b, a) },
  longest: { label: "Longest running", cmp: (a, b) => (taskElapsed(b) ?? -1) - (taskElapsed(a) ?? -1) },
  cost: { label: "Most expensive", cmp: (a, b) => (b.cost_usd ?? -1) - (a.cost_usd ?? -1) },
  priority: { label: "Priority", cmp: by((t) => `${PRIORITY_RANK[t.priority] ?? 9}${t.created_at}`) },
  title: { label: "Title A–Z", cmp: by((t) => (t.title || "").toLowerCase()) },
};

const haystacks = new WeakMap();
function haystack(task) {
  let h = haystacks.get(task);
  if (h === undefined) {
    h = `${task.id}\n${task.title || ""}\n${task.prompt || ""}`.toLowerCase();
    haystacks.set(task, h);
  }
  return h;
}

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
    el("td", {}, badge(task.status, task.reason || (HELD.includes(task.waiting_on) && task.status === "pending" ? task.waiting_on.replace("_", " ") : null))),
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
  const sort = el("select", { id: "task-sort", name: "sort" }, Object.entries(SORTS).map(([k, v]) => el("option", { value: k }, v.label)));
  const filters = {
    status: select("status", "Status", STATUSES),
    project: select("project", "Project", []),
    host: select("host", "Host", []),
    backend: select("backend", "Backend", BACKENDS),
    priority: select("priority", "Priority", PRIORITIES),
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

  function refreshOptions() {
    const projects = new Set(state.projects.map((p) => p.name));
    const hosts = new Set(state.hosts.map((h) => h.name));
    for (const t of state.tasks.values()) {
      if (t.project) projects.add(t.project);
      if (t.host) hosts.add(t.host);
    }
    setOptions(selectOf("project"), [...projects].sort(), selected.project);
    setOptions(selectOf("host"), [...hosts].sort(), selected.host);
    for (const name of ["status", "backend", "priority"]) setOptions(selectOf(name), { status: STATUSES, backend: BACKENDS, priority: PRIORITIES }[name], selected[name]);
  }

  function matching() {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const want = Object.fromEntries(FILTERS.map((n) => [n, value(n)]));
    const out = [];
    for (const t of state.tasks.values()) {
      if (want.status && t.status !== want.status) continue;
      if (want.project && t.project !== want.project) continue;
      if (want.host && t.host !== want.host && t.want_host !== want.host) continue;
      if (want.backend && t.backend !== want.backend) continue;
      if (want.priority && t.priority !== want.priority) continue;
      if (words.length) {
        const h = haystack(t);
        if (!words.every((w) => h.includes(w))) continue;
      }
      out.push(t);
    }
    return out.sort(SORTS[sort.value].cmp);
  }

  function render() {
    const found = matching();
    const pages = Math.max(1, Math.ceil(found.length / PAGE));
    page = Math.min(page, pages - 1);
    const shown = found.slice(page * PAGE, page * PAGE + PAGE);
    syncRows(tbody, shown, { key: (t) => t.id, sig, build: row });
    empty.hidden = !!shown.length || !state.loaded;
    const total = state.tasks.size;
    count.textContent = !state.loaded ? "Loading…" : found.length === total
      ? `${total.toLocaleString()} tasks`
      : `${found.length.toLocaleString()} of ${total.toLocaleString()} tasks match`;
    pageInfo.textContent = found.length ? `${page * PAGE + 1}–${page * PAGE + shown.length} of ${found.length.toLocaleString()} · page ${page + 1} of ${pages}` : "";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  const changed = () => {
    page = 0;
    toQuery();
    render();
  };
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(changed, 120);
  });
  sort.addEventListener("change", changed);
  for (const name of FILTERS) {
    selectOf(name).addEventListener("change", () => {
      selected[name] = selectOf(name).value;
      changed();
    });
  }
  prev.addEventListener("click", () => { page--; toQuery(); render(); });
  next.addEventListener("click", () => { page++; toQuery(); render(); });

  fromQuery(route.query);
  render();
  const later = throttle(() => { refreshOptions(); render(); }, 250);
  const tick = setInterval(() => {
    for (const cell of tbody.querySelectorAll("td.duration[data-started]")) {
      cell.textContent = fmtDuration((Date.now() - Date.parse(cell.dataset.started)) / 1000);
    }
  }, 1000);
  return {
    destroy() {
      clearInterval(tick);
    },
    setRoute(r) {
      fromQuery(r.query);
      render();
    },
    update(kind) {
      if (kind === "task" || kind === "reset" || kind === "hosts" || kind === "projects") later();
    },
  };
}
