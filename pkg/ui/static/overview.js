// Overview: every watched resource's status, kept current by a watch of
// resourcestatuses.krm.io: the agent pushes a status when it changes, and
// the page never polls.
import { watch, krm, el, age, drift } from './api.js';

const statuses = new Map(); // name -> ResourceStatus, in the agent's order
let ticker = null;

// reconnect bounds: the first retry is quick, later ones back off.
const retryFirstMs = 500;
const retryMaxMs = 10000;

function badge(state, title = '') {
  const b = document.getElementById('live');
  b.dataset.state = state;
  b.textContent = state;
  b.title = title;
}

function cell(cls, text, attrs = {}) {
  return el('td', { class: cls, ...attrs }, text);
}

function row(st) {
  const s = st.status;
  const verified = s.verifiedAt ? Date.parse(s.verifiedAt) : 0;
  const stream = s.streamConnected ? el('span', { class: 'ok' }, 'connected') : el('span', { class: 'bad' }, 'disconnected');
  const last = s.lastDrift || {};
  const lastTotal = (last.missedAdded || 0) + (last.missedDeleted || 0) + (last.missedModified || 0);
  return el('tr', { dataset: { resource: st.metadata.name } },
    el('td', { class: 'name' }, el('a', { href: `#drift?resource=${encodeURIComponent(st.metadata.name)}` }, st.metadata.name)),
    cell('objects num', s.objects ? s.objects.aggregated : 0),
    cell('verified', verified ? age(verified) : '<never>', { 'data-at': verified || '' }),
    el('td', { class: 'stream' }, stream, s.stale ? el('span', { class: 'warn' }, ' (stale)') : null),
    cell('rate num', (s.eventsPerMinute || 0).toFixed(0)),
    cell('events num', s.events || 0),
    el('td', { class: lastTotal ? 'drift bad' : 'drift' }, drift(last)),
    cell('total-drift', drift(s.totalDrift)),
    cell('last-error', s.lastError || ''),
  );
}

function render(changed) {
  const tbody = document.querySelector('#overview-table tbody');
  const rows = new Map([...tbody.children].map((tr) => [tr.dataset.resource, tr]));
  const want = [];
  for (const st of statuses.values()) {
    let tr = rows.get(st.metadata.name);
    if (!tr || changed.has(st.metadata.name)) {
      const fresh = row(st);
      if (tr) {
        fresh.classList.add('flash');
        tr.replaceWith(fresh);
      }
      tr = fresh;
    }
    want.push(tr);
  }
  tbody.replaceChildren(...want);
  const table = document.getElementById('overview-table');
  // How many updates the page has applied: tests and curious users can
  // see the page change without a reload.
  table.dataset.updates = String(Number(table.dataset.updates || 0) + 1);
}

function tick() {
  for (const td of document.querySelectorAll('#overview-table td.verified')) {
    const at = Number(td.dataset.at);
    if (at) td.textContent = age(at);
  }
}

export async function start(_params, signal) {
  statuses.clear();
  document.querySelector('#overview-table tbody').replaceChildren();
  ticker = setInterval(tick, 1000);
  let retry = retryFirstMs;
  while (!signal.aborted) {
    const changed = new Set();
    let pending = null;
    try {
      badge('connecting');
      // A new watch starts with ADDED for every resource: it replaces
      // what the last one left.
      let first = true;
      await watch(`${krm}/resourcestatuses?watch=true`, (ev) => {
        if (ev.type === 'ERROR') throw new Error(ev.object.message || 'the watch ended with an error');
        const name = ev.object.metadata.name;
        if (first) {
          statuses.clear();
          first = false;
        }
        if (ev.type === 'DELETED') statuses.delete(name);
        else statuses.set(name, ev.object);
        changed.add(name);
        retry = retryFirstMs;
        // Events of one write arrive together: render once for them.
        if (!pending) {
          pending = Promise.resolve().then(() => {
            pending = null;
            render(changed);
            changed.clear();
            badge('live');
          });
        }
      }, signal);
      // A watch ends at its timeout; start again at once.
    } catch (err) {
      if (signal.aborted) break;
      badge('reconnecting', err.message);
      await new Promise((r) => setTimeout(r, retry));
      retry = Math.min(retry * 2, retryMaxMs);
    }
  }
}

export function stop() {
  clearInterval(ticker);
  ticker = null;
}
