// Turn what people paste (a repository, branch, file or binder link) into a launch target.
//
// Pure functions, no DOM: the form uses them, and frontend/tests/ runs them under `node --test`.
//
//   parseRepoInput(text, providers) -> {ok: true, target} | {ok: false, message}
//   withOverrides(target, {ref, path, urlpath})  -> the target with the form's optional fields
//   launchSpec(target) -> "<prefix>/<spec>" as /v2/ and /build/ take it
//
// A target: {provider, repo, ref, path, pathKind, urlpath, treeRest, notes}
//   provider  "gh" | "gl" | "git" | "gist"
//   repo      gh "owner/name", gl "namespace/project", git the clone URL, gist "owner/id"
//   ref       a branch, tag or commit, or null (the default branch: HEAD)
//   path      a file (pathKind "file") or folder (pathKind "dir") to open, or null
//   urlpath   a Jupyter URL path to open (from a pasted binder link), or null
//   treeRest  for .../tree/<rest> URLs, the decoded <rest>: which part is the branch is
//             ambiguous when branch names hold "/", so an explicit ref re-splits it
//
// `providers` is what /api/repoproviders answers: [{id, display_name, host?}]. URLs are
// recognised by the configured hosts, so a GitHub Enterprise (or a test server) works too.

import {
  RECORD_PROVIDERS, RecordError, parseRecord, recordSpec, recordTarget,
} from "./records.js";

export const DEFAULT_PROVIDERS = [
  { id: "gh", display_name: "GitHub", host: "https://github.com" },
  { id: "gl", display_name: "GitLab", host: "https://gitlab.com" },
  { id: "git", display_name: "Git repository" },
  { id: "gist", display_name: "Gist", host: "https://gist.github.com" },
  { id: "zenodo", display_name: "Zenodo", host: "https://zenodo.org", kind: "record" },
  { id: "figshare", display_name: "Figshare", host: "https://figshare.com", kind: "record" },
  { id: "hydroshare", display_name: "HydroShare", host: "https://www.hydroshare.org", kind: "record" },
  { id: "dataverse", display_name: "Dataverse", kind: "record" },
  { id: "ckan", display_name: "CKAN", kind: "record" },
  { id: "swhid", display_name: "Software Heritage", kind: "record" },
];

const NAME = /^[A-Za-z0-9_.-]+$/;
const HEX = /^[0-9a-f]+$/i;
// BinderHub's provider prefixes: a pasted binder link names one of them after /v2/
const BINDER_PREFIXES = "gh|gl|git|gist|zenodo|figshare|dataverse|hydroshare|ckan|swhid";
const EXAMPLES = "e.g. https://github.com/owner/repo, a GitLab project URL, " +
  "https://example.org/repo.git or owner/repo";

class InputError extends Error {}

const fail = (message) => {
  throw new InputError(message);
};

/** The ref rules of `git check-ref-format`, as the service applies them (gitcmd.check_ref);
 * both are tested against one table of cases, tests/git_ref_cases.json. */
export function refProblem(ref) {
  if (!ref) return "The ref is empty.";
  if (ref.startsWith("-")) return `"${ref}" cannot be a ref: it starts with "-".`;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref) || ref.includes("..") || ref.includes("@{")
      || ref === "@" || /[./]$/.test(ref)
      || ref.split("/").some((part) => part === "" || part.startsWith(".")
                             || part.endsWith(".lock"))) {
    return `"${ref}" is not a valid branch, tag or commit name.`;
  }
  return null;
}

function checkedRef(ref) {
  const problem = refProblem(ref);
  if (problem) fail(problem);
  return ref;
}

function checkedPath(path) {
  const clean = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (clean.split("/").some((part) => part === "..")) fail(`"${path}": ".." is not allowed.`);
  return clean || null;
}

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    fail(`"${segment}" is not a valid URL part (a stray "%").`);
  }
}

const hasExtension = (path) => /\.[A-Za-z0-9]+$/.test(path.split("/").pop());

/** A host for comparing: its name without "www." and its port unless the scheme's default
 * (so http:// and https:// URLs of one host match; a test server's port does count). */
function hostKey(url) {
  return `${url.hostname.toLowerCase().replace(/^www\./, "")}:${url.port}`;
}

function providerHosts(providers) {
  const hosts = new Map();
  for (const provider of providers) {
    if (!provider.host || provider.kind === "record") continue;
    try {
      hosts.set(hostKey(new URL(provider.host)), provider);
    } catch {
      // a host the form cannot read is simply not recognised
    }
  }
  return hosts;
}

/** Which ref and path `.../tree/<rest>`-style URLs name; the first segment is the ref. */
function refAndPath(rest, kind) {
  if (!rest.length) fail("The URL names no branch after /tree/ or /blob/.");
  const ref = checkedRef(rest[0]);
  const path = checkedPath(rest.slice(1).join("/"));
  const pathKind = path ? (kind === "tree" && !hasExtension(path) ? "dir" : "file") : null;
  return { ref, path, pathKind, treeRest: rest.join("/"), treeKind: kind };
}

function target(provider, repo, extra = {}) {
  return {
    provider, repo, ref: null, path: null, pathKind: null, urlpath: null, treeRest: null,
    treeKind: null, notes: [], ...extra,
  };
}

// ---- one parser per provider -------------------------------------------------------------

/** github.com/<owner>/<repo>[/tree|blob|raw/<ref>/<path> | /commit/<sha> | ...] */
function parseGitHubPath(segments) {
  if (segments.length === 0) fail("Add the repository: <host>/<owner>/<repo>.");
  const [owner, rawName, kind, ...rest] = segments.map(decode);
  if (rawName === undefined) {
    fail(`"${owner}" is a GitHub user or organisation, not a repository: ` +
      "add the repository's name (<owner>/<repo>).");
  }
  const name = rawName.replace(/\.git$/, "");
  if (!NAME.test(owner) || !NAME.test(name) || [owner, name].some((n) => /^\.+$/.test(n))) {
    fail(`"${owner}/${rawName}" is not a GitHub repository name.`);
  }
  const repo = `${owner}/${name}`;
  if (kind === undefined) return target("gh", repo);
  if (kind === "tree" || kind === "blob" || kind === "raw") {
    return target("gh", repo, refAndPath(rest, kind === "tree" ? "tree" : "blob"));
  }
  if ((kind === "commit" || kind === "commits") && rest[0]) {
    return target("gh", repo, { ref: checkedRef(rest.join("/")) });
  }
  if (kind === "releases" && rest[0] === "tag" && rest[1]) {
    return target("gh", repo, { ref: checkedRef(rest.slice(1).join("/")) });
  }
  if (kind === "pull" || kind === "pulls") {
    fail("A pull request cannot be launched: launch the branch it comes from " +
      "(its .../tree/<branch> URL).");
  }
  const t = target("gh", repo);
  t.notes.push(`ignored "/${[kind, ...rest].join("/")}": launching the repository`);
  return t;
}

/** gitlab.com/<namespace>/.../<project>[/-/tree|blob|raw/<ref>/<path> | /-/commit/<sha>] */
function parseGitLabPath(segments) {
  const dash = segments.indexOf("-");
  const projectParts = (dash === -1 ? segments : segments.slice(0, dash)).map(decode);
  const [kind, ...rest] = dash === -1 ? [] : segments.slice(dash + 1).map(decode);
  if (projectParts.length) {
    projectParts[projectParts.length - 1] = projectParts.at(-1).replace(/\.git$/, "");
  }
  if (projectParts.length < 2) {
    fail("Add the project: a GitLab URL is <host>/<group>[/<subgroup>...]/<project>.");
  }
  if (!projectParts.every((p) => NAME.test(p) && !/^\.+$/.test(p))) {
    fail(`"${projectParts.join("/")}" is not a GitLab project path.`);
  }
  const repo = projectParts.join("/");
  if (kind === undefined) return target("gl", repo);
  if (kind === "tree" || kind === "blob" || kind === "raw") {
    return target("gl", repo, refAndPath(rest, kind === "tree" ? "tree" : "blob"));
  }
  if ((kind === "commit" || kind === "commits" || kind === "tags") && rest[0]) {
    return target("gl", repo, { ref: checkedRef(rest.join("/")) });
  }
  if (kind === "merge_requests") {
    fail("A merge request cannot be launched: launch its source branch " +
      "(its .../-/tree/<branch> URL).");
  }
  const t = target("gl", repo);
  t.notes.push(`ignored "/-/${[kind, ...rest].join("/")}": launching the project`);
  return t;
}

/** gist.github.com/<owner>/<id>[/<revision>] */
function parseGistPath(segments) {
  const parts = segments.map(decode);
  if (parts.length === 1 && HEX.test(parts[0].replace(/\.git$/, ""))) {
    fail("Add the gist's owner: gist.github.com/<owner>/<gist id>.");
  }
  if (parts.length < 2) fail("A gist URL is gist.github.com/<owner>/<gist id>.");
  const [owner, rawId, revision] = parts;
  const id = rawId.replace(/\.git$/, "");
  if (!NAME.test(owner) || !HEX.test(id)) fail(`"${owner}/${rawId}" is not a gist.`);
  const t = target("gist", `${owner}/${id}`);
  if (revision && HEX.test(revision)) t.ref = revision;
  return t;
}

/** A binder link from any BinderHub-compatible host: .../v2/<prefix>/<spec>?labpath=... */
function parseBinderLink(url, providers) {
  const match = new RegExp(`/v2/(${BINDER_PREFIXES})/(.+)$`).exec(url.pathname);
  if (!match) return null;
  const [, prefix, spec] = match;
  if (!providers.some((p) => p.id === prefix)) {
    fail(`That binder link uses the "${prefix}" provider, which this host does not offer.`);
  }
  if (RECORD_PROVIDERS.includes(prefix)) {
    // a record's spec is its identifier (a DOI keeps its "/"), never followed by a ref
    return recordTarget(prefix, decode(spec).replace(/\/+$/, ""));
  }
  const parts = spec.split("/");
  let t;
  if (prefix === "gh" || prefix === "gist") {
    if (parts.length < 2) fail("That binder link has no repository in it.");
    t = prefix === "gh" ? parseGitHubPath(parts.slice(0, 2)) : parseGistPath(parts.slice(0, 2));
    if (parts.length > 2 && parts.slice(2).join("/")) {
      t.ref = checkedRef(decode(parts.slice(2).join("/")));
    }
  } else {
    if (parts.length < 2 || !parts[1]) fail("That binder link has no ref after the repository.");
    const repo = decode(parts[0]);
    t = prefix === "gl"
      ? parseGitLabPath(repo.split("/").filter(Boolean))
      : parseGitUrl(repo, providers, { plain: true });
    t.ref = checkedRef(decode(parts.slice(1).join("/")));
  }
  if (t.ref === "HEAD") t.ref = null;
  const params = url.searchParams;
  if (params.get("urlpath")) t.urlpath = params.get("urlpath").replace(/^\/+/, "");
  const file = params.get("labpath") || params.get("filepath");
  if (file) Object.assign(t, { path: checkedPath(file), pathKind: "file" });
  return t;
}

/** Any other http(s) URL: a git clone URL, reading the usual web-page shapes of forges. */
function parseGitUrl(text, providers, { plain = false } = {}) {
  if (!providers.some((p) => p.id === "git")) {
    const offered = providers.filter((p) => p.host).map((p) => p.host).join(", ");
    fail(`This host launches repositories from ${offered || "no known host"} only.`);
  }
  let url;
  try {
    url = new URL(text);
  } catch {
    fail(`"${text}" is not a URL. Paste a repository URL, ${EXAMPLES}.`);
  }
  if (url.username || url.password) {
    fail("Remove the user name and password from the URL: only public repositories launch.");
  }
  const segments = url.pathname.split("/").filter(Boolean);
  if (!segments.length) fail(`${url.origin} is a host, not a repository: add the repository path.`);
  const base = (parts) => `${url.origin}/${parts.join("/")}`;
  if (!plain) {
    // GitLab (self-hosted): <project>/-/tree/<ref>/<path>; cloned as <project>.git
    const dash = segments.indexOf("-");
    if (dash > 0) {
      const t = parseGitLabPath(segments);
      return { ...t, provider: "git", repo: base(segments.slice(0, dash)).replace(/(\.git)?$/, ".git") };
    }
    // Gitea / Forgejo (Codeberg): <owner>/<repo>/src/branch|tag|commit/<ref>/<path>
    const src = segments.indexOf("src");
    if (src === 2 && ["branch", "tag", "commit"].includes(segments[3])) {
      return target("git", base(segments.slice(0, 2)),
        refAndPath(segments.slice(4).map(decode), "blob"));
    }
    // GitHub-like web pages on other hosts (GitHub Enterprise not configured here)
    if (segments.length > 3 && ["tree", "blob"].includes(segments[2])) {
      return target("git", base(segments.slice(0, 2)),
        refAndPath(segments.slice(3).map(decode), segments[2]));
    }
  }
  const clone = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  const t = target("git", clone);
  if (url.search || url.hash) t.notes.push("ignored the URL's query and fragment");
  return t;
}

// ---- the entry point ---------------------------------------------------------------------

function parse(text, providers) {
  let input = text.trim().replace(/^<(.*)>$/, "$1").replace(/^(["'])(.*)\1$/, "$2").trim();
  if (!input) fail(`Paste a repository URL, ${EXAMPLES}.`);
  if (/\s/.test(input)) fail("A repository URL has no spaces: paste one URL.");
  // a DOI, SWHID or record page (Zenodo, Figshare, ...) before anything git-shaped
  const rec = parseRecord(input, providers);
  if (rec) return rec;
  const byHost = providerHosts(providers);
  const enabled = (id) => providers.some((p) => p.id === id);

  // scp-like SSH: git@github.com:owner/repo.git -> the same repository over https
  const scp = /^[\w.-]+@([\w.-]+):(?!\/\/)(.+)$/.exec(input);
  if (scp) {
    const known = [...byHost.values()].find((p) => new URL(p.host).hostname === scp[1]);
    if (!known) fail("SSH URLs cannot be launched: paste the repository's https URL.");
    input = `${known.host.replace(/\/+$/, "")}/${scp[2]}`;
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(input);
  if (scheme && !/^https?$/i.test(scheme[1])) {
    if (/^(ssh|git)$/i.test(scheme[1]) || scheme[1].toLowerCase().startsWith("git+")) {
      fail(`${scheme[1]}:// URLs cannot be launched: paste the repository's https URL.`);
    }
    if (!/^[\w.-]+:\d+\//.test(input)) fail(`"${scheme[1]}:" URLs cannot be launched; use https.`);
  }
  if (!scheme || /^[\w.-]+:\d+\//.test(input)) {
    const first = input.split("/")[0];
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      input = `https://${input}`;  // github.com/o/r, gitlab.example.org/g/p
    } else {
      // owner/repo shorthand (and owner/repo/tree/...): the gh provider's host
      const gh = providers.find((p) => p.id === "gh");
      if (!gh) fail(`"${input}" is not a URL. Paste a repository URL, ${EXAMPLES}.`);
      const segments = input.split(/[?#]/)[0].split("/").filter(Boolean);
      if (segments.length < 2) {
        fail(`"${input}" is not a repository. Paste a repository URL, ${EXAMPLES}.`);
      }
      return parseGitHubPath(segments);
    }
  }
  let url;
  try {
    url = new URL(input);
  } catch {
    fail(`"${input}" is not a URL. Paste a repository URL, ${EXAMPLES}.`);
  }
  if (!url.hostname) fail(`"${input}" has no host name.`);
  if (url.username || url.password) {
    fail("Remove the user name and password from the URL: only public repositories launch.");
  }
  const segments = url.pathname.split("/").filter(Boolean);
  const provider = byHost.get(hostKey(url));
  if (provider && !(provider.id === "gh" && segments[0] === "v2")) {
    if (provider.id === "gh") return parseGitHubPath(segments);
    if (provider.id === "gl") return parseGitLabPath(segments);
    if (provider.id === "gist") return parseGistPath(segments);
  }
  const binder = parseBinderLink(url, providers);
  if (binder) return binder;

  // Pages that show a GitHub file: raw files, nbviewer, Colab (when gh is github.com)
  const gh = providers.find((p) => p.id === "gh" && p.host);
  const ghIsGitHub = gh && hostKey(new URL(gh.host)) === "github.com:";
  const host = url.hostname.toLowerCase();
  if (ghIsGitHub && host === "raw.githubusercontent.com" && segments.length >= 4) {
    const rest = segments.slice(2);
    const ref = rest[0] === "refs" && ["heads", "tags"].includes(rest[1]) ? rest.slice(2) : rest;
    return parseGitHubPath([...segments.slice(0, 2), "blob", ...ref]);
  }
  if (ghIsGitHub && /^(nbviewer\.org|nbviewer\.jupyter\.org|colab\.research\.google\.com)$/.test(host)
      && segments[0] === "github") {
    return parseGitHubPath(segments.slice(1));
  }
  if (enabled("gist") && host === "nbviewer.org" && segments[0] === "gist") {
    return parseGistPath(segments.slice(1));
  }
  return parseGitUrl(`${url.origin}${url.pathname}${url.search}${url.hash}`, providers);
}

/** What `text` names, or a message saying what is wrong with it. Never throws. */
export function parseRepoInput(text, providers = DEFAULT_PROVIDERS) {
  try {
    const t = parse(String(text ?? ""), providers);
    if (!providers.some((p) => p.id === t.provider)) {
      const name = DEFAULT_PROVIDERS.find((p) => p.id === t.provider)?.display_name;
      return { ok: false, message: `This host does not launch ${name || t.provider} repositories.` };
    }
    return { ok: true, target: t };
  } catch (error) {
    if (error instanceof InputError || error instanceof RecordError) {
      return { ok: false, message: error.message };
    }
    return { ok: false, message: `Could not read that URL (${error.message}).` };
  }
}

/**
 * The target with the form's optional fields applied; {ok, target} or {ok: false, message}.
 * An explicit ref that starts a .../tree/<rest> URL re-splits it: for
 * tree/feature/x/nb.ipynb and ref "feature/x" the file is nb.ipynb.
 */
export function withOverrides(t, { ref = "", path = "", urlpath = "" } = {}) {
  const out = { ...t, notes: [...t.notes] };
  ref = ref.trim();
  path = path.trim();
  urlpath = urlpath.trim();
  try {
    if (ref) {
      out.ref = checkedRef(ref);
      if (t.treeRest && (t.treeRest === ref || t.treeRest.startsWith(ref + "/"))) {
        out.path = checkedPath(t.treeRest.slice(ref.length));
        out.pathKind = out.path
          ? (t.treeKind === "tree" && !hasExtension(out.path) ? "dir" : "file") : null;
      }
    }
    if (path) Object.assign(out, { path: checkedPath(path), pathKind: "file" });
    if (urlpath) out.urlpath = urlpath.replace(/^\/+/, "");
    if (out.urlpath && /^[a-z][a-z0-9+.-]*:|^\/\//i.test(out.urlpath)) {
      fail("The URL path must be a path on the session, e.g. lab/tree/notebook.ipynb.");
    }
  } catch (error) {
    if (error instanceof InputError) return { ok: false, message: error.message };
    throw error;
  }
  return { ok: true, target: out };
}

/** A ref in a spec: percent-encoded, "/" kept (as the service's RepoSpec.with_ref does). */
export const encodeRef = (ref) => encodeURIComponent(ref).replace(/%2F/gi, "/");

/** "<prefix>/<spec>" for /v2/ and /build/. */
export function launchSpec(t) {
  if (t.record) return recordSpec(t);
  const ref = encodeRef(t.ref || "HEAD");
  if (t.provider === "gl" || t.provider === "git") {
    return `${t.provider}/${encodeURIComponent(t.repo)}/${ref}`;
  }
  return `${t.provider}/${t.repo}/${ref}`;
}

/** One line for people: what the form understood. */
export function describeTarget(t, providers = DEFAULT_PROVIDERS) {
  const name = providers.find((p) => p.id === t.provider)?.display_name
    || DEFAULT_PROVIDERS.find((p) => p.id === t.provider)?.display_name || t.provider;
  const parts = [`${name}: ${t.repo}`];
  if (!t.record) parts.push(t.ref ? `ref ${t.ref}` : "default branch");
  if (t.urlpath) parts.push(`opens /${t.urlpath}`);
  else if (t.path) parts.push(t.pathKind === "dir" ? `opens folder ${t.path}/` : `opens ${t.path}`);
  return parts.join(" · ");
}
