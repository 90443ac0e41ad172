// The Sluice console: plain DOM, no framework, no build step. It logs in through the
// Keystone-compatible token endpoint and calls the DMS API with the token; the token is
// kept in this script's memory only. Every text from the server is set as text, never
// parsed as markup.
'use strict';

const session = { token: null, project: null, tenant: null };
const view = { queue: null, consuming: null };

const $ = (id) => document.getElementById(id);

function show(name) {
  for (const id of ['login-view', 'queues-view', 'queue-view', 'admin-view']) {
    $(id).hidden = id !== name;
  }
  $('nav').hidden = name === 'login-view';
  const heading = $(name).querySelector('h2');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

function say(id, text, isError) {
  const element = $(id);
  element.textContent = text;
  element.classList.toggle('error', Boolean(isError));
}

// A call with the session's token and a JSON body, if any; the answer's JSON, or an error
// naming the status and the server's message.
async function call(method, url, body) {
  const headers = { 'X-Auth-Token': session.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = (data && (data.error_msg || data.message)) || response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return data;
}

// The DMS API of the tenant's project (`v1.0`, or `v2` for the tag routes).
function api(method, path, body, prefix = 'v1.0') {
  return call(method, `/${prefix}/${session.project}${path}`, body);
}

function cell(row, text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, action, name) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  if (name) element.setAttribute('aria-label', name);
  element.addEventListener('click', action);
  return element;
}

// ---------------------------------------------------------------- login

// The SDK-HMAC-SHA256 signature of a request (the current form, docs/auth.md) over
// `host` and `x-sdk-date`: WebCrypto, so only where the page is a secure context (HTTPS,
// or a loopback address).
const ENCODER = new TextEncoder();
const toHex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function signedHeaders(method, path, body, ak, sk) {
  if (!window.crypto || !window.crypto.subtle) {
    throw new Error('Signing needs a secure context (HTTPS or a loopback address).');
  }
  const date = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const hash = async (text) => toHex(await crypto.subtle.digest('SHA-256', ENCODER.encode(text)));
  const canonical = [method, `${path.replace(/\/?$/, '/')}`, '',
    `host:${location.host}`, `x-sdk-date:${date}`, '', 'host;x-sdk-date', await hash(body)].join('\n');
  const toSign = `SDK-HMAC-SHA256\n${date}\n${await hash(canonical)}`;
  const key = await crypto.subtle.importKey('raw', ENCODER.encode(sk),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = toHex(await crypto.subtle.sign('HMAC', key, ENCODER.encode(toSign)));
  return {
    'X-Sdk-Date': date,
    Authorization: `SDK-HMAC-SHA256 Access=${ak}, SignedHeaders=host;x-sdk-date, Signature=${signature}`,
  };
}

// A token for an AK/SK: the token request signed once, the SK forgotten after it.
async function loginWithKeys(event) {
  event.preventDefault();
  const ak = $('login-ak').value.trim();
  const sk = $('login-sk').value;
  $('login-sk').value = '';
  say('login-error', '');
  const body = '{}';
  let response;
  try {
    const headers = await signedHeaders('POST', '/v3/auth/tokens', body, ak, sk);
    headers['Content-Type'] = 'application/json';
    response = await fetch('/v3/auth/tokens', { method: 'POST', headers, body });
  } catch (error) {
    say('login-error', error.message, true);
    return;
  }
  await loggedIn(response);
}

async function login(event) {
  event.preventDefault();
  const tenant = $('login-tenant').value.trim();
  const password = $('login-password').value;
  const request = {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: tenant, password, domain: { name: tenant } } },
      },
      scope: { project: { name: tenant } },
    },
  };
  say('login-error', '');
  const response = await fetch('/v3/auth/tokens', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(request),
  });
  $('login-password').value = '';
  await loggedIn(response);
}

// Keeps the token of a token answer (or says why there is none) and opens the queues.
async function loggedIn(response) {
  if (!response.ok) {
    say('login-error', 'The credentials were refused.', true);
    return;
  }
  const body = await response.json();
  session.token = response.headers.get('X-Subject-Token');
  session.project = body.token.project.id;
  session.tenant = body.token.project.name;
  // The admin's token has no project: the admin pages, not a tenant's.
  session.admin = session.project === '';
  $('nav-queues').hidden = session.admin;
  $('who').textContent = session.admin ? 'Admin' : `Tenant ${session.tenant}`;
  if (session.admin) {
    await openAdmin();
  } else {
    await openQueues();
  }
}

// ---------------------------------------------------------------- admin

// The admin API, with the admin's token.
function admin(method, path, body) {
  return call(method, `/admin${path}`, body);
}

async function openAdmin() {
  show('admin-view');
  await loadTenants();
  await loadCluster();
}

function quotaInput(value, label) {
  const input = document.createElement('input');
  input.type = 'number';
  input.min = '0';
  input.value = String(value);
  input.setAttribute('aria-label', label);
  return input;
}

async function loadTenants() {
  try {
    const data = await admin('GET', '/tenants');
    const body = $('tenant-table').querySelector('tbody');
    body.replaceChildren();
    for (const tenant of data.tenants) {
      const row = document.createElement('tr');
      cell(row, tenant.name);
      cell(row, tenant.project_id);
      const queues = quotaInput(tenant.queues_max, `Queues at most for ${tenant.name}`);
      const groups = quotaInput(tenant.groups_per_queue_max,
        `Groups per queue at most for ${tenant.name}`);
      for (const input of [queues, groups]) {
        const td = document.createElement('td');
        td.appendChild(input);
        row.appendChild(td);
      }
      cell(row, new Date(tenant.created).toISOString());
      const actions = document.createElement('td');
      actions.appendChild(button('Save quotas', async () => {
        try {
          await admin('PUT', `/tenants/${tenant.project_id}/quotas`, {
            queues_max: Number(queues.value),
            groups_per_queue_max: Number(groups.value),
          });
          say('admin-status', `Saved the quotas of ${tenant.name}.`);
          await loadTenants();
        } catch (error) {
          say('admin-status', error.message, true);
        }
      }, `Save the quotas of ${tenant.name}`));
      actions.appendChild(button('Delete', async () => {
        try {
          await admin('DELETE', `/tenants/${tenant.project_id}`);
          say('admin-status', `Deleted ${tenant.name}.`);
          await loadTenants();
        } catch (error) {
          say('admin-status', error.message, true);
        }
      }, `Delete tenant ${tenant.name}`));
      row.appendChild(actions);
      body.appendChild(row);
    }
  } catch (error) {
    say('admin-status', error.message, true);
  }
}

async function createTenant(event) {
  event.preventDefault();
  const request = { name: $('tenant-name').value.trim() };
  const password = $('tenant-password').value;
  if (password) request.password = password;
  $('tenant-password').value = '';
  try {
    const created = await admin('POST', '/tenants', request);
    // Shown once, never kept: the secret key is the tenant's to store.
    say('tenant-keys', `Created ${created.name}: AK ${created.ak}, SK ${created.sk}`);
    $('tenant-name').value = '';
    await loadTenants();
  } catch (error) {
    say('admin-status', error.message, true);
  }
}

async function loadCluster() {
  try {
    const data = await admin('GET', '/cluster');
    const body = $('partition-table').querySelector('tbody');
    body.replaceChildren();
    // Each node: the partitions it leads and the replicas it holds, from the partitions.
    const nodes = new Map();
    const node = (id) => {
      if (!nodes.has(id)) nodes.set(id, { leads: 0, holds: 0 });
      return nodes.get(id);
    };
    for (const view of data.partitions) {
      if (view.leader !== null && view.leader !== undefined) node(view.leader).leads += 1;
      for (const id of [...(view.voters || []), ...(view.learners || [])]) node(id).holds += 1;
    }
    const nodeBody = $('node-table').querySelector('tbody');
    nodeBody.replaceChildren();
    for (const [id, counts] of [...nodes.entries()].sort((a, b) => a[0] - b[0])) {
      const row = document.createElement('tr');
      cell(row, String(id));
      cell(row, String(counts.leads));
      cell(row, String(counts.holds));
      nodeBody.appendChild(row);
    }
    for (const view of data.partitions) {
      const row = document.createElement('tr');
      cell(row, String(view.partition));
      cell(row, view.leader === null || view.leader === undefined ? '-' : String(view.leader));
      cell(row, (view.voters || []).join(', '));
      cell(row, (view.learners || []).join(', ') || '-');
      cell(row, (view.lag || []).map((r) => `node ${r.node}: ${r.behind}`).join(', ') || '-');
      body.appendChild(row);
    }
  } catch (error) {
    say('admin-status', error.message, true);
  }
}

// A message's trace (the DMS extension `.../messages/{id}/trace`) into the trace table.
async function traceMessage(event) {
  event.preventDefault();
  const id = $('trace-id').value.trim();
  const body = $('trace-table').querySelector('tbody');
  body.replaceChildren();
  try {
    const trace = await api('GET', `/queues/${view.queue.id}/messages/${id}/trace`);
    for (const step of trace.events) {
      const row = document.createElement('tr');
      cell(row, new Date(step.time).toISOString());
      cell(row, step.step.replaceAll('_', ' '));
      cell(row, step.group || '-');
      const details = [];
      if (step.held) details.push('held (delayed, scheduled or a transaction)');
      if (step.dead_letter) details.push('from the dead letters');
      if (step.failures !== undefined) details.push(`failure ${step.failures}`);
      if (step.to_queue_id) details.push(`to queue ${step.to_queue_id}`);
      cell(row, details.join(', ') || '-');
      body.appendChild(row);
    }
    const more = trace.complete ? '' : ' (more may follow: the scan stopped at its bound)';
    say('queue-status', `Traced ${id}: ${trace.events.length} steps${more}.`);
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

function logout() {
  stopConsuming();
  session.token = null;
  session.project = null;
  session.tenant = null;
  view.queue = null;
  show('login-view');
}

// ---------------------------------------------------------------- queues

async function openQueues() {
  stopConsuming();
  show('queues-view');
  await loadQueues();
}

async function loadQueues() {
  const body = $('queue-table').querySelector('tbody');
  try {
    const data = await api('GET', '/queues?include_messages_num=true');
    body.replaceChildren();
    $('select-all').checked = false;
    for (const queue of data.queues) {
      const row = document.createElement('tr');
      const pick = document.createElement('td');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = queue.id;
      box.className = 'queue-pick';
      box.setAttribute('aria-label', `Select ${queue.name}`);
      pick.appendChild(box);
      row.appendChild(pick);
      const name = document.createElement('td');
      const link = document.createElement('a');
      link.href = '#';
      link.textContent = queue.name;
      link.addEventListener('click', (event) => {
        event.preventDefault();
        openQueue(queue);
      });
      name.appendChild(link);
      row.appendChild(name);
      cell(row, queue.queue_mode);
      cell(row, String(queue.partitions ?? '-'));
      cell(row, String(queue.produced_messages ?? 0));
      cell(row, String(queue.group_count ?? 0));
      cell(row, new Date(queue.created).toISOString());
      const actions = document.createElement('td');
      actions.appendChild(button('Delete', () => deleteQueues([queue]), `Delete ${queue.name}`));
      row.appendChild(actions);
      body.appendChild(row);
    }
    say('queues-status', `${data.total} queue${data.total === 1 ? '' : 's'}.`);
  } catch (error) {
    say('queues-status', error.message, true);
  }
}

async function createQueue(event) {
  event.preventDefault();
  const redrive = $('create-redrive').checked;
  const request = {
    name: $('create-name').value.trim(),
    queue_mode: $('create-mode').value,
    description: $('create-description').value,
    redrive_policy: redrive ? 'enable' : 'disable',
    retry_policy: $('create-retry').value,
  };
  if (request.queue_mode === 'FIFO') request.fifo_scope = $('create-scope').value;
  if (request.queue_mode === 'KAFKA_HA') request.retention_hours = Number($('create-retention').value);
  if (redrive) request.max_consume_count = Number($('create-max').value);
  try {
    await api('POST', '/queues', request);
    say('queues-status', `Created ${request.name}.`);
    $('create-name').value = '';
    $('create-description').value = '';
    await loadQueues();
  } catch (error) {
    say('queues-status', error.message, true);
  }
}

async function deleteQueues(queues) {
  if (queues.length === 0) {
    say('queues-status', 'Select the queues to delete first.', true);
    return;
  }
  const failed = [];
  for (const queue of queues) {
    try {
      await api('DELETE', `/queues/${queue.id}`);
    } catch (error) {
      failed.push(`${queue.name || queue.id}: ${error.message}`);
    }
  }
  await loadQueues();
  if (failed.length > 0) {
    say('queues-status', `Not deleted: ${failed.join('; ')}`, true);
  } else {
    say('queues-status', `Deleted ${queues.length} queue${queues.length === 1 ? '' : 's'}.`);
  }
}

function selectedQueues() {
  return [...document.querySelectorAll('.queue-pick:checked')].map((box) => ({ id: box.value }));
}

// ---------------------------------------------------------------- one queue

async function openQueue(queue) {
  view.queue = queue;
  $('queue-title').textContent = `Queue ${queue.name}`;
  $('queue-summary').textContent =
    `${queue.queue_mode}, messages kept ${queue.reservation / 60} h, created ${new Date(queue.created).toISOString()}, id ${queue.id}`;
  $('received-table').querySelector('tbody').replaceChildren();
  $('scheduled-table').querySelector('tbody').replaceChildren();
  $('dead-table').hidden = true;
  say('queue-status', '');
  show('queue-view');
  await loadGroups();
  await loadTags();
  await loadCharts();
  await loadAlarms();
}

// ---------------------------------------------------------------- alarms

const KIND_TEXT = {
  backlog_above: 'backlog above',
  dead_letters_above: 'dead letters above',
  consume_rate_below: 'consume rate below',
  oldest_age_above: 'oldest message (s) older than',
};

async function loadAlarms() {
  // As for the charts: only the newest request draws.
  view.alarmRequest = (view.alarmRequest || 0) + 1;
  const request = view.alarmRequest;
  try {
    const data = await api('GET', `/queues/${view.queue.id}/alarms`);
    if (request !== view.alarmRequest) return;
    view.alarmRules = data.rules;
    const body = $('alarm-table').querySelector('tbody');
    body.replaceChildren();
    for (const rule of data.rules) {
      const state = data.states.find((s) => s.rule === rule.name);
      const row = document.createElement('tr');
      cell(row, rule.name);
      cell(row, `${rule.group}: ${KIND_TEXT[rule.kind]} ${rule.threshold} for ${rule.for_s} s`);
      cell(row, rule.webhook || '-');
      cell(row, state ? `${state.state} (${Number(state.value.toFixed(2))})` : 'not judged yet');
      const actions = document.createElement('td');
      actions.appendChild(button('Delete', () => saveAlarms(
        view.alarmRules.filter((r) => r.name !== rule.name)), `Delete rule ${rule.name}`));
      row.appendChild(actions);
      body.appendChild(row);
    }
    const history = $('alarm-history').querySelector('tbody');
    history.replaceChildren();
    for (const change of data.history) {
      const row = document.createElement('tr');
      cell(row, change.rule);
      cell(row, change.state);
      cell(row, String(Number(change.value.toFixed(2))));
      cell(row, new Date(change.since).toISOString());
      history.appendChild(row);
    }
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function saveAlarms(rules) {
  try {
    await api('PUT', `/queues/${view.queue.id}/alarms`, { rules });
    await loadAlarms();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function addAlarm(event) {
  event.preventDefault();
  const rule = {
    name: $('alarm-name').value.trim(),
    group: $('alarm-group').selectedOptions[0]?.textContent || '',
    kind: $('alarm-kind').value,
    threshold: Number($('alarm-threshold').value),
    for_s: Number($('alarm-for').value),
  };
  const webhook = $('alarm-webhook').value.trim();
  if (webhook) rule.webhook = webhook;
  await saveAlarms([...(view.alarmRules || []), rule]);
  $('alarm-name').value = '';
}

// ---------------------------------------------------------------- monitoring

const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#cf222e'];

// Series of points [(time ms, value)] drawn as lines in one chart, with a text summary
// (the last value of each) for screen readers and the tests.
function chart(title, series) {
  const width = 320;
  const height = 120;
  const figure = document.createElement('figure');
  figure.className = 'chart';
  figure.setAttribute('aria-label', title);
  const heading = document.createElement('h4');
  heading.textContent = title;
  figure.appendChild(heading);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const points = series.flatMap((s) => s.points);
  const times = points.map((p) => p[0]);
  const t0 = Math.min(...times);
  const t1 = Math.max(...times);
  const top = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => (t1 === t0 ? width : ((t - t0) / (t1 - t0)) * (width - 4) + 2);
  const y = (v) => height - 2 - (v / top) * (height - 4);
  series.forEach((s, index) => {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', COLOURS[index % COLOURS.length]);
    line.setAttribute('stroke-width', '2');
    line.setAttribute('points', s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' '));
    svg.appendChild(line);
  });
  figure.appendChild(svg);
  const legend = document.createElement('figcaption');
  legend.className = 'legend';
  legend.textContent = series
    .map((s) => `${s.name}: ${s.points.length ? Number(s.points[s.points.length - 1][1].toFixed(2)) : '-'}`)
    .join('; ');
  figure.appendChild(legend);
  return figure;
}

// Per second between consecutive samples of a running total.
function rate(samples, total) {
  const points = [];
  for (let i = 1; i < samples.length; i += 1) {
    const seconds = (samples[i].at - samples[i - 1].at) / 1000;
    const value = total(samples[i]);
    const before = total(samples[i - 1]);
    if (seconds > 0 && value !== undefined && before !== undefined) {
      points.push([samples[i].at, Math.max(0, value - before) / seconds]);
    }
  }
  return points;
}

async function loadCharts() {
  const box = $('charts');
  // Only the newest request draws: an older answer arriving late would show stale counts.
  view.chartRequest = (view.chartRequest || 0) + 1;
  const request = view.chartRequest;
  try {
    const { samples } = await api('GET', `/queues/${view.queue.id}/metrics`);
    if (request !== view.chartRequest) return;
    box.replaceChildren();
    if (samples.length === 0) {
      box.textContent = 'No samples yet: the server samples every queue at its monitoring interval.';
      return;
    }
    const names = [...new Set(samples.flatMap((s) => s.groups.map((g) => g.name)))];
    const ofGroup = (name, field) => (sample) => {
      const group = sample.groups.find((g) => g.name === name);
      return group ? group[field] : undefined;
    };
    const perGroup = (field) => names.map((name) => ({
      name,
      points: samples.filter((s) => ofGroup(name, field)(s) !== undefined)
        .map((s) => [s.at, ofGroup(name, field)(s)]),
    }));
    box.appendChild(chart('Send rate (messages/s)',
      [{ name: 'sent', points: rate(samples, (s) => s.sent_total) }]));
    box.appendChild(chart('Consume rate (acks/s)',
      names.map((name) => ({ name, points: rate(samples, ofGroup(name, 'acked_total')) }))));
    box.appendChild(chart('Backlog', perGroup('backlog')));
    box.appendChild(chart('In flight', perGroup('in_flight')));
    box.appendChild(chart('Dead letters', perGroup('dead_letters')));
    box.appendChild(chart('Oldest unconsumed message (s)', perGroup('oldest_age_s')));
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function loadGroups() {
  const body = $('group-table').querySelector('tbody');
  const select = $('consume-group');
  try {
    const data = await api('GET', `/queues/${view.queue.id}/groups?include_deadletter=true`);
    const deadLetters = data.redrive_policy === 'enable';
    body.replaceChildren();
    const chosen = select.value;
    select.replaceChildren();
    $('alarm-group').replaceChildren();
    for (const group of data.groups) {
      const row = document.createElement('tr');
      cell(row, group.name);
      cell(row, String(group.available_messages));
      cell(row, String(group.in_flight_messages ?? '-'));
      cell(row, String(group.delivered_messages ?? '-'));
      cell(row, String(group.consumed_messages));
      cell(row, String(group.produced_messages));
      cell(row, deadLetters ? String(group.available_deadletters ?? 0) : '-');
      const actions = document.createElement('td');
      if (deadLetters) {
        actions.appendChild(button('Show dead letters', () => showDeadLetters(group),
          `Show the dead letters of ${group.name}`));
        actions.appendChild(button('Redrive', () => redrive(group),
          `Redrive the dead letters of ${group.name}`));
      }
      actions.appendChild(button('Delete', () => deleteGroup(group), `Delete group ${group.name}`));
      row.appendChild(actions);
      body.appendChild(row);
      const option = document.createElement('option');
      option.value = group.id;
      option.textContent = group.name;
      select.appendChild(option);
      $('alarm-group').appendChild(option.cloneNode(true));
    }
    if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function createGroup(event) {
  event.preventDefault();
  const name = $('group-name').value.trim();
  try {
    await api('POST', `/queues/${view.queue.id}/groups`, { groups: [{ name }] });
    $('group-name').value = '';
    say('queue-status', `Created group ${name}.`);
    await loadGroups();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

// Up to 10 of the group's dead letters, read from their lane: reading leases them, so
// they stay out of the lane for the API's shortest ack_wait (15 s), then come back.
async function showDeadLetters(group) {
  try {
    const path = `/queues/${view.queue.id}/groups/${group.id}/deadletters?max_msgs=10&time_wait=1&ack_wait=15`;
    const deliveries = await api('GET', path);
    $('dead-caption').textContent = `Dead letters of ${group.name}`;
    const body = $('dead-table').querySelector('tbody');
    body.replaceChildren();
    for (const delivery of deliveries) {
      const message = delivery.message;
      const row = document.createElement('tr');
      cell(row, message.message_id ?? '-');
      cell(row, typeof message.body === 'string' ? message.body : JSON.stringify(message.body), 'body');
      cell(row, JSON.stringify(message.attributes ?? {}));
      cell(row, message.sent_time ? new Date(message.sent_time).toISOString() : '-');
      body.appendChild(row);
    }
    $('dead-table').hidden = false;
    say('queue-status', `${deliveries.length} dead letter${deliveries.length === 1 ? '' : 's'} of ${group.name} shown.`);
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function redrive(group) {
  try {
    await api('POST', `/queues/${view.queue.id}/groups/${group.id}/deadletters/redrive`);
    say('queue-status', `Redrove the dead letters of ${group.name}.`);
    await loadGroups();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function deleteGroup(group) {
  try {
    await api('DELETE', `/queues/${view.queue.id}/groups/${group.id}`);
    say('queue-status', `Deleted group ${group.name}.`);
    await loadGroups();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function sendMessages(event) {
  event.preventDefault();
  let attributes;
  try {
    attributes = JSON.parse($('send-attributes').value || '{}');
    if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) {
      throw new Error('not an object');
    }
  } catch {
    say('queue-status', 'The attributes must be a JSON object.', true);
    return;
  }
  const count = Number($('send-count').value);
  const body = $('send-body').value;
  const tags = $('send-tags').value.split(',').map((t) => t.trim()).filter((t) => t);
  const delayMs = Number($('send-delay').value) * 1000;
  const message = { body, attributes };
  if (tags.length > 0) message.tags = tags;
  if (delayMs > 0) message.delay_time = delayMs;
  const messages = Array.from({ length: count }, () => message);
  try {
    const sent = await api('POST', `/queues/${view.queue.id}/messages`,
      { messages, return_id: true });
    say('queue-status', `Sent ${count} message${count === 1 ? '' : 's'}.`);
    if (delayMs > 0) {
      const due = new Date(Date.now() + delayMs).toISOString();
      for (const result of sent.messages) scheduled(result.id, due);
    }
    await loadGroups();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

// Cancels a delayed or scheduled message of this queue by its id; true when done.
async function cancelMessage(id) {
  try {
    await api('DELETE', `/queues/${view.queue.id}/messages/${id}`);
    say('queue-status', `Cancelled ${id}.`);
    return true;
  } catch (error) {
    say('queue-status', error.message, true);
    return false;
  }
}

// A delayed message sent from this page, with a button that cancels it.
function scheduled(id, due) {
  const row = document.createElement('tr');
  cell(row, id);
  cell(row, due);
  const actions = document.createElement('td');
  actions.appendChild(button('Cancel', async () => {
    if (await cancelMessage(id)) row.remove();
  }, `Cancel message ${id}`));
  row.appendChild(actions);
  $('scheduled-table').querySelector('tbody').appendChild(row);
}

// ---------------------------------------------------------------- tags

async function loadTags() {
  const list = $('tag-list');
  try {
    const data = await api('GET', `/queue/${view.queue.id}/tags`, undefined, 'v2');
    list.replaceChildren();
    for (const tag of data.tags) {
      const item = document.createElement('li');
      item.appendChild(document.createTextNode(`${tag.key} = ${tag.value} `));
      item.appendChild(button('Remove', () => changeTags('delete', tag),
        `Remove tag ${tag.key}`));
      list.appendChild(item);
    }
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

async function changeTags(action, tag) {
  try {
    await api('POST', `/queue/${view.queue.id}/tags/action`, { action, tags: [tag] }, 'v2');
    await loadTags();
  } catch (error) {
    say('queue-status', error.message, true);
  }
}

// ---------------------------------------------------------------- consume

function startConsuming(event) {
  event.preventDefault();
  const group = $('consume-group').value;
  if (!group) {
    say('queue-status', 'Create a consumer group first.', true);
    return;
  }
  stopConsuming();
  const count = Number($('consume-count').value);
  const interval = Number($('consume-interval').value);
  const queue = view.queue.id;
  const run = { stopped: false, timer: null };
  view.consuming = run;
  $('consume-start').disabled = true;
  $('consume-stop').disabled = false;
  say('queue-status', 'Consuming.');
  const pass = async () => {
    if (run.stopped) return;
    try {
      await consumeOnce(queue, group, count);
    } catch (error) {
      say('queue-status', error.message, true);
    }
    if (!run.stopped) run.timer = setTimeout(pass, interval);
  };
  pass();
}

async function consumeOnce(queue, group, count) {
  const path = `/queues/${queue}/groups/${group}/messages?max_msgs=${count}&time_wait=1`;
  const deliveries = await api('GET', path);
  if (!deliveries || deliveries.length === 0) return;
  const acks = deliveries.map((d) => ({ handler: d.handler, status: 'success' }));
  await api('POST', `/queues/${queue}/groups/${group}/ack`, { message: acks });
  const body = $('received-table').querySelector('tbody');
  const now = new Date().toISOString();
  for (const delivery of deliveries) {
    const message = delivery.message;
    const text = typeof message.body === 'string' ? message.body : JSON.stringify(message.body);
    const row = document.createElement('tr');
    cell(row, message.message_id ?? '-');
    cell(row, text, 'body');
    cell(row, String(new TextEncoder().encode(text).length));
    cell(row, JSON.stringify(message.attributes ?? {}));
    cell(row, message.sent_time ? new Date(message.sent_time).toISOString() : '-');
    cell(row, now);
    body.appendChild(row);
  }
  say('queue-status', `Received and acknowledged ${deliveries.length}.`);
  await loadGroups();
}

function stopConsuming() {
  const run = view.consuming;
  if (!run) return;
  run.stopped = true;
  clearTimeout(run.timer);
  view.consuming = null;
  $('consume-start').disabled = false;
  $('consume-stop').disabled = true;
}

// ---------------------------------------------------------------- wiring

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', login);
  $('login-keys-form').addEventListener('submit', loginWithKeys);
  $('logout').addEventListener('click', logout);
  $('tenant-form').addEventListener('submit', createTenant);
  $('nav-queues').addEventListener('click', openQueues);
  $('create-form').addEventListener('submit', createQueue);
  $('refresh-queues').addEventListener('click', loadQueues);
  $('delete-selected').addEventListener('click', () => deleteQueues(selectedQueues()));
  $('select-all').addEventListener('change', (event) => {
    for (const box of document.querySelectorAll('.queue-pick')) box.checked = event.target.checked;
  });
  $('group-form').addEventListener('submit', createGroup);
  $('send-form').addEventListener('submit', sendMessages);
  $('refresh-charts').addEventListener('click', loadCharts);
  $('cancel-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const id = $('cancel-id').value.trim();
    if (await cancelMessage(id)) {
      $('cancel-id').value = '';
      // A row of this page's own delayed messages goes with it.
      for (const row of $('scheduled-table').querySelectorAll('tbody tr')) {
        if (row.firstChild.textContent === id) row.remove();
      }
    }
  });
  $('trace-form').addEventListener('submit', traceMessage);
  $('refresh-alarms').addEventListener('click', loadAlarms);
  $('alarm-form').addEventListener('submit', addAlarm);
  $('tag-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    await changeTags('create', { key: $('tag-key').value.trim(), value: $('tag-value').value });
    $('tag-key').value = '';
    $('tag-value').value = '';
  });
  $('consume-form').addEventListener('submit', startConsuming);
  $('consume-stop').addEventListener('click', () => {
    stopConsuming();
    say('queue-status', 'Stopped.');
  });
  show('login-view');
  $('login-tenant').focus();
});
