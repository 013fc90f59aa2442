#!/usr/bin/env node
// Logged-in mode in a real browser: a launch link sends a browser without a login to the
// hub's login form; after it logs in, the browser comes back to the loading page, which
// follows the build with the service's login cookie and opens the user's own named server.
//
//   node login_launch.mjs <loading-page-url> <screenshot-dir> --user NAME --password PW
//                         [--sessions-page URL]
//
// With --sessions-page, the browser then opens the user's sessions page, finds the session
// it landed in listed there with an Open link to it, and stops it with the page's Stop
// button (the row goes, and the page then says nothing runs).
//
// Prints one JSON line ({"ok": ..., "loginUrl", "finalUrl", "notebookOpen", "listed",
// "stopped"}); exits 1 on failure.

import { Failure, parseArgs, redact, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2),
  ["user", "password", "sessions-page"]);
if (positional.length !== 2 || !options.user || !options.password) {
  process.stderr.write("usage: node login_launch.mjs <url> <shot-dir> --user U --password P\n");
  process.exit(2);
}
const [url, shotDir] = positional;

await runBrowserCheck({ shotDir, timeoutS: 240 }, async (ctx) => {
  const page = await ctx.newPage();
  await page.goto(url, { timeout: 60_000 });
  if (!new URL(page.url()).pathname.startsWith("/hub/login")) {
    throw new Failure(`expected the hub's login form, got ${redact(page.url())}`);
  }
  ctx.result.loginUrl = redact(page.url());
  await ctx.shot(page, "login");
  await page.fill("#username_input", options.user);
  await page.fill("#password_input", options.password);
  await page.click("#login_submit");
  // back on the loading page, then on to the user's named server: /user/<user>/<server>/...
  const session = new RegExp(`/user/${options.user}/[a-z0-9-]+/(lab|doc/tree)(/|\\?|$)`);
  await page.waitForURL((u) => session.test(u.pathname + u.search), { timeout: 180_000 });
  ctx.result.finalUrl = redact(page.url());
  await page.waitForSelector(".jp-NotebookPanel .jp-Cell", { timeout: 120_000 });
  ctx.result.notebookOpen = true;
  await ctx.shot(page, "jupyterlab");
  if (!options["sessions-page"]) return;

  const server = new URL(page.url()).pathname.match(/^\/user\/[^/]+\/([^/]+)\//)[1];
  await page.goto(options["sessions-page"], { timeout: 60_000 });
  const row = page.locator(`tr[data-session="${server}"]`);
  await row.waitFor({ timeout: 30_000 });
  const open = await row.locator("a", { hasText: "Open" }).getAttribute("href");
  ctx.result.listed = { server, open: redact(open), text: (await row.innerText()).trim() };
  await ctx.shot(page, "sessions");
  await row.locator("button.stop-session").click();
  // the row goes once the service stopped it; the last one gone, the page reloads empty
  await page.waitForSelector("#no-sessions", { timeout: 120_000 });
  ctx.result.stopped = true;
  await ctx.shot(page, "sessions-stopped");
});
