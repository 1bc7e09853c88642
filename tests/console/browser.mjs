// The console's browser checks (tests/console/console_test.sh starts tsmd and
// passes the URL and the tokens in the environment). Headless Debian chromium
// through puppeteer-core (tools/). Each check throws on failure; the process
// exits 1 with the failing check's message.
import { createRequire } from 'node:module';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const env = process.env;
const require = createRequire(path.join(env.NODE_PATH, 'noop.js'));
const puppeteer = require('puppeteer-core');

const URL0 = env.OT_URL;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
let step = 'start';

function check(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}

async function newPage(browser) {
  const ctx = await browser.createBrowserContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.cspViolations = [];
  page.consoleErrors = [];
  // CSP violations reported by the browser itself, from the first script on.
  await page.exposeFunction('__otCsp', (v) => page.cspViolations.push(v));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__otCsp(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error') page.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => page.consoleErrors.push(String(e)));
  return { ctx, page };
}

async function signIn(page, token) {
  const resp = await page.goto(`${URL0}/console`, { waitUntil: 'networkidle0' });
  check(resp.status() === 200, `console page status ${resp.status()}`);
  try {
    await page.waitForSelector('#token');
  } catch (e) {
    throw new Error(`${step}: no sign-in form (${page.url()}): ${(await page.content()).slice(0, 600)} ${page.consoleErrors.join('; ')}`);
  }
  await page.type('#token', token);
  await Promise.all([
    page.waitForSelector('#nav a'),
    page.click('#signin-form button[type=submit]'),
  ]);
  check(!(await page.content()).includes(token), 'the token stays in the page');
}

// Waits until the page has loaded, signed in or out, and rendered its view:
// the view is aria-busy until then, and no button is busy.
async function settled(page) {
  await page.waitForFunction(() => document.readyState === 'complete'
    && !document.querySelector('#view[aria-busy]') && !document.querySelector('.busy'), { polling: 100 });
}

// A viewport change between desktop and phone (isMobile) reloads the page:
// each screenshot, and the caller's next step, waits for the page to settle.
async function shot(page, name) {
  for (const [tag, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewport(vp);
    await settled(page);
    await new Promise((r) => setTimeout(r, 150));
    await page.screenshot({ path: path.join(env.OT_SHOTS, `${name}-${tag}.png`), fullPage: true });
  }
  await page.setViewport(DESKTOP);
  await settled(page);
}

// Clicks sel once it is there; a view rendered again meanwhile (the page's
// own routing after sign-in) detaches the element: then it is looked up again.
async function clickWhenReady(page, sel) {
  for (let i = 0; ; i++) {
    try {
      const h = await page.waitForSelector(sel);
      await h.click();
      return;
    } catch (e) {
      if (i >= 4) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function visit(page, view) {
  await page.goto(`${URL0}/console/index.html#/${view}`, { waitUntil: 'networkidle2' });
  await page.waitForSelector(`main [data-view="${view}"]`);
  await settled(page);
}

// In the page: fetch with the session cookie (and optionally the CSRF token).
async function pageFetch(page, method, url, body, withCsrf) {
  return page.evaluate(async (m, u, b, c) => {
    const h = { 'Content-Type': 'application/json', 'Idempotency-Key': crypto.randomUUID() };
    if (c) {
      const s = await (await fetch('/admin/v1/session')).json();
      h['X-CSRF-Token'] = s.csrf;
    }
    const r = await fetch(u, { method: m, headers: h, body: b ? JSON.stringify(b) : undefined });
    let j = null;
    try { j = await r.json(); } catch { j = null; }
    return { status: r.status, body: j };
  }, method, url, body, withCsrf);
}

async function operator(browser) {
  step = 'operator sign-in';
  const { ctx, page } = await newPage(browser);
  const first = await page.goto(`${URL0}/console/index.html`);
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && csp.includes("default-src 'none'")
    && csp.includes("frame-ancestors 'none'"), `CSP header: ${csp}`);
  check(first.headers()['x-content-type-options'] === 'nosniff', 'nosniff');
  await shot(page, 'signin');
  await signIn(page, env.OT_OP_TOKEN);

  step = 'session cookie';
  const cookies = await page.cookies();
  const c = cookies.find((k) => k.name === 'ot_session');
  check(c, 'no ot_session cookie');
  check(c.httpOnly === true, 'cookie not HttpOnly');
  check(c.secure === true, 'cookie not Secure');
  check(c.sameSite === 'Strict', `cookie SameSite=${c.sameSite}`);
  check(c.value !== env.OT_OP_TOKEN, 'the cookie holds the API token itself');
  check(!c.session && c.expires > Date.now() / 1000 && c.expires < Date.now() / 1000 + 700,
    `cookie lifetime: expires ${c.expires}`);
  const stored = await page.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)
    + document.documentElement.outerHTML);
  check(!stored.includes(env.OT_OP_TOKEN) && !stored.includes(c.value), 'a secret is in the page or in storage');

  step = 'operator finds an SE by MSISDN';
  await visit(page, 'ses');
  await page.select('main [data-view="ses"] select', 'msisdn');
  await page.type('main [data-view="ses"] input', '33612345678');
  await page.click('main [data-view="ses"] button[type=submit]');
  await page.waitForFunction(() => document.querySelector('main [data-view="ses"]').textContent.includes('A0000001000000000001'), { polling: 100 });
  await shot(page, 'operator-ses');

  step = 'CSRF';
  const noCsrf = await pageFetch(page, 'POST', '/admin/v1/principals', { kind: 'subscriber', name: 'csrf-victim' }, false);
  check(noCsrf.status === 403 && noCsrf.body.error.code === 'csrf', `POST without CSRF token: ${noCsrf.status}`);
  const withCsrf = await pageFetch(page, 'POST', '/admin/v1/principals', { kind: 'subscriber', name: 'csrf-ok' }, true);
  check(withCsrf.status === 201, `POST with CSRF token: ${withCsrf.status}`);

  step = 'operator views';
  for (const v of ['services', 'instances', 'devices', 'jobs', 'alerts', 'principals', 'audit']) {
    await visit(page, v);
    await shot(page, `operator-${v}`);
  }
  step = 'audit live tail and chain';
  await visit(page, 'audit');
  await page.waitForFunction(() => document.body.textContent.includes('Live: on'));
  const before = await page.$$eval('main [data-view="audit"] tbody tr', (r) => r.length);
  // A change made elsewhere shows up without a reload.
  const r = await fetch(`${URL0}/admin/v1/principals`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${env.OT_OP2_TOKEN}`, 'Content-Type': 'application/json', 'Idempotency-Key': 'live-1' },
    body: JSON.stringify({ kind: 'subscriber', name: 'live-tail' }),
  });
  check(r.status === 201, `principal for the live tail: ${r.status}`);
  await page.waitForFunction((n) => document.querySelectorAll('main [data-view="audit"] tbody tr').length > n, {}, before);
  const [verify] = await page.$$('xpath/.//button[contains(., "Verify the chain")]');
  await verify.click();
  await page.waitForFunction(() => document.body.textContent.includes('intact:'));

  step = 'CSP violations (operator)';
  check(page.cspViolations.length === 0, `CSP violations: ${page.cspViolations.join('; ')}`);
  check(page.consoleErrors.filter((e) => !e.startsWith('Failed to load resource')).length === 0, `console errors: ${page.consoleErrors.join('; ')}`);

  step = 'revoked token ends its session';
  const list = await (await fetch(`${URL0}/admin/v1/tokens?limit=100`, { headers: { Authorization: `Bearer ${env.OT_OP2_TOKEN}` } })).json();
  const mine = list.items.filter((t) => t.prefix === env.OT_OP_TOKEN.slice(0, 8) && !t.revoked_at);
  check(mine.length === 1, 'the first operator token is not listed');
  const del = await fetch(`${URL0}/admin/v1/tokens/${mine[0].id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${env.OT_OP2_TOKEN}` } });
  check(del.status === 200 || del.status === 204, `revoke: ${del.status}`);
  const after = await pageFetch(page, 'GET', '/admin/v1/session', null, false);
  check(after.status === 401, `session after revocation: ${after.status}`);
  await ctx.close();
}

async function serviceProvider(browser) {
  step = 'service provider';
  const { ctx, page } = await newPage(browser);
  await signIn(page, env.OT_SP_A);
  const nav = await page.$$eval('#nav a', (a) => a.map((x) => x.textContent));
  check(!nav.includes('Principals') && !nav.includes('Audit'), `SP sees operator views: ${nav}`);
  await visit(page, 'tokens');
  const text = await page.$eval('main [data-view="tokens"]', (e) => e.textContent);
  check(!text.includes(env.OT_SP_B.slice(0, 8)), 'SP A sees SP B\'s token');
  await shot(page, 'sp-tokens');
  step = 'service provider: its services and their state on SEs';
  await visit(page, 'services');
  const link = `main [data-view="services"] a[href="#/instances/${env.OT_INSTANCE}"]`;
  await page.waitForSelector(link);
  await page.waitForFunction(() => {
    const t = document.querySelector('main [data-view="services"]')?.textContent || '';
    return t.includes('payment') && t.includes('UnderDeployment:Installed') && t.includes('4F54534D45534501');
  }, { polling: 100 }).catch(() => {});
  const sv = await page.$eval('main [data-view="services"]', (e) => e.textContent);
  check(sv.includes('payment') && sv.includes('UnderDeployment:Installed') && sv.includes('4F54534D45534501'),
    `SP A's services: ${sv}`);
  await shot(page, 'sp-services');
  step = 'service provider: a communication, its script, R-APDUs and failed commands';
  await clickWhenReady(page, link);
  await page.waitForSelector('main [data-view="instances"] [data-communication] [data-operation]');
  const comm = await page.$eval('main [data-view="instances"] [data-communication]', (e) => e.textContent);
  check(/9000/.test(comm) && comm.includes('failed commands: 2'), `communication view: ${comm}`);
  check(await page.$('main [data-view="instances"] ol.rapdus li.failed'), 'the failed command is not marked');
  await shot(page, 'sp-instance');

  step = 'service provider: webhook settings';
  await visit(page, 'webhook');
  await page.waitForSelector('main [data-view="webhook"] [data-deliveries] table');
  const dl = await page.$eval('main [data-view="webhook"] [data-deliveries]', (e) => e.textContent);
  check(dl.includes('operation.') && dl.includes('pending') && !dl.includes('bank-a-secret'), `delivery log: ${dl}`);
  await page.$eval('main [data-view="webhook"] input[name="url"]', (e) => { e.value = ''; });
  await page.type('main [data-view="webhook"] input[name="url"]', 'https://bank-a.example/tsm-hook');
  await page.type('main [data-view="webhook"] input[name="secret"]', 'a-secret-of-bank-a-0123456789');
  await page.click('main [data-view="webhook"] button[type=submit]');
  await page.waitForSelector('main [data-view="webhook"] [data-webhook="set"]');
  const wh = await pageFetch(page, 'GET', '/tsm/v1/webhook', null, false);
  check(wh.status === 200 && wh.body.url === 'https://bank-a.example/tsm-hook' && !JSON.stringify(wh.body).includes('a-secret'),
    `webhook: ${wh.status} ${JSON.stringify(wh.body)}`);
  check(!(await page.content()).includes('a-secret-of-bank-a'), 'the secret stays in the page');
  await shot(page, 'sp-webhook');

  step = 'service provider: its own payment registration, not another\'s';
  await visit(page, 'payments');
  const regs = await page.$eval('main [data-view="payments"]', (e) => e.textContent);
  check(regs.includes('bank-a') && !regs.includes('bank-b'), `SP A's registrations: ${regs}`);
  await clickWhenReady(page, 'main [data-view="payments"] a[href="#/payments/bank-a"]');
  await page.waitForSelector('main [data-view="payments"] [data-sp="bank-a"]');
  const keys = await page.$eval('main [data-view="payments"] [data-sp="bank-a"]', (e) => e.textContent);
  check(keys.includes('emv_imk') && !keys.includes('00112233445566778899'), `bank A's keys: ${keys}`);
  await shot(page, 'sp-payments');
  await page.goto(`${URL0}/console/index.html#/payments/bank-b`, { waitUntil: 'networkidle2' });
  await page.waitForSelector('main [data-view="payments"] [data-notfound]');
  const nf = await page.$eval('main [data-view="payments"]', (e) => e.textContent);
  check(nf.includes('Not found') && !nf.includes('bank-b cards'), `forged address: ${nf}`);

  step = 'service provider: another\'s resource';
  const other = await pageFetch(page, 'GET', '/admin/v1/principals', null, false);
  check(other.status === 403, `SP lists principals: ${other.status}`);
  check(page.cspViolations.length === 0, `CSP violations: ${page.cspViolations.join('; ')}`);
  await ctx.close();
}

async function otherProvider(browser) {
  step = 'service provider B: nothing of A';
  const { ctx, page } = await newPage(browser);
  await signIn(page, env.OT_SP_B);
  await visit(page, 'services');
  const sv = await page.$eval('main [data-view="services"]', (e) => e.textContent);
  check(!sv.includes('4F54534D45534501') && !sv.includes('PAR-A'), `SP B sees A's service: ${sv}`);
  step = 'service provider B: a forged address to A\'s instance';
  await page.goto(`${URL0}/console/index.html#/instances/${env.OT_INSTANCE}`, { waitUntil: 'networkidle2' });
  await page.waitForSelector('main [data-view="instances"] [data-notfound]');
  const nf = await page.$eval('main [data-view="instances"]', (e) => e.textContent);
  check(nf.includes('Not found') && !nf.includes('80CA'), `forged address: ${nf}`);
  await shot(page, 'sp-notfound');
  check(page.cspViolations.length === 0, `CSP violations: ${page.cspViolations.join('; ')}`);
  await ctx.close();
}

async function subscriber(browser) {
  step = 'subscriber';
  const { ctx, page } = await newPage(browser);
  await signIn(page, env.OT_SUB);
  await visit(page, 'cards');
  const cardSel = 'main [data-view="cards"] [data-card="alice-visa"]';
  await page.waitForSelector(`${cardSel} [data-state="active"]`);
  await shot(page, 'subscriber-cards');

  step = 'subscriber: phone lost while off';
  page.on('dialog', (d) => d.accept());
  const [lost] = await page.$$(`xpath/.//section[@data-card="alice-visa"]//button[contains(., "My phone is lost")]`);
  check(lost, 'no "My phone is lost" button');
  await lost.click();
  await page.waitForSelector(`${cardSel} [data-state="awaiting_destroy"]`);
  const pending = await page.$eval(`${cardSel} [data-state]`, (e) => e.textContent);
  check(pending.startsWith('Pending'), `the card shows "${pending}", not pending`);
  await shot(page, 'subscriber-pending');
  const navs = await page.evaluate(() => performance.getEntriesByType('navigation').length);

  step = 'subscriber: the phone comes back, the page shows destroyed';
  execFileSync(env.OT_PHONE_ON, { stdio: 'inherit' });
  await page.waitForSelector(`${cardSel} [data-state="destroyed"]`, { timeout: 30000 });
  const label = await page.$eval(`${cardSel} [data-state]`, (e) => e.textContent);
  check(label === 'Destroyed', `the card shows "${label}"`);
  check(await page.evaluate(() => performance.getEntriesByType('navigation').length) === navs,
    'the page was reloaded');
  await shot(page, 'subscriber-destroyed');
  const [hist] = await page.$$(`xpath/.//section[@data-card="alice-visa"]//button[contains(., "History")]`);
  await hist.click();
  await page.waitForFunction((sel) => document.querySelector(sel).textContent.includes('destroyed')
    && document.querySelector(sel).querySelector('table'), { polling: 100 }, cardSel);
  step = 'subscriber: notification settings';
  await visit(page, 'notify');
  await page.type('main [data-view="notify"] input[name="email"]', 'alice@example.org');
  await page.click('main [data-view="notify"] input[name="supervision.hit"]');
  await page.click('main [data-view="notify"] button[type=submit]');
  await page.waitForFunction(() => document.body.textContent.includes('Notification settings saved'), { polling: 100 });
  const me = await pageFetch(page, 'GET', '/admin/v1/session', null, false);
  const ns = await pageFetch(page, 'GET', `/cms/v1/subscribers/${me.body.principal.id}/notifications`, null, false);
  check(ns.status === 200 && ns.body.email === 'alice@example.org', `settings: ${JSON.stringify(ns.body)}`);
  check(ns.body.events.length === 9 && !ns.body.events.includes('supervision.hit'), `events: ${ns.body.events}`);
  await shot(page, 'subscriber-notify');

  step = 'subscriber signs out';
  await page.click('#signout');
  await page.waitForSelector('#signin:not([hidden])');
  const after = await pageFetch(page, 'GET', '/admin/v1/session', null, false);
  check(after.status === 401, `session after sign-out: ${after.status}`);
  check(page.cspViolations.length === 0, `CSP violations: ${page.cspViolations.join('; ')}`);
  await ctx.close();
}

const browser = await puppeteer.launch({
  executablePath: env.OT_CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
let rc = 0;
try {
  await operator(browser);
  await serviceProvider(browser);
  await otherProvider(browser);
  await subscriber(browser);
  console.log('browser checks: ok');
} catch (e) {
  console.error(`FAIL [${step}] ${e.message}`);
  for (const p of await browser.pages()) {
    console.error(`page ${p.url()}: ${(await p.evaluate(() => document.body.innerText)).slice(0, 3000).replace(/\n/g, " | ")}`);
  }
  rc = 1;
} finally {
  await browser.close();
}
process.exit(rc);
