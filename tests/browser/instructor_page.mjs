#!/usr/bin/env node
// Open an instructor's course page (/courses/<id>) in Chromium and read what it shows.
//
//   node instructor_page.mjs <page-url> <screenshot-dir> --token OPERATOR_TOKEN
//
// The operator token goes in an Authorization header (as `binderlab course` sends it);
// prints one JSON line: {ok, title, seats, environments: [{pattern, state, warm,
// claimed}], plot: {width, height, bars: [launches per bar]}, links, screenshots}.

import { Failure, parseArgs, runBrowserCheck } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["token"]);
if (positional.length !== 2 || !options.token) {
  process.stderr.write("usage: node instructor_page.mjs <url> <screenshot-dir> --token T\n");
  process.exit(2);
}
const [pageUrl, shotDir] = positional;

await runBrowserCheck({
  shotDir, timeoutS: 120,
  contextOptions: { extraHTTPHeaders: { Authorization: `token ${options.token}` } },
}, async (ctx) => {
  const page = await ctx.newPage();
  const response = await page.goto(pageUrl, { waitUntil: "load", timeout: 30_000 });
  if (response.status() !== 200) throw new Failure(`HTTP ${response.status()} for ${pageUrl}`);
  Object.assign(ctx.result, await page.evaluate(() => {
    const svg = document.querySelector("#launch-plot svg");
    const box = svg ? svg.getBoundingClientRect() : null;
    return {
      title: document.querySelector("#course-title")?.textContent.trim(),
      seats: document.querySelector("#seats")?.textContent.trim(),
      environments: [...document.querySelectorAll("#environments tr.env")].map((row) => ({
        pattern: row.querySelector("code")?.textContent,
        state: row.dataset.state,
        warm: row.querySelector(".warm")?.textContent.trim(),
        claimed: row.querySelector(".claimed")?.textContent.trim(),
      })),
      plot: svg && {
        width: box.width, height: box.height,
        bars: [...svg.querySelectorAll("rect.bar")].map((r) => Number(r.dataset.launches)),
        barHeights: [...svg.querySelectorAll("rect.bar")].map((r) => r.getBoundingClientRect().height),
      },
      links: [...document.querySelectorAll("input.course-link")].map((i) => i.value),
      gpuQueue: document.querySelector("#gpu-queue")?.textContent.trim(),
      stylesheetLoaded: getComputedStyle(document.querySelector(".card")).borderRadius === "8px",
    };
  }));
  await ctx.shot(page, "instructor-page");
});
