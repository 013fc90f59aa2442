// Recognise DOIs, SWHIDs and record pages (Zenodo, Figshare, HydroShare, Dataverse, CKAN,
// Software Heritage) in what people paste; repourl.js asks here first.
//
//   parseRecord(text, providers) -> a target {provider, repo, ref: null, record: true, ...}
//                                   or null (not a record: read it as a repository)
// `repo` is the spec BinderHub's providers take: a DOI (zenodo, figshare, dataverse), a
// HydroShare resource id, a CKAN dataset URL, a SWHID. Pure functions, no DOM.

export const RECORD_PROVIDERS = ["zenodo", "figshare", "hydroshare", "dataverse", "ckan", "swhid"];

const DOI = /^(?:doi:|https?:\/\/(?:dx\.)?doi\.org\/)?(10\.\d{4,9}\/[-._;()/:A-Za-z0-9]+)$/i;
const SWHID = /^(?:https?:\/\/archive\.softwareheritage\.org\/(?:browse\/)?)?(swh:1:(?:dir|rev):[0-9a-f]{40})(?:;.*)?\/?$/;
const HEX32 = /^[0-9a-f]{32}$/;

export class RecordError extends Error {}

const fail = (message) => {
  throw new RecordError(message);
};

export function recordTarget(provider, repo, notes = []) {
  return {
    provider, repo, ref: null, path: null, pathKind: null, urlpath: null, treeRest: null,
    treeKind: null, notes, record: true,
  };
}

const has = (providers, id) => providers.some((p) => p.id === id);
const hostOf = (providers, id, fallback) => {
  const host = providers.find((p) => p.id === id)?.host || fallback;
  try {
    return new URL(host).host.toLowerCase().replace(/^www\./, "");
  } catch {
    return null;
  }
};

/** Which provider a DOI belongs to, by its registrant prefix (and HydroShare's form). */
function fromDoi(doi, providers) {
  const hs = /^10\.4211\/hs\.([0-9a-f]{32})$/i.exec(doi);
  if (hs) return recordTarget("hydroshare", hs[1].toLowerCase());
  if (/^10\.5281\/zenodo\.\d+$/i.test(doi)) return recordTarget("zenodo", doi);
  if (/^10\.6084\/m9\.figshare\./i.test(doi)) return recordTarget("figshare", doi);
  if (has(providers, "dataverse")) return recordTarget("dataverse", doi);  // e.g. 10.7910/DVN/...
  fail(`Which service holds ${doi} cannot be told from the DOI; paste the record's page URL.`);
}

export function parseRecord(text, providers) {
  const input = text.trim();
  const swh = SWHID.exec(input);
  if (swh) return recordTarget("swhid", swh[1]);
  if (/^swh:/i.test(input)) fail("A Software Heritage id to launch is swh:1:dir:<sha1> or swh:1:rev:<sha1>.");
  const doi = DOI.exec(input);
  if (doi) return fromDoi(doi[1], providers);
  let url;
  try {
    url = new URL(/^https?:\/\//i.test(input) ? input : `https://${input}`);
  } catch {
    return null;
  }
  const host = url.host.toLowerCase().replace(/^www\./, "");
  const segments = url.pathname.split("/").filter(Boolean);
  if (host === hostOf(providers, "zenodo", "https://zenodo.org")
      && ["record", "records"].includes(segments[0]) && /^\d+$/.test(segments[1] || "")) {
    return recordTarget("zenodo", `10.5281/zenodo.${segments[1]}`);
  }
  if (host === hostOf(providers, "figshare", "https://figshare.com") && segments[0] === "articles") {
    const numbers = segments.filter((s) => /^\d+$/.test(s));
    if (!numbers.length) fail("That Figshare page names no article id.");
    const [id, version = "1"] = numbers;
    return recordTarget("figshare", `10.6084/m9.figshare.${id}.v${version}`);
  }
  if (host === hostOf(providers, "hydroshare", "https://www.hydroshare.org")
      && segments[0] === "resource") {
    if (!HEX32.test(segments[1] || "")) fail("That HydroShare page names no resource id.");
    return recordTarget("hydroshare", segments[1]);
  }
  const persistent = url.searchParams.get("persistentId");
  const dataverseHosts = providers.find((p) => p.id === "dataverse")?.hosts || [];
  if (persistent && (dataverseHosts.includes(url.host) || /^\/(dataset|file)\.xhtml$/.test(url.pathname))) {
    const d = DOI.exec(persistent);
    if (!d) fail(`${persistent} is not a DOI this host can launch.`);
    return recordTarget("dataverse", d[1]);
  }
  if (has(providers, "ckan") && segments[0] !== "v2" && segments.includes("dataset")
      && !url.pathname.endsWith(".git")) {
    const at = segments.indexOf("dataset");
    if (segments[at + 1]) {
      return recordTarget("ckan", `${url.origin}/${segments.slice(0, at + 2).join("/")}`);
    }
  }
  return null;
}

/** "<prefix>/<spec>" of a record (no ref: the identifier names a version). */
export function recordSpec(t) {
  const spec = t.provider === "ckan" ? encodeURIComponent(t.repo) : t.repo;
  return `${t.provider}/${spec}`;
}
