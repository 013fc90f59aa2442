// Shared by the browser-test scripts: Debian's Chromium through playwright-core (never a
// downloaded browser), talking to this machine only, and one JSON result line on stdout.

import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.BINDERLAB_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
  // Network rule: the browser talks to this machine only. No proxy, and no host name other
  // than localhost resolves (the service, the hub and test servers are addressed as 127.0.0.1).
  "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];

export class Failure extends Error {}

/** Never print a session token. */
export const redact = (url) => String(url).replace(/([?&]token=)[^&#]*/g, "$1<redacted>");

/**
 * Run `body(ctx)` with a fresh browser; print {ok, error, screenshots, offHostRequests,
 * pageErrors, consoleErrors, ...whatever body put in ctx.result} and exit 0/1.
 * ctx: {browser, context, newPage(), shot(page, name), result, elapsed()}.
 */
export async function runBrowserCheck({ shotDir, timeoutS = 300, contextOptions = {} }, body) {
  mkdirSync(shotDir, { recursive: true });
  const started = Date.now();
  const result = {
    ok: false, error: null, screenshots: {}, offHostRequests: [], pageErrors: [],
    consoleErrors: [], timings: {},
  };
  const watchdog = setTimeout(() => {
    result.error = `watchdog: no result after ${timeoutS} s`;
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(1);
  }, timeoutS * 1000);
  watchdog.unref();

  let browser;
  const pages = [];
  const ctx = {
    result,
    elapsed: () => (Date.now() - started) / 1000,
    async shot(page, name, { fullPage = true } = {}) {
      const file = path.resolve(shotDir, `${name}.png`);
      await page.screenshot({ path: file, fullPage, timeout: 15_000 });
      result.screenshots[name] = file;
      return file;
    },
  };
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...contextOptions });
    ctx.browser = browser;
    ctx.context = context;
    ctx.newPage = async () => {
      const page = await context.newPage();
      pages.push(page);
      page.on("request", (request) => {
        const url = request.url();
        if (url.startsWith("data:") || url.startsWith("about:") || url.startsWith("blob:")) return;
        const host = new URL(url).hostname;
        if (!["127.0.0.1", "localhost"].includes(host)) result.offHostRequests.push(redact(url));
      });
      page.on("pageerror", (error) => result.pageErrors.push(String(error.message).slice(0, 300)));
      page.on("console", (message) => {
        if (message.type() === "error") result.consoleErrors.push(message.text().slice(0, 300));
      });
      return page;
    };
    await body(ctx);
    result.ok = true;
  } catch (error) {
    result.error = error instanceof Failure ? error.message : `${error.name}: ${error.message}`;
    for (const [i, page] of pages.entries()) {
      await ctx.shot(page, `failure-${i}`).catch(() => {});
    }
  } finally {
    result.timings.total = ctx.elapsed();
    if (browser) await browser.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  if (!result.ok) process.stderr.write(`FAILED: ${result.error}\n`);
  process.exit(result.ok ? 0 : 1);
}

/** Minimal argv parsing: positional arguments and --name value options. */
export function parseArgs(argv, names) {
  const positional = [];
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith("--")) {
      const name = arg.slice(2);
      if (!names.includes(name) || i + 1 >= argv.length) {
        process.stderr.write(`unknown option or missing value: ${arg}\n`);
        process.exit(2);
      }
      options[name] = argv[++i];
    } else {
      positional.push(arg);
    }
  }
  return { positional, options };
}
