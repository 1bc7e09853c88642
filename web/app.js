// OpenTSM web console (docs/console.md). Plain ES module, no framework, no
// third-party code. It speaks the same APIs as tsmctl, signed in with a
// browser session (HttpOnly cookie) and a CSRF token it keeps in memory only.
// Every text from the API goes into the page through textContent, never as
// markup.

const S = {
  me: null, // {principal, csrf, expires_at}
  services: [], // [{name, instance, prefix}]
  live: [], // EventSources and timers of the current view, closed on leave
};

// ---- small DOM helpers ------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const $ = (id) => document.getElementById(id);

function when(ts) {
  if (!ts) return '—';
  const ms = ts > 1e12 ? ts : ts * 1000;
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function badge(text, kind) {
  return el('span', { class: `badge ${kind || 'muted'}` }, text);
}

const STATE_KIND = {
  online: 'ok', done: 'ok', active: 'ok', delivered: 'ok', destroyed: 'bad', failed: 'bad', locked: 'warn',
  offline: 'muted', queued: 'warn', delivering: 'warn', running: 'warn', expired: 'muted',
  cancelled: 'muted', outcome_unknown: 'bad', 'awaiting-destroy': 'warn', 'awaiting-lock': 'warn',
  awaiting_destroy: 'warn', awaiting_lock: 'warn', destroying: 'warn', pending: 'warn',
  open: 'ok', ended: 'muted',
  // A service on an SE (the TSM's states, after BSI TR-03165).
  NotDeployed: 'muted', DeployedOperational: 'ok', DeployedSuspended: 'warn', InError: 'bad',
  'UnderDeployment:Initialized': 'warn', 'UnderDeployment:Installed': 'warn',
  'UnderDeployment:Personalized': 'warn', 'UnderDeployment:Activated': 'warn',
};

function stateBadge(s) {
  return badge(s || '—', STATE_KIND[s] || 'muted');
}

function table(cols, rows, empty) {
  if (!rows.length) return el('p', { class: 'muted' }, empty || 'Nothing here yet.');
  const head = el('tr', {}, cols.map((c) => el('th', { scope: 'col', class: c.cls }, c.h)));
  const body = rows.map((r) => el('tr', {}, cols.map((c) => {
    const v = c.v(r);
    return el('td', { class: c.cls }, v instanceof Node ? v : (v ?? '—'));
  })));
  return el('div', { class: 'table-wrap' }, el('table', {}, el('thead', {}, head),
    el('tbody', {}, body)));
}

function say(text, kind) {
  const box = $('status');
  box.replaceChildren();
  if (text) box.append(el('div', { class: `msg ${kind || 'info'}` }, text));
}

// ---- the API ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message ? `${e.message}${e.field ? ` (${e.field})` : ''}` : `HTTP ${status}`);
    this.status = status;
    this.code = e.code || String(status);
  }
}

async function api(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (opts.bearer) headers.Authorization = `Bearer ${opts.bearer}`;
  if (method !== 'GET' && S.me && S.me.csrf) headers['X-CSRF-Token'] = S.me.csrf;
  if (method === 'POST') headers['Idempotency-Key'] = opts.idem || crypto.randomUUID();
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  const text = await r.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
  if (!r.ok) {
    if (r.status === 401 && !opts.quiet401) signedOut('Your session has ended: sign in again.');
    throw new ApiError(r.status, doc);
  }
  return doc;
}

// Runs fn with the button (or form) marked busy, and shows its error.
async function busy(btn, fn) {
  const b = btn;
  if (b) { b.disabled = true; b.classList.add('busy'); b.setAttribute('aria-busy', 'true'); }
  try {
    say('');
    return await fn();
  } catch (e) {
    if (e instanceof ApiError || e instanceof TypeError) say(e.message, 'error');
    else throw e;
    return undefined;
  } finally {
    if (b) { b.disabled = false; b.classList.remove('busy'); b.removeAttribute('aria-busy'); }
  }
}

function svc(name) {
  return S.services.filter((s) => s.name === name);
}

// ---- views ------------------------------------------------------------------

function form(fields, label, onsubmit, cls) {
  const inputs = {};
  const f = el('form', { class: cls || '' });
  for (const fd of fields) {
    const id = `f-${fd.name}-${Math.random().toString(36).slice(2, 7)}`;
    let input;
    if (fd.options) {
      input = el('select', { id, name: fd.name }, fd.options.map((o) => el('option', { value: o }, o)));
    } else {
      input = el('input', {
        id, name: fd.name, type: fd.type || 'text', required: fd.required, placeholder: fd.ph,
        inputmode: fd.inputmode, autocomplete: 'off', spellcheck: 'false', value: fd.value,
      });
    }
    inputs[fd.name] = input;
    f.append(el('div', { class: 'field' }, el('label', { for: id }, fd.label), input));
  }
  const btn = el('button', { type: 'submit' }, label);
  f.append(btn);
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = {};
    for (const [k, i] of Object.entries(inputs)) v[k] = i.value.trim();
    busy(btn, () => onsubmit(v, inputs));
  });
  return f;
}

// Secure elements: the TSM's registry (operators and service providers).
function viewSes(root) {
  const out = el('div', { 'aria-live': 'polite' });
  root.append(el('h1', {}, 'Secure elements'),
    el('div', { class: 'card' }, form([
      { name: 'by', label: 'Search by', options: ['msisdn', 'imsi', 'cin'] },
      { name: 'value', label: 'Value', required: true, ph: '33612345678' },
    ], 'Find', async (v) => {
      const path = v.by === 'cin'
        ? `/tsm/v1/secure-elements/${encodeURIComponent(v.value)}`
        : `/tsm/v1/secure-elements?${v.by}=${encodeURIComponent(v.value)}`;
      out.replaceChildren(el('p', { class: 'busy' }, 'Looking up'));
      try {
        const doc = await api('GET', path);
        const items = doc && doc.items ? doc.items : [doc];
        out.replaceChildren(...(items.length ? items.map(seCard) : [el('p', {}, 'No secure element.')]));
      } catch (e) {
        out.replaceChildren(el('p', { class: 'muted' }, e.status === 404 ? 'No such secure element.' : e.message));
      }
    })), out);
}

function seCard(se) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of Object.entries(se)) {
    dl.append(el('dt', {}, k), el('dd', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v ?? '—')));
  }
  return el('div', { class: 'card' }, el('h2', {}, `SE ${se.cin || ''}`), dl);
}

// Devices of every mno instance, with online/offline and last seen.
async function viewDevices(root) {
  root.append(el('h1', {}, 'Devices'));
  const mnos = svc('mno');
  if (!mnos.length) { root.append(el('p', { class: 'muted' }, 'No mobile network is served here.')); return; }
  for (const m of mnos) {
    const box = el('section', { class: 'card' }, el('h2', {}, `Network ${m.instance || m.name}`),
      el('p', { class: 'busy' }, 'Loading'));
    root.append(box);
    const load = async () => {
      const doc = await api('GET', `${m.prefix}/devices?limit=200`);
      box.replaceChildren(el('h2', {}, `Network ${m.instance || m.name}`), table([
        { h: 'Device', v: (d) => d.id, cls: 'mono' },
        { h: 'MSISDN', v: (d) => d.msisdn },
        { h: 'IMEI', v: (d) => d.imei, cls: 'mono hide-narrow' },
        { h: 'State', v: (d) => stateBadge(d.state) },
        { h: 'Location area', v: (d) => d.location_area, cls: 'hide-narrow' },
        { h: 'Last seen', v: (d) => when(d.last_seen) },
      ], doc.items, 'No devices enrolled.'));
    };
    await busy(null, load);
    poll(load, 5000);
  }
}

// OTA jobs with live updates: the audit stream tells when something changed.
async function viewJobs(root) {
  root.append(el('h1', {}, 'OTA jobs'), el('p', { class: 'live muted', id: 'jobs-live' }, 'Live updates: connecting'));
  const mnos = svc('mno');
  if (!mnos.length) { root.append(el('p', { class: 'muted' }, 'No mobile network is served here.')); return; }
  const loaders = [];
  for (const m of mnos) {
    const box = el('section', { class: 'card' }, el('h2', {}, `Network ${m.instance || m.name}`));
    root.append(box);
    const load = async () => {
      const doc = await api('GET', `${m.prefix}/jobs?limit=100`);
      const rows = doc.items.slice().sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
      box.replaceChildren(el('h2', {}, `Network ${m.instance || m.name}`), table([
        { h: 'Job', v: (j) => j.id, cls: 'mono' },
        { h: 'Device', v: (j) => j.device, cls: 'mono hide-narrow' },
        { h: 'Kind', v: (j) => j.kind },
        { h: 'State', v: (j) => stateBadge(j.state) },
        { h: 'Reason', v: (j) => j.reason || '', cls: 'hide-narrow' },
        { h: 'Updated', v: (j) => when(j.updated_at) },
        { h: '', v: (j) => (['queued', 'delivering'].includes(j.state)
          ? el('button', { type: 'button', class: 'secondary', onclick: (ev) => busy(ev.target, async () => {
            await api('POST', `${m.prefix}/jobs/${encodeURIComponent(j.id)}/cancel`); await load();
          }) }, 'Cancel') : '') },
      ], rows, 'No jobs.'));
    };
    loaders.push(load);
    await busy(null, load);
  }
  liveAudit(() => loaders.forEach((l) => busy(null, l)), $('jobs-live'));
}

async function viewAlerts(root) {
  root.append(el('h1', {}, 'Alerts'));
  for (const m of svc('mno')) {
    const box = el('section', { class: 'card' });
    root.append(box);
    const load = async () => {
      const doc = await api('GET', `${m.prefix}/alerts?limit=100`);
      box.replaceChildren(el('h2', {}, `Network ${m.instance || m.name}`), table([
        { h: 'SE', v: (a) => a.cin, cls: 'mono' },
        { h: 'Key version', v: (a) => a.kvn },
        { h: 'Failed authentications', v: (a) => a.failures },
        { h: 'Raised', v: (a) => when(a.created_at) },
        { h: 'State', v: (a) => (a.cleared ? badge('cleared', 'muted') : badge('open', 'bad')) },
        { h: '', v: (a) => (a.cleared ? '' : el('button', { type: 'button', class: 'secondary', onclick: (ev) => busy(ev.target, async () => {
          await api('POST', `${m.prefix}/alerts/${encodeURIComponent(a.id)}/clear`); await load();
        }) }, 'Clear')) },
      ], doc.items || [], 'No alerts.'));
    };
    await busy(null, load);
  }
  for (const c of svc('cms')) await cmsOperator(root, c);
}

// Cards awaiting destroy, with a forced retry (when cms is served here).
async function cmsOperator(root, c) {
  const box = el('section', { class: 'card' });
  root.append(box);
  const load = async () => {
    const doc = await api('GET', `${c.prefix}/cards?state=awaiting_destroy&limit=100`);
    box.replaceChildren(el('h2', {}, 'Cards awaiting destroy'), table([
      { h: 'Card', v: (k) => k.card_id, cls: 'mono' },
      { h: 'MSISDN', v: (k) => k.msisdn },
      { h: 'Network', v: (k) => k.mno, cls: 'hide-narrow' },
      { h: 'State', v: (k) => cardState(k.state) },
      { h: '', v: (k) => el('button', { type: 'button', class: 'secondary', onclick: (ev) => busy(ev.target, async () => {
        await api('POST', `${c.prefix}/cards/${encodeURIComponent(k.card_id)}/retry`, { body: {} });
        say(`Retry of card ${k.card_id} started.`);
        await load();
      }) }, 'Retry now') },
    ], doc.items || [], 'No card is waiting.'));
  };
  await busy(null, load);
}

async function viewPrincipals(root) {
  const list = el('div');
  const tokens = el('div');
  const shown = el('div', { 'aria-live': 'polite' });
  root.append(el('h1', {}, 'Principals and tokens'),
    el('section', { class: 'card' }, el('h2', {}, 'New principal'), form([
      { name: 'kind', label: 'Kind', options: ['service_provider', 'subscriber', 'operator', 'device'] },
      { name: 'name', label: 'Name', required: true },
      { name: 'extra', label: 'Display name / MSISDN', ph: 'optional' },
    ], 'Create', async (v) => {
      const body = { kind: v.kind, name: v.name };
      if (v.extra && v.kind === 'service_provider') body.display_name = v.extra;
      if (v.extra && v.kind === 'subscriber') body.msisdns = [v.extra];
      await api('POST', '/admin/v1/principals', { body });
      say(`Principal ${v.name} created.`);
      await load();
    })), list,
    el('section', { class: 'card' }, el('h2', {}, 'Issue a token'), form([
      { name: 'principal_id', label: 'Principal id', required: true, inputmode: 'numeric' },
      { name: 'label', label: 'Label', ph: 'optional' },
    ], 'Issue', async (v) => {
      const body = { principal_id: Number(v.principal_id) };
      if (v.label) body.label = v.label;
      const t = await api('POST', '/admin/v1/tokens', { body });
      shown.replaceChildren(el('div', { class: 'msg info' }, 'Token (shown once, copy it now): ',
        el('code', { 'data-token': 'issued' }, t.token)));
      await loadTokens();
    }), shown), tokens);
  const load = async () => {
    const doc = await api('GET', '/admin/v1/principals?limit=200');
    list.replaceChildren(el('section', { class: 'card' }, el('h2', {}, 'Principals'), table([
      { h: 'Id', v: (p) => p.id },
      { h: 'Kind', v: (p) => p.kind },
      { h: 'Name', v: (p) => p.name },
      { h: 'Details', v: (p) => p.display_name || (p.msisdns || []).join(', ') || p.imei || '', cls: 'hide-narrow' },
      { h: 'State', v: (p) => (p.disabled ? badge('disabled', 'bad') : badge('enabled', 'ok')) },
    ], doc.items)));
  };
  const loadTokens = async () => {
    const doc = await api('GET', '/admin/v1/tokens?limit=200');
    tokens.replaceChildren(tokenTable(doc.items, loadTokens));
  };
  await busy(null, load);
  await busy(null, loadTokens);
}

function tokenTable(items, reload) {
  return el('section', { class: 'card' }, el('h2', {}, 'Tokens'), table([
    { h: 'Id', v: (t) => t.id },
    { h: 'Principal', v: (t) => t.principal_id },
    { h: 'Starts with', v: (t) => t.prefix, cls: 'mono' },
    { h: 'Label', v: (t) => t.label },
    { h: 'Expires', v: (t) => when(t.expires_at), cls: 'hide-narrow' },
    { h: 'State', v: (t) => (t.revoked_at ? badge('revoked', 'bad') : badge('valid', 'ok')) },
    { h: '', v: (t) => (t.revoked_at ? '' : el('button', { type: 'button', class: 'danger', onclick: (ev) => busy(ev.target, async () => {
      if (!window.confirm(`Revoke token ${t.id}? Its browser sessions end too.`)) return;
      await api('DELETE', `/admin/v1/tokens/${t.id}`);
      await reload();
    }) }, 'Revoke')) },
  ], items));
}

async function viewMyTokens(root) {
  const box = el('div');
  root.append(el('h1', {}, 'My tokens'), box);
  const load = async () => {
    const doc = await api('GET', '/admin/v1/tokens?limit=200');
    box.replaceChildren(tokenTable(doc.items, load));
  };
  await busy(null, load);
}

// The audit log: pages, the live tail (SSE) and the chain check.
async function viewAudit(root) {
  const rows = [];
  const tbl = el('div');
  const verdict = el('span', { 'aria-live': 'polite' });
  const liveNote = el('span', { class: 'live muted' }, 'Live tail: connecting');
  let next = null;
  const render = () => tbl.replaceChildren(table([
    { h: 'Seq', v: (r) => r.seq },
    { h: 'Time', v: (r) => when(r.ts_ms) },
    { h: 'Who', v: (r) => `${r.principal_kind || ''} ${r.principal_name || ''}`.trim() },
    { h: 'Action', v: (r) => r.action, cls: 'mono' },
    { h: 'Resource', v: (r) => r.resource, cls: 'mono hide-narrow' },
    { h: 'Outcome', v: (r) => r.outcome },
  ], rows.slice().sort((a, b) => b.seq - a.seq)));
  const more = el('button', { type: 'button', class: 'secondary', onclick: (ev) => busy(ev.target, page) }, 'Older entries');
  async function page() {
    const doc = await api('GET', `/admin/v1/audit?limit=100${next ? `&cursor=${encodeURIComponent(next)}` : ''}`);
    for (const r of doc.items) if (!rows.some((x) => x.seq === r.seq)) rows.push(r);
    next = doc.next_cursor;
    more.hidden = !next;
    render();
  }
  root.append(el('h1', {}, 'Audit log'), el('div', { class: 'row card' },
    el('button', { type: 'button', onclick: (ev) => busy(ev.target, async () => {
      verdict.textContent = 'Checking the chain…';
      const v = await api('GET', '/admin/v1/audit/verify');
      verdict.replaceChildren(v.intact ? badge(`intact: ${v.checked} rows checked`, 'ok')
        : badge(`broken at row ${v.bad_seq}`, 'bad'));
    }) }, 'Verify the chain'), verdict, liveNote), tbl, more);
  await busy(null, page);
  liveAudit((r) => { if (r && !rows.some((x) => x.seq === r.seq)) { rows.push(r); render(); } }, liveNote);
}

// The host's live audit stream (operators): fn(row) for each new row.
function liveAudit(fn, note) {
  const es = new EventSource('/admin/v1/events', { withCredentials: true });
  S.live.push({ close: () => es.close() });
  es.addEventListener('open', () => { if (note) note.textContent = 'Live: on'; });
  es.addEventListener('error', () => { if (note) note.textContent = 'Live: reconnecting'; });
  es.addEventListener('audit', (ev) => {
    let row = null;
    try { row = JSON.parse(ev.data); } catch { row = null; }
    fn(row);
  });
}

function poll(fn, ms) {
  const t = setInterval(() => { fn().catch(() => {}); }, ms);
  S.live.push({ close: () => clearInterval(t) });
}

// How the wallets show a card's state to its holder.
const CARD_LABEL = {
  active: ['Active', 'ok'],
  locked: ['Locked', 'warn'],
  awaiting_lock: ['Pending: locks when the phone is back', 'warn'],
  awaiting_unlock: ['Pending: unlocks when the phone is back', 'warn'],
  awaiting_destroy: ['Pending: destroyed when the phone is back', 'warn'],
  destroying: ['Pending: being destroyed', 'warn'],
  destroyed: ['Destroyed', 'bad'],
  invalid: ['Invalid', 'muted'],
};

function cardState(s) {
  const [label, kind] = CARD_LABEL[s] || [s || '—', 'muted'];
  return el('span', { class: `badge ${kind}`, 'data-state': s }, label);
}

// A subscriber's cards (cms): state, lost/stolen/found actions, history.
async function viewCards(root) {
  root.append(el('h1', {}, 'My cards'));
  const cms = svc('cms');
  if (!cms.length) { root.append(el('p', { class: 'muted' }, 'Card management is not served here.')); return; }
  const c = cms[0];
  const box = el('div', { 'aria-live': 'polite' });
  root.append(box);
  const act = (card, action, reason, ask) => (ev) => busy(ev.target, async () => {
    if (ask && !window.confirm(ask)) return;
    const r = await api('POST', `${c.prefix}/cards/${encodeURIComponent(card.card_id)}/${action}`, { body: { reason } });
    say(`Card ${card.card_id}: ${(CARD_LABEL[r.state] || [r.state])[0]}.`);
    seen = null;
    await load();
  });
  const history = async (card, into) => {
    const doc = await api('GET', `${c.prefix}/cards/${encodeURIComponent(card.card_id)}/history?limit=50`);
    into.replaceChildren(table([
      { h: 'When', v: (h) => when(h.at || h.created_at) },
      { h: 'What', v: (h) => h.event || h.action || h.state },
      { h: 'Details', v: (h) => [h.from, h.to].filter(Boolean).join(' → ') || h.reason || h.why || '' },
    ], doc.items || [], 'No history yet.'));
  };
  let seen = null;
  const load = async () => {
    const doc = await api('GET', `${c.prefix}/cards?limit=100`);
    const now = JSON.stringify(doc.items);
    if (now === seen) return; // unchanged: keep focus and open histories
    seen = now;
    // One group per phone (the wallets' "my phones"), its cards inside.
    const phones = new Map();
    for (const card of doc.items) {
      const k = card.msisdn || '';
      if (!phones.has(k)) phones.set(k, []);
      phones.get(k).push(card);
    }
    const cardBox = (card) => {
      const hist = el('div');
      // Only the moves cms's table allows from the card's state (docs/cms.md).
      const st = card.state;
      const canDestroy = ['active', 'locked', 'awaiting_lock', 'awaiting_unlock'].includes(st);
      const buttons = [
        canDestroy && el('button', { type: 'button', class: 'danger', onclick: act(card, 'destroy', 'lost', `Destroy card ${card.card_id}? This cannot be undone.`) }, 'My phone is lost: destroy'),
        canDestroy && el('button', { type: 'button', class: 'danger', onclick: act(card, 'destroy', 'stolen', `Destroy card ${card.card_id}? This cannot be undone.`) }, 'Stolen: destroy'),
        st === 'locked' && el('button', { type: 'button', class: 'secondary', onclick: act(card, 'unlock', 'found') }, 'Found: unlock'),
        st === 'active' && el('button', { type: 'button', class: 'secondary', onclick: act(card, 'lock', 'lost') }, 'Lock'),
      ].filter(Boolean);
      return el('section', { class: 'card', 'data-card': card.card_id },
        el('h3', {}, `Card ${card.card_id}`),
        el('p', {}, 'State: ', cardState(card.state)),
        el('p', { class: 'muted' }, `Issuer ${card.issuer || '—'}`),
        el('div', { class: 'row' }, ...buttons,
          el('button', { type: 'button', class: 'secondary', 'aria-label': `History of card ${card.card_id}`, onclick: (ev) => busy(ev.target, () => history(card, hist)) }, 'History')),
        hist);
    };
    box.replaceChildren(...(doc.items.length ? [...phones].map(([msisdn, cards]) =>
      el('section', { class: 'phone', 'data-phone': msisdn },
        el('h2', {}, msisdn ? `Phone ${msisdn}` : 'No phone'),
        el('p', { class: 'muted' }, `${cards.length} card${cards.length === 1 ? '' : 's'} on this phone`),
        ...cards.map(cardBox))) : [el('p', {}, 'No cards.')]));
  };
  await busy(null, load);
  poll(load, 2000);
}

// A subscriber's notification settings (cms): signed webhook and e-mail.
const NOTIFY_EVENTS = [
  ['destroy.accepted', 'A destroy was accepted'], ['destroyed', 'A card was destroyed'],
  ['destroy.delayed', 'A destroy waits for the phone'], ['lock.accepted', 'A lock was accepted'],
  ['locked', 'A card was locked'], ['lock.failed', 'A lock failed'],
  ['unlock.accepted', 'An unlock was accepted'], ['unlocked', 'A card was unlocked'],
  ['unlock.failed', 'An unlock failed'], ['supervision.hit', 'Supervision stopped a card'],
];

async function viewNotify(root) {
  root.append(el('h1', {}, 'Notifications'));
  const cms = svc('cms');
  if (!cms.length) { root.append(el('p', { class: 'muted' }, 'Card management is not served here.')); return; }
  const url = `${cms[0].prefix}/subscribers/${S.me.principal.id}/notifications`;
  const box = el('div', { class: 'card' });
  root.append(box);
  const load = async () => {
    const cur = await api('GET', url);
    const on = new Set(cur.events || []);
    const all = on.size === 0;
    const boxes = NOTIFY_EVENTS.map(([ev, label]) => {
      const id = `ev-${ev.replace('.', '-')}`;
      return el('div', { class: 'check' },
        el('input', { type: 'checkbox', id, name: ev, checked: all || on.has(ev) }),
        el('label', { for: id }, label));
    });
    const f = form([
      { name: 'webhook_url', label: 'Webhook URL (https://…, empty: off)', value: cur.webhook_url || '', ph: 'https://example.org/hook' },
      { name: 'webhook_secret', label: cur.webhook_secret_set ? 'New webhook secret (empty: keep the stored one)' : 'Webhook secret (16 to 128 characters)', type: 'password' },
      { name: 'email', label: 'E-mail (empty: off)', type: 'email', value: cur.email || '', ph: 'me@example.org' },
    ], 'Save', async (v) => {
      const body = {};
      if (v.webhook_url) body.webhook_url = v.webhook_url;
      if (v.webhook_secret) body.webhook_secret = v.webhook_secret;
      if (v.email) body.email = v.email;
      const picked = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.name);
      if (picked.length !== NOTIFY_EVENTS.length) body.events = picked;
      await api('PUT', url, { body });
      say('Notification settings saved.');
      await load();
    }, 'stack');
    f.insertBefore(el('fieldset', {}, el('legend', {}, 'Tell me when'), ...boxes), f.querySelector('button'));
    box.replaceChildren(f);
  };
  await busy(null, load);
}

// Shown for an address naming a resource the API does not show this
// principal (missing, or another's: the API answers 404 alike).
function notFound(root, what) {
  root.replaceChildren(el('h1', {}, 'Not found'),
    el('p', { 'data-notfound': '' }, `${what} does not exist or is not yours.`));
}

// A service provider's registrations on the payment platform (pay) and the
// versions of the keys it deposited (never the keys).
async function viewPayments(root, name) {
  root.append(el('h1', {}, 'Payment platform'));
  const pay = svc('pay');
  if (!pay.length) { root.append(el('p', { class: 'muted' }, 'The payment platform is not served here.')); return; }
  const pre = pay[0].prefix;
  if (!name) {
    const doc = await api('GET', `${pre}/sps?limit=100`);
    root.append(table([
      { h: 'Name', v: (r) => el('a', { href: `#/payments/${encodeURIComponent(r.name)}` }, r.name) },
      { h: 'Display name', v: (r) => r.display_name },
      { h: 'Kind', v: (r) => r.kind },
      { h: 'Back end', v: (r) => r.endpoint },
      { h: 'State', v: (r) => badge(r.revoked ? 'revoked' : 'active', r.revoked ? 'bad' : 'ok') },
    ], doc.items, 'No registration on the payment platform.'));
    return;
  }
  let sp;
  try {
    sp = await api('GET', `${pre}/sps/${encodeURIComponent(name)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) { notFound(root, `Registration ${name}`); return; }
    throw e;
  }
  const keys = await api('GET', `${pre}/sps/${encodeURIComponent(name)}/keys?limit=100`);
  root.append(el('section', { class: 'card', 'data-sp': sp.name },
    el('h2', {}, `${sp.display_name} (${sp.name})`),
    el('p', {}, `Kind ${sp.kind} · back end ${sp.endpoint} · `, badge(sp.revoked ? 'revoked' : 'active', sp.revoked ? 'bad' : 'ok')),
    el('h3', {}, 'Deposited keys'),
    table([
      { h: 'Type', v: (k) => k.key_type },
      { h: 'Version', v: (k) => k.version },
    ], keys.items, 'No key deposited.')),
    el('p', {}, el('a', { href: '#/payments' }, 'All registrations')));
}

// The TSM's services and their instances on SEs: a service provider sees its
// own (the API answers 404 for another's, shown as not-found), an operator all.
async function viewServices(root) {
  root.append(el('h1', {}, 'Services'));
  const [svcs, insts] = await Promise.all([
    api('GET', '/tsm/v1/services?limit=100'),
    api('GET', '/tsm/v1/service-instances?limit=100'),
  ]);
  root.append(el('h2', {}, 'Service definitions'), table([
    { h: 'Service', v: (x) => x.service },
    { h: 'Version', v: (x) => x.version },
    { h: 'Flavor', v: (x) => x.flavor },
    { h: 'SE type', v: (x) => x.se_type },
    { h: 'Application', v: (x) => el('code', {}, x.application_aid) },
  ], svcs.items, 'No service defined yet.'));
  root.append(el('h2', {}, 'On secure elements'), instanceTable(insts.items));
}

function instanceTable(rows) {
  return table([
    { h: 'Instance', v: (x) => el('a', { href: `#/instances/${x.id}` }, `#${x.id}`) },
    { h: 'SE (CIN)', v: (x) => el('code', {}, x.cin) },
    { h: 'Service', v: (x) => `${x.service} ${x.version}${x.flavor ? ` (${x.flavor})` : ''}` },
    { h: 'State', v: (x) => stateBadge(x.state) },
    { h: 'Keys held by', v: (x) => x.keys },
    { h: 'Updated', v: (x) => when(x.updated_at) },
  ], rows, 'No service on any SE yet.');
}

// One service instance: its state, its communications and the scripts run in
// them with the card's answers and the commands that failed.
async function viewInstances(root, id) {
  if (!id) {
    root.append(el('h1', {}, 'Service instances'));
    const insts = await api('GET', '/tsm/v1/service-instances?limit=100');
    root.append(instanceTable(insts.items));
    return;
  }
  let inst;
  try {
    inst = await api('GET', `/tsm/v1/service-instances/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 400)) { notFound(root, `Service instance ${id}`); return; }
    throw e;
  }
  root.append(el('h1', {}, `${inst.service} ${inst.version} on ${inst.cin}`),
    el('section', { class: 'card', 'data-instance': String(inst.id) },
      el('p', {}, 'State: ', stateBadge(inst.state), inst.reason ? ` — ${inst.reason}` : ''),
      el('p', { class: 'muted' }, `Application ${inst.application_aid} · security domain ${inst.sd_aid} · keys held by ${inst.keys}`)));
  const mine = [];
  for (let cur = null; ;) {
    const page = await api('GET', `/tsm/v1/communications?instance=${inst.id}&limit=100${cur ? `&cursor=${encodeURIComponent(cur)}` : ''}`);
    mine.push(...page.items);
    if (!page.next_cursor) break;
    cur = page.next_cursor;
  }
  root.append(el('h2', {}, 'Communications'));
  if (!mine.length) { root.append(el('p', { class: 'muted' }, 'No communication yet.')); return; }
  for (const c of mine) {
    const ops = await api('GET', `/tsm/v1/communications/${c.id}/scripts?limit=100`);
    root.append(el('section', { class: 'card', 'data-communication': String(c.id) },
      el('h3', {}, `Communication #${c.id} `, stateBadge(c.state)),
      el('p', { class: 'muted' }, `Bearer ${c.bearer} · format ${c.format} · ${c.scripts} of ${c.max_scripts} scripts · opened ${when(c.created_at)}${c.status ? ` · ended ${c.status}` : ''}`),
      ...(ops.items.length ? ops.items.map(scriptBox) : [el('p', { class: 'muted' }, 'No script sent.')])));
  }
}

function scriptBox(op) {
  const runs = op.results || [];
  return el('div', { class: 'script', 'data-operation': String(op.id) },
    el('p', {}, `Script #${op.id} (${op.purpose || op.kind}) `, stateBadge(op.state), op.reason ? ` — ${op.reason}` : ''),
    ...runs.map((r) => {
      const failed = new Set(r.failed || []);
      return el('div', {},
        el('p', { class: 'muted' }, `Security domain ${r.sd}: ${r.outcome}${failed.size ? ` — failed commands: ${[...failed].map((i) => i + 1).join(', ')}` : ''}`),
        el('ol', { class: 'rapdus' }, (r.rapdus || []).map((x, i) =>
          el('li', { class: failed.has(i) ? 'failed' : '' }, el('code', {}, x === null ? 'not run' : x)))));
    }));
}

// A service provider's webhook on the TSM: where completed operations are
// POSTed (signed with its secret, docs/webhooks.md).
async function viewWebhook(root) {
  root.append(el('h1', {}, 'Webhook'));
  const box = el('div', { class: 'card' });
  root.append(box);
  const load = async () => {
    let cur = null;
    try {
      cur = await api('GET', '/tsm/v1/webhook');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    const f = form([
      { name: 'url', label: 'URL the TSM POSTs completed operations to', type: 'url', required: true, value: cur ? cur.url : '', ph: 'https://bank.example/tsm-hook' },
      { name: 'secret', label: cur ? 'Signing secret (16 to 128 characters; a new one replaces the stored one)' : 'Signing secret (16 to 128 characters)', type: 'password', required: true },
    ], 'Save', async (v) => {
      await api('PUT', '/tsm/v1/webhook', { body: { url: v.url, secret: v.secret } });
      say('Webhook saved.');
      await load();
    }, 'stack');
    box.replaceChildren(
      el('p', { 'data-webhook': cur ? 'set' : 'none' }, cur
        ? ['Completed operations are POSTed to ', el('code', {}, cur.url), ` (secret version ${cur.key_version}).`]
        : 'No webhook: poll the operations instead.'),
      el('p', { class: 'muted' }, 'Each delivery is signed: X-OpenTSM-Signature is "v1=" and the hex HMAC-SHA-256 of "timestamp.body" under the secret; X-OpenTSM-Delivery is the same on every retry.'),
      f);
    const log = await api('GET', '/tsm/v1/webhook/deliveries?limit=100');
    logBox.replaceChildren(el('h2', {}, 'Delivery log'), table([
      { h: 'Delivery', v: (d) => `#${d.id}` },
      { h: 'Event', v: (d) => d.event },
      { h: 'State', v: (d) => stateBadge(d.state) },
      { h: 'Attempts', v: (d) => {
        const last = (d.log || [])[(d.log || []).length - 1];
        return last ? `${d.attempts} (last: ${last.status || 'no answer'}, ${last.ms} ms)` : String(d.attempts);
      } },
      { h: 'Sent', v: (d) => when(d.created_at_ms) },
      { h: 'Delivered', v: (d) => when(d.delivered_at_ms) },
      { h: 'Last error', v: (d) => d.last_error || '' },
    ], log.items, 'Nothing delivered yet.'));
  };
  const logBox = el('div', { 'data-deliveries': '' });
  root.append(logBox);
  await busy(null, load);
}

const VIEWS = {
  operator: [
    ['ses', 'Secure elements', viewSes],
    ['services', 'Services', viewServices],
    ['instances', 'Service instances', viewInstances],
    ['devices', 'Devices', viewDevices],
    ['jobs', 'OTA jobs', viewJobs],
    ['alerts', 'Alerts', viewAlerts],
    ['principals', 'Principals', viewPrincipals],
    ['audit', 'Audit', viewAudit],
  ],
  service_provider: [
    ['services', 'My services', viewServices],
    ['instances', 'Service instances', viewInstances],
    ['ses', 'Secure elements', viewSes],
    ['webhook', 'Webhook', viewWebhook],
    ['payments', 'Payment platform', viewPayments],
    ['tokens', 'My tokens', viewMyTokens],
  ],
  subscriber: [
    ['cards', 'My cards', viewCards],
    ['notify', 'Notifications', viewNotify],
    ['tokens', 'My tokens', viewMyTokens],
  ],
};

// ---- session and routing --------------------------------------------------------

function signedOut(why) {
  S.me = null;
  closeLive();
  $('nav').replaceChildren();
  $('who').textContent = '';
  $('signout').hidden = true;
  const view = $('view');
  view.replaceChildren($('signin') || signinTemplate);
  $('signin').hidden = false;
  view.removeAttribute('aria-busy');
  if (why) say(why, 'info');
}

let signinTemplate = null;

function closeLive() {
  for (const l of S.live) l.close();
  S.live = [];
}

function views() {
  return (S.me && VIEWS[S.me.principal.kind]) || [];
}

async function route() {
  if (!S.me) return;
  closeLive();
  const vs = views();
  const m = location.hash.match(/^#\/([a-z-]+)(?:\/([^/?#]+))?/) || [];
  const name = m[1];
  let arg = null;
  try { arg = m[2] ? decodeURIComponent(m[2]) : null; } catch { arg = m[2]; }
  const v = vs.find((x) => x[0] === name) || vs[0];
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.dataset.view === v[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = $('view');
  const root = el('div', { 'data-view': v[0] });
  view.replaceChildren(root);
  document.title = `${v[1]} · OpenTSM console`;
  say('');
  // The view is marked busy while it loads (assistive technology waits;
  // so do the browser tests before they read or click it).
  view.setAttribute('aria-busy', 'true');
  try {
    await busy(null, () => v[2](root, v[0] === name ? arg : null));
  } finally {
    if (view.firstChild === root) view.removeAttribute('aria-busy');
  }
}

async function signedIn(me) {
  S.me = me;
  const p = me.principal;
  $('who').textContent = `${p.display_name || p.name} (${p.kind.replace('_', ' ')})`;
  $('signout').hidden = false;
  try {
    const doc = await api('GET', '/admin/v1/services');
    S.services = doc.items;
  } catch { S.services = []; }
  $('nav').replaceChildren(...views().map(([id, label]) => el('a', { href: `#/${id}`, 'data-view': id }, label)));
  await route();
  $('view').focus();
}

async function start() {
  signinTemplate = $('signin');
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('token');
    const btn = ev.target.querySelector('button');
    busy(btn, async () => {
      const me = await api('POST', '/admin/v1/session', { bearer: input.value.trim(), quiet401: true })
        .catch((e) => { if (e.status === 401) throw new ApiError(401, { error: { message: 'That token is not valid.' } }); throw e; });
      input.value = '';
      await signedIn(me);
    });
  });
  $('signout').addEventListener('click', (ev) => busy(ev.target, async () => {
    await api('DELETE', '/admin/v1/session').catch(() => {});
    signedOut('Signed out.');
  }));
  window.addEventListener('hashchange', () => route());
  try {
    const me = await api('GET', '/admin/v1/session', { quiet401: true });
    await signedIn(me);
  } catch {
    signedOut();
  }
}

start();
