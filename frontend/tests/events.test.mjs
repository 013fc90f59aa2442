// The loading page against the service's published event schema
// (service/binderlab/launch/events.schema.json): every phase the stream may send is one
// the page can name and place on its progress bar. Run: node --test frontend/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { PHASE_TEXT, progressFor } from "../static/launch.js";

const SCHEMA = JSON.parse(readFileSync(
  new URL("../../service/binderlab/launch/events.schema.json", import.meta.url), "utf8"));
const PHASES = SCHEMA.properties.phase.enum;

test("the schema lists the stream's phases", () => {
  for (const phase of ["fetching", "building", "built", "waiting", "launching", "ready",
    "failed"]) {
    assert.ok(PHASES.includes(phase), phase);
  }
});

test("the loading page names every phase the service sends", () => {
  for (const phase of PHASES) assert.ok(PHASE_TEXT[phase], `no text for ${phase}`);
});

test("every phase but failed has a place on the progress bar", () => {
  for (const phase of PHASES.filter((p) => p !== "failed")) {
    const fraction = progressFor(phase);
    assert.ok(fraction >= 0 && fraction <= 1, `${phase}: ${fraction}`);
  }
});
