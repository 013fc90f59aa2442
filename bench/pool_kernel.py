"""Does the warm pool's kernel pre-start help? The first kernel of a session, timed.

For each run: a launch that claims a pooled session (its server started and stopped one
kernel before it counted as warm) and a launch of the same image with the pool emptied of it
(a fresh server that never started a kernel); in each, the time from `POST api/kernels` to
the kernel's `kernel_info_reply` on its websocket — what thebe waits for after `ready`.

Two services on the same engine, each with its own image prefix and its own build of the
repository (the same layers: BuildKit's cache): one with its pool pinned to the image, one
without a pool. Interleaved; each session stopped after its run; nothing is left behind.

Run from the repository root: python3 -m bench.pool_kernel --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import requests

from bench.launch import RESULTS_DIR, cleanup, write_result
from bench.pool import POOL_CONFIG, launch, own_containers, stats, stop_user, wait_pool
from binderlab.sessions.pooled import kernel_info
from tests.harness.gitserver import GitServer
from tests.harness.service import Service
from tests.harness.sse import follow


def first_kernel(ready_url: str, token: str) -> float:
    """Seconds from POST api/kernels to the kernel's kernel_info reply."""
    headers = {"Authorization": f"token {token}"}
    t0 = time.perf_counter()
    kernel = requests.post(ready_url + "api/kernels", headers=headers, data="{}",
                           timeout=120).json()
    asyncio.run(kernel_info(ready_url.replace("http", "ws", 1)
                            + f"api/kernels/{kernel['id']}/channels", headers))
    seconds = time.perf_counter() - t0
    requests.delete(ready_url + f"api/kernels/{kernel['id']}", headers=headers, timeout=60)
    return seconds


def timed_launch(svc: Service, spec: str) -> dict:
    events = follow(f"{svc.url}build/gh/{spec}/main", timeout=300)
    ready = events[-1]
    assert ready["phase"] == "ready", ready
    launch_user = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    requests.get(ready["url"] + "api/status", headers={"Authorization":
                                                       f"token {ready['token']}"}, timeout=60)
    seconds = first_kernel(ready["url"], ready["token"])
    stop_user(svc, launch_user)
    return {"seconds": seconds, "pooled": "Claimed a warm session" in json.dumps(events)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.pool_kernel",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="Runs of each (default 5).")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    runs: dict[str, list] = {"pooled_prestarted": [], "fresh_server": []}
    result: dict = {"benchmark": "pool_kernel", "time": stamp, "runs": args.runs}
    budget = 2 << 30
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-poolk-") as tmp:
        git = GitServer(Path(tmp) / "git")
        pooled = Service(Path(tmp) / "pooled", git.url, "up")
        fresh = Service(Path(tmp) / "fresh", git.url, "up")
        services = (pooled, fresh)
        base = pooled.config.read_text()
        try:
            spec = git.create("requirements", owner="benchk").gh_spec
            pooled.config.write_text(base + POOL_CONFIG.format(budget=budget, pinned={}))
            for svc in services:  # each builds the image under its own prefix
                svc.start()
                launch(svc, spec, 0.05, 900)
            image = follow(f"{pooled.url}build/gh/{spec}/main", timeout=300)[-1]
            stop_user(pooled, image["url"].rstrip("/").rsplit("/", 1)[-1])
            pooled.stop()
            pooled.config.write_text(base + POOL_CONFIG.format(
                budget=budget, pinned={image["image"]: 1}))
            pooled.start()
            launch(fresh, spec, 0.05, 300)  # warm-ups, not counted
            wait_pool(pooled, 1, 600)
            timed_launch(pooled, spec)
            for i in range(args.runs):
                wait_pool(pooled, 1, 600)
                runs["fresh_server"].append(timed_launch(fresh, spec))
                wait_pool(pooled, 1, 600)
                runs["pooled_prestarted"].append(timed_launch(pooled, spec))
                print(f"run {i + 1}/{args.runs}: fresh {runs['fresh_server'][-1]}, pooled "
                      f"{runs['pooled_prestarted'][-1]}", flush=True)
        except BaseException:
            for svc in services:
                print(svc.log()[-3000:], file=sys.stderr)
            raise
        finally:
            for svc in services:
                svc.stop()
            git.close()
            result["left_by_service"] = [n for svc in services
                                         for n in own_containers(client, svc.image_prefix)]
            for svc in services:
                cleanup(client, svc.image_prefix)
    result["leftover_containers"] = [n for svc in services
                                     for n in own_containers(client, svc.image_prefix)]
    result["leftover_images"] = [t for i in client.images.list() for t in i.tags
                                 if t.startswith((pooled.image_prefix, fresh.image_prefix))]
    result["summary"] = {k: stats([r["seconds"] for r in v]) for k, v in runs.items()}
    result["summary"]["ratio_p50 pooled/fresh"] = (
        result["summary"]["pooled_prestarted"]["p50"] / result["summary"]["fresh_server"]["p50"])
    result["results"] = runs
    print(json.dumps(result["summary"], indent=1))
    return write_result(result, args.output or RESULTS_DIR / f"pool-kernel-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
