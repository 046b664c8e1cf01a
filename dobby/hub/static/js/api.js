// Talking to the hub: JSON calls and Server-Sent Events over fetch(), so the API key travels in
// the X-Dobby-Key header (EventSource cannot send headers, and the key never goes in a URL).

const KEY = "dobby.key";
const authWaiters = [];
let onAuthNeeded = () => {};

export class HttpError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** Register what to do when the hub answers 401 (the app shows the key prompt). */
export function setAuthHandler(fn) {
  onAuthNeeded = fn;
}

/** Resolve once a working key has been entered. */
export function authReady() {
  return new Promise((resolve) => authWaiters.push(resolve));
}

export function authResolved() {
  while (authWaiters.length) authWaiters.shift()();
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const key = getKey();
  if (key) h["X-Dobby-Key"] = key;
  return h;
}

async function failure(res) {
  let code = "http_error";
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (e) { /* not JSON */ }
  if (res.status === 401) onAuthNeeded(message);
  return new HttpError(res.status, code, message);
}

/** Call the hub and return its JSON answer; throws HttpError on an error status. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, cache: "no-store", headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? null : res.json();
}

/** Parse one SSE frame's lines into {id, event, data}. */
function parseFrame(block) {
  const frame = { id: null, event: "message", data: "" };
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "data") data.push(value);
    else if (field === "event") frame.event = value;
    else if (field === "id") frame.id = value;
  }
  if (!data.length) return null;
  try {
    frame.data = JSON.parse(data.join("\n"));
  } catch (e) {
    frame.data = data.join("\n");
  }
  return frame;
}

/**
 * Read an SSE stream until it ends. `onOpen` runs (and is awaited) once the hub has accepted the
 * request, before any frame is handled; `onFrame(frame)` runs for each frame, in order.
 */
export async function streamSSE(path, { signal, onOpen, onFrame }) {
  const res = await fetch(path, { signal, cache: "no-store", headers: headers({ Accept: "text/event-stream" }) });
  if (!res.ok) throw await failure(res);
  if (onOpen) await onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const frame = parseFrame(block);
      if (frame) await onFrame(frame);
    }
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
