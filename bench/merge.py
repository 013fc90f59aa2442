"""The cost of the merge a logged-in launch adds: BinderLabSpawner.prepare_storage (the
merge container of the session image, with the commit's files, into an existing volume)
against the floor of any container: `create + start + wait` of the same image running
`true`, interleaved in one run (a, b, a, b, ...) after one uncounted warm-up of each.

The repository is --files text files (default 300, 4 kB each) under a few folders; each
counted merge is of a new commit that changes a tenth of them, the user having changed
another tenth (so every rule of the merge runs: updates, kept files, conflicts). Prints
p50/p95 of each and the ratio p50(merge)/p50(floor); JSON to bench/results/merge-<UTC>.json.
The volume and every container are removed at the end.

Run from the repository root: python3 -m bench.merge --runs 10
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import docker
from traitlets.config import Config

from bench.launch import percentile
from binderlab.spawners.docker import BinderLabSpawner
from tests.harness.service import BASE_IMAGE

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SERVER = "gh-bench-merge-00000000"


class BenchSpawner(BinderLabSpawner):
    @property
    def name(self):
        return SERVER


def write_commit(content_dir: Path, commit: str, files: dict[str, str]) -> None:
    with tarfile.open(content_dir / f"{commit}.tar", "w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))


def floor(client: docker.DockerClient) -> float:
    t0 = time.perf_counter()
    c = client.containers.create(BASE_IMAGE, ["true"], network_mode="none",
                                 labels={"binderlab.bench": "merge-floor"})
    try:
        c.start()
        c.wait()
        return time.perf_counter() - t0
    finally:
        c.remove(force=True)


async def main_async(args) -> int:
    client = docker.from_env()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = f"binderlab-bench-merge-{stamp.lower()}"
    runs = {"merge": [], "floor": []}
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        config = Config()
        config.BinderLabSpawner.content_dir = tmp
        config.BinderLabSpawner.persistent_storage = True
        config.BinderLabSpawner.volume_name_template = tag + "-{username}"
        config.DockerSpawner.prefix = tag
        spawner = BenchSpawner(config=config, user=SimpleNamespace(name="bench", id=1,
                                                                   url="/user/bench/"))
        spawner.image = BASE_IMAGE
        files = {f"week{i % 10}/file{i}.md": f"version 0 of {i}\n" * 200
                 for i in range(args.files)}
        try:
            for n in range(args.runs + 1):  # the first round warms up (and creates the volume)
                for i in range(n % 10, args.files, 10):
                    files[f"week{i % 10}/file{i}.md"] = f"version {n + 1} of {i}\n" * 200
                commit = f"{n + 1:040x}"
                write_commit(Path(tmp), commit, files)
                t0 = time.perf_counter()
                await spawner.prepare_storage(commit, 1000)
                merge = time.perf_counter() - t0
                # the user edits another tenth before the next launch
                root = Path(client.volumes.get(spawner.volume_name).attrs["Mountpoint"])
                for i in range((n + 5) % 10, args.files, 10):
                    (root / SERVER / f"week{i % 10}/file{i}.md").write_text("mine\n")
                base = await asyncio.get_running_loop().run_in_executor(None, floor, client)
                if n:
                    runs["merge"].append(merge)
                    runs["floor"].append(base)
                    print(f"run {n}/{args.runs}: merge {merge:.2f} s, floor {base:.2f} s "
                          f"({spawner._storage_messages[0]})", flush=True)
        finally:
            for v in client.volumes.list(filters={"name": tag}):
                v.remove(force=True)
    stats = {k: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "n": len(v)}
             for k, v in runs.items()}
    ratio = stats["merge"]["p50"] / stats["floor"]["p50"]
    for k, s in stats.items():
        print(f"{k:>6}: p50 {s['p50']:.2f} s, p95 {s['p95']:.2f} s ({s['n']} runs)")
    print(f"ratio (p50): merge/floor {ratio:.2f}")
    output = args.output or RESULTS_DIR / f"merge-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    import json
    output.write_text(json.dumps({"benchmark": "merge", "time": stamp, "files": args.files,
                                  "summary": stats, "ratio": ratio, "results": runs},
                                 indent=2) + "\n")
    print(f"results: {output}")
    left = client.volumes.list(filters={"name": tag}) + [
        c["Names"] for c in client.api.containers(all=True)
        if any(n.startswith("/" + tag) for n in c["Names"])]
    client.close()
    if left:
        print(f"LEFTOVERS: {left}", file=sys.stderr)
        return 1
    print("cleanup: no volume or container of this run remains")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="counted runs (default 10)")
    parser.add_argument("--files", type=int, default=300, help="files in the repository")
    parser.add_argument("--output", type=Path, help="JSON result path")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
