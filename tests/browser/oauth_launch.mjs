#!/usr/bin/env node
// Logged-in mode through an OAuth2/OIDC provider, in a real browser: a launch link sends a
// browser without a login to the hub's login page, whose "Sign in with <provider>" button
// goes to the provider's /authorize (GenericOAuthenticator), back to the hub's
// oauth_callback, on through the hub's authorization of the binder service to the service's
// oauth_callback, to the loading page and the user's own named server, where the notebook's
// first code cell runs.
//
//   node oauth_launch.mjs <loading-page-url> <screenshot-dir> --user NAME --expect-output TEXT
//
// Prints one JSON line ({"ok", "loginUrl", "navigations": [origin+path of every page the
// tab went through], "finalUrl", "output"}); exits 1 on failure.

import { Failure, parseArgs, redact, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["user", "expect-output"]);
if (positional.length !== 2 || !options.user || !options["expect-output"]) {
  process.stderr.write("usage: node oauth_launch.mjs <url> <shot-dir> --user U --expect-output T\n");
  process.exit(2);
}
const [url, shotDir] = positional;

await runBrowserCheck({ shotDir, timeoutS: 300 }, async (ctx) => {
  const page = await ctx.newPage();
  ctx.result.navigations = [];
  // every hop of the tab, redirects included (each is a navigation request of its own)
  page.on("request", (request) => {
    if (!request.isNavigationRequest() || request.frame() !== page.mainFrame()) return;
    const u = new URL(request.url());
    ctx.result.navigations.push(u.origin + u.pathname);
  });
  await page.goto(url, { timeout: 60_000 });
  if (!new URL(page.url()).pathname.startsWith("/hub/login")) {
    throw new Failure(`expected the hub's login page, got ${redact(page.url())}`);
  }
  ctx.result.loginUrl = redact(page.url());
  await ctx.shot(page, "login");
  // the provider's button: the person chooses to go there (no auto_login)
  await page.click("a:has-text('Sign in with')");
  const session = new RegExp(`/user/${options.user}/[a-z0-9-]+/(lab|doc/tree)(/|\\?|$)`);
  await page.waitForURL((u) => session.test(u.pathname + u.search), { timeout: 180_000 });
  ctx.result.finalUrl = redact(page.url());
  const cell = page.locator(".jp-NotebookPanel .jp-CodeCell").first();
  await cell.waitFor({ timeout: 120_000 });
  // Run the first code cell in place once the kernel is idle. JupyterLab may put up a
  // dialog first (which kernel to start; on a loaded machine, a theme that loaded late):
  // take its default button, as a person would. Every dialog is reported (result.dialogs).
  const output = cell.locator(".jp-OutputArea-output");
  const idle = page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]');
  const dialog = page.locator(".jp-Dialog button.jp-mod-accept");
  const deadline = Date.now() + 180_000;
  let lastRun = 0;
  while (Date.now() < deadline) {
    if (await output.filter({ hasText: options["expect-output"] }).count()) break;
    if (await dialog.count()) {
      const text = await page.locator(".jp-Dialog").first().innerText().catch(() => "");
      (ctx.result.dialogs ||= []).push(text.split("\n")[0]);
      await dialog.first().click().catch(() => {});
      if (text.includes("Error Loading Theme")) {
        // a page that lost its stylesheet to a slow machine: reload it, as a person would
        await page.reload({ timeout: 60_000 });
        await cell.waitFor({ timeout: 120_000 });
        lastRun = 0;
      }
    } else if (await idle.count() && Date.now() - lastRun > 20_000) {
      lastRun = Date.now();  // (again after 20 s without output: a run a dialog swallowed)
      await cell.locator(".jp-InputArea-editor").click();
      await page.keyboard.press("Control+Enter");
    }
    await page.waitForTimeout(500);
  }
  if (!(await output.filter({ hasText: options["expect-output"] }).count())) {
    const got = await output.allInnerTexts().catch(() => []);
    throw new Failure(`the first code cell gave ${JSON.stringify(got)}, not ` +
      JSON.stringify(options["expect-output"]));
  }
  ctx.result.output = (await output.allInnerTexts()).join("\n").trim();
  await ctx.shot(page, "jupyterlab");
});
