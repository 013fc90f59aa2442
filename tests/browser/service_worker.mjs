// A session page that tries to take over more than its own session (issue 12): it registers
// a service worker for scope "/" (its script is sent with `Service-Worker-Allowed: /`) and
// reads another session's page. Usage: node service_worker.mjs <config JSON>
// config: {direct, directOther, session, otherSecret, other, service, spki}; prints one JSON line.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const CHROMIUM = process.env.BINDERLAB_CHROMIUM || "/usr/bin/chromium";
const result = { ok: false, error: null };

// what the page itself does, as a repository's session could serve it
async function attack(page, url, other) {
  await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  return await page.evaluate(async (other) => {
    const out = {};
    try {
      const reg = await navigator.serviceWorker.register("sw.js", { scope: "/" });
      out.rootScope = reg.scope;
    } catch (e) {
      out.rootScopeError = `${e.name}: ${e.message}`;
    }
    try {
      const reg = await navigator.serviceWorker.register("sw.js");
      out.ownScope = reg.scope;
    } catch (e) {
      out.ownScopeError = `${e.name}: ${e.message}`;
    }
    if (other) {
      try {
        const response = await fetch(other, { credentials: "include" });
        out.otherSession = await response.text();
      } catch (e) {
        out.otherSessionError = `${e.name}: ${e.message}`;
      }
    }
    return out;
  }, other);
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60_000,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
      "--no-proxy-server",
      // the deployment's names, all on this machine; nothing else resolves
      "--host-resolver-rules=MAP binder.example.org 127.0.0.1 , MAP *.example.org 127.0.0.1 ,"
        + " MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
      // the test certificate counts as valid (service workers need a valid one)
      `--ignore-certificate-errors-spki-list=${config.spki}`,
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  result.direct = await attack(page, config.direct, config.directOther);
  const deployed = await context.newPage();
  result.deployed = await attack(deployed, config.session, config.otherSecret);
  // pages of the service and of another session: is the worker in control of any?
  for (const [name, url] of [["service", config.service], ["other", config.other]]) {
    const p = await context.newPage();
    await p.goto(url, { waitUntil: "load", timeout: 30_000 });
    result[`${name}Controlled`] = await p.evaluate(() => navigator.serviceWorker.controller !== null);
    result[`${name}Text`] = await p.evaluate(() => document.body.innerText);
  }
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  if (browser) await browser.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);
