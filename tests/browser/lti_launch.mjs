#!/usr/bin/env node
// An LMS launch in a real browser: the student opens the course page's link at the stand-in
// LMS; its form posts the LTI launch to the hub (LTI 1.3: the OIDC login initiation, then the
// platform's authorization answers with a form that posts the signed id_token back; LTI 1.1:
// the signed launch itself), the hub logs the student in and sends the browser to the binder
// service's loading page, which launches the student's named server and opens the notebook.
//
//   node lti_launch.mjs <lms-course-page-url> <screenshot-dir> --user NAME --file PATH \
//     --expect TEXT-OF-THE-NOTEBOOK
//
// Prints one JSON line ({"ok", "visited": ["METHOD url" of each navigation], "finalUrl", "notebookOpen",
// "expectedShown": whether the notebook shows TEXT, "notebookText"}); exits 1 on failure.

import { Failure, parseArgs, redact, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["user", "file", "expect"]);
if (positional.length !== 2 || !options.user || !options.file || !options.expect) {
  process.stderr.write(
    "usage: node lti_launch.mjs <url> <shot-dir> --user U --file PATH --expect TEXT\n");
  process.exit(2);
}
const [url, shotDir] = positional;
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

await runBrowserCheck({ shotDir, timeoutS: 300 }, async (ctx) => {
  const page = await ctx.newPage();
  ctx.result.visited = [];
  // every request the top-level page made to navigate, redirects included ("POST <url>")
  page.on("request", (request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      ctx.result.visited.push(`${request.method()} ${redact(request.url())}`);
    }
  });
  await page.goto(url, { timeout: 60_000 });
  // the loading page, then the student's own named server with the course file open
  const session = new RegExp(
    `/user/${escape(options.user)}/[a-z0-9-]+/(lab/tree|doc/tree)/${escape(options.file)}$`);
  try {
    await page.waitForURL((u) => session.test(u.pathname), { timeout: 240_000 });
  } catch (error) {
    throw new Failure(`never reached the session: on ${redact(page.url())} ` +
                      `(${(await page.textContent("body").catch(() => "")).slice(0, 300)})`);
  }
  ctx.result.finalUrl = redact(page.url());
  await page.waitForSelector(".jp-NotebookPanel .jp-Cell", { timeout: 120_000 });
  ctx.result.notebookOpen = true;
  // the course file's own text on screen (JupyterLab renders cells a moment after they
  // appear); what the notebook shows is reported either way
  ctx.result.expectedShown = await page.waitForFunction(
    (text) => document.querySelector(".jp-NotebookPanel")?.innerText.includes(text),
    options.expect, { timeout: 60_000 }).then(() => true, () => false);
  ctx.result.notebookText = (await page.innerText(".jp-NotebookPanel")).slice(0, 500);
  await ctx.shot(page, "notebook");
});
