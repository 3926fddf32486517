// The agent's API, as the pages read it: the same paths kubectl krm reads,
// relative to the agent's root, so the caller's credentials and the agent's
// authorization apply to every number shown.

export const krm = '/apis/krm.io/v1alpha1';

// APIError carries the HTTP status and the Kubernetes Status's message.
export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function getJSON(path, signal) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, signal });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // A body that is not JSON: the status line says what happened.
  }
  if (!res.ok) {
    const msg = body && body.message ? body.message : `${res.status} ${res.statusText}`;
    throw new APIError(res.status, msg);
  }
  return body;
}

// watch follows a Kubernetes watch (one JSON event a line) and calls onEvent
// for each; it resolves when the stream ends and rejects on an HTTP error.
export async function watch(path, onEvent, signal) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, signal });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).message || msg; } catch { /* keep the status line */ }
    throw new APIError(res.status, msg);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) onEvent(JSON.parse(line));
    }
  }
}

// el builds an element: el('td', {class: 'num'}, '42'). Text is always set as
// text, never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// age is kubectl's short duration: 45s, 3m12s, 2h5m, 3d4h.
export function age(from, now = Date.now()) {
  let s = Math.max(0, Math.floor((now - from) / 1000));
  if (s < 120) return `${s}s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 10) return s ? `${m}m${s}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  let h = Math.floor(m / 60); m %= 60;
  if (h < 48) return m ? `${h}h${m}m` : `${h}h`;
  const d = Math.floor(h / 24); h %= 24;
  return h ? `${d}d${h}h` : `${d}d`;
}

// drift is kubectl krm status' DRIFT cell: +added -deleted ~modified.
export function drift(d) {
  if (!d) return '0';
  const parts = [];
  if (d.missedAdded) parts.push(`+${d.missedAdded}`);
  if (d.missedDeleted) parts.push(`-${d.missedDeleted}`);
  if (d.missedModified) parts.push(`~${d.missedModified}`);
  return parts.length ? parts.join(' ') : '0';
}

export function showError(msg) {
  const p = document.getElementById('error');
  p.textContent = msg;
  p.hidden = !msg;
}
