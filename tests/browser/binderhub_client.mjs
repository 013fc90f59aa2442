#!/usr/bin/env node
// Launch through BinderHub's own JavaScript client, @jupyterhub/binderhub-client (npm, the
// real package), against a binderlab host:
//
//   node binderhub_client.mjs <binder-url> <provider-spec> [--build-only true]
//        [--api-token T] [--xsrf-cookie V] [--urlpath P] [--timeout-s N]
//
// The client is browser code; under Node it needs `window` and a minimal `document` (what
// fetch-event-source and the _xsrf cookie lookup touch). Prints one JSON line: the events'
// phases, the ready event's fields (token redacted), what the server answered with that
// token, and the redirect URL the client's LaunchSpec builds (token redacted).

import { parseArgs, redact } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2),
  ["build-only", "api-token", "xsrf-cookie", "urlpath", "timeout-s"]);
if (positional.length !== 2) {
  process.stderr.write("usage: node binderhub_client.mjs <binder-url> <provider-spec> [options]\n");
  process.exit(2);
}
const [binderUrl, providerSpec] = positional;
const timeoutS = Number(options["timeout-s"] || 300);

globalThis.window = globalThis;
globalThis.document = {
  hidden: false, cookie: options["xsrf-cookie"] ? `_xsrf=${options["xsrf-cookie"]}` : "",
  addEventListener() {}, removeEventListener() {},
};
const { BinderRepository } = await import("@jupyterhub/binderhub-client/client.js");
const { LaunchSpec } = await import("@jupyterhub/binderhub-client/spec.js");

const result = { ok: false, phases: [], events: 0, ready: null, failed: null, server: null };
const watchdog = setTimeout(() => {
  result.error = `watchdog: no ready/failed after ${timeoutS} s`;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(1);
}, timeoutS * 1000);

const repo = new BinderRepository(providerSpec, new URL("build/", binderUrl), {
  buildOnly: options["build-only"] === "true", apiToken: options["api-token"],
});
for await (const event of repo.fetch()) {
  result.events += 1;
  if (result.phases.at(-1) !== event.phase) result.phases.push(event.phase);
  if (event.phase === "failed") {
    result.failed = event;
    break;
  }
  if (event.phase === "ready") {
    const { token, ...fields } = event;
    result.ready = { ...fields, hasToken: Boolean(token) };
    if (event.url) {
      // what BinderHub's page does next: the server, reached with the launch token
      const status = await fetch(new URL("api/status", event.url),
        { headers: { Authorization: `token ${token}` } });
      result.server = { status: status.status, body: await status.json().catch(() => null) };
      const spec = LaunchSpec.fromSearchParams(new URLSearchParams({ urlpath: options.urlpath || "" }));
      result.redirectUrl = redact(spec.getJupyterServerRedirectUrl(new URL(event.url), token));
    }
    break;
  }
}
repo.close();
clearTimeout(watchdog);
result.ok = result.ready !== null;
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(0);
