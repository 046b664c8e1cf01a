// Races: the list, and one race as columns side by side, one per attempt: backend, model,
// host, duration, cost, tokens, diff stat, the check's result and the end of its output, and
// the attempt's diff on demand. Every value is text (el() never parses markup).

import { api, HttpError } from "../api.js";
import { badge, el, fmtCost, fmtDuration, fmtTime, fmtTokens, replace, throttle, toast } from "../dom.js";

const STATE_CLASS = { passed: "completed", failed: "failed", cancelled: "cancelled", running: "running", pending: "pending" };
const PICK = {
  first: "the first attempt whose check passes wins; the others are cancelled",
  smallest: "once every attempt ended, the passing one with the smallest diff wins",
  cheapest: "once every attempt ended, the cheapest passing one wins",
};

function changes(stat) {
  if (!stat || !stat.files_changed) return "no changes";
  return `${stat.files_changed} file${stat.files_changed === 1 ? "" : "s"} · +${stat.insertions ?? 0} −${stat.deletions ?? 0}`;
}

function fmtMs(ms) {
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)}s` : fmtDuration(ms / 1000);
}

function check(verify) {
  if (!verify) return el("span", { class: "muted" }, "not run yet");
  const took = typeof verify.duration_ms === "number" ? ` · ${fmtMs(verify.duration_ms)}` : "";
  const code = verify.exit_code === null || verify.exit_code === undefined ? "" : ` · exit ${verify.exit_code}`;
  return el("span", { class: `badge st-${verify.status === "passed" ? "completed" : verify.status === "skipped" ? "cancelled" : "failed"}` }, `${verify.status}${code}${took}`);
}

function diffLines(text) {
  return el("pre", { class: "diff" }, text.split("\n").map((line) => {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : null;
    return el("span", cls ? { class: cls } : {}, line + "\n");
  }));
}

function column(race, col) {
  const box = el("div", { class: "race-diff", hidden: true });
  const toggle = el("button", { type: "button", class: "btn ghost small", "data-action": "diff" }, "Show diff");
  toggle.addEventListener("click", async () => {
    if (!box.hidden) {
      box.hidden = true;
      toggle.textContent = "Show diff";
      return;
    }
    toggle.disabled = true;
    try {
      const body = await api(`/tasks/${encodeURIComponent(col.task_id)}/diff`);
      replace(box, diffLines(body.diff || "(empty diff)"), body.truncated ? el("p", { class: "muted small" }, "diff cut: see the branch with git") : null);
      box.hidden = false;
      toggle.textContent = "Hide diff";
    } catch (err) {
      toast(err instanceof HttpError ? err.message : `Cannot load the diff: ${err.message}`, "error");
    } finally {
      toggle.disabled = false;
    }
  });
  const verify = col.verify || null;
  const rows = [
    ["backend", col.backend],
    ["model", col.model || "—"],
    ["host", col.host || "—"],
    ["task", el("a", { href: `#/tasks/${encodeURIComponent(col.task_id)}`, class: "mono" }, col.task_id)],
    ["rounds", col.rounds > 1 ? `${col.rounds} (fix rounds)` : "1"],
    ["duration", fmtDuration(col.duration_s)],
    ["cost", fmtCost(col.cost_usd)],
    ["tokens", `${fmtTokens(col.tokens?.input || 0)} in · ${fmtTokens(col.tokens?.output || 0)} out`],
    ["diff", changes(col.diff_stat)],
    ["check", check(verify)],
  ];
  const files = (col.diff_stat?.files || []).slice(0, 8);
  return el("article", { class: `card race-col${col.winner ? " winner" : ""}`, "data-slot": String(col.slot), "data-state": col.state },
    el("header", { class: "card-head" },
      el("h3", {}, `#${col.n}`, col.winner ? el("span", { class: "star", title: "winner" }, " ★") : null),
      el("span", { class: `badge st-${STATE_CLASS[col.state] || col.state}`, "data-status": col.state }, col.state)),
    el("dl", { class: "kv" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])),
    files.length ? el("ul", { class: "race-files mono small" }, files.map((f) => el("li", {}, `${f.status || "M"} ${f.path} +${f.added ?? "bin"} −${f.deleted ?? ""}`))) : null,
    col.error && col.state !== "passed" ? el("p", { class: "error small" }, col.error) : null,
    verify?.tail ? el("details", { class: "race-tail", open: col.state !== "passed" },
      el("summary", {}, "check output (end)"), el("pre", { class: "mono" }, verify.tail)) : null,
    el("div", { class: "race-actions" }, col.diff_stat?.files_changed ? toggle : null,
      el("a", { href: `#/tasks/${encodeURIComponent(col.task_id)}/logs`, class: "btn ghost small" }, "Log")),
    box);
}

function raceHead(race) {
  const status = race.status === "completed" ? "completed" : race.status;
  const verdict = race.winner
    ? el("p", { id: "race-verdict" }, "Winner: attempt ", el("strong", {}, `#${(race.winner_slot ?? 0) + 1}`), " · task ",
      el("a", { href: `#/tasks/${encodeURIComponent(race.winner)}`, class: "mono" }, race.winner),
      " · ", race.branch ? el("code", {}, race.branch) : "no changes", race.branch ? el("span", { class: "muted" }, ` · dobby merge ${race.id}`) : null)
    : race.error ? el("p", { class: "error", id: "race-verdict" }, race.error) : el("p", { class: "muted", id: "race-verdict" }, "Running…");
  return [
    el("p", { class: "crumbs" }, el("a", { href: "#/races" }, "← Races")),
    el("h1", {}, race.title || race.id),
    el("p", { class: "task-meta muted" }, badge(status, race.reason), " ", el("span", { class: "mono" }, race.id),
      ` · ${race.k} attempts · pick ${race.pick} · ${fmtCost(race.cost_usd)} · ${fmtDuration(race.duration_s)}`),
    el("p", {}, "Check: ", el("code", { id: "race-check" }, race.verify), el("span", { class: "muted small" }, ` — ${PICK[race.pick] || race.pick}`)),
    verdict,
    (race.warnings || []).length ? el("ul", { class: "warnings small" }, race.warnings.map((w) => el("li", {}, w))) : null,
  ];
}

function raceRow(race) {
  return el("tr", { "data-race": race.id },
    el("td", {}, el("a", { href: `#/races/${encodeURIComponent(race.id)}`, class: "mono" }, race.id)),
    el("td", {}, badge(race.status, race.reason)),
    el("td", {}, race.pick),
    el("td", {}, (race.attempts || []).map((c) => el("span", { class: `badge st-${STATE_CLASS[c.state] || c.state}`, title: `${c.backend} on ${c.host || "?"}` }, `#${c.n} ${c.state}`, " "))),
    el("td", { class: "num" }, fmtCost(race.cost_usd)),
    el("td", {}, fmtTime(race.created_at)),
    el("td", {}, race.title || ""));
}

export function mount(root, route) {
  const head = el("header", { class: "view-head" });
  const body = el("div", { id: "races" }, el("p", { class: "muted" }, "Loading…"));
  root.append(head, body);
  let id = route.id || null;
  let alive = true;
  let tasks = new Set();

  async function load() {
    try {
      if (id) {
        const race = await api(`/races/${encodeURIComponent(id)}`);
        if (!alive) return;
        tasks = new Set((race.attempts || []).flatMap((c) => c.tasks || []));
        replace(head, raceHead(race));
        replace(body, el("div", { class: "race-cols", id: "race-cols" }, (race.attempts || []).map((c) => column(race, c))));
      } else {
        const { races } = await api("/races?limit=100");
        if (!alive) return;
        tasks = null;
        replace(head, el("h1", {}, "Races"), el("p", { class: "muted" }, `${races.length} race${races.length === 1 ? "" : "s"} · dobby add "…" --race K --verify "CMD"`));
        replace(body, races.length
          ? el("div", { class: "table-wrap" }, el("table", { class: "grid", id: "race-list" },
            el("thead", {}, el("tr", {}, ["Race", "Status", "Pick", "Attempts", "Cost", "Started", "Title"].map((h) => el("th", { scope: "col" }, h)))),
            el("tbody", {}, races.map(raceRow))))
          : el("p", { class: "empty muted" }, "No race yet."));
      }
    } catch (err) {
      replace(body, el("p", { class: "error" }, err.status === 404 ? `No race ${id}.` : `Cannot load races: ${err.message}`));
    }
  }
  load();
  const reload = throttle(load, 1000);
  return {
    setRoute(r) {
      id = r.id || null;
      load();
    },
    update(kind, detail) {
      if (kind === "races" || kind === "reset") reload();
      else if (kind === "task" && detail?.race_id && (tasks === null || tasks.has(detail.id) || detail.race_id === id)) reload();
    },
    destroy() {
      alive = false;
    },
  };
}
