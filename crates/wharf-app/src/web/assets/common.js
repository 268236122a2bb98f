// Shared by the demo page and the dashboard: where the ws server is, and small DOM helpers.

/** The pages' settings from the http server: the ws server's URL or port, the paths. */
export async function loadConfig() {
  const response = await fetch('/config.json', { cache: 'no-store' });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return response.json();
}

/** The ws server's base URL (no trailing slash): `ws_url`, else this host on `ws_port`. */
export function wsBase(config) {
  if (config.ws_url) return config.ws_url.replace(/\/+$/, '');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.hostname}:${config.ws_port}`;
}

/**
 * Opens a WebSocket carrying `credential` the browser way: as the subprotocol
 * `wharf.bearer.<credential>`, next to `wharf`, the protocol the server selects (a browser
 * fails a handshake that offers protocols when the server selects none).
 */
export function openSocket(config, path, credential) {
  return new WebSocket(wsBase(config) + path, [config.protocol, config.bearer_prefix + credential]);
}

/** `el('p', {class: 'x'}, 'text', child)`: an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** `14:03:07` */
export function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
}

/** `850 ms`, `12 s`, `4 min`, `2 h 5 min` */
export function age(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A close event as people read it: `1000 · alice has been disconnected by the server`. */
export function describeClose(event) {
  const reason = event.reason ? ` · ${event.reason}` : '';
  return `${event.code}${reason}`;
}

/** Sets a status pill: `state` is one of idle, connecting, open, closed, error. */
export function setStatus(node, state, text) {
  node.dataset.state = state;
  node.textContent = text;
}
