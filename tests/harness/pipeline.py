"""A Pipeline wired to real parts that need no engine (git mirrors, fingerprint workers, the
cache index, the disk budget) for tests of the steps before a build: plan, content_archive."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from binderlab.builders.cacheindex import CacheIndex
from binderlab.fingerprint.worker import FingerprintWorker
from binderlab.launch.pipeline import Pipeline
from binderlab.repos.diskbudget import RepoDiskBudget
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import GitHubRepoProvider, ResolvedRepo

HARNESS_CONFIG = Path(__file__).parent / "repo2docker_config.py"


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
async def make_pipeline(state):
    made = []

    def make(max_repo_bytes: int = 0, r2d_args: list[str] | None = None,
             **budget) -> Pipeline:
        mirrors = RepoMirrors(state / "git", timeout=60)
        disk = RepoDiskBudget(state / "git", state / "content", **budget)
        workers = FingerprintWorker(["--config", str(HARNESS_CONFIG)] if r2d_args is None
                                    else r2d_args)
        made.append(workers)
        (state / "build").mkdir(parents=True, exist_ok=True)
        return Pipeline(builder=SimpleNamespace(user_id=1000), launcher=None, mirrors=mirrors,
                        fingerprints=workers, index=CacheIndex(state / "cache.sqlite"),
                        config_digest="test", image_prefix="binderlabtest/",
                        blocked_networks=[], public_url="http://127.0.0.1/",
                        work_dir=state / "build", content_dir=state / "content",
                        max_repo_bytes=max_repo_bytes, disk=disk)

    yield make
    for workers in made:
        await workers.aclose()


def resolved_of(git_server, repo, commit: str) -> ResolvedRepo:
    provider = GitHubRepoProvider(host=git_server.url, allowed_protocols=["https", "http"])
    spec = provider.parse(f"{repo.gh_spec}/main")
    return ResolvedRepo(spec, commit, ("http",))


