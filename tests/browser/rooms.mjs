// The demo page's rooms panel (/client.js): it follows a room while publications arrive through
// the HTTP API; its socket is cut mid-stream through the admin API, and the page must still show
// every publication once, in order, having reconnected and recovered what it missed. Then the
// room chat in a history room.
import { env, run, until } from './lib.mjs';

const base = env('WHARF_HTTP_URL');
const apiKey = env('WHARF_API_KEY');
const account = env('WHARF_ACCOUNT');
const password = env('WHARF_PASSWORD');
const ROOM = 'demo:feed';
const TOTAL = 60;

async function api(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { 'X-Api-Key': apiKey, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** The id of the page's rooms-protocol connection. */
async function roomsConnection() {
  return until('the page\'s /wss/rooms connection', async () => {
    const { connections } = await api('GET', '/api/connections');
    const mine = connections.filter((c) => c.route === '/wss/rooms');
    return mine.length === 1 ? mine[0].id : null;
  });
}

const shown = (page) => page.$$eval(`#rooms-log li.pub[data-room="${ROOM}"] .text`, (items) => items.map((i) => i.textContent));

await run('rooms', async (browser) => {
  const page = await browser.page('rooms');
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('#account', account);
  await page.fill('#password', password);
  await page.click('#login-button');
  await page.waitForSelector('#login-status.ok');

  await page.fill('#follow-room', ROOM);
  await page.click('#follow');
  await page.waitForSelector('#rooms-status[data-state="open"]');
  await page.waitForSelector('#rooms-log li.recovered');
  const first = await roomsConnection();

  // A publisher at about 100 a second; a third of the way in, the page's socket is closed by
  // the server, and publishing goes on while the page is away.
  for (let n = 1; n <= TOTAL; n++) {
    await api('POST', '/api/publish', { room: ROOM, text: `m${n}` });
    if (n === TOTAL / 3) {
      await api('DELETE', `/api/connections/${first}`);
      await page.waitForSelector('#rooms-log li.event >> text=reconnecting');
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await until('every publication on the page', async () => (await shown(page)).length >= TOTAL ? true : null);
  // A moment more, so a late duplicate would show.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const texts = await shown(page);
  const expected = Array.from({ length: TOTAL }, (_, i) => `m${i + 1}`);
  if (JSON.stringify(texts) !== JSON.stringify(expected)) {
    throw new Error(`the page shows ${texts.length} publications: ${texts.join(' ')}`);
  }
  const second = await roomsConnection();
  if (second === first) throw new Error('the page did not reconnect');
  const recoveries = await page.$$eval('#rooms-log li.recovered', (items) => items.length);
  if (recoveries < 2) throw new Error(`recoveries shown: ${recoveries}`);
  if (await page.$('#rooms-log li.unrecovered')) throw new Error('a recovery was incomplete');

  // Publishing from the page goes through the protocol and comes back once.
  await page.fill('#publish-room', ROOM);
  await page.fill('#publish-text', 'from the page');
  await page.press('#publish-text', 'Enter');
  await page.waitForSelector(`#rooms-log li.pub[data-room="${ROOM}"] >> text=from the page`);
  await browser.shot(page, 'demo-rooms.png');

  // The room chat in a room that keeps history: its messages arrive wrapped with a position,
  // and the page shows them as chat lines all the same.
  await page.fill('#room', 'demo:chat');
  await page.click('#room-join');
  await page.waitForSelector('#chat-status[data-state="open"]');
  await page.fill('#chat-input', 'hi history');
  await page.press('#chat-input', 'Enter');
  await page.waitForSelector('#chat-log li.out >> text=hi history');
  const who = await page.textContent('#chat-log li.out .who');
  if (!who.includes('(you)')) throw new Error(`chat sender: ${who}`);
});
