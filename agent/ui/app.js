// keplor-agent console: Overview (this agent's /metrics, live), Explore (totals, a time
// series, the top values of every dim, daily rollups) and Events (newest first, cursor paging,
// an event's detail). Everything comes from this agent's own API; with "Whole fleet" every
// query is asked with fleet=true and the console says when an answer is partial.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const NS = 'http://www.w3.org/2000/svg';
  const VIEWS = ['overview', 'explore', 'events'];
  const DAY_NS = 86400e9;
  const STEPS = [
    ['1s', 1e9], ['5s', 5e9], ['15s', 15e9], ['30s', 30e9], ['1m', 60e9], ['5m', 300e9], ['15m', 900e9], ['1h', 3600e9], ['6h', 21600e9], ['1d', DAY_NS],
    ['7d', 7 * DAY_NS],
  ];
  const SINCE_NS = { '15m': 900e9, '1h': 3600e9, '6h': 21600e9, '24h': DAY_NS, '7d': 7 * DAY_NS, '30d': 30 * DAY_NS };
  const MAX_BUCKETS = 120;
  const TOP_LIMIT = 10;
  const OVERVIEW_EVERY_MS = 2000;

  const state = {
    schema: null,
    fleet: false,
    view: 'overview',
    filter: emptyFilter(),
    order: 'count',
    measure: 'events',
    cursors: [null],
    page: 0,
    completeness: [],
    samples: [],
    timer: null,
    generation: 0,
  };

  function emptyFilter() {
    return { range: '24h', from: '', to: '', smin: '', smax: '', dims: {} };
  }

  // ---- formatting and DOM helpers -------------------------------------------------------

  const nf = new Intl.NumberFormat('en-US');
  const nf1 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const fmt = (n) => (n === null || n === undefined || Number.isNaN(n) ? '–' : nf.format(n));

  function bytes(n) {
    if (n === undefined || n === null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${nf1.format(n)} ${units[i]}`;
  }

  function utc(ns) {
    if (ns === null || ns === undefined) return '–';
    return new Date(ns / 1e6).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  /** A time to the millisecond, for events. */
  function utcMs(ns) {
    return new Date(ns / 1e6).toISOString().replace('T', ' ');
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function svg(tag, attrs = {}) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function showError(e) {
    const box = $('#error');
    if (!e) { box.hidden = true; box.textContent = ''; return; }
    box.textContent = `The agent answered with an error: ${e.message}`;
    box.hidden = false;
  }

  // ---- the API: at most two requests at once, 429s retried after Retry-After ---------------

  let inFlight = 0;
  const waiting = [];

  async function slot() {
    while (inFlight >= 2) await new Promise((r) => waiting.push(r));
    inFlight++;
  }

  function release() {
    inFlight--;
    const next = waiting.shift();
    if (next) next();
  }

  async function api(path, params = {}, { fleet = true } = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== '') q.append(k, String(v));
    }
    if (fleet && state.fleet) q.set('fleet', 'true');
    const qs = q.toString();
    const url = qs ? `${path}?${qs}` : path;
    for (let attempt = 0; ; attempt++) {
      await slot();
      let r;
      try {
        r = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      } finally {
        release();
      }
      if (r.status === 401 || (r.redirected && new URL(r.url).pathname === '/ui/login')) {
        location.assign('/ui/login');
        throw new Error('signed out');
      }
      if (r.status === 429 && attempt < 5) {
        await sleep(1000 * (Number(r.headers.get('Retry-After')) || 1));
        continue;
      }
      const text = await r.text();
      let body = text;
      try { body = JSON.parse(text); } catch (_) { /* /metrics is text */ }
      if (!r.ok) {
        const err = new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
        err.status = r.status;
        err.body = body;
        if (body && typeof body === 'object') noteCompleteness(body);
        throw err;
      }
      if (body && typeof body === 'object') noteCompleteness(body);
      return body;
    }
  }

  // ---- fleet completeness -----------------------------------------------------------------

  function noteCompleteness(body) {
    if (body.endpoints !== undefined) state.completeness.push(body);
  }

  function showCompleteness() {
    const box = $('#fleet-status');
    if (!state.fleet || state.view === 'overview') { box.hidden = true; return; }
    const seen = state.completeness;
    state.completeness = [];
    if (!seen.length) return;
    const partial = seen.filter((c) => c.partial);
    const endpoints = Math.max(...seen.map((c) => c.endpoints));
    box.classList.toggle('ok', !partial.length);
    if (!partial.length) {
      box.textContent = `Whole fleet: all ${endpoints} agents answered.`;
    } else {
      const missing = new Map();
      for (const c of partial) for (const m of c.missing || []) missing.set(m.endpoint, m);
      const answered = Math.min(...partial.map((c) => (c.answered || []).length));
      const who = [...missing.values()].map((m) => `${m.endpoint} (${m.kind}: ${m.error})`).join('; ');
      box.textContent = `Partial answer: ${answered} of ${endpoints} agents answered. Missing: ${who}`;
    }
    box.hidden = false;
  }

  // ---- the filter, in the URL's fragment --------------------------------------------------

  function readHash() {
    const [view, query] = location.hash.replace(/^#\/?/, '').split('?');
    const p = new URLSearchParams(query || '');
    const f = emptyFilter();
    f.range = p.get('range') || f.range;
    f.from = p.get('from') || '';
    f.to = p.get('to') || '';
    f.smin = p.get('status_min') || '';
    f.smax = p.get('status_max') || '';
    for (const [k, v] of p) if (k.startsWith('dim.')) f.dims[k.slice(4)] = v;
    state.view = VIEWS.includes(view) ? view : 'overview';
    state.filter = f;
  }

  function writeHash(view, f) {
    const p = new URLSearchParams();
    if (f.range !== '24h') p.set('range', f.range);
    if (f.range === 'custom') {
      if (f.from) p.set('from', f.from);
      if (f.to) p.set('to', f.to);
    }
    if (f.smin !== '') p.set('status_min', f.smin);
    if (f.smax !== '') p.set('status_max', f.smax);
    for (const [d, v] of Object.entries(f.dims)) p.set(`dim.${d}`, v);
    const qs = p.toString();
    const hash = `#/${view}${qs ? `?${qs}` : ''}`;
    if (location.hash !== hash) location.hash = hash;
    else route();
  }

  const withSeconds = (t) => (t.length === 16 ? `${t}:00` : t);

  function filterParams(f = state.filter) {
    const p = {};
    if (f.range === 'custom') {
      if (f.from) p.from = `${withSeconds(f.from)}Z`;
      if (f.to) p.to = `${withSeconds(f.to)}Z`;
    } else if (f.range !== 'all') {
      p.since = f.range;
    }
    if (f.smin !== '') p.status_min = f.smin;
    if (f.smax !== '') p.status_max = f.smax;
    for (const [d, v] of Object.entries(f.dims)) p[`dim.${d}`] = v;
    return p;
  }

  /** The filter's time span in ns, `[from, to)`; open ends from the data's own span. */
  function span(f, totals) {
    const now = Date.now() * 1e6;
    if (f.range === 'custom') {
      const from = f.from ? Date.parse(`${withSeconds(f.from)}Z`) * 1e6 : totals.min_ts_ns;
      const to = f.to ? Date.parse(`${withSeconds(f.to)}Z`) * 1e6 : (totals.max_ts_ns ?? now) + 1;
      return [from, to];
    }
    if (f.range === 'all') return [totals.min_ts_ns, (totals.max_ts_ns ?? now) + 1];
    return [now - SINCE_NS[f.range], now];
  }

  function renderFilterBar() {
    const f = state.filter;
    $('#f-range').value = f.range;
    for (const c of document.querySelectorAll('.field.custom')) c.hidden = f.range !== 'custom';
    $('#f-from').value = f.from;
    $('#f-to').value = f.to;
    $('#f-smin').value = f.smin;
    $('#f-smax').value = f.smax;
    const chips = $('#chips');
    chips.replaceChildren();
    const add = (label, drop) => chips.append(el('li', {}, el('span', { text: label }),
      el('button', { type: 'button', 'aria-label': `Remove filter ${label}`, onclick: drop, text: '×' })));
    for (const [d, v] of Object.entries(f.dims)) {
      add(`${d} = ${v}`, () => { delete f.dims[d]; writeHash(state.view, f); });
    }
    if (f.smin !== '' || f.smax !== '') {
      add(`status ${f.smin || 0} – ${f.smax ? f.smax - 1 : 'any'}`, () => { f.smin = ''; f.smax = ''; writeHash(state.view, f); });
    }
    if (!chips.children.length) chips.append(el('li', { class: 'none', text: 'No filter on dims or status.' }));
  }

  function readFilterBar(e) {
    e.preventDefault();
    const f = state.filter;
    f.range = $('#f-range').value;
    f.from = $('#f-from').value;
    f.to = $('#f-to').value;
    f.smin = $('#f-smin').value.trim();
    f.smax = $('#f-smax').value.trim();
    const value = $('#f-value').value;
    if (value !== '') {
      f.dims[$('#f-dim').value] = value;
      $('#f-value').value = '';
    }
    state.cursors = [null];
    state.page = 0;
    writeHash(state.view, f);
  }

  function addDimFilter(dim, value) {
    state.filter.dims[dim] = value;
    state.cursors = [null];
    state.page = 0;
    writeHash(state.view, state.filter);
  }

  // ---- charts (SVG, sized by their viewBox so nothing reflows) ---------------------------

  /**
   * Bars of `series` (each `{ points: [[x, y]], cls }`, x a bucket start in ns) in `node`;
   * `width` is one bucket, the y axis is shared.
   */
  function barChart(node, series, { from, to, width, label, format = fmt }) {
    node.replaceChildren();
    const [W, H] = node.getAttribute('viewBox').split(' ').slice(2).map(Number);
    const pad = { l: 64, r: 8, t: 10, b: 24 };
    const max = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1])));
    node.setAttribute('aria-label', `${label}: ${series[0].points.length} buckets, largest ${format(max)}`);
    if (max <= 0 || !(to > from)) {
      node.append(Object.assign(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }), { textContent: 'No events in this range' }));
      return;
    }
    const x = (t) => pad.l + ((t - from) / (to - from)) * (W - pad.l - pad.r);
    const y = (v) => H - pad.b - (v / max) * (H - pad.t - pad.b);
    node.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b, class: 'axis' }));
    for (const frac of [0.5, 1]) {
      const t = svg('text', { x: pad.l - 6, y: y(max * frac) + 4, 'text-anchor': 'end' });
      t.textContent = format(max * frac);
      node.append(t, svg('line', { x1: pad.l, x2: W - pad.r, y1: y(max * frac), y2: y(max * frac), class: 'axis', 'stroke-dasharray': '2 4' }));
    }
    // Within a day the date says nothing; within 10 minutes the seconds do.
    const cut = to - from <= 600e9 ? [11, 19] : to - from < DAY_NS ? [11, 16] : [5, 16];
    for (const frac of [0, 0.5, 1]) {
      const at = from + (to - from) * frac;
      const t = svg('text', { x: x(at), y: H - 6, 'text-anchor': frac === 0 ? 'start' : frac === 1 ? 'end' : 'middle' });
      t.textContent = utc(at).slice(...cut);
      node.append(t);
    }
    const bw = Math.max(1, x(from + width) - x(from) - 1);
    series.forEach((s, i) => {
      const w = series.length > 1 ? Math.max(1, bw / series.length) : bw;
      for (const [t, v] of s.points) {
        if (v <= 0) continue;
        const r = svg('rect', { x: x(t) + i * w, y: y(v), width: w, height: H - pad.b - y(v), class: `bar ${s.cls || ''}`, 'data-v': v });
        const tip = svg('title');
        tip.textContent = `${utc(t)}: ${format(v)}`;
        r.append(tip);
        node.append(r);
      }
    });
  }

  function sparkline(node, values) {
    node.replaceChildren();
    if (values.length < 2) return;
    const max = Math.max(1, ...values);
    const pts = values.map((v, i) => `${(i / (values.length - 1)) * 200},${38 - (v / max) * 36}`).join(' ');
    node.append(svg('polyline', { points: pts }));
  }

  // ---- Overview ---------------------------------------------------------------------------

  function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }

  const sum = (ms, name) => ms.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0);
  const one = (ms, name) => ms.find((m) => m.name === name)?.value;

  async function refreshOverview() {
    const text = await api('/metrics', {}, { fleet: false });
    const ms = parseMetrics(text);
    const now = performance.now();
    const appended = sum(ms, 'keplor_events_appended_total');
    const last = state.samples[state.samples.length - 1];
    state.samples.push({ at: now, appended });
    if (state.samples.length > 61) state.samples.shift();
    const rates = [];
    for (let i = 1; i < state.samples.length; i++) {
      const a = state.samples[i - 1];
      const b = state.samples[i];
      rates.push(Math.max(0, (b.appended - a.appended) / ((b.at - a.at) / 1000)));
    }
    $('#ov-rate').textContent = last ? fmt(Math.round(rates[rates.length - 1])) : '…';
    sparkline($('#ov-spark'), rates);
    const set = (id, v, raw) => { const n = $(id); n.textContent = v; n.dataset.value = raw ?? ''; };
    set('#ov-events', fmt(one(ms, 'keplor_engine_events')), one(ms, 'keplor_engine_events'));
    set('#ov-segments', fmt(one(ms, 'keplor_engine_segments')), one(ms, 'keplor_engine_segments'));
    set('#ov-disk', bytes(one(ms, 'keplor_engine_bytes')), one(ms, 'keplor_engine_bytes'));
    const free = one(ms, 'keplor_data_volume_free_bytes');
    set('#ov-free', bytes(free), free);
    const size = one(ms, 'keplor_data_volume_size_bytes');
    $('#ov-volume').textContent = size ? `of ${bytes(size)} on the data volume` : 'on the data volume';
    const rejected = sum(ms, 'keplor_messages_rejected_total');
    set('#ov-rejected', fmt(rejected), rejected);
    const dlq = sum(ms, 'keplor_dlq_produced_total');
    $('#ov-dlq').textContent = `messages, ${fmt(dlq)} to the DLQ`;
    renderPartitions(ms);
    renderRejects(ms, dlq);
    $('#ov-updated').textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  }

  function renderPartitions(ms) {
    const parts = new Map();
    const fields = {
      keplor_partition_consumer_lag: 'lag', keplor_partition_committed_offset: 'committed',
      keplor_partition_durable_offset: 'durable', keplor_partition_paused: 'paused',
      keplor_partition_stuck: 'stuck',
    };
    for (const m of ms) {
      const f = fields[m.name];
      if (!f) continue;
      const key = `${m.labels.topic}\u0000${m.labels.partition}`;
      if (!parts.has(key)) parts.set(key, { topic: m.labels.topic, partition: Number(m.labels.partition) });
      parts.get(key)[f] = m.value;
    }
    const rows = [...parts.values()].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
    const body = $('#ov-partitions tbody');
    body.replaceChildren(...rows.map((p) => el('tr', {},
      el('td', { text: p.topic }), el('td', { text: p.partition }),
      el('td', { class: 'r', text: fmt(p.lag) }), el('td', { class: 'r', text: fmt(p.committed) }),
      el('td', { class: 'r', text: fmt(p.durable) }),
      el('td', { text: p.stuck ? 'stuck' : p.paused ? 'paused' : 'consuming' }))));
    if (!rows.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'No partition assigned yet.' })));
  }

  function renderRejects(ms, dlq) {
    const rows = ms.filter((m) => m.name === 'keplor_messages_rejected_total').sort((a, b) => b.value - a.value);
    const body = $('#ov-rejects tbody');
    body.replaceChildren(...rows.map((m) => el('tr', {}, el('td', { text: m.labels.reason || '–' }), el('td', { class: 'r', text: fmt(m.value) }))));
    if (!rows.length) body.append(el('tr', {}, el('td', { colspan: 2, class: 'muted', text: 'Nothing rejected.' })));
    $('#ov-dlq-note').textContent = `${fmt(dlq)} rejected messages were produced to the dead-letter topic (errors.policy = "dlq").`;
  }

  // ---- Explore ----------------------------------------------------------------------------

  function measures() {
    const s = state.schema;
    return [
      ['events', 'Events'], ['metric', 'Metric'], ['latency', 'Average latency (ms)'],
      ...s.counters.map((c) => [`counter:${c}`, c]),
    ];
  }

  function measureOf(a, m = state.measure) {
    if (m === 'events') return a.event_count;
    if (m === 'metric') return a.metric;
    if (m === 'latency') return a.event_count ? a.latency_ms_sum / a.event_count : 0;
    return a.counters[m.slice(8)] ?? 0;
  }

  function stat(label, value, raw, unit, key) {
    return el('div', { class: 'card stat', 'data-key': key },
      el('h2', { text: label }),
      el('p', { class: 'num', text: value, 'data-value': raw }),
      el('p', { class: 'unit', text: unit || '' }));
  }

  function renderTotals(t, errors) {
    const s = state.schema;
    const cards = [
      stat('Events', fmt(t.event_count), t.event_count, 'matching the filter', 'events'),
      stat('Metric', fmt(t.metric), t.metric, 'sum', 'metric'),
      ...s.counters.map((c) => stat(c, fmt(t.counters[c]), t.counters[c], 'sum', `counter:${c}`)),
      stat('Latency', t.event_count ? nf1.format(t.latency_ms_sum / t.event_count) : '–', t.latency_ms_sum, 'ms on average', 'latency'),
    ];
    if (errors) {
      const rate = t.event_count ? (100 * errors.event_count) / t.event_count : 0;
      cards.push(stat('Errors', fmt(errors.event_count), errors.event_count, `status ≥ 400, ${nf1.format(rate)}%`, 'errors'));
    }
    $('#totals').replaceChildren(...cards);
  }

  function pickStep(from, to) {
    const wanted = (to - from) / MAX_BUCKETS;
    return STEPS.find(([, ns]) => ns >= wanted) || STEPS[STEPS.length - 1];
  }

  async function renderSeries(gen, t, errorsToo) {
    const [from, to] = span(state.filter, t);
    const chart = $('#series-chart');
    if (from === null || from === undefined || !t.event_count) {
      barChart(chart, [{ points: [] }], { from: 0, to: 0, width: 1, label: 'Over time' });
      $('#series-legend').textContent = '';
      return;
    }
    const [every, width] = pickStep(from, to);
    const params = { ...filterParams(), every };
    const [all, errs] = await Promise.all([
      api('/v1/series', params),
      errorsToo && state.measure === 'events' ? api('/v1/series', { ...params, status_min: 400, status_max: '' }) : null,
    ]);
    if (gen !== state.generation) return;
    const start = Math.floor(from / width) * width;
    const points = (s) => s.buckets.map((b) => [b.start_ns, measureOf(b)]);
    const series = [{ points: points(all) }];
    if (errs) series.push({ points: points(errs), cls: 'err' });
    const label = measures().find(([k]) => k === state.measure)[1];
    barChart(chart, series, { from: start, to, width, label: `${label} per ${every}` });
    chart.dataset.buckets = all.buckets.length;
    $('#series-legend').replaceChildren(el('span', { class: 'swatch' }), `${label} per ${every} (UTC)`,
      ...(errs ? ['  ', el('span', { class: 'swatch err' }), 'errors (status ≥ 400)'] : []));
  }

  async function renderTops(gen) {
    const dims = state.schema.dims.map((d) => d.name);
    const answers = await Promise.all(dims.map((d) => api('/v1/top', { ...filterParams(), by: d, order: state.order, limit: TOP_LIMIT })));
    if (gen !== state.generation) return;
    const orderName = state.order === 'count' ? 'events' : state.order;
    const cards = answers.map((a, i) => {
      const dim = dims[i];
      const total = a.groups.reduce((s, g) => s + g.event_count, 0) + (a.others ? a.others.event_count : 0);
      const rows = a.groups.map((g) => {
        const value = g.values[dim];
        const share = total ? (100 * g.event_count) / total : 0;
        // A style property, not a style attribute: the page's CSP allows no inline styles.
        const bar = el('span', { class: 'share' });
        bar.style.width = `${share.toFixed(1)}%`;
        return el('tr', { 'data-value': value },
          el('td', {}, el('button', { type: 'button', class: 'link', 'data-dim': dim, 'data-value': value, onclick: () => addDimFilter(dim, value), 'aria-label': `Filter on ${dim} = ${value}`, text: value }),
            bar),
          el('td', { class: 'r', 'data-count': g.event_count, text: fmt(g.event_count) }),
          el('td', { class: 'r', text: fmt(g.metric) }));
      });
      if (a.others) {
        rows.push(el('tr', { class: 'muted' }, el('td', { text: `${fmt(a.total_groups - a.groups.length)} others` }),
          el('td', { class: 'r', text: fmt(a.others.event_count) }), el('td', { class: 'r', text: fmt(a.others.metric) })));
      }
      if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 3, class: 'muted', text: 'No events.' })));
      return el('div', { class: 'card top-table', 'data-dim': dim },
        el('h2', { text: `${dim}` }, el('span', { class: 'muted small', text: ` · top ${TOP_LIMIT} by ${orderName}, ${fmt(a.total_groups)} values` })),
        el('table', {},
          el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: dim }), el('th', { scope: 'col', class: 'r', text: 'Events' }), el('th', { scope: 'col', class: 'r', text: 'Metric' }))),
          el('tbody', {}, ...rows)));
    });
    $('#tops').replaceChildren(...cards);
  }

  async function renderRollups(gen, t) {
    const s = state.schema;
    const rollupDims = s.dims.filter((d) => d.rollup).map((d) => d.name);
    const chart = $('#rollup-chart');
    const note = $('#rollup-note');
    if (!rollupDims.length) {
      barChart(chart, [{ points: [] }], { from: 0, to: 0, width: 1, label: 'Daily rollups' });
      note.textContent = 'This schema has no rollup dims.';
      return;
    }
    const [from, to] = t.event_count ? span(state.filter, t) : [null, null];
    const params = {};
    if (from !== null && from !== undefined) {
      params.from_day = Math.floor(from / DAY_NS);
      params.to_day = Math.floor((to - 1) / DAY_NS);
    }
    const ignored = [];
    for (const [d, v] of Object.entries(state.filter.dims)) {
      if (rollupDims.includes(d)) params[`dim.${d}`] = v;
      else ignored.push(d);
    }
    if (state.filter.smin !== '' || state.filter.smax !== '') ignored.push('status');
    const answer = await api('/v1/rollups', params);
    if (gen !== state.generation) return;
    const byDay = new Map();
    const m = state.measure === 'latency' ? 'events' : state.measure;
    for (const b of answer.buckets) {
      const v = m === 'events' ? b.event_count : m === 'metric' ? b.metric : b.counters[m.slice(8)] ?? 0;
      byDay.set(b.day, (byDay.get(b.day) || 0) + v);
    }
    const days = [...byDay.keys()].sort((a, b) => a - b);
    const first = days.length ? days[0] : 0;
    const last = days.length ? days[days.length - 1] : 0;
    const label = measures().find(([k]) => k === m)[1];
    barChart(chart, [{ points: days.map((d) => [d * DAY_NS, byDay.get(d)]) }],
      { from: first * DAY_NS, to: (last + 1) * DAY_NS, width: DAY_NS, label: `${label} per day` });
    note.textContent = `${label} per UTC day, from the daily rollups (by ${rollupDims.join(', ')})` +
      (ignored.length ? `; they do not hold ${ignored.join(', ')}, so those filters are not applied here.` : '.');
  }

  async function refreshExplore() {
    const gen = ++state.generation;
    const errorsToo = state.filter.smin === '' && state.filter.smax === '';
    const [t, errors] = await Promise.all([
      api('/v1/aggregate', filterParams()),
      errorsToo ? api('/v1/aggregate', { ...filterParams(), status_min: 400 }) : null,
    ]);
    if (gen !== state.generation) return;
    renderTotals(t, errors);
    await Promise.all([renderSeries(gen, t, errorsToo), renderTops(gen), renderRollups(gen, t)]);
  }

  // ---- Events -----------------------------------------------------------------------------

  async function refreshEvents() {
    const gen = ++state.generation;
    const limit = Number($('#page-size').value);
    const cursor = state.cursors[state.page];
    const page = await api('/v1/events', { ...filterParams(), limit, cursor });
    if (gen !== state.generation) return;
    const s = state.schema;
    const dims = s.dims.map((d) => d.name);
    $('#events thead').replaceChildren(el('tr', {},
      ...['Time (UTC)', 'Id', 'Status', ...dims].map((h) => el('th', { scope: 'col', text: h })),
      el('th', { scope: 'col', class: 'r', text: 'Metric' }), el('th', { scope: 'col', class: 'r', text: 'Latency ms' })));
    const rows = page.events.map((e) => el('tr', { 'data-id': e.id, onclick: () => showDetail(e.id) },
      el('td', { text: utcMs(e.ts_ns) }),
      el('td', { class: 'wrap' }, el('button', { type: 'button', class: 'link', text: e.id, onclick: (ev) => { ev.stopPropagation(); showDetail(e.id); } })),
      el('td', { text: e.status }),
      ...dims.map((d) => el('td', { text: e.dims[d] ?? '' })),
      el('td', { class: 'r', text: fmt(e.metric) }), el('td', { class: 'r', text: fmt(e.latency_ms) })));
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 5 + dims.length, class: 'muted', text: 'No events match.' })));
    $('#events tbody').replaceChildren(...rows);
    state.cursors[state.page + 1] = page.next_cursor || undefined;
    state.cursors.length = state.page + 2;
    $('#older').disabled = !page.next_cursor;
    $('#newest').disabled = state.page === 0;
    $('#page-info').textContent = `page ${state.page + 1}${page.next_cursor ? '' : ' (the last)'}`;
  }

  async function showDetail(id) {
    let e;
    try {
      e = await api(`/v1/events/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      $('#detail').hidden = true;
      $('#find-note').textContent = `No event has the id ${id}${state.fleet ? ' in the fleet' : ''}.`;
      return;
    }
    $('#find-note').textContent = '';
    const box = $('#detail');
    const rows = [
      ['Id', e.id], ['Time (UTC)', utcMs(e.ts_ns)], ['ts_ns', String(e.ts_ns)], ['Status', e.status],
      ['Metric', fmt(e.metric)], ['Latency ms', fmt(e.latency_ms)], ['Latency detail ms', fmt(e.latency_detail_ms)],
      ['Flags', e.flags],
      ...Object.entries(e.dims).map(([k, v]) => [k, v]),
      ...Object.entries(e.counters).map(([k, v]) => [k, fmt(v)]),
      ...Object.entries(e.labels).map(([k, v]) => [k, v]),
    ];
    $('#h-detail').textContent = `Event ${e.id}`;
    $('#detail-body').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
    box.hidden = false;
    box.focus();
  }

  // ---- routing and refresh ----------------------------------------------------------------

  async function refresh() {
    try {
      if (state.view === 'overview') await refreshOverview();
      else if (state.view === 'explore') await refreshExplore();
      else await refreshEvents();
      showError(null);
    } catch (e) {
      showError(e);
    }
    showCompleteness();
  }

  function route() {
    readHash();
    for (const v of VIEWS) $(`#view-${v}`).hidden = v !== state.view;
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.view === state.view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    $('#filters').hidden = state.view === 'overview';
    renderFilterBar();
    clearInterval(state.timer);
    state.timer = null;
    if (state.view === 'overview') state.timer = setInterval(refresh, OVERVIEW_EVERY_MS);
    document.title = `${state.view[0].toUpperCase()}${state.view.slice(1)} · keplor-agent console`;
    refresh();
  }

  function setTheme(theme) {
    if (theme === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    $('#theme').textContent = `Theme: ${theme}`;
    try { localStorage.setItem('keplor-theme', theme); } catch (_) { /* private mode */ }
  }

  async function start() {
    let theme = 'auto';
    try { theme = localStorage.getItem('keplor-theme') || 'auto'; } catch (_) { /* private mode */ }
    setTheme(theme);
    $('#theme').addEventListener('click', () => {
      const next = { auto: 'dark', dark: 'light', light: 'auto' }[document.documentElement.dataset.theme || 'auto'];
      setTheme(next);
    });
    try {
      state.schema = await api('/v1/schema', {}, { fleet: false });
    } catch (e) {
      showError(e);
      return;
    }
    const s = state.schema;
    $('#logout').hidden = !s.auth;
    $('#fleet-switch').hidden = !s.fleet;
    $('#fleet').addEventListener('change', (e) => { state.fleet = e.target.checked; state.cursors = [null]; state.page = 0; route(); });
    $('#f-dim').replaceChildren(...s.dims.map((d) => el('option', { value: d.name, text: d.name })));
    $('#measure').replaceChildren(...measures().map(([k, l]) => el('option', { value: k, text: l })));
    $('#order').replaceChildren(...[['count', 'events'], ['metric', 'metric'], ['latency', 'latency'], ...s.counters.map((c) => [c, c])]
      .map(([k, l]) => el('option', { value: k, text: l })));
    $('#measure').addEventListener('change', (e) => { state.measure = e.target.value; refresh(); });
    $('#order').addEventListener('change', (e) => { state.order = e.target.value; refresh(); });
    $('#filters').addEventListener('submit', readFilterBar);
    $('#f-range').addEventListener('change', (e) => {
      for (const c of document.querySelectorAll('.field.custom')) c.hidden = e.target.value !== 'custom';
    });
    $('#older').addEventListener('click', () => { state.page++; refresh(); });
    $('#newest').addEventListener('click', () => { state.page = 0; refresh(); });
    $('#page-size').addEventListener('change', () => { state.cursors = [null]; state.page = 0; refresh(); });
    $('#detail-close').addEventListener('click', () => { $('#detail').hidden = true; });
    $('#find').addEventListener('submit', (e) => {
      e.preventDefault();
      showDetail($('#find-id').value.trim()).then(() => showCompleteness(), showError);
    });
    window.addEventListener('hashchange', () => { state.cursors = [null]; state.page = 0; route(); });
    route();
  }

  start();
})();
