// Timeline tab: the task's states and each tool call as a bar on one time axis, so a person
// sees where the time went (GET /dashboard/api/tasks/{id}/timeline).

import { api } from "../api.js";
import { el, fmtDuration, fmtTime, replace, svg, throttle } from "../dom.js";

const LANE = 22;
const LEFT = 8;
const AXIS = 26;

/** Put bars in the fewest lanes so none overlap. */
function lanes(steps) {
  const ends = [];
  return steps.map((s) => {
    let lane = ends.findIndex((end) => end <= s.t0);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = Math.max(s.t1, s.t0 + 1e-9);
    return lane;
  });
}

function ticks(span) {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  return steps.find((s) => span / s <= 8) || 86400;
}

function chart(data, width) {
  const t0 = Date.parse(data.start);
  const t1 = Math.max(Date.parse(data.end), t0 + 1000);
  const span = (t1 - t0) / 1000;
  const inner = width - LEFT * 2;
  const x = (iso) => LEFT + (((Date.parse(iso) - t0) / 1000) / span) * inner;
  const steps = data.steps.map((s) => ({ ...s, t0: Date.parse(s.start), t1: Date.parse(s.end) }));
  const laneOf = lanes(steps);
  const nLanes = Math.max(1, ...laneOf.map((l) => l + 1));
  const height = AXIS + LANE + 10 + nLanes * LANE + 8;
  const parts = [];
  const every = ticks(span);
  for (let s = 0; s <= span + 1e-9; s += every) {
    const px = LEFT + (s / span) * inner;
    parts.push(svg("line", { x1: px, x2: px, y1: AXIS - 6, y2: height, class: "tl-grid" }),
      svg("text", { x: px + 3, y: AXIS - 10, class: "tl-tick" }, fmtDuration(s)));
  }
  for (const st of data.states) {
    const a = x(st.start);
    const w = Math.max(x(st.end) - a, 3);
    parts.push(svg("rect", { x: a, y: AXIS, width: w, height: LANE - 4, rx: 3, class: `tl-state st-${st.status}` },
      svg("title", {}, `${st.status}: ${fmtTime(st.start)} → ${fmtTime(st.end)}`)));
    if (w > 70) parts.push(svg("text", { x: a + 6, y: AXIS + 13, class: "tl-label on-bar" }, st.status));
  }
  steps.forEach((s, i) => {
    const a = x(s.start);
    const w = Math.max(x(s.end) - a, 3);
    const y = AXIS + LANE + 10 + laneOf[i] * LANE;
    const label = `${s.label} · ${fmtDuration(s.duration_s)}`;
    parts.push(svg("g", { class: `tl-step k-${s.kind}${s.is_error ? " is-error" : ""}`, "data-step": i },
      svg("rect", { x: a, y, width: w, height: LANE - 5, rx: 3 }),
      svg("title", {}, `${label}\n${fmtTime(s.start)}`),
      w > 60 ? svg("text", { x: a + 4, y: y + 12, class: "tl-label on-bar" }, s.label.slice(0, Math.floor(w / 7))) : null));
  });
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "timeline", role: "img", "aria-label": `Timeline: ${data.steps.length} steps over ${fmtDuration(span)}` }, parts);
}

function table(data) {
  if (!data.steps.length) return el("p", { class: "muted" }, "No tool calls (yet).");
  const t0 = Date.parse(data.start);
  return el("div", { class: "table-wrap" }, el("table", { class: "grid compact", id: "timeline-steps" },
    el("thead", {}, el("tr", {}, ["at", "took", "step"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, data.steps.map((s) => el("tr", { class: s.is_error ? "is-error" : null },
      el("td", { class: "num" }, `+${fmtDuration((Date.parse(s.start) - t0) / 1000)}`),
      el("td", { class: "num" }, fmtDuration(s.duration_s)),
      el("td", {}, el("span", { class: "ev-label tool" }, s.tool || s.kind), " ", el("code", {}, s.label)))))));
}

export function mount(root, id) {
  const note = el("p", { class: "muted small", id: "timeline-note" });
  const box = el("div", { class: "panel timeline-box", id: "timeline-chart" }, el("p", { class: "muted" }, "Loading…"));
  const list = el("div");
  root.append(note, box, list);
  let data = null;
  let alive = true;

  function draw() {
    if (!data) return;
    replace(box, chart(data, Math.max(320, box.clientWidth - 32)));
  }

  async function load() {
    try {
      data = await api(`/dashboard/api/tasks/${encodeURIComponent(id)}/timeline`);
    } catch (err) {
      replace(box, el("p", { class: "error" }, `Cannot load the timeline: ${err.message}`));
      return;
    }
    if (!alive) return;
    const states = data.states.map((s) => `${s.status} ${fmtTime(s.start)}`).join(" → ");
    note.textContent = `${states}${data.approximate ? " · step times are estimated (the hub did not see this output arrive)" : ""}${data.truncated ? " · only the first 8 MB of output" : ""}`;
    draw();
    replace(list, table(data));
  }
  load();
  const reload = throttle(load, 2000);
  const resized = throttle(draw, 200);
  window.addEventListener("resize", resized);
  return {
    update(kind, task) {
      if ((kind === "step" || kind === "task") && task && (task.status === "running" || !data || data.states.length < 3)) reload();
    },
    destroy() {
      alive = false;
      window.removeEventListener("resize", resized);
    },
  };
}
