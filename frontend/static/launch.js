// The loading page: follow a launch's event stream, show its phase, progress and log, then
// open the session. Also the pure helpers it needs (tested under `node --test`).

import { setFavicon } from "./favicon.js";
import { readEvents, StreamError } from "./sse.js";

/** Where to send the browser once the session is ready: honours urlpath, labpath, filepath. */
export function sessionUrl(event, params) {
  let path = "";
  if (params.get("urlpath")) path = params.get("urlpath");
  else if (params.get("labpath")) path = "doc/tree/" + params.get("labpath");
  else if (params.get("filepath")) path = "tree/" + params.get("filepath");
  // A relative path only: "//host" or "https://..." must not become an open redirect.
  path = path.replace(/^[/\\]+/, "");
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) path = "";
  const url = new URL(path, event.url);
  if (!url.href.startsWith(event.url)) return event.url + "?token=" + encodeURIComponent(event.token);
  url.searchParams.set("token", event.token);
  return url.href;
}

/** "2 h 05 min", "12 min", "40 s": a span of seconds for people. */
export function spanText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  return hours ? `${hours} h ${String(minutes).padStart(2, "0")} min` : `${minutes} min`;
}

/** A moment as the reader's clock shows it (the service sends RFC 3339 UTC). */
function localTime(stamp, locale) {
  return new Date(stamp).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
}

/** The ready event's gpu_budget as a sentence: time left, and when the session stops. */
export function budgetText(budget, locale = undefined) {
  if (!budget) return "";
  return `GPU time left this ${budget.period}: ${spanText(budget.seconds_left)}. This ` +
    `session stops at ${localTime(budget.stops_at, locale)} unless you stop it earlier; ` +
    `your GPU time renews at ${localTime(budget.renews_at, locale)}.`;
}

/** A refusal that renews (429 with renews_at: launch rate, used-up GPU time): when. */
export function renewalText(event, locale = undefined) {
  if (!event || !event.renews_at) return "";
  return `You can launch this again at ${localTime(event.renews_at, locale)}.`;
}

/** The steps the page shows; other phases belong to one of them. */
export const STEPS = ["fetching", "building", "launching", "ready"];
const STEP_OF = {
  starting: "fetching", fetching: "fetching", building: "building", pushing: "building",
  built: "launching", waiting: null, launching: "launching", ready: "ready",
};

export const PHASE_TEXT = {
  starting: "Connecting to the build service…",
  waiting: "Waiting in the queue…",
  fetching: "Fetching the repository…",
  building: "Building the environment (repo2docker)…",
  pushing: "Pushing the image…",
  built: "Environment ready, starting a session…",
  launching: "Starting the session…",
  ready: "Ready: opening the session…",
  failed: "The launch failed.",
};

/**
 * How far along a launch is, 0..1. Builds have no known length, so the bar creeps towards
 * the end of the building share with every log line and never claims more than it knows.
 */
export function progressFor(phase, linesInPhase = 0) {
  const creep = (from, to, scale) => from + (to - from) * (1 - Math.exp(-linesInPhase / scale));
  switch (phase) {
    case "starting": return 0.02;
    case "waiting": return 0.05;
    case "fetching": return 0.08;
    case "building": return creep(0.15, 0.7, 150);
    case "pushing": return 0.72;
    case "built": return 0.75;
    case "launching": return creep(0.8, 0.95, 4);
    case "ready": return 1;
    default: return null;
  }
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07/g;

/**
 * A terminal-like log that keeps up with fast streams: lines queue up and reach the DOM once
 * per animation frame as one text node; it follows the end unless the reader scrolled up, and
 * keeps the last `maxChars` characters.
 */
export class LogView {
  constructor(element, { maxChars = 400_000 } = {}) {
    this.element = element;
    this.maxChars = maxChars;
    this.pending = [];
    this.frame = null;
    this.length = 0;
    this.trimmed = false;
  }

  append(text) {
    this.pending.push(text);
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    if (!this.pending.length) return;
    let text = this.pending.join("").replace(ANSI, "");
    this.pending = [];
    if (text.length > this.maxChars) text = text.slice(-this.maxChars);
    const el = this.element;
    const follow = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    el.append(document.createTextNode(text));
    this.length += text.length;
    while (this.length > this.maxChars && el.childNodes.length > 1) {
      const first = el.firstChild;
      if (first.dataset && first.dataset.trimmed) {
        el.removeChild(first);
        continue;
      }
      this.length -= first.textContent.length;
      el.removeChild(first);
      this.trimmed = true;
    }
    if (this.trimmed && !(el.firstChild && el.firstChild.dataset && el.firstChild.dataset.trimmed)) {
      const note = document.createElement("span");
      note.className = "log-note";
      note.dataset.trimmed = "1";
      note.textContent = "[earlier lines not shown]\n";
      el.prepend(note);
    }
    if (follow) el.scrollTop = el.scrollHeight;
  }
}

const $ = (id) => document.getElementById(id);

/** Run the loading page. `settings`: {buildUrl, buildParams, xsrfToken} from the template. */
export function startLoadingPage(settings) {
  const page = new URL(window.location.href);
  const phaseEl = $("phase");
  const detail = $("phase-detail");
  const bar = $("progress-bar");
  const progress = $("progress");
  const log = new LogView($("log"));
  const started = Date.now();
  const state = { phase: "starting", lines: 0, finished: false };

  const elapsed = $("elapsed");
  const tick = () => {
    const s = Math.round((Date.now() - started) / 1000);
    elapsed.textContent = s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  };
  tick();
  const timer = setInterval(tick, 1000);

  let shown = 0;  // the bar never moves back (a GPU queue comes after the build)
  const showProgress = () => {
    let fraction = progressFor(state.phase, state.lines);
    if (fraction === null) return;
    fraction = Math.max(fraction, shown);
    shown = fraction;
    bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    progress.setAttribute("aria-valuenow", String(Math.round(fraction * 100)));
    progress.dataset.phase = state.phase;
    setFavicon(state.phase === "waiting" ? "waiting" : state.phase === "ready" ? "ready" : "working",
      fraction);
  };

  const showStep = (phase) => {
    const current = STEP_OF[phase];
    if (current === null || current === undefined) return;
    const index = STEPS.indexOf(current);
    document.querySelectorAll("#steps [data-step]").forEach((li) => {
      const i = STEPS.indexOf(li.dataset.step);
      li.classList.toggle("done", i < index || phase === "ready");
      li.classList.toggle("current", i === index && phase !== "ready");
    });
  };

  const setPhase = (phase, text = phase) => {
    if (phase !== state.phase) state.lines = 0;
    state.phase = phase;
    phaseEl.dataset.phase = phase;
    phaseEl.textContent = text;
    detail.textContent = PHASE_TEXT[phase] || "";
    document.body.dataset.phase = phase;
    showStep(phase);
    showProgress();
  };

  const fail = (message, { lost = false } = {}) => {
    state.finished = true;
    clearInterval(timer);
    log.flush();
    const first = (message || "").trim().split("\n")[0];
    setPhase("failed", lost ? "connection lost" : `failed: ${first}`);
    if (lost) detail.textContent = "The connection to the build service was lost.";
    setFavicon("failed");
    $("queue").hidden = true;
    $("failure-message").textContent = (message || "").trim() || "No reason was given.";
    $("failure").hidden = false;
    $("log-box").open = true;
    $("retry").focus();
  };

  const onEvent = (event) => {
    const phase = event.phase || state.phase;
    if (event.message) {
      log.append(event.message);
      state.lines += 1;
    }
    if (phase === "failed") {
      const renewal = renewalText(event);
      fail(renewal ? `${(event.message || "").trim()}\n${renewal}` : event.message);
      return true;
    }
    if (phase !== state.phase) setPhase(phase);
    else showProgress();
    const queue = $("queue");
    if (phase === "waiting" && event.queue_position) {
      queue.textContent = `All GPUs are busy: you are number ${event.queue_position} in the ` +
        "queue. This page keeps your place while it stays open.";
      queue.hidden = false;
    } else if (phase !== "waiting") {
      queue.hidden = true;
    }
    if (phase === "ready") {
      state.finished = true;
      clearInterval(timer);
      log.flush();
      // the record of this exact commit, not of the branch the link names
      const envLink = $("environment-link");
      if (envLink && event.environment_url) envLink.href = event.environment_url;
      if (Array.isArray(event.gpus) && event.gpus.length) {
        const gpus = $("gpus");
        gpus.textContent = [`${event.gpus.length === 1 ? "GPU" : "GPUs"} ` +
          `${event.gpus.join(", ")} reserved for this session.`, budgetText(event.gpu_budget)]
          .filter(Boolean).join(" ");
        gpus.hidden = false;
      }
      window.location.replace(sessionUrl(event, page.searchParams));
      return true;
    }
    return false;
  };

  $("retry").addEventListener("click", () => window.location.reload());

  const url = new URL(settings.buildUrl, page.origin);
  for (const [key, value] of Object.entries(settings.buildParams || {})) {
    url.searchParams.set(key, value);
  }
  setPhase("starting");
  readEvents(url, { onEvent, xsrfToken: settings.xsrfToken })
    .then((finished) => {
      if (!finished && !state.finished) fail("The stream ended before the launch finished.", { lost: true });
    })
    .catch((error) => {
      if (state.finished) return;
      if (error instanceof StreamError) fail(`${error.message} (HTTP ${error.status})`);
      else fail(`${error.message}`, { lost: true });
    });
}
