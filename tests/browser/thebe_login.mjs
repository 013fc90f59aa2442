#!/usr/bin/env node
// thebe on a course page of another origin, for a logged-in reader: the page's "Log in"
// button opens the binder service's login_ticket page in a window of its own; the reader
// logs in at the hub there; the page gets a single-use ticket by postMessage and starts
// thebe with it; a cell runs on the reader's own named server.
//
//   node thebe_login.mjs <course-page-url> <screenshot-dir> --user U --password P
//        --expect-output TEXT
//
// Prints one JSON line ({"ok", "pageUser", "sessionUsers": [user names in the session URLs
// the page talked to], "buildUrls", "output", "popupUrls"}); exits 1 on failure.

import { Failure, parseArgs, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2),
  ["user", "password", "expect-output"]);
if (positional.length !== 2 || !options.user || !options["expect-output"]) {
  process.stderr.write("usage: node thebe_login.mjs <url> <shot-dir> --user U --password P " +
    "--expect-output T\n");
  process.exit(2);
}
const [pageUrl, shotDir] = positional;

await runBrowserCheck({ shotDir, timeoutS: 360 }, async (ctx) => {
  const page = await ctx.newPage();
  const sessionUsers = new Set();
  ctx.result.buildUrls = [];
  const watch = (p) => p.on("request", (request) => {
    const url = new URL(request.url());
    const user = url.pathname.match(/^\/user\/([^/]+)\//);
    if (user) sessionUsers.add(user[1]);
    if (/\/build\//.test(url.pathname)) {
      ctx.result.buildUrls.push(url.origin + url.pathname.replace(/\/as\/[^/]+\//, "/as/<ticket>/"));
    }
  });
  watch(page);
  ctx.result.sessionRequests = [];
  page.on("response", (response) => {
    const url = new URL(response.url());
    if (/^\/user\//.test(url.pathname)) {
      ctx.result.sessionRequests.push(`${response.request().method()} ` +
        `${url.pathname.replace(/^\/user\/[^/]+\/[^/]+/, "")} ${response.status()}`);
    }
  });
  page.on("websocket", (ws) => {
    ctx.result.sessionRequests.push(`WS ${new URL(ws.url()).pathname.replace(/^\/user\/[^/]+\/[^/]+/, "")}`);
    ws.on("socketerror", (e) => ctx.result.sessionRequests.push(`WS error ${e}`));
  });
  await page.goto(pageUrl, { timeout: 30_000 });
  ctx.result.popupUrls = [];
  const [popup] = await Promise.all([
    ctx.context.waitForEvent("page", { timeout: 30_000 }),
    page.click("#login"),
  ]);
  popup.on("request", (r) => {
    if (r.isNavigationRequest()) {
      const u = new URL(r.url());
      ctx.result.popupUrls.push(u.origin + u.pathname);
    }
  });
  await popup.waitForSelector("#username_input", { timeout: 60_000 });
  await popup.fill("#username_input", options.user);
  await popup.fill("#password_input", options.password);
  // (the window may close before a wait started after the click would see it)
  const closed = popup.isClosed() ? Promise.resolve() : popup.waitForEvent("close", { timeout: 90_000 });
  await popup.click("#login_submit", { noWaitAfter: true });
  await closed;
  await page.waitForFunction(() => document.body.dataset.user, null, { timeout: 30_000 });
  ctx.result.pageUser = await page.evaluate(() => document.body.dataset.user);
  try {
    await page.waitForFunction(() => {
      const field = document.querySelector(".thebe-status-field");
      return field && /Kernel Connected/.test(field.textContent);
    }, null, { timeout: 240_000, polling: 250 });
  } catch {
    const status = await page.locator(".thebe-status").innerText().catch(() => "?");
    throw new Failure(`thebe never connected a kernel; status: ${JSON.stringify(status)}; ` +
      `session users seen: ${JSON.stringify([...sessionUsers])}`);
  }
  const cell = page.locator(".thebe-cell").first();
  await cell.locator(".thebe-run-button").click();
  await page.waitForFunction((text) => {
    const out = document.querySelector(".thebe-cell .thebe-output");
    return out && out.innerText.includes(text);
  }, options["expect-output"], { timeout: 120_000 }).catch(async () => {
    throw new Failure(`session users seen: ${JSON.stringify([...sessionUsers])}; status ` +
      `${JSON.stringify(await page.locator(".thebe-status").innerText().catch(() => "?"))}; ` +
      `the cell gave ${JSON.stringify(
      await page.locator(".thebe-cell .thebe-output").first().innerText().catch(() => null))}`);
  });
  ctx.result.output = (await page.locator(".thebe-cell .thebe-output").first().innerText()).trim();
  ctx.result.sessionUsers = [...sessionUsers];
  await ctx.shot(page, "course-logged-in");
});
