#!/usr/bin/env node
// Open binderlab's loading page in a real browser and follow it into the session's JupyterLab.
//
//   node loading_redirect.mjs <loading-page-url> <screenshot-dir> [options]
//
//   --timeout-s N        bound for the whole launch, page opened -> on the session (180)
//   --notebook NAME      the notebook JupyterLab must open (default: basename of the page's
//                        `labpath`, or of a `urlpath` like lab/tree/<path>.ipynb)
//   --expect-text TXT    a cell of the open notebook must show TXT
//   --expect-output TXT  also run the notebook's first code cell and wait for TXT in its output
//                        (proves the kernel's websocket accepts the session's login)
//
// Drives Debian's Chromium (/usr/bin/chromium) with playwright-core; never a downloaded browser.
// Prints one JSON line on stdout ({"ok": true|false, ...}); exits 1 on failure, 2 on bad usage.
// Screenshots: loading.png (the loading page, at the last phase before the redirect),
// jupyterlab.png (the session with the notebook open), failure.png (the page when it failed).

import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.BINDERLAB_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
  // Network rule: the browser talks to this machine only. No proxy, and no host name other
  // than localhost resolves (the service and the hub are addressed as 127.0.0.1).
  "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
];
// /user/<name>/lab..., /user/<name>/doc/tree/..., /user/<name>/tree/... (under any base URL)
const SESSION_PATH = /\/user\/[^/]+\/(lab|doc\/tree|tree)(\/|$)/;

function usage(message) {
  process.stderr.write(`${message}\nusage: node loading_redirect.mjs <loading-page-url> ` +
    "<screenshot-dir> [--timeout-s N] [--notebook NAME] [--expect-text TEXT] " +
    "[--expect-output TEXT]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const opts = { timeoutS: 180, notebook: null, expectText: null, expectOutput: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${arg} needs a value`));
    if (arg === "--timeout-s") opts.timeoutS = Number(value());
    else if (arg === "--notebook") opts.notebook = value();
    else if (arg === "--expect-text") opts.expectText = value();
    else if (arg === "--expect-output") opts.expectOutput = value();
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 2) usage("expected two arguments");
  if (!(opts.timeoutS > 0)) usage("--timeout-s must be a positive number");
  [opts.url, opts.shotDir] = positional;
  try {
    opts.pageUrl = new URL(opts.url);
  } catch {
    usage(`not a URL: ${opts.url}`);
  }
  if (!opts.notebook) {
    const params = opts.pageUrl.searchParams;
    const fromUrlpath = /^\/?(?:lab|doc)\/tree\/(.+\.ipynb)$/.exec(params.get("urlpath") || "");
    const nbPath = params.get("labpath") || (fromUrlpath && fromUrlpath[1]);
    if (!nbPath) usage("no labpath/urlpath notebook in the URL: pass --notebook");
    opts.notebook = path.posix.basename(nbPath);
  }
  return opts;
}

/** Never print a session token. */
const redact = (url) => String(url).replace(/([?&]token=)[^&#]*/g, "$1<redacted>");

class Failure extends Error {}

const opts = parseArgs(process.argv.slice(2));
mkdirSync(opts.shotDir, { recursive: true });
const shotPath = (name) => path.resolve(opts.shotDir, name);

const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const result = {
  ok: false,
  pageUrl: opts.url,
  notebook: opts.notebook,
  phases: [],            // what #phase showed, in order: {phase, text, t}
  redirectUrl: null,     // where the loading page sent the browser (token redacted)
  redirectHasToken: false,
  finalUrl: null,
  lab: null,             // what JupyterLab shows once the notebook is open
  output: null,          // the first code cell's output, with --expect-output
  screenshots: {},
  timings: {},
  offHostRequests: [],   // requests to anything but 127.0.0.1/localhost (must stay empty)
  pageErrors: [],
  error: null,
};

// A hard stop, whatever hangs (browser start, a screenshot...).
const watchdog = setTimeout(() => {
  result.error = `watchdog: no result after ${opts.timeoutS + 150} s`;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(1);
}, (opts.timeoutS + 150) * 1000);
watchdog.unref();

let browser;
let page;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000,
  });
  // A fresh context: its own empty profile, no cookies (the session login must come from the
  // token in the redirect URL alone).
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  page = await context.newPage();

  page.on("request", (request) => {
    const host = new URL(request.url()).hostname;
    if (!["127.0.0.1", "localhost"].includes(host) && !request.url().startsWith("data:")) {
      result.offHostRequests.push(redact(request.url()));
    }
  });
  page.on("pageerror", (error) => result.pageErrors.push(String(error.message).slice(0, 300)));

  // Follow #phase on the loading page: a MutationObserver reports every change to us.
  let failLoading;
  const loadingFailed = new Promise((_, reject) => { failLoading = reject; });
  loadingFailed.catch(() => {});
  let shots = Promise.resolve();
  let lastLogTail = "";
  await page.exposeBinding("__binderlabPhase", (_source, seen) => {
    result.phases.push({ phase: seen.phase, text: seen.text, t: elapsed() });
    lastLogTail = seen.logTail;
    if (seen.phase === "failed" || seen.text === "connection lost") {
      failLoading(new Failure(`the loading page shows "${seen.text}"; log tail:\n${seen.logTail}`));
    } else if (result.phases.length > 1 && seen.phase !== "ready") {
      // The redirect waits for this (see the route below), so the last screenshot taken is
      // the loading page in its last phase before "ready".
      shots = shots.then(async () => {
        await page.screenshot({ path: shotPath("loading.png") });
        result.screenshots.loading = shotPath("loading.png");
        result.screenshots.loadingPhase = seen.text;
      }).catch((error) => { result.pageErrors.push(`loading screenshot: ${error.message}`); });
    }
  });
  await context.addInitScript(() => {
    const watch = () => {
      const el = document.getElementById("phase");
      if (!el || !window.__binderlabPhase) return;
      let last = null;
      const report = () => {
        const seen = { phase: el.dataset.phase || "", text: el.textContent.trim() };
        const key = seen.phase + "\n" + seen.text;
        if (key === last) return;
        last = key;
        const log = document.getElementById("log");
        seen.logTail = log ? log.textContent.slice(-3000) : "";
        window.__binderlabPhase(seen);
      };
      report();
      new MutationObserver(report).observe(el, {
        childList: true, characterData: true, subtree: true, attributes: true,
      });
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch);
    else watch();
  });

  // Hold the loading page's redirect until its screenshot is on disk, and note where it goes.
  let redirected;
  const redirectSeen = new Promise((resolve) => { redirected = resolve; });
  const holdRedirect = async (route, request) => {
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()
        && new URL(request.url()).pathname !== opts.pageUrl.pathname && !result.redirectUrl) {
      result.redirectUrl = redact(request.url());
      result.redirectHasToken = /[?&]token=[^&#]+/.test(request.url());
      result.timings.redirect = elapsed();
      await shots;
      redirected();
    }
    await route.continue();
  };
  const everyRequest = () => true;
  await page.route(everyRequest, holdRedirect);

  // 1. The loading page.
  const response = await page.goto(opts.url, { waitUntil: "domcontentloaded", timeout: 30_000 });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${opts.url} answered ${response ? response.status() : "nothing"}`);
  }
  result.timings.loadingPage = elapsed();
  const title = await page.title();
  if (!(await page.locator("#phase").count())) {
    throw new Failure(`${opts.url} is not the loading page (no #phase element; title "${title}")`);
  }

  // 2. Phases, then the redirect onto the session, within the launch bound.
  const launchBound = opts.timeoutS * 1000;
  const onSession = page.waitForURL((url) => SESSION_PATH.test(url.pathname), {
    timeout: launchBound, waitUntil: "commit",
  });
  onSession.catch(() => {});  // still seen by the race below; no unhandled rejection later
  try {
    await Promise.race([onSession, loadingFailed]);
  } catch (error) {
    if (error instanceof Failure) throw error;
    const shown = result.phases.map((p) => p.text).join(" -> ") || "nothing";
    throw new Failure(`not on the session after ${opts.timeoutS} s (loading page showed: ` +
      `${shown}; now at ${redact(page.url())}); log tail:\n${lastLogTail}`);
  }
  await Promise.race([redirectSeen, page.waitForTimeout(30_000)]);
  await page.unroute(everyRequest, holdRedirect);  // JupyterLab's own requests go unrouted
  result.timings.onSession = elapsed();

  const initial = result.phases[0];
  const changes = result.phases.filter((p) => p.text !== (initial && initial.text));
  if (!initial || changes.length === 0) {
    throw new Failure("the browser was redirected but the loading page never showed a phase " +
      `(#phase stayed "${initial ? initial.text : "?"}")`);
  }

  // 3. JupyterLab has opened the notebook: the document tab titled <notebook> (hidden in
  //    single-document mode, but always in the DOM: its data-id is the panel's id) names a
  //    visible .jp-NotebookPanel with cells, and the panel's toolbar names a kernel (JupyterLab
  //    sets it once the document's content and session are loaded; before that the panel
  //    shows one empty placeholder cell and "No Kernel"). With --expect-text, a cell must
  //    also show that text.
  const lab = () => page.evaluate(({ name }) => {
    const state = { tabs: [], found: false };
    for (const tab of document.querySelectorAll('.lm-TabBar-tab[data-type="document-title"]')) {
      const label = (tab.querySelector(".lm-TabBar-tabLabel")?.textContent || "").trim();
      state.tabs.push(label);
      if (label !== name) continue;
      const panel = document.getElementById(tab.dataset.id || "");
      if (!panel || !panel.classList.contains("jp-NotebookPanel")) continue;
      const box = panel.getBoundingClientRect();
      const cells = [...panel.querySelectorAll(".jp-Notebook .jp-Cell")];
      const indicator = panel.querySelector(".jp-Notebook-ExecutionIndicator");
      return Object.assign(state, {
        found: true,
        panelId: panel.id,
        visible: !panel.classList.contains("lm-mod-hidden") && box.width > 50 && box.height > 50,
        singleDocumentMode: tab.getBoundingClientRect().width === 0,
        documentTitle: document.title,
        kernelName: (panel.querySelector(".jp-Toolbar-kernelName")?.textContent || "").trim(),
        kernelStatus: indicator ? indicator.dataset.status || null : null,
        cells: cells.map((cell) => ({
          type: cell.classList.contains("jp-CodeCell") ? "code"
            : cell.classList.contains("jp-MarkdownCell") ? "markdown" : "raw",
          text: cell.innerText.trim().slice(0, 200),
        })),
      });
    }
    return state;
  }, { name: opts.notebook });
  const isOpen = (s) => s.found && s.visible && s.cells.length > 0
    && s.kernelName && s.kernelName !== "No Kernel"
    && (opts.expectText === null || s.cells.some((c) => c.text.includes(opts.expectText)));
  const poll = async (done, bound) => {
    const deadline = Date.now() + bound;
    let state = null;
    for (;;) {
      state = await lab().catch((error) => ({ found: false, error: error.message }));
      if (done(state) || Date.now() > deadline) return state;
      await page.waitForTimeout(250);
    }
  };
  const remaining = () => Math.max(30_000, launchBound + 60_000 - (Date.now() - started));
  let state = await poll(isOpen, remaining());
  if (!isOpen(state)) {
    throw new Failure(`on ${redact(page.url())} (title "${await page.title()}") but JupyterLab ` +
      `did not open ${opts.notebook}` + (opts.expectText === null ? "" : ` showing ` +
      `${JSON.stringify(opts.expectText)}`) + `; last seen: ${JSON.stringify(state)}`);
  }
  result.timings.notebookOpen = elapsed();
  result.finalUrl = redact(page.url());

  // The kernel, once idle: reported; required only when --expect-output runs code.
  state = await poll((s) => isOpen(s) && s.kernelStatus === "idle",
    opts.expectOutput === null ? 20_000 : remaining());
  result.lab = state;
  result.timings.kernelIdle = state.kernelStatus === "idle" ? elapsed() : null;

  // 4. Optionally run the first code cell through the kernel (Ctrl+Enter: run in place).
  if (opts.expectOutput !== null) {
    if (state.kernelStatus !== "idle") {
      throw new Failure(`the kernel of ${opts.notebook} (${state.kernelName}) is ` +
        `${JSON.stringify(state.kernelStatus)}, not idle`);
    }
    const cell = page.locator(`[id="${state.panelId}"] .jp-CodeCell`).first();
    await cell.locator(".jp-InputArea-editor").click();
    await page.keyboard.press("Control+Enter");
    const output = cell.locator(".jp-OutputArea-output");
    try {
      await output.filter({ hasText: opts.expectOutput }).first()
        .waitFor({ state: "visible", timeout: 60_000 });
    } catch {
      const got = await output.allInnerTexts().catch(() => []);
      throw new Failure(`running the first code cell gave ${JSON.stringify(got)}, ` +
        `not ${JSON.stringify(opts.expectOutput)}`);
    }
    result.output = (await output.allInnerTexts()).join("\n").trim();
    result.timings.cellRun = elapsed();
  }

  await page.screenshot({ path: shotPath("jupyterlab.png") });
  result.screenshots.jupyterlab = shotPath("jupyterlab.png");
  if (!result.screenshots.loading) throw new Failure("no screenshot of the loading page was taken");
  if (result.offHostRequests.length) {
    throw new Failure(`the browser tried to reach other hosts: ${result.offHostRequests.join(", ")}`);
  }
  result.ok = true;
} catch (error) {
  result.error = error instanceof Failure ? error.message : `${error.name}: ${error.message}`;
  if (page) {
    result.finalUrl = redact(page.url());
    await page.screenshot({ path: shotPath("failure.png"), timeout: 10_000 })
      .then(() => { result.screenshots.failure = shotPath("failure.png"); })
      .catch(() => {});
  }
} finally {
  result.timings.total = elapsed();
  if (browser) await browser.close().catch(() => {});
}

process.stdout.write(JSON.stringify(result) + "\n");
if (!result.ok) process.stderr.write(`loading_redirect: FAILED: ${result.error}\n`);
process.exit(result.ok ? 0 : 1);
