// Task actions (cancel, retry, approve, reject) as buttons; destructive ones ask for a second click.

import { api } from "../api.js";
import { el, toast } from "../dom.js";
import { state } from "../hub.js";

const CONFIRM_MS = 5000;
const CANCELLABLE = new Set(["draft", "pending", "running"]);
const RETRYABLE = new Set(["failed", "cancelled"]);

export async function act(task, action, button) {
  button.disabled = true;
  try {
    const updated = await api(`/tasks/${encodeURIComponent(task.id)}/${action}`, { method: "POST" });
    toast(`Task ${updated.id}: ${updated.status}`);
    return updated;
  } catch (err) {
    toast(`Could not ${action} ${task.id}: ${err.message}`, "error");
    button.disabled = false;
    return null;
  }
}

/** A button that acts on its second click within a few seconds (no native confirm dialog). */
export function confirmButton({ label, confirmLabel, action, cls, onConfirm, ariaLabel }) {
  const button = el("button", { type: "button", class: `btn small ${cls || "danger-outline"}`, "data-action": action, "aria-label": ariaLabel }, label);
  let armed = null;
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    if (!armed) {
      button.textContent = confirmLabel;
      button.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("armed");
      }, CONFIRM_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    await onConfirm(button);
  });
  return button;
}

function cancelButton(task) {
  return confirmButton({ label: "Cancel", confirmLabel: "Confirm cancel", action: "cancel", ariaLabel: `Cancel task ${task.id}`,
    onConfirm: (button) => act(task, "cancel", button) });
}

/** Approve a draft (it joins the queue, with its plan). */
export function approveButton(task) {
  const approve = el("button", { type: "button", class: "btn small primary", "data-action": "approve", "aria-label": `Approve task ${task.id}` }, "Approve");
  approve.addEventListener("click", (event) => {
    event.stopPropagation();
    act(task, "approve", approve);
  });
  return approve;
}

/** Reject a draft (second click confirms). */
export function rejectButton(task) {
  return confirmButton({ label: "Reject", confirmLabel: "Confirm reject", action: "reject", ariaLabel: `Reject draft ${task.id}`,
    onConfirm: (button) => act(task, "reject", button) });
}

/** Return the buttons that apply to a task in its current state. */
export function actionButtons(task) {
  const out = [];
  const drafts = task.status === "draft" && state.config?.features?.drafts;
  if (drafts) out.push(approveButton(task), rejectButton(task));
  else if (CANCELLABLE.has(task.status)) out.push(cancelButton(task));
  if (RETRYABLE.has(task.status)) {
    const retry = el("button", { type: "button", class: "btn small", "data-action": "retry", "aria-label": `Retry task ${task.id}` }, "Retry");
    retry.addEventListener("click", (event) => {
      event.stopPropagation();
      act(task, "retry", retry);
    });
    out.push(retry);
  }
  return el("span", { class: "actions" }, out);
}
