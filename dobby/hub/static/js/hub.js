// The page's view of the hub, kept current by the hub's event stream (GET /events). It never
// holds the task history: views ask the hub for the page they show (GET /tasks?limit=…), and
// the page keeps only the running tasks (bounded by the hosts' capacity), the counts, and a
// bounded cache of tasks it has seen. After a dropped connection it resumes with ?since=SEQ;
// after a hub restart (a new pid) it replays what the new hub has and reloads the snapshot.

import { api, authReady, HttpError, sleep, streamSSE } from "./api.js";

const CACHE = 2000; // tasks kept besides the running and the pinned ones
const RUNNING_MAX = 2000; // running tasks loaded at once (the fleet's capacity bounds them)

export const state = {
  tasks: new Map(), // id -> task: a bounded cache (running, pinned, recently seen)
  running: new Map(), // id -> task, every running task
  pinned: new Map(), // id -> how many views show it (never evicted meanwhile)
  counts: { running: 0, pending: 0, draft: 0, total: null },
  hosts: [],
  inventory: null,
  projects: [],
  steps: new Map(), // running task id -> its current step {kind, text, tool, is_error}
  details: new Map(), // running task id -> {cost_usd, cost_estimated, tokens, step} (detail-status)
  config: null,
  usage: null, // GET /usage: accounts' windows and limits, budgets
  lastSeq: null,
  pid: null,
  conn: "connecting",
  loaded: false,
};

const listeners = new Set();

/** Call fn(kind, detail) on every change; returns an unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(kind, detail) {
  for (const fn of [...listeners]) {
    try {
      fn(kind, detail);
    } catch (e) {
      console.error(e);
    }
  }
}

function setConn(conn) {
  if (state.conn !== conn) {
    state.conn = conn;
    emit("conn", conn);
  }
}

/** The step a person would call current: the last event that is not bookkeeping. */
export function lastStep(events) {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e.kind === "result" || e.kind === "system") continue;
    return { kind: e.kind, text: String(e.text || "").slice(0, 240), tool: e.tool, is_error: !!e.is_error };
  }
  return null;
}

export async function loadHosts() {
  const view = await api("/hosts");
  state.hosts = view.hosts;
  state.inventory = view.inventory;
  emit("hosts");
}

/** Refresh the accounts' usage limits and the budgets (the banner and the Usage view). */
export async function loadUsage() {
  state.usage = await api("/usage");
  emit("usage");
}

/** Build a /tasks query from a filter object (empty values left out). */
export function tasksPath(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  return `/tasks?${q}`;
}

/** Refresh the counts the sidebar shows: live tasks from /health, every task from /tasks. */
export async function loadCounts() {
  const [health, all] = await Promise.all([api("/health"), api("/tasks?limit=0")]);
  state.counts = { ...health.tasks, total: all.total };
  emit("counts");
}

/** Fetch what every view needs (never the history: views page it themselves). */
export async function loadSnapshot() {
  const [running, projects, live] = await Promise.all([
    api(tasksPath({ status: "running", sort: "oldest", limit: RUNNING_MAX })),
    api("/projects"), api("/dashboard/api/live"), loadHosts(), loadCounts()]);
  // No event is applied while this runs (run() reads the next one after it): everything cached
  // is at most as new as these answers. The seqs cached tasks carry are forgotten, for the hub
  // may be a new one that numbers its events lower (one killed before they reached its disk):
  // an old seq would keep a stale version against every list it answers.
  seqOf = new WeakMap();
  state.running = new Map(running.tasks.map((t) => [t.id, t]));
  for (const t of running.tasks) remember(t);
  state.projects = projects.projects;
  setLive(live);
  state.loaded = true;
  emit("reset");
  loadUsage().catch(() => {});
}

/** Keep a task in the cache while a view shows it; returns the function that lets it go. */
export function pin(id) {
  state.pinned.set(id, (state.pinned.get(id) || 0) + 1);
  return () => {
    const n = (state.pinned.get(id) || 1) - 1;
    if (n > 0) state.pinned.set(id, n);
    else state.pinned.delete(id);
  };
}

// The seq of the event that brought each cached task: a list asked for before it is older.
let seqOf = new WeakMap();

/**
 * Cache the tasks of a list the hub answered; ``since`` is state.lastSeq when it was asked.
 * A task an event changed after that keeps the event's version: the list may predate it (a
 * queue answered as its task started showed that task running and waiting at once).
 */
export function rememberListed(tasks, since) {
  for (const t of tasks) {
    const known = state.tasks.get(t.id);
    if (!known || (seqOf.get(known) ?? -1) <= since) remember(t);
  }
}

/** Put a task in the cache (the newest last), evicting the oldest unpinned ones past CACHE. */
export function remember(task) {
  state.tasks.delete(task.id);
  state.tasks.set(task.id, task);
  if (state.tasks.size <= CACHE + state.pinned.size + state.running.size) return;
  for (const id of state.tasks.keys()) {
    if (state.tasks.size <= CACHE + state.pinned.size + state.running.size) break;
    if (!state.pinned.has(id) && !state.running.has(id)) state.tasks.delete(id);
  }
}

function setLive(live) {
  for (const [id, step] of Object.entries(live.steps)) if (step) state.steps.set(id, step);
  state.details = new Map(Object.entries(live.details || {}));
}

/** Refresh the running tasks' steps and costs so far (the Live view polls this). */
export async function refreshLive() {
  setLive(await api("/dashboard/api/live"));
  emit("step");
}

/** Fetch one task the list does not hold (e.g. a deep link opened before the snapshot). */
export async function fetchTask(id) {
  const task = await api(`/tasks/${encodeURIComponent(id)}`);
  upsert(task, false);
  return task;
}

function upsert(task, changed = true) {
  remember(task);
  if (task.status === "running") state.running.set(task.id, task);
  else {
    state.running.delete(task.id);
    state.steps.delete(task.id);
    state.details.delete(task.id);
  }
  emit("task", task);
  if (changed) countsLater();
}

// Counts follow the events, at most every 2 s (two small requests, whatever the history).
let countsTimer = null;
function countsLater() {
  if (countsTimer) return;
  countsTimer = setTimeout(() => {
    countsTimer = null;
    loadCounts().catch(() => {});
  }, 2000);
}

function apply(event) {
  const { type, data, task_id: taskId } = event;
  if (typeof event.seq === "number") state.lastSeq = event.seq;
  if (type.startsWith("task.") && type !== "task.log") {
    if (data && data.id && data.status) { // every task.* event carries the task
      if (typeof event.seq === "number") seqOf.set(data, event.seq);
      upsert(data);
    }
  } else if (type === "task.log") {
    const step = lastStep(data.events || []);
    if (step) {
      state.steps.set(taskId, step);
      emit("step", taskId);
    }
    emit("log", event);
  } else if (type === "host.updated") {
    const host = state.hosts.find((h) => h.name === data.name);
    if (host) Object.assign(host, data);
    emit("hosts");
  } else if (type === "inventory.reloaded" || type === "hub.started") {
    loadHosts().catch(() => {});
  } else if (type === "inventory.error") {
    if (state.inventory) state.inventory.error = data.error;
    emit("hosts");
  } else if (type === "account.limited" || type === "account.resumed") {
    loadUsage().catch(() => {});
    emit("account", event);
  } else if (type.startsWith("batch.")) {
    emit("batches");
  } else if (type.startsWith("race.")) {
    emit("races", data);
  } else if (type === "project.created") {
    state.projects = [...state.projects.filter((p) => p.name !== data.name), data];
    emit("projects");
  }
}

async function health() {
  const res = await fetch("/health", { cache: "no-store" });
  if (!res.ok) throw new HttpError(res.status, "unhealthy", "hub not healthy");
  return res.json();
}

/** Follow the hub's events forever, reconnecting with backoff. */
export async function run() {
  let backoff = 250;
  for (;;) {
    try {
      const { pid } = await health();
      const sameHub = state.pid !== null && pid === state.pid;
      // Same hub: resume after the last event seen. A new hub: replay all it has (its numbering
      // may have restarted below ours after a crash) and reload the snapshot.
      const since = state.lastSeq === null ? null : sameHub ? state.lastSeq : 0;
      const expected = since;
      let first = true;
      await streamSSE(since === null ? "/events" : `/events?since=${since}`, {
        onOpen: async () => {
          // No event seen yet means no cursor to resume from: reload what the views show.
          if (!sameHub || since === null) await loadSnapshot();
          state.pid = pid;
          backoff = 250;
          setConn("live");
        },
        onFrame: async (frame) => {
          if (first && sameHub && expected !== null && frame.data.seq > expected + 1) {
            await loadSnapshot(); // the hub's buffer no longer holds what we missed
          }
          first = false;
          apply(frame.data);
        },
      });
    } catch (err) {
      if (err instanceof HttpError && err.status === 401) {
        setConn("locked");
        await authReady();
        continue;
      }
      console.warn("event stream dropped:", err);
    }
    setConn("reconnecting");
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 4000);
  }
}
