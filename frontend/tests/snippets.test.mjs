// Launch URLs, badges, thebe snippets, the event-stream parser, favicons, the loading page's
// helpers, and the example course page. Run: node --test frontend/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { faviconSvg, faviconUrl } from "../static/favicon.js";
import { hostBase } from "../static/form.js";
import { progressFor, sessionUrl, STEPS } from "../static/launch.js";
import { parseRepoInput, withOverrides } from "../static/repourl.js";
import {
  badgeHtml, badgeMarkdown, badgeRst, launchUrl, thebeCells, thebeConfig, thebeHead,
} from "../static/snippets.js";
import { SseParser } from "../static/sse.js";

const BASE = "https://binder.example.org/";
const target = (text, overrides) => {
  const parsed = parseRepoInput(text);
  assert.ok(parsed.ok, parsed.message);
  return overrides ? withOverrides(parsed.target, overrides).target : parsed.target;
};

describe("a registered course's links", () => {
  test("the launch link, the badge's link and thebe's binderUrl carry the course key", () => {
    const t = target("https://github.com/physics/lab-notebooks/tree/main");
    const link = launchUrl(BASE, t, { course: "k3y_-abcdefghijklmnop" });
    assert.equal(link,
      "https://binder.example.org/v2/gh/physics/lab-notebooks/main?course=k3y_-abcdefghijklmnop");
    assert.match(badgeMarkdown(BASE, link), /\?course=k3y_-abcdefghijklmnop\)$/);
    assert.equal(thebeConfig(BASE, t, { course: "k3y_-abcdefghijklmnop" }).binderOptions.binderUrl,
      "https://binder.example.org/course/k3y_-abcdefghijklmnop");
    assert.match(thebeHead(BASE, t, { course: "abc" }), /"binderUrl": "https:\/\/binder.example.org\/course\/abc"/);
    // without a course nothing changes
    assert.equal(thebeConfig(BASE, t).binderOptions.binderUrl, "https://binder.example.org");
  });
});

describe("launch URLs", () => {
  test("a notebook opens with labpath, slashes kept readable", () => {
    assert.equal(launchUrl(BASE, target("https://github.com/o/r/blob/main/nb/intro.ipynb")),
      "https://binder.example.org/v2/gh/o/r/main?labpath=nb/intro.ipynb");
  });
  test("a folder opens in the full lab", () => {
    assert.equal(launchUrl(BASE, target("https://github.com/o/r/tree/main/docs")),
      "https://binder.example.org/v2/gh/o/r/main?urlpath=lab/tree/docs");
  });
  test("urlpath wins; gpu is passed on; odd characters are encoded", () => {
    const t = target("o/r", { ref: "dev", path: "a b&c.ipynb", urlpath: "" });
    assert.equal(launchUrl(BASE, t, { gpu: 1 }),
      "https://binder.example.org/v2/gh/o/r/dev?labpath=a%20b%26c.ipynb&gpu=1");
    const u = target("o/r", { urlpath: "voila/render/x.ipynb" });
    assert.equal(launchUrl(BASE, u), "https://binder.example.org/v2/gh/o/r/HEAD?urlpath=voila/render/x.ipynb");
  });
  test("GitLab and git specs are escaped", () => {
    assert.equal(launchUrl(BASE, target("https://gitlab.com/g/s/p/-/tree/main")),
      "https://binder.example.org/v2/gl/g%2Fs%2Fp/main");
    assert.equal(launchUrl(BASE, target("https://example.org/r.git")),
      "https://binder.example.org/v2/git/https%3A%2F%2Fexample.org%2Fr.git/HEAD");
  });
});

describe("badges", () => {
  const launch = "https://binder.example.org/v2/gh/o/r/HEAD";
  test("Markdown, reStructuredText and HTML", () => {
    assert.equal(badgeMarkdown(BASE, launch),
      "[![Launch in binderlab](https://binder.example.org/badge_logo.svg)](" + launch + ")");
    assert.equal(badgeMarkdown(BASE, launch, { logo: false }),
      "[![Launch in binderlab](https://binder.example.org/badge.svg)](" + launch + ")");
    assert.equal(badgeRst(BASE, launch), ".. image:: https://binder.example.org/badge_logo.svg\n" +
      "   :target: " + launch + "\n   :alt: Launch in binderlab");
    assert.equal(badgeHtml(BASE, launch + "?labpath=a&b"),
      `<a href="${launch}?labpath=a&amp;b"><img src="https://binder.example.org/badge_logo.svg" ` +
      `alt="Launch in binderlab"></a>`);
  });
});

describe("thebe snippets", () => {
  test("each provider maps to thebe's repoProvider names (PROTOCOL.md)", () => {
    const cases = [
      ["o/r", { repo: "o/r", ref: "HEAD", repoProvider: "github" }],
      ["https://gitlab.com/g/s/p/-/tree/v2", { repo: "g/s/p", ref: "v2", repoProvider: "gitlab" }],
      ["https://example.org/r.git", { repo: "https://example.org/r.git", ref: "HEAD", repoProvider: "git" }],
      ["https://gist.github.com/me/abc123", { repo: "me/abc123", ref: "HEAD", repoProvider: "gist" }],
    ];
    for (const [text, expected] of cases) {
      assert.deepEqual(thebeConfig(BASE, target(text)), {
        requestKernel: true,
        binderOptions: { binderUrl: "https://binder.example.org", ...expected },
        kernelOptions: { kernelName: "python3" },
      });
    }
  });
  test("the head snippet loads thebe from this host; JSON cannot close its script", () => {
    const odd = { ...target("https://example.org/r.git"), repo: "https://example.org/</script><b>.git" };
    const head = thebeHead(BASE, odd);
    assert.ok(head.startsWith('<script type="text/x-thebe-config">'));
    assert.ok(head.includes('<script src="https://binder.example.org/static/vendor/thebe/index.js"></script>'));
    assert.ok(head.includes('href="https://binder.example.org/static/vendor/thebe/thebe.css"'));
    assert.equal(head.match(/<\/script>/g).length, 2);  // the config's own and the loader's
    const json = head.split("\n").slice(1, -3).join("\n");
    assert.equal(JSON.parse(json).binderOptions.repo, "https://example.org/</script><b>.git");
  });
  test("cells: activate button, status, an executable cell", () => {
    const cells = thebeCells(target("o/course"));
    assert.match(cells, /<div class="thebe-activate"><\/div>/);
    assert.match(cells, /<pre data-executable="true" data-language="python">print\("Hello from course"\)<\/pre>/);
  });
  test("the example course page carries exactly the generated snippet and badge", () => {
    const page = readFileSync(new URL("../examples/course-page.html", import.meta.url), "utf8");
    const block = (name) => {
      const m = new RegExp(`<!-- binderlab:${name} -->\\n([\\s\\S]*?)\\n\\s*<!-- /binderlab:${name} -->`).exec(page);
      assert.ok(m, `no binderlab:${name} block in course-page.html`);
      return m[1].split("\n").map((line) => line.trim()).join("\n");
    };
    const base = "http://127.0.0.1:8585/";
    const t = target("https://github.com/binder-examples/requirements");
    const flat = (text) => text.split("\n").map((line) => line.trim()).join("\n");
    assert.equal(block("thebe-head"), flat(thebeHead(base, t)));
    assert.equal(block("badge"), badgeHtml(base, launchUrl(base, t)));
    assert.equal((page.match(/data-executable="true"/g) || []).length, 4);
  });
});

describe("event-stream parser", () => {
  test("events split across chunks, comments, CRLF", () => {
    const p = new SseParser();
    assert.deepEqual(p.push(':keepalive\n\ndata: {"phase": "fetch'), []);
    assert.deepEqual(p.push('ing"}\n'), []);
    assert.deepEqual(p.push("\n"), ['{"phase": "fetching"}']);
    assert.deepEqual(p.push('data: {"a": 1}\r\n\r\ndata:{"b": 2}\r'), ['{"a": 1}']);
    assert.deepEqual(p.push("\n\r\n"), ['{"b": 2}']);
    assert.deepEqual(p.push("data: x\ndata: y\n\n"), ["x\ny"]);
    assert.deepEqual(p.push("data: z\r"), []);
    assert.deepEqual(p.push("\r"), []);  // "\r" then "\r": the line ended, the event too...
    assert.deepEqual(p.push("\n"), ["z"]);  // ...once the second "\r" is known not to be "\r\n"
  });
});

describe("the loading page's helpers", () => {
  const ready = { url: "http://127.0.0.1:8000/user/u1/", token: "t0k" };
  test("sessionUrl honours urlpath, labpath, filepath and refuses other hosts", () => {
    const at = (query) => sessionUrl(ready, new URLSearchParams(query));
    assert.equal(at(""), "http://127.0.0.1:8000/user/u1/?token=t0k");
    assert.equal(at("labpath=a/b.ipynb"), "http://127.0.0.1:8000/user/u1/doc/tree/a/b.ipynb?token=t0k");
    assert.equal(at("filepath=x.py"), "http://127.0.0.1:8000/user/u1/tree/x.py?token=t0k");
    assert.equal(at("urlpath=lab/tree/x.ipynb"), "http://127.0.0.1:8000/user/u1/lab/tree/x.ipynb?token=t0k");
    for (const bad of ["urlpath=//evil.example/x", "urlpath=https://evil.example/", "urlpath=../../../x"]) {
      assert.ok(at(bad).startsWith("http://127.0.0.1:8000/user/u1/"), at(bad));
    }
  });
  test("progress only moves forward through the steps", () => {
    const order = ["starting", "fetching", "building", "built", "launching", "ready"];
    const values = order.map((phase) => progressFor(phase, 0));
    assert.deepEqual([...values].sort((a, b) => a - b), values);
    assert.ok(progressFor("building", 10_000) < progressFor("built"));
    assert.ok(progressFor("building", 100) > progressFor("building", 0));
    assert.equal(progressFor("ready"), 1);
    assert.deepEqual(STEPS, ["fetching", "building", "launching", "ready"]);
  });
  test("favicons for each state are SVG data URLs", () => {
    for (const state of ["working", "waiting", "ready", "failed"]) {
      assert.match(faviconSvg(state, 0.5), /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      assert.ok(faviconUrl(state, 0.5).startsWith("data:image/svg+xml,"));
    }
    assert.notEqual(faviconSvg("working", 0.1), faviconSvg("working", 0.9));
  });
  test("the form's host: public URL, or the page's origin for a wildcard address", () => {
    const location = { origin: "http://lab.example.org:8585" };
    assert.equal(hostBase({ publicUrl: "https://b.example.org/binder", baseUrl: "/binder/" }, location),
      "https://b.example.org/binder/");
    assert.equal(hostBase({ publicUrl: "http://0.0.0.0:8585/", baseUrl: "/" }, location),
      "http://lab.example.org:8585/");
  });
});
