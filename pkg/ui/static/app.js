// The web view's router: one page at a time, chosen by the URL's fragment
// (#overview, #delay, #drift, #object?resource=…&namespace=…&name=…).
import { getJSON, krm, showError } from './api.js';
import * as overview from './overview.js';
import * as delay from './delay.js';
import * as drift from './drift.js';
import * as object from './object.js';

const pages = { overview, delay, drift, object };
let current = null;
let controller = null;

function route() {
  const [name, query] = (location.hash.slice(1) || 'overview').split('?');
  const page = pages[name] ? name : 'overview';
  if (controller) controller.abort();
  controller = new AbortController();
  showError('');
  for (const p of Object.keys(pages)) {
    document.getElementById(`page-${p}`).hidden = p !== page;
  }
  for (const a of document.querySelectorAll('header nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
  if (current && current !== pages[page] && current.stop) current.stop();
  current = pages[page];
  const signal = controller.signal;
  current.start(new URLSearchParams(query || ''), signal).catch((err) => {
    if (!signal.aborted) showError(err.message);
  });
}

async function agentLine() {
  try {
    const a = await getJSON(`${krm}/agentstatuses/agent`);
    const st = a.status || {};
    const store = st.store ? `${st.store.kind}${st.store.healthy ? '' : ' (degraded)'}` : '';
    document.getElementById('agent').textContent =
      `cluster ${st.cluster || '?'} · store ${store} · agent ${st.agentVersion || '?'}`;
  } catch (err) {
    document.getElementById('agent').textContent = `agent status: ${err.message}`;
  }
}

window.addEventListener('hashchange', route);
agentLine();
route();
