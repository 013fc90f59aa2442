// Follow a binderlab (BinderHub-compatible) build stream and report each phase.

/** Where to send the browser once the session is ready: honours urlpath, labpath, filepath. */
export function sessionUrl(event, params) {
  let path = "";
  if (params.get("urlpath")) path = params.get("urlpath");
  else if (params.get("labpath")) path = "doc/tree/" + params.get("labpath");
  else if (params.get("filepath")) path = "tree/" + params.get("filepath");
  // A relative path only: "//host" or "https://..." must not become an open redirect.
  path = path.replace(/^[\/\\]+/, "");
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) path = "";
  const url = new URL(path, event.url);
  if (!url.href.startsWith(event.url)) return event.url + "?token=" + encodeURIComponent(event.token);
  url.searchParams.set("token", event.token);
  return url.href;
}

export function followLaunch({ buildUrl, phase, log, onReady }) {
  const source = new EventSource(buildUrl);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    phase.dataset.phase = event.phase;
    phase.textContent = event.phase;
    if (event.message) {
      log.textContent += event.message;
      log.scrollTop = log.scrollHeight;
    }
    if (event.phase === "ready") {
      source.close();
      onReady(event);
    } else if (event.phase === "failed") {
      source.close();
      phase.textContent = "failed: " + (event.message || "").split("\n")[0];
    }
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) phase.textContent = "connection lost";
  };
  return source;
}
