"""Repo providers: parsing launch specs as they appear in URL paths, and resolving refs
against a real git server on 127.0.0.1. No Docker."""

import asyncio
from urllib.parse import quote

import pytest
from traitlets.config import Config

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd, netguard
from binderlab.repos.providers import (
    GistRepoProvider,
    GitHubRepoProvider,
    GitLabRepoProvider,
    GitRepoProvider,
    RepoSpec,
    ResolvedRepo,
)
from tests.harness.gitserver import GitServer, git

SHA = "0123456789abcdef0123456789abcdef01234567"
PROVIDERS = [GitHubRepoProvider, GitLabRepoProvider, GitRepoProvider, GistRepoProvider]


def parse_error(provider, raw_spec: str) -> LaunchError:
    with pytest.raises(LaunchError) as info:
        provider.parse(raw_spec)
    return info.value


# -- parse ----------------------------------------------------------------------------------

GH = "https://github.com"

# raw spec, clone URL (= repo URL for gh), ref, spec
GH_CASES = [
    ("owner/repo/main", f"{GH}/owner/repo", "main", "owner/repo/main"),
    ("owner/repo/feature/x", f"{GH}/owner/repo", "feature/x", "owner/repo/feature/x"),
    ("owner/repo/feature%2Fx", f"{GH}/owner/repo", "feature/x", "owner/repo/feature/x"),
    ("owner/repo.git/main", f"{GH}/owner/repo", "main", "owner/repo/main"),
    ("owner/repo", f"{GH}/owner/repo", "HEAD", "owner/repo/HEAD"),
    ("owner/repo/", f"{GH}/owner/repo", "HEAD", "owner/repo/HEAD"),
    ("Own-er_1/re.po_2/v1.0", f"{GH}/Own-er_1/re.po_2", "v1.0", "Own-er_1/re.po_2/v1.0"),
    ("owner/repo/v1%2B2", f"{GH}/owner/repo", "v1+2", "owner/repo/v1%2B2"),
    ("owner/repo/100%25", f"{GH}/owner/repo", "100%", "owner/repo/100%25"),
    ("owner/repo/caf%C3%A9", f"{GH}/owner/repo", "café", "owner/repo/caf%C3%A9"),
    ("owner/repo/%23hash", f"{GH}/owner/repo", "#hash", "owner/repo/%23hash"),
    (f"owner/repo/{SHA}", f"{GH}/owner/repo", SHA, f"owner/repo/{SHA}"),
]


@pytest.mark.parametrize(("raw", "clone_url", "ref", "spec"), GH_CASES)
def test_github_parse(raw, clone_url, ref, spec):
    provider = GitHubRepoProvider()
    parsed = provider.parse(raw)
    assert parsed == RepoSpec("gh", clone_url.removeprefix(f"{GH}/"), clone_url, clone_url, ref)
    assert parsed.spec == spec
    assert provider.parse(parsed.spec) == parsed
    assert parsed.with_ref(SHA) == f"{parsed.repo_part}/{SHA}"
    assert provider.ref_url(parsed, SHA) == f"{clone_url}/tree/{SHA}"


GL = "https://gitlab.com"

# raw spec, clone URL, repo URL, ref, spec
GL_CASES = [
    ("group%2Fproject/main", f"{GL}/group/project.git", f"{GL}/group/project", "main",
     "group%2Fproject/main"),
    ("group%2Fsub%2Fproject/feature/x", f"{GL}/group/sub/project.git", f"{GL}/group/sub/project",
     "feature/x", "group%2Fsub%2Fproject/feature/x"),
    ("group%2Fproject.git/v1%2F2", f"{GL}/group/project.git", f"{GL}/group/project", "v1/2",
     "group%2Fproject/v1/2"),
    ("group%2fproject/main", f"{GL}/group/project.git", f"{GL}/group/project", "main",
     "group%2Fproject/main"),
    ("project/main", f"{GL}/project.git", f"{GL}/project", "main", "project/main"),
]


@pytest.mark.parametrize(("raw", "clone_url", "repo_url", "ref", "spec"), GL_CASES)
def test_gitlab_parse(raw, clone_url, repo_url, ref, spec):
    provider = GitLabRepoProvider()
    parsed = provider.parse(raw)
    assert (parsed.provider, parsed.clone_url, parsed.repo_url, parsed.ref) == (
        "gl", clone_url, repo_url, ref
    )
    assert parsed.spec == spec
    assert provider.parse(parsed.spec) == parsed
    assert provider.ref_url(parsed, SHA) == f"{repo_url}/-/tree/{SHA}"


GIST = "https://gist.github.com"

# raw spec, clone URL, repo URL, ref, spec
GIST_CASES = [
    ("owner/abc123", f"{GIST}/abc123.git", f"{GIST}/owner/abc123", "HEAD", "owner/abc123/HEAD"),
    ("owner/abc123/", f"{GIST}/abc123.git", f"{GIST}/owner/abc123", "HEAD", "owner/abc123/HEAD"),
    ("owner/abc123/main", f"{GIST}/abc123.git", f"{GIST}/owner/abc123", "main",
     "owner/abc123/main"),
    ("owner/abc123/a%2Fb", f"{GIST}/abc123.git", f"{GIST}/owner/abc123", "a/b",
     "owner/abc123/a/b"),
]


@pytest.mark.parametrize(("raw", "clone_url", "repo_url", "ref", "spec"), GIST_CASES)
def test_gist_parse(raw, clone_url, repo_url, ref, spec):
    provider = GistRepoProvider()
    parsed = provider.parse(raw)
    assert (parsed.provider, parsed.clone_url, parsed.repo_url, parsed.ref) == (
        "gist", clone_url, repo_url, ref
    )
    assert parsed.spec == spec
    assert provider.parse(parsed.spec) == parsed
    assert provider.ref_url(parsed, SHA) == f"{repo_url}/{SHA}"


# raw spec, clone URL (= repo URL), ref
GIT_CASES = [
    ("https%3A%2F%2Fexample.org%2Frepo.git/main", "https://example.org/repo.git", "main"),
    ("https%3A%2F%2Fexample.org%2Fgroup%2Frepo/feature/x", "https://example.org/group/repo",
     "feature/x"),
    ("https%3A%2F%2Fexample.org%3A8443%2Frepo/feature%2Fx", "https://example.org:8443/repo",
     "feature/x"),
    ("https%3A%2F%2Fexample.org%2Frepo/HEAD", "https://example.org/repo", "HEAD"),
    ("https%3a%2f%2fexample.org%2frepo/main", "https://example.org/repo", "main"),
    ("https%3A%2F%2F%5B2001%3Adb8%3A%3A1%5D%2Frepo/main", "https://[2001:db8::1]/repo", "main"),
]


@pytest.mark.parametrize(("raw", "clone_url", "ref"), GIT_CASES)
def test_git_parse(raw, clone_url, ref):
    provider = GitRepoProvider()
    parsed = provider.parse(raw)
    assert (parsed.provider, parsed.clone_url, parsed.repo_url, parsed.ref) == (
        "git", clone_url, clone_url, ref
    )
    assert parsed.repo_part == quote(clone_url, safe="")
    assert parsed.spec == f"{quote(clone_url, safe='')}/{quote(ref, safe='/')}"
    assert provider.parse(parsed.spec) == parsed
    assert provider.ref_url(parsed, SHA) == clone_url


@pytest.mark.parametrize(
    ("provider_class", "raw", "ref", "expected"),
    [
        (GitHubRepoProvider, "o/r/main", SHA, f"o/r/{SHA}"),
        (GitHubRepoProvider, "o/r/main", "feature/x", "o/r/feature/x"),
        (GitHubRepoProvider, "o/r/main", "a b#c", "o/r/a%20b%23c"),
        (GitLabRepoProvider, "g%2Fp/main", SHA, f"g%2Fp/{SHA}"),
        (GistRepoProvider, "o/abc/main", "v1/2", "o/abc/v1/2"),
        (GitRepoProvider, "https%3A%2F%2Fh%2Fr/main", SHA, f"https%3A%2F%2Fh%2Fr/{SHA}"),
    ],
)
def test_with_ref(provider_class, raw, ref, expected):
    spec = provider_class().parse(raw)
    assert spec.with_ref(ref) == expected
    assert ResolvedRepo(spec, ref).persistent_spec == expected


# -- malformed specs -------------------------------------------------------------------------

MALFORMED = [
    (GitHubRepoProvider, "", "Malformed GitHub spec"),
    (GitHubRepoProvider, "only-owner", "Malformed GitHub spec"),
    (GitHubRepoProvider, "owner/", "Malformed GitHub spec"),
    (GitHubRepoProvider, "/repo/main", "Malformed GitHub spec"),
    (GitHubRepoProvider, "own%20er/repo/main", "Malformed GitHub spec"),
    (GitHubRepoProvider, "owner/re%2Fpo/main", "Malformed GitHub spec"),
    (GitHubRepoProvider, "owner/repo!/main", "Malformed GitHub spec"),
    (GitHubRepoProvider, "owner/repo/--upload-pack=touch%20%2Ftmp%2Fpwned", "start with '-'"),
    (GitHubRepoProvider, "owner/repo/%2Dx", "start with '-'"),
    (GitHubRepoProvider, "owner/repo/a..b", "Invalid ref"),
    (GitHubRepoProvider, "owner/repo/a%20b", "Invalid ref"),
    (GitHubRepoProvider, "owner/repo/main%0A", "Invalid ref"),
    (GitLabRepoProvider, "group%2Fproject", "Malformed GitLab spec"),
    (GitLabRepoProvider, "group%2Fproject/", "Malformed GitLab spec"),
    (GitLabRepoProvider, "group%2F%2Fproject/main", "Malformed GitLab spec"),
    (GitLabRepoProvider, "gro%20up%2Fproject/main", "Malformed GitLab spec"),
    (GitLabRepoProvider, "%2F/main", "Malformed GitLab spec"),
    (GitLabRepoProvider, ".git/main", "Malformed GitLab spec"),
    (GitLabRepoProvider, "group%2Fproject/-c%20x", "start with '-'"),
    (GistRepoProvider, "only-owner", "Malformed gist spec"),
    (GistRepoProvider, "owner/not-hex!/main", "Malformed gist spec"),
    (GistRepoProvider, "owner/ABC123/main", "Malformed gist spec"),
    (GistRepoProvider, "ow%20ner/abc123/main", "Malformed gist spec"),
    (GistRepoProvider, "owner/abc123/..", "Invalid ref"),
    (GitRepoProvider, "no-ref-here", "Malformed git spec"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo", "Malformed git spec"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/", "Malformed git spec"),
    (GitRepoProvider, "ext::sh -c touch%20/tmp/x", "Not a repository URL"),
    (GitRepoProvider, "ext%3A%3Ash%20-c%20touch%2520%2Ftmp%2Fx/main", "Not a repository URL"),
    (GitRepoProvider, "https::https%3A%2F%2Fexample.org/main", "Not a repository URL"),
    (GitRepoProvider, "file%3A%2F%2F%2Fetc/main", "file"),
    (GitRepoProvider, "file%3A%2F%2Flocalhost%2Fetc/main", "'file' is not allowed"),
    (GitRepoProvider, "%2Flocal%2Fpath/main", "Not a repository URL"),
    (GitRepoProvider, "..%2Frelative/main", "Not a repository URL"),
    (GitRepoProvider, "git%40github.com%3Aowner%2Frepo.git/main", "Not a repository URL"),
    (GitRepoProvider, "https%3A%2F%2F%2Frepo/main", "Not a repository URL"),
    (GitRepoProvider, "http%3A%2F%2Fexample.org%2Frepo/main", "'http' is not allowed"),
    (GitRepoProvider, "ssh%3A%2F%2Fexample.org%2Frepo/main", "'ssh' is not allowed"),
    (GitRepoProvider, "git%3A%2F%2Fexample.org%2Frepo/main", "'git' is not allowed"),
    (GitRepoProvider, "https%3A%2F%2Fuser%3Apw%40example.org%2Frepo/main", "credentials"),
    (GitRepoProvider, "https%3A%2F%2Ftoken%40example.org%2Frepo/main", "credentials"),
    (GitRepoProvider, "https%3A%2F%2F%3Apw%40example.org%2Frepo/main", "credentials"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/--upload-pack=touch%20%2Ftmp%2Fpwned",
     "start with '-'"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/-c%20core.sshCommand=x", "start with '-'"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/a..b", "Invalid ref"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/..%2F..%2Fetc", "Invalid ref"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/main%20branch", "Invalid ref"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/main%09", "Invalid ref"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/main%00", "Invalid ref"),
    (GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo/main%0D%0Ax", "Invalid ref"),
]


@pytest.mark.parametrize(("provider_class", "raw", "message"), MALFORMED)
def test_malformed_spec_is_400(provider_class, raw, message):
    error = parse_error(provider_class(), raw)
    assert error.status_code == 400
    assert message in str(error)


# The URL given to git must be the one that was checked. Python's urlsplit silently drops
# \t, \r and \n (WHATWG), so check_url and netguard see another URL than git gets; and
# NAME_RE ends in '$', which also matches before a trailing newline.
# '.' and '..' as owner, repo or namespace step out of the configured host's base path.
PARSED_BUT_SHOULD_NOT_BE = [
    pytest.param(GitRepoProvider, "https%3A%2F%2Fexample.org%2Frepo%0A/main", id="git-url-LF"),
    pytest.param(GitRepoProvider, "https%3A%2F%2Fexa%09mple.org%2Frepo/main", id="git-url-TAB"),
    pytest.param(GitRepoProvider, "https%3A%2F%2Fexample.org%0D%2Frepo/main", id="git-url-CR"),
    pytest.param(GitHubRepoProvider, "owner%0A/repo/main", id="gh-owner-LF"),
    pytest.param(GitHubRepoProvider, "owner/repo%0A/main", id="gh-repo-LF"),
    pytest.param(GitLabRepoProvider, "group%2Fproject%0A/main", id="gl-project-LF"),
    pytest.param(GitHubRepoProvider, "../repo/main", id="gh-owner-dotdot"),
    pytest.param(GitHubRepoProvider, "%2E%2E/repo/main", id="gh-owner-escaped-dotdot"),
    pytest.param(GitHubRepoProvider, "owner/../main", id="gh-repo-dotdot"),
    pytest.param(GitHubRepoProvider, "owner/./main", id="gh-repo-dot"),
    pytest.param(GitHubRepoProvider, "owner/.git/main", id="gh-repo-empty-after-.git"),
    pytest.param(GitLabRepoProvider, "..%2F..%2Fadmin/main", id="gl-namespace-dotdot"),
]


@pytest.mark.parametrize(("provider_class", "raw"), PARSED_BUT_SHOULD_NOT_BE)
def test_malformed_spec_that_parse_accepts(provider_class, raw):
    assert parse_error(provider_class(), raw).status_code == 400


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("provider_class", PROVIDERS)
def test_git_provider_config_applies_to_subclasses(provider_class):
    c = Config()
    c.GitRepoProvider.allowed_protocols = ["https", "http"]
    c.GitRepoProvider.resolve_timeout = 2.5
    provider = provider_class(config=c)
    assert provider.allowed_protocols == ["https", "http"]
    assert provider.resolve_timeout == 2.5


def test_subclass_config_does_not_leak_to_siblings():
    c = Config()
    c.GitHubRepoProvider.allowed_protocols = ["https", "http"]
    assert GitHubRepoProvider(config=c).allowed_protocols == ["https", "http"]
    assert GitLabRepoProvider(config=c).allowed_protocols == ["https"]
    assert GitRepoProvider(config=c).allowed_protocols == ["https"]


@pytest.mark.parametrize("provider_class", PROVIDERS)
def test_defaults(provider_class):
    provider = provider_class()
    assert provider.allowed_protocols == ["https"]
    assert provider.resolve_timeout == 30
    info = {"id": provider.prefix, "display_name": provider.display_name}
    if provider_class is not GitRepoProvider:  # hosted: the form matches pasted URLs by host
        info["host"] = provider.host.rstrip("/")
    assert provider.info() == info


@pytest.mark.parametrize(
    ("provider_class", "raw", "clone_url", "repo_url"),
    [
        (GitHubRepoProvider, "owner/repo/main", "{host}/owner/repo", "{host}/owner/repo"),
        (GitLabRepoProvider, "g%2Fp/main", "{host}/g/p.git", "{host}/g/p"),
        (GistRepoProvider, "owner/abc/main", "{host}/abc.git", "{host}/owner/abc"),
    ],
)
@pytest.mark.parametrize("host", ["http://127.0.0.1:9/base", "http://127.0.0.1:9/base/"])
def test_configurable_host(provider_class, raw, clone_url, repo_url, host):
    c = Config()
    c.GitRepoProvider.allowed_protocols = ["https", "http"]
    c[provider_class.__name__].host = host
    spec = provider_class(config=c).parse(raw)
    base = "http://127.0.0.1:9/base"
    assert spec.clone_url == clone_url.format(host=base)
    assert spec.repo_url == repo_url.format(host=base)


@pytest.mark.parametrize("provider_class", [GitHubRepoProvider, GitLabRepoProvider,
                                            GistRepoProvider])
def test_http_host_needs_http_allowed(provider_class):
    provider = provider_class(host="http://127.0.0.1:9/base")
    raw = {"gh": "o/r/main", "gl": "g%2Fp/main", "gist": "o/abc/main"}[provider.prefix]
    error = parse_error(provider, raw)
    assert error.status_code == 400
    assert "'http' is not allowed" in str(error)


def test_http_allowed_by_config():
    provider = GitRepoProvider(allowed_protocols=["https", "http"])
    spec = provider.parse("http%3A%2F%2F127.0.0.1%3A9%2Frepo/main")
    assert spec.clone_url == "http://127.0.0.1:9/repo"


@pytest.mark.parametrize(
    "raw",
    ["file%3A%2F%2Flocalhost%2Fetc/main", "ext%3A%2F%2Fhost%2Fx/main", "ext%3A%3Ash%2Fx/main"],
)
def test_file_and_ext_never_allowed(raw):
    provider = GitRepoProvider(allowed_protocols=["https", "file", "ext"])
    assert parse_error(provider, raw).status_code == 400


# -- resolve against a git server on 127.0.0.1 ---------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A dumb-HTTP git server with one repository, published for every provider:
    <srv>/test/repo.git (gl, git), <srv>/test/repo (gh), <srv>/abc123.git (gist).

    main: c1 (annotated tag v1.0, lightweight tag dual); feature/x: c2 (lightweight tag
    light); branch dual: c1, tag dual: c2 (a branch wins).
    """
    root = tmp_path_factory.mktemp("providers")
    srv = GitServer(root)
    work, bare = root / "work", srv.root / "test" / "repo.git"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    c1 = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "-m", "release", "v1.0", cwd=work)
    git("checkout", "-q", "-b", "feature/x", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
    c2 = git("rev-parse", "HEAD", cwd=work)
    git("tag", "light", cwd=work)
    git("tag", "dual", cwd=work)
    git("branch", "dual", c1, cwd=work)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
    git("push", "-q", str(bare), "main", "feature/x", "refs/heads/dual", "--tags", cwd=work)
    git("update-server-info", cwd=bare)
    (srv.root / "test" / "repo").symlink_to(bare)
    (srv.root / "abc123.git").symlink_to(bare)
    tag_object = git("rev-parse", "v1.0", cwd=work)
    assert tag_object != c1
    srv.shas = {"c1": c1, "c2": c2, "tag": tag_object}
    yield srv
    srv.close()


def config_for(server) -> Config:
    c = Config()
    c.GitRepoProvider.allowed_protocols = ["https", "http"]
    c.GitRepoProvider.resolve_timeout = 10
    c.GitHubRepoProvider.host = server.url
    c.GitLabRepoProvider.host = server.url
    c.GistRepoProvider.host = server.url
    return c


async def launch(provider, raw_spec: str, blocked_networks=()) -> ResolvedRepo:
    """What the build pipeline does: parse, then resolve."""
    return await provider.resolve(provider.parse(raw_spec), list(blocked_networks))


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("main", "c1"),
        ("feature/x", "c2"),
        ("feature%2Fx", "c2"),
        ("v1.0", "c1"),  # the commit, not the annotated tag object
        ("light", "c2"),
        ("dual", "c1"),  # branch over tag
        ("HEAD", "c1"),
        ("", "c1"),  # missing ref: HEAD
        ("refs/heads/feature/x", "c2"),
        ("refs/tags/light", "c2"),
        pytest.param(
            "refs/tags/v1.0",
            "c1",
        ),
    ],
)
async def test_resolve_github(server, ref, expected):
    provider = GitHubRepoProvider(config=config_for(server))
    resolved = await launch(provider, f"test/repo/{ref}")
    assert resolved.commit == server.shas[expected]
    assert resolved.commit != server.shas["tag"]
    assert resolved.allowed_protocols == ("https", "http")
    assert resolved.persistent_spec == f"test/repo/{server.shas[expected]}"


@pytest.mark.parametrize(
    ("provider_class", "raw"),
    [
        (GitLabRepoProvider, "test%2Frepo/{ref}"),
        (GistRepoProvider, "test/abc123/{ref}"),
        (GitRepoProvider, "{url}/{ref}"),
    ],
)
@pytest.mark.parametrize(("ref", "expected"), [("HEAD", "c1"), ("v1.0", "c1"), ("light", "c2")])
async def test_resolve_other_providers(server, provider_class, raw, ref, expected):
    url = quote(f"{server.url}/test/repo.git", safe="")
    provider = provider_class(config=config_for(server))
    resolved = await launch(provider, raw.format(url=url, ref=ref))
    assert resolved.commit == server.shas[expected]


@pytest.fixture
def git_calls(monkeypatch):
    """Every subprocess started, as (argv, env); the processes still run."""
    calls = []
    real = asyncio.create_subprocess_exec

    async def recording(*args, **kwargs):
        calls.append((args, kwargs.get("env")))
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    return calls


async def test_resolve_passes_user_values_after_double_dash(server, git_calls):
    provider = GitHubRepoProvider(config=config_for(server))
    await launch(provider, "test/repo/main")
    [(argv, env)] = git_calls
    assert argv[argv.index("ls-remote") + 1] == "--"
    assert argv[argv.index("--") + 1:] == (f"{server.url}/test/repo", "main", "main^{}")
    assert env["GIT_ALLOW_PROTOCOL"] == "https:http"
    assert env["GIT_TERMINAL_PROMPT"] == "0"


async def test_full_sha_is_returned_without_git(server, git_calls):
    provider = GitHubRepoProvider(config=config_for(server))
    resolved = await launch(provider, f"test/repo/{SHA}")
    assert resolved.commit == SHA
    assert git_calls == []


async def test_unknown_ref_is_404(server):
    provider = GitHubRepoProvider(config=config_for(server))
    with pytest.raises(LaunchError) as info:
        await launch(provider, "test/repo/no-such-branch")
    assert info.value.status_code == 404
    assert "'no-such-branch'" in str(info.value)


async def test_unknown_repository_is_404(server):
    provider = GitHubRepoProvider(config=config_for(server))
    with pytest.raises(LaunchError) as info:
        await launch(provider, "test/missing/main")
    assert info.value.status_code == 404
    assert f"{server.url}/test/missing" in str(info.value)


@pytest.mark.parametrize(
    "ref",
    ["--upload-pack=touch {marker}", "-c core.sshCommand=touch {marker}", "-q"],
)
async def test_option_like_ref_never_reaches_git(server, git_calls, tmp_path, ref):
    marker = tmp_path / "pwned"
    provider = GitHubRepoProvider(config=config_for(server))
    with pytest.raises(LaunchError) as info:
        await launch(provider, f"test/repo/{quote(ref.format(marker=marker))}")
    assert info.value.status_code == 400
    assert git_calls == []
    assert not marker.exists()


async def test_option_like_ref_in_a_hand_made_spec_is_not_an_option(server, tmp_path):
    """resolve() does not re-check the ref; `--` still keeps git from reading it as one."""
    marker = tmp_path / "pwned"
    url = f"{server.url}/test/repo"
    spec = RepoSpec("gh", "test/repo", url, url, f"--upload-pack=touch {marker}")
    provider = GitHubRepoProvider(config=config_for(server))
    with pytest.raises(LaunchError) as info:
        await provider.resolve(spec, [])
    assert info.value.status_code == 404
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["main", SHA])
async def test_blocked_networks_refuse_local_server(server, git_calls, ref):
    provider = GitHubRepoProvider(config=config_for(server))
    blocked = netguard.parse_networks(netguard.DEFAULT_BLOCKED_NETWORKS)
    with pytest.raises(LaunchError) as info:
        await launch(provider, f"test/repo/{ref}", blocked)
    assert info.value.status_code == 403
    assert "127.0.0.1" in str(info.value)
    assert git_calls == []


async def test_resolve_timeout_is_passed_to_git(server, monkeypatch):
    seen = {}

    async def fake_run_git(*args, env, timeout, cwd=None, config=()):
        seen["timeout"] = timeout
        return f"{SHA}\trefs/heads/main\n"

    monkeypatch.setattr(gitcmd, "run_git", fake_run_git)
    c = config_for(server)
    c.GitRepoProvider.resolve_timeout = 1.5
    resolved = await launch(GitHubRepoProvider(config=c), "test/repo/main")
    assert resolved.commit == SHA
    assert seen == {"timeout": 1.5}
