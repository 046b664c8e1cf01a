// Agent network: the hub in the middle, every inventory host around it, its running tasks.

import { api } from "../api.js";
import { el, fmtAgo, fmtDuration, replace, svg, taskElapsed, throttle } from "../dom.js";
import { state } from "../hub.js";

const gpus = new Map(); // host -> {gpus: [...], reason} from GET /gpus, when the hub has it

function gpuUse(host) {
  const list = gpus.get(host.name)?.gpus || [];
  const known = list.filter((g) => typeof g.utilization === "number");
  return known.length ? Math.round(known.reduce((s, g) => s + g.utilization, 0) / known.length) : null;
}

function gpuList(host) {
  const entry = gpus.get(host.name);
  if (!entry) return null;
  if (!entry.gpus?.length) return [el("dt", {}, "GPUs"), el("dd", { class: "muted" }, entry.reason || "none")];
  return [el("dt", {}, "GPUs"), el("dd", {}, el("ul", { class: "gpu-list" }, entry.gpus.map((g) => el("li", {},
    el("span", { class: "gpu-bar", role: "img", "aria-label": `${g.utilization ?? "?"}% busy` }, el("span", { style: { width: `${g.utilization || 0}%` } })),
    ` ${g.index} · ${g.name} · ${g.utilization ?? "?"}% · ${g.memory_used ?? "?"}/${g.memory_total ?? "?"} MiB`,
    g.tasks?.length ? [" · ", g.tasks.map((id) => el("a", { href: `#/tasks/${encodeURIComponent(id)}`, class: "mono" }, id, " "))] : null))))];
}

const W = 900;
const H = 420;

function hostState(host) {
  if (host.reachable === true) return "up";
  if (host.reachable === false) return "down";
  return "unknown";
}

const STATE_TEXT = { up: "reachable", down: "unreachable", unknown: "not checked yet" };

let byHost = new Map(); // host name -> its running tasks, grouped once per render

function groupRunning() {
  byHost = new Map();
  for (const t of state.running.values()) {
    if (!byHost.has(t.host)) byHost.set(t.host, []);
    byHost.get(t.host).push(t);
  }
}

function runningTasks(host) {
  return byHost.get(host.name) || [];
}

function graph(hosts) {
  const cx = W / 2;
  const cy = H / 2;
  const rx = W / 2 - 110;
  const ry = H / 2 - 80;
  const nodes = [];
  const links = [];
  hosts.forEach((host, i) => {
    const angle = (2 * Math.PI * i) / Math.max(hosts.length, 1) - Math.PI / 2;
    const x = cx + rx * Math.cos(angle);
    const y = cy + ry * Math.sin(angle);
    const st = hostState(host);
    const tasks = runningTasks(host);
    links.push(svg("line", { x1: cx, y1: cy, x2: x, y2: y, class: `net-link ${st}` }));
    // Tasks go on the side away from the hub (above the node in the upper half, under its
    // name in the lower half), so they never sit on the line to the hub.
    const lower = Math.sin(angle) > 0.3;
    const shown = tasks.slice(0, 10);
    const dots = shown.map((t, j) => svg("a", { href: `#/tasks/${encodeURIComponent(t.id)}`, class: "net-task", "aria-label": `Task ${t.title || t.id}` },
      svg("circle", { cx: x + (j - (shown.length - 1) / 2) * 17, cy: lower ? y + 62 : y - 36, r: 7 }),
      svg("title", {}, `${t.title || t.id} (${t.id}) · ${t.backend} · ${fmtDuration(taskElapsed(t))}`)));
    const use = gpuUse(host);
    nodes.push(svg("g", { class: `net-host ${st}`, "data-host": host.name },
      svg("a", { href: `#/network/${encodeURIComponent(host.name)}`, "aria-label": `Host ${host.name}, ${STATE_TEXT[st]}` },
        svg("circle", { cx: x, cy: y, r: 22 }),
        svg("text", { x, y: y + 5, class: "net-count", "text-anchor": "middle" }, String(tasks.length)),
        svg("title", {}, `${host.name}: ${STATE_TEXT[st]}, ${tasks.length} running`)),
      svg("text", { x, y: y + 42, class: "net-name", "text-anchor": "middle" }, host.name,
        use !== null ? svg("tspan", { class: "net-gpu" }, ` · GPU ${use}%`) : null),
      dots));
  });
  const hub = svg("g", { class: "net-hub" },
    svg("circle", { cx, cy, r: 34 }),
    svg("text", { x: cx, y: cy + 5, "text-anchor": "middle" }, "hub"));
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "net-graph", role: "img", "aria-label": `Hub and ${hosts.length} hosts` }, links, hub, nodes);
}

function chips(items, cls) {
  return (items || []).map((x) => el("span", { class: `chip ${cls || ""}` }, x));
}

function card(host) {
  const st = hostState(host);
  const tasks = runningTasks(host);
  const where = host.connection === "local" ? "local (the hub's machine)" : `${host.user ? host.user + "@" : ""}${host.address || host.name}${host.port && host.port !== 22 ? ":" + host.port : ""}`;
  const versions = Object.entries(host.versions || {}).map(([k, v]) => `${k} ${v}`.replace(`${k} ${k}`, k));
  return el("article", { class: `card host-card ${st}`, id: `host-${host.name}`, "data-host": host.name },
    el("header", { class: "card-head" },
      el("h3", {}, host.name),
      el("span", { class: `pill ${st}` }, STATE_TEXT[st])),
    el("p", { class: "mono muted" }, where),
    el("dl", { class: "kv" },
      el("dt", {}, "Last contact"), el("dd", {}, host.last_contact ? fmtAgo(host.last_contact) : "never"),
      el("dt", {}, "Labels"), el("dd", {}, host.labels?.length ? chips(host.labels) : "—"),
      el("dt", {}, "Backends"), el("dd", {}, chips(host.backends, "backend")),
      el("dt", {}, "Agents"), el("dd", {}, `${tasks.length} / ${host.max_agents} running`),
      versions.length ? [el("dt", {}, "Tools"), el("dd", { class: "small" }, versions.join(" · "))] : null,
      gpuList(host)),
    host.error ? el("p", { class: "error small" }, host.error) : null,
    tasks.length
      ? el("ul", { class: "host-tasks" }, tasks.map((t) => el("li", {},
        el("a", { href: `#/tasks/${encodeURIComponent(t.id)}` }, t.title || t.id),
        el("span", { class: "muted small" }, ` ${t.backend} · ${fmtDuration(taskElapsed(t))}`))))
      : el("p", { class: "muted small" }, "No task running."));
}

export function mount(root, route) {
  const summary = el("p", { class: "muted", id: "net-summary" });
  const banner = el("div");
  const graphBox = el("div", { class: "panel graph-panel" });
  const cards = el("div", { class: "cards", id: "host-cards" });
  root.append(el("header", { class: "view-head" }, el("h1", {}, "Agent network"), summary), banner, graphBox, cards);

  function render() {
    const hosts = state.hosts;
    const up = hosts.filter((h) => h.reachable === true).length;
    groupRunning();
    const running = state.running.size;
    summary.textContent = `${hosts.length} host${hosts.length === 1 ? "" : "s"} · ${up} reachable · ${running} task${running === 1 ? "" : "s"} running`;
    const err = state.inventory?.error;
    replace(banner, err ? el("p", { class: "banner error" }, `Inventory not reloaded (the last good one stays in force): ${err}`) : null);
    replace(graphBox, graph(hosts));
    replace(cards, hosts.map(card));
    if (focused) document.getElementById(`host-${focused}`)?.classList.add("focus");
  }
  const later = throttle(render, 500);
  let focused = null;
  const focusHost = (r) => {
    focused = r.id || null;
    for (const c of cards.querySelectorAll(".focus")) c.classList.remove("focus");
    const found = r.id && document.getElementById(`host-${r.id}`);
    if (found) {
      found.classList.add("focus");
      found.scrollIntoView({ block: "center" });
    }
  };
  render();
  focusHost(route);
  const tick = setInterval(later, 5000); // keep "last contact" and elapsed times fresh
  const loadGpus = async () => {
    if (!state.config?.features?.gpus) return;
    try {
      const view = await api("/gpus");
      gpus.clear();
      for (const h of view.hosts) gpus.set(h.host, h);
      later();
    } catch (err) { /* shown next time */ }
  };
  loadGpus();
  const gpuTick = setInterval(loadGpus, 15000);
  return {
    setRoute: focusHost,
    update(kind) {
      if (kind === "hosts" || kind === "reset" || kind === "task") later();
    },
    destroy() {
      clearInterval(tick);
      clearInterval(gpuTick);
    },
  };
}
