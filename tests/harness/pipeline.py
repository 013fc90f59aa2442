"""A Pipeline wired to real parts that need no engine (git mirrors, fingerprint workers, the
cache index, the disk budget) for tests of the steps before a build: plan, content_archive.

The tests drive single steps of one launch (launch/context.LaunchContext): ``StepPipeline``
fetches the commit first when a step needs the mirror and the test did not fetch it.
"""

from pathlib import Path

import pytest

from binderlab.builders.base import Builder
from binderlab.builders.cacheindex import CacheIndex
from binderlab.fingerprint.worker import FingerprintWorker
from binderlab.launch.context import LaunchContext, LaunchRequest
from binderlab.launch.pipeline import Pipeline
from binderlab.repos.diskbudget import RepoDiskBudget
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import GitHubRepoProvider, ResolvedRepo

HARNESS_CONFIG = Path(__file__).parent / "repo2docker_config.py"


class StepPipeline(Pipeline):
    async def plan(self, ctx: LaunchContext):
        if ctx.mirror is None:
            await self.fetch(ctx)
        return await super().plan(ctx)

    async def content_archive(self, ctx: LaunchContext) -> None:
        if ctx.mirror is None:
            await self.fetch(ctx)
        await super().content_archive(ctx)

    def build_events(self, ctx: LaunchContext):
        """The image step alone: find or build ctx's planned image."""
        return self.image(ctx)


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
        builder = Builder(engine=None, work_dir=state / "build", image_prefix="binderlabtest/")
        return StepPipeline(builder=builder, launcher=None, mirrors=mirrors,
                        fingerprints=workers, index=CacheIndex(state / "cache.sqlite"),
                        config_digest="test", image_prefix="binderlabtest/",
                        blocked_networks=[], public_url="http://127.0.0.1/",
                        work_dir=state / "build", content_dir=state / "content",
                        max_repo_bytes=max_repo_bytes, disk=disk)

    yield make
    for workers in made:
        await workers.aclose()


def resolved_of(git_server, repo, commit: str) -> LaunchContext:
    """A launch of ``repo`` whose ref resolved to ``commit`` (the step before the fetch)."""
    provider = GitHubRepoProvider(host=git_server.url, allowed_protocols=["https", "http"])
    spec = provider.parse(f"{repo.gh_spec}/main")
    ctx = LaunchContext(LaunchRequest(provider, f"{repo.gh_spec}/main", spec=spec), spec,
                        f"gh/{repo.gh_spec}")
    ctx.resolved = ResolvedRepo(spec, commit, ("http",))
    return ctx


