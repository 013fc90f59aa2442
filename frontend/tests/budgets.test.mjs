// The loading page's words for GPU-time budgets: the ready event's gpu_budget and a
// refusal's renews_at (service/binderlab/launch/events.schema.json). Run: node --test frontend/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { budgetText, renewalText, spanText } from "../static/launch.js";

const SCHEMA = JSON.parse(readFileSync(
  new URL("../../service/binderlab/launch/events.schema.json", import.meta.url), "utf8"));

test("spans read as people say them", () => {
  assert.equal(spanText(40), "40 s");
  assert.equal(spanText(12 * 60 + 5), "12 min");
  assert.equal(spanText(2 * 3600 + 5 * 60), "2 h 05 min");
  assert.equal(spanText(-3), "0 s");
});

test("the budget sentence names what the schema's gpu_budget carries", () => {
  const budget = { seconds_left: 4500, period: "day", renews_at: "2026-12-03T00:00:00Z",
    stops_at: "2026-12-02T11:15:00Z" };
  for (const key of SCHEMA.$defs.gpu_budget.required) assert.ok(key in budget, key);
  const text = budgetText(budget, "en-GB");
  assert.match(text, /^GPU time left this day: 1 h 15 min\. /);
  assert.ok(text.includes(new Date(budget.stops_at).toLocaleString("en-GB",
    { dateStyle: "medium", timeStyle: "short" })), text);
  assert.ok(text.includes("renews at " + new Date(budget.renews_at).toLocaleString("en-GB",
    { dateStyle: "medium", timeStyle: "short" })), text);
  assert.equal(budgetText(undefined), "");
});

test("a refusal that renews says when; others say nothing more", () => {
  const when = "2026-12-07T00:00:00Z";
  assert.ok("renews_at" in SCHEMA.allOf.find((c) => c.if.properties.phase.const === "failed")
    .then.properties);
  assert.match(renewalText({ phase: "failed", status_code: 429, renews_at: when }, "en-GB"),
    /^You can launch this again at .*2026/);
  assert.equal(renewalText({ phase: "failed", status_code: 400 }), "");
});
