// Shared by the browser scripts: Chromium as services.md says to start it, a hard time
// limit, screenshots, and failing loudly.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** Chromium's flags on these machines (see shared/services.md). */
export const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** An environment variable the Rust test sets; missing is a bug in the caller. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through crates/wharf-app/tests/browser.rs)`);
  return value;
}

/**
 * Runs `body(browser)` with a fresh Chromium profile, a time limit and screenshots on failure.
 * Exits 0 on success and 1 on any failure (a page error included).
 */
export async function run(name, body, { limitMs = 55_000 } = {}) {
  const artifacts = env('WHARF_ARTIFACTS');
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), `wharf-${name}-`));
  const timer = setTimeout(() => {
    console.error(`${name}: over the ${limitMs} ms limit`);
    process.exit(1);
  }, limitMs);
  let context = null;
  const pages = [];
  const pageErrors = [];
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.WHARF_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 860 },
    });
    context.setDefaultTimeout(10_000);
    const browser = {
      context,
      /** A new tab; its console errors and uncaught exceptions fail the run. */
      async page(label) {
        const page = await context.newPage();
        page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
        page.on('console', (m) => {
          if (m.type() === 'error') console.error(`[${label} console] ${m.text()}`);
        });
        pages.push([label, page]);
        return page;
      },
      async shot(page, file) {
        await page.screenshot({ path: join(artifacts, file), fullPage: true });
        console.log(`screenshot: ${join(artifacts, file)}`);
      },
    };
    await body(browser);
    if (pageErrors.length) throw new Error(`uncaught errors in the page:\n${pageErrors.join('\n')}`);
    console.log(`${name}: ok`);
  } catch (e) {
    console.error(`${name}: FAILED: ${e.stack || e}`);
    for (const [label, page] of pages) {
      try {
        await page.screenshot({ path: join(artifacts, `${name}-failure-${label}.png`), fullPage: true });
      } catch (_) { /* the page may be gone */ }
    }
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

/** Waits until `read()` returns something for which `ok` holds; returns it. */
export async function until(what, read, ok = Boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await read();
    if (ok(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what} (last value: ${JSON.stringify(last)})`);
}
