// Details tab: the task's result (summary, errors and warnings, cost and tokens), its plan,
// changes and artifacts, the prompt, then every field of the task in labelled groups (Task,
// Where, Timing, Result, Cost & tokens, Git, Errors) with units and local times. A field this
// view does not know still shows, under "Other"; fields without a value are listed last.

import { getKey } from "../api.js";
import { badge, el, fmtCost, fmtDuration, fmtTime, fmtTokens, parseTime, replace, safeUrl, taskElapsed, toast } from "../dom.js";
import { state } from "../hub.js";
import { countdown, waitingText, warnings } from "../words.js";

const KINDS = ["input", "output", "cache_read", "cache_write"];
// Shown in their own sections above the fields.
const SHOWN_ELSEWHERE = new Set(["prompt", "summary", "diff_stat", "artifacts", "plan"]);
// [group, [[field, label, format?], ...]]: the order a person reads a task in.
const GROUPS = [
  ["Task", [
    ["id", "Task id", "code"], ["title", "Title"], ["status", "Status", "status"], ["reason", "Why it ended", "words"],
    ["waiting_on", "Waiting for", "waiting"], ["wait_reason", "Why it waits"], ["project", "Project"], ["backend", "Agent"], ["model", "Model asked for"],
    ["priority", "Priority"], ["kind", "Kind"], ["batch_id", "Batch", "batch"], ["schedule_id", "Schedule", "code"],
    ["after", "Runs after", "tasks"], ["resume", "Follows up on", "tasks"], ["attempt", "Attempt", "number"],
    ["attempts", "Earlier attempts", "json"], ["cron", "Cron schedule", "code"], ["every", "Repeats every"],
    ["permissions", "Permissions"], ["plan_task", "Plan written by", "tasks"], ["plan_for", "Writes the plan of", "tasks"],
    ["max_turns", "Turn limit", "number"], ["max_budget_usd", "Budget limit", "cost"],
  ]],
  ["Where", [
    ["host", "Runs on", "host"], ["want_host", "Host asked for", "host"], ["host_selector", "Host labels asked for", "list"],
    ["avoid_hosts", "Hosts to avoid", "list"], ["wait_for_host", "Waits for a host", "bool"], ["gpus", "GPUs asked for", "number"],
    ["gpu_indices", "GPUs in use", "list"], ["gpu_memory_mib", "GPU memory in use", "mib"], ["slurm_job", "Slurm job", "code"],
    ["slurm_state", "Slurm says"], ["account", "Account (usage limits)"], ["resume_host", "Goes on at", "host"],
  ]],
  ["Timing", [
    ["created_at", "Submitted", "time"], ["queued_at", "Queued", "time"], ["not_before", "Not before", "countdown"],
    ["started_at", "Started", "time"], ["finished_at", "Finished", "time"], ["@duration", "Ran for", "duration"],
    ["timeout", "Time limit", "seconds"], ["duration_ms", "Agent's own run time", "ms"], ["stale_since", "No output since", "time"],
    ["host_cleaned_at", "Host files removed", "time"],
  ]],
  ["Result", [
    ["exit_code", "Exit code", "number"], ["turns", "Turns", "number"], ["session_id", "Agent session", "code"],
    ["verify", "Check command", "code"], ["verify_result", "Check result", "check"], ["verify_timeout", "Check time limit", "seconds"],
    ["fix_round", "Fix round", "number"], ["fix_attempts", "Fix rounds left", "number"], ["fix_task", "Fixed by", "tasks"],
    ["race_id", "Race", "race"], ["race_slot", "Attempt in the race", "number"], ["quota", "Usage limit hit", "quota"],
  ]],
  ["Cost & tokens", [
    ["cost_usd", "Cost", "cost"], ["tokens", "Tokens", "tokens"], ["models", "Models used", "list"],
  ]],
  ["Git", [
    ["branch", "Branch", "branch"], ["base_commit", "Based on commit", "code"], ["head_commit", "Last commit", "code"],
    ["merged_at", "Merged", "time"], ["merge_commit", "Merge commit", "code"], ["artifact_globs", "Artifacts declared", "list"],
  ]],
  ["Errors", [
    ["error", "Error", "pre"], ["api_error_status", "Model API status", "http"], ["collect_error", "Could not bring back", "pre"],
    ["permission_denials", "Permission denials", "denials"], ["warnings", "Warnings", "lines"],
  ]],
];
const KNOWN = new Set(GROUPS.flatMap(([, fields]) => fields.map(([key]) => key)));

function branchLink(branch) {
  const gh = safeUrl(state.config?.github_url);
  if (!gh) return el("code", {}, branch);
  const href = `${gh.replace(/\/+$/, "")}/tree/${branch.split("/").map(encodeURIComponent).join("/")}`;
  return el("a", { href, rel: "noopener noreferrer", target: "_blank" }, el("code", {}, branch));
}

/** A UTC time shown in local time, the UTC value on hover. */
export function timeNode(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  return el("time", { datetime: iso, title: `${new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "")} UTC` }, fmtTime(iso));
}

const count = (n) => Number(n).toLocaleString();
const taskLinks = (v) => (Array.isArray(v) ? v : [v]).map((id) => el("a", { href: `#/tasks/${encodeURIComponent(id)}`, class: "mono" }, id, " "));

function tokenText(tokens) {
  const t = tokens || {};
  const total = KINDS.reduce((s, k) => s + (t[k] || 0), 0);
  const parts = KINDS.filter((k) => t[k]).map((k) => `${k.replace("_", " ")} ${count(t[k])}`);
  return `${count(total)} tokens${parts.length ? ` (${parts.join(" · ")})` : ""}`;
}

function quotaText(q) {
  if (typeof q !== "object") return String(q);
  const what = q.kind === "rate_limited_no_reset" ? "rate limited, no reset given" : `usage limit${q.window ? ` (${q.window})` : ""}`;
  const reset = typeof q.resets_at === "number" ? new Date(q.resets_at * 1000).toISOString() : null;
  return reset ? [`${what}, resets `, timeNode(reset), ` (${countdown(reset)})`] : what;
}

const FORMATS = {
  code: (v) => el("code", {}, String(v)),
  status: (v) => badge(v),
  words: (v) => String(v).replace(/_/g, " "),
  number: (v) => (typeof v === "number" ? count(v) : String(v)),
  cost: (v) => (typeof v === "number" ? fmtCost(v) : String(v)),
  seconds: (v) => (typeof v === "number" ? `${fmtDuration(v)} (${count(v)} s)` : String(v)),
  ms: (v) => (typeof v === "number" ? `${fmtDuration(v / 1000)} (${count(v)} ms)` : String(v)),
  mib: (v) => `${count(v)} MiB`,
  bool: (v) => (v ? "yes" : "no"),
  time: (v) => timeNode(v),
  countdown: (v) => {
    const left = countdown(v); // not_before: when a waiting task goes on
    return [timeNode(v), ` (${left.startsWith("in ") ? `resumes ${left}` : left})`];
  },
  tasks: taskLinks,
  batch: (v) => el("a", { href: `#/batches/${encodeURIComponent(v)}`, class: "mono" }, v),
  race: (v) => el("a", { href: `#/races/${encodeURIComponent(v)}`, class: "mono" }, v),
  check: (v) => (typeof v === "object" ? [String(v.status ?? "?"), v.exit_code !== null && v.exit_code !== undefined ? ` (exit ${v.exit_code})` : "",
    typeof v.duration_ms === "number" ? ` in ${fmtDuration(v.duration_ms / 1000)}` : ""].join("") : String(v)),
  host: (v) => el("a", { href: `#/network/${encodeURIComponent(v)}` }, v),
  list: (v) => (Array.isArray(v) ? v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ") : String(v)),
  lines: (v) => (Array.isArray(v) ? el("ul", { class: "plain" }, v.map((x) => el("li", {}, String(x)))) : String(v)),
  pre: (v) => el("pre", { class: "error-box" }, String(v)),
  http: (v) => `HTTP ${v}`,
  json: (v) => (typeof v === "object" ? el("code", { class: "json" }, JSON.stringify(v, null, 1)) : String(v)),
  tokens: tokenText,
  quota: quotaText,
  branch: (v) => branchLink(String(v)),
  waiting: (v, task) => (task.status === "pending" || task.status === "draft" ? waitingText(task) : String(v).replace(/_/g, " ")),
  duration: (v) => `${fmtDuration(v)}`,
  denials: (v) => (Array.isArray(v)
    ? el("ul", { class: "plain" }, v.map((d) => el("li", {}, el("code", {}, d.tool || "?"), d.target ? ` ${d.target}` : "")))
    : String(v)),
};

function isEmpty(v) {
  return v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)
    || (typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length);
}

function guessFormat(key, v) {
  if (/_at$/.test(key) && typeof v === "string") return "time";
  if (/_usd$/.test(key)) return "cost";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return "number";
  if (Array.isArray(v) && v.every((x) => typeof x !== "object")) return "list";
  if (typeof v === "object") return "json";
  return null;
}

const humanize = (key) => key.charAt(0).toUpperCase() + key.slice(1).replace(/_/g, " ");

function fieldValue(task, key, format, v) {
  const fmt = FORMATS[format || guessFormat(key, v)];
  return fmt ? fmt(v, task) : String(v);
}

function fields(task) {
  const values = { ...task, "@duration": taskElapsed(task) };
  const unknown = Object.keys(task).filter((k) => !KNOWN.has(k) && !SHOWN_ELSEWHERE.has(k)).sort();
  const groups = [...GROUPS, ["Other", unknown.map((k) => [k, humanize(k), null])]];
  const blank = [];
  const sections = [];
  for (const [title, list] of groups) {
    const rows = [];
    for (const [key, label, format] of list) {
      if (!(key in values)) continue;
      const dt = el("dt", { title: key.startsWith("@") ? null : key }, label);
      if (isEmpty(values[key])) {
        blank.push(dt, el("dd", { "data-field": key }, el("span", { class: "muted" }, "—")));
        continue;
      }
      rows.push(dt, el("dd", { "data-field": key }, fieldValue(task, key, format, values[key])));
    }
    if (rows.length) sections.push(el("section", { class: "field-group", "data-group": title }, el("h3", {}, title), el("dl", { class: "kv" }, rows)));
  }
  if (blank.length) {
    sections.push(el("details", { class: "field-group blank" },
      el("summary", {}, `Fields with no value (${blank.length / 2})`), el("dl", { class: "kv" }, blank)));
  }
  return el("div", { class: "fields", id: "task-fields" }, sections);
}

function tokens(task) {
  const t = task.tokens || {};
  return el("table", { class: "grid compact", id: "task-tokens" },
    el("thead", {}, el("tr", {}, KINDS.map((k) => el("th", { scope: "col", class: "num" }, `${k.replace("_", " ")} tokens`)), el("th", { scope: "col", class: "num" }, "cost"))),
    el("tbody", {}, el("tr", {}, KINDS.map((k) => el("td", { class: "num", title: `${fmtTokens(t[k] || 0)}` }, count(t[k] || 0))), el("td", { class: "num" }, fmtCost(task.cost_usd)))));
}

function diffStat(stat) {
  const files = stat?.files || [];
  if (!files.length) return null;
  const total = stat.files_changed !== undefined
    ? el("p", { class: "muted small" }, `${stat.files_changed} file${stat.files_changed === 1 ? "" : "s"} changed, +${stat.insertions ?? 0} −${stat.deletions ?? 0}`)
    : null;
  return [total, el("table", { class: "grid compact", id: "task-diff" },
    el("thead", {}, el("tr", {}, ["file", "change", "+", "−"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, files.map((f) => el("tr", {},
      el("td", { class: "mono" }, f.path), el("td", {}, f.status || ""),
      el("td", { class: "num added" }, f.added ?? "bin"), el("td", { class: "num deleted" }, f.deleted ?? "")))))];
}

async function download(task, name) {
  const headers = getKey() ? { "X-Dobby-Key": getKey() } : {};
  const res = await fetch(`/tasks/${encodeURIComponent(task.id)}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`, { headers });
  if (!res.ok) {
    toast(`Cannot download ${name}: HTTP ${res.status}`, "error");
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = el("a", { href: url, download: name.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function artifacts(task) {
  const list = task.artifacts || [];
  if (!list.length) return null;
  const canDownload = state.config?.features?.artifacts;
  return el("ul", { class: "artifacts", id: "task-artifacts" }, list.map((a) => el("li", {},
    canDownload
      ? el("button", { type: "button", class: "linkish", onclick: () => download(task, a.name) }, a.name)
      : el("span", { class: "mono" }, a.name),
    a.size !== undefined ? el("span", { class: "muted small" }, ` ${count(a.size)} bytes`) : null)));
}

function checkResult(task) {
  const r = task.verify_result;
  const took = r && typeof r.duration_ms === "number" ? ` in ${fmtDuration(r.duration_ms / 1000)}` : "";
  const code = r && r.exit_code !== null && r.exit_code !== undefined ? ` (exit ${r.exit_code}${took})` : "";
  return [
    el("p", { id: "task-check" }, el("code", {}, task.verify), " ",
      r ? badge(r.status === "passed" ? "completed" : r.status === "skipped" ? "cancelled" : "failed", `${r.status}${code}`) : el("span", { class: "muted" }, "runs when the agent ends")),
    r?.tail ? el("pre", { class: "mono", id: "task-check-output" }, r.tail) : null,
  ];
}

// Each denied action (tool + target); the warnings banner above says how many there were.
function denialTable(task) {
  const denials = task.permission_denials || [];
  return denials.length ? el("div", { class: "denials", id: "task-denials" }, el("h3", {}, "Denied actions"),
    el("table", { class: "grid compact" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "tool"), el("th", { scope: "col" }, "target"))),
      el("tbody", {}, denials.map((d) => el("tr", {}, el("td", { class: "mono" }, d.tool || "?"), el("td", { class: "mono" }, d.target || "")))))) : null;
}

function section(title, ...body) {
  const content = body.flat().filter(Boolean);
  return content.length ? el("section", { class: "panel" }, el("h2", {}, title), content) : null;
}

function waitingNote(task) {
  if (task.status !== "pending" && task.status !== "draft") return null;
  return el("p", { class: "banner", id: "task-waiting" }, `Waiting for ${waitingText(task)}`);
}

export function mount(root, id) {
  function render() {
    const task = state.tasks.get(id);
    if (!task) return;
    const warned = warnings(task);
    replace(root,
      waitingNote(task),
      warned.length ? el("div", { class: "banner warn", id: "task-warnings", role: "note" },
        el("strong", {}, "Warnings: "), el("ul", { class: "plain" }, warned.map((w) => el("li", {}, w)))) : null,
      section("Result",
        denialTable(task),
        task.summary ? el("pre", { class: "summary", id: "task-summary" }, task.summary) : null,
        task.error ? el("pre", { class: "error-box", id: "task-error" }, task.error) : null,
        task.collect_error ? el("p", { class: "error" }, task.collect_error) : null,
        tokens(task)),
      task.verify ? section("Check", checkResult(task)) : null,
      task.plan ? section("Plan", el("pre", { class: "plan", id: "task-plan" }, task.plan)) : null,
      section("Changes", diffStat(task.diff_stat)),
      section("Artifacts", artifacts(task)),
      section("Prompt", el("pre", { class: "prompt", id: "task-prompt" }, task.prompt || "")),
      section("All fields", fields(task)));
  }
  render();
  return { update: (kind) => (kind === "task" || kind === "reset") && render() };
}
