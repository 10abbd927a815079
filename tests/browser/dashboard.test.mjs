// The ARCP 2.1.2 admin dashboard in headless Chromium, through arcp-gateway.
//
// Run by tests/browser/run.sh, which starts the real ARCP server and the gateway and sets:
//   GATEWAY_URL            https://127.0.0.1:<port> (the gateway, development TLS)
//   GATEWAY_CA_FILE        the gateway's development CA (PEM); trusted through a private NSS
//                          database (certutil) in a throw-away HOME, never by ignoring errors
//   BROWSER_AGENT_KEYS     comma-separated ARCP agent keys; one agent is registered per key
// Optional:
//   BROWSER_SCREENSHOT_DIR screenshots and dashboard-events.json (default target/browser)
//   CHROMIUM_PATH          default /usr/bin/chromium (Debian's package)
//   GATEWAY_USER / GATEWAY_PASSWORD   default ARCP / ARCP
//   DASHBOARD_PIN          default 4827
//   BROWSER_STEP_TIMEOUT_MS  every wait's bound (default 20000, at least 10000)
//
// Prints one JSON line per step ({"step","ok","ms",...}) and exits non-zero on the first
// failed step (after a failure screenshot), or when the page logged errors / got refused
// requests from the gateway.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = process.env;
const BASE = required('GATEWAY_URL').replace(/\/+$/, '');
const ORIGIN = new URL(BASE).origin;
const CA_FILE = required('GATEWAY_CA_FILE');
const CA_PEM = fs.readFileSync(CA_FILE, 'utf8');
const AGENT_KEYS = required('BROWSER_AGENT_KEYS').split(',').map((k) => k.trim()).filter(Boolean);
const OUT = path.resolve(env.BROWSER_SCREENSHOT_DIR || 'target/browser');
const CHROMIUM = env.CHROMIUM_PATH || '/usr/bin/chromium';
const USER = env.GATEWAY_USER || 'ARCP';
const PASSWORD = env.GATEWAY_PASSWORD || 'ARCP';
const PIN = env.DASHBOARD_PIN || '4827';
const STEP_TIMEOUT = Math.max(10_000, Number(env.BROWSER_STEP_TIMEOUT_MS || 20_000));
// The page's `agents` frames arrive every 5 s (DASHBOARD_WS_INTERVAL); counters reset by the
// page's own second init pass come back only with the next one.
const LIVE_TIMEOUT = Math.max(STEP_TIMEOUT, 20_000);
// The dashboard counts as settled once it stayed visible with no modal this long.
const STABLE_MS = 2_000;

function required(name) {
  const v = env[name];
  if (!v) {
    console.error(`dashboard.test: ${name} must be set (run tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
}

const t0 = Date.now();
const events = []; // network, WebSocket, console and dialog events, written at the end
const note = (kind, data) => events.push({ t: +((Date.now() - t0) / 1000).toFixed(3), kind, ...data });
const redact = (s) => String(s).replace(/(token=)[^&\s"]+/g, '$1<redacted>').replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '<jwt>');

class StepError extends Error {}
function check(cond, message) {
  if (!cond) throw new StepError(message);
}

// Polls `probe` (async, returns a value) until `accept(value)` is true; bounded.
async function waitUntil(description, probe, accept = Boolean, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (accept(last)) return last;
    } catch (e) {
      if (e instanceof StepError) throw e;
      last = `error: ${e.message.split('\n')[0]}`;
    }
    if (Date.now() > deadline) {
      throw new StepError(`timed out after ${timeout} ms waiting for ${description}; last seen: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Visible text of a locator (first match), or null when absent/hidden.
async function visibleText(locator) {
  const first = locator.first();
  if ((await first.count()) === 0 || !(await first.isVisible())) return null;
  return (await first.innerText()).replace(/\s+/g, ' ').trim();
}

// Fails unless a page response has status 200; the body (read only then, bounded) goes
// into the message.
async function expectOk(res, what) {
  if (res.status() === 200) return;
  const body = await Promise.race([res.text().catch((e) => `(${e.message})`), new Promise((r) => setTimeout(() => r('(body not read)'), 5_000))]);
  throw new StepError(`${what} answered ${res.status()}: ${redact(body).slice(0, 500)}`);
}

async function expectVisibleText(locator, description, expected, timeout = STEP_TIMEOUT) {
  const accept = typeof expected === 'string' ? (t) => t === expected : (t) => t !== null && expected.test(t);
  return waitUntil(`${description} to read ${expected}`, () => visibleText(locator), accept, timeout);
}

// ---- HTTP to the gateway from Node (agent registration), trusting the same CA ----------

function call(method, urlPath, { token, body, headers = {} } = {}) {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${BASE}${urlPath}`,
      {
        method,
        ca: CA_PEM,
        timeout: STEP_TIMEOUT,
        headers: {
          Accept: 'application/json',
          ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}),
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${STEP_TIMEOUT} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// ---- the run --------------------------------------------------------------------------

const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const TYPES = ['testing', 'monitoring', 'automation', 'networking', 'security'];
const agents = AGENT_KEYS.map((key, i) => ({
  key,
  id: `browser-${run}-${i + 1}`,
  name: `Browser Agent ${i + 1}`,
  type: TYPES[i % TYPES.length],
  token: null, // the agent's own access token, for cleanup
}));

let page;
let context;
let shotNo = 0;
const screenshots = [];

async function screenshot(name) {
  shotNo += 1;
  const file = path.join(OUT, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, animations: 'disabled', timeout: STEP_TIMEOUT });
  screenshots.push(file);
  return path.relative(process.cwd(), file);
}

async function step(name, fn) {
  const started = Date.now();
  try {
    const detail = (await fn()) || {};
    console.log(JSON.stringify({ step: name, ok: true, ms: Date.now() - started, ...detail }));
  } catch (e) {
    const line = { step: name, ok: false, ms: Date.now() - started, error: redact(e.message.split('\n').slice(0, 6).join(' | ')) };
    if (page) {
      try {
        line.screenshot = await screenshot(`FAILED-${name}`);
      } catch {
        /* the page may be gone */
      }
    }
    console.log(JSON.stringify(line));
    throw e;
  }
}

// A private NSS database in a throw-away HOME holding the gateway's CA as a trusted root:
// Chromium on Linux reads $HOME/.pki/nssdb.
function trustCaInFreshHome() {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'arcp-browser-home-'));
  const db = path.join(home, '.pki', 'nssdb');
  fs.mkdirSync(db, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password'], { stdio: 'pipe' });
  execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'arcp-gateway development CA', '-i', CA_FILE], { stdio: 'pipe' });
  const listed = execFileSync('certutil', ['-d', `sql:${db}`, '-L'], { encoding: 'utf8' });
  check(/arcp-gateway development CA\s+C,,/.test(listed), `the CA is not in the NSS database: ${listed}`);
  return home;
}

// Answers every PIN prompt until the dashboard has been visible, with no modal, for STABLE_MS.
async function answerPinPromptsUntilStable(maxPrompts = 3, { expectPrompt = false } = {}) {
  const pinModal = page.locator('#pinModal');
  if (expectPrompt) await pinModal.waitFor({ state: 'visible' });
  const titles = [];
  const deadline = Date.now() + STEP_TIMEOUT + maxPrompts * STEP_TIMEOUT;
  let stableSince = null;
  for (;;) {
    check(Date.now() < deadline, `dashboard not stable in time; PIN prompts so far: ${JSON.stringify(titles)}`);
    if (await pinModal.isVisible()) {
      stableSince = null;
      check(titles.length < maxPrompts, `more than ${maxPrompts} PIN prompts: ${JSON.stringify(titles)}`);
      const title = await expectVisibleText(page.locator('#pinModalTitle'), '#pinModalTitle', /Session PIN/);
      titles.push(title);
      const setting = /^Set Session PIN/.test(title);
      await screenshot(setting ? 'pin-set-prompt' : 'pin-verify-prompt');
      const endpoint = setting ? '/auth/set_pin' : '/auth/verify_pin';
      const answered = page.waitForResponse((r) => r.url() === `${BASE}${endpoint}` && r.request().method() === 'POST', {
        timeout: STEP_TIMEOUT,
      });
      await page.locator('#pinInput').fill(PIN);
      await page.locator('#pinSubmitBtn').click();
      const res = await answered;
      await expectOk(res, `POST ${endpoint}`);
      await waitUntil('the PIN modal to close', async () => {
        const error = await visibleText(page.locator('#pinError'));
        check(!error, `the PIN modal shows an error: ${error}`);
        return !(await pinModal.isVisible());
      });
      continue;
    }
    const settled = (await page.locator('#dashboardContainer').isVisible()) && (await page.locator('#arcp-admin-login-modal').count()) === 0;
    if (!settled) stableSince = null;
    else if (stableSince === null) stableSince = Date.now();
    else if (Date.now() - stableSince >= STABLE_MS) return titles;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function totalAgents() {
  return (await page.locator('#totalAgents').innerText()).trim();
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const registered = [];

  await step('register-agents', async () => {
    for (const a of agents) {
      const temp = await call('POST', '/auth/agent/request_temp_token', {
        body: { agent_id: a.id, agent_type: a.type, agent_key: a.key },
      });
      check(temp.status === 200 && temp.json?.temp_token, `request_temp_token for ${a.id}: ${temp.status} ${redact(temp.text)}`);
      const reg = await call('POST', '/agents/register', {
        token: temp.json.temp_token,
        body: {
          agent_id: a.id,
          name: a.name,
          agent_type: a.type,
          endpoint: `http://127.0.0.1:9/${a.id}`,
          capabilities: ['browser', 'testing'],
          context_brief: 'Registered by the arcp-gateway browser test',
          version: '1.0.0',
          owner: 'arcp-gateway-browser-test',
          public_key: 'browser-test-public-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          communication_mode: 'remote',
          metadata: { purpose: 'browser-test' },
        },
      });
      check(reg.status === 200 && reg.json?.agent_id === a.id, `register ${a.id}: ${reg.status} ${redact(reg.text)}`);
      a.token = reg.json.access_token;
      registered.push(a.id);
    }
    return { agents: registered };
  });

  const home = trustCaInFreshHome();
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'arcp-browser-profile-'));
  try {
    await step('launch-chromium', async () => {
      // launchPersistentContext passes --user-data-dir (launch() refuses it in args).
      context = await chromium.launchPersistentContext(userData, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
        env: { ...env, HOME: home },
        viewport: { width: 1280, height: 800 },
        timeout: STEP_TIMEOUT,
      });
      context.setDefaultTimeout(STEP_TIMEOUT);
      // Only the gateway's origin: the page's CDN stylesheet (font-awesome) would otherwise
      // block its scripts for as long as the connection hangs.
      await context.route((url) => url.origin !== ORIGIN, (route) => route.abort('blockedbyclient'));
      page = context.pages()[0] || (await context.newPage());
      page.on('request', (r) => note('request', { method: r.method(), url: redact(r.url()), pin: r.headers()['x-session-pin'] ? 'present' : undefined }));
      page.on('response', (r) => note('response', { status: r.status(), method: r.request().method(), url: redact(r.url()) }));
      page.on('requestfailed', (r) => note('requestfailed', { method: r.method(), url: redact(r.url()), error: r.failure()?.errorText }));
      page.on('console', (m) => note('console', { type: m.type(), text: redact(m.text()) }));
      page.on('pageerror', (e) => note('pageerror', { text: redact(e.message) }));
      page.on('dialog', async (d) => {
        note('dialog', { type: d.type(), message: d.message() });
        // confirm() on Unregister must be accepted (Playwright would dismiss it).
        await d.accept();
      });
      page.on('websocket', (ws) => {
        note('websocket', { url: redact(ws.url()) });
        ws.on('framesent', (f) => note('ws-sent', { url: redact(ws.url()), type: frameType(f.payload) }));
        ws.on('framereceived', (f) => note('ws-received', { url: redact(ws.url()), type: frameType(f.payload), total_count: totalCount(f.payload) }));
        ws.on('socketerror', (e) => note('ws-error', { url: redact(ws.url()), error: String(e) }));
        ws.on('close', () => note('ws-close', { url: redact(ws.url()) }));
      });
      return { version: await page.evaluate(() => navigator.userAgent.match(/Chrome\/[\d.]+/)?.[0]) };
    });

    await step('open-login-page', async () => {
      const res = await page.goto(`${BASE}/dashboard`, { waitUntil: 'domcontentloaded', timeout: STEP_TIMEOUT });
      check(res && res.status() === 200, `GET /dashboard answered ${res?.status()}`);
      check(res.url().startsWith(`${ORIGIN}/`), `the page came from ${res.url()}`);
      await page.locator('#arcp-admin-login-modal #adminLoginForm').waitFor({ state: 'visible' });
      await expectVisibleText(page.locator('#arcp-admin-login-modal h3'), 'login heading', 'Admin Authentication');
      await expectVisibleText(page.locator('#adminLoginForm button[type=submit]'), 'login button', 'Login');
      check(!(await page.locator('#dashboardContainer').isVisible()), 'the dashboard is visible before login');
      return { tls: 'trusted CA (NSS)', screenshot: await screenshot('login') };
    });

    await step('login', async () => {
      const login = page.waitForResponse((r) => r.url() === `${BASE}/auth/login` && r.request().method() === 'POST');
      await page.locator('#adminUsername').fill(USER);
      await page.locator('#adminPassword').fill(PASSWORD);
      await page.locator('#adminLoginForm button[type=submit]').click();
      const res = await login;
      await expectOk(res, `POST /auth/login`);
      await expectVisibleText(page.locator('#pinModalTitle'), 'PIN modal title', /^Set Session PIN/);
      return { login_status: res.status() };
    });

    await step('pin', async () => {
      const prompts = await answerPinPromptsUntilStable(3, { expectPrompt: true });
      check(/^Set Session PIN/.test(prompts[0] || ''), `first PIN prompt was ${JSON.stringify(prompts[0])}`);
      return { prompts, screenshot: await screenshot('after-pin') };
    });

    await step('live-data', async () => {
      // Live means the periodic broadcast keeps arriving through the gateway: wait for the
      // next `agents` frame after the dashboard settled (every 5 s upstream).
      const agentFrames = () => events.filter((e) => e.kind === 'ws-received' && e.type === 'agents');
      const before = agentFrames().length;
      await waitUntil('a periodic "agents" frame on /dashboard/ws', async () => agentFrames().length > before, Boolean, LIVE_TIMEOUT);
      const latest = agentFrames().at(-1).total_count;
      check(latest === agents.length, `the latest agents frame says total_count ${latest}, expected ${agents.length}`);
      const status = page.locator('#connectionStatus');
      await waitUntil(
        '#connectionStatus to read exactly "Connected" without .disconnected',
        async () => ({
          text: await visibleText(status),
          disconnected: await status.evaluate((el) => el.classList.contains('disconnected')),
        }),
        (s) => s.text === 'Connected' && !s.disconnected,
        LIVE_TIMEOUT,
      );
      const expected = String(agents.length);
      await waitUntil(`#totalAgents to read ${expected}`, totalAgents, (t) => t === expected, LIVE_TIMEOUT);
      for (const a of agents) {
        await expectVisibleText(page.locator('#recentActivity'), '#recentActivity', new RegExp(`Agent ${a.id} is alive`), LIVE_TIMEOUT);
      }
      const received = events.filter((e) => e.kind === 'ws-received' && /\/dashboard\/ws/.test(e.url)).map((e) => e.type);
      for (const type of ['monitoring', 'health', 'agents']) {
        check(received.includes(type), `no "${type}" frame from /dashboard/ws; received: ${JSON.stringify([...new Set(received)])}`);
      }
      const wsUrl = events.find((e) => e.kind === 'websocket')?.url || '';
      check(wsUrl.startsWith(`wss://${new URL(BASE).host}/dashboard/ws`), `dashboard socket URL: ${wsUrl}`);
      check(events.some((e) => e.kind === 'ws-sent' && e.type === 'auth'), 'the page sent no auth frame');
      return { total_agents: expected, frames: [...new Set(received)], screenshot: await screenshot('overview-live') };
    });

    await step('monitoring-tab', async () => {
      await page.locator('.nav-item[data-tab="monitoring"]').click();
      await page.locator('#monitoring.tab-content.active').waitFor({ state: 'visible' });
      await expectVisibleText(page.locator('#websocketHealth'), '#websocketHealth', 'Connected', LIVE_TIMEOUT);
      return { screenshot: await screenshot('monitoring') };
    });

    await step('agents-list', async () => {
      await page.locator('.nav-item[data-tab="agents"]').click();
      await page.locator('#agents.tab-content.active').waitFor({ state: 'visible' });
      for (const a of agents) {
        const card = page.locator(`#agentsGrid .agent-card[data-agent-id="${a.id}"]`);
        await card.waitFor({ state: 'visible' });
        await expectVisibleText(card.locator('h4'), `${a.id} card name`, a.name);
        await expectVisibleText(card.locator('.agent-status'), `${a.id} card status`, 'ALIVE');
        await expectVisibleText(card.locator('button.btn-danger[title="Unregister Agent"]'), `${a.id} unregister button`, 'Unregister');
      }
      return { cards: agents.map((a) => a.id), screenshot: await screenshot('agents') };
    });

    const victim = agents[0];
    const remaining = agents.slice(1);
    await step('delete-agent', async () => {
      const card = page.locator(`#agentsGrid .agent-card[data-agent-id="${victim.id}"]`);
      const deleted = page.waitForResponse(
        (r) => r.url() === `${BASE}/agents/${victim.id}` && r.request().method() === 'DELETE',
        { timeout: 3 * STEP_TIMEOUT },
      );
      const dialogs = events.filter((e) => e.kind === 'dialog').length;
      await card.locator('button.btn-danger[title="Unregister Agent"]').click();
      await waitUntil('the confirm() dialog', async () => events.filter((e) => e.kind === 'dialog').length > dialogs);
      const prompts = await answerPinPromptsUntilStable(1, { expectPrompt: true });
      check(prompts.length === 1 && /^Enter Session PIN/.test(prompts[0]), `PIN prompts on delete: ${JSON.stringify(prompts)}`);
      const res = await deleted;
      const sentPin = res.request().headers()['x-session-pin'];
      check(sentPin === PIN, `DELETE /agents/${victim.id} carried X-Session-Pin ${JSON.stringify(sentPin)}`);
      await expectOk(res, `DELETE /agents/${victim.id}`);
      victim.token = null;
      await card.waitFor({ state: 'detached', timeout: LIVE_TIMEOUT });
      for (const a of remaining) {
        await page.locator(`#agentsGrid .agent-card[data-agent-id="${a.id}"]`).waitFor({ state: 'visible' });
      }
      const expected = String(remaining.length);
      await waitUntil(`#totalAgents to read ${expected}`, totalAgents, (t) => t === expected, LIVE_TIMEOUT);
      const confirm = events.filter((e) => e.kind === 'dialog').at(-1);
      return { deleted: victim.id, status: res.status(), confirm: confirm?.message, screenshot: await screenshot('agent-deleted') };
    });

    await step('logout', async () => {
      await page.locator('.nav-item[data-tab="settings"]').click();
      await page.locator('#settings.tab-content.active').waitFor({ state: 'visible' });
      await expectVisibleText(page.locator('#adminAuthStatus'), '#adminAuthStatus', new RegExp(`Admin: ${USER}\\b.*Logout`));
      await screenshot('settings');
      const logout = page.waitForResponse((r) => r.url() === `${BASE}/auth/logout` && r.request().method() === 'POST');
      const closes = events.filter((e) => e.kind === 'ws-close').length;
      await page.locator('#adminAuthStatus button', { hasText: 'Logout' }).click();
      const res = await logout;
      await expectOk(res, `POST /auth/logout`);
      await page.locator('#arcp-admin-login-modal #adminLoginForm').waitFor({ state: 'visible' });
      await expectVisibleText(page.locator('#arcp-admin-login-modal h3'), 'login heading', 'Admin Authentication');
      await waitUntil('the dashboard to be hidden', async () => !(await page.locator('#dashboardContainer').isVisible()));
      await waitUntil('the dashboard socket to close', async () => events.filter((e) => e.kind === 'ws-close').length > closes);
      const token = await page.evaluate(() => localStorage.getItem('arcp-admin-token'));
      check(token === null, 'the admin token is still in localStorage');
      return { screenshot: await screenshot('logged-out') };
    });

    await step('no-errors', async () => {
      // Requests to the gateway that failed or were refused, and script errors. Requests
      // blocked by the route above (other origins) are expected.
      const refused = events.filter((e) => e.kind === 'response' && e.status >= 400);
      const failed = events.filter((e) => e.kind === 'requestfailed' && e.url.startsWith(ORIGIN));
      const errors = events.filter((e) => e.kind === 'pageerror' || (e.kind === 'console' && e.type === 'error' && !/ERR_BLOCKED_BY_CLIENT/.test(e.text)));
      // The only dialog is Unregister's confirm(); an alert() is how the page reports failures.
      const dialogs = events.filter((e) => e.kind === 'dialog' && e.type !== 'confirm');
      const problems = [...refused, ...failed, ...errors, ...dialogs];
      check(problems.length === 0, `problems: ${JSON.stringify(problems)}`);
      const blocked = [...new Set(events.filter((e) => e.kind === 'requestfailed').map((e) => new URL(e.url).host))];
      return { blocked_hosts: blocked };
    });
  } finally {
    // Agents still registered unregister themselves with their own token (no PIN needed).
    for (const a of agents.filter((x) => x.token)) {
      await call('DELETE', `/agents/${a.id}`, { token: a.token }).then(
        (r) => note('cleanup', { agent: a.id, status: r.status }),
        (e) => note('cleanup', { agent: a.id, error: e.message }),
      );
    }
    fs.writeFileSync(path.join(OUT, 'dashboard-events.json'), JSON.stringify(events, null, 1));
    if (context) await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(userData, { recursive: true, force: true });
  }
}

function frameType(payload) {
  try {
    return JSON.parse(String(payload)).type ?? '(no type)';
  } catch {
    return String(payload).slice(0, 20);
  }
}

function totalCount(payload) {
  try {
    const m = JSON.parse(String(payload));
    return m.type === 'agents' ? m.data?.total_count ?? m.total_count : undefined;
  } catch {
    return undefined;
  }
}

// The whole test is also bounded here, in case run.sh's timeout is not in place.
const overall = setTimeout(() => {
  console.error(`dashboard.test: gave up after ${Math.round((Date.now() - t0) / 1000)} s`);
  process.exit(124);
}, Number(env.BROWSER_TEST_BUDGET_MS || 240_000));
overall.unref();

main().then(
  () => {
    console.log(JSON.stringify({ step: 'total', ok: true, ms: Date.now() - t0, screenshots: screenshots.length, dir: path.relative(process.cwd(), OUT) || '.' }));
    process.exit(0);
  },
  (e) => {
    if (!(e instanceof StepError)) console.error(e);
    console.log(JSON.stringify({ step: 'total', ok: false, ms: Date.now() - t0, events: path.relative(process.cwd(), path.join(OUT, 'dashboard-events.json')) }));
    process.exit(1);
  },
);
