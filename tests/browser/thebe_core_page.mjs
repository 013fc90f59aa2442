#!/usr/bin/env node
// A course page built on thebe-core 0.5 (what MyST's live cells use), in Chromium:
//
//   node thebe_core_page.mjs <binder-url> <gh-repo> <ref> <screenshot-dir> --expect-output T
//        [--timeout-s N]
//
// This script serves the page itself, on its own 127.0.0.1 port (so the page's origin is not
// binderlab's), with thebe-core's browser bundle from vendor/thebe-core/
// (fetch-thebe-core.sh). The page first does what a MyST launch button does with a host
// (GET <host>/versions, a BinderHub when the JSON has a "binderhub" key), then connects
// thebe-core to binderlab (repoProvider "github"), starts a kernel session, runs its cell and
// renders the output into the page. Prints one JSON line (see lib.mjs) with the statuses
// thebe-core reported, the cell's output and what the page fetched from other origins.

import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Failure, parseArgs, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["expect-output", "timeout-s"]);
if (positional.length !== 4 || !options["expect-output"]) {
  process.stderr.write("usage: node thebe_core_page.mjs <binder-url> <repo> <ref> <shots> --expect-output T\n");
  process.exit(2);
}
const [binderUrl, repo, ref, shotDir] = positional;
const timeoutS = Number(options["timeout-s"] || 300);
const vendor = path.join(path.dirname(fileURLToPath(import.meta.url)), "vendor", "thebe-core");
if (!existsSync(path.join(vendor, "thebe-core.min.js"))) {
  process.stderr.write(`no thebe-core bundle in ${vendor}: run tests/browser/fetch-thebe-core.sh\n`);
  process.exit(2);
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Week 1: a first cell (thebe-core)</title>
<link rel="stylesheet" href="/thebe-core/thebe-core.css">
<script src="/thebe-core/thebe-core.min.js"></script></head>
<body><h1>Week 1</h1>
<pre id="source">print(6 * 7)</pre>
<div id="output"></div>
<p id="status">not started</p>
<script>
window.runCourseCell = async (binderUrl, repo, ref) => {
  const shown = document.getElementById("status");
  // myst-theme's provider check: <host>/versions with a "binderhub" key is a BinderHub
  const versions = await (await fetch(binderUrl + "versions")).json();
  const detected = "binderhub" in versions ? "binderhub" : "other";
  const { api } = window.thebeCore;
  const events = api.makeEvents();
  const statuses = [];
  events.on("status", (_e, data) => { statuses.push(String(data.status)); shown.textContent = data.status; });
  events.on("error", (_e, data) => statuses.push("error: " + (data && data.message)));
  const config = api.makeConfiguration({
    useBinder: true,
    binderOptions: { binderUrl, repo, ref, repoProvider: "github" },
    kernelOptions: { kernelName: "python3" },
    savedSessionOptions: { enabled: false },
  }, events);
  const rendermime = api.makeRenderMimeRegistry();
  const server = api.connectToBinder(config);
  await server.ready;
  const session = await server.startNewSession(rendermime);
  const notebook = api.setupNotebookFromBlocks(
    [{ id: "cell-1", source: document.getElementById("source").textContent }], config, rendermime);
  notebook.attachSession(session);
  notebook.cells[0].attachToDOM(document.getElementById("output"));
  await notebook.executeAll();
  return { detected, versionKeys: Object.keys(versions).sort(), statuses,
           output: document.getElementById("output").innerText.trim() };
};
</script></body></html>`;

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname === "/course.html") {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    return res.end(PAGE);
  }
  const name = url.pathname.replace(/^\/thebe-core\//, "");
  const file = path.join(vendor, path.basename(name));
  if (url.pathname.startsWith("/thebe-core/") && existsSync(file)) {
    const type = file.endsWith(".css") ? "text/css" : "text/javascript";
    res.writeHead(200, { "Content-Type": type });
    return res.end(readFileSync(file));
  }
  res.writeHead(404);
  res.end();
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://127.0.0.1:${server.address().port}/course.html`;

await runBrowserCheck({ shotDir, timeoutS: timeoutS + 60 }, async (ctx) => {
  const page = await ctx.newPage();
  const pageOrigin = new URL(pageUrl).origin;
  ctx.result.requests = [];
  page.on("response", async (response) => {
    const request = response.request();
    const url = new URL(request.url());
    if (url.origin === pageOrigin) return;
    const headers = await response.allHeaders().catch(() => ({}));
    ctx.result.requests.push({
      path: url.pathname.replace(/\/user\/[^/]+\//, "/user/<name>/"), method: request.method(),
      status: response.status(), allowOrigin: headers["access-control-allow-origin"] || null,
    });
  });
  const response = await page.goto(pageUrl, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) throw new Failure(`GET ${pageUrl} failed`);
  const loaded = await page.evaluate(() => Boolean(window.thebeCore && window.thebeCore.api));
  if (!loaded) throw new Failure("thebe-core did not load: no window.thebeCore.api");
  ctx.result.thebeCoreVersion = await page.evaluate(() => window.thebeCore.version);
  await ctx.shot(page, "course-before");
  const run = await Promise.race([
    page.evaluate(([u, r, f]) => window.runCourseCell(u, r, f), [binderUrl, repo, ref]),
    new Promise((_, reject) => setTimeout(() => reject(new Failure(
      `no output within ${timeoutS} s`)), timeoutS * 1000)),
  ]);
  Object.assign(ctx.result, run);
  await ctx.shot(page, "course-after");
  if (run.output !== options["expect-output"]) {
    throw new Failure(`cell output ${JSON.stringify(run.output)}, expected ${options["expect-output"]}`);
  }
});
