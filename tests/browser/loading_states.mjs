#!/usr/bin/env node
// The loading page's states, driven by scripted event streams: a flood of log lines, a GPU
// queue, a ready event with GPUs, a failed build with retry, an HTTP error.
//
//   node loading_states.mjs <loading-page-url> <screenshot-dir> --stream-base <url>
//
// The page is binderlab's real loading page; only its request to /build/... is sent to a
// scripted stream server (<stream-base>/stream/<scenario>, run by the pytest test), so states
// a real launch reaches rarely (queue positions, GPUs) are shown on demand. Prints one JSON
// line: {ok, scenarios: {<name>: what the page showed}, ...}.

import { Failure, parseArgs, redact, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["stream-base"]);
if (positional.length !== 2 || !options["stream-base"]) {
  process.stderr.write("usage: node loading_states.mjs <loading-url> <screenshot-dir> --stream-base URL\n");
  process.exit(2);
}
const [loadingUrl, shotDir] = positional;
const streamBase = options["stream-base"].replace(/\/$/, "");

/** Open the loading page with its /build request answered by `answer(route, request)`. */
async function openLoading(ctx, answer, query = "", beforeGoto = async () => {}) {
  const page = await ctx.newPage();
  await beforeGoto(page);
  const builds = [];
  await page.route((url) => url.pathname.includes("/build/"), async (route, request) => {
    builds.push(redact(request.url()));
    await answer(route, request);
  });
  await page.addInitScript({ content: `window.__snapshot = ${snapshot.toString()};` });
  // count how often the log's DOM changes: batched appends change it once per frame
  await page.addInitScript(() => {
    window.__logMutations = 0;
    document.addEventListener("DOMContentLoaded", () => {
      const log = document.getElementById("log");
      if (log) new MutationObserver((records) => { window.__logMutations += records.length; })
        .observe(log, { childList: true, characterData: true, subtree: true });
    });
  });
  const response = await page.goto(loadingUrl + query, { waitUntil: "domcontentloaded" });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${loadingUrl} answered ${response ? response.status() : "nothing"}`);
  }
  return { page, builds };
}

/** `promise`, or a Failure after `seconds`. */
const within = (promise, seconds, message) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Failure(`${message} (${seconds} s)`)), seconds * 1000).unref())]);

const stream = (name) => (route) => route.continue({ url: `${streamBase}/stream/${name}` });

/** What the loading page shows (runs in the page). */
function snapshot() {
  const $ = (id) => document.getElementById(id);
  const shown = (el) => el && !el.hidden && el.getBoundingClientRect().height > 0;
  const icon = document.querySelector('link[rel="icon"]');
  return {
    phase: $("phase").dataset.phase,
    phaseText: $("phase").textContent,
    detail: $("phase-detail").textContent,
    progress: Number($("progress").getAttribute("aria-valuenow")),
    steps: [...document.querySelectorAll("#steps li")].map((li) =>
      `${li.dataset.step}:${li.classList.contains("done") ? "done" : li.classList.contains("current") ? "current" : "todo"}`),
    queue: shown($("queue")) ? $("queue").textContent : null,
    gpus: shown($("gpus")) ? $("gpus").textContent : null,
    failure: shown($("failure")) ? $("failure-message").textContent : null,
    retryShown: shown($("retry")),
    retryFocused: document.activeElement === $("retry"),
    favicon: icon ? icon.dataset.state || null : null,
    faviconIsSvg: icon ? icon.href.startsWith("data:image/svg+xml,") : false,
    elapsed: $("elapsed").textContent,
    logChars: $("log").textContent.length,
    logLines: $("log").textContent.split("\n").length - 1,
    logTail: $("log").textContent.slice(-300),
    logMutations: window.__logMutations,
  };
}

const state = (page) => page.evaluate(() => window.__snapshot());

await runBrowserCheck({ shotDir, timeoutS: 240 }, async (ctx) => {
  const scenarios = {};
  ctx.result.scenarios = scenarios;
  const waitFor = (page, fn, arg, timeout = 30_000) =>
    page.waitForFunction(fn, arg, { timeout, polling: 50 });

  // 1. a flood of build log lines, then a GPU queue
  {
    const { page, builds } = await openLoading(ctx, stream("flood-queue"));
    const t0 = ctx.elapsed();
    await waitFor(page, () => document.getElementById("log").textContent.includes("build line 20000\n"));
    const logDone = ctx.elapsed() - t0;
    await waitFor(page, () => /number 2 in the queue/.test(document.getElementById("queue").textContent));
    const queued = await state(page);
    await ctx.shot(page, "loading-queue");
    await waitFor(page, () => /number 1 in the queue/.test(document.getElementById("queue").textContent));
    const nextInQueue = (await state(page)).queue;
    await waitFor(page, () => document.getElementById("phase").dataset.phase === "launching");
    scenarios.flood = { queued, nextInQueue, launching: await state(page), logSeconds: logDone, builds };
    await page.close();
  }

  // 2. ready, with the GPUs the session got; the redirect honours labpath and carries the
  //    token. The redirect is answered "204 No Content", so the browser stays on the loading
  //    page and what it showed at "ready" can be read and photographed.
  {
    let redirectSeen;
    const redirected = new Promise((resolve) => { redirectSeen = resolve; });
    const { page } = await openLoading(ctx, stream("ready-gpu"), "?labpath=nb/intro.ipynb",
      (p) => p.route((url) => url.pathname.startsWith("/user/fake/"), async (route, request) => {
        redirectSeen(request.url());
        await route.fulfill({ status: 204 });
      }));
    const target = await within(redirected, 30, "the loading page never redirected");
    await page.waitForTimeout(300);  // let the bar's transition end for the screenshot
    const before = await state(page);
    await ctx.shot(page, "loading-ready-gpu");
    scenarios.ready = {
      before, redirect: redact(target), tokenInRedirect: new URL(target).searchParams.get("token"),
      redirectPath: new URL(target).pathname, stillOnLoadingPage: page.url().includes("/v2/"),
    };
    await page.close();
  }

  // 3. a failed build: message, log, favicon, retry (a new page view with a new ticket)
  {
    const { page, builds } = await openLoading(ctx, stream("failed"));
    await waitFor(page, () => !document.getElementById("failure").hidden);
    const failed = await state(page);
    await ctx.shot(page, "loading-failed");
    await page.click("#retry");
    const deadline = Date.now() + 15_000;
    while (builds.length < 2 && Date.now() < deadline) await page.waitForTimeout(100);
    await waitFor(page, () => !document.getElementById("failure").hidden);
    const tickets = builds.map((u) => new URL(u).searchParams.get("launch_ticket"));
    scenarios.failed = { failed, builds: builds.length, tickets, afterRetry: await state(page) };
    await page.close();
  }

  // 4. the service refuses the request itself (HTTP 429 with its JSON message)
  {
    const { page } = await openLoading(ctx, (route) => route.fulfill({
      status: 429, contentType: "application/json",
      headers: { "Access-Control-Allow-Origin": "*" },
      body: JSON.stringify({ status: 429, message: "Too many launches from your address (20 in 600 s). Try again in 42 s." }),
    }));
    await waitFor(page, () => !document.getElementById("failure").hidden);
    scenarios.httpError = await state(page);
    await page.close();
  }
  if (ctx.result.offHostRequests.length) {
    throw new Failure(`the page tried to reach other hosts: ${ctx.result.offHostRequests.join(", ")}`);
  }
});
