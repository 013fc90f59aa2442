"""Repo providers: turn the ``<spec>`` of ``/build/<prefix>/<spec>`` into a git URL and a commit.

Every provider here speaks plain git (refs resolved with ``git ls-remote``, which works for
any host and has no API rate limit). The host each one talks to is configurable, so a
GitHub Enterprise, a self-hosted GitLab or a test server on 127.0.0.1 can stand in.
"""

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from traitlets import Bool, Float, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd, netguard

NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}


def valid_name(name: str) -> bool:
    """An owner, repository or namespace segment: no path tricks ('.', '..'), no newline."""
    return bool(NAME_RE.fullmatch(name)) and name not in (".", "..")


@dataclass(frozen=True)
class RepoSpec:
    """A parsed launch spec. ``ref`` is what the user asked for (branch, tag or commit)."""

    provider: str
    repo_part: str  # the spec without its ref, as it appears in URLs
    clone_url: str
    repo_url: str
    ref: str

    def with_ref(self, ref: str) -> str:
        """The spec of the same repository at another ref (the persistent one uses the SHA)."""
        return f"{self.repo_part}/{quote(ref, safe='/')}"

    @property
    def spec(self) -> str:
        return self.with_ref(self.ref)


@dataclass(frozen=True)
class ResolvedRepo:
    spec: RepoSpec
    commit: str
    allowed_protocols: tuple[str, ...] = ("https",)
    git_config: tuple[str, ...] = ()  # e.g. the address checked against blocked networks
    # a commit asked for by SHA that is no branch's or tag's tip: the fetch must show it is
    # in their history (a fork's commit is not)
    verify_reachable: bool = False

    @property
    def persistent_spec(self) -> str:
        return self.spec.with_ref(self.commit)


class RepoProvider(LoggingConfigurable):
    """Base of every provider: the contract the build handler relies on.

    ``parse(raw_spec)`` takes the spec exactly as it appeared in the URL path (still
    percent-encoded) and returns a RepoSpec or raises LaunchError(400). It must not touch the
    network. ``resolve(spec)`` turns the ref into a full commit SHA, or raises LaunchError.
    """

    prefix = ""
    display_name = ""

    def parse(self, raw_spec: str) -> RepoSpec:
        raise NotImplementedError

    async def resolve(self, spec: RepoSpec, blocked_networks) -> ResolvedRepo:
        raise NotImplementedError

    def ref_url(self, spec: RepoSpec, commit: str) -> str:
        """A web page showing the repository at ``commit`` (``binder_ref_url``)."""
        return spec.repo_url

    def info(self) -> dict:
        """Display info for ``/api/repoproviders``."""
        return {"id": self.prefix, "display_name": self.display_name}


class GitRepoProvider(RepoProvider):
    """Any git repository, by its clone URL: spec ``<url-escaped clone URL>/<ref>``."""

    prefix = "git"
    display_name = "Git repository"

    allowed_protocols = List(
        Unicode(),
        default_value=["https"],
        help="""URL schemes a repository URL may use (default: https only).

        Enforced by git itself (GIT_ALLOW_PROTOCOL), so redirects and submodules obey it too.
        'file' and 'ext' are never allowed. Tests add 'http' to reach a local git server.
        """,
    ).tag(config=True)

    allow_unadvertised_commits = Bool(
        False,
        help="""Launch commits that are on no branch or tag of the repository (default False).

        Git hosts serve commits of forks and pull requests (refs/pull/*) through the parent
        repository's URL, so by default a commit given by SHA must be in the history of a
        branch or tag the repository advertises, and refs outside refs/heads/ and
        refs/tags/ are refused: allow lists, bans and GPU policy then apply to the code
        they name. True restores launching any commit the host serves (fetched by SHA).
        """,
    ).tag(config=True)

    resolve_timeout = Float(
        30, help="Seconds `git ls-remote` may take before the launch fails (default 30)."
    ).tag(config=True)

    def parse(self, raw_spec: str) -> RepoSpec:
        escaped_url, sep, raw_ref = raw_spec.partition("/")
        if not sep or not raw_ref:
            raise LaunchError(
                "Malformed git spec: expected <url-escaped clone URL>/<ref>, "
                "e.g. https%3A%2F%2Fexample.org%2Frepo.git/main",
                400,
            )
        url = self.check_url(unquote(escaped_url))
        return RepoSpec(
            self.prefix, quote(url, safe=""), url, url, self.unquote_ref(raw_ref)
        )

    @staticmethod
    def unquote_ref(raw_ref: str) -> str:
        ref = unquote(raw_ref)
        gitcmd.check_ref(ref)
        return ref

    def check_url(self, url: str) -> str:
        """Refuse URLs git could misread; return the URL in the one spelling git gets.

        The host is converted once to the ASCII name curl will look up (netguard.ascii_host:
        IDNA 2008, full-width forms, numeric addresses), lowercased, without a trailing dot
        or a default port: the SSRF guard, the pinned address, ban and allow lists all see
        the name git connects to.
        """
        if "::" in url.split("/", 1)[0]:  # git's transport syntax, e.g. ext::<command>
            raise LaunchError(f"Not a repository URL: {url!r}. Use e.g. https://host/repo", 400)
        # urlsplit drops tabs and newlines silently: refuse them before, so what is checked
        # is exactly what git receives; Unicode spaces, line breaks, bidi and zero-width
        # characters too (they make a URL read differently from what it is)
        if any(ord(c) <= 32 or unicodedata.category(c)[0] in "CZ" for c in url):
            raise LaunchError("Repository URLs must not contain spaces or control characters.",
                              400)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise LaunchError(f"Not a repository URL: {url!r} ({e}).", 400) from None
        if not parts.scheme:
            raise LaunchError(f"Not a repository URL: {url!r}. Use e.g. https://host/repo", 400)
        scheme = parts.scheme.lower()
        if scheme in ("file", "ext") or scheme not in self.allowed_protocols:
            raise LaunchError(
                f"URL scheme {scheme!r} is not allowed here; allowed: "
                f"{', '.join(self.allowed_protocols)}.",
                400,
            )
        if not parts.hostname:
            raise LaunchError(f"Not a repository URL: {url!r}. Use e.g. https://host/repo", 400)
        if "@" in parts.netloc:
            raise LaunchError("Repository URLs must not carry credentials.", 400)
        if url.startswith("-"):
            raise LaunchError(f"Not a repository URL: {url!r}", 400)
        raw_host = parts.netloc
        if raw_host.startswith("["):
            raw_host = raw_host[: raw_host.index("]") + 1]
        elif ":" in raw_host:
            raw_host = raw_host.rsplit(":", 1)[0]
        netloc = netguard.ascii_host(raw_host)
        if port is not None and port != DEFAULT_PORTS.get(scheme):
            netloc += f":{port}"
        return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))

    async def resolve(self, spec: RepoSpec, blocked_networks) -> ResolvedRepo:
        parts = urlsplit(spec.clone_url)
        port = parts.port or (80 if parts.scheme == "http" else 443)
        address = await netguard.check_host(parts.hostname, port, blocked_networks)
        pinned = gitcmd.pin_config(parts.hostname, port, address)
        protocols = tuple(self.allowed_protocols)
        if gitcmd.SHA_RE.match(spec.ref):
            if self.allow_unadvertised_commits:
                return ResolvedRepo(spec, spec.ref, protocols, pinned)
            tips = gitcmd.branch_and_tag_tips(
                await self._ls_remote(spec, pinned, "--heads", "--tags"))
            return ResolvedRepo(spec, spec.ref, protocols, pinned,
                                verify_reachable=spec.ref not in tips)
        if spec.ref.startswith("refs/") and not spec.ref.startswith(("refs/heads/",
                                                                     "refs/tags/")) \
                and not self.allow_unadvertised_commits:
            raise LaunchError(f"Ref {spec.ref!r} is not a branch or tag; refs such as "
                              "refs/pull/* hold commits of forks, which this server launches "
                              "only from the fork.", 404)
        out = await self._ls_remote(spec, pinned, "--", spec.clone_url, spec.ref,
                                    *([] if spec.ref == "HEAD" else [f"{spec.ref}^{{}}"]))
        commit = gitcmd.pick_ref(out, spec.ref)
        if commit is None:
            raise LaunchError(
                f"Ref {spec.ref!r} not found in {spec.repo_url}: no branch, tag or commit "
                "of that name.",
                404,
            )
        return ResolvedRepo(spec, commit, protocols, pinned)

    async def _ls_remote(self, spec: RepoSpec, pinned: tuple[str, ...], *args: str) -> str:
        if "--" not in args:
            args = (*args, "--", spec.clone_url)
        try:
            return await gitcmd.run_git(
                "ls-remote", *args, env=gitcmd.git_env(self.allowed_protocols),
                timeout=self.resolve_timeout, config=pinned,
            )
        except gitcmd.GitError as e:
            raise LaunchError(f"Could not reach repository {spec.repo_url}: {e}", 404) from None


class _HostedRepoProvider(GitRepoProvider):
    host = Unicode(help="Base URL of the git host.").tag(config=True)

    def info(self) -> dict:
        """Display info plus the host, so the web form can recognise this host's URLs."""
        return {**super().info(), "host": self.host.rstrip("/")}

    def hosted_url(self, path: str) -> str:
        return self.check_url(f"{self.host.rstrip('/')}/{path}")


class GitHubRepoProvider(_HostedRepoProvider):
    """GitHub: spec ``<owner>/<repo>/<ref>`` (the ref may contain ``/``)."""

    prefix = "gh"
    display_name = "GitHub"
    host = Unicode(
        "https://github.com",
        help="""Base URL of the GitHub host (GitHub Enterprise, or a local test server).

        Clone URLs are <host>/<owner>/<repo>.""",
    ).tag(config=True)

    def parse(self, raw_spec: str) -> RepoSpec:
        parts = raw_spec.split("/", 2)
        if len(parts) < 2 or not all(valid_name(unquote(p)) for p in parts[:2]) \
                or not valid_name(unquote(parts[1]).removesuffix(".git")):
            raise LaunchError("Malformed GitHub spec: expected <owner>/<repo>/<ref>.", 400)
        owner, repo = unquote(parts[0]), unquote(parts[1]).removesuffix(".git")
        raw_ref = parts[2] if len(parts) == 3 and parts[2] else "HEAD"
        url = self.hosted_url(f"{owner}/{repo}")
        return RepoSpec(self.prefix, f"{owner}/{repo}", url, url, self.unquote_ref(raw_ref))

    def ref_url(self, spec: RepoSpec, commit: str) -> str:
        return f"{spec.repo_url}/tree/{commit}"


class GitLabRepoProvider(_HostedRepoProvider):
    """GitLab: spec ``<url-escaped namespace/project>/<ref>``."""

    prefix = "gl"
    display_name = "GitLab"
    host = Unicode(
        "https://gitlab.com",
        help="Base URL of the GitLab host. Clone URLs are <host>/<namespace>/<project>.git.",
    ).tag(config=True)

    def parse(self, raw_spec: str) -> RepoSpec:
        escaped, sep, raw_ref = raw_spec.partition("/")
        project = unquote(escaped).strip("/").removesuffix(".git")
        if not sep or not raw_ref or not all(valid_name(p) for p in project.split("/")):
            raise LaunchError(
                "Malformed GitLab spec: expected <url-escaped namespace/project>/<ref>, "
                "e.g. group%2Fproject/main",
                400,
            )
        url = self.hosted_url(project)
        return RepoSpec(
            self.prefix, quote(project, safe=""), url + ".git", url, self.unquote_ref(raw_ref)
        )

    def ref_url(self, spec: RepoSpec, commit: str) -> str:
        return f"{spec.repo_url}/-/tree/{commit}"


class GistRepoProvider(_HostedRepoProvider):
    """GitHub gists: spec ``<owner>/<gist id>[/<ref>]``."""

    prefix = "gist"
    display_name = "Gist"
    host = Unicode(
        "https://gist.github.com",
        help="Base URL of the gist host. Clone URLs are <host>/<gist id>.git.",
    ).tag(config=True)

    def parse(self, raw_spec: str) -> RepoSpec:
        parts = raw_spec.split("/", 2)
        if len(parts) < 2 or not valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]+", parts[1]):
            raise LaunchError("Malformed gist spec: expected <owner>/<gist id>[/<ref>].", 400)
        raw_ref = parts[2] if len(parts) == 3 and parts[2] else "HEAD"
        url = self.hosted_url(parts[1])
        return RepoSpec(
            self.prefix, f"{parts[0]}/{parts[1]}", url + ".git",
            f"{self.host.rstrip('/')}/{parts[0]}/{parts[1]}", self.unquote_ref(raw_ref),
        )

    def ref_url(self, spec: RepoSpec, commit: str) -> str:
        return f"{spec.repo_url}/{commit}"


def repo_key(spec: RepoSpec, providers: list[RepoProvider]) -> str:
    """'<provider>/<repo>' (no ref): what policy patterns (bans, allow lists, course repos,
    GPU policy) and per-repository limits match on.

    A plain git URL on the host of the gh or gl provider maps to that provider's key, so
    `git/https%3A%2F%2Fgithub.com%2Fo%2Fr` counts as `gh/o/r` and cannot escape a ban.
    Both sides are in check_url's one spelling (ASCII host, lowercase, no trailing dot,
    no default port): `https://GitHub.com.:443/o/r` is `gh/o/r` too.
    """
    if spec.provider == "git":
        url = _schemeless(spec.clone_url)
        for provider in providers:
            if isinstance(provider, GitHubRepoProvider | GitLabRepoProvider):
                base = _schemeless(_spelled(provider, provider.host)).rstrip("/") + "/"
                if url.lower().startswith(base.lower()):
                    path = url[len(base):].strip("/").removesuffix(".git")
                    return f"{provider.prefix}/{path}"
    return f"{spec.provider}/{unquote(spec.repo_part)}"


def _spelled(provider: GitRepoProvider, url: str) -> str:
    try:
        return provider.check_url(url)
    except LaunchError:  # a host the provider itself cannot use matches nothing
        return url


def _schemeless(url: str) -> str:
    return url.split("://", 1)[-1]
