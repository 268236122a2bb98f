// The dashboard: signs in with the API key or an admin token, then follows the server over
// its admin feed (/wss/admin/feed, one JSON snapshot a second) and closes connections over
// the HTTP API (DELETE /api/connections/{id}).
import { loadConfig, openSocket, el, age, describeClose, setStatus } from '/assets/common.js';

const $ = (id) => document.getElementById(id);
const HISTORY = 120; // samples kept for the chart: two minutes at one a second

let config = null;
let credential = sessionStorage.getItem('wharf.admin');
let feed = null;
let retry = null;
let history = []; // [{t, connections, in, out}], rates in messages per second
let previous = null; // the last snapshot, for deltas
let latest = null;

// ---- sign-in ----------------------------------------------------------------------------

/** Checks the credential over HTTP first: a refused WebSocket handshake gives no reason. */
async function checkCredential(value) {
  const response = await fetch('/api/cluster', { headers: { Authorization: `Bearer ${value}` } });
  if (response.ok) return null;
  try {
    const json = await response.json();
    return `${json.error}: ${json.msg}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function signIn(event) {
  event.preventDefault();
  const value = $('credential').value.trim();
  $('auth-status').className = 'status-line';
  $('auth-status').textContent = 'checking…';
  const problem = await checkCredential(value);
  if (problem) {
    $('auth-status').className = 'status-line error';
    $('auth-status').textContent = `refused: ${problem}`;
    return;
  }
  credential = value;
  sessionStorage.setItem('wharf.admin', value);
  $('credential').value = '';
  $('auth-status').textContent = '';
  start();
}

function signOut() {
  sessionStorage.removeItem('wharf.admin');
  credential = null;
  clearTimeout(retry);
  if (feed) feed.close(1000, 'signed out');
  feed = null;
  $('board').hidden = true;
  $('auth-card').hidden = false;
  $('sign-out').hidden = true;
  setStatus($('feed-status'), 'idle', 'offline');
}

// ---- the feed ---------------------------------------------------------------------------

function start() {
  $('auth-card').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = false;
  connect(0);
}

function connect(attempt) {
  setStatus($('feed-status'), 'connecting', 'connecting…');
  const socket = openSocket(config, config.feed_path, credential);
  feed = socket;
  socket.onopen = () => {
    attempt = 0;
    setStatus($('feed-status'), 'open', 'live');
  };
  socket.onmessage = (event) => {
    try {
      render(JSON.parse(event.data));
    } catch (e) {
      console.error('bad snapshot', e);
    }
  };
  socket.onclose = (event) => {
    if (feed !== socket || !credential) return;
    setStatus($('feed-status'), 'closed', `offline · ${describeClose(event)}`);
    // Reconnect with backoff: 1 s, 2 s, 4 s … up to 30 s.
    const delay = Math.min(30000, 1000 * 2 ** attempt);
    retry = setTimeout(() => connect(attempt + 1), delay);
  };
}

// ---- rendering --------------------------------------------------------------------------

function rate(now, before, pick) {
  if (!now || !before) return null;
  const a = pick(now);
  const b = pick(before);
  const seconds = (now.at_ms - before.at_ms) / 1000;
  if (a == null || b == null || seconds <= 0) return null;
  return Math.max(0, (a - b) / seconds);
}

const fmtRate = (value) => (value == null ? '–' : value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString());

function render(snapshot) {
  previous = latest;
  latest = snapshot;
  const metrics = snapshot.metrics;
  const rateIn = rate(snapshot, previous, (s) => s.metrics?.messages_in);
  const rateOut = rate(snapshot, previous, (s) => s.metrics?.messages_out);

  const nodes = snapshot.nodes || [];
  $('node').textContent = snapshot.cluster === false
    ? `node ${snapshot.node} only (the cluster backplane is unreachable)`
    : nodes.length > 1
      ? `${nodes.length} nodes (${nodes.map((n) => `${n.node}: ${n.count.toLocaleString()}`).join(', ')}), served by node ${snapshot.node}`
      : `node ${snapshot.node}`;
  $('stat-connections').textContent = snapshot.count.toLocaleString();
  $('stat-in').textContent = fmtRate(rateIn);
  $('stat-out').textContent = fmtRate(rateOut);
  if (metrics) {
    const refused = Object.values(metrics.handshakes_rejected || {}).reduce((a, b) => a + b, 0);
    $('stat-handshakes').textContent = `${metrics.handshakes_accepted.toLocaleString()} / ${refused.toLocaleString()}`;
  }
  $('rates-note').hidden = Boolean(metrics);

  history.push({ t: snapshot.at_ms, connections: snapshot.count, in: rateIn, out: rateOut });
  if (history.length > HISTORY) history = history.slice(-HISTORY);
  drawChart();
  renderRoutes(snapshot);
  renderRejections(metrics);
  renderConnections(snapshot);
}

function renderRoutes(snapshot) {
  const routeMetrics = (s) => new Map((s?.metrics?.routes || []).map((r) => [`${r.server} ${r.route}`, r]));
  const now = routeMetrics(snapshot);
  const before = routeMetrics(previous);
  const seconds = previous ? (snapshot.at_ms - previous.at_ms) / 1000 : 0;
  const perSecond = (key, field) => {
    const a = now.get(key);
    const b = before.get(key);
    if (!a || !b || seconds <= 0) return null;
    return Math.max(0, (a[field] - b[field]) / seconds);
  };
  const rows = snapshot.routes.map((route) => {
    const key = `${route.server} ${route.route}`;
    return el('tr', { class: route.open ? '' : 'quiet' },
      el('td', {}, route.server),
      el('td', {}, el('code', {}, route.route)),
      el('td', { class: 'num' }, route.open.toLocaleString()),
      el('td', { class: 'num' }, fmtRate(perSecond(key, 'messages_in'))),
      el('td', { class: 'num' }, fmtRate(perSecond(key, 'messages_out'))));
  });
  $('routes').tBodies[0].replaceChildren(...rows);
}

function renderRejections(metrics) {
  const entries = Object.entries(metrics?.handshakes_rejected || {}).sort((a, b) => b[1] - a[1]);
  const rows = entries.length
    ? entries.map(([reason, count]) => el('tr', {}, el('td', {}, el('code', {}, reason)), el('td', { class: 'num' }, count.toLocaleString())))
    : [el('tr', { class: 'quiet' }, el('td', { colspan: 2 }, metrics ? 'none so far' : 'not reported by this server'))];
  $('rejections').tBodies[0].replaceChildren(...rows);
}

// One row per connection id, kept across snapshots: a row is updated in place rather than
// redrawn, so a click on its button is never lost to the next snapshot.
const rowsById = new Map();

function connectionRow(c) {
  let row = rowsById.get(c.id);
  if (!row) {
    const close = el('button', { class: 'danger small', 'data-close': c.id, onclick: () => askClose(c.id) }, 'Close');
    row = el('tr', { dataset: { id: c.id } }, el('td'), el('td'), el('td'), el('td'), el('td', { class: 'num' }), el('td'),
      el('td', { class: 'actions' }, close));
    rowsById.set(c.id, row);
  }
  const user = c.account
    ? [c.account, c.user ? el('span', { class: 'muted' }, ` #${c.user}`) : null]
    : [c.user ?? el('span', { class: 'muted' }, '—')];
  const cells = [
    [el('code', {}, c.id)],
    user,
    [el('code', {}, c.path ?? c.route)],
    [c.peer],
    [age(c.age_ms)],
    (c.rooms || []).map((room) => el('span', { class: 'tag' }, room)),
  ];
  cells.forEach((content, i) => row.cells[i].replaceChildren(...content.filter((x) => x != null)));
  row.cells[2].title = c.route;
  return row;
}

function renderConnections(snapshot) {
  const filter = $('filter').value.trim().toLowerCase();
  const matches = (c) => !filter || [c.id, c.user, c.account, c.route, c.path, c.peer, ...(c.rooms || [])]
    .some((field) => field != null && String(field).toLowerCase().includes(filter));
  const listed = new Set(snapshot.connections.map((c) => c.id));
  for (const [id, row] of rowsById) {
    if (!listed.has(id)) {
      row.remove();
      rowsById.delete(id);
    }
  }
  const rows = snapshot.connections.filter(matches).map(connectionRow);
  const body = $('connections').tBodies[0];
  const wanted = new Set(rows);
  for (const child of [...body.rows]) if (!wanted.has(child)) child.remove();
  // Insert and reorder only where needed: rows already in place are not touched.
  rows.forEach((row, i) => {
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
  });
  if (rows.length === 0) {
    body.append(el('tr', { class: 'quiet' }, el('td', { colspan: 7 }, filter ? 'no connection matches' : 'no connections')));
  }
  const more = snapshot.count - snapshot.connections.length;
  $('connections-more').hidden = more <= 0;
  $('connections-more').textContent = `and ${more.toLocaleString()} more in the cluster (the feed lists the oldest ${snapshot.connections.length})`;
}

// ---- the chart ----------------------------------------------------------------------------

const COLORS = { connections: '#2563eb', in: '#059669', out: '#d97706', grid: '#e5e7eb', text: '#6b7280' };

/** A scale of four steps of 1, 2 or 5 × 10^k covering `value` (at least `minStep` each). */
function scale(value, minStep) {
  const raw = Math.max(value / 4, minStep);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw - 1e-9);
  return { max: step * 4, step, digits: Math.max(0, -Math.floor(Math.log10(step))) };
}

function drawChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);

  const pad = { left: 44, right: 44, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const connScale = scale(Math.max(...history.map((p) => p.connections)), 1);
  const rates = history.flatMap((p) => [p.in, p.out]).filter((v) => v != null);
  const rateScale = scale(Math.max(0, ...rates), 0.1);
  const maxConn = connScale.max;
  const maxRate = rateScale.max;
  const x = (i) => pad.left + (w * (HISTORY - history.length + i)) / (HISTORY - 1);

  // Grid and both scales: connections on the left, messages per second on the right.
  g.font = '11px system-ui, sans-serif';
  g.lineWidth = 1;
  for (let step = 0; step <= 4; step += 1) {
    const y = pad.top + h - (h * step) / 4;
    g.strokeStyle = COLORS.grid;
    g.beginPath();
    g.moveTo(pad.left, Math.round(y) + 0.5);
    g.lineTo(pad.left + w, Math.round(y) + 0.5);
    g.stroke();
    g.fillStyle = COLORS.connections;
    g.textAlign = 'right';
    g.fillText((connScale.step * step).toFixed(connScale.digits), pad.left - 6, y + 4);
    if (rates.length) {
      g.fillStyle = COLORS.in;
      g.textAlign = 'left';
      g.fillText((rateScale.step * step).toFixed(rateScale.digits), pad.left + w + 6, y + 4);
    }
  }
  g.fillStyle = COLORS.text;
  g.textAlign = 'left';
  g.fillText('−2 min', pad.left, height - 6);
  g.textAlign = 'right';
  g.fillText('now', pad.left + w, height - 6);

  const line = (pick, max, color, fill) => {
    const points = history.map((p, i) => [x(i), pick(p)]).filter(([, v]) => v != null);
    if (points.length === 0) return;
    const y = (v) => pad.top + h - (h * v) / max;
    g.beginPath();
    points.forEach(([px, v], i) => (i ? g.lineTo(px, y(v)) : g.moveTo(px, y(v))));
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.lineJoin = 'round';
    g.stroke();
    if (fill) {
      g.lineTo(points[points.length - 1][0], pad.top + h);
      g.lineTo(points[0][0], pad.top + h);
      g.closePath();
      g.fillStyle = `${color}1f`;
      g.fill();
    }
  };
  line((p) => p.connections, maxConn, COLORS.connections, true);
  line((p) => p.in, maxRate, COLORS.in, false);
  line((p) => p.out, maxRate, COLORS.out, false);
}

// ---- closing a connection -------------------------------------------------------------------

function askClose(id) {
  $('close-id').textContent = id;
  $('close-error').textContent = '';
  $('close-dialog').showModal();
  $('close-reason').focus();
}

async function confirmClose(event) {
  event.preventDefault();
  const id = $('close-id').textContent;
  const body = JSON.stringify({ code: Number($('close-code').value), reason: $('close-reason').value });
  const response = await fetch(`/api/connections/${encodeURIComponent(id)}`, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${credential}`, 'Content-Type': 'application/json' },
    body,
  });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const json = await response.json();
      message = json.msg || message;
    } catch (_) { /* keep the status */ }
    $('close-error').textContent = message;
    return;
  }
  $('close-dialog').close();
  const row = document.querySelector(`#connections tr[data-id="${CSS.escape(id)}"]`);
  if (row) row.classList.add('closing');
}

// ---- start --------------------------------------------------------------------------------

async function main() {
  $('auth-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('close-form').addEventListener('submit', confirmClose);
  $('close-cancel').addEventListener('click', () => $('close-dialog').close());
  $('filter').addEventListener('input', () => latest && renderConnections(latest));
  window.addEventListener('resize', drawChart);
  try {
    config = await loadConfig();
  } catch (e) {
    $('auth-status').className = 'status-line error';
    $('auth-status').textContent = `cannot read the server's settings: ${e.message}`;
    return;
  }
  document.body.dataset.ready = 'true';
  if (credential) start();
}

main();
