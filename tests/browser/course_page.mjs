#!/usr/bin/env node
// Open a course page with thebe cells in Chromium: activate, run a cell, read its output.
//
//   node course_page.mjs <course-page-url> <screenshot-dir> --expect-output TEXT
//        [--cell N] [--timeout-s N]
//
// thebe (served by the binderlab host) asks binderlab's build stream for a session, then
// talks to the session's Jupyter server directly: from the course page's origin, so this
// exercises CORS on both. Prints one JSON line: {ok, requests (per origin), output, ...}.

import { Failure, parseArgs, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2),
  ["expect-output", "cell", "timeout-s"]);
if (positional.length !== 2 || !options["expect-output"]) {
  process.stderr.write("usage: node course_page.mjs <url> <screenshot-dir> --expect-output TEXT\n");
  process.exit(2);
}
const [pageUrl, shotDir] = positional;
const cellIndex = Number(options.cell || 0);
const timeoutS = Number(options["timeout-s"] || 300);

await runBrowserCheck({ shotDir, timeoutS: timeoutS + 60 }, async (ctx) => {
  const page = await ctx.newPage();
  const pageOrigin = new URL(pageUrl).origin;
  const requests = [];  // what the page fetched from other origins, and how they answered
  page.on("response", async (response) => {
    const request = response.request();
    const url = new URL(request.url());
    if (url.origin === pageOrigin) return;
    const headers = await response.allHeaders().catch(() => ({}));
    requests.push({
      origin: url.origin,
      path: url.pathname.replace(/\/user\/[^/]+\//, "/user/<name>/"),
      method: request.method(),
      type: request.resourceType(),
      status: response.status(),
      allowOrigin: headers["access-control-allow-origin"] || null,
      sentOrigin: (await request.allHeaders().catch(() => ({}))).origin || null,
    });
  });
  const websockets = [];
  page.on("websocket", (ws) => websockets.push(new URL(ws.url()).pathname.replace(/\/user\/[^/]+\//, "/user/<name>/")));
  const statusLog = [];
  await page.exposeBinding("__thebeStatus", (_source, text) => statusLog.push({ text, t: ctx.elapsed() }));

  const response = await page.goto(pageUrl, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${pageUrl} answered ${response ? response.status() : "nothing"}`);
  }
  ctx.result.title = await page.title();
  const activate = page.locator(".thebe-activate-button");
  try {
    await activate.waitFor({ state: "visible", timeout: 30_000 });
  } catch {
    throw new Failure("thebe did not load: no Activate button (is frontend/static/vendor/thebe/ there?)");
  }
  await page.evaluate(() => {
    const watch = () => {
      const field = document.querySelector(".thebe-status-field");
      if (!field) return setTimeout(watch, 50);
      let last = "";
      new MutationObserver(() => {
        if (field.textContent !== last) window.__thebeStatus((last = field.textContent));
      }).observe(field, { childList: true, characterData: true, subtree: true });
    };
    watch();
  });
  await ctx.shot(page, "course-before");
  ctx.result.timings.activated = ctx.elapsed();
  await activate.click();

  // Each cell gets a run button once thebe has rendered it; the kernel is ready when the
  // status says "Kernel Connected" (thebe 0.9's wording).
  // A failure shows as thebe's status ("Failed to connect to server") or a page error: stop
  // at once instead of waiting out the bound.
  const failed = page.waitForFunction((errors) => {
    const field = document.querySelector(".thebe-status-field");
    return (field && /fail|dead|closed/i.test(field.textContent)) || window.__pageErrors > errors;
  }, ctx.result.pageErrors.length, { timeout: timeoutS * 1000 + 1000, polling: 250 })
    .then(() => { throw new Failure("thebe failed"); });
  page.on("pageerror", () => page.evaluate(() => { window.__pageErrors = (window.__pageErrors || 0) + 1; }).catch(() => {}));
  failed.catch(() => {});
  try {
    await Promise.race([failed, page.waitForFunction(() => {
      const field = document.querySelector(".thebe-status-field");
      return field && /Kernel Connected/.test(field.textContent);
    }, null, { timeout: timeoutS * 1000 })]);
  } catch {
    const status = await page.locator(".thebe-status").innerText().catch(() => "?");
    throw new Failure(`thebe never connected a kernel; status: ${JSON.stringify(status)}; ` +
      `seen: ${statusLog.map((s) => s.text).join(" -> ")}; page errors: ` +
      JSON.stringify(ctx.result.pageErrors));
  }
  ctx.result.timings.kernelConnected = ctx.elapsed();

  const cells = page.locator(".thebe-cell");
  ctx.result.cellCount = await cells.count();
  const cell = cells.nth(cellIndex);
  await cell.locator(".thebe-run-button").click();
  // the cell's output area: thebe appends it to the cell (a [data-output] placeholder
  // elsewhere would take its place, but this page has none)
  const outputText = () => page.evaluate((i) => {
    const out = document.querySelectorAll(".thebe-cell")[i].querySelector(".thebe-output");
    return out ? out.innerText : null;
  }, cellIndex);
  try {
    await page.waitForFunction(({ i, text }) => {
      const out = document.querySelectorAll(".thebe-cell")[i].querySelector(".thebe-output");
      return out && out.innerText.includes(text);
    }, { i: cellIndex, text: options["expect-output"] }, { timeout: 60_000 });
  } catch {
    throw new Failure(`running cell ${cellIndex} gave ${JSON.stringify(await outputText())}, ` +
      `not ${JSON.stringify(options["expect-output"])}`);
  }
  ctx.result.output = (await outputText()).trim();
  ctx.result.timings.cellRun = ctx.elapsed();
  await cell.scrollIntoViewIfNeeded();
  await ctx.shot(page, "course-after");
  ctx.result.status = statusLog.map((s) => s.text);
  ctx.result.requests = requests;
  ctx.result.websockets = websockets;
  if (ctx.result.offHostRequests.length) {
    throw new Failure(`the page tried to reach other hosts: ${ctx.result.offHostRequests.join(", ")}`);
  }
});
