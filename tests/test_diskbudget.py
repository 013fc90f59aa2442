# ruff: noqa: F811  (the fixtures from tests.harness.pipeline are named as arguments)
"""The state disk under attack: many files, large files, a full disk, and the budget's
least-recently-used clean-up of git mirrors and content archives.

Real git (a dumb-HTTP server on 127.0.0.1), the real RepoMirrors, the real pipeline steps
that write to the disk (plan, content_archive); no Docker: nothing here builds.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from binderlab.errors import LaunchError
from binderlab.repos.diskbudget import RepoDiskBudget
from tests.harness.gitserver import git
from tests.harness.pipeline import make_pipeline, resolved_of, state  # noqa: F401 (fixtures)


def inodes_under(path: Path) -> int:
    return sum(1 + len(files) for _, _, files in os.walk(path)) if path.exists() else 0


def commit_files(repo, count: int, size: int = 0) -> str:
    """Add ``count`` files of ``size`` zero bytes (they compress to almost nothing)."""
    folder = repo.work / "many"
    folder.mkdir()
    for i in range(count):
        with open(folder / f"f{i}", "wb") as f:
            f.truncate(size)
    return repo.commit({}, message=f"{count} files")


async def test_many_files_are_refused_from_the_tree_before_any_is_written(
        git_server, make_pipeline, state):
    repo = git_server.create("requirements")
    commit = commit_files(repo, 3000)
    pipeline = make_pipeline(max_repo_files=1000)
    with pytest.raises(LaunchError) as e:
        await pipeline.plan(resolved_of(git_server, repo, commit))
    # 3000 + the case's 2 files + the test id
    assert e.value.status_code == 413 and "3003 files" in str(e.value)
    assert "more than the 1000" in str(e.value)
    # no checkout, no archive, and the mirror fetched only for this commit is gone
    assert inodes_under(state / "build") == 1
    assert not (state / "content").exists() or not any((state / "content").iterdir())
    assert not any((state / "git").iterdir())


async def test_large_repository_is_refused_and_leaves_no_mirror(git_server, make_pipeline,
                                                                state):
    repo = git_server.create("requirements")
    commit = commit_files(repo, 1, size=50_000_000)  # 50 MB of zeros, ~50 kB in git
    pipeline = make_pipeline(max_repo_bytes=10_000_000)
    with pytest.raises(LaunchError) as e:
        await pipeline.plan(resolved_of(git_server, repo, commit))
    assert e.value.status_code == 413 and "50 MB" in str(e.value)
    assert not any((state / "git").iterdir())
    assert inodes_under(state / "build") == 1


async def test_refused_commit_keeps_an_existing_mirror(git_server, make_pipeline, state):
    """A mirror other commits use is not deleted because one commit was refused."""
    repo = git_server.create("requirements")
    good = git("rev-parse", "HEAD", cwd=repo.work)
    pipeline = make_pipeline(max_repo_files=1000)
    first = resolved_of(git_server, repo, good)
    plan = await pipeline.plan(first)
    assert plan.kind == "env"
    bad = commit_files(repo, 3000)
    with pytest.raises(LaunchError):
        await pipeline.plan(resolved_of(git_server, repo, bad))
    assert first.mirror.exists()
    assert (await pipeline.plan(resolved_of(git_server, repo, good))).image == plan.image


async def test_low_free_space_refuses_before_writing(git_server, make_pipeline, state):
    repo = git_server.create("requirements")
    commit = git("rev-parse", "HEAD", cwd=repo.work)
    free_mb = shutil.disk_usage(state.parent).free // 1_000_000
    pipeline = make_pipeline(min_free_mb=free_mb + 1000)
    with pytest.raises(LaunchError) as e:
        await pipeline.plan(resolved_of(git_server, repo, commit))
    assert e.value.status_code == 507 and "low on disk space" in str(e.value)
    assert not (state / "git").exists() or not any((state / "git").iterdir())


async def test_archive_needs_room_for_the_files_it_will_hold(git_server, make_pipeline,
                                                             state):
    """The archive's size is known from the tree: a commit whose files would eat into the
    reserve is refused, although the disk has room for its (tiny) git objects."""
    repo = git_server.create("requirements")
    commit = commit_files(repo, 1, size=400_000_000)  # 400 MB of zeros: ~400 kB in git
    pipeline = make_pipeline()
    resolved = resolved_of(git_server, repo, commit)
    await pipeline.fetch(resolved)
    # keep a reserve that leaves room for the git objects but not for the archive
    pipeline.disk.min_free_mb = shutil.disk_usage(state).free // 1_000_000 - 150
    with pytest.raises(LaunchError) as e:
        await pipeline.content_archive(resolved)
    assert e.value.status_code == 507
    assert not list((state / "content").glob("*"))


async def test_budget_deletes_least_recently_used_archives_and_mirrors(
        git_server, make_pipeline, state):
    repos = [git_server.create("requirements") for _ in range(3)]
    resolved = [resolved_of(git_server, r, git("rev-parse", "HEAD", cwd=r.work))
                for r in repos]
    pipeline = make_pipeline(budget_gb=0)
    for r in resolved:
        await pipeline.content_archive(r)
    sizes = {p: s for _, s, p in pipeline.disk.entries()}
    assert len(sizes) == 6  # 3 mirrors, 3 archives
    # their last uses, oldest first: repo 0, then 1, then 2
    for age, r in zip((300, 200, 100), resolved, strict=True):
        for path in (pipeline.mirrors.path_for(r.spec.clone_url),
                     state / "content" / f"{r.commit}.tar"):
            os.utime(path, (time.time() - age, time.time() - age))
    # room for about two repositories' worth: repo 0 goes, unless a launch holds it
    two = sum(s for p, s in sizes.items() if resolved[0].commit not in p.name
              and p != pipeline.mirrors.path_for(resolved[0].spec.clone_url))
    pipeline.disk.budget_gb = two / 1e9
    lease = pipeline.disk.lease()
    lease.hold(pipeline.mirrors.path_for(resolved[0].spec.clone_url),
               state / "content" / f"{resolved[0].commit}.tar")
    await pipeline.disk.enforce()
    left = {p for _, _, p in pipeline.disk.entries()}
    assert pipeline.mirrors.path_for(resolved[0].spec.clone_url) in left  # held
    assert state / "content" / f"{resolved[0].commit}.tar" in left
    assert pipeline.mirrors.path_for(resolved[1].spec.clone_url) not in left  # next oldest
    assert state / "content" / f"{resolved[2].commit}.tar" in left
    # released, and room for one repository only: the held one is now the oldest
    lease.release()
    pipeline.disk.budget_gb = sum(s for _, s, p in pipeline.disk.entries()
                                  if resolved[2].commit in p.name
                                  or p == pipeline.mirrors.path_for(resolved[2].spec.clone_url)
                                  ) / 1e9
    await pipeline.disk.enforce()
    left = {p for _, _, p in pipeline.disk.entries()}
    assert not any(resolved[0].commit in p.name for p in left)
    assert state / "content" / f"{resolved[2].commit}.tar" in left  # the newest stays
    # a deleted mirror and archive come back on the next launch (a launch of its own)
    await pipeline.content_archive(resolved_of(git_server, repos[0], resolved[0].commit))
    assert (state / "content" / f"{resolved[0].commit}.tar").stat().st_size > 0


def test_budget_options_have_help():
    for name in ("budget_gb", "max_repo_files", "min_free_mb"):
        trait = RepoDiskBudget.class_traits()[name]
        assert trait.metadata.get("config") and "default" in trait.help, name


async def test_build_context_needs_room_for_the_files_it_will_hold(git_server, make_pipeline,
                                                                   state):
    """A commit whose fingerprint is known already (no checkout on the way) still gets its
    build context checked against the reserve before it is written."""
    from binderlab.builders.repo2docker import Builder

    class NoEngineBuilder(Builder):
        async def image_ready(self, name, key):
            return False

        async def run_build(self, build, context, labels):
            raise AssertionError("the build must not start")

    repo = git_server.create("requirements")
    commit = commit_files(repo, 1, size=400_000_000)
    pipeline = make_pipeline()
    pipeline.builder = NoEngineBuilder(engine=None, work_dir=state / "build")
    resolved = resolved_of(git_server, repo, commit)
    await pipeline.plan(resolved)  # the fingerprint is now in the index
    pipeline.disk.min_free_mb = shutil.disk_usage(state).free // 1_000_000 - 150
    events = [e async for e in pipeline.build_events(resolved)]
    assert events[-1]["phase"] == "failed" and "low on disk space" in events[-1]["message"]
    assert inodes_under(state / "build") == 1  # no context was written
