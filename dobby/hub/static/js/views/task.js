// One task: a header with its state and actions, and the Logs / Details / Timeline tabs.

import { badge, el, fmtDuration, replace, taskElapsed } from "../dom.js";
import { fetchTask, pin, state } from "../hub.js";
import { waitingText, warnings } from "../words.js";
import { actionButtons } from "./actions.js";
import * as details from "./details.js";
import * as logs from "./logs.js";
import * as timeline from "./timeline.js";

const TABS = { logs: ["Logs", logs], details: ["Details", details], timeline: ["Timeline", timeline] };

export function mount(root, route) {
  const id = route.id;
  const title = el("h1", { class: "task-title", id: "task-title" }, id);
  const meta = el("p", { class: "task-meta muted" });
  const elapsed = el("span", { class: "elapsed" });
  const actions = el("div", { class: "task-actions" });
  const tabs = el("nav", { class: "tabs", "aria-label": "Task views" },
    Object.entries(TABS).map(([key, [label]]) => el("a", { href: `#/tasks/${encodeURIComponent(id)}/${key}`, "data-tab": key, id: `tab-${key}` }, label)));
  const panel = el("section", { class: "tab-panel", id: "tab-panel" });
  root.append(el("p", { class: "crumbs" }, el("a", { href: "#/tasks" }, "← Tasks")),
    el("header", { class: "task-head" }, el("div", {}, title, meta), actions), tabs, panel);

  let tab = null;
  let view = null;
  let lastSig = null;

  function task() {
    return state.tasks.get(id) || null;
  }

  function renderHead() {
    const t = task();
    if (!t) return;
    const s = [t.status, t.reason, t.title, t.host, t.started_at, t.finished_at, t.waiting_on, t.slurm_state, t.not_before, warnings(t).length].join("|");
    if (s === lastSig) return;
    lastSig = s;
    title.textContent = t.title || t.id;
    const waits = t.status === "pending" || t.status === "draft";
    const where = [t.host ? `on ${t.host}` : "", waits ? `waiting for ${waitingText(t)}` : ""].filter(Boolean).join(" · ");
    const warned = warnings(t);
    replace(meta, badge(t.status, t.reason), " ", el("span", { class: "mono" }, t.id), ` · ${t.backend}`,
      t.project ? ` · ${t.project}` : "", where ? ` · ${where}` : "",
      t.started_at ? [" · ", elapsed] : "",
      warned.length ? [" · ", el("a", { href: `#/tasks/${encodeURIComponent(t.id)}/details`, class: "warn-link", title: warned.join("\n") },
        `⚠ ${warned.length} warning${warned.length === 1 ? "" : "s"}`)] : "");
    elapsed.textContent = fmtDuration(taskElapsed(t));
    replace(actions, actionButtons(t));
  }

  function showTab(name) {
    const key = TABS[name] ? name : "logs";
    for (const a of tabs.children) {
      if (a.dataset.tab === key) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (key === tab) return;
    view?.destroy?.();
    panel.replaceChildren();
    tab = key;
    view = TABS[key][1].mount(panel, id);
  }

  function start() {
    renderHead();
    showTab(route.tab);
  }

  const unpin = pin(id); // kept in the page's cache while this view shows it
  if (task()) start();
  else {
    panel.append(el("p", { class: "muted" }, "Loading…"));
    fetchTask(id).then(start, (err) => {
      title.textContent = `Task ${id}`;
      replace(panel, el("p", { class: "error" }, err.status === 404 ? `No task ${id} on this hub.` : `Cannot load task ${id}: ${err.message}`));
    });
  }

  const tick = setInterval(() => {
    const t = task();
    if (t?.status === "running") elapsed.textContent = fmtDuration(taskElapsed(t));
  }, 1000);
  return {
    setRoute(r) {
      if (task()) showTab(r.tab);
    },
    update(kind, detail) {
      const mine = kind === "reset" || (kind === "task" && detail?.id === id) || (kind === "step" && detail === id);
      if (!mine) return;
      if (kind !== "step") renderHead();
      view?.update?.(kind, task());
    },
    destroy() {
      clearInterval(tick);
      view?.destroy?.();
      unpin();
    },
  };
}
