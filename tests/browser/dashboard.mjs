// The dashboard end to end: sign in with the API key, follow the live feed, see a second
// connection appear, close it with the button and see it gone (and closed on its side).
import { env, run, until } from './lib.mjs';

const base = env('WHARF_HTTP_URL');
const apiKey = env('WHARF_API_KEY');
const account = env('WHARF_ACCOUNT');
const password = env('WHARF_PASSWORD');
const REASON = 'closed by the e2e test';

await run('dashboard', async (browser) => {
  const dash = await browser.page('dashboard');
  await dash.goto(`${base}/dashboard`);
  await dash.waitForSelector('body[data-ready="true"]');

  // A wrong key is refused with the API's reason.
  await dash.fill('#credential', 'wrong key');
  await dash.click('#auth-button');
  await dash.waitForSelector('#auth-status.error');

  await dash.fill('#credential', apiKey);
  await dash.click('#auth-button');
  await dash.waitForSelector('#feed-status[data-state="open"]');
  const count = async () => Number((await dash.textContent('#stat-connections')).replace(/\D/g, '')) || 0;
  // The feed itself is a connection; wait for the first snapshot that lists it.
  const before = await until('the first snapshot', count, (n) => n >= 1);

  // A second tab: the demo page, logged in and connected to /wss/demo.
  const demo = await browser.page('demo');
  await demo.goto(`${base}/`);
  await demo.waitForSelector('body[data-ready="true"]');
  await demo.fill('#account', account);
  await demo.fill('#password', password);
  await demo.click('#login-button');
  await demo.waitForSelector('#login-status.ok');
  await demo.click('#demo-connect');
  await demo.waitForSelector('#demo-log li.in >> text=Authorization Success');
  await demo.fill('#room', 'lobby');
  await demo.click('#room-join');
  await demo.waitForSelector('#chat-status[data-state="open"]');
  for (const text of ['one', 'two', 'three']) {
    await demo.fill('#demo-input', text);
    await demo.press('#demo-input', 'Enter');
  }

  await until('the count to grow by two', count, (n) => n === before + 2);
  const row = dash.locator('#connections tbody tr', { hasText: '/wss/demo' });
  await row.waitFor();
  const id = await row.getAttribute('data-id');
  const rowText = await row.textContent();
  if (!rowText.includes(account)) throw new Error(`the row does not name ${account}: ${rowText}`);
  await dash.locator('#routes tbody tr', { hasText: '/wss/demo' }).waitFor();
  // The background traffic shows as rates, and the refused handshakes by reason.
  const perSecond = async () => Number((await dash.textContent('#stat-in')).replace(/[^0-9.]/g, '')) || 0;
  await until('a message rate', perSecond, (n) => n > 0);
  await dash.locator('#rejections tbody tr', { hasText: 'token_missing' }).waitFor();
  // Let the chart collect a few points, then keep a picture for the README
  // (docs/dashboard.png is taken with WHARF_SCREENSHOT_WAIT_MS=35000).
  await dash.waitForTimeout(Number(process.env.WHARF_SCREENSHOT_WAIT_MS || 2500));
  await browser.shot(dash, 'dashboard.png');

  // Close the demo connection with the button and a reason.
  await row.locator('button[data-close]').click();
  await dash.waitForSelector('#close-dialog[open]');
  await dash.fill('#close-code', '4000');
  await dash.fill('#close-reason', REASON);
  await browser.shot(dash, 'dashboard-close-dialog.png');
  await dash.click('#close-confirm');
  await dash.waitForSelector('#close-dialog', { state: 'hidden' });

  await dash.locator(`#connections tbody tr[data-id="${id}"]`).waitFor({ state: 'detached' });
  await until('the count to drop by one', count, (n) => n === before + 1);

  // The client side saw the close with the code and the reason.
  await demo.waitForSelector('#demo-status[data-state="closed"]');
  const closed = await demo.textContent('#demo-log li.close .text');
  if (closed !== `closed 4000 · ${REASON}`) throw new Error(`demo close: ${closed}`);
  await browser.shot(dash, 'dashboard-after-close.png');
  await browser.shot(demo, 'demo-closed-by-admin.png');
});
