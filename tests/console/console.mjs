// The web console in headless Chromium (Debian's package, driven by playwright-core)
// against a running Sluice (tests/console.rs starts it). Exits non-zero on the first
// failure; the last line of a passing run is a JSON summary. Environment: SLUICE_ENDPOINT,
// SLUICE_PLAYWRIGHT (node_modules with playwright-core), SLUICE_CHROMIUM (the browser),
// SLUICE_TENANT and SLUICE_PASSWORD (a tenant with a password), SLUICE_HIDDEN_QUEUE (a
// queue of another tenant, never to be shown), SLUICE_SCREENSHOTS (a directory).

import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.SLUICE_PLAYWRIGHT, 'index.js'));
const { chromium } = require('playwright-core');

const ENDPOINT = process.env.SLUICE_ENDPOINT;
const TENANT = process.env.SLUICE_TENANT;
const PASSWORD = process.env.SLUICE_PASSWORD;
const SHOTS = process.env.SLUICE_SCREENSHOTS;
const WAIT_MS = 15000;

function fail(message) {
  console.error('FAIL: ' + message);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

async function rowsOf(page, table) {
  return page.$$eval(`#${table} tbody tr`, (rows) =>
    rows.map((row) => [...row.querySelectorAll('td')].map((td) => td.textContent.trim())));
}

// Calls `load` in the page (to its end) until `done` holds of the page, polling within
// the bound: the server's samples and alarm judgements come at its own interval.
async function until(page, load, done, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    await page.evaluate(load);
    if (await done()) return;
    check(Date.now() < deadline, `${what} never came`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function queueNames(page) {
  return (await rowsOf(page, 'queue-table')).map((cells) => cells[1]);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.SLUICE_CHROMIUM,
    headless: true,
    // The test may run as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox'],
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const violations = [];
  // Errors the page reports, but for the refusals the test provokes (logged by the
  // browser as failed loads): a CSP violation or a script error would show here.
  page.on('console', (message) => {
    const text = message.text();
    // The refusals this test asks for: the wrong password and SK (401), the second cancel
    // of one message (409).
    const asked = text.includes('status of 401') || text.includes('status of 409');
    if (message.type() === 'error' && !asked) violations.push(text);
  });
  page.on('pageerror', (error) => violations.push(String(error)));

  // The page and its security headers.
  const response = await page.goto(`${ENDPOINT}/console/`);
  check(response.status() === 200, `the console page: ${response.status()}`);
  const policy = response.headers()['content-security-policy'] || '';
  check(policy.includes("script-src 'self'") && policy.includes("frame-ancestors 'none'"),
    `a content security policy: ${policy}`);
  check(response.headers()['x-content-type-options'] === 'nosniff', 'nosniff');

  // Every form control is labelled (by a <label> or an aria-label).
  const unlabelled = await page.$$eval('input, select, textarea', (controls) =>
    controls.filter((c) => c.labels.length === 0 && !c.getAttribute('aria-label'))
      .map((c) => c.id || c.name));
  check(unlabelled.length === 0, `unlabelled controls: ${unlabelled}`);

  // A wrong password is refused in an alert; then a login by keyboard alone.
  const focused = await page.evaluate(() => document.activeElement.id);
  check(focused === 'login-tenant', `the tenant field has the focus: ${focused}`);
  await page.keyboard.type(TENANT);
  await page.keyboard.press('Tab');
  await page.keyboard.type('not-the-password');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
  check(await page.isVisible('#login-view'), 'still at the login');
  await page.focus('#login-tenant');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#queues-view:not([hidden])');
  await page.screenshot({ path: path.join(SHOTS, 'login-done.png') });

  // Queues: create three (one FIFO with dead letters, one Kafka queue keeping its
  // messages 24 hours), never see another tenant's.
  for (const [name, mode, redrive] of [['web-orders', 'NORMAL', false],
    ['web-fifo', 'FIFO', true], ['web-spare', 'KAFKA_HA', false]]) {
    await page.fill('#create-name', name);
    await page.selectOption('#create-mode', mode);
    await page.fill('#create-retention', '24');
    await page.setChecked('#create-redrive', redrive);
    // The FIFO queue orders per message group and backs off after a failure.
    await page.selectOption('#create-scope', mode === 'FIFO' ? 'message_group' : 'queue');
    await page.selectOption('#create-retry', mode === 'FIFO' ? 'backoff' : 'immediate');
    await page.click('#create-form button[type=submit]');
    await page.waitForFunction((n) => [...document.querySelectorAll('#queue-table tbody a')]
      .some((a) => a.textContent === n), name);
  }
  let names = await queueNames(page);
  check(!names.includes(process.env.SLUICE_HIDDEN_QUEUE), `another tenant's queue: ${names}`);
  const fifo = (await rowsOf(page, 'queue-table')).find((cells) => cells[1] === 'web-fifo');
  const orders = (await rowsOf(page, 'queue-table')).find((cells) => cells[1] === 'web-orders');
  check(fifo[2] === 'FIFO' && fifo[3] === orders[3], `the type and partitions columns: ${fifo}`);
  const made = await page.evaluate(() => api('GET', '/queues'));
  const fifoMade = made.queues.find((q) => q.name === 'web-fifo');
  check(fifoMade.fifo_scope === 'message_group' && fifoMade.retry_policy === 'backoff',
    `the FIFO queue's options: ${JSON.stringify(fifoMade)}`);
  const kafkaMade = made.queues.find((q) => q.name === 'web-spare');
  check(kafkaMade.queue_mode === 'KAFKA_HA' && kafkaMade.reservation === 24 * 60,
    `the Kafka queue's retention: ${JSON.stringify(kafkaMade)}`);
  const spare = (await rowsOf(page, 'queue-table')).find((cells) => cells[1] === 'web-spare');
  check(spare[2] === 'KAFKA_HA', `the Kafka queue's type column: ${spare}`);
  await page.screenshot({ path: path.join(SHOTS, 'queues.png'), fullPage: true });

  // Select two and delete them together.
  await page.check('input[aria-label="Select web-fifo"]');
  await page.check('input[aria-label="Select web-spare"]');
  await page.click('#delete-selected');
  await page.waitForFunction(() => ![...document.querySelectorAll('#queue-table tbody a')]
    .some((a) => a.textContent === 'web-spare'));
  names = await queueNames(page);
  check(names.includes('web-orders') && !names.includes('web-fifo'), `after delete: ${names}`);
  // And one by its own button.
  await page.fill('#create-name', 'web-single');
  await page.selectOption('#create-mode', 'NORMAL');
  await page.click('#create-form button[type=submit]');
  await page.waitForSelector('button[aria-label="Delete web-single"]');
  await page.click('button[aria-label="Delete web-single"]');
  await page.waitForFunction(() => ![...document.querySelectorAll('#queue-table tbody a')]
    .some((a) => a.textContent === 'web-single'));

  // A queue: a group, test messages, consumed with auto-ack until the backlog is gone.
  await page.click('text=web-orders');
  await page.waitForSelector('#queue-view:not([hidden])');
  // A group made and deleted, then the one the rest uses.
  await page.fill('#group-name', 'web-temp');
  await page.click('#group-form button[type=submit]');
  await page.waitForSelector('button[aria-label="Delete group web-temp"]');
  await page.click('button[aria-label="Delete group web-temp"]');
  await page.waitForFunction(() => document.querySelectorAll('#group-table tbody tr').length === 0);
  await page.fill('#group-name', 'web-readers');
  await page.click('#group-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#group-table tbody tr').length === 1);
  await page.fill('#send-body', 'hello from the console');
  await page.fill('#send-attributes', '{"origin": "browser"}');
  await page.fill('#send-count', '3');
  await page.click('#send-form button[type=submit]');
  await page.waitForFunction(() =>
    document.querySelector('#group-table tbody tr td:nth-child(2)').textContent === '3');
  await page.fill('#consume-interval', '200');
  await page.click('#consume-start');
  await page.waitForFunction(() => document.querySelectorAll('#received-table tbody tr').length === 3);
  await page.click('#consume-stop');
  const received = await rowsOf(page, 'received-table');
  check(received.every((cells) => /^[0-9a-f]{20}$/.test(cells[0])
    && cells[1] === 'hello from the console' && cells[2] === '22'
    && cells[3] === '{"origin":"browser"}' && !Number.isNaN(Date.parse(cells[4]))),
  `received: ${received}`);
  check(new Set(received.map((cells) => cells[0])).size === 3, 'three message ids');
  await page.waitForFunction(() =>
    document.querySelector('#group-table tbody tr td:nth-child(2)').textContent === '0');
  const readers = (await rowsOf(page, 'group-table'))[0];
  check(readers[2] === '0' && readers[3] === '3' && readers[4] === '3',
    `in flight, delivered and consumed: ${readers}`);
  // The trace of one of them: stored, delivered to the group and acked (a delivery is
  // logged by its partition leader's next tick, so the trace is asked again until then).
  await page.fill('#trace-id', received[0][0]);
  await until(page, () => document.querySelector('#trace-form button[type=submit]').click(),
    async () => {
      const steps = (await rowsOf(page, 'trace-table')).map((cells) => cells[1]);
      return steps[0] === 'stored' && steps.includes('delivered') && steps.includes('acked');
    }, 'the trace of a consumed message');
  const traced = await rowsOf(page, 'trace-table');
  check(traced.slice(1).every((cells) => cells[2] === 'web-readers'), `trace groups: ${traced}`);
  // Monitoring: the server samples every 200 ms here; the charts show the group.
  await until(page, () => loadCharts(), () => page.evaluate(() => {
    const backlog = document.querySelector('figure[aria-label="Backlog"] figcaption');
    const rate = document.querySelector('figure[aria-label="Consume rate (acks/s)"] polyline');
    return Boolean(backlog && backlog.textContent === 'web-readers: 0' && rate
      && rate.getAttribute('points').split(' ').length >= 2);
  }), 'charts with the consumed backlog');
  const charts = await page.$$eval('#charts figure', (figures) => figures.length);
  check(charts === 6, `six charts: ${charts}`);

  await page.screenshot({ path: path.join(SHOTS, 'queue.png'), fullPage: true });

  // An alarm: backlog above 0 with a webhook; two messages fire it, consuming them ends
  // it; the test's receiver gets both changes (tests/console.rs checks them).
  await page.fill('#alarm-name', 'backlog-high');
  await page.selectOption('#alarm-kind', 'backlog_above');
  await page.fill('#alarm-threshold', '0');
  await page.fill('#alarm-for', '0');
  await page.fill('#alarm-webhook', process.env.SLUICE_WEBHOOK);
  await page.click('#alarm-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#alarm-table tbody tr').length === 1);
  const alarmState = (want) => until(page, () => loadAlarms(), async () => {
    const rows = await rowsOf(page, 'alarm-table');
    return rows.length === 1 && rows[0][3].startsWith(want);
  }, `the alarm state ${want}`);
  await alarmState('ok');
  await page.fill('#send-body', 'alarming');
  await page.fill('#send-count', '2');
  await page.click('#send-form button[type=submit]');
  await alarmState('firing');
  await page.screenshot({ path: path.join(SHOTS, 'alarm.png'), fullPage: true });
  await page.click('#consume-start');
  await page.waitForFunction(() => document.querySelectorAll('#received-table tbody tr').length === 5);
  await page.click('#consume-stop');
  await alarmState('ok');
  const changes = await rowsOf(page, 'alarm-history');
  check(changes.length === 2 && changes[0][1] === 'firing' && changes[1][1] === 'ok',
    `the alarm's history: ${changes}`);
  await page.click('button[aria-label="Delete rule backlog-high"]');
  await page.waitForFunction(() => document.querySelectorAll('#alarm-table tbody tr').length === 0);

  // Tags: added and removed.
  await page.fill('#tag-key', 'team');
  await page.fill('#tag-value', 'web');
  await page.click('#tag-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('tag-list').textContent.includes('team = web'));
  await page.click('button[aria-label="Remove tag team"]');
  await page.waitForFunction(() => document.querySelectorAll('#tag-list li').length === 0);

  // A delayed message, listed with its id, then cancelled: it is never delivered.
  await page.fill('#send-body', 'for later');
  await page.fill('#send-attributes', '{}');
  await page.fill('#send-tags', 'later');
  await page.fill('#send-delay', '600');
  await page.fill('#send-count', '2');
  await page.click('#send-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#scheduled-table tbody tr').length === 2);
  const [[firstId], [secondId]] = await rowsOf(page, 'scheduled-table');
  check(/^[0-9a-f]{20}$/.test(firstId) && firstId !== secondId, `message ids: ${firstId}, ${secondId}`);
  await page.click(`button[aria-label="Cancel message ${firstId}"]`);
  await page.waitForFunction(() => document.querySelectorAll('#scheduled-table tbody tr').length === 1);
  // The other by its id, as one sent from elsewhere would be.
  await page.fill('#cancel-id', secondId);
  await page.click('#cancel-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#scheduled-table tbody tr').length === 0);
  const cancelled = await page.textContent('#queue-status');
  check(cancelled === `Cancelled ${secondId}.`, `cancel status: ${cancelled}`);
  await page.fill('#cancel-id', secondId);
  await page.click('#cancel-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('queue-status').textContent.startsWith('409'));

  // The dead-letter lane: the test made one dead letter in web-dead; redrive it.
  await page.click('#nav-queues');
  await page.waitForSelector('#queues-view:not([hidden])');
  await page.click('text=web-dead');
  await page.waitForSelector('#queue-view:not([hidden])');
  await page.waitForFunction(() => {
    const cells = document.querySelectorAll('#group-table tbody tr td');
    return cells.length > 0 && cells[6].textContent === '1';
  });
  await page.click('button[aria-label="Show the dead letters of dead-readers"]');
  await page.waitForSelector('#dead-table:not([hidden])');
  const dead = await rowsOf(page, 'dead-table');
  check(dead.length === 1 && dead[0][1] === 'poison', `the dead letters: ${dead}`);
  await page.screenshot({ path: path.join(SHOTS, 'dead-letters.png'), fullPage: true });
  const chosen = await page.$eval('#consume-group', (select) => select.selectedOptions[0]?.textContent);
  check(chosen === 'dead-readers', `the consume form offers this queue's group: ${chosen}`);
  await page.click('button[aria-label="Redrive the dead letters of dead-readers"]');
  await page.waitForFunction(() => {
    const cells = document.querySelectorAll('#group-table tbody tr td');
    return cells[6].textContent === '0' && cells[1].textContent === '1';
  });

  // Nothing kept in the browser's storage; logging out forgets the token.
  const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length,
    document.cookie]);
  check(stored[0] === 0 && stored[1] === 0 && stored[2] === '', `browser storage: ${stored}`);
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');

  // AK/SK: a wrong secret refused, then the token request signed in the page.
  await page.fill('#login-ak', process.env.SLUICE_AK);
  await page.fill('#login-sk', 'not-the-secret');
  await page.click('#login-keys-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
  check(await page.isVisible('#login-view'), 'a wrong SK is refused');
  await page.fill('#login-sk', process.env.SLUICE_SK);
  await page.click('#login-keys-form button[type=submit]');
  await page.waitForSelector('#queues-view:not([hidden])');
  names = await queueNames(page);
  check(names.includes('web-orders'), `the queues after an AK/SK login: ${names}`);
  check(await page.inputValue('#login-sk') === '', 'the SK is not kept in the form');
  const keptAfterKeys = await page.evaluate(() => [localStorage.length, sessionStorage.length]);
  check(keptAfterKeys[0] === 0 && keptAfterKeys[1] === 0, `storage: ${keptAfterKeys}`);
  await page.click('#logout');

  // The admin, by its keys: every tenant with its quotas, a quota changed, a tenant
  // created (its keys shown once) and deleted, the cluster's partitions; no queue pages.
  await page.fill('#login-ak', process.env.SLUICE_ADMIN_AK);
  await page.fill('#login-sk', process.env.SLUICE_ADMIN_SK);
  await page.click('#login-keys-form button[type=submit]');
  await page.waitForSelector('#admin-view:not([hidden])');
  check(await page.isHidden('#nav-queues'), 'no queue pages for the admin');
  await page.waitForFunction(() => document.querySelectorAll('#tenant-table tbody tr').length >= 3);
  const tenants = (await rowsOf(page, 'tenant-table')).map((cells) => cells[0]);
  check(tenants.includes(TENANT) && tenants.includes('neighbour'), `tenants: ${tenants}`);
  await page.fill(`input[aria-label="Queues at most for ${TENANT}"]`, '7');
  await page.click(`button[aria-label="Save the quotas of ${TENANT}"]`);
  await page.waitForFunction((t) => document.getElementById('admin-status').textContent
    === `Saved the quotas of ${t}.`, TENANT);
  check(await page.inputValue(`input[aria-label="Queues at most for ${TENANT}"]`) === '7',
    'the quota saved');
  await page.fill('#tenant-name', 'made-in-console');
  await page.click('#tenant-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('tenant-keys').textContent.includes('SK '));
  await page.click('button[aria-label="Delete tenant made-in-console"]');
  await page.waitForFunction(() => document.getElementById('admin-status').textContent
    === 'Deleted made-in-console.');
  // The cluster: every node holds a replica of every partition, each partition has a
  // leader, the leads add up, and the leader reports every node's lag.
  const nodeCount = Number(process.env.SLUICE_NODES);
  const nodeIds = Array.from({ length: nodeCount }, (_, i) => String(i + 1));
  await page.waitForFunction((n) => document.querySelectorAll('#node-table tbody tr').length === n,
    nodeCount);
  const partitions = await rowsOf(page, 'partition-table');
  check(partitions.length > 0 && partitions.every((cells) => nodeIds.includes(cells[1])),
    `every partition has a leader: ${partitions}`);
  check(partitions.every((cells) => cells[2] === nodeIds.join(', ')), `voters: ${partitions}`);
  check(partitions.every((cells) => nodeIds.every((id) => cells[4].includes(`node ${id}: `))),
    `replica lag: ${partitions}`);
  const nodes = await rowsOf(page, 'node-table');
  check(nodes.map((cells) => cells[0]).join(',') === nodeIds.join(',')
    && nodes.every((cells) => cells[2] === String(partitions.length))
    && nodes.reduce((sum, cells) => sum + Number(cells[1]), 0) === partitions.length,
  `the nodes: ${nodes}`);
  await page.screenshot({ path: path.join(SHOTS, 'admin.png'), fullPage: true });
  await page.click('#logout');
  check(violations.length === 0, `console errors (a CSP violation?): ${violations}`);
  await browser.close();
  console.log(JSON.stringify({ scenario: 'console', passed: true }));
}

main().catch((error) => fail(error.stack || String(error)));
