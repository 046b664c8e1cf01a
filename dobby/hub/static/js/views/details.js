// Details tab: every field of the task, the result (summary, error, cost, tokens), the branch
// (linked to GitHub when the hub has github_url), the diff stat and the artifacts.

import { getKey } from "../api.js";
import { badge, el, fmtCost, fmtDuration, fmtTime, fmtTokens, parseTime, replace, safeUrl, taskElapsed, toast } from "../dom.js";
import { state } from "../hub.js";

const TIMES = new Set(["created_at", "started_at", "finished_at", "merged_at", "host_cleaned_at", "not_before"]);
const SHOWN_ELSEWHERE = new Set(["prompt", "summary", "error", "tokens", "diff_stat", "artifacts", "title", "plan", "verify_result", "warnings", "permission_denials"]);
const ORDER = ["id", "status", "reason", "waiting_on", "wait_reason", "not_before", "account", "project", "backend", "model", "priority", "host", "want_host",
  "host_selector", "after", "batch_id", "attempt", "timeout", "created_at", "started_at", "finished_at", "session_id",
  "branch", "base_commit", "head_commit", "exit_code", "cost_usd", "models", "turns", "resume", "cron", "every"];

function branchLink(branch) {
  const gh = safeUrl(state.config?.github_url);
  if (!gh) return el("code", {}, branch);
  const href = `${gh.replace(/\/+$/, "")}/tree/${branch.split("/").map(encodeURIComponent).join("/")}`;
  return el("a", { href, rel: "noopener noreferrer", target: "_blank" }, el("code", {}, branch));
}

function value(task, key) {
  const v = task[key];
  if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) return el("span", { class: "muted" }, "—");
  if (key === "status") return badge(v);
  if (key === "not_before" && task.status === "pending") {
    const left = (parseTime(v) - Date.now()) / 1000;
    return el("span", {}, el("time", { datetime: v, title: v }, fmtTime(v)), left > 0 ? ` (resumes in ${fmtDuration(left)})` : "");
  }
  if (TIMES.has(key)) return el("time", { datetime: v, title: v }, fmtTime(v));
  if (key === "cost_usd") return fmtCost(v);
  if (key === "timeout") return fmtDuration(v);
  if (key === "branch") return branchLink(String(v));
  if (key === "after" || key === "resume") return (Array.isArray(v) ? v : [v]).map((id) => el("a", { href: `#/tasks/${encodeURIComponent(id)}`, class: "mono" }, id, " "));
  if (key === "host" || key === "want_host") return el("a", { href: `#/network/${encodeURIComponent(v)}` }, v);
  if (key === "race_id") return el("a", { href: `#/races/${encodeURIComponent(v)}`, class: "mono" }, v);
  if (key === "fix_task") return el("a", { href: `#/tasks/${encodeURIComponent(v)}`, class: "mono" }, v);
  if (Array.isArray(v) && v.every((x) => typeof x !== "object")) return v.join(", ");
  if (typeof v === "object") return el("code", { class: "json" }, JSON.stringify(v, null, 1));
  if (key.endsWith("_id") || key.endsWith("_commit") || key === "id") return el("code", {}, String(v));
  return String(v);
}

function fields(task) {
  const keys = [...ORDER.filter((k) => k in task), ...Object.keys(task).filter((k) => !ORDER.includes(k) && !SHOWN_ELSEWHERE.has(k)).sort()];
  const rows = [];
  rows.push(el("dt", {}, "duration"), el("dd", {}, fmtDuration(taskElapsed(task))));
  for (const k of keys) rows.push(el("dt", {}, k), el("dd", { "data-field": k }, value(task, k)));
  return el("dl", { class: "kv fields", id: "task-fields" }, rows);
}

function tokens(task) {
  const t = task.tokens || {};
  const kinds = ["input", "output", "cache_read", "cache_write"];
  return el("table", { class: "grid compact", id: "task-tokens" },
    el("thead", {}, el("tr", {}, kinds.map((k) => el("th", { scope: "col" }, k.replace("_", " "))), el("th", { scope: "col" }, "cost"))),
    el("tbody", {}, el("tr", {}, kinds.map((k) => el("td", { class: "num", title: String(t[k] || 0) }, fmtTokens(t[k] || 0))), el("td", { class: "num" }, fmtCost(task.cost_usd)))));
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
    a.size !== undefined ? el("span", { class: "muted small" }, ` ${fmtTokens(a.size)}B`) : null)));
}

// Warnings first, then the API error status and each denied action (tool + target).
function notes(task) {
  const warnings = (task.warnings || []).map((w) => el("li", {}, "⚠ ", w));
  const api = task.api_error_status ?? null;
  if (api !== null) warnings.push(el("li", { id: "task-api-status" }, `⚠ API error status ${api}`));
  const denials = task.permission_denials || [];
  return [
    warnings.length ? el("ul", { class: "warnings", id: "task-warnings" }, warnings) : null,
    denials.length ? el("div", { class: "denials", id: "task-denials" }, el("h3", {}, "Denied actions"),
      el("table", { class: "grid compact" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "tool"), el("th", { scope: "col" }, "target"))),
        el("tbody", {}, denials.map((d) => el("tr", {}, el("td", { class: "mono" }, d.tool || "?"), el("td", { class: "mono" }, d.target || "")))))) : null,
  ];
}

function section(title, ...body) {
  const content = body.flat().filter(Boolean);
  return content.length ? el("section", { class: "panel" }, el("h2", {}, title), content) : null;
}

export function mount(root, id) {
  function render() {
    const task = state.tasks.get(id);
    if (!task) return;
    replace(root,
      section("Result",
        notes(task),
        task.summary ? el("pre", { class: "summary", id: "task-summary" }, task.summary) : null,
        task.error ? el("pre", { class: "error-box", id: "task-error" }, task.error) : null,
        task.collect_error ? el("p", { class: "error" }, task.collect_error) : null,
        tokens(task)),
      task.plan ? section("Plan", el("pre", { class: "plan", id: "task-plan" }, task.plan)) : null,
      task.verify ? section("Check", checkResult(task)) : null,
      section("Changes", diffStat(task.diff_stat)),
      section("Artifacts", artifacts(task)),
      section("Prompt", el("pre", { class: "prompt", id: "task-prompt" }, task.prompt || "")),
      section("Fields", fields(task)));
  }
  render();
  return { update: (kind) => (kind === "task" || kind === "reset") && render() };
}
