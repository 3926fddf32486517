// Drift: each resource's ledger from driftreports.krm.io: every event the
// watch missed, found by a verifying LIST, and how that LIST repaired the
// streamed view; then what the stream holds that no LIST has confirmed yet.
import { getJSON, krm, el, age } from './api.js';

const kinds = {
  MissedAdded: 'missed ADDED',
  MissedDeleted: 'missed DELETED',
  MissedModified: 'missed MODIFIED',
};

function repair(e) {
  switch (e.kind) {
    case 'MissedAdded':
      return `added to the stream at resourceVersion ${e.verifiedResourceVersion} from the LIST at ${e.listResourceVersion}`;
    case 'MissedDeleted':
      return `removed from the stream (it held resourceVersion ${e.streamedResourceVersion}): the LIST at ${e.listResourceVersion} no longer has it`;
    case 'MissedModified':
      return `updated in the stream from resourceVersion ${e.streamedResourceVersion} to ${e.verifiedResourceVersion} by the LIST at ${e.listResourceVersion}`;
    default:
      return e.kind;
  }
}

function objectLink(resource, ns, name) {
  const q = new URLSearchParams({ resource, namespace: ns || '', name });
  return el('a', { href: `#object?${q}` }, ns ? `${ns}/${name}` : name);
}

function ledgerTable(rep) {
  const rows = rep.status.ledger.slice().reverse().map((e) => el('tr', { class: 'entry', dataset: { kind: e.kind } },
    el('td', { title: e.foundAt }, `${age(Date.parse(e.foundAt))} ago`),
    el('td', { class: 'kind' }, kinds[e.kind] || e.kind),
    el('td', { class: 'object' }, objectLink(rep.metadata.name, e.namespace, e.name)),
    el('td', { class: 'repair' }, repair(e)),
  ));
  return el('table', { class: 'ledger', dataset: { resource: rep.metadata.name } },
    el('thead', {}, el('tr', {}, ['Found', 'Missed event', 'Object', 'Repair'].map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 4, class: 'note' }, 'No missed events: every LIST agreed with the stream.'))),
  );
}

export async function start(params, signal) {
  const out = document.getElementById('drift-reports');
  out.replaceChildren(el('p', { class: 'note' }, 'Loading…'));
  const only = params.get('resource');
  const list = await getJSON(`${krm}/driftreports`, signal);
  if (signal.aborted) return;
  const parts = [];
  for (const rep of list.items) {
    if (only && rep.metadata.name !== only) continue;
    const st = rep.status;
    const verified = st.verifiedAt ? `last LIST ${age(Date.parse(st.verifiedAt))} ago at resourceVersion ${st.verifiedResourceVersion}` : 'no LIST has landed yet';
    const unverified = st.unverified.length + (st.unverifiedOmitted || 0);
    parts.push(el('section', { class: 'drift', dataset: { resource: rep.metadata.name } },
      el('h2', {}, rep.metadata.name, ' ', el('span', { class: 'badge ledger-count' }, `${st.ledger.length} missed`)),
      el('p', { class: 'note' }, `${verified}; ${unverified} change${unverified === 1 ? '' : 's'} streamed since, not yet verified.`),
      ledgerTable(rep),
    ));
  }
  if (only) parts.push(el('p', {}, el('a', { href: '#drift' }, 'All resources')));
  out.replaceChildren(...parts);
}
