// Browser tests of the imx web UI: Debian's chromium (never a downloaded
// browser) driven by playwright-core, against a real `imx serve` that
// gateway/tests/it/ui_browser.rs started. Usage:
//   node ui.test.mjs SCENARIO
// with IMX_UI_BASE (http://127.0.0.1:PORT), IMX_UI_KEYS (JSON: admin,
// operator, viewer API keys) and IMX_UI_SHOTS (a folder for screenshots).
// Prints one line per check and exits 0 only when every check passed.
import {chromium} from 'playwright-core';
import {mkdtempSync, rmSync, readFileSync, mkdirSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, dirname} from 'node:path';
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const BASE = process.env.IMX_UI_BASE;
const KEYS = JSON.parse(process.env.IMX_UI_KEYS || '{}');
const SHOTS = process.env.IMX_UI_SHOTS || join(tmpdir(), 'imx-ui-shots');
const WAIT = 20000;
mkdirSync(SHOTS, {recursive: true});

let failures = 0;
function check(condition, what) {
  if (condition) console.log(`ok - ${what}`);
  else { failures += 1; console.log(`not ok - ${what}`); }
}

/** A GraphQL call with an API key, as a script would (test set-up). */
async function api(key, query, variables = {}) {
  const response = await fetch(`${BASE}/graphql`, {
    method: 'POST',
    headers: {'content-type': 'application/json', authorization: `Bearer ${key}`},
    body: JSON.stringify({query, variables}),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function register(source) {
  const data = await api(KEYS.admin, 'mutation($s: String!) { registerWorkflow(source: $s) { __typename ... on WorkflowRejected { diagnostics { message } } } }', {s: source});
  if (data.registerWorkflow.__typename !== 'Workflow') throw new Error(JSON.stringify(data));
}

async function startRun(workflow, input = {}) {
  const data = await api(KEYS.admin, 'mutation($w: String!, $i: JSON) { startRun(workflow: $w, input: $i) { run { id } } }', {w: workflow, i: input});
  return data.startRun.run.id;
}

async function runStatus(id) {
  return (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { status } }', {id})).run.status;
}

async function waitStatus(id, statuses, wait = WAIT) {
  const deadline = Date.now() + wait;
  for (;;) {
    const status = await runStatus(id);
    if (statuses.includes(status)) return status;
    if (Date.now() > deadline) throw new Error(`run ${id} is still ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'imx-chromium-'));
  // A fresh profile folder every time (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: {width: 1280, height: 900},
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {context, profile};
}

async function signIn(page, key) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#credential', {timeout: WAIT});
  await page.fill('#credential', key);
  await page.click('form.sign-in button[type=submit]');
  await page.waitForSelector('h1:text("Runs")', {timeout: WAIT});
}

async function axe(page, what) {
  // The CSP forbids inline scripts: axe's source is evaluated through
  // the DevTools protocol instead of a <script> tag.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const report = await axe.run(document, {resultTypes: ['violations']});
    return report.violations.map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}));
  });
  const bad = result.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
  check(bad.length === 0, `axe-core: no serious or critical violation on ${what}${bad.length ? ` ${JSON.stringify(bad)}` : ''}`);
}

async function shot(page, name) {
  await page.screenshot({path: join(SHOTS, `${name}.png`), fullPage: true});
}

const WORKFLOWS = {
  slow: `name: ui-slow
steps:
  first: { uses: sleep, with: { duration: 1500ms } }
  fan:
    needs: [first]
    for_each: "{{ [1, 2, 3] }}"
    uses: noop
    with: { n: "{{ item }}" }
  approve:
    needs: [fan]
    uses: approval
    with: { message: "Ship it?" }
  done: { uses: noop, needs: [approve] }
`,
  fail: `name: ui-fail
steps:
  prepare: { uses: noop }
  broken:
    needs: [prepare]
    uses: fail
    retry: { max_attempts: 2, backoff: fixed, initial_interval: 10ms }
    with: { message: "the disk is full" }
`,
  wait: `name: ui-wait
steps:
  hold: { uses: approval, with: { message: "hold" } }
`,
  xss: `name: ui-xss
steps:
  html: { uses: noop, with: { text: "<img src=x onerror=alert(1)>" } }
`,
  form: `name: ui-form
triggers:
  - cron: "0 0 3 * * *"
    timezone: Europe/Berlin
    input: { order_id: nightly, qty: 5 }
input:
  type: object
  required: [order_id, qty]
  properties:
    order_id: { type: string, minLength: 3, description: "The order to ship" }
    qty: { type: integer, minimum: 1, multipleOf: 5 }
    express: { type: boolean }
steps:
  ship: { uses: noop, with: { order: "{{ input.order_id }}" } }
`,
  large: `name: ui-large
steps:
  items:
    for_each: "{{ range(1000) | list }}"
    uses: noop
    with: { n: "{{ item }}" }
`,
  // 5,000 items: two events each, over 10,000 events in all, then two
  // approvals that keep the run open for a live update.
  huge: `name: ui-huge
steps:
  items:
    for_each: "{{ range(5000) | list }}"
    uses: noop
    with: { n: "{{ item }}" }
  hold:
    needs: [items]
    uses: approval
    with: { message: "hold" }
  after:
    needs: [hold]
    uses: approval
    with: { message: "after" }
`,
  forkable: `name: ui-fork
steps:
  fetch: { uses: noop, with: { order: 42 } }
  pack:
    needs: [fetch]
    uses: noop
    with: { order: "{{ steps.fetch.output.order }}" }
`,
  // Registered with a warning: \`needs\` lists \`first\` twice (line 5).
  warn: `name: ui-warn
steps:
  first: { uses: noop }
  second:
    needs: [first, first]
    uses: noop
`,
  many: `name: ui-many
steps:
  one: { uses: noop }
`,
};

const scenarios = {
  /** Sign in; the runs list shows the runs; filters and pagination work. */
  async runs_list(page) {
    await register(WORKFLOWS.many);
    await register(WORKFLOWS.fail);
    const ids = [];
    for (let i = 0; i < 23; i += 1) ids.push(await startRun('ui-many'));
    const failed = await startRun('ui-fail');
    await waitStatus(failed, ['FAILED']);
    await waitStatus(ids[ids.length - 1], ['SUCCEEDED']);

    await page.goto(`${BASE}/`);
    await page.waitForSelector('#credential', {timeout: WAIT});
    check(page.url().includes('#/signin'), 'signed out, / asks to sign in');
    await axe(page, 'the sign-in page');
    await shot(page, 'sign-in');
    await page.fill('#credential', 'imx_not_a_key');
    await page.click('form.sign-in button[type=submit]');
    await page.waitForSelector('#sign-in-error:not(:empty)', {timeout: WAIT});
    check(/unknown API key/.test(await page.textContent('#sign-in-error')), 'a wrong key is refused with a message');
    await page.fill('#credential', KEYS.viewer);
    await page.click('form.sign-in button[type=submit]');
    await page.waitForSelector('table.runs tbody tr', {timeout: WAIT});
    const cookies = await page.context().cookies();
    const session = cookies.find((cookie) => cookie.name === 'imx_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
    check(await page.evaluate(() => document.cookie === '' && localStorage.length === 0 && sessionStorage.length === 0),
      'no token in script-readable storage');
    let rows = await page.$$('table.runs tbody tr');
    check(rows.length === 20, `the first page shows 20 runs (${rows.length})`);
    const firstRow = await page.getAttribute('table.runs tbody tr:first-child', 'data-run-id');
    check(firstRow === failed, 'newest first: the last run started is on top');
    check(await page.$(`tr.status-failed[data-run-id="${failed}"]`) !== null, 'the failed run stands out');
    await axe(page, 'the runs page');
    await shot(page, 'runs');

    await page.click('#page-older');
    await page.waitForFunction((first) => {
      const top = document.querySelector('table.runs tbody tr');
      return top && top.dataset.runId !== first;
    }, firstRow, {timeout: WAIT});
    rows = await page.$$('table.runs tbody tr');
    check(rows.length === 4, `the second page shows the 4 older runs (${rows.length})`);
    check(await page.isDisabled('#page-older'), 'no page older than the last');
    await page.click('#page-newer');
    await page.waitForFunction((first) => document.querySelector('table.runs tbody tr')?.dataset.runId === first, firstRow, {timeout: WAIT});
    check(true, 'Newer goes back to the first page');

    await page.selectOption('#filter-status', 'FAILED');
    await page.click('form.filters button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('table.runs tbody tr').length === 1, null, {timeout: WAIT});
    check(await page.getAttribute('table.runs tbody tr', 'data-run-id') === failed, 'the status filter shows only the failed run');
    await page.selectOption('#filter-status', '');
    await page.selectOption('#filter-workflow', 'ui-many');
    await page.click('form.filters button[type=submit]');
    await page.waitForFunction(() => !document.querySelector('tr[data-run-id] td:nth-child(2)')?.textContent.includes('ui-fail')
      && [...document.querySelectorAll('table.runs tbody tr td:nth-child(2)')].every((cell) => cell.textContent === 'ui-many'), null, {timeout: WAIT});
    check(true, 'the workflow filter shows only that workflow');
    await page.fill('#filter-from', '2000-01-01T00:00');
    await page.fill('#filter-to', '2001-01-01T00:00');
    await page.click('form.filters button[type=submit]');
    await page.waitForSelector('p.state.empty', {timeout: WAIT});
    check(true, 'a time range without runs shows the empty state');

    // Live: a run started now appears on the first page without reload.
    await page.goto(`${BASE}/#/runs`);
    await page.waitForSelector('table.runs tbody tr', {timeout: WAIT});
    await page.waitForFunction(() => document.getElementById('live-status')?.textContent.startsWith('Live'), null, {timeout: WAIT});
    await page.evaluate(() => { window.notReloaded = true; });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const fresh = await startRun('ui-many');
    await page.waitForSelector(`tr[data-run-id="${fresh}"]`, {timeout: WAIT});
    check(await page.evaluate(() => window.notReloaded === true), 'a new run appears live, without reload');

    // Search by id.
    await page.fill('#search-id', 'not-an-id');
    await page.click('form.search button[type=submit]');
    check(/UUID/.test(await page.textContent('form.search .field-error')), 'searching a malformed id explains what an id is');
    await page.fill('#search-id', failed);
    await page.click('form.search button[type=submit]');
    await page.waitForSelector('section.run-header', {timeout: WAIT});
    check(page.url().endsWith(`#/runs/${failed}`), 'searching an id opens that run');
  },

  /** A run progresses while its page is open; the DAG changes live; an approval from the UI finishes it. */
  async live_run_and_approval(page) {
    await register(WORKFLOWS.slow);
    await signIn(page, KEYS.admin);
    const id = await startRun('ui-slow');
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('svg.dag g.node[data-step="first"]', {timeout: WAIT});
    await page.evaluate(() => { window.notReloaded = true; });
    const before = await page.getAttribute('g.node[data-step="done"]', 'data-status');
    check(before === 'pending', `the last step starts pending (${before})`);
    await shot(page, 'run-live');
    await page.waitForSelector('g.node[data-step="first"][data-status="succeeded"]', {timeout: WAIT});
    await page.waitForSelector('g.node[data-step="approve"][data-status="waiting"]', {timeout: WAIT});
    check(await page.evaluate(() => window.notReloaded === true), 'the DAG statuses changed live, without reload');
    const fanStatus = await page.textContent('g.node[data-step="fan"] .node-status');
    check(/3\/3 items/.test(fanStatus), `for_each progress is shown (${fanStatus})`);
    await axe(page, 'the run page');

    await page.click('g.node[data-step="approve"]');
    await page.waitForSelector('#action-approve', {timeout: WAIT});
    await page.click('#action-approve');
    await page.waitForSelector('dialog.confirm[open]', {timeout: WAIT});
    await axe(page, 'the confirmation dialog');
    await page.fill('#dialog-comment', 'looks good');
    await page.click('dialog.confirm button[type=submit]');
    await page.waitForSelector('g.node[data-step="done"][data-status="succeeded"]', {timeout: WAIT});
    await page.waitForSelector('.run-header .badge.status-succeeded', {timeout: WAIT});
    check(await runStatus(id) === 'SUCCEEDED', 'approved from the UI, the run finished');
    check(await page.evaluate(() => window.notReloaded === true), 'still the same page');

    // The timeline, the state at a seq, verify history.
    const seqs = await page.$$eval('table.events tbody tr', (rows) => rows.map((row) => Number(row.dataset.seq)));
    check(seqs.length > 5 && seqs.every((seq, index) => seq === index + 1), `the timeline lists every event in seq order (${seqs.length})`);
    await page.click('table.events tbody tr:nth-child(2) button');
    await page.waitForSelector('#snapshot h3', {timeout: WAIT});
    check(/State after seq 2/.test(await page.textContent('#snapshot h3')), 'runAt shows the state at an earlier seq');
    await page.click('#action-verify');
    await page.waitForSelector('#verify-result.ok', {timeout: WAIT});
    const verified = await page.textContent('#verify-result');
    check(/History verified: \d+ events, head seq \d+, head hash [0-9a-f]{64}/.test(verified), `verify history shows the head hash (${verified.slice(0, 60)}…)`);
    await page.click('g.node[data-step="fan"]');
    await page.waitForSelector('ol.executions li', {timeout: WAIT});
    const items = await page.$$('ol.executions li');
    check(items.length === 3, 'a for_each step shows its item executions');
    await shot(page, 'run');
  },

  /** Cancel and retry from the UI; a viewer sees no action; a forged mutation without the CSRF token is refused. */
  async actions_roles_csrf(page) {
    await register(WORKFLOWS.wait);
    await register(WORKFLOWS.fail);
    const waiting = await startRun('ui-wait');
    const failed = await startRun('ui-fail');
    await waitStatus(waiting, ['WAITING']);
    await waitStatus(failed, ['FAILED']);

    await signIn(page, KEYS.operator);
    await page.goto(`${BASE}/#/runs/${waiting}`);
    await page.waitForSelector('#action-cancel', {timeout: WAIT});
    check(await page.$('#action-approve') === null, 'an operator without the approver role gets no approve button');
    await page.click('#action-cancel');
    await page.waitForSelector('dialog.confirm[open]', {timeout: WAIT});
    await page.click('dialog.confirm button.secondary');
    check(await runStatus(waiting) === 'WAITING', 'cancelling the confirmation changes nothing');
    await page.click('#action-cancel');
    await page.fill('#dialog-reason', 'not needed');
    await page.click('dialog.confirm button[type=submit]');
    await page.waitForSelector('.run-header .badge.status-cancelled', {timeout: WAIT});
    check(await runStatus(waiting) === 'CANCELLED', 'cancelled from the UI');

    await page.goto(`${BASE}/#/runs/${failed}`);
    await page.waitForSelector('#action-retry', {timeout: WAIT});
    await page.click('g.node[data-step="broken"]');
    await page.waitForSelector('#step-error', {timeout: WAIT});
    check(/the disk is full/.test(await page.textContent('#step-error')), 'the failed step shows its error');
    // Attempt numbers never repeat within a step: a retry continues after the last.
    const lastAttempt = async () => (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { step(id: "broken") { executions(limit: 1) { attempt } } } }', {id: failed})).run.step.executions[0].attempt;
    const attemptsBefore = await lastAttempt();
    await page.click('#action-retry');
    await page.click('dialog.confirm button[type=submit]');
    await page.waitForFunction(() => [...document.querySelectorAll('table.events td')].some((cell) => cell.textContent.startsWith('run.retry_requested')), null, {timeout: WAIT});
    await waitStatus(failed, ['FAILED']);
    const attemptsAfter = await lastAttempt();
    check(attemptsAfter > attemptsBefore, `retried from the UI: the step ran again (last attempt ${attemptsBefore} → ${attemptsAfter})`);

    // A viewer: no action buttons (verify history is not an action on the run).
    await page.click('#sign-out');
    await page.waitForSelector('#credential', {timeout: WAIT});
    const afterSignOut = await page.evaluate(async () => (await fetch('/ui/session')).status);
    check(afterSignOut === 401, 'signed out on the server');
    await page.fill('#credential', KEYS.viewer);
    await page.click('form.sign-in button[type=submit]');
    await page.waitForSelector('table.runs', {timeout: WAIT});
    await page.goto(`${BASE}/#/runs/${failed}`);
    await page.waitForSelector('#action-verify', {timeout: WAIT});
    const buttons = await page.$$eval('.actions button', (list) => list.map((button) => button.id));
    check(buttons.length === 1 && buttons[0] === 'action-verify', `a viewer sees no action buttons (${buttons})`);
    await shot(page, 'run-viewer');

    // Forged mutations: the session cookie goes along, the CSRF token does not.
    await signOutAndIn(page, KEYS.operator);
    const other = await startRun('ui-wait');
    await waitStatus(other, ['WAITING']);
    const forged = await page.evaluate(async (runId) => {
      const response = await fetch('/graphql', {method: 'POST', headers: {'content-type': 'application/json'},
        body: JSON.stringify({query: `mutation { cancelRun(id: "${runId}") { status } }`})});
      return {status: response.status, body: await response.json()};
    }, other);
    check(forged.status === 403 && forged.body.errors[0].extensions.code === 'FORBIDDEN', `a mutation without the CSRF token is refused (${forged.status})`);
    const wrong = await page.evaluate(async (runId) => {
      const response = await fetch('/graphql', {method: 'POST', headers: {'content-type': 'application/json', 'x-imx-csrf': 'guessed'},
        body: JSON.stringify({query: `mutation { cancelRun(id: "${runId}") { status } }`})});
      return response.status;
    }, other);
    check(wrong === 403, 'a mutation with a wrong CSRF token is refused');
    // A form posted from another site: the browser does not even send the cookie (SameSite=Strict), and without a token nothing happens.
    check(await runStatus(other) === 'WAITING', 'the forged mutations changed nothing');
  },

  /** Start a run from the form: invalid input gives field errors and starts nothing; a valid one starts. */
  async start_form(page) {
    await register(WORKFLOWS.form);
    await signIn(page, KEYS.operator);
    const count = async () => (await api(KEYS.admin, '{ runs(filter: {workflow: "ui-form"}, first: 100) { edges { node { id } } } }')).runs.edges.length;
    await page.goto(`${BASE}/#/workflows`);
    await page.waitForSelector('table.workflows', {timeout: WAIT});
    await axe(page, 'the workflows page');
    await page.click('a[href="#/workflows/ui-form"]');
    await page.waitForSelector('form.start-run', {timeout: WAIT});
    check(await page.$('table.source td.line-number') !== null, 'the source is shown with line numbers');
    check(await page.$('svg.dag g.node[data-step="ship"]') !== null, 'the workflow page draws the DAG');
    await axe(page, 'a workflow page');
    const fires = await page.$$eval('table.schedules tbody tr td:last-child li', (items) => items.map((item) => item.textContent));
    check(fires.length === 5 && fires.every((fire) => /03:00:00Z|02:00:00Z/.test(fire)), `the cron trigger shows its next five fire times (${fires.join(', ')})`);
    await page.click('#start-run');
    await page.waitForSelector('#input-order_id-error:not(:empty)', {timeout: WAIT});
    check(/required/.test(await page.textContent('#input-order_id-error')), 'browser check: a required field left empty is named');
    check(/required/.test(await page.textContent('#input-qty-error')), 'browser check: every missing field at once');
    await page.fill('#input-order_id', 'ab');
    await page.fill('#input-qty', '0');
    await page.click('#start-run');
    await page.waitForFunction(() => /at least 3/.test(document.getElementById('input-order_id-error').textContent)
      && /at least 1/.test(document.getElementById('input-qty-error').textContent), null, {timeout: WAIT});
    check(true, 'browser check: lengths and minimums by the fields');
    // multipleOf is left to the server: its error lands by the field too.
    await page.fill('#input-order_id', 'A-1001');
    await page.fill('#input-qty', '3');
    await page.click('#start-run');
    await page.waitForSelector('#input-qty-error:not(:empty)', {timeout: WAIT});
    const serverError = await page.textContent('#input-qty-error');
    check(/multiple of 5/.test(serverError), `server check: the schema error is shown by its field (${serverError})`);
    await shot(page, 'workflow-form-errors');
    check(await count() === 0, 'nothing started by invalid input');
    await page.fill('#input-qty', '10');
    await page.click('#start-run');
    await page.waitForSelector('#started-run', {timeout: WAIT});
    check(await count() === 1, 'a valid input starts one run');
    await page.click('#started-run');
    await page.waitForSelector('section.run-header', {timeout: WAIT});
    check(true, 'the started run opens');
  },

  /** Pause, resume, reject with a comment, skip and rewind from the UI, each confirmed and recorded. */
  async surgery_and_reject(page) {
    await register(WORKFLOWS.wait);
    const id = await startRun('ui-wait');
    await waitStatus(id, ['WAITING']);
    await signIn(page, KEYS.admin);
    await page.goto(`${BASE}/#/runs/${id}`);
    const confirm = async (button, fields = {}) => {
      await page.click(button);
      await page.waitForSelector('dialog.confirm[open]', {timeout: WAIT});
      for (const [field, value] of Object.entries(fields)) await page.fill(`#dialog-${field}`, value);
      await page.click('dialog.confirm button[type=submit]');
    };
    const badge = (status) => page.waitForSelector(`.run-header .badge.status-${status}`, {timeout: WAIT});
    await page.waitForSelector('#action-pause', {timeout: WAIT});
    await confirm('#action-pause', {reason: 'maintenance'});
    await badge('paused');
    check(await runStatus(id) === 'PAUSED', 'paused from the UI');
    await confirm('#action-resume', {reason: 'done'});
    await badge('waiting');
    check(await runStatus(id) === 'WAITING', 'resumed from the UI');

    await page.click('g.node[data-step="hold"]');
    await page.waitForSelector('#action-reject', {timeout: WAIT});
    await page.click('#action-reject');
    await page.waitForSelector('dialog.confirm[open]', {timeout: WAIT});
    await page.click('dialog.confirm button[type=submit]');
    check(/Comment is required/.test(await page.textContent('dialog.confirm .field-error')), 'a rejection asks for a comment');
    await page.fill('#dialog-comment', 'not today');
    await page.click('dialog.confirm button[type=submit]');
    await badge('failed');
    const rejected = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { step(id: "hold") { executions { approval } } } }', {id})).run.step.executions[0].approval;
    check(rejected && rejected.granted === false && rejected.comment === 'not today', 'rejected from the UI with the comment');

    await page.waitForSelector('#action-skip', {timeout: WAIT});
    await confirm('#action-skip', {output: '{"approved_by": "phone"}', reason: 'approved by phone'});
    await badge('succeeded');
    const skipped = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { status step(id: "hold") { skippedBy output } } }', {id})).run;
    check(skipped.status === 'SUCCEEDED' && /approved by phone/.test(skipped.step.skippedBy) && skipped.step.output.approved_by === 'phone',
      'a failed step skipped from the UI with an output; the run succeeded');

    await confirm('#action-rewind', {reason: 'ask again'});
    await badge('waiting');
    check(await runStatus(id) === 'WAITING', 'rewound from the UI: the step waits again');
    const types = await page.$$eval('table.events tbody td:nth-child(2)', (cells) => cells.map((cell) => cell.textContent.split(' ')[0]));
    for (const type of ['run.paused', 'run.resumed', 'step.bypassed', 'run.rewound']) {
      check(types.includes(type), `the timeline shows ${type}`);
    }
  },

  /** A run with 1,000 for_each items and thousands of events stays usable: everything long is paged. */
  async large_run(page) {
    await register(WORKFLOWS.large);
    const id = await startRun('ui-large');
    await waitStatus(id, ['SUCCEEDED']);
    const events = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { lastSeq } }', {id})).run.lastSeq;
    await signIn(page, KEYS.viewer);
    const began = Date.now();
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('g.node[data-step="items"][data-status="succeeded"]', {timeout: WAIT});
    await page.waitForSelector('table.events tbody tr', {timeout: WAIT});
    console.log(`# ${events} events; the run page showed the DAG and the first events after ${Date.now() - began} ms`);
    check(/1000\/1000 items/.test(await page.textContent('g.node[data-step="items"] .node-status')), 'the DAG shows 1000/1000 items');
    check((await page.$$('table.events tbody tr')).length === 50, `the timeline shows the first 50 of ${events} events`);
    await page.click('#events-later');
    await page.waitForSelector('table.events tbody tr[data-seq="51"]:first-child', {timeout: WAIT});
    check((await page.$$('table.events tbody tr')).length === 50, 'Later shows the next 50 events');
    await page.click('g.node[data-step="items"]');
    await page.waitForSelector('ol.executions li', {timeout: WAIT});
    check((await page.$$('ol.executions li')).length === 20, 'a step with 1,000 items shows 20 executions at a time');
    await page.click('text=Later items →');
    await page.waitForSelector('ol.executions[start="20"] li', {timeout: WAIT});
    check(/Item 20/.test(await page.textContent('ol.executions li:first-child h4')), 'the next 20 items');
    await axe(page, 'a large run');
  },

  /**
   * A run of over 10,000 events: the page loads, the timeline pages both
   * ways, a step's details open, the state at a late seq shows, and an
   * approval's live update reads only the steps it changed.
   */
  async huge_run(page) {
    await register(WORKFLOWS.huge);
    const id = await startRun('ui-huge');
    await waitStatus(id, ['WAITING'], 150000);
    const events = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { lastSeq } }', {id})).run.lastSeq;
    check(events >= 10000, `the run has ${events} events (at least 10,000)`);
    const queries = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/graphql') && request.method() === 'POST') queries.push(JSON.parse(request.postData() || '{}'));
    });
    await signIn(page, KEYS.admin);
    const began = Date.now();
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('g.node[data-step="hold"][data-status="waiting"]', {timeout: WAIT});
    await page.waitForSelector('table.events tbody tr', {timeout: WAIT});
    console.log(`# ${events} events; the run page showed the DAG and the first events after ${Date.now() - began} ms`);
    check(/5000\/5000 items/.test(await page.textContent('g.node[data-step="items"] .node-status')), 'the DAG shows the for_each as one node with 5000/5000 items');
    check((await page.$$('g.node')).length === 3, 'the DAG has three nodes, not one per item');
    const rowSeqs = () => page.$$eval('table.events tbody tr', (rows) => rows.map((row) => Number(row.dataset.seq)));
    const range = (from, to) => Array.from({length: to - from + 1}, (_, index) => from + index);
    check(JSON.stringify(await rowSeqs()) === JSON.stringify(range(1, 50)), 'the timeline opens on events 1–50');

    await page.click('#events-latest');
    await page.waitForSelector(`table.events tbody tr[data-seq="${events}"]`, {timeout: WAIT});
    check(JSON.stringify(await rowSeqs()) === JSON.stringify(range(events - 49, events)), `Latest shows events ${events - 49}–${events}`);
    check((await page.textContent('#events-range')).includes(`of ${events}`), 'the range names the number of events');
    check(await page.isDisabled('#events-later'), 'no later page after the latest');
    await page.click('#events-earlier');
    await page.waitForSelector(`table.events tbody tr[data-seq="${events - 50}"]:last-child`, {timeout: WAIT});
    check(JSON.stringify(await rowSeqs()) === JSON.stringify(range(events - 99, events - 50)), 'Earlier shows the 50 before');
    await page.click('#events-first');
    await page.waitForSelector('table.events tbody tr[data-seq="1"]', {timeout: WAIT});
    await page.click('#events-later');
    await page.waitForSelector('table.events tbody tr[data-seq="51"]:first-child', {timeout: WAIT});
    check(JSON.stringify(await rowSeqs()) === JSON.stringify(range(51, 100)), 'First then Later shows events 51–100');

    // The seq at which the for_each step ended (its last item's success), near the end of the log.
    const tail = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { events(last: 10) { edges { node { seq type payload } } } } }', {id})).run.events.edges;
    const late = tail.filter((edge) => edge.node.type === 'step.succeeded' && edge.node.payload.step === 'items').pop().node.seq;
    await page.fill('#at-seq', String(late));
    await page.click('#at-seq-show');
    await page.waitForSelector('#snapshot h3', {timeout: WAIT});
    check((await page.textContent('#snapshot h3')).includes(`State after seq ${late}`), `runAt at the late seq ${late} shows the state there`);
    const itemsAt = await page.$$eval('#snapshot tbody tr', (rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent.trim())).find((cells) => cells[0] === 'items'));
    check(itemsAt && itemsAt[1] === 'succeeded', `the items step had succeeded by then (${JSON.stringify(itemsAt)})`);

    await page.click('g.node[data-step="items"]');
    await page.waitForSelector('ol.executions li', {timeout: WAIT});
    check((await page.$$('ol.executions li')).length === 20, 'the step details open with 20 of its 5000 items');
    check((await page.textContent('.step-detail')).includes('5000/5000 done'), 'the details count the items done');

    queries.length = 0;
    await api(KEYS.admin, 'mutation($id: ID!) { approveStep(runId: $id, step: "hold") { id } }', {id});
    await page.waitForSelector('g.node[data-step="hold"][data-status="succeeded"]', {timeout: WAIT});
    await page.waitForSelector('g.node[data-step="after"][data-status="waiting"]', {timeout: WAIT});
    check(true, 'the approval arrived live: hold succeeded, after waits');
    const refreshes = queries.filter((query) => /query Changed/.test(query.query || ''));
    check(refreshes.length > 0 && refreshes.every((query) => Array.isArray(query.variables.ids) && !query.variables.ids.includes('items')),
      `the live refreshes read only the steps the new events named (${JSON.stringify(refreshes.map((query) => query.variables.ids))})`);
    await shot(page, 'run-huge');
    await axe(page, 'a run of 10,000 events');
  },

  /**
   * Fork from the run page (operators only): the fork opens and names its
   * origin. A workflow registered with a warning shows it at its line.
   */
  async fork_and_warnings(page) {
    await register(WORKFLOWS.forkable);
    const id = await startRun('ui-fork');
    await waitStatus(id, ['SUCCEEDED']);
    await signIn(page, KEYS.viewer);
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('#action-verify', {timeout: WAIT});
    check(await page.$('#action-fork') === null, 'a viewer sees no Fork button');
    await signOutAndIn(page, KEYS.operator);
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('#action-fork', {timeout: WAIT});
    await page.click('#action-fork');
    await page.waitForSelector('dialog.confirm[open]', {timeout: WAIT});
    await page.selectOption('#dialog-step', 'pack');
    await page.fill('#dialog-reason', 'pack again');
    await page.click('dialog.confirm button[type=submit]');
    await page.waitForFunction((source) => /^#\/runs\/[0-9a-f-]{36}$/.test(location.hash) && !location.hash.includes(source), id, {timeout: WAIT});
    const fork = (await page.evaluate(() => location.hash)).split('/').pop();
    check(fork !== id, `the fork ${fork} opened`);
    await page.waitForSelector('#forked-from', {timeout: WAIT});
    check(await page.textContent('#forked-from') === id, 'it links to the run it was forked from');
    check((await page.textContent('#fork-origin')).includes('at step pack') && (await page.textContent('#fork-origin')).includes('pack again'),
      `and names the step and the reason: ${await page.textContent('#fork-origin')}`);
    check((await page.textContent('.run-header .facts')).includes('fork'), 'Started by: fork');
    await waitStatus(fork, ['SUCCEEDED']);
    const origin = (await api(KEYS.admin, 'query($id: ID!) { run(id: $id) { forkedFrom { id } fork steps { id adoptedFrom } } }', {id: fork})).run;
    check(origin.forkedFrom.id === id && origin.fork.step === 'pack', 'the API agrees: forkedFrom and fork');
    check(origin.steps.find((step) => step.id === 'fetch').adoptedFrom === id, 'the fork took over fetch from the source');
    await axe(page, 'a forked run');

    await register(WORKFLOWS.warn);
    await page.goto(`${BASE}/#/workflows/ui-warn`);
    await page.waitForSelector('table.source tr.diagnostic.warning', {timeout: WAIT});
    const warning = await page.textContent('table.source tr.diagnostic.warning');
    check(/^warning\[IMX\d{4}\] 5:\d+: `needs` lists `first` twice/.test(warning), `the warning shows with its code, line and message: ${warning}`);
    const line = await page.$eval('table.source tr.diagnostic.warning', (row) => row.previousElementSibling.querySelector('td.line-number').textContent);
    check(line === '5', 'right under source line 5');
    check(await page.$('table.source tr.diagnostic.error') === null, 'and no error');
    await shot(page, 'workflow-warning');
    await axe(page, 'a workflow with a warning');
  },

  /**
   * GraphiQL at GET /graphql under the UI's CSP: vendored files, no inline
   * script; signed in to the UI, a query runs with the session.
   */
  async graphiql(page) {
    await signIn(page, KEYS.viewer);
    const response = await page.goto(`${BASE}/graphql`);
    const csp = response.headers()['content-security-policy'] || '';
    check(csp.includes("script-src 'self'") && !/unsafe-(inline|eval)/.test(csp), `GET /graphql carries the strict CSP (${csp})`);
    check(response.headers()['x-frame-options'] === 'DENY' && response.headers()['x-content-type-options'] === 'nosniff', 'and the other security headers');
    check(await page.$$eval('script', (scripts) => scripts.every((script) => script.src && !script.textContent.trim())), 'every script is an external file');
    await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror', {timeout: WAIT});
    check(true, 'GraphiQL starts');
    await page.evaluate(() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue('{ me { id roles } }'));
    await page.click('.graphiql-execute-button');
    await page.waitForFunction(() => (document.querySelector('.graphiql-response')?.textContent || '').includes('roles'), null, {timeout: WAIT});
    const result = await page.textContent('.graphiql-response');
    check(result.includes('"viewer"') && !result.includes('"errors"'), `a query runs with the UI session: ${result.replace(/\s+/g, ' ').slice(0, 120)}`);
    await shot(page, 'graphiql');
  },

  /** A step output with markup renders as text; an unknown run id is a clear not-found. */
  async escaping_and_not_found(page) {
    await register(WORKFLOWS.xss);
    const id = await startRun('ui-xss');
    await waitStatus(id, ['SUCCEEDED']);
    const dialogs = [];
    page.on('dialog', async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
    await signIn(page, KEYS.viewer);
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('g.node[data-step="html"]', {timeout: WAIT});
    await page.click('g.node[data-step="html"]');
    await page.waitForSelector('#step-output', {timeout: WAIT});
    const output = await page.textContent('#step-output');
    check(output.includes('<img src=x onerror=alert(1)>'), 'the output shows the markup as text');
    check(await page.$$eval('img', (images) => images.length) === 0, 'no img element was created');
    await new Promise((resolve) => setTimeout(resolve, 300));
    check(dialogs.length === 0, 'no script ran (no alert)');
    await shot(page, 'run-escaped');

    await page.goto(`${BASE}/#/runs/00000000-0000-7000-8000-000000000000`);
    await page.waitForSelector('p.state.not-found', {timeout: WAIT});
    check(/No run has the id 00000000-0000-7000-8000-000000000000/.test(await page.textContent('p.state.not-found')), 'an unknown run id shows a clear not-found');
    check(await page.textContent('h1') === 'Run not found', 'titled Run not found');
    await axe(page, 'the not-found page');
    await page.goto(`${BASE}/#/workflows/no-such-workflow`);
    await page.waitForSelector('p.state.not-found', {timeout: WAIT});
    check(true, 'an unknown workflow shows a clear not-found');
  },
};

/** Not a test (scripts/bench-ui): first-load bytes of the run page and time to the first live update. */
async function bench(page) {
  await register(WORKFLOWS.wait);
  await signIn(page, KEYS.admin);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', {cacheDisabled: true});
  const rounds = Number(process.env.IMX_UI_BENCH_ROUNDS || 10);
  const loads = [];
  const updates = [];
  const mutations = [];
  for (let round = 0; round < rounds; round += 1) {
    const id = await startRun('ui-wait');
    await waitStatus(id, ['WAITING']);
    const sizes = new Map();
    const encoded = (event) => sizes.set(event.requestId, event.encodedDataLength);
    cdp.on('Network.loadingFinished', encoded);
    const decoded = new Map();
    const received = (event) => decoded.set(event.requestId, (decoded.get(event.requestId) || 0) + event.dataLength);
    cdp.on('Network.dataReceived', received);
    await page.goto('about:blank');
    await page.goto(`${BASE}/#/runs/${id}`);
    await page.waitForSelector('g.node[data-step="hold"][data-status="waiting"]', {timeout: WAIT});
    await page.waitForFunction(() => document.getElementById('live-status')?.textContent.startsWith('Live'), null, {timeout: WAIT});
    await page.waitForLoadState('networkidle');
    cdp.off('Network.loadingFinished', encoded);
    cdp.off('Network.dataReceived', received);
    loads.push({compressed: [...sizes.values()].reduce((a, b) => a + b, 0), decoded: [...decoded.values()].reduce((a, b) => a + b, 0), requests: sizes.size});
    // The page watches the run; an approval appends events: time until the DAG shows it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await page.evaluate(() => { window.seen = null; new MutationObserver(() => {
      const node = document.querySelector('g.node[data-step="hold"]');
      if (node && node.dataset.status === 'succeeded' && window.seen === null) window.seen = performance.now() + performance.timeOrigin;
    }).observe(document.body, {subtree: true, attributes: true, childList: true}); });
    const began = Date.now();
    await api(KEYS.admin, 'mutation($id: ID!) { approveStep(runId: $id, step: "hold") { id } }', {id});
    mutations.push(Date.now() - began);
    await page.waitForFunction(() => window.seen !== null, null, {timeout: WAIT});
    updates.push((await page.evaluate(() => window.seen)) - began);
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const first = loads[0];
  console.log(`bench: run page first load ${first.compressed} bytes transferred (${(first.compressed / 1024).toFixed(1)} KiB, ${first.requests} requests), ${first.decoded} bytes decoded: compressed/decoded ${(first.compressed / first.decoded).toFixed(2)}`);
  console.log(`bench: first load median over ${rounds} loads: ${median(loads.map((load) => load.compressed))} bytes`);
  console.log(`bench: time to the first live update after the approval is appended: median ${median(updates).toFixed(0)} ms (min ${Math.min(...updates).toFixed(0)}, max ${Math.max(...updates).toFixed(0)}) over ${rounds}`);
  console.log(`bench: baseline, the approveStep mutation's own round trip: median ${median(mutations)} ms; live update / mutation ${(median(updates) / median(mutations)).toFixed(2)}x`);
  check(first.compressed < 300 * 1024, 'the run page first load is under the 300 KB budget');
}
scenarios.bench = bench;

async function signOutAndIn(page, key) {
  await page.click('#sign-out');
  await page.waitForSelector('#credential', {timeout: WAIT});
  await page.fill('#credential', key);
  await page.click('form.sign-in button[type=submit]');
  await page.waitForSelector('h1:text("Runs")', {timeout: WAIT});
}

const name = process.argv[2];
if (!scenarios[name]) {
  console.log(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
const {context, profile} = await launch();
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('console', (message) => { if (message.type() === 'error') consoleErrors.push(message.text()); });
page.on('pageerror', (error) => consoleErrors.push(String(error)));
try {
  await scenarios[name](page);
} catch (error) {
  failures += 1;
  console.log(`not ok - ${name} stopped: ${error.stack || error}`);
  await shot(page, `${name}-failure`).catch(() => {});
}
const cspViolations = consoleErrors.filter((text) => /Content Security Policy/i.test(text));
check(cspViolations.length === 0, `no CSP violation in the console${cspViolations.length ? `: ${cspViolations.join(' | ')}` : ''}`);
const scriptErrors = consoleErrors.filter((text) => !/Failed to load resource|status of 40[134]/.test(text) && !/Content Security Policy/i.test(text));
check(scriptErrors.length === 0, `no script error in the console${scriptErrors.length ? `: ${scriptErrors.join(' | ')}` : ''}`);
await context.close();
rmSync(profile, {recursive: true, force: true});
console.log(`${name}: ${failures === 0 ? 'passed' : `${failures} failed`}`);
process.exit(failures === 0 ? 0 : 1);
