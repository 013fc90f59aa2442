"""repo2docker's view of a conda repository. Its conda build pack downloads micromamba and
conda-forge packages, which this machine cannot reach (TESTING.md), so the build stops at
the Dockerfile repo2docker generates; with network access the same command builds it."""

import asyncio
import subprocess
from pathlib import Path

import docker.errors
import pytest

from binderlab.builders.repo2docker import Repo2DockerBuilder
from binderlab.repos.mirrors import RepoMirrors

pytestmark = pytest.mark.docker


def test_environment_yml_repo_generates_its_environment(git_server, tmp_path, docker_client):
    repo = git_server.create("environment-yml")
    builder = Repo2DockerBuilder(engine=None, work_dir=tmp_path)
    mirrors = RepoMirrors(tmp_path / "git", timeout=60)

    async def checkout() -> Path:
        commit = repo.commit({}, "launch me")
        mirror = await mirrors.fetch(repo.url, commit, ["http"])
        await mirrors.export(mirror, commit, tmp_path / "context")
        return tmp_path / "context"

    context = asyncio.run(checkout())
    cmd = builder.command("binderlab-test/never-built", context, {"binderlab.key": "k"})
    cmd[-1:-1] = ["--no-build", "--debug"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    dockerfile = result.stdout + result.stderr
    assert "Building conda environment for python=3.11" in dockerfile
    # the environment file goes in before the repository content, then is installed
    env_copy = dockerfile.index("COPY --chown=1000:1000 src/environment.yml")
    assert env_copy < dockerfile.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"' in dockerfile
    assert "USER ${NB_USER}" in dockerfile
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get("binderlab-test/never-built")
