// The page's copy of the hub's state, kept current by the hub's event stream (GET /events).
// After a dropped connection it resumes with ?since=SEQ; after a hub restart (a new pid) it
// replays what the new hub has and reloads the snapshot, so nothing is missed either way.

import { api, authReady, HttpError, sleep, streamSSE } from "./api.js";

export const state = {
  tasks: new Map(), // id -> task
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

/** Fetch everything the views show; events that arrive meanwhile are applied after. */
export async function loadSnapshot() {
  const [tasks, projects, live] = await Promise.all([api("/tasks"), api("/projects"), api("/dashboard/api/live"), loadHosts()]);
  state.tasks = new Map(tasks.tasks.map((t) => [t.id, t]));
  state.projects = projects.projects;
  setLive(live);
  state.loaded = true;
  emit("reset");
  loadUsage().catch(() => {});
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
  upsert(task);
  return task;
}

function upsert(task) {
  state.tasks.set(task.id, task);
  if (task.status !== "running") {
    state.steps.delete(task.id);
    state.details.delete(task.id);
  }
  emit("task", task);
}

function apply(event) {
  const { type, data, task_id: taskId } = event;
  if (typeof event.seq === "number") state.lastSeq = event.seq;
  if (type.startsWith("task.") && type !== "task.log") {
    if (data && data.id && data.status) upsert(data); // every task.* event carries the task
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
