// The form recognises DOIs, SWHIDs and record pages. Run: node --test frontend/tests/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { DEFAULT_PROVIDERS, describeTarget, launchSpec, parseRepoInput } from "../static/repourl.js";
import { launchUrl, thebeHead } from "../static/snippets.js";

const SWH = "swh:1:dir:" + "0123456789abcdef".repeat(2) + "01234567";
const HS = "b8f6eae9d89241cf8b5904033460af61";

// [pasted text, expected provider, expected "<prefix>/<spec>"]
const RECORDS = [
  ["10.5281/zenodo.3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["doi:10.5281/zenodo.3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["https://doi.org/10.5281/zenodo.3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["https://dx.doi.org/10.5281/zenodo.3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["https://zenodo.org/records/3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["https://zenodo.org/record/3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["zenodo.org/records/3242074", "zenodo", "zenodo/10.5281/zenodo.3242074"],
  ["10.6084/m9.figshare.9782777.v1", "figshare", "figshare/10.6084/m9.figshare.9782777.v1"],
  ["https://figshare.com/articles/software/binder-example/9782777/2", "figshare",
    "figshare/10.6084/m9.figshare.9782777.v2"],
  ["https://figshare.com/articles/binder-examples_requirements/9784088", "figshare",
    "figshare/10.6084/m9.figshare.9784088.v1"],
  [`https://www.hydroshare.org/resource/${HS}/`, "hydroshare", `hydroshare/${HS}`],
  [`10.4211/hs.${HS}`, "hydroshare", `hydroshare/${HS}`],
  ["10.7910/DVN/TJCLKP", "dataverse", "dataverse/10.7910/DVN/TJCLKP"],
  ["https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:10.7910/DVN/TJCLKP",
    "dataverse", "dataverse/10.7910/DVN/TJCLKP"],
  ["https://demo.ckan.org/dataset/sample-dataset-1", "ckan",
    "ckan/https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-dataset-1"],
  ["https://data.example.org/catalog/dataset/rain/resource/1", "ckan",
    "ckan/https%3A%2F%2Fdata.example.org%2Fcatalog%2Fdataset%2Frain"],
  [SWH, "swhid", `swhid/${SWH}`],
  [`https://archive.softwareheritage.org/${SWH}`, "swhid", `swhid/${SWH}`],
  ["https://mybinder.org/v2/zenodo/10.5281/zenodo.1", "zenodo", "zenodo/10.5281/zenodo.1"],
];

describe("records are recognised", () => {
  for (const [input, provider, spec] of RECORDS) {
    test(input, () => {
      const result = parseRepoInput(input);
      assert.ok(result.ok, `${input}: ${result.message}`);
      assert.equal(result.target.provider, provider);
      assert.equal(launchSpec(result.target), spec);
    });
  }
  test("a record's launch link and description carry no ref", () => {
    const t = parseRepoInput("10.5281/zenodo.3242074").target;
    assert.equal(launchUrl("https://binder.example/", t),
      "https://binder.example/v2/zenodo/10.5281/zenodo.3242074");
    assert.equal(describeTarget(t), "Zenodo: 10.5281/zenodo.3242074");
  });
  test("the thebe snippet says thebe cannot launch a record instead of a broken config", () => {
    const head = thebeHead("https://binder.example/", parseRepoInput("10.5281/zenodo.1").target);
    assert.ok(head.startsWith("<!--") && head.includes("git repositories only"));
    assert.ok(!head.includes("x-thebe-config"));
  });
  test("git repositories are still git", () => {
    assert.equal(parseRepoInput("https://github.com/o/r").target.provider, "gh");
    assert.equal(parseRepoInput("https://example.org/dataset/repo.git").target.provider, "git");
  });
  test("the configured Zenodo host is recognised", () => {
    const providers = [...DEFAULT_PROVIDERS.filter((p) => p.id !== "zenodo"),
      { id: "zenodo", display_name: "Zenodo", host: "http://127.0.0.1:9000/zenodo", kind: "record" }];
    const t = parseRepoInput("http://127.0.0.1:9000/records/77", providers).target;
    assert.equal(launchSpec(t), "zenodo/10.5281/zenodo.77");
  });
});

describe("bad records get a message", () => {
  const only = DEFAULT_PROVIDERS.filter((p) => ["gh", "git"].includes(p.id));
  for (const [input, phrase, providers] of [
    ["https://mybinder.org/v2/zenodo/10.5281/zenodo.1", "does not offer", only],
    ["10.5281/zenodo.1", "does not launch Zenodo", only],
    ["10.1000/xyz123", "cannot be told", only],
    ["swh:1:cnt:" + "a".repeat(40), "swh:1:dir", DEFAULT_PROVIDERS],
    ["https://www.hydroshare.org/resource/nothex/", "no resource id", DEFAULT_PROVIDERS],
  ]) {
    test(input, () => {
      const result = parseRepoInput(input, providers);
      assert.equal(result.ok, false, JSON.stringify(result));
      assert.ok(result.message.includes(phrase), `"${result.message}" lacks "${phrase}"`);
    });
  }
});
