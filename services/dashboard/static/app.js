/* status-tracker dashboard: local times, poster fallbacks, and live updates over /api/sse.
 *
 * The stream is read with fetch() rather than EventSource so that every reconnect can send
 * Last-Event-ID (the server then replays what was missed, or says `resync`), back off
 * exponentially, and notice a dead connection (no heartbeat for 25 s). The page carries the
 * id of the newest event at render time, so nothing between render and connect is lost.
 * An event that names a request makes htmx fetch that request's card or detail fragment
 * (rendered by the server) and swap it; progress events move the bars in place. */
(() => {
  'use strict';
  const body = document.body;
  const $ = (sel, root = document) => root.querySelector(sel);
  // For tests and the curious: events seen, swaps done, fetches under way, connection state.
  const debug = (window.__tracker = { events: 0, swaps: 0, busy: 0, conn: 'idle', blocked: [] });
  // Anything the Content-Security-Policy refuses is a bug (or an attack): keep it visible.
  document.addEventListener('securitypolicyviolation', (e) => debug.blocked.push(e.violatedDirective));

  // ---- Formatting: the same rules as src/views/format.rs.
  const pad = (n) => String(n).padStart(2, '0');
  function fmtBytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let v = n, i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
  }
  function fmtEta(s) {
    if (s == null) return '∞';
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }
  const percent = (p) => (!(p > 0) ? 0 : p >= 1 ? 100 : Math.min(99, Math.max(1, Math.floor(p * 100))));
  const LABELS = { indexed: 'Found' };
  const label = (s) => LABELS[s] || s.charAt(0).toUpperCase() + s.slice(1);

  // ---- Local times and posters, on load and after every swap.
  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
  const rel = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  function relative(d) {
    const s = (d - Date.now()) / 1000;
    if (Math.abs(s) < 45) return 'just now';
    if (Math.abs(s) < 3600) return rel.format(Math.round(s / 60), 'minute');
    if (Math.abs(s) < 86400) return rel.format(Math.round(s / 3600), 'hour');
    return dateTime.format(d);
  }
  function localize(root) {
    const today = new Date().toDateString();
    for (const t of root.querySelectorAll('time[datetime]')) {
      const d = new Date(t.getAttribute('datetime'));
      if (isNaN(d)) continue;
      if (t.hasAttribute('data-rel')) t.textContent = relative(d);
      else t.textContent = t.dataset.fmt === 'time' && d.toDateString() === today ? timeOnly.format(d) : dateTime.format(d);
      t.title = d.toLocaleString();
    }
  }
  // A poster that cannot load (offline, gone) leaves the neutral placeholder underneath.
  document.addEventListener('error', (e) => {
    if (e.target instanceof HTMLImageElement && e.target.closest('.poster')) e.target.remove();
  }, true);
  function posters(root) {
    for (const img of root.querySelectorAll('.poster img')) if (img.complete && !img.naturalWidth) img.remove();
  }
  function prepare(root) { localize(root); posters(root); }
  prepare(document);
  setInterval(() => localize(document), 60000);

  // ---- Retry / Lower quality / Cancel: show what the API answered, including its JSON error text.
  body.addEventListener('htmx:afterRequest', (e) => {
    const name = e.detail.elt.dataset && e.detail.elt.dataset.action;
    const out = $('#action-result');
    if (!name || !out) return;
    const xhr = e.detail.xhr;
    let answer = {};
    try { answer = JSON.parse(xhr.responseText) || {}; } catch (_) { /* not JSON */ }
    const ok = e.detail.successful;
    const why = answer.error || (xhr.status ? `HTTP ${xhr.status}` : 'the dashboard cannot be reached');
    out.textContent = ok ? answer.message || `${name} requested.` : `${name} failed: ${why}`;
    out.classList.toggle('is-error', !ok);
  });

  // ---- Connection indicator.
  const conn = $('#conn');
  function setConn(state) {
    debug.conn = state;
    if (!conn) return;
    conn.hidden = false;
    conn.dataset.conn = state;
    const text = { connecting: 'Connecting…', connected: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline' };
    $('.conn-text', conn).textContent = text[state];
  }

  // ---- Swaps, coalesced: several events for one target within 150 ms make one fetch.
  const timers = new Map();
  function soon(key, fn) {
    if (timers.has(key)) return;
    debug.busy++;
    timers.set(key, setTimeout(() => { timers.delete(key); debug.busy--; fn(); }, 150));
  }
  function swap(url, selector, after) {
    const target = $(selector);
    if (!target || !window.htmx) return;
    debug.busy++;
    htmx.ajax('GET', url, { target, swap: 'outerHTML' }).then(() => {
      debug.swaps++;
      const fresh = $(selector);
      if (fresh && after) after(fresh);
    }).finally(() => debug.busy--);
  }
  const flash = (el) => { el.classList.remove('flash'); void el.offsetWidth; el.classList.add('flash'); };
  function announce(change) {
    const r = change.request;
    if (!change.previous_state || change.previous_state === r.state) return;
    $('#announce').textContent = `${r.title}: ${label(r.state)}`;
  }
  function setBar(el, progress, speed, eta) {
    if (!el) return;
    const v = percent(progress);
    const bar = $('progress', el);
    if (bar) { bar.value = v; bar.textContent = `${v}%`; }
    for (const [sel, text] of [['.pct', `${v}%`], ['.speed', `${fmtBytes(speed)}/s`], ['.eta', fmtEta(eta)]]) {
      const n = $(sel, el);
      if (n) n.textContent = text;
    }
  }

  // ---- What each page does with events.
  const lists = {
    refresh() { soon('list', () => { const l = $('#list'); if (l) swap(l.dataset.refresh, '#list'); }); },
    request(change) {
      const r = change.request, list = $('#list');
      if (!list) return;
      const shown = list.dataset.states.split(',').includes(r.state);
      const card = document.getElementById(`req-${r.id}`);
      if (card && shown) soon(`card${r.id}`, () => swap(`/fragments/card/${r.id}`, `#req-${r.id}`, flash));
      else if (card || shown) lists.refresh(); // it arrives in, or leaves, this list
      announce(change);
    },
    progress(p) {
      const card = document.getElementById(`req-${p.id}`);
      if (!card) return;
      const bar = $('.progress', card);
      if (!bar || card.dataset.state !== p.state || card.classList.contains('is-stalled') !== !!p.stalled) {
        soon(`card${p.id}`, () => swap(`/fragments/card/${p.id}`, `#req-${p.id}`));
      } else setBar(bar, p.progress, p.dlspeed, p.eta);
    },
  };
  const detail = {
    refresh() {
      const d = $('#detail');
      if (d) soon('detail', () => swap(`/fragments/detail/${d.dataset.id}`, '#detail'));
    },
    request(change) {
      const d = $('#detail');
      if (d && String(change.request.id) === d.dataset.id) { detail.refresh(); announce(change); }
    },
    progress(p) {
      const d = $('#detail');
      if (!d || String(p.id) !== d.dataset.id) return;
      if (d.dataset.state !== p.state || d.classList.contains('is-stalled') !== !!p.stalled) return detail.refresh();
      setBar($('#detail-progress'), p.progress, p.dlspeed, p.eta);
      setBar($('[data-live-progress]'), p.progress, p.dlspeed, p.eta);
      for (const dl of p.downloads || []) {
        const li = document.querySelector(`[data-download="${CSS.escape(dl.download_id)}"]`);
        if (li && dl.finished && $('progress', li)) return detail.refresh();
        setBar(li, dl.progress, dl.dlspeed, dl.eta);
      }
    },
  };
  const handlers = { index: lists, history: lists, detail }[body.dataset.page];

  // ---- The SSE stream, read with fetch.
  let lastId = body.dataset.lastEventId || null;
  function dispatch(ev, reconnect) {
    debug.events++;
    if (ev.id) lastId = ev.id;
    if (ev.event === 'resync' || (ev.event === 'hello' && reconnect)) return handlers.refresh();
    if (ev.event !== 'request' && ev.event !== 'progress') return;
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    handlers[ev.event](data);
  }
  async function read(stream, ctrl, onEvent) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '', watchdog;
    const arm = () => { clearTimeout(watchdog); watchdog = setTimeout(() => ctrl.abort(), 25000); };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        arm();
        buf += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const ev = { id: null, event: 'message', data: [] };
          for (const line of buf.slice(0, end).split('\n')) {
            if (!line || line[0] === ':') continue; // heartbeat comment
            const c = line.indexOf(':');
            const key = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + (line[c + 1] === ' ' ? 2 : 1));
            if (key === 'data') ev.data.push(val);
            else if (key === 'event') ev.event = val;
            else if (key === 'id') ev.id = val;
          }
          buf = buf.slice(end + 2);
          if (ev.data.length || ev.id) onEvent({ ...ev, data: ev.data.join('\n') });
        }
      }
    } finally { clearTimeout(watchdog); }
  }
  const pause = (ms) => new Promise((r) => {
    const done = () => { clearTimeout(t); removeEventListener('online', done); r(); };
    const t = setTimeout(done, ms);
    addEventListener('online', done);
  });
  let current = null; // the live request, aborted when the browser goes offline
  addEventListener('offline', () => current && current.abort());
  async function follow(url) {
    let delay = 1000, opened = false;
    setConn('connecting');
    for (;;) {
      if (!navigator.onLine) { setConn('offline'); await pause(60000); continue; }
      const ctrl = (current = new AbortController()), reconnect = opened;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(url, { headers, cache: 'no-store', signal: ctrl.signal });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        opened = true;
        delay = 1000;
        setConn('connected');
        await read(res.body, ctrl, (ev) => dispatch(ev, reconnect));
      } catch (_) { /* dropped, refused or timed out: back off and try again */ }
      ctrl.abort();
      setConn(navigator.onLine ? 'reconnecting' : 'offline');
      await pause(delay * (0.75 + Math.random() * 0.5));
      delay = Math.min(delay * 2, 30000);
    }
  }
  if (window.htmx) htmx.onLoad(prepare);
  if (handlers && body.dataset.sse) follow(body.dataset.sse);
})();
