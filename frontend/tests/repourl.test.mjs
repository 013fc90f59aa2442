// The form's URL parser on what people actually paste. Run: node --test frontend/tests/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  DEFAULT_PROVIDERS, describeTarget, encodeRef, launchSpec, parseRepoInput, refProblem,
  withOverrides,
} from "../static/repourl.js";

const REF_CASES = JSON.parse(readFileSync(
  new URL("../../tests/git_ref_cases.json", import.meta.url), "utf8"));

const ok = (input, providers = DEFAULT_PROVIDERS) => {
  const result = parseRepoInput(input, providers);
  assert.ok(result.ok, `${input}: ${result.message}`);
  return result.target;
};
const pick = ({ provider, repo, ref, path, pathKind, urlpath }) =>
  ({ provider, repo, ref, path, pathKind, urlpath });

// [pasted text, expected {provider, repo, ref, path, pathKind, urlpath}, expected spec]
const SHAPES = [
  // GitHub
  ["https://github.com/jupyter/notebook", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["https://github.com/jupyter/notebook/", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["https://github.com/jupyter/notebook.git", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["http://github.com/jupyter/notebook", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["https://www.github.com/jupyter/notebook", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["github.com/jupyter/notebook", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["  https://github.com/jupyter/notebook  ", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["<https://github.com/jupyter/notebook>", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["jupyter/notebook", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["my-org/my.repo_2", ["gh", "my-org/my.repo_2"], "gh/my-org/my.repo_2/HEAD"],
  ["git@github.com:jupyter/notebook.git", ["gh", "jupyter/notebook"], "gh/jupyter/notebook/HEAD"],
  ["https://github.com/jupyter/notebook/tree/main", ["gh", "jupyter/notebook", "main"],
    "gh/jupyter/notebook/main"],
  ["https://github.com/o/r/tree/main/docs/source/examples",
    ["gh", "o/r", "main", "docs/source/examples", "dir"], "gh/o/r/main"],
  ["https://github.com/o/r/tree/v2.1.0/notebooks/intro.ipynb",
    ["gh", "o/r", "v2.1.0", "notebooks/intro.ipynb", "file"], "gh/o/r/v2.1.0"],
  ["https://github.com/o/r/blob/main/notebooks/intro.ipynb",
    ["gh", "o/r", "main", "notebooks/intro.ipynb", "file"], "gh/o/r/main"],
  ["https://github.com/o/r/blob/main/notebooks/My%20Notebook.ipynb?plain=1#L10",
    ["gh", "o/r", "main", "notebooks/My Notebook.ipynb", "file"], "gh/o/r/main"],
  ["https://github.com/o/r/blob/main/README.md", ["gh", "o/r", "main", "README.md", "file"],
    "gh/o/r/main"],
  ["https://github.com/o/r/raw/main/data/x.csv", ["gh", "o/r", "main", "data/x.csv", "file"],
    "gh/o/r/main"],
  ["https://github.com/o/r/commit/0123456789abcdef0123456789abcdef01234567",
    ["gh", "o/r", "0123456789abcdef0123456789abcdef01234567"],
    "gh/o/r/0123456789abcdef0123456789abcdef01234567"],
  ["https://github.com/o/r/releases/tag/v1.0", ["gh", "o/r", "v1.0"], "gh/o/r/v1.0"],
  ["https://github.com/o/r/issues/12", ["gh", "o/r"], "gh/o/r/HEAD"],
  ["https://raw.githubusercontent.com/o/r/main/nb/intro.ipynb",
    ["gh", "o/r", "main", "nb/intro.ipynb", "file"], "gh/o/r/main"],
  ["https://raw.githubusercontent.com/o/r/refs/heads/main/intro.ipynb",
    ["gh", "o/r", "main", "intro.ipynb", "file"], "gh/o/r/main"],
  ["https://nbviewer.org/github/o/r/blob/main/intro.ipynb",
    ["gh", "o/r", "main", "intro.ipynb", "file"], "gh/o/r/main"],
  ["https://colab.research.google.com/github/o/r/blob/master/intro.ipynb",
    ["gh", "o/r", "master", "intro.ipynb", "file"], "gh/o/r/master"],
  // GitLab, nested groups, /-/ routes
  ["https://gitlab.com/gitlab-org/gitlab-foss", ["gl", "gitlab-org/gitlab-foss"],
    "gl/gitlab-org%2Fgitlab-foss/HEAD"],
  ["https://gitlab.com/group/subgroup/deeper/project", ["gl", "group/subgroup/deeper/project"],
    "gl/group%2Fsubgroup%2Fdeeper%2Fproject/HEAD"],
  ["https://gitlab.com/group/subgroup/project.git", ["gl", "group/subgroup/project"],
    "gl/group%2Fsubgroup%2Fproject/HEAD"],
  ["https://gitlab.com/group/sub/project/-/tree/main", ["gl", "group/sub/project", "main"],
    "gl/group%2Fsub%2Fproject/main"],
  ["https://gitlab.com/group/sub/project/-/tree/main/notebooks?ref_type=heads",
    ["gl", "group/sub/project", "main", "notebooks", "dir"], "gl/group%2Fsub%2Fproject/main"],
  ["https://gitlab.com/group/sub/project/-/blob/develop/nb/intro.ipynb",
    ["gl", "group/sub/project", "develop", "nb/intro.ipynb", "file"],
    "gl/group%2Fsub%2Fproject/develop"],
  ["https://gitlab.com/group/project/-/commit/0123abc", ["gl", "group/project", "0123abc"],
    "gl/group%2Fproject/0123abc"],
  ["https://gitlab.com/group/project/-/tags/v3", ["gl", "group/project", "v3"],
    "gl/group%2Fproject/v3"],
  ["git@gitlab.com:group/sub/project.git", ["gl", "group/sub/project"],
    "gl/group%2Fsub%2Fproject/HEAD"],
  // any https git URL
  ["https://example.org/path/to/repo.git", ["git", "https://example.org/path/to/repo.git"],
    "git/https%3A%2F%2Fexample.org%2Fpath%2Fto%2Frepo.git/HEAD"],
  ["https://git.example.org:8443/course/labs.git/",
    ["git", "https://git.example.org:8443/course/labs.git"],
    "git/https%3A%2F%2Fgit.example.org%3A8443%2Fcourse%2Flabs.git/HEAD"],
  ["https://bitbucket.org/team/repo", ["git", "https://bitbucket.org/team/repo"],
    "git/https%3A%2F%2Fbitbucket.org%2Fteam%2Frepo/HEAD"],
  ["https://codeberg.org/owner/repo/src/branch/main/nb/intro.ipynb",
    ["git", "https://codeberg.org/owner/repo", "main", "nb/intro.ipynb", "file"],
    "git/https%3A%2F%2Fcodeberg.org%2Fowner%2Frepo/main"],
  ["https://gitlab.example.edu/physics/intro/-/blob/main/week1.ipynb",
    ["git", "https://gitlab.example.edu/physics/intro.git", "main", "week1.ipynb", "file"],
    "git/https%3A%2F%2Fgitlab.example.edu%2Fphysics%2Fintro.git/main"],
  // gists
  ["https://gist.github.com/someone/8a2f0e1c9b7d", ["gist", "someone/8a2f0e1c9b7d"],
    "gist/someone/8a2f0e1c9b7d/HEAD"],
  ["https://gist.github.com/someone/8a2f0e1c9b7d/4b1d2c3e", ["gist", "someone/8a2f0e1c9b7d",
    "4b1d2c3e"], "gist/someone/8a2f0e1c9b7d/4b1d2c3e"],
  ["https://gist.github.com/someone/8a2f0e1c9b7d.git", ["gist", "someone/8a2f0e1c9b7d"],
    "gist/someone/8a2f0e1c9b7d/HEAD"],
  // binder links from any BinderHub-compatible host
  ["https://mybinder.org/v2/gh/o/r/main?labpath=notebooks%2Fintro.ipynb",
    ["gh", "o/r", "main", "notebooks/intro.ipynb", "file"], "gh/o/r/main"],
  ["https://mybinder.org/v2/gh/o/r/HEAD?urlpath=lab/tree/x.ipynb",
    ["gh", "o/r", null, null, null, "lab/tree/x.ipynb"], "gh/o/r/HEAD"],
  ["https://mybinder.org/v2/gl/group%2Fproject/main", ["gl", "group/project", "main"],
    "gl/group%2Fproject/main"],
  ["https://binder.example.org/hub/v2/git/https%3A%2F%2Fexample.org%2Fr.git/feature/x",
    ["git", "https://example.org/r.git", "feature/x"],
    "git/https%3A%2F%2Fexample.org%2Fr.git/feature/x"],
  ["https://mybinder.org/v2/gist/someone/8a2f0e1c9b7d/HEAD", ["gist", "someone/8a2f0e1c9b7d"],
    "gist/someone/8a2f0e1c9b7d/HEAD"],
];

describe("real-world URL shapes", () => {
  for (const [input, [provider, repo, ref = null, path = null, pathKind = null, urlpath = null],
    spec] of SHAPES) {
    test(input.trim(), () => {
      const t = ok(input);
      assert.deepEqual(pick(t), { provider, repo, ref, path, pathKind, urlpath });
      assert.equal(launchSpec(t), spec);
    });
  }
});

// [pasted text, a phrase the message must contain]
const BAD = [
  ["", "Paste a repository URL"],
  ["   ", "Paste a repository URL"],
  ["hello", "is not a repository"],
  ["not a url at all", "no spaces"],
  ["https://github.com/", "Add the repository"],
  ["https://github.com/jupyter", "user or organisation"],
  ["https://github.com/o/r/pull/12", "pull request"],
  ["https://github.com/o/r/tree/", "no branch"],
  ["https://github.com/o/r/tree/-bad/x.ipynb", "starts with \"-\""],
  ["https://github.com/o/r/tree/a..b", "not a valid branch"],
  ["https://mybinder.org/v2/gh/o/r/main?labpath=../../etc/passwd", "\"..\" is not allowed"],
  ["https://gitlab.com/justagroup", "Add the project"],
  ["https://gitlab.com/g/p/-/merge_requests/3", "merge request"],
  ["https://gist.github.com/8a2f0e1c9b7d", "owner"],
  ["ssh://git@example.org/repo.git", "https URL"],
  ["git://example.org/repo.git", "https URL"],
  ["git@example.org:team/repo.git", "SSH URLs"],
  ["ftp://example.org/repo", "cannot be launched"],
  ["file:///home/me/repo", "cannot be launched"],
  ["javascript:alert(1)", "cannot be launched"],
  ["https://user:secret@example.org/repo.git", "password"],
  ["https://example.org/", "is a host, not a repository"],
  ["https://github.com/o/r/blob/main/%E0%A4%A.ipynb", "stray \"%\""],
];

describe("bad input gives a message, never an exception", () => {
  for (const [input, phrase] of BAD) {
    test(JSON.stringify(input), () => {
      const result = parseRepoInput(input);
      assert.equal(result.ok, false, JSON.stringify(result));
      assert.equal(typeof result.message, "string");
      assert.ok(result.message.includes(phrase), `"${result.message}" lacks "${phrase}"`);
    });
  }
  test("non-strings", () => {
    for (const value of [null, undefined, 42, {}, []]) {
      assert.equal(parseRepoInput(value).ok, false);
    }
  });
});

describe("the host's configured providers decide", () => {
  const local = [
    { id: "gh", display_name: "GitHub", host: "http://127.0.0.1:8123" },
    { id: "git", display_name: "Git repository" },
  ];
  test("a URL of the configured gh host is gh", () => {
    const t = ok("http://127.0.0.1:8123/test/dockerfile-1a2b/blob/main/hello.ipynb", local);
    assert.deepEqual(pick(t), { provider: "gh", repo: "test/dockerfile-1a2b", ref: "main",
      path: "hello.ipynb", pathKind: "file", urlpath: null });
  });
  test("github.com is then a plain git URL, not the configured host's repo", () => {
    const t = ok("https://github.com/o/r", local);
    assert.equal(t.provider, "git");
    assert.equal(t.repo, "https://github.com/o/r");
  });
  test("github.com/.../tree/<ref>/<path> still gives ref and path", () => {
    const t = ok("https://github.com/o/r/tree/dev/nb.ipynb", local);
    assert.deepEqual(pick(t), { provider: "git", repo: "https://github.com/o/r", ref: "dev",
      path: "nb.ipynb", pathKind: "file", urlpath: null });
  });
  test("owner/repo goes to the configured gh host", () => {
    assert.equal(ok("test/repo", local).provider, "gh");
  });
  test("a GitHub Enterprise host", () => {
    const ghe = [{ id: "gh", display_name: "GitHub", host: "https://github.example.edu/" }];
    const t = ok("https://github.example.edu/course/labs/tree/main/week1", ghe);
    assert.deepEqual(pick(t), { provider: "gh", repo: "course/labs", ref: "main",
      path: "week1", pathKind: "dir", urlpath: null });
  });
  test("without the git provider, unknown hosts get a message naming the known ones", () => {
    const result = parseRepoInput("https://example.org/r.git", [DEFAULT_PROVIDERS[0]]);
    assert.equal(result.ok, false);
    assert.match(result.message, /github\.com/);
  });
  test("a disabled provider's binder link gets a message", () => {
    const result = parseRepoInput("https://mybinder.org/v2/gl/g%2Fp/main", [DEFAULT_PROVIDERS[0]]);
    assert.equal(result.ok, false);
    assert.match(result.message, /does not offer/);
  });
});

describe("the form's optional fields", () => {
  test("an explicit ref re-splits tree/<branch with slashes>/<path>", () => {
    const t = ok("https://github.com/o/r/tree/feature/new-plots/nb/intro.ipynb");
    assert.equal(t.ref, "feature");  // the first segment, until told otherwise
    const { target } = withOverrides(t, { ref: "feature/new-plots" });
    assert.equal(target.ref, "feature/new-plots");
    assert.equal(target.path, "nb/intro.ipynb");
    assert.equal(launchSpec(target), "gh/o/r/feature/new-plots");
  });
  test("an unrelated ref keeps the path", () => {
    const t = ok("https://github.com/o/r/blob/main/intro.ipynb");
    const { target } = withOverrides(t, { ref: "v1.0" });
    assert.deepEqual([target.ref, target.path], ["v1.0", "intro.ipynb"]);
  });
  test("file and URL path fields", () => {
    const t = ok("o/r");
    assert.equal(withOverrides(t, { path: "/a/b.ipynb" }).target.path, "a/b.ipynb");
    assert.equal(withOverrides(t, { urlpath: "/lab/tree/a" }).target.urlpath, "lab/tree/a");
  });
  test("bad overrides give messages", () => {
    const t = ok("o/r");
    assert.match(withOverrides(t, { ref: "--upload-pack=x" }).message, /starts with "-"/);
    assert.match(withOverrides(t, { path: "../x" }).message, /not allowed/);
    assert.match(withOverrides(t, { urlpath: "https://evil.example/" }).message, /path on the session/);
  });
  test("refs are encoded like the service's specs", () => {
    assert.equal(encodeRef("feature/x y#1"), "feature/x%20y%231");
    // the table the service's tests run too (tests/test_git_ref_cases.py)
    for (const ref of REF_CASES.valid) assert.equal(refProblem(ref), null, JSON.stringify(ref));
    for (const { ref, why } of REF_CASES.invalid) {
      assert.ok(refProblem(ref), `${JSON.stringify(ref)} (${why}) must be refused`);
    }
  });
  test("what the form says it understood", () => {
    const t = ok("https://github.com/o/r/blob/main/intro.ipynb");
    assert.equal(describeTarget(t), "GitHub: o/r · ref main · opens intro.ipynb");
    assert.equal(describeTarget(ok("https://gitlab.com/g/p/-/tree/main/docs")),
      "GitLab: g/p · ref main · opens folder docs/");
    assert.equal(describeTarget(ok("o/r")), "GitHub: o/r · default branch");
  });
});
