#!/usr/bin/env node
// Drive binderlab's front page (the launch form) in Chromium and report what it shows.
//
//   node form.mjs <form-url> <screenshot-dir> --scenario <file.json> [--timeout-s N]
//
// The scenario: {"steps": [{"name", "input", "options": {"ref", "path", "urlpath", "gpu"},
//   "copy": true (click the launch URL's Copy button, read the clipboard),
//   "prebuild": true (click Prebuild, wait for its result), "preview": true (render the thebe
//   snippet's preview, wait for thebe's Activate button in it), "shot": "<screenshot name>"}]}
// Prints one JSON line: {"ok", "steps": [what the page showed after each step], ...}.

import { readFileSync } from "node:fs";
import { Failure, parseArgs, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["scenario", "timeout-s"]);
if (positional.length !== 2 || !options.scenario) {
  process.stderr.write("usage: node form.mjs <form-url> <screenshot-dir> --scenario <file.json>\n");
  process.exit(2);
}
const [formUrl, shotDir] = positional;
const scenario = JSON.parse(readFileSync(options.scenario, "utf8"));
const timeoutS = Number(options["timeout-s"] || 300);

await runBrowserCheck({
  shotDir, timeoutS,
  contextOptions: { permissions: ["clipboard-read", "clipboard-write"] },
}, async (ctx) => {
  const page = await ctx.newPage();
  const response = await page.goto(formUrl, { waitUntil: "load", timeout: 30_000 });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${formUrl} answered ${response ? response.status() : "nothing"}`);
  }
  await page.locator("#repo-input").waitFor({ state: "visible" });
  ctx.result.title = await page.title();
  ctx.result.focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  ctx.result.steps = [];

  for (const step of scenario.steps) {
    const seen = { name: step.name, input: step.input };
    const opts = step.options || {};
    if (Object.keys(opts).length) {
      await page.evaluate(() => { document.querySelector("details.options").open = true; });
    }
    for (const [field, id] of [["ref", "#opt-ref"], ["path", "#opt-path"],
      ["urlpath", "#opt-urlpath"], ["gpu", "#opt-gpu"]]) {
      if (await page.locator(id).isVisible()) await page.fill(id, String(opts[field] ?? ""));
    }
    // typed like a person pastes: the field's input event drives the form
    await page.fill("#repo-input", step.input);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));

    Object.assign(seen, await page.evaluate(() => {
      const $ = (id) => document.getElementById(id);
      const shown = (el) => !el.hidden && el.getBoundingClientRect().height > 0;
      return {
        understood: shown($("understood")) ? $("understood").textContent : null,
        error: shown($("input-error")) ? $("input-error").textContent : null,
        errorRole: $("input-error").getAttribute("role"),
        invalid: $("repo-input").getAttribute("aria-invalid") === "true",
        outputsShown: shown($("outputs")),
        launchDisabled: $("launch").disabled,
        launchUrl: $("out-launch").value,
        environmentUrl: $("open-environment") ? $("open-environment").href : null,
        openHref: $("open-launch").getAttribute("href"),
        markdown: $("out-markdown").value,
        rst: $("out-rst").value,
        html: $("out-html").value,
        thebeHead: $("out-thebe-head").value,
        thebeCells: $("out-thebe-cells").value,
        gpuShown: shown($("gpu-option")),
      };
    }));
    if (seen.outputsShown) {
      const img = page.locator("#badge-preview");
      await page.waitForFunction(() => {
        const el = document.getElementById("badge-preview");
        return el.complete && el.naturalWidth > 0;
      }, null, { timeout: 10_000 }).catch(() => {});
      seen.badge = await img.evaluate((el) => ({
        src: el.currentSrc, width: el.naturalWidth, height: el.naturalHeight,
      }));
    }
    if (step.copy) {
      await page.evaluate(() => navigator.clipboard.writeText("(nothing copied)"));
      const button = page.locator('button[data-copy="out-launch"]');
      await button.click();
      await page.waitForFunction(() => document.querySelector('button[data-copy="out-launch"]')
        .textContent !== "Copy", null, { timeout: 5000 });
      seen.copyButton = await button.textContent();
      seen.clipboard = await page.evaluate(() => navigator.clipboard.readText());
    }
    if (step.prebuild) {
      const started = ctx.elapsed();
      await page.click("#prebuild");
      await page.waitForFunction(() => {
        const el = document.getElementById("prebuild-status");
        return el.dataset.state && el.dataset.state !== "running";
      }, null, { timeout: 280_000 });
      seen.prebuild = await page.evaluate(() => ({
        state: document.getElementById("prebuild-status").dataset.state,
        text: document.getElementById("prebuild-status").textContent,
        log: document.getElementById("prebuild-log").textContent.slice(-2000),
        buttonDisabled: document.getElementById("prebuild").disabled,
      }));
      seen.prebuild.seconds = ctx.elapsed() - started;
    }
    if (step.preview) {
      // the snippet rendered in an iframe of the form's origin: thebe loads, the cells show
      await page.click("#thebe-preview-button");
      const frame = page.frameLocator("#thebe-preview");
      await frame.locator(".thebe-activate-button").waitFor({ state: "visible", timeout: 30_000 });
      seen.preview = {
        activateButton: await frame.locator(".thebe-activate-button").textContent(),
        cells: await frame.locator("pre[data-executable]").allTextContents(),
      };
    }
    if (step.shot) {
      await page.evaluate(() => window.scrollTo(0, 0));
      await ctx.shot(page, step.shot);
    }
    ctx.result.steps.push(seen);
  }
  if (ctx.result.offHostRequests.length) {
    throw new Failure(`the page tried to reach other hosts: ${ctx.result.offHostRequests.join(", ")}`);
  }
});
