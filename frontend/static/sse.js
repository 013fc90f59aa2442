// Read binderlab's event stream with fetch() instead of EventSource: an HTTP error (403 for a
// refused build-only request, 404 for an unknown provider, 429...) then reaches the page with
// the service's message, and nothing reconnects (a reconnect would start a second launch).

/** Incremental parser of text/event-stream: push(text) returns the complete events' data. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    // complete lines only; a "\r" at the very end may be the first half of "\r\n"
    const end = this.buffer.endsWith("\r") ? this.buffer.length - 1 : this.buffer.length;
    if (end === 0) return [];
    const lastBreak = Math.max(this.buffer.lastIndexOf("\n", end - 1),
      this.buffer.lastIndexOf("\r", end - 1));
    if (lastBreak === -1) return [];
    const lines = this.buffer.slice(0, lastBreak + 1).split(/\r\n|\r|\n/);
    lines.pop();  // what follows the last break: nothing
    this.buffer = this.buffer.slice(lastBreak + 1);
    const out = [];
    for (const line of lines) {
      if (line === "") {
        if (this.data.length) out.push(this.data.join("\n"));
        this.data = [];
      } else if (line.startsWith("data:")) {
        this.data.push(line.slice(line[5] === " " ? 6 : 5));
      }
      // comments (":keepalive"), event:, id: and retry: lines carry nothing we use
    }
    return out;
  }
}

export class StreamError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * GET `url` as an event stream and call onEvent(object) for each JSON event, until onEvent
 * returns true, the stream ends or `signal` aborts. Throws StreamError on an HTTP error.
 */
export async function readEvents(url, { onEvent, signal, xsrfToken }) {
  const headers = { Accept: "text/event-stream" };
  // logged-in mode: JupyterHub's login cookie counts for a fetch() only with the page's
  // xsrf token beside it (jupyterhub.services.auth checks it for non-navigation requests)
  if (xsrfToken) headers["X-XSRFToken"] = xsrfToken;
  const response = await fetch(url, { headers, cache: "no-store", signal });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.message) message = body.message;
    } catch {
      // not JSON: keep the status line
    }
    throw new StreamError(response.status, message);
  }
  const parser = new SseParser();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      for (const data of parser.push(value)) {
        let event;
        try {
          event = JSON.parse(data);
        } catch {
          continue;  // not ours
        }
        if (onEvent(event) === true) return true;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
