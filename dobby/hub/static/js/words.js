// What a task's state means, in words: why it waits, and what its warnings say. Shared by the
// views that show a task (list, live jobs, the task page); data only ever becomes text.

import { fmtDuration, fmtTime, parseTime } from "./dom.js";

/** When a waiting task may go on (not_before, or the reset its usage limit reported), or null. */
export function resumesAt(task) {
  if (task.not_before) return task.not_before;
  const reset = task.quota?.resets_at; // epoch seconds
  return typeof reset === "number" ? new Date(reset * 1000).toISOString() : null;
}

/** "in 1h 12m (at 2026-11-30 14:05:00)" for a future time, "" when unknown. */
export function countdown(iso) {
  const t = parseTime(iso);
  if (t === null) return "";
  const left = (t - Date.now()) / 1000;
  return left > 0 ? `in ${fmtDuration(left)} (at ${fmtTime(iso)})` : `due since ${fmtTime(iso)}`;
}

const WAITING = {
  capacity: () => "a free slot on a host",
  dependencies: (t) => (t.after?.length ? `the tasks it runs after (${t.after.join(", ")})` : "the tasks it runs after"),
  approval: () => "approval (a draft)",
  dispatch: (t) => (t.host ? `its launch on ${t.host}` : "its launch"),
  schedule: () => "its schedule",
  usage_limit: () => "its account's usage limit to reset",
  budget: () => "room in the spend budget",
  slurm_queue: (t) => (t.slurm_state ? `Slurm's queue: ${t.slurm_state}` : "Slurm's queue"),
  host: (t) => (t.host || t.want_host ? `host ${t.host || t.want_host} to come back` : "its host to come back"),
};

/** Why a pending task waits, as a sentence fragment ("a free slot on a host · in 5m …"). */
export function waitingText(task) {
  if (task.status === "draft") return "approval (a draft)";
  const reason = task.waiting_on || "capacity";
  const text = WAITING[reason] ? WAITING[reason](task) : reason.replace(/_/g, " ");
  const when = countdown(resumesAt(task));
  return when ? `${text} · resumes ${when}` : text;
}

/** The warnings worth a glance: denied permissions and the hub's own warnings. */
export function warnings(task) {
  const out = [];
  const denials = task.permission_denials || [];
  if (denials.length) {
    const tools = [...new Set(denials.map((d) => d.tool || "a tool"))];
    out.push(`${denials.length} permission denial${denials.length === 1 ? "" : "s"} (${tools.join(", ")})`);
  }
  for (const w of task.warnings || []) out.push(String(w));
  if (task.api_error_status) out.push(`the model API answered HTTP ${task.api_error_status}`);
  return out;
}
