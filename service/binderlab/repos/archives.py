"""DOI and archive providers: Zenodo, Figshare, HydroShare, Dataverse, CKAN, Software Heritage.

Spec formats are BinderHub's (``zenodo/10.5281/zenodo.3242074``, ...; Software Heritage,
which no Binder exposes, takes a SWHID). The fetching is repo2docker's own content
providers, run in a worker process (archivefetch.py) through the same network guard and
size limits as git.

The fetched files are then imported as one commit into a bare mirror, exactly where
``RepoMirrors`` keeps a git repository's mirror: from there on an archive record is a
commit like any other, so the git tree hash, the environment fingerprint, the content
overlay and the cache index work unchanged. The commit is deterministic (fixed author and
dates, the message names the record), so the same files give the same commit and a new
version of a record that only changes notebooks has the same environment fingerprint and
launches without a build.
"""

import asyncio
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from traitlets import Dict, Float, Integer, List, Unicode

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd
from binderlab.repos.providers import RepoProvider, RepoSpec, ResolvedRepo

DOI_RE = re.compile(r"10\.\d{4,9}/[-._;()/:A-Za-z0-9]+")
SWHID_RE = re.compile(r"swh:1:(dir|rev):[0-9a-f]{40}")
HYDROSHARE_RE = re.compile(r"[0-9a-f]{32}")
RECORD_FILE = "binderlab-records.json"
# what makes an imported commit depend on its files and record only
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "binderlab", "GIT_AUTHOR_EMAIL": "archives@binderlab.invalid",
    "GIT_COMMITTER_NAME": "binderlab", "GIT_COMMITTER_EMAIL": "archives@binderlab.invalid",
    "GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000",
}


@dataclass(frozen=True)
class ArchiveSpec(RepoSpec):
    """A record spec: no ref (a DOI or SWHID names one version already)."""

    source: str = ""  # what repo2docker's content provider is given (a DOI, URL or SWHID)

    def with_ref(self, ref: str) -> str:
        return self.repo_part


class ArchiveProvider(RepoProvider):
    """Base of the record providers; a subclass says how a spec reads and what repo2docker
    gets. ``attach`` (called by the app) hands over the mirror store and the size limit."""

    canonical_host = ""  # the service's own base URL, as repo2docker's provider knows it
    immutable = True  # a spec names one unchanging version (DOIs of a version, SWHIDs)

    host = Unicode(
        help="""Base URL this provider's service is reached at instead of its public one
        (a mirror, a proxy, or a stand-in on 127.0.0.1 in tests). Default: the public one.
        repo2docker's content provider keeps its own URLs; requests to the public base URL
        are sent here.""",
    ).tag(config=True)

    routes = Dict(
        value_trait=Unicode(),
        help="""More base URLs to send elsewhere, {public base URL: base URL used}, e.g. a
        service's separate API or download host. Default: none.""",
    ).tag(config=True)

    doi_resolver = Unicode(
        "https://doi.org",
        help="""Base URL of the DOI resolver (its /api/handles/<doi> REST API), default
        https://doi.org.""",
    ).tag(config=True)

    allowed_protocols = List(
        Unicode(),
        default_value=["https"],
        help="URL schemes the record's files may be fetched over (default: https only).",
    ).tag(config=True)

    fetch_timeout = Float(
        900, help="Seconds fetching one record may take before the launch fails (default 900)."
    ).tag(config=True)

    max_files = Integer(
        20000, help="Most files a record may hold (default 20000); 0: no limit."
    ).tag(config=True)

    fetch_memory_mb = Integer(
        1024, help="Memory (MB) the fetching worker may use (default 1024); 0: no limit."
    ).tag(config=True)

    refresh_interval = Float(
        3600,
        help="""Seconds a fetched record is reused before it is fetched again (default 3600),
        for providers whose specs name a changing record (HydroShare, CKAN, a Dataverse
        DOI of the latest version). Providers whose specs name one version never refetch.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mirrors = None
        self.work_dir: Path | None = None
        self.max_bytes = 0
        self._locks: dict[str, asyncio.Lock] = {}

    def attach(self, *, mirrors, work_dir: Path, max_bytes: int) -> None:
        self.mirrors, self.work_dir, self.max_bytes = mirrors, work_dir, max_bytes

    # ---- specs ------------------------------------------------------------------------

    def identifier(self, raw: str) -> str:
        """The record's identifier from the unescaped spec; LaunchError(400) if malformed."""
        raise NotImplementedError

    def source(self, identifier: str) -> str:
        return identifier

    def record_url(self, identifier: str) -> str:
        return f"https://doi.org/{identifier}"

    def parse(self, raw_spec: str) -> ArchiveSpec:
        raw = unquote(raw_spec).strip()
        if not _printable(raw):
            raise LaunchError(f"Malformed {self.display_name} spec: no spaces or control "
                              "characters.", 400)
        identifier = self.identifier(raw.removeprefix("doi:").removeprefix("https://doi.org/"))
        url = self.record_url(identifier)
        return ArchiveSpec(self.prefix, quote(identifier, safe="/:"),
                           f"binderlab-record://{self.prefix}/{identifier}", url, "",
                           self.source(identifier))

    def info(self) -> dict:
        return {**super().info(), "host": (self.host or self.canonical_host).rstrip("/"),
                "kind": "record"}

    # ---- fetching ---------------------------------------------------------------------

    def job_routes(self) -> dict[str, str]:
        routes = dict(self.routes)
        if self.host and self.canonical_host:
            routes[self.canonical_host] = self.host
        routes["https://doi.org"] = self.doi_resolver
        return routes

    def job(self, spec: ArchiveSpec, blocked_networks) -> dict:
        return {
            "provider": self.prefix, "source": spec.source, "routes": self.job_routes(),
            "blocked": [str(n) for n in blocked_networks],
            "schemes": [p for p in self.allowed_protocols if p in ("http", "https")],
            "max_bytes": self.max_bytes, "max_files": self.max_files,
            "memory_bytes": self.fetch_memory_mb << 20,
        }

    async def resolve(self, spec: ArchiveSpec, blocked_networks) -> ResolvedRepo:
        if self.mirrors is None:
            raise LaunchError("This provider is not set up (no mirror store).", 500)
        mirror = self.mirrors.path_for(spec.clone_url)
        lock = self._locks.setdefault(spec.clone_url, asyncio.Lock())
        async with lock:
            known = self._known(mirror).get(spec.source)
            if known and await self._has_commit(mirror, known["commit"]) and (
                    self.immutable or time.time() - known["fetched"] < self.refresh_interval):
                return ResolvedRepo(spec, known["commit"])
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="record-") as tmp:
                files, scratch = Path(tmp) / "files", Path(tmp) / "scratch"
                files.mkdir()
                scratch.mkdir()
                content_id = await self._fetch(spec, blocked_networks, files, scratch)
                commit = await self._import(mirror, files,
                                            f"{self.display_name} record {spec.source}\n\n"
                                            f"content id: {content_id}\n")
            self._remember(mirror, spec.source, commit, content_id)
        return ResolvedRepo(spec, commit)

    async def _fetch(self, spec, blocked_networks, files: Path, scratch: Path) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "binderlab.repos.archivefetch", str(files),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=scratch, start_new_session=True,
            limit=1 << 20, env={**os.environ, "HOME": str(scratch)},
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(json.dumps(self.job(spec, blocked_networks)).encode()),
                self.fetch_timeout)
        except TimeoutError:
            await gitcmd.kill_group(proc)
            raise LaunchError(f"Fetching {spec.repo_url} took longer than "
                              f"{self.fetch_timeout:g} s.", 504) from None
        except asyncio.CancelledError:
            await gitcmd.kill_group(proc)
            raise
        result = None
        for line in out.decode(errors="replace").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "message" in data:
                self.log.debug("%s: %s", spec.source, str(data["message"]).rstrip())
            elif "content_id" in data or "error" in data:
                result = data
        if result is None:
            self.log.error("Fetching %s crashed: %s", spec.source, err.decode()[-2000:])
            raise LaunchError(f"Fetching {spec.repo_url} failed (the fetching worker "
                              f"exited with {proc.returncode}).", 502)
        if "error" in result:
            raise LaunchError(f"{result['error']} ({spec.repo_url})", result["status"])
        return result["content_id"]

    async def _has_commit(self, mirror: Path, commit: str) -> bool:
        return mirror.exists() and await self.mirrors.has_commit(mirror, commit)

    async def _import(self, mirror: Path, files: Path, message: str) -> str:
        """One commit holding ``files`` (all of them: a record has no .gitignore rules)."""
        env = {**gitcmd.git_env([]), **COMMIT_ENV,
               "GIT_INDEX_FILE": str(files.parent / "index")}
        timeout = self.mirrors.timeout
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            await gitcmd.run_git("init", "--bare", "-q", "--", str(mirror), env=env,
                                 timeout=timeout)
        git = ("--git-dir", str(mirror), "--work-tree", str(files))
        try:
            await gitcmd.run_git(*git, "add", "-A", "-f", "--", ".", env=env, timeout=timeout,
                                 cwd=str(files))
            tree = (await gitcmd.run_git(*git, "write-tree", env=env, timeout=timeout)).strip()
            commit = await gitcmd.run_git(*git, "commit-tree", tree, "-m", message, env=env,
                                          timeout=timeout)
        except gitcmd.GitError as e:
            raise LaunchError(f"The record's files cannot be stored: {e}", 500) from None
        return commit.strip()

    def _known(self, mirror: Path) -> dict:
        try:
            return json.loads((mirror / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _remember(self, mirror: Path, source: str, commit: str, content_id: str) -> None:
        known = self._known(mirror)
        known[source] = {"commit": commit, "content_id": content_id, "fetched": time.time()}
        partial = mirror / f"{RECORD_FILE}.{os.getpid()}.partial"
        partial.write_text(json.dumps(known))
        partial.replace(mirror / RECORD_FILE)


def _printable(text: str) -> bool:
    """No spaces, control, bidi or zero-width characters (they make a spec read differently
    from what it is)."""
    return not any(ord(c) <= 32 or unicodedata.category(c)[0] in "CZ" for c in text)


def _doi(provider: ArchiveProvider, raw: str, example: str) -> str:
    if not DOI_RE.fullmatch(raw):
        raise LaunchError(f"Malformed {provider.display_name} spec: expected a DOI, e.g. "
                          f"{example}.", 400)
    return raw


class ZenodoProvider(ArchiveProvider):
    """Zenodo records: spec ``<DOI>``, e.g. ``10.5281/zenodo.3242074``."""

    prefix = "zenodo"
    display_name = "Zenodo"
    canonical_host = "https://zenodo.org"

    def identifier(self, raw: str) -> str:
        return _doi(self, raw, "10.5281/zenodo.3242074")


class FigshareProvider(ArchiveProvider):
    """Figshare articles: spec ``<DOI>``, e.g. ``10.6084/m9.figshare.9782777.v1``."""

    prefix = "figshare"
    display_name = "Figshare"
    canonical_host = "https://figshare.com"

    def identifier(self, raw: str) -> str:
        return _doi(self, raw, "10.6084/m9.figshare.9782777.v1")


class DataverseProvider(ArchiveProvider):
    """Dataverse datasets: spec ``<DOI>``, e.g. ``10.7910/DVN/TJCLKP``."""

    prefix = "dataverse"
    display_name = "Dataverse"
    immutable = False  # a dataset DOI names its latest version

    installations = List(
        Unicode(),
        default_value=["dataverse.harvard.edu", "demo.dataverse.org", "dataverse.nl",
                       "borealisdata.ca", "dataverse.no", "data.qdr.syr.edu",
                       "recherche.data.gouv.fr", "darus.uni-stuttgart.de"],
        help="""Host names (host[:port]) of the Dataverse installations a DOI may resolve
        to. repo2docker would download this list from the internet at every launch; here
        it is configuration. Default: a few large public installations.""",
    ).tag(config=True)

    def identifier(self, raw: str) -> str:
        return _doi(self, raw, "10.7910/DVN/TJCLKP")

    def source(self, identifier: str) -> str:
        return f"doi:{identifier}"

    def job(self, spec, blocked_networks) -> dict:
        return {**super().job(spec, blocked_networks), "dataverse_hosts": self.installations}

    def info(self) -> dict:
        return {**super().info(), "hosts": list(self.installations)}


class HydroshareProvider(ArchiveProvider):
    """HydroShare resources: spec ``<resource id>`` (32 hex digits)."""

    prefix = "hydroshare"
    display_name = "HydroShare"
    canonical_host = "https://www.hydroshare.org"
    immutable = False  # a resource changes in place; its version is its modified date

    def identifier(self, raw: str) -> str:
        raw = raw.rstrip("/").rsplit("/", 1)[-1]
        if not HYDROSHARE_RE.fullmatch(raw):
            raise LaunchError("Malformed HydroShare spec: expected a resource id (32 hex "
                              "digits), e.g. b8f6eae9d89241cf8b5904033460af61.", 400)
        return raw

    def source(self, identifier: str) -> str:
        return f"https://www.hydroshare.org/resource/{identifier}"

    def record_url(self, identifier: str) -> str:
        return self.source(identifier)

    def job_routes(self) -> dict[str, str]:
        routes = super().job_routes()
        if self.host:  # bags are served from their own host once prepared
            routes.setdefault("https://s3.hydroshare.org", self.host.rstrip("/") + "/s3")
        return routes


class CKANProvider(ArchiveProvider):
    """CKAN datasets: spec ``<url-escaped dataset URL>`` (any CKAN site; the URL is
    checked against the blocked networks like a git host)."""

    prefix = "ckan"
    display_name = "CKAN"
    immutable = False

    def parse(self, raw_spec: str) -> ArchiveSpec:
        url = unquote(raw_spec)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname \
                or "/dataset/" not in parts.path or parts.username or parts.password \
                or not _printable(url):
            raise LaunchError("Malformed CKAN spec: expected the url-escaped dataset URL, "
                              "e.g. https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample.", 400)
        if parts.scheme not in self.allowed_protocols:
            raise LaunchError(f"URL scheme {parts.scheme!r} is not allowed here; allowed: "
                              f"{', '.join(self.allowed_protocols)}.", 400)
        return ArchiveSpec(self.prefix, quote(url, safe=""), f"binderlab-record://ckan/{url}",
                           url, "", url)


class SwhidProvider(ArchiveProvider):
    """Software Heritage: spec ``<SWHID>`` of a directory or revision, e.g.
    ``swh:1:dir:<40 hex digits>`` (repo2docker fetches these; BinderHub has no prefix)."""

    prefix = "swhid"
    display_name = "Software Heritage"
    canonical_host = "https://archive.softwareheritage.org"

    def identifier(self, raw: str) -> str:
        core = raw.split(";", 1)[0]
        if not SWHID_RE.fullmatch(core):
            raise LaunchError("Malformed Software Heritage spec: expected swh:1:dir:<sha1> or "
                              "swh:1:rev:<sha1>.", 400)
        return core

    def record_url(self, identifier: str) -> str:
        return f"https://archive.softwareheritage.org/{identifier}"


ARCHIVE_PROVIDERS = [ZenodoProvider, FigshareProvider, HydroshareProvider, DataverseProvider,
                     CKANProvider, SwhidProvider]
