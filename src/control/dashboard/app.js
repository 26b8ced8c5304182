/* global document, window, sessionStorage, fetch, URLSearchParams, URL, setTimeout, clearTimeout, history, location */
/**
 * tether dashboard (docs/DASHBOARD.md). Plain browser JavaScript, no framework, no build step.
 *
 * Everything it shows comes from the daemon's JSON API and is inserted with textContent / text nodes only
 * (never innerHTML): an onramp or site name, a flow tuple or a trail sentence can never become markup. The
 * Content-Security-Policy (src/control/dashboard.ts) forbids inline script and style as a second wall.
 *
 *   every 2 s:  GET /v1/onramps, /v1/stats (onramp table, chart), /v1/flows (flow table, with the filters)
 *   every 10 s: GET /v1/routes, /v1/overlaps, /v1/gateway/rules
 *   on demand:  GET /v1/flows/:id (detail + decision trail), POST /v1/explain,
 *               PATCH /v1/onramps/NAME { automatic_return_routing } (the ARR switch),
 *               POST /v1/captures { onramp } then its status and pcapng (the capture button: docs/CAPTURE.md)
 *
 * Every call carries the API token (Authorization: Bearer). The page gets it once per browser session and
 * keeps it in sessionStorage: pasted into the form, or from the address `tether dashboard` prints, which
 * carries it in the fragment (#token=…). Browsers never send a fragment to a server, so no proxy or access
 * log sees it, and the page removes it from the address bar and history at once. Without a token the page
 * sends nothing and asks for one.
 */

const POLL_MS = 2000;
const SLOW_EVERY = 5; // routes and overlaps: every 5th poll (10 s); they change only through the API
const HISTORY_MS = 5 * 60 * 1000;
const MIN_SPAN_MS = 60 * 1000; // the time axis grows with the history, from 1 minute up to HISTORY_MS
const FLOW_LIMIT = 500;
const SITE_COLOURS = 8; // .site-0 … .site-7 in style.css
const TOKEN_KEY = 'tether.apiToken';
const TOKEN_FRAGMENT = /^#token=([^&]+)$/;
const CHART_COLOURS = ['#2456c8', '#c2410c', '#15803d', '#7e22ce', '#b91c1c', '#0e7490', '#a16207', '#be185d'];
const INTERNET_COLOUR = '#6b7280';
const FLOWS_COLOUR = '#111827';

const $ = (id) => document.getElementById(id);

/** An element with text (as a text node), a class, a title and data-* attributes; children appended as nodes or text. */
function el(tag, opts = {}, ...children) {
  const e = document.createElement(tag);
  if (opts.cls) e.className = opts.cls;
  if (opts.text !== undefined && opts.text !== null) e.textContent = String(opts.text);
  if (opts.title) e.title = String(opts.title);
  if (opts.data) for (const [k, v] of Object.entries(opts.data)) e.dataset[k] = String(v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

const fmtInt = (n) => (typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : '–');

function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtAge(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmtTime(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
}

// ─── API ─────────────────────────────────────────────────────────────────────────────────────────────

function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives for this page only */ }
  memoryToken = t;
  showTokenState();
}
let memoryToken = getToken();

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The API's error shape { error, problems: [{ path, message }] } as one line. */
function describeError(status, data) {
  if (data && typeof data.error === 'string') {
    const problems = Array.isArray(data.problems) ? data.problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)) : [];
    return `${status} ${data.error}${problems.length ? ` (${problems.join('; ')})` : ''}`;
  }
  return `HTTP ${status}`;
}

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (memoryToken) headers.authorization = `Bearer ${memoryToken}`;
  if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
  const r = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (r.status === 401) {
    // A wrong or old token (the daemon made a new one): forget it and ask again.
    setToken('');
    $('token-state').textContent = 'token refused: paste the current one';
  }
  if (!r.ok) throw new ApiError(r.status, describeError(r.status, data));
  return data;
}

// ─── State ───────────────────────────────────────────────────────────────────────────────────────────

const state = {
  onramps: [], // /v1/onramps (configuration: name, type, site, automatic_return_routing)
  stats: null, // /v1/stats (live counters)
  samples: [], // [{ t, onramps: { name: packets }, internet, flows }]
  siteIndex: new Map(), // site name → colour index, stable for the page's life
  pendingArr: new Set(), // onramps whose ARR PATCH is in flight
  capturing: new Set(), // onramps with a capture this page started and waits for
  filters: { site: '', onramp: '', protocol: '', src: '', dst: '' },
  selectedFlow: null,
  polls: 0,
  errors: new Map(), // what failed in the last poll, by part
};

function siteClass(site) {
  const name = site || '';
  if (!state.siteIndex.has(name)) state.siteIndex.set(name, state.siteIndex.size % SITE_COLOURS);
  return `site-${state.siteIndex.get(name)}`;
}

function siteChip(site) {
  return el('span', { cls: `site-chip ${siteClass(site)}`, text: site || '(none)' });
}

function setStatus() {
  const s = $('status');
  if (state.errors.size > 0) {
    s.className = 'status error';
    s.textContent = [...state.errors.entries()].map(([k, v]) => `${k}: ${v}`).join(' · ');
  } else {
    s.className = 'status';
    s.textContent = `live · updated ${fmtTime(Date.now())}`;
  }
}

/** #token=… in the address (from `tether dashboard`): taken, then removed from the address bar and history. */
function tokenFromFragment() {
  const m = TOKEN_FRAGMENT.exec(location.hash);
  if (m === null) return;
  history.replaceState(null, '', location.pathname + location.search);
  try { setToken(decodeURIComponent(m[1])); } catch { /* malformed escape: ignore it */ }
}

function showTokenState() {
  const ts = $('token-state');
  ts.textContent = memoryToken ? 'token set' : 'token needed';
  ts.className = memoryToken ? 'set' : 'muted';
  for (const box of document.querySelectorAll('input[data-arr-switch]')) box.disabled = !memoryToken || state.pendingArr.has(box.dataset.onramp);
  for (const b of document.querySelectorAll('button[data-capture]')) b.disabled = !memoryToken || state.capturing.has(b.dataset.onramp);
  $('arr-hint').textContent = memoryToken
    ? 'ARR changes apply to new flows (established flows keep their decisions).'
    : 'The page needs the API token (top right: paste api.token_file, or open the address `tether dashboard` prints).';
}

// ─── Onramps ─────────────────────────────────────────────────────────────────────────────────────────

function statsOf(name) {
  return state.stats && Array.isArray(state.stats.onramps) ? state.stats.onramps.find((o) => o.name === name) : undefined;
}

function renderOnramps() {
  const tbody = $('onramps-table').tBodies[0];
  const names = state.onramps.map((o) => o.name);
  const same = tbody.rows.length === names.length && names.every((n, i) => tbody.rows[i].dataset.onramp === n);
  if (!same) {
    clear(tbody);
    for (const o of state.onramps) {
      const box = el('input', { data: { arrSwitch: '', onramp: o.name } });
      box.type = 'checkbox';
      box.setAttribute('role', 'switch');
      box.setAttribute('aria-label', `ARR on ${o.name}`);
      box.addEventListener('change', () => toggleArr(o.name, box));
      const sw = el('label', { cls: 'switch', title: 'Automatic Return Routing: replies go back to the onramp that started the flow' }, box, el('span', { cls: 'lbl' }));
      const row = el('tr', { data: { onramp: o.name } },
        el('td', { cls: 'mono', text: o.name }), el('td', { text: o.type }), el('td'), el('td'),
        el('td', { cls: 'num' }), el('td', { cls: 'num' }), el('td', { cls: 'num' }), el('td', { cls: 'num' }), el('td', { cls: 'num' }),
        el('td', {}, sw), el('td', { cls: 'mono' }), el('td', {}, captureButton(o.name)));
      tbody.append(row);
    }
    if (state.onramps.length === 0) tbody.append(el('tr', { cls: 'empty' }, el('td', { text: 'no onramps configured' })));
  }
  state.onramps.forEach((o, i) => {
    const row = tbody.rows[i];
    const st = statsOf(o.name);
    const c = row.cells;
    c[1].textContent = o.type;
    clear(c[2]);
    c[2].append(siteChip(o.site || st?.site || o.name));
    const up = st === undefined ? null : st.up;
    c[3].textContent = up === null ? '?' : up ? 'up' : 'down';
    c[3].className = up === null ? '' : up ? 'state-up' : 'state-down';
    c[4].textContent = fmtInt(st?.rxPackets);
    c[5].textContent = fmtInt(st?.txPackets);
    c[6].textContent = fmtBytes(st?.rxBytes);
    c[7].textContent = fmtBytes(st?.txBytes);
    c[8].textContent = fmtInt(st?.flowsActive);
    const box = row.querySelector('input[data-arr-switch]');
    if (!state.pendingArr.has(o.name)) box.checked = o.automatic_return_routing === true;
    box.disabled = !memoryToken || state.pendingArr.has(o.name);
    box.parentElement.querySelector('.lbl').textContent = box.checked ? 'on' : 'off';
    // Tunnel health from GET /v1/onramps (docs/HEALTH.md): state, loss over five minutes, probe round trip.
    const h = o.health;
    c[10].textContent = h ? [h.state, h.loss > 0 ? `loss ${(h.loss * 100).toFixed(1)}%` : '', h.rtt_ms !== null && h.state !== 'down' ? `${h.rtt_ms.toFixed(1)} ms` : ''].filter(Boolean).join(' · ') : '?';
    c[10].className = `mono ${h ? (h.state === 'healthy' ? 'state-up' : h.state === 'down' ? 'state-down' : 'state-degraded') : ''}`;
    c[10].title = h ? `since ${h.since}; route priority +${h.penalty}` : 'no health from the running edge';
  });
  $('onramps-note').textContent = `${state.onramps.length} configured`;
}

/** 45s, 12m, 3h 40m (as `tether onramps` writes them: src/control/ipsec-status.ts). */
function fmtDuration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '–';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  const m = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)}h${m > 0 ? ` ${m}m` : ''}`;
}

/**
 * The IPsec onramps' SAs from GET /v1/stats (onramps[].ipsec): one row per IKE SA, one per child SA under it.
 * Hidden without ipsec onramps. Rebuilt on every poll: a handful of rows, and SAs come and go with rekeys.
 */
function renderIpsec() {
  const ipsec = state.onramps.filter((o) => o.type === 'ipsec');
  $('ipsec').hidden = ipsec.length === 0;
  const tbody = $('ipsec-table').tBodies[0];
  clear(tbody);
  for (const o of ipsec) {
    const sas = statsOf(o.name)?.ipsec;
    if (!Array.isArray(sas) || sas.length === 0) {
      tbody.append(el('tr', { data: { ipsecOnramp: o.name } }, el('td', { cls: 'mono', text: o.name }), el('td', { text: 'IKE' }), el('td', { cls: 'state-down', text: Array.isArray(sas) ? 'no SA' : '?' })));
      continue;
    }
    for (const sa of sas) {
      const state = sa.state === 'established' ? 'state-up' : sa.state === 'deleting' || sa.state === 'idle' ? 'state-down' : 'state-degraded';
      tbody.append(el('tr', { data: { ipsecOnramp: o.name, sa: 'ike' } },
        el('td', { cls: 'mono', text: o.name }), el('td', { text: 'IKE' }), el('td', { cls: state, text: sa.state }), el('td', { text: sa.role }),
        el('td', { cls: 'mono', text: sa.algorithms }), el('td', { cls: 'mono', text: `${sa.spiI}_i ${sa.spiR}_r`, title: `peer ${sa.remote}${sa.natDetected ? ', behind a NAT' : ''}` }),
        el('td', { text: fmtDuration(sa.ageSeconds) }), el('td', { text: fmtDuration(sa.rekeyInSeconds) })));
      for (const c of sa.children) {
        const n = c.counters;
        tbody.append(el('tr', { cls: 'child', data: { ipsecOnramp: o.name, sa: 'child', spi: c.spiIn } },
          el('td'), el('td', { text: 'child', title: `${c.localTs.join(' ')} === ${c.remoteTs.join(' ')}` }), el('td'), el('td'),
          el('td', { cls: 'mono', text: c.algorithms }), el('td', { cls: 'mono', text: `${c.spiIn}_i ${c.spiOut}_o` }),
          el('td', { text: fmtDuration(c.ageSeconds) }), el('td', { text: fmtDuration(c.rekeyInSeconds) }),
          el('td', { cls: 'num', text: fmtInt(n?.packetsIn) }), el('td', { cls: 'num', text: fmtInt(n?.packetsOut) }),
          el('td', { cls: 'num', text: fmtBytes(n?.bytesIn) }), el('td', { cls: 'num', text: fmtBytes(n?.bytesOut) }),
          el('td', { cls: `num ${n && n.replayDrops > 0 ? 'state-degraded' : ''}`, text: fmtInt(n?.replayDrops) }),
          el('td', { cls: `num ${n && n.icvFailures > 0 ? 'state-degraded' : ''}`, text: fmtInt(n?.icvFailures) })));
      }
    }
  }
}

/** Seconds a dashboard capture runs (it stops earlier at the API's default limits: 10,000 packets, 16 MiB). */
const CAPTURE_SECONDS = 10;

function captureButton(name) {
  const b = el('button', { data: { capture: '', onramp: name }, text: `capture ${CAPTURE_SECONDS} s`, title: `a bounded pcapng of ${name}'s packets with each packet's decision (docs/CAPTURE.md)` });
  b.type = 'button';
  b.disabled = !memoryToken;
  b.addEventListener('click', () => captureOnramp(name, b));
  return b;
}

/** Starts a capture of the onramp, waits until it stops at its limit, then downloads the pcapng (docs/CAPTURE.md). */
async function captureOnramp(name, button) {
  state.capturing.add(name);
  button.disabled = true;
  button.textContent = 'capturing…';
  try {
    let c = await api('POST', '/v1/captures', { onramp: name, duration_s: CAPTURE_SECONDS });
    while (c.state === 'running') {
      await new Promise((r) => setTimeout(r, 500));
      c = await api('GET', `/v1/captures/${c.id}`);
    }
    const r = await fetch(c.download, { headers: { authorization: `Bearer ${memoryToken}` }, cache: 'no-store' });
    if (!r.ok) throw new ApiError(r.status, `HTTP ${r.status}`);
    const url = URL.createObjectURL(await r.blob());
    const a = el('a', {});
    a.href = url;
    a.download = `tether-${name}-${c.id}.pcapng`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    await api('DELETE', `/v1/captures/${c.id}`).catch(() => undefined);
    state.errors.delete('capture');
  } catch (e) {
    state.errors.set('capture', `${name}: ${e.message}`);
  } finally {
    state.capturing.delete(name);
    button.textContent = `capture ${CAPTURE_SECONDS} s`;
    button.disabled = !memoryToken;
    setStatus();
  }
}

/**
 * The kernel's drops at the devices each onramp's packets pass through (GET /v1/stats: onramps[].kernelDrops,
 * internet.kernelDrops; docs/OBSERVABILITY.md "Kernel drops"). Shown only when one is non-zero.
 */
function renderKernelDrops() {
  const rows = [];
  const add = (name, drops) => {
    for (const [what, n] of Object.entries(drops || {})) if (n > 0) rows.push([name, what, n]);
  };
  for (const o of (state.stats && state.stats.onramps) || []) add(o.name, o.kernelDrops);
  if (state.stats && state.stats.internet) add('internet', state.stats.internet.kernelDrops);
  $('kernel-drops').hidden = rows.length === 0;
  const tbody = $('kernel-drops-table').tBodies[0];
  clear(tbody);
  for (const [name, what, n] of rows) {
    tbody.append(el('tr', { data: { kernelDropOnramp: name } }, el('td', { cls: 'mono', text: name }), el('td', { cls: 'mono', text: what }),
      el('td', { cls: 'num state-degraded', text: fmtInt(n) })));
  }
}

async function toggleArr(name, box) {
  const want = box.checked;
  state.pendingArr.add(name);
  box.disabled = true;
  try {
    const updated = await api('PATCH', `/v1/onramps/${encodeURIComponent(name)}`, { automatic_return_routing: want });
    const o = state.onramps.find((x) => x.name === name);
    if (o && updated) o.automatic_return_routing = updated.automatic_return_routing;
    state.errors.delete('ARR');
  } catch (e) {
    box.checked = !want;
    state.errors.set('ARR', `${name}: ${e.message}`);
  } finally {
    state.pendingArr.delete(name);
    renderOnramps();
    setStatus();
    pollSoon();
  }
}

function fillSelect(select, values, keepAny) {
  const current = select.value;
  const have = [...select.options].map((o) => o.value);
  const want = keepAny ? ['', ...values] : values;
  if (have.length === want.length && have.every((v, i) => v === want[i])) return;
  clear(select);
  for (const v of want) {
    const opt = el('option', { text: v === '' ? 'any' : v });
    opt.value = v;
    select.append(opt);
  }
  if (want.includes(current)) select.value = current;
}

function refreshChoices() {
  const sites = [...new Set(state.onramps.map((o) => o.site || o.name))].sort();
  sites.forEach((s) => siteClass(s));
  fillSelect($('f-site'), sites, true);
  fillSelect($('f-onramp'), state.onramps.map((o) => o.name), true);
  fillSelect($('x-onramp'), state.onramps.map((o) => o.name), false);
}

// ─── Chart ───────────────────────────────────────────────────────────────────────────────────────────

function addSample(stats) {
  const t = typeof stats.time === 'number' ? stats.time : Date.now();
  const onramps = {};
  for (const o of stats.onramps || []) onramps[o.name] = (o.rxPackets || 0) + (o.txPackets || 0);
  const inet = stats.internet ? (stats.internet.rxPackets || 0) + (stats.internet.txPackets || 0) : null;
  const flows = stats.flows ? (stats.flows.ipv4 || 0) + (stats.flows.ipv6 || 0) : 0;
  const last = state.samples[state.samples.length - 1];
  if (last && t <= last.t) return;
  state.samples.push({ t, onramps, internet: inet, flows });
  while (state.samples.length > 2 && state.samples[0].t < t - HISTORY_MS - POLL_MS) state.samples.shift();
}

/** A round axis maximum ≥ v (1, 2, 5 × 10^n). */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function seriesList() {
  const names = state.onramps.map((o) => o.name);
  for (const s of state.samples) for (const n of Object.keys(s.onramps)) if (!names.includes(n)) names.push(n);
  const perSite = new Map();
  const series = names.map((name) => {
    const o = state.onramps.find((x) => x.name === name);
    const site = o ? o.site || o.name : name;
    const idx = Number(siteClass(site).slice('site-'.length));
    const nth = perSite.get(site) || 0;
    perSite.set(site, nth + 1);
    return { name, colour: CHART_COLOURS[idx], dash: nth === 0 ? [] : [2, 2 + nth], get: (s) => s.onramps[name] };
  });
  if (state.samples.some((s) => s.internet !== null)) series.push({ name: 'internet', colour: INTERNET_COLOUR, dash: [6, 3], get: (s) => s.internet });
  return series;
}

function drawChart() {
  const canvas = $('chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640;
  const h = canvas.clientHeight || 230;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 52, r: 46, t: 10, b: 22 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const samples = state.samples;
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const span = Math.min(HISTORY_MS, Math.max(MIN_SPAN_MS, samples.length ? now - samples[0].t : 0));
  const t0 = now - span;
  const x = (t) => pad.l + ((t - t0) / span) * pw;

  const series = seriesList();
  // Rates between consecutive samples (counter resets read as 0).
  const rates = series.map((s) => {
    const pts = [];
    for (let i = 1; i < samples.length; i++) {
      const a = s.get(samples[i - 1]);
      const b = s.get(samples[i]);
      if (typeof a !== 'number' || typeof b !== 'number') continue;
      const dt = (samples[i].t - samples[i - 1].t) / 1000;
      pts.push([samples[i].t, dt > 0 ? Math.max(0, b - a) / dt : 0]);
    }
    return pts;
  });
  const maxRate = niceMax(Math.max(0, ...rates.flat().map((p) => p[1])));
  const maxFlows = niceMax(Math.max(0, ...samples.map((s) => s.flows)));
  const yL = (v) => pad.t + ph - (v / maxRate) * ph;
  const yR = (v) => pad.t + ph - (v / maxFlows) * ph;

  // Grid and axes.
  g.font = '11px system-ui, sans-serif';
  g.lineWidth = 1;
  g.strokeStyle = '#e5e8ee';
  g.fillStyle = '#6a7383';
  g.textBaseline = 'middle';
  const TICKS = 4;
  for (let i = 0; i <= TICKS; i++) {
    const yy = pad.t + (ph * i) / TICKS;
    g.beginPath(); g.moveTo(pad.l, yy + 0.5); g.lineTo(pad.l + pw, yy + 0.5); g.stroke();
    g.textAlign = 'right';
    g.fillText(fmtRate(maxRate * (1 - i / TICKS)), pad.l - 6, yy);
    g.textAlign = 'left';
    g.fillText(fmtInt(Math.round(maxFlows * (1 - i / TICKS))), pad.l + pw + 6, yy);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  const step = span <= 60000 ? 10000 : span <= 150000 ? 30000 : 60000;
  for (let ago = 0; ago <= span; ago += step) {
    const xx = x(now - ago);
    g.beginPath(); g.moveTo(xx + 0.5, pad.t); g.lineTo(xx + 0.5, pad.t + ph); g.stroke();
    g.fillText(ago === 0 ? 'now' : `-${fmtAgo(ago)}`, xx, pad.t + ph + 5);
  }
  g.save();
  g.translate(11, pad.t + ph / 2); g.rotate(-Math.PI / 2); g.textBaseline = 'middle';
  g.fillText('packets/s', 0, 0);
  g.restore();
  g.save();
  g.translate(w - 9, pad.t + ph / 2); g.rotate(Math.PI / 2); g.textBaseline = 'middle';
  g.fillText('active flows', 0, 0);
  g.restore();

  g.save();
  g.beginPath(); g.rect(pad.l, pad.t, pw, ph); g.clip();
  g.lineWidth = 1.8;
  series.forEach((s, i) => {
    const pts = rates[i];
    if (pts.length === 0) return;
    g.strokeStyle = s.colour;
    g.setLineDash(s.dash);
    g.beginPath();
    pts.forEach(([t, v], j) => (j === 0 ? g.moveTo(x(t), yL(v)) : g.lineTo(x(t), yL(v))));
    g.stroke();
  });
  // Active flows: a dashed dark line on the right axis.
  g.strokeStyle = FLOWS_COLOUR;
  g.setLineDash([5, 3]);
  g.lineWidth = 1.4;
  g.beginPath();
  samples.forEach((s, j) => (j === 0 ? g.moveTo(x(s.t), yR(s.flows)) : g.lineTo(x(s.t), yR(s.flows))));
  g.stroke();
  g.restore();

  renderLegend(series, rates);
}

function fmtAgo(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  return s % 60 === 0 ? `${s / 60}m` : `${Math.floor(s / 60)}m${s % 60}s`;
}

function fmtRate(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v >= 10 || v === 0 ? String(Math.round(v)) : v.toFixed(1);
}

function renderLegend(series, rates) {
  const legend = $('legend');
  clear(legend);
  series.forEach((s, i) => {
    const key = el('span', { cls: s.dash.length ? 'key dashed' : 'key' });
    if (!s.dash.length) key.style.background = s.colour; // CSSOM, allowed by the CSP (no inline style attribute)
    else key.style.borderTopColor = s.colour;
    const last = rates[i].length ? rates[i][rates[i].length - 1][1] : null;
    legend.append(el('span', {}, key, `${s.name} ${last === null ? '' : `${fmtRate(last)}/s`}`));
  });
  const last = state.samples[state.samples.length - 1];
  legend.append(el('span', {}, el('span', { cls: 'key dashed' }), `active flows ${last ? fmtInt(last.flows) : ''}`));
}

// ─── Flows ───────────────────────────────────────────────────────────────────────────────────────────

/** The source address of "10.0.1.10:40000 -> 203.0.113.10:53 (zone 1)" (or "[2001:db8::1]:40000 -> …"). */
function sourceOf(tuple) {
  const left = String(tuple || '').split(' -> ')[0].trim();
  if (left.startsWith('[')) return left.slice(1, left.indexOf(']'));
  const colons = left.split(':').length - 1;
  return colons === 1 ? left.slice(0, left.indexOf(':')) : left;
}

/** Sort key for an address: numeric for IPv4 so 10.0.1.9 sorts before 10.0.1.10. */
function addrKey(a) {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  return m ? `4:${m.slice(1).map((x) => x.padStart(3, '0')).join('.')}` : `6:${a}`;
}

/** "a -> b" drawn as "a → b": narrower, same meaning. */
const arrows = (tuple) => String(tuple ?? '').replace(/ -> /g, ' → ');

function flowQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v) q.set(k, v);
  q.set('limit', String(FLOW_LIMIT));
  return `/v1/flows?${q}`;
}

function badges(f) {
  const out = [];
  out.push(f.arr
    ? el('span', { cls: 'badge arr', text: 'ARR', title: `replies go back to ${f.returnOnramp}` })
    : el('span', { cls: 'badge rt', text: 'RT', title: 'no ARR: replies follow the routing table' }));
  if (f.nat) out.push(el('span', { cls: 'badge nat', text: 'NAT', title: 'source NAT from the egress pool' }));
  if (f.clash) out.push(el('span', { cls: 'badge clash', text: 'clash', title: 'another flow held the reply tuple: the source port was rewritten' }));
  if (f.hairpin) out.push(el('span', { cls: 'badge hairpin', text: 'hairpin' }));
  return out;
}

function renderFlows(data) {
  const tbody = $('flows-table').tBodies[0];
  clear(tbody);
  const items = Array.isArray(data?.items) ? data.items.slice() : [];
  // Side by side: the same source address from several sites sorts together, each row tagged with its site.
  const sitesBySource = new Map();
  for (const f of items) {
    const src = sourceOf(f.original);
    if (!sitesBySource.has(src)) sitesBySource.set(src, new Set());
    sitesBySource.get(src).add(f.site);
  }
  items.sort((a, b) => {
    const sa = addrKey(sourceOf(a.original));
    const sb = addrKey(sourceOf(b.original));
    if (sa !== sb) return sa < sb ? -1 : 1;
    if (a.site !== b.site) return String(a.site) < String(b.site) ? -1 : 1;
    if (a.onramp !== b.onramp) return String(a.onramp) < String(b.onramp) ? -1 : 1;
    return String(a.id).localeCompare(String(b.id), 'en', { numeric: true });
  });
  let prevSrc = null;
  for (const f of items) {
    const src = sourceOf(f.original);
    const overlapSites = sitesBySource.get(src).size;
    const row = el('tr', { cls: siteClass(f.site), data: { flowId: f.id, site: f.site, onramp: f.onramp, src } },
      el('td', { cls: 'mono', text: arrows(f.original), title: f.original }),
      f.hostname ? el('td', { cls: 'mono host', text: f.hostname, title: `read from ${f.hostnameSource ?? 'the flow'}` }) : el('td', { cls: 'muted', text: '' }),
      el('td', { cls: 'mono', text: arrows(f.reply), title: f.reply }),
      el('td', {}, siteChip(f.site),
        overlapSites > 1 ? el('span', { cls: 'badge overlap', text: `×${overlapSites}`, title: `${src} is in use at ${overlapSites} sites at once (overlapping address spaces)` }) : null),
      el('td', { cls: 'mono', text: f.onramp }),
      f.arr ? el('td', { cls: 'mono', text: f.returnOnramp }) : el('td', { cls: 'muted', text: 'routing table', title: 'ARR off: each reply is routed on its destination' }),
      el('td', { cls: 'mono', text: f.nextHop }),
      el('td', {}, ...badges(f)),
      el('td', { text: f.state }),
      el('td', { cls: 'num', text: `${fmtInt(f.packets?.[0])} / ${fmtInt(f.packets?.[1])}` }),
      el('td', { cls: 'num', text: `${fmtBytes(f.bytes?.[0])} / ${fmtBytes(f.bytes?.[1])}` }),
      el('td', { cls: 'num', text: fmtAge(f.ageSeconds) }));
    if (prevSrc !== null && src !== prevSrc) row.classList.add('group-start');
    if (f.id === state.selectedFlow) row.classList.add('selected');
    row.addEventListener('click', () => selectFlow(f.id));
    tbody.append(row);
    prevSrc = src;
  }
  if (items.length === 0) tbody.append(el('tr', { cls: 'empty' }, el('td', { text: 'no flows match' })));
  const total = typeof data?.total === 'number' ? data.total : items.length;
  $('flows-count').textContent = total > items.length ? `${items.length} of ${fmtInt(total)} shown` : `${fmtInt(total)} active`;
}

async function selectFlow(id) {
  state.selectedFlow = id;
  for (const r of $('flows-table').tBodies[0].rows) r.classList.toggle('selected', r.dataset.flowId === id);
  await refreshDetail();
}

async function refreshDetail() {
  const id = state.selectedFlow;
  const panel = $('flow-detail');
  if (id === null) { panel.hidden = true; return; }
  panel.hidden = false;
  $('detail-id').textContent = id;
  const dl = $('detail-fields');
  const trail = $('detail-trail');
  let f;
  try {
    f = await api('GET', `/v1/flows/${encodeURIComponent(id)}`);
  } catch (e) {
    if (state.selectedFlow !== id) return;
    clear(dl); clear(trail);
    dl.append(el('dt', { text: 'state' }), el('dd', { cls: 'error-text', text: e.status === 404 ? 'this flow has ended' : e.message }));
    return;
  }
  if (state.selectedFlow !== id) return;
  clear(dl);
  const field = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v }));
  field('protocol', f.protocolName ?? f.protocol);
  field('original', arrows(f.original));
  field('reply', arrows(f.reply));
  field('site', f.site);
  field('onramp', f.onramp);
  field('return onramp', f.returnOnramp);
  field('next hop', f.nextHop);
  field('replies by', f.arr ? `ARR → ${f.returnOnramp}` : 'routing table (ARR off)');
  field('NAT', f.nat ? (f.clash ? 'yes, clash rewrite' : 'yes') : f.clash ? 'clash rewrite' : 'no');
  if (f.hairpin) field('hairpin', 'yes');
  field('state', f.state);
  field('firewall rule', f.firewallRuleId ? String(f.firewallRuleId) : 'default action');
  if (f.hostname) field('host', `${f.hostname} (${f.hostnameSource ?? '?'})`);
  field('packets →/←', `${fmtInt(f.packets?.[0])} / ${fmtInt(f.packets?.[1])}`);
  field('bytes →/←', `${fmtInt(f.bytes?.[0])} / ${fmtInt(f.bytes?.[1])}`);
  field('age', fmtAge(f.ageSeconds));
  clear(trail);
  for (const line of f.trail || []) trail.append(el('li', { text: line }));
}

// ─── Routes, overlaps ────────────────────────────────────────────────────────────────────────────────

function nextHopText(nh) {
  if (typeof nh === 'string') return nh;
  if (nh && typeof nh === 'object' && 'onramp' in nh) return `onramp ${nh.onramp}`;
  return JSON.stringify(nh);
}

function renderRoutes(routes) {
  const tbody = $('routes-table').tBodies[0];
  clear(tbody);
  for (const r of routes || []) {
    tbody.append(el('tr', {},
      el('td', { cls: 'num', text: r.id }),
      el('td', { cls: 'mono', text: r.prefix }),
      el('td', { cls: 'mono', text: nextHopText(r.next_hop) }),
      el('td', { cls: 'num', text: r.priority ?? '' }),
      el('td', { cls: 'num', text: r.weight ?? '' }),
      el('td', {}, r.site ? siteChip(r.site) : el('span', { cls: 'muted', text: 'all sites' }))));
  }
  if (!routes || routes.length === 0) tbody.append(el('tr', { cls: 'empty' }, el('td', { text: 'no routes' })));
}

const listText = (v) => (v === undefined || v === null ? '' : Array.isArray(v) ? v.join(', ') : String(v));

function renderGateway(rules) {
  const tbody = $('gateway-table').tBodies[0];
  clear(tbody);
  for (const r of rules || []) {
    tbody.append(el('tr', { data: { ruleId: String(r.id) } },
      el('td', { cls: 'num', text: r.id }),
      el('td', { text: r.name ?? '' }),
      el('td', {}, el('span', { cls: `badge action-${r.action}`, text: r.action })),
      el('td', {}, ...(Array.isArray(r.sites) && r.sites.length > 0 ? r.sites.map(siteChip) : [el('span', { cls: 'muted', text: 'all sites' })])),
      el('td', { cls: 'mono', text: listText(r.hostnames) }),
      el('td', { text: r.hostnames ? listText(r.sources ?? ['sni', 'http_host', 'dns']) : '' }),
      el('td', { text: listText(r.protocols) }),
      el('td', { cls: 'mono', text: listText(r.destination_ports) }),
      el('td', { text: listText(r.dlp) })));
  }
  if (!rules || rules.length === 0) tbody.append(el('tr', { cls: 'empty' }, el('td', { text: 'no gateway rules' })));
}

function renderOverlaps(data) {
  const tbody = $('overlaps-table').tBodies[0];
  clear(tbody);
  const items = Array.isArray(data?.items) ? data.items : [];
  for (const o of items) {
    const ramps = el('td');
    for (const r of o.onramps || []) {
      ramps.append(siteChip(r.site), ' ', el('span', { cls: 'mono', text: r.name }), ' ',
        el('span', { cls: r.arr ? 'badge arr' : 'badge rt', text: r.arr ? 'ARR' : 'RT' }), '  ');
    }
    tbody.append(el('tr', {},
      el('td', { cls: 'mono', text: o.prefix }),
      ramps,
      el('td', { cls: o.coveredByArr ? 'state-up' : 'state-down', text: o.coveredByArr ? 'yes' : 'no: replies are ambiguous' })));
  }
  if (items.length === 0) tbody.append(el('tr', { cls: 'empty' }, el('td', { text: 'no overlapping source prefixes' })));
}

// ─── Explain ─────────────────────────────────────────────────────────────────────────────────────────

async function explain(ev) {
  ev.preventDefault();
  const protocol = $('x-protocol').value;
  const body = { onramp: $('x-onramp').value, protocol, src: $('x-src').value.trim(), dst: $('x-dst').value.trim() };
  if (protocol === 'tcp' || protocol === 'udp') {
    const sp = $('x-sport').value;
    const dp = $('x-dport').value;
    if (sp !== '') body.src_port = Number(sp);
    if (dp !== '') body.dst_port = Number(dp);
  }
  const out = $('explain-result');
  const verdict = $('x-verdict');
  const summary = $('x-summary');
  const trail = $('x-trail');
  out.hidden = false;
  clear(trail);
  try {
    const r = await api('POST', '/v1/explain', body);
    verdict.textContent = r.verdict;
    verdict.className = `badge ${r.verdict === 'forward' ? 'forward' : 'drop'}`;
    const parts = [];
    if (r.verdict === 'drop' && r.dropReason) parts.push(`drop reason: ${r.dropReason}`);
    if (r.nextHop !== null && r.nextHop !== undefined) parts.push(`next hop: ${r.nextHop}`);
    if (r.replies && r.replies.by) parts.push(`replies by: ${r.replies.by}`);
    if (r.flow) parts.push('matches an existing flow');
    summary.textContent = parts.join(' · ');
    for (const line of r.trail || []) trail.append(el('li', { text: line }));
    $('x-raw').textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    verdict.textContent = 'error';
    verdict.className = 'badge drop';
    summary.textContent = e.message;
    $('x-raw').textContent = '';
  }
}

// ─── Polling ─────────────────────────────────────────────────────────────────────────────────────────

let timer = null;
let inFlight = false;
let again = false;
let slowDue = true;

async function poll() {
  if (!memoryToken) {
    // Every call needs the token: ask, and send nothing until there is one.
    clearTimeout(timer);
    state.errors.clear();
    const s = $('status');
    s.className = 'status error';
    s.textContent = 'paste the API token (top right) to see the edge';
    return;
  }
  if (inFlight) { again = true; return; }
  inFlight = true;
  clearTimeout(timer);
  const slow = slowDue || state.polls % SLOW_EVERY === 0;
  slowDue = false;
  state.polls++;
  const part = async (name, fn) => {
    try { await fn(); state.errors.delete(name); } catch (e) { state.errors.set(name, e.message); }
  };
  try {
    await Promise.all([
      part('onramps', async () => {
        const [onramps, stats] = await Promise.all([api('GET', '/v1/onramps'), api('GET', '/v1/stats').catch((e) => { state.errors.set('stats', e.message); return null; })]);
        state.onramps = Array.isArray(onramps) ? onramps : [];
        if (stats) { state.stats = stats; state.errors.delete('stats'); addSample(stats); }
        refreshChoices();
        renderOnramps();
        renderIpsec();
        renderKernelDrops();
        drawChart();
      }),
      part('flows', async () => renderFlows(await api('GET', flowQuery()))),
      slow ? part('routes', async () => renderRoutes(await api('GET', '/v1/routes'))) : null,
      slow ? part('overlaps', async () => renderOverlaps(await api('GET', '/v1/overlaps'))) : null,
      slow ? part('gateway', async () => renderGateway(await api('GET', '/v1/gateway/rules'))) : null,
      state.selectedFlow !== null ? refreshDetail() : null,
    ]);
    setStatus();
  } finally {
    document.body.dataset.polls = String(state.polls); // lets tests wait for a fresh poll
    inFlight = false;
    if (again) { again = false; void poll(); } else timer = setTimeout(poll, POLL_MS);
  }
}

/** Polls at once (after a change or a new filter), routes and overlaps included. */
function pollSoon() {
  slowDue = true;
  void poll();
}

function init() {
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    $('token').value = '';
    setToken(t);
    renderOnramps();
    pollSoon();
  });
  $('token-forget').addEventListener('click', () => { setToken(''); renderOnramps(); void poll(); });
  $('flow-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.filters = {
      site: $('f-site').value, onramp: $('f-onramp').value, protocol: $('f-protocol').value,
      src: $('f-src').value.trim(), dst: $('f-dst').value.trim(),
    };
    pollSoon();
  });
  $('flow-filters').addEventListener('reset', () => {
    state.filters = { site: '', onramp: '', protocol: '', src: '', dst: '' };
    setTimeout(pollSoon, 0);
  });
  for (const id of ['f-site', 'f-onramp', 'f-protocol']) $(id).addEventListener('change', () => $('flow-filters').requestSubmit());
  $('detail-close').addEventListener('click', () => {
    state.selectedFlow = null;
    $('flow-detail').hidden = true;
    for (const r of $('flows-table').tBodies[0].rows) r.classList.remove('selected');
  });
  $('explain-form').addEventListener('submit', explain);
  window.addEventListener('resize', drawChart);
  window.addEventListener('hashchange', () => { if (TOKEN_FRAGMENT.test(location.hash)) { tokenFromFragment(); pollSoon(); } });
  tokenFromFragment();
  showTokenState();
  void poll();
}

init();
