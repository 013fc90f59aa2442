# ruff: noqa: F811  (the fixtures from tests.harness.pipeline are named as arguments)
"""Repositories built to break the steps before a build: a symlink loop, YAML alias bombs.
Real git on 127.0.0.1, the real pipeline steps and fingerprint workers; no engine."""

import os

import pytest

from binderlab.errors import LaunchError
from tests.harness.gitserver import git
from tests.harness.pipeline import make_pipeline, resolved_of, state  # noqa: F401


def alias_bomb(levels: int = 9) -> str:
    """A valid environment.yml with 9 aliases per level: 9**10 strings once expanded."""
    lines = ["dependencies: [python=3.11]", "x-bomb:", "  l0: &l0 [" + ", ".join(["ha"] * 9) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def publish_with(repo, files: dict[str, str], links: dict[str, str] = {}) -> str:  # noqa: B006
    for name, content in files.items():
        (repo.work / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.work / name).write_text(content)
    for name, target in links.items():
        (repo.work / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo.work / name)
    return repo.commit({}, message="hostile")


@pytest.mark.parametrize("links", [
    {"loop": "loop"},  # ln -s loop loop
    {"a": "b", "b": "a"},
    {"binder/requirements.txt": "requirements.txt", "requirements.txt": "binder/requirements.txt"},
    {"data/loop": "../data/loop"},
])
async def test_symlink_loops_launch(git_server, make_pipeline, state, links):
    repo = git_server.create("requirements")
    if "requirements.txt" in links:
        git("rm", "-q", "requirements.txt", cwd=repo.work)
    commit = publish_with(repo, {}, links)
    pipeline = make_pipeline()
    resolved = resolved_of(git_server, repo, commit)
    plan = await pipeline.plan(resolved)  # no 500 "Symlink loop"
    assert plan.kind in ("env", "tree")
    await pipeline.content_archive(resolved)  # the session gets the links as they are
    assert (state / "content" / f"{commit}.tar").stat().st_size > 0


@pytest.mark.parametrize("where", ["environment.yml", "binder/environment.yml"])
# repo2docker's own build packs (conda reads environment.yml); the test config has none
async def test_alias_bomb_is_refused_with_a_clear_message(git_server, make_pipeline, state,
                                                          where):
    repo = git_server.create("requirements")
    git("rm", "-q", "requirements.txt", cwd=repo.work)
    commit = publish_with(repo, {where: alias_bomb()})
    with pytest.raises(LaunchError) as e:
        await make_pipeline(r2d_args=[]).plan(resolved_of(git_server, repo, commit))
    assert e.value.status_code == 422
    assert where in str(e.value) and "aliases" in str(e.value)


async def test_alias_bomb_is_refused_even_when_the_key_is_the_tree(git_server, make_pipeline,
                                                                   state):
    """With a postBuild the image is keyed by tree, but the build would still expand it."""
    repo = git_server.create("requirements")
    git("rm", "-q", "requirements.txt", cwd=repo.work)
    commit = publish_with(repo, {"environment.yml": alias_bomb(), "postBuild": "echo hi\n"})
    with pytest.raises(LaunchError) as e:
        await make_pipeline(r2d_args=[]).plan(resolved_of(git_server, repo, commit))
    assert e.value.status_code == 422


async def test_modest_aliases_are_fine(git_server, make_pipeline, state):
    repo = git_server.create("requirements")
    git("rm", "-q", "requirements.txt", cwd=repo.work)
    commit = publish_with(repo, {"environment.yml": (
        "channels: &ch [conda-forge]\ndependencies: [python=3.11]\nx-extra: *ch\n")})
    plan = await make_pipeline(r2d_args=[]).plan(resolved_of(git_server, repo, commit))
    assert plan.kind in ("env", "tree")
