// What the form hands out for a launch target: the launch URL, badges, a thebe snippet.
// Pure functions (no DOM), tested under `node --test` in frontend/tests/.

import { launchSpec } from "./repourl.js";

export const THEBE_PATH = "static/vendor/thebe/";
export const BADGE_ALT = "Launch in binderlab";

/** A query string that keeps "/" readable: labpath=notebooks/intro.ipynb. */
function query(params) {
  const parts = Object.entries(params)
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([key, value]) => `${key}=${encodeURIComponent(value).replace(/%2F/gi, "/")}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

/** `base` ends with "/": the host's public URL including its base URL. */
export function launchUrl(base, t, { gpu = null, course = "" } = {}) {
  const params = {};
  if (t.urlpath) params.urlpath = t.urlpath;
  else if (t.path && t.pathKind === "dir") params.urlpath = `lab/tree/${t.path}`;
  else if (t.path) params.labpath = t.path;
  if (gpu !== null && gpu !== "") params.gpu = String(gpu);
  // a registered course's key: its launches get the course's seats (README, "Courses")
  if (course) params.course = course;
  return `${base}v2/${launchSpec(t)}${query(params)}`;
}

export const badgeUrl = (base, { logo = true } = {}) =>
  `${base}${logo ? "badge_logo.svg" : "badge.svg"}`;

export function badgeMarkdown(base, launch, opts = {}) {
  return `[![${BADGE_ALT}](${badgeUrl(base, opts)})](${launch})`;
}

export function badgeRst(base, launch, opts = {}) {
  return `.. image:: ${badgeUrl(base, opts)}\n   :target: ${launch}\n   :alt: ${BADGE_ALT}`;
}

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
})[c]);

/** Element content needs only &, < and > escaped (quotes stay readable in code). */
const escapeText = (text) => String(text).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

export function badgeHtml(base, launch, opts = {}) {
  return `<a href="${escapeHtml(launch)}"><img src="${escapeHtml(badgeUrl(base, opts))}" ` +
    `alt="${BADGE_ALT}"></a>`;
}

/** thebe's repoProvider names and the repo form each one takes (see PROTOCOL.md). */
const THEBE_PROVIDERS = { gh: "github", gl: "gitlab", git: "git", gist: "gist" };

/** The config thebe 0.9.x reads from <script type="text/x-thebe-config">. */
export function thebeConfig(base, t, { kernelName = "python3", course = "" } = {}) {
  // thebe builds <binderUrl>/build/... itself and passes no query: a course's key rides in
  // the base URL instead (<host>/course/<key>/build/..., which the service serves)
  if (course) base = `${base}course/${encodeURIComponent(course)}/`;
  return {
    requestKernel: true,
    binderOptions: {
      binderUrl: base.replace(/\/+$/, ""),
      repo: t.repo,
      ref: t.ref || "HEAD",
      repoProvider: THEBE_PROVIDERS[t.provider],
    },
    kernelOptions: { kernelName },
  };
}

/** JSON that cannot close the <script> element it sits in. */
const scriptJson = (value) => JSON.stringify(value, null, 2).replace(/</g, "\\u003c");

/** For the page's <head>: the config block, thebe's stylesheet and script from this host. */
export function thebeHead(base, t, opts = {}) {
  if (!THEBE_PROVIDERS[t.provider]) {
    // thebe 0.9 builds /build/<prefix>/<spec> itself and knows only these providers
    return `<!-- thebe launches git repositories only (GitHub, GitLab, git URLs, gists); ` +
      `for live cells from this ${t.provider} record, publish its files as a git repository. ` +
      `The launch link and badges above work for the record. -->`;
  }
  const config = scriptJson(thebeConfig(base, t, opts)).replace(/\n/g, "\n  ");
  return [
    `<script type="text/x-thebe-config">`,
    `  ${config}`,
    `</script>`,
    `<link rel="stylesheet" href="${escapeHtml(base + THEBE_PATH)}thebe.css">`,
    `<script src="${escapeHtml(base + THEBE_PATH)}index.js"></script>`,
  ].join("\n");
}

/** For the page's body: the activate button, a status line and an executable cell. */
export function thebeCells(t, { code = null } = {}) {
  const sample = code ?? `print("Hello from ${t.repo.split("/").pop()}")`;
  return [
    `<div class="thebe-activate"></div>`,
    `<div class="thebe-status"></div>`,
    `<pre data-executable="true" data-language="python">${escapeText(sample)}</pre>`,
  ].join("\n");
}
