// The demo page end to end: log in, talk to /wss/demo, chat in a room, nihao disconnects.
import { env, run, until } from './lib.mjs';

const base = env('WHARF_HTTP_URL');
const account = env('WHARF_ACCOUNT');
const password = env('WHARF_PASSWORD');

await run('demo', async (browser) => {
  const page = await browser.page('demo');
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]');

  // A wrong password is refused with the server's message.
  await page.fill('#account', account);
  await page.fill('#password', 'not the password');
  await page.click('#login-button');
  await page.waitForSelector('#login-status.error');

  await page.fill('#password', password);
  await page.click('#login-button');
  await page.waitForSelector('#login-status.ok');
  const status = await page.textContent('#login-status');
  if (!status.includes(`logged in as ${account}`)) throw new Error(`login status: ${status}`);

  // /wss/demo with the token as the wharf.bearer.<token> subprotocol.
  await page.click('#demo-connect');
  await page.waitForSelector('#demo-status[data-state="open"]');
  await page.waitForSelector('#demo-log li.in >> text=Authorization Success');
  await page.fill('#demo-input', 'hello from chromium');
  await page.press('#demo-input', 'Enter');
  await page.waitForSelector('#demo-log li.in >> text=Recv: hello from chromium');
  const claims = await until('the claims', () => page.textContent('#demo-log li.in pre').catch(() => null));
  if (JSON.parse(claims).account !== account) throw new Error(`claims: ${claims}`);

  // The room chat: our own message comes back from the room, marked as ours.
  await page.fill('#room', 'lobby');
  await page.click('#room-join');
  await page.waitForSelector('#chat-status[data-state="open"]');
  await page.fill('#chat-input', 'hi room');
  await page.press('#chat-input', 'Enter');
  await page.waitForSelector('#chat-log li.out >> text=hi room');
  const who = await page.textContent('#chat-log li.out .who');
  if (!who.includes('(you)')) throw new Error(`chat sender: ${who}`);

  await browser.shot(page, 'demo-talking.png');

  // nihao: the server closes with 1000 and a reason naming the account.
  await page.fill('#demo-input', 'nihao');
  await page.press('#demo-input', 'Enter');
  await page.waitForSelector('#demo-status[data-state="closed"]');
  const closed = await page.textContent('#demo-log li.close .text');
  const expected = `closed 1000 · ${account} has been disconnected by the server`;
  if (closed !== expected) throw new Error(`close: got "${closed}", want "${expected}"`);
  await browser.shot(page, 'demo-nihao.png');
});
