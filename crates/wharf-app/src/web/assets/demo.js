// The demo page: log in over HTTP, talk to /wss/demo, chat in a room, and follow rooms over
// the rooms protocol with /client.js.
import { loadConfig, openSocket, wsBase, el, clock, describeClose, setStatus } from '/assets/common.js';
import { connect } from '/client.js';

const $ = (id) => document.getElementById(id);

let config = null;
let token = sessionStorage.getItem('wharf.token');
let account = sessionStorage.getItem('wharf.account');
let demo = null; // the /wss/demo socket
let chat = null; // the room socket
let rooms = null; // the rooms protocol client (one socket, many rooms)

/** Appends a line to a log: `kind` is in, out, event or error. */
function log(list, kind, text, extra) {
  const item = el('li', { class: kind }, el('time', {}, clock()), el('span', { class: 'text' }, text), extra);
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function enable(ids, on) {
  for (const id of ids) $(id).disabled = !on;
}

// ---- 1. login ---------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  const status = $('login-status');
  status.className = 'status-line';
  status.textContent = 'logging in…';
  const body = JSON.stringify({ account: $('account').value, password: $('password').value });
  try {
    const response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
    });
    const json = await response.json();
    if (!response.ok) throw new Error(json.msg || `HTTP ${response.status}`);
    token = json.token;
    account = $('account').value;
    sessionStorage.setItem('wharf.token', token);
    sessionStorage.setItem('wharf.account', account);
    $('password').value = '';
    showLoggedIn(json.expires_at);
  } catch (e) {
    status.className = 'status-line error';
    status.textContent = `login failed: ${e.message}`;
  }
}

function showLoggedIn(expiresAt) {
  const status = $('login-status');
  status.className = 'status-line ok';
  const until = expiresAt ? `, token valid until ${clock(new Date(expiresAt * 1000))}` : '';
  status.textContent = `logged in as ${account}${until}`;
  enable(['demo-connect', 'room', 'room-join', 'follow-room', 'follow'], true);
  enable(['publish-room', 'publish-text', 'publish'], true);
}

// ---- 2. /wss/demo -----------------------------------------------------------------------

function connectDemo() {
  const list = $('demo-log');
  setStatus($('demo-status'), 'connecting', 'connecting…');
  enable(['demo-connect'], false);
  demo = openSocket(config, config.demo_path, token);
  demo.onopen = () => {
    setStatus($('demo-status'), 'open', 'connected');
    log(list, 'event', 'connected');
    enable(['demo-disconnect', 'demo-input', 'demo-send'], true);
    $('demo-input').focus();
  };
  demo.onmessage = (event) => {
    const text = String(event.data);
    // The claims arrive as JSON: show them as a compact block.
    if (text.startsWith('{')) {
      try {
        log(list, 'in', 'claims', el('pre', {}, JSON.stringify(JSON.parse(text), null, 1)));
        return;
      } catch (_) { /* not JSON after all */ }
    }
    log(list, 'in', text);
  };
  demo.onclose = (event) => {
    const text = `closed ${describeClose(event)}`;
    // The pill stays short; the log line has the reason, and the pill's tooltip too.
    setStatus($('demo-status'), 'closed', `closed ${event.code}`);
    $('demo-status').title = text;
    log(list, event.code === 1000 ? 'event close' : 'error close', text);
    enable(['demo-disconnect', 'demo-input', 'demo-send'], false);
    enable(['demo-connect'], true);
    demo = null;
  };
  demo.onerror = () => log(list, 'error', 'the connection failed (see the close code)');
}

function sendDemo(event) {
  event.preventDefault();
  const input = $('demo-input');
  if (!demo || demo.readyState !== WebSocket.OPEN || input.value === '') return;
  demo.send(input.value);
  log($('demo-log'), 'out', input.value);
  input.value = '';
}

// ---- 3. room chat -----------------------------------------------------------------------

function joinRoom(event) {
  event.preventDefault();
  if (chat) chat.close(1000, 'switching rooms');
  const room = $('room').value.trim();
  const list = $('chat-log');
  setStatus($('chat-status'), 'connecting', `joining ${room}…`);
  const socket = openSocket(config, config.rooms_path + encodeURIComponent(room), token);
  chat = socket;
  socket.onopen = () => {
    setStatus($('chat-status'), 'open', `in #${room}`);
    log(list, 'event', `joined #${room}`);
    enable(['room-leave', 'chat-input', 'chat-send'], true);
    $('chat-input').focus();
  };
  socket.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      log(list, 'in', String(event.data));
      return;
    }
    // A room that keeps history wraps each message: {room, position, text: "<the chat JSON>"}.
    if (message.position && typeof message.text === 'string') {
      try {
        message = JSON.parse(message.text);
      } catch (_) {
        log(list, 'in', message.text);
        return;
      }
    }
    if (message.event) {
      log(list, 'event', `${message.user || message.conn} ${message.event === 'join' ? 'joined' : 'left'}`);
      return;
    }
    const mine = message.user !== null && message.user === ownUid();
    log(list, mine ? 'out' : 'in', message.text, el('span', { class: 'who' }, whoLabel(message)));
  };
  socket.onclose = (event) => {
    if (chat === socket) {
      setStatus($('chat-status'), 'closed', `left · ${describeClose(event)}`);
      enable(['room-leave', 'chat-input', 'chat-send'], false);
      chat = null;
    }
    log(list, 'event', `left #${room} (${describeClose(event)})`);
  };
}

/** The user id in our token (its payload is base64url JSON), to tell our own messages. */
function ownUid() {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return String(JSON.parse(atob(payload)).uid);
  } catch (_) {
    return null;
  }
}

function whoLabel(message) {
  const who = message.user === ownUid() ? `${account} (you)` : `user ${message.user ?? '?'}`;
  return `${who} · ${message.conn}`;
}

function sendChat(event) {
  event.preventDefault();
  const input = $('chat-input');
  if (!chat || chat.readyState !== WebSocket.OPEN || input.value === '') return;
  chat.send(input.value);
  input.value = '';
}

// ---- 4. rooms over one socket ----------------------------------------------------------

/** The rooms client, connected on first use; its state shows in the pill and the log. */
function roomsClient() {
  if (rooms) return rooms;
  const list = $('rooms-log');
  rooms = connect(wsBase(config) + config.rooms_protocol_path, {
    token,
    onState: (state, detail) => {
      if (state === 'open') setStatus($('rooms-status'), 'open', 'connected');
      if (state === 'connecting') setStatus($('rooms-status'), 'connecting', 'connecting…');
      if (state === 'closed') {
        setStatus($('rooms-status'), 'closed', `closed ${detail.code}`);
        log(list, 'event', `disconnected (${describeClose(detail)}); reconnecting`);
      }
    },
  });
  return rooms;
}

function follow(event) {
  event.preventDefault();
  const room = $('follow-room').value.trim();
  const list = $('rooms-log');
  roomsClient().subscribe(room, (publication) => {
    const text = publication.text ?? `(${publication.binary_base64.length} base64 bytes)`;
    const item = el('li', { class: 'in pub', dataset: { room, position: publication.position } },
      el('time', {}, clock()), el('span', { class: 'text' }, text),
      el('span', { class: 'who' }, `#${room} · ${publication.position}`));
    list.append(item);
    list.scrollTop = list.scrollHeight;
  }, {
    onRecovery: (r) => {
      if (r.recovered) log(list, 'event recovered', `#${room} from ${r.position} (${r.delivered} recovered)`);
      else log(list, 'error unrecovered', `#${room}: some publications are gone; live from ${r.position}`);
    },
    onError: (e) => log(list, 'error', `#${room}: ${e.error}: ${e.message}`),
  });
}

async function publishRoom(event) {
  event.preventDefault();
  const room = $('publish-room').value.trim();
  const input = $('publish-text');
  if (input.value === '') return;
  const text = input.value;
  input.value = '';
  try {
    await roomsClient().publish(room, text);
  } catch (e) {
    log($('rooms-log'), 'error', `publish to #${room}: ${e.error || ''} ${e.message}`);
  }
}

// ---- start ------------------------------------------------------------------------------

async function main() {
  $('login-form').addEventListener('submit', login);
  $('demo-connect').addEventListener('click', connectDemo);
  $('demo-disconnect').addEventListener('click', () => demo && demo.close(1000, 'bye from the browser'));
  $('demo-form').addEventListener('submit', sendDemo);
  $('room-form').addEventListener('submit', joinRoom);
  $('room-leave').addEventListener('click', () => chat && chat.close(1000, 'left'));
  $('chat-form').addEventListener('submit', sendChat);
  $('follow-form').addEventListener('submit', follow);
  $('publish-form').addEventListener('submit', publishRoom);
  try {
    config = await loadConfig();
  } catch (e) {
    $('login-status').className = 'status-line error';
    $('login-status').textContent = `cannot read the server's settings: ${e.message}`;
    return;
  }
  document.body.dataset.ready = 'true';
  if (token && account) {
    $('account').value = account;
    showLoggedIn(null);
  }
}

main();
