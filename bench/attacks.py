"""What the resource attacks of issue 12 get now, measured on this machine.

- a 20 MB environment.yml (repo2docker's default build packs, which parse it): seconds to
  the answer and the worker's peak memory;
- the fingerprint worker killed with SIGKILL: the next fingerprint's answer;
- a commit of 300,000 empty files and one of a 400 MB file of zeros: seconds to the answer,
  files and bytes written to the state directory.

Everything runs here: a git server on 127.0.0.1, the real mirrors, workers and pipeline
steps; nothing is built. Run from the repository root: python3 -m bench.attacks
"""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from binderlab.builders.cacheindex import CacheIndex
from binderlab.errors import LaunchError
from binderlab.fingerprint.worker import FingerprintWorker
from binderlab.launch.pipeline import Pipeline
from binderlab.repos.diskbudget import RepoDiskBudget
from binderlab.repos.mirrors import RepoMirrors
from binderlab.repos.providers import GitHubRepoProvider, ResolvedRepo
from tests.harness.gitserver import GitServer, git


def peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    return 0


def usage(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, dirs, names in os.walk(path):
        files += len(names) + len(dirs)
        size += sum(os.lstat(os.path.join(root, n)).st_blocks * 512 for n in names)
    return files, size


async def answer(coro) -> str:
    try:
        result = await coro
        return f"ok ({getattr(result, 'kind', '')})"
    except LaunchError as e:
        return f"{e.status_code}: {e}"


async def fingerprint_attacks(tmp: Path) -> None:
    workers = FingerprintWorker([])
    big = tmp / "big"
    big.mkdir()
    with open(big / "environment.yml", "w") as f:
        f.write("dependencies:\n")
        for i in range(700_000):
            f.write(f"  - package-{i}=1.0.{i}\n")
    size = (big / "environment.yml").stat().st_size
    started = time.monotonic()
    said = await answer(workers.compute(big, "b" * 40))
    (proc,) = workers._all
    print(f"{size / 1e6:.0f} MB environment.yml: {time.monotonic() - started:.2f} s, worker "
          f"peak {peak_kb(proc.pid) / 1024:.0f} MB -> {said}")
    good = tmp / "good"
    good.mkdir()
    (good / "requirements.txt").write_text("numpy==1.26.4\n")
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    started = time.monotonic()
    said = await answer(workers.compute(good, "g" * 40))
    print(f"worker killed (SIGKILL), next fingerprint: {time.monotonic() - started:.2f} s "
          f"(a new worker starts) -> {said}")
    await workers.aclose()


async def disk_attacks(tmp: Path) -> None:
    server = GitServer(tmp / "git")
    state = tmp / "state"
    (state / "build").mkdir(parents=True)
    mirrors = RepoMirrors(state / "git", timeout=600)
    workers = FingerprintWorker([])
    pipeline = Pipeline(builder=SimpleNamespace(user_id=1000), launcher=None, mirrors=mirrors,
                        fingerprints=workers, index=CacheIndex(state / "cache.sqlite"),
                        config_digest="bench", image_prefix="bench/", blocked_networks=[],
                        public_url="http://127.0.0.1/", work_dir=state / "build",
                        content_dir=state / "content", max_repo_bytes=2000 * 10**6,
                        disk=RepoDiskBudget(state / "git", state / "content"))
    provider = GitHubRepoProvider(host=server.url, allowed_protocols=["https", "http"])
    try:
        for label, make in (("300,000 empty files", "files"), ("a 400 MB file of zeros", "zeros")):
            repo = server.create("requirements")
            folder = repo.work / "x"
            folder.mkdir()
            if make == "files":
                for i in range(300_000):
                    (folder / str(i)).touch()
            else:
                with open(folder / "zeros", "wb") as f:
                    f.truncate(400_000_000)
            commit = repo.commit({}, message=label)
            pushed = subprocess.run(["du", "-sk", str(repo.bare)], capture_output=True,
                                    text=True).stdout.split()[0]
            resolved = ResolvedRepo(provider.parse(f"{repo.gh_spec}/main"), commit, ("http",))
            started = time.monotonic()
            said = await answer(pipeline.plan(resolved))
            took = time.monotonic() - started
            files, size = usage(state)
            print(f"{label} ({pushed} kB in git): plan {took:.2f} s -> {said}; state dir "
                  f"now {files} entries, {size / 1e6:.1f} MB")
            if said.startswith("ok"):
                started = time.monotonic()
                said = await answer(pipeline.content_archive(resolved))
                files, size = usage(state)
                print(f"  content archive: {time.monotonic() - started:.2f} s -> {said}; state "
                      f"dir {files} entries, {size / 1e6:.1f} MB (under the "
                      f"{pipeline.disk.budget_gb:g} GB budget, least recently used deleted)")
            git("gc", "-q", "--prune=now", cwd=repo.work)
            shutil.rmtree(repo.work, ignore_errors=True)
    finally:
        await workers.aclose()
        server.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(fingerprint_attacks(Path(tmp)))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(disk_attacks(Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
