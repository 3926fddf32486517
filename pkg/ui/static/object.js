// Object: one object's revisions from revisions.krm.io, oldest first, each
// with who changed it and a diff against the one before.
import { getJSON, krm, el, age, APIError } from './api.js';
import { diffLines } from './diff.js';

async function historyServed(signal) {
  const d = await getJSON(`${krm}`, signal);
  return (d.resources || []).some((r) => r.name === 'revisions');
}

function unavailable(out, why) {
  out.replaceChildren(el('p', { class: 'unavailable', id: 'history-unavailable' }, `History not available: ${why}`));
}

function pretty(obj) {
  return JSON.stringify(obj ?? null, null, 2);
}

function revisionView(rev, prev) {
  const managers = (rev.managers || []).map((m) => `${m.manager} (${m.operation})`).join(', ');
  const head = el('tr', { class: 'revision', dataset: { revision: rev.revision } },
    el('td', { class: 'num' }, rev.revision),
    el('td', { class: 'mono' }, rev.resourceVersion),
    el('td', { title: rev.observedAt }, `${age(Date.parse(rev.observedAt))} ago`),
    el('td', {}, rev.event),
    el('td', {}, rev.source),
    el('td', {}, managers || '<none>'),
    el('td', { class: 'mono' }, (rev.changed || []).join(', ')),
  );
  let body;
  if (!prev) {
    body = el('details', {}, el('summary', {}, 'object'), el('div', { class: 'diff' }, pretty(rev.object)));
  } else {
    const lines = diffLines(pretty(prev.object), pretty(rev.object));
    body = el('div', { class: 'diff' }, lines.length ? lines.map(([t, s]) => el('span', { class: t }, s)) : 'no change to the object');
  }
  return [head, el('tr', { class: 'revision-diff' }, el('td', { colspan: 7 }, body))];
}

export async function start(params, signal) {
  const form = document.getElementById('object-form');
  const out = document.getElementById('object-history');
  const list = await getJSON(`${krm}/resourcestatuses`, signal);
  const current = params.get('resource') || form.resource.value || 'pods';
  form.resource.replaceChildren(...list.items.map((i) => el('option', { value: i.metadata.name, selected: i.metadata.name === current }, i.metadata.name)));
  form.namespace.value = params.get('namespace') || '';
  form.name.value = params.get('name') || '';
  form.onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ resource: form.resource.value, namespace: form.namespace.value, name: form.name.value });
    location.hash = `object?${q}`;
  };
  if (!params.get('name')) {
    out.replaceChildren(el('p', { class: 'note' }, 'Choose an object, or follow one from the Drift page.'));
    return;
  }
  if (!(await historyServed(signal))) {
    unavailable(out, 'this agent does not serve revisions.krm.io (it was built without object history). Upgrade the agent, and run it with --history.');
    return;
  }
  const q = new URLSearchParams({ resource: params.get('resource'), name: params.get('name') });
  if (params.get('namespace')) q.set('namespace', params.get('namespace'));
  let revs;
  try {
    revs = await getJSON(`${krm}/revisions?${q}`, signal);
  } catch (err) {
    if (err instanceof APIError && err.status === 404) {
      unavailable(out, err.message);
      return;
    }
    throw err;
  }
  if (signal.aborted) return;
  const items = revs.items || [];
  const name = params.get('namespace') ? `${params.get('namespace')}/${params.get('name')}` : params.get('name');
  if (!items.length) {
    out.replaceChildren(el('p', { class: 'note', id: 'history-empty' }, `No revisions of ${params.get('resource')} ${name} are recorded (history keeps what the agent saw within --history).`));
    return;
  }
  const rows = items.flatMap((rev, i) => revisionView(rev, items[i - 1]));
  out.replaceChildren(
    el('h2', {}, `${params.get('resource')} ${name}: ${items.length} revision${items.length === 1 ? '' : 's'}`),
    el('table', { id: 'revisions' },
      el('thead', {}, el('tr', {}, ['Revision', 'ResourceVersion', 'Age', 'Event', 'Source', 'Manager', 'Changed'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)),
  );
}
