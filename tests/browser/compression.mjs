// permessage-deflate with a real browser: Chromium offers it, wharf (compression on) accepts,
// and long messages go both ways compressed through /echo.
import { env, run } from './lib.mjs';

const base = env('WHARF_HTTP_URL');
const wsUrl = env('WHARF_WS_URL');

await run('compression', async (browser) => {
  const page = await browser.page('compression');
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const result = await page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('the socket failed to open'));
    });
    const replies = [];
    ws.onmessage = (event) => replies.push(event.data);
    const sent = [];
    for (const size of [10, 1000, 100000]) {
      const text = 'chromium compresses this, é中 '.repeat(Math.ceil(size / 28)).slice(0, size);
      sent.push(text);
      ws.send(text);
    }
    const deadline = Date.now() + 5000;
    while (replies.length < sent.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    ws.close(1000);
    return { extensions: ws.extensions, same: replies.length === sent.length && replies.every((r, i) => r === sent[i]) };
  }, `${wsUrl}/echo`);
  const agreed = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
  if (result.extensions !== agreed) throw new Error(`extensions: ${JSON.stringify(result.extensions)}`);
  if (!result.same) throw new Error('the echoes differ from what was sent');
  console.log(`negotiated: ${result.extensions}`);
});
