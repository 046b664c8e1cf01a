// Drafts inbox: tasks waiting for review with their (agent-written) plan; approve, edit, reject.
// The hub answers the newest SHOWN drafts; events keep them current in between.

const SHOWN = 100;

import { api } from "../api.js";
import { badge, el, fmtTime, syncRows, taskLink, throttle, toast } from "../dom.js";
import { rememberListed, state, tasksPath } from "../hub.js";
import { approveButton, rejectButton } from "./actions.js";

function planBlock(task) {
  if (task.plan && task.plan.trim()) return el("pre", { class: "plan", "data-plan": task.id }, task.plan);
  if (task.plan_task) {
    const planner = state.tasks.get(task.plan_task);
    return el("p", { class: "muted" }, "The plan is being written by task ",
      el("a", { href: `#/tasks/${encodeURIComponent(task.plan_task)}`, class: "mono" }, task.plan_task),
      planner ? [" ", badge(planner.status)] : null, ".");
  }
  return el("p", { class: "muted" }, "No plan: approving runs the prompt as written.");
}

function editor(task, done) {
  const prompt = el("textarea", { id: `edit-prompt-${task.id}`, rows: 5 });
  prompt.value = task.prompt || "";
  const plan = el("textarea", { id: `edit-plan-${task.id}`, rows: 8 });
  plan.value = task.plan || "";
  const save = el("button", { type: "submit", class: "btn small primary" }, "Save");
  const form = el("form", { class: "draft-edit" },
    el("label", { for: prompt.id }, "Prompt"), prompt,
    el("label", { for: plan.id }, "Plan"), plan,
    el("span", { class: "actions" }, save, el("button", { type: "button", class: "btn small", onclick: done }, "Discard")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    const body = { prompt: prompt.value };
    if (plan.value !== (task.plan || "")) body.plan = plan.value;
    try {
      await api(`/tasks/${encodeURIComponent(task.id)}`, { method: "PATCH", body });
      toast(`Draft ${task.id} saved`);
      done();
    } catch (err) {
      toast(`Could not save ${task.id}: ${err.message}`, "error");
      save.disabled = false;
    }
  });
  return form;
}

function card(task) {
  const body = el("div", { class: "draft-body" },
    el("details", { class: "draft-prompt" }, el("summary", {}, "Prompt"), el("pre", { class: "prompt" }, task.prompt || "")),
    el("h3", { class: "plan-title" }, "Plan"), planBlock(task));
  const edit = el("button", { type: "button", class: "btn small", "data-action": "edit" }, "Edit");
  edit.addEventListener("click", () => {
    body.replaceChildren(editor(task, () => body.replaceChildren(...card(task).querySelector(".draft-body").childNodes)));
    body.querySelector("textarea").focus();
  });
  return el("article", { class: "card draft", "data-task": task.id },
    el("header", { class: "card-head" },
      el("div", {}, taskLink(task), el("div", { class: "mono muted small" },
        `${task.id} · ${task.backend}${task.project ? " · " + task.project : ""} · ${fmtTime(task.created_at)}`)),
      el("span", { class: "actions" }, approveButton(task), edit, rejectButton(task))),
    body);
}

const sig = (t) => [t.status, t.title, t.prompt, t.plan, t.plan_task, state.tasks.get(t.plan_task)?.status].join("\u0001");

export function mount(root) {
  const count = el("p", { class: "muted", id: "drafts-count" });
  const list = el("div", { class: "drafts", id: "drafts" });
  const empty = el("p", { class: "empty muted" }, "No draft is waiting for review.");
  root.append(el("header", { class: "view-head" }, el("h1", {}, "Drafts"), count), list, empty);

  let drafts = null; // the drafts shown, newest first, as the hub answered (then events)
  let total = 0;

  async function load() {
    try {
      const since = state.lastSeq;
      const answer = await api(tasksPath({ status: "draft", limit: SHOWN }));
      drafts = answer.tasks;
      total = answer.total;
      rememberListed(drafts, since);
    } catch (err) {
      count.textContent = `Cannot load drafts: ${err.message}`;
      return;
    }
    render();
  }

  function render() {
    if (drafts === null) {
      count.textContent = "Loading…";
      empty.hidden = true;
      return;
    }
    const shown = drafts.map((t) => state.tasks.get(t.id) || t).filter((t) => t.status === "draft");
    count.textContent = total > shown.length ? `${shown.length} of ${total} waiting for review` : `${shown.length} waiting for review`;
    empty.hidden = !!shown.length;
    syncRows(list, shown, { key: (t) => t.id, sig, build: card });
  }
  render();
  load();
  const later = throttle(render, 250);
  return {
    update(kind, task) {
      if (kind === "reset") load();
      else if (kind === "task" && drafts !== null) {
        const known = drafts.some((t) => t.id === task.id);
        if (task.status === "draft" && !known) {
          drafts.unshift(task); // a new draft goes on top
          total++;
        } else if (known && task.status !== "draft") {
          drafts = drafts.filter((t) => t.id !== task.id);
          total--;
        }
        if (known || task.status === "draft" || task.plan_for) later();
      }
    },
  };
}
