// The front page: paste a repository URL, get a launch link, badges and a thebe snippet.

import { LogView } from "./launch.js";
import { describeTarget, launchSpec, parseRepoInput, withOverrides } from "./repourl.js";
import {
  badgeHtml, badgeMarkdown, badgeRst, badgeUrl, launchUrl, thebeCells, thebeHead,
} from "./snippets.js";
import { readEvents, StreamError } from "./sse.js";

const $ = (id) => document.getElementById(id);

/** This host's public URL, ending in "/"; the page's own origin when that names no host. */
export function hostBase(settings, location) {
  try {
    const url = new URL(settings.publicUrl);
    if (!["0.0.0.0", "[::]", "::"].includes(url.hostname)) {
      return url.href.endsWith("/") ? url.href : `${url.href}/`;
    }
  } catch {
    // fall through
  }
  return `${location.origin}${settings.baseUrl}`;
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // permissions: try the old way
    }
  }
  const scratch = document.createElement("textarea");
  scratch.value = text;
  scratch.setAttribute("readonly", "");
  scratch.style.position = "fixed";
  scratch.style.opacity = "0";
  document.body.append(scratch);
  scratch.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  scratch.remove();
  return ok;
}

export function startForm(settings) {
  const base = hostBase(settings, window.location);
  const providers = settings.providers;
  const input = $("repo-input");
  const fields = { ref: $("opt-ref"), path: $("opt-path"), urlpath: $("opt-urlpath") };
  const gpuField = $("opt-gpu");
  const courseField = $("opt-course");
  // the instructor's course page links here with ?course=<key>
  courseField.value = new URLSearchParams(window.location.search).get("course") || "";
  const understood = $("understood");
  const problem = $("input-error");
  const outputs = $("outputs");
  const launchButton = $("launch");
  const prebuildButton = $("prebuild");
  let current = null;  // the target the outputs show
  let prebuild = null;  // {controller} of a running prebuild

  $("host-providers").textContent = providers
    .map((p) => (p.host ? `${p.display_name} (${p.host.replace(/^https?:\/\//, "")})` : p.display_name))
    .join(", ");
  if (settings.gpuMax > 0) {
    $("gpu-option").hidden = false;
    $("options-summary").textContent = "Options: ref, file or URL path to open, GPUs";
    gpuField.max = String(settings.gpuMax);
  }
  if (!settings.thebeInstalled) $("thebe-missing").hidden = false;

  const setOutputs = (t) => {
    const gpu = settings.gpuMax > 0 && gpuField.value !== "" ? gpuField.value : null;
    const course = courseField.value.trim();
    const launch = launchUrl(base, t, { gpu, course });
    const logo = $("badge-logo").checked;
    $("out-launch").value = launch;
    $("open-launch").href = launch;
    // what the environment held, kept after the image is gone (web/environment.py)
    $("open-environment").href = `${base}environment/${launchSpec(t)}`;
    $("out-markdown").value = badgeMarkdown(base, launch, { logo });
    $("out-rst").value = badgeRst(base, launch, { logo });
    $("out-html").value = badgeHtml(base, launch, { logo });
    $("badge-preview-link").href = launch;
    const img = $("badge-preview");
    if (img.getAttribute("src") !== badgeUrl(base, { logo })) img.src = badgeUrl(base, { logo });
    $("out-thebe-head").value = thebeHead(base, t, { course });
    $("out-thebe-cells").value = thebeCells(t);
    for (const area of outputs.querySelectorAll("textarea")) {
      area.rows = Math.min(20, Math.max(2, area.value.split("\n").length));
    }
    if (outputs.dataset.spec !== launchSpec(t) && prebuild === null) {
      $("prebuild-box").hidden = true;  // a finished prebuild's result was for another target
    }
    outputs.dataset.spec = launchSpec(t);
  };

  const update = () => {
    const text = input.value;
    if (!text.trim()) {
      current = null;
      understood.hidden = true;
      problem.hidden = true;
      input.removeAttribute("aria-invalid");
      outputs.hidden = true;
      launchButton.disabled = prebuildButton.disabled = true;
      return;
    }
    const parsed = parseRepoInput(text, providers);
    const result = parsed.ok ? withOverrides(parsed.target, {
      ref: fields.ref.value, path: fields.path.value, urlpath: fields.urlpath.value,
    }) : parsed;
    if (!result.ok) {
      current = null;
      problem.textContent = result.message;
      problem.hidden = false;
      understood.hidden = true;
      input.setAttribute("aria-invalid", "true");
      outputs.hidden = true;
      launchButton.disabled = prebuildButton.disabled = true;
      return;
    }
    current = result.target;
    problem.hidden = true;
    input.removeAttribute("aria-invalid");
    understood.textContent = describeTarget(current, providers) +
      (current.notes.length ? ` (${current.notes.join("; ")})` : "");
    understood.hidden = false;
    fields.ref.placeholder = parsed.target.ref || "HEAD (default branch)";
    outputs.hidden = false;
    launchButton.disabled = false;
    prebuildButton.disabled = prebuild !== null;
    setOutputs(current);
  };

  for (const el of [input, ...Object.values(fields), gpuField, courseField]) {
    el.addEventListener("input", update);
  }
  $("badge-logo").addEventListener("change", update);
  $("badge-plain").addEventListener("change", update);

  $("launch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    update();
    if (current) window.location.assign($("out-launch").value);
    else input.focus();
  });

  document.querySelectorAll("button[data-copy]").forEach((button) => {
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const ok = await copyText($(button.dataset.copy).value);
      button.textContent = ok ? "Copied" : "Select and copy";
      button.classList.toggle("copied", ok);
      if (!ok) $(button.dataset.copy).select();
      setTimeout(() => {
        button.textContent = label;
        button.classList.remove("copied");
      }, 1500);
    });
  });

  // thebe preview: the snippet in an iframe of this origin, loaded only when asked for
  $("thebe-preview-button").addEventListener("click", () => {
    const frame = $("thebe-preview");
    frame.srcdoc = `<!doctype html><html><head><meta charset="utf-8">` +
      `<style>body{font-family:system-ui,sans-serif;margin:1rem}</style>` +
      `${$("out-thebe-head").value}</head><body>${$("out-thebe-cells").value}</body></html>`;
    frame.hidden = false;
  });

  // Prebuild: build without launching (build_only=true), when the host allows it
  const refusedText = (said) => "This host does not prebuild on request (its operator has " +
    `not enabled build-only requests). Launching builds it too. Server said: ${said}`;
  const status = $("prebuild-status");
  const prebuildLog = new LogView($("prebuild-log"));
  prebuildButton.addEventListener("click", async () => {
    if (!current || prebuild) return;
    const spec = launchSpec(current);
    const controller = new AbortController();
    prebuild = { controller };
    prebuildButton.disabled = true;
    $("prebuild-box").hidden = false;
    $("prebuild-log").textContent = "";
    status.dataset.state = "running";
    status.textContent = `Prebuilding ${spec}…`;
    let last = null;
    try {
      await readEvents(`${base}build/${spec}?build_only=true`, {
        signal: controller.signal,
        xsrfToken: settings.xsrfToken,
        onEvent: (event) => {
          last = event;
          if (event.message) prebuildLog.append(event.message);
          if (event.phase === "ready" || event.phase === "failed") return true;
          status.textContent = `Prebuilding ${spec}: ${event.phase}…`;
          return false;
        },
      });
      prebuildLog.flush();
      if (last && last.phase === "ready") {
        status.dataset.state = "ready";
        status.textContent = `Built: ${last.imageName || "the image is ready"}. Launches of ` +
          "this commit now start without a build.";
      } else if (last && last.phase === "failed" && last.status_code === 403) {
        // refused before the build: as BinderHub does, the stream says why in a failed event
        status.dataset.state = "failed";
        status.textContent = refusedText(last.message.trim());
      } else {
        status.dataset.state = "failed";
        status.textContent = `The prebuild failed: ${last && last.message ? last.message.trim()
          .split("\n")[0] : "the stream ended early"}`;
      }
    } catch (error) {
      status.dataset.state = "failed";
      if (error instanceof StreamError && error.status === 403) {
        status.textContent = refusedText(error.message);
      } else if (error instanceof StreamError) {
        status.textContent = `The prebuild was refused (HTTP ${error.status}): ${error.message}`;
      } else {
        status.textContent = `The prebuild lost its connection: ${error.message}`;
      }
    } finally {
      prebuild = null;
      prebuildButton.disabled = current === null;
    }
  });

  update();
}
