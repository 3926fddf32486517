// Delay: p50, p90 and p99 of the stream delay over time, per resource and
// event type, from delayreports.krm.io (InfluxDB when the agent writes
// there, its in-memory window otherwise). Each chart carries the canary
// probe's p50 too: the probe times its own ConfigMaps to the millisecond,
// while the resources' delays come from one-second timestamps.
import { getJSON, krm, el, APIError } from './api.js';

const events = ['ADDED', 'DELETED'];
const charts = [];

// fmt shows a delay in seconds with the unit that reads best.
function fmt(v) {
  if (v === null || v === undefined) return '—';
  return Math.abs(v) < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;
}

function report(name, event, since, signal) {
  const q = new URLSearchParams({ since, event });
  return getJSON(`${krm}/delayreports/${encodeURIComponent(name)}?${q}`, signal);
}

function seriesOf(rep, key) {
  return [rep.status.series.map((p) => Date.parse(p.at) / 1000), rep.status.series.map((p) => p[key])];
}

function chart(target, title, rep, probe, width) {
  const tables = [
    [seriesOf(rep, 'p50Seconds')[0], seriesOf(rep, 'p50Seconds')[1], seriesOf(rep, 'p90Seconds')[1], seriesOf(rep, 'p99Seconds')[1]],
  ];
  const withProbe = probe && probe.status.series.length > 0;
  if (withProbe) tables.push(seriesOf(probe, 'p50Seconds'));
  const data = withProbe ? uPlot.join(tables) : tables[0];
  const box = el('div', { class: 'chart', dataset: { resource: rep.metadata.name, event: title.event } },
    el('h3', {}, `${rep.metadata.name} ${title.event}`));
  target.append(box);
  // The probe's own charts are in milliseconds; the resources' in seconds.
  const res = rep.metadata.name === 'probe' ? 'ms resolution' : '1 s resolution';
  const series = [
    {},
    { label: `p50 (${res})`, stroke: '#0a58ca', width: 2, value: (u, v) => fmt(v) },
    { label: `p90 (${res})`, stroke: '#9a6700', width: 1.5, value: (u, v) => fmt(v) },
    { label: `p99 (${res})`, stroke: '#cf222e', width: 1.5, value: (u, v) => fmt(v) },
  ];
  if (withProbe) {
    series.push({ label: 'probe p50 (ms resolution)', stroke: '#1a7f37', width: 1.5, dash: [6, 4], value: (u, v) => fmt(v) });
  }
  charts.push(new uPlot({
    width, height: 150, series,
    scales: { x: { time: true } },
    axes: [{}, { size: 70, values: (u, vals) => vals.map(fmt) }],
    legend: { live: true },
  }, data, box));
}

function statsRow(rep, event) {
  const st = (rep.status.stats || [])[0] || { count: 0, unmeasured: 0 };
  const n = st.count || 0;
  return el('tr', { dataset: { resource: rep.metadata.name, event } },
    el('td', {}, rep.metadata.name), el('td', {}, event),
    el('td', { class: 'count num' }, n), el('td', { class: 'unmeasured num' }, st.unmeasured || 0),
    el('td', { class: 'p50 num' }, n ? fmt(st.p50Seconds) : '—'),
    el('td', { class: 'p90 num' }, n ? fmt(st.p90Seconds) : '—'),
    el('td', { class: 'p99 num' }, n ? fmt(st.p99Seconds) : '—'),
    el('td', { class: 'max num' }, n ? fmt(st.maxSeconds) : '—'),
    el('td', {}, rep.metadata.name === 'probe' ? 'milliseconds (probe clock)' : '1 second (object timestamps)'),
  );
}

export async function start(params, signal) {
  const form = document.getElementById('delay-form');
  if (params.get('since')) form.since.value = params.get('since');
  form.onsubmit = (e) => {
    e.preventDefault();
    location.hash = `delay?since=${encodeURIComponent(form.since.value)}`;
    if (params.get('since') === form.since.value) window.dispatchEvent(new HashChangeEvent('hashchange'));
  };
  stop();
  const since = form.since.value;
  const out = document.getElementById('delay-charts');
  const probeBox = document.getElementById('delay-probe');
  const source = document.getElementById('delay-source');
  out.replaceChildren();
  probeBox.replaceChildren();
  source.textContent = 'Loading…';

  const list = await getJSON(`${krm}/resourcestatuses`, signal);
  const names = list.items.map((i) => i.metadata.name);
  let probe;
  try {
    probe = Object.fromEntries(await Promise.all(events.map(async (e) => [e, await report('probe', e, since, signal)])));
  } catch (err) {
    if (err instanceof APIError && err.status === 404) {
      source.textContent = '';
      out.replaceChildren(el('p', { class: 'unavailable', id: 'delay-unavailable' },
        `Stream delay is not available: ${err.message}.`));
      return;
    }
    throw err;
  }
  const reports = await Promise.all(names.flatMap((n) => events.map((e) => report(n, e, since, signal))));
  if (signal.aborted) return;

  const first = reports[0] || probe.ADDED;
  source.replaceChildren(
    'Source: ', el('b', { id: 'delay-source-name' }, first.status.source),
    first.status.source === 'influxdb' ? ' (the samples the agent wrote to InfluxDB)' : ' (the agent\'s in-memory window)',
    ` · step ${first.status.step} · ${first.status.resolution}`,
    first.status.warning ? el('span', { class: 'warn' }, ` · ${first.status.warning}`) : '',
  );

  const width = Math.max(360, Math.floor((out.clientWidth || 1200) / 2) - 48);
  const probeCharts = el('div', { class: 'charts' });
  probeBox.append(el('h2', {}, 'Canary probe (millisecond resolution)'), probeCharts);
  for (const e of events) {
    if (probe[e].status.series.length) chart(probeCharts, { event: e }, probe[e], null, width);
    else probeCharts.append(el('p', { class: 'note' }, `probe ${e}: no samples in range (is the probe on? --probe-interval)`));
  }

  const stats = el('tbody');
  for (const e of events) stats.append(statsRow(probe[e], e));
  const empty = [];
  const grid = el('div', { class: 'charts' });
  reports.forEach((rep, i) => {
    const e = events[i % events.length];
    stats.append(statsRow(rep, e));
    if (rep.status.series.length) chart(grid, { event: e }, rep, probe[e], width);
    else empty.push(`${rep.metadata.name} ${e}`);
  });
  out.append(
    el('h2', {}, 'Per resource and event type'),
    grid,
    el('table', { id: 'delay-stats' },
      el('thead', {}, el('tr', {}, ['Resource', 'Event', 'Samples', 'Unmeasured', 'p50', 'p90', 'p99', 'Max', 'Resolution']
        .map((h, i) => el('th', { class: i >= 2 && i <= 7 ? 'num' : null }, h)))),
      stats),
  );
  if (empty.length) out.append(el('p', { class: 'note', id: 'delay-empty' }, `No samples in range: ${empty.join(', ')}.`));
}

export function stop() {
  while (charts.length) charts.pop().destroy();
}
