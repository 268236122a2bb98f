// wharf's browser client for the rooms protocol wharf.rooms.v1 (docs/protocol.md): one socket,
// many rooms, replies matched by id, reconnection with backoff and jitter, and recovery of what
// was missed while away. An ES module without dependencies; served by wharf at /client.js.
//
//   import { connect } from '/client.js';
//   const rooms = connect('ws://localhost:9502/wss/rooms', { token });
//   rooms.subscribe('demo:news', (p) => console.log(p.position, p.text), {
//     onRecovery: (r) => { if (!r.recovered) reloadFromYourApi(); },
//   });
//   await rooms.publish('demo:news', 'hello');

const PROTOCOL = 'wharf.rooms.v1';
const BEARER = 'wharf.bearer.';

/** A position "EPOCH:OFFSET" as { epoch, offset }. */
export function parsePosition(text) {
  const at = text.lastIndexOf(':');
  return { epoch: text.slice(0, at), offset: Number(text.slice(at + 1)) };
}

/** An error reply: `code` (HTTP-like status), `error` (machine code) and the message. */
export class RoomsError extends Error {
  constructor(reply) {
    super(reply.msg || reply.error);
    this.code = reply.code;
    this.error = reply.error;
  }
}

/** Delay before reconnect attempt `attempt` (0, 1, …): doubling from `min` up to `max`, then
 *  a random half to full of it, so that clients cut at once do not come back at once. */
export function backoff(attempt, min, max) {
  const full = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return full / 2 + Math.random() * (full / 2);
}

export class RoomsClient {
  /**
   * @param {string} url   ws:// or wss:// URL of the rooms route (`/wss/rooms`)
   * @param {object} opts  { token, minDelay = 250, maxDelay = 10000, onState(state, detail) }
   */
  constructor(url, opts = {}) {
    this.url = url;
    this.token = opts.token;
    this.minDelay = opts.minDelay ?? 250;
    this.maxDelay = opts.maxDelay ?? 10000;
    this.onState = opts.onState || (() => {});
    this.subs = new Map(); // room → { onPublication, onRecovery, onError, position }
    this.pending = new Map(); // id → { resolve, reject }
    this.queue = []; // commands waiting for the socket
    this.nextId = 1;
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.timer = null;
  }

  /** Opens the socket (called by `connect`). */
  open() {
    if (this.closed) return;
    const protocols = this.token ? [PROTOCOL, BEARER + this.token] : [PROTOCOL];
    const ws = new WebSocket(this.url, protocols);
    this.ws = ws;
    this.onState('connecting', { attempt: this.attempt });
    ws.onopen = () => {
      this.attempt = 0;
      this.onState('open', {});
      for (const [room, sub] of this.subs) this.sendSubscribe(room, sub);
      for (const frame of this.queue.splice(0)) ws.send(frame);
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const [, call] of this.pending) call.reject(new Error('disconnected'));
      this.pending.clear();
      this.onState('closed', { code: event.code, reason: event.reason });
      if (!this.closed) {
        const delay = backoff(this.attempt++, this.minDelay, this.maxDelay);
        this.timer = setTimeout(() => this.open(), delay);
      }
    };
  }

  /** Sends `command` with a new id; resolves with its reply, rejects with a RoomsError. */
  call(command) {
    const id = this.nextId++;
    const frame = JSON.stringify({ id, ...command });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
      else this.queue.push(frame);
    });
  }

  /**
   * Follows `room`: `onPublication({room, position, text | binary_base64})` gets each
   * publication once, in order, across reconnects. `opts.onRecovery({recovered, position,
   * delivered})` after every (re)subscribe; `recovered: false` means some publications are
   * gone (reload the state). `opts.since` starts from a position the app kept.
   * Returns { unsubscribe() }.
   */
  subscribe(room, onPublication, opts = {}) {
    const sub = {
      onPublication,
      onRecovery: opts.onRecovery || (() => {}),
      onError: opts.onError || ((e) => console.error(`wharf: ${room}: ${e.message}`)),
      position: opts.since || null,
    };
    this.subs.set(room, sub);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendSubscribe(room, sub);
    return { unsubscribe: () => this.unsubscribe(room) };
  }

  sendSubscribe(room, sub) {
    const command = { op: 'subscribe', room };
    if (sub.position) command.since = sub.position;
    this.call(command).then(
      (reply) => {
        if (this.subs.get(room) !== sub) return;
        // The reply's position is where the subscription stands; pushes already seen may be
        // past it only within the same epoch.
        if (!sub.position || !reply.recovered || newer(reply.position, sub.position)) {
          sub.position = reply.position;
        }
        sub.onRecovery({ recovered: reply.recovered, position: reply.position, delivered: reply.delivered });
      },
      (error) => {
        if (error instanceof RoomsError && this.subs.get(room) === sub) {
          this.subs.delete(room);
          sub.onError(error);
        }
      },
    );
  }

  /** Stops following `room`. */
  unsubscribe(room) {
    if (!this.subs.delete(room)) return Promise.resolve();
    return this.call({ op: 'unsubscribe', room }).catch(() => {});
  }

  /** Publishes text; resolves with { position, duplicate }. Give `idempotencyKey` to retry safely. */
  publish(room, text, idempotencyKey) {
    const command = { op: 'publish', room, text };
    if (idempotencyKey) command.idempotency_key = idempotencyKey;
    return this.call(command);
  }

  /** Reads a room's history: { top, complete, publications }. */
  history(room, { since, limit } = {}) {
    return this.call({ op: 'history', room, since, limit });
  }

  /** Who is in a room: { count, members: [{ conn, user }] }. */
  presence(room) {
    return this.call({ op: 'presence', room });
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.id !== undefined) {
      const call = this.pending.get(frame.id);
      if (!call) return;
      this.pending.delete(frame.id);
      if (frame.error) call.reject(new RoomsError(frame));
      else call.resolve(frame);
      return;
    }
    const sub = this.subs.get(frame.room);
    if (!sub || !frame.position) return;
    if (sub.position) {
      const last = parsePosition(sub.position);
      const next = parsePosition(frame.position);
      if (last.epoch === next.epoch && next.offset <= last.offset) return; // seen already
      if (last.epoch !== next.epoch) {
        sub.onRecovery({ recovered: false, position: frame.position, delivered: 0 });
      }
    }
    sub.position = frame.position;
    sub.onPublication(frame);
  }
}

function newer(a, b) {
  const x = parsePosition(a);
  const y = parsePosition(b);
  return x.epoch !== y.epoch || x.offset > y.offset;
}

/** Connects to the rooms route at `url` with `opts` (see RoomsClient) and returns the client. */
export function connect(url, opts) {
  const client = new RoomsClient(url, opts);
  client.open();
  return client;
}
