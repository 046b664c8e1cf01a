// Logs tab: follows GET /tasks/{id}/events (over fetch, so the key stays in a header) from the
// last byte offset seen, resuming after drops and hub restarts, until the task's `end` frame.

import { HttpError, sleep, streamSSE } from "../api.js";
import { el } from "../dom.js";
import { state } from "../hub.js";
import { waitingText } from "../words.js";

/** What an empty log box says while the task has printed nothing yet. */
function placeholderText(task) {
  if (!task || task.status === "running") return "Waiting for output…";
  if (task.status === "pending" || task.status === "draft") return `Not started yet: waiting for ${waitingText(task)}…`;
  return "No output.";
}

function toolInput(event) {
  const text = String(event.text || "");
  const prefix = `${event.tool}: `;
  return event.tool && text.startsWith(prefix) ? text.slice(prefix.length) : text;
}

function collapsible(cls, head, body) {
  if (!body || body === head) return el("div", { class: cls }, head);
  return el("details", { class: cls }, el("summary", {}, head), el("pre", {}, body));
}

/** Turn one rendered log event into a DOM node (text only, never markup). */
export function renderEvent(event) {
  const kind = event.kind;
  const text = String(event.text ?? "");
  const cls = `ev ev-${kind}${event.is_error ? " is-error" : ""}`;
  switch (kind) {
    case "text":
      return el("div", { class: cls }, el("span", { class: "ev-label" }, "assistant"), el("p", {}, text));
    case "reasoning":
      return el("div", { class: cls }, el("span", { class: "ev-label" }, "thinking"), el("p", {}, text));
    case "tool_use":
      return el("div", { class: cls }, el("span", { class: "ev-label tool" }, event.tool || "tool"),
        el("code", { class: "ev-input" }, toolInput(event)));
    case "tool_result": {
      const first = text.split("\n")[0].slice(0, 200);
      return collapsible(cls, [el("span", { class: "ev-label" }, event.is_error ? "tool error" : "result"), " ", first], text.length > first.length ? text : null);
    }
    case "command": {
      // codex prints a command when it starts and again when it ends: show the command once,
      // then its outcome the way a tool result reads.
      const data = event.data || {};
      if (data.status === "in_progress" || !("exit_code" in data)) {
        return el("div", { class: cls }, el("span", { class: "ev-label tool" }, "shell"), " ", el("code", {}, text));
      }
      const output = String(data.output || "");
      const outcome = data.exit_code === null || data.exit_code === undefined ? String(data.status || "done") : `exit ${data.exit_code}`;
      const first = output.split(" ⏎ ")[0].slice(0, 200);
      return collapsible(cls, [el("span", { class: "ev-label" }, outcome), " ", first], output.length > first.length ? output.replaceAll(" ⏎ ", "\n") : null);
    }
    case "file_change":
      return el("div", { class: cls }, el("span", { class: "ev-label tool" }, "file"), " ", el("code", {}, text));
    case "error":
      return el("div", { class: cls, role: "note" }, el("span", { class: "ev-label" }, "error"), el("p", {}, text));
    case "result":
      return el("div", { class: cls }, el("span", { class: "ev-label" }, event.is_error ? "failed" : "result"), el("p", {}, text));
    case "retry":
      return el("div", { class: cls }, el("span", { class: "ev-label" }, "retry"), " ", text);
    case "line":
      return el("div", { class: `${cls} mono` }, text);
    case "section": // the verify phase: a heading before the check's output, its verdict after
      return el("div", { class: cls, role: "separator" }, el("span", { class: "ev-label" }, "check"), " ", text);
    default:
      return el("div", { class: cls }, el("span", { class: "ev-label" }, kind || "event"), " ", text);
  }
}

export function mount(root, id) {
  const raw = el("input", { type: "checkbox", id: "log-raw" });
  const follow = el("input", { type: "checkbox", id: "log-follow", checked: true });
  const status = el("span", { class: "muted", id: "log-status", role: "status" }, "Connecting…");
  const list = el("div", { class: "log-events", id: "log-events" });
  const rawBox = el("pre", { class: "log-raw", id: "log-raw-text", hidden: true });
  const waiting = el("p", { class: "muted log-waiting", id: "log-waiting", role: "status" }, placeholderText(state.tasks.get(id)));
  const box = el("div", { class: "log-box", id: "log-box", tabindex: "0", "aria-label": "Task log" }, waiting, list, rawBox);
  root.append(el("div", { class: "toolbar small" },
    el("label", { class: "check" }, raw, " Raw output"),
    el("label", { class: "check" }, follow, " Follow"), status), box);
  raw.addEventListener("change", () => {
    list.hidden = raw.checked;
    rawBox.hidden = !raw.checked;
    if (follow.checked) box.scrollTop = box.scrollHeight;
  });

  let conn = new AbortController();
  let destroyed = false;
  let offset = 0;
  let ended = false;
  let attempt = state.tasks.get(id)?.attempt ?? 0;

  function append(frame) {
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const event of frame.events || []) frag.append(renderEvent(event));
    list.append(frag);
    rawBox.append(document.createTextNode(frame.text || ""));
    if (frame.text) waiting.hidden = true;
    offset = frame.next_offset;
    if (follow.checked && atBottom) box.scrollTop = box.scrollHeight;
  }

  function reset() {
    offset = 0;
    list.replaceChildren();
    rawBox.replaceChildren();
    waiting.hidden = false;
    waiting.textContent = placeholderText(state.tasks.get(id));
  }

  async function loop() {
    let backoff = 250;
    while (!ended && !destroyed) {
      conn = new AbortController();
      try {
        await streamSSE(`/tasks/${encodeURIComponent(id)}/events?offset=${offset}`, {
          signal: conn.signal,
          onOpen: () => {
            backoff = 250;
            status.textContent = "Following live…";
          },
          onFrame: (frame) => {
            if (frame.event === "log") append(frame.data);
            else if (frame.event === "end") {
              ended = true;
              status.textContent = `End of log · task ${frame.data.status}`;
              root.dataset.ended = frame.data.status;
            }
            if (frame.event === "end" && !waiting.hidden) waiting.textContent = "No output.";
          },
        });
      } catch (err) {
        if (destroyed) return;
        if (conn.signal.aborted) continue; // restarted on purpose (a retried task)
        if (err instanceof HttpError && (err.status === 404 || err.status === 401)) {
          status.textContent = `Cannot follow the log: ${err.message}`;
          if (err.status === 404) return;
        }
      }
      if (ended || destroyed) return;
      status.textContent = "Reconnecting…";
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 4000);
    }
  }
  loop();
  return {
    update(kind, task) {
      if (task && !waiting.hidden && !ended) waiting.textContent = placeholderText(task);
      if (task && task.attempt !== attempt) {
        attempt = task.attempt; // retried: a fresh log from byte 0
        reset();
        if (ended) {
          ended = false;
          delete root.dataset.ended;
          loop();
        } else conn.abort();
      }
    },
    destroy() {
      destroyed = true;
      conn.abort();
    },
  };
}
