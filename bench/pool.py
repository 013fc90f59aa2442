"""Warm-pool benchmark: pooled and unpooled cached launches against the `docker run` floor,
and a class of launches claiming a pool filled for it.

(a) pooled: GET <service>/build/gh/<A>/main (an environment-keyed image pinned in the pool,
    c.WarmPool.pinned) as an event stream until `ready`, then api/status with the token
    until 200: the launch claims a warm session and copies the commit's files into it.
(b) floor of A: `docker run` of A's image (jupyter lab) until api/status answers 200.
(c) unpooled: the same for repository B, whose image (a Dockerfile repository, keyed by its
    tree) the pool does not hold: resolve + cache hit + JupyterHub spawn.
(d) floor of B.
Runs are interleaved (a, b, c, d, ...); before each one the bench waits until the pool is
full again and starts nothing (its refills would compete for the cores otherwise). Each
session is stopped before the next run.

Course page: the example course page (frontend/examples/course-page.html) with its thebe
block pointing at A, served from another origin on 127.0.0.1, opened in Chromium with thebe
0.9.3 by tests/browser/course_page.mjs: the time from the click on "Activate" to the first
cell's output (the click on the cell's run button included), pooled, --browser-runs times.

Class: the service is restarted with A pinned to --class-size warm sessions; once they are
warm, --class-size launches of A start spread evenly over --class-spread seconds; each is
timed from its request to api/status 200. All must be ready; p50/p95 are reported.

Everything runs in the test harness's `binderlab up` (own ports, own image prefix) and is
removed at the end; the bench fails if any container or image of its run remains.

Run from the repository root: python3 -m bench.pool --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker

from bench.launch import (
    FLOOR_NAME,
    RESULTS_DIR,
    hub_delete,
    launch_floor,
    leftovers_of,
    percentile,
    poll_status,
    service_run,
    write_result,
)
from tests.harness.gitserver import GitServer
from tests.harness.service import BASE_IMAGE, Service
from tests.harness.sse import follow

POOL_CONFIG = """
c.BinderLab.warm_pool = True
c.WarmPool.rate_window = 0  # only what the bench pins is pooled
c.WarmPool.refill_interval = 0.2
c.WarmPool.memory_budget = {budget}
c.WarmPool.pinned = {pinned!r}
"""


def own_containers(client: docker.DockerClient, prefix: str) -> list[str]:
    """This run's containers, from the low-level list (one call: other runs remove their
    containers meanwhile, which must not fail this check)."""
    return sorted(c["Names"][0].lstrip("/") for c in client.api.containers(all=True)
                  if (c.get("Image") or "").startswith(prefix)
                  or any(n.lstrip("/").startswith(FLOOR_NAME) for n in c["Names"]))


def metric(svc: Service, name: str) -> float:
    return svc.metric(name)


def wait_pool(svc: Service, warm: int, timeout: float) -> float:
    """Wait until the pool holds ``warm`` sessions and starts none; return the seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if metric(svc, "binderlab_pool_warm_sessions") >= warm and \
                metric(svc, "binderlab_pool_starting_sessions") == 0:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise TimeoutError(f"the pool did not reach {warm} warm sessions in {timeout} s")


def stop_user(svc: Service, username: str) -> None:
    hub_delete(svc, f"users/{username}", tries=40, wait=0.5)


def launch(svc: Service, spec: str, interval: float, timeout: float,
           stop: bool = True) -> dict[str, Any]:
    """One launch: request -> ready -> api/status 200 with the ready event's token."""
    t0 = time.perf_counter()
    events = follow(f"{svc.url}build/gh/{spec}/main", timeout=timeout)
    ready = events[-1]
    if ready.get("phase") != "ready":
        return {"ok": False, "error": ready.get("message"), "seconds": None}
    t_ready = time.perf_counter() - t0
    poll_status(ready["url"], ready["token"], interval, time.monotonic() + timeout)
    total = time.perf_counter() - t0
    username = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    if stop:
        stop_user(svc, username)
    return {"ok": True, "seconds": total, "ready_seconds": t_ready, "username": username,
            "pooled": "Claimed a warm session" in "".join(e.get("message", "")
                                                         for e in events)}


ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
COURSE_PAGE = ROOT / "frontend" / "examples" / "course-page.html"
EXPECTED_OUTPUT = "37 °C =  98.6 °F"


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def course_page(svc: Service, spec: str) -> str:
    """The example course page with its thebe block for repository ``spec``."""
    owner, name = spec.split("/")[:2]
    config = {"requestKernel": True,
              "binderOptions": {"binderUrl": svc.url.rstrip("/"), "repo": f"{owner}/{name}",
                                "ref": "main", "repoProvider": "github"},
              "kernelOptions": {"kernelName": "python3"}}
    head = (f'<script type="text/x-thebe-config">{json.dumps(config)}</script>\n'
            f'<link rel="stylesheet" href="{svc.url}static/vendor/thebe/thebe.css">\n'
            f'<script src="{svc.url}static/vendor/thebe/index.js"></script>')
    page, n = re.subn(r"(<!-- binderlab:thebe-head -->\n).*?(\n\s*<!-- /binderlab:thebe-head -->)",
                      lambda m: m.group(1) + head + m.group(2), COURSE_PAGE.read_text(),
                      flags=re.S)
    assert n == 1
    return page


def course_click(node: str, page_url: str, shots: Path, timeout: float) -> dict[str, Any]:
    """One browser run: click "Activate" -> the first cell's output."""
    shutil.rmtree(shots, ignore_errors=True)
    proc = subprocess.run([node, str(BROWSER_DIR / "course_page.mjs"), page_url, str(shots),
                           "--expect-output", EXPECTED_OUTPUT, "--timeout-s", str(int(timeout))],
                          cwd=BROWSER_DIR, capture_output=True, text=True,
                          timeout=timeout + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": proc.stderr[-2000:]}
    if not result.get("ok"):
        return {"ok": False, "error": result.get("error"), "seconds": None}
    t = result["timings"]
    return {"ok": True, "seconds": t["cellRun"] - t["activated"],
            "kernel_connected_seconds": t["kernelConnected"] - t["activated"],
            "output": result.get("output")}


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "min": min(values), "max": max(values)} if values else {"n": 0}


def run_class(svc: Service, spec: str, size: int, spread: float, interval: float,
              timeout: float) -> dict[str, Any]:
    results: list[dict] = [{}] * size
    threads = []

    def one(i):
        try:
            results[i] = launch(svc, spec, interval, timeout, stop=False)
        except Exception as e:  # counted as not ready, with its reason
            results[i] = {"ok": False, "error": repr(e), "seconds": None}

    t0 = time.monotonic()
    for i in range(size):
        time.sleep(max(0.0, t0 + i * spread / max(size - 1, 1) - time.monotonic()))
        thread = threading.Thread(target=one, args=(i,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    window = time.monotonic() - t0
    ready = [r for r in results if r.get("ok")]
    for r in ready:
        stop_user(svc, r["username"])
    return {"launches": size, "spread_s": spread, "all_done_s": window,
            "ready": len(ready), "pooled": sum(1 for r in ready if r["pooled"]),
            "errors": [r.get("error") for r in results if not r.get("ok")],
            "seconds": stats([r["seconds"] for r in ready])}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.pool",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="Counted runs of each of (a)-(d), interleaved (default %(default)s).")
    parser.add_argument("--class-size", type=int, default=40,
                        help="Launches of the class scenario and the pool's target for it "
                        "(default %(default)s; 0 skips it).")
    parser.add_argument("--class-spread", type=float, default=30,
                        help="Seconds over which the class's launches start (default "
                        "%(default)s).")
    parser.add_argument("--browser-runs", type=int, default=5,
                        help="Course-page clicks in Chromium, pooled (default %(default)s; "
                        "0 skips them).")
    parser.add_argument("--poll-interval", type=float, default=0.02,
                        help="Seconds between api/status polls (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=180,
                        help="Seconds one launch may take (default %(default)s).")
    parser.add_argument("--fill-timeout", type=float, default=900,
                        help="Seconds the pool may take to fill (default %(default)s).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results. Default: bench/results/pool-<UTC time>.json.")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)
    budget = max(args.class_size, 4) * (256 << 20) + (1 << 30)
    runs: dict[str, list] = {"pooled": [], "floor_pooled_image": [], "unpooled": [],
                             "floor_unpooled_image": []}
    result: dict[str, Any] = {"benchmark": "pool", "time": stamp, "runs": args.runs,
                              "machine": {"cpus": os.cpu_count(),
                                          "docker_engine": client.version()["Version"]}}
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-pool-") as tmp:
        git = GitServer(Path(tmp) / "git")
        svc = Service(Path(tmp) / "service", git.url, "up")
        base_config = svc.config.read_text()
        with service_run(client, svc, git, result):
            a = git.create("requirements", owner="bench").gh_spec
            b = git.create("dockerfile", owner="bench").gh_spec
            svc.config.write_text(base_config + POOL_CONFIG.format(budget=budget, pinned={}))
            svc.start()
            built = {}
            for spec in (a, b):  # build both (not counted)
                events = follow(f"{svc.url}build/gh/{spec}/main", timeout=900)
                assert events[-1]["phase"] == "ready", events[-1]
                built[spec] = events[-1]["image"]
                stop_user(svc, events[-1]["url"].rstrip("/").rsplit("/", 1)[-1])
            svc.stop()
            svc.config.write_text(base_config + POOL_CONFIG.format(
                budget=budget, pinned={built[a]: 1}))
            svc.start()
            print(f"service {svc.url}; pooled {built[a]}; unpooled {built[b]}", flush=True)
            wait_pool(svc, 1, args.fill_timeout)
            launch(svc, a, args.poll_interval, args.timeout)  # warm-ups (not counted)
            launch(svc, b, args.poll_interval, args.timeout)
            for i in range(args.runs):
                steps = (("pooled", lambda: launch(svc, a, args.poll_interval, args.timeout)),
                         ("floor_pooled_image", lambda: launch_floor(
                             client, built[a], args.poll_interval, args.timeout)),
                         ("unpooled", lambda: launch(svc, b, args.poll_interval,
                                                     args.timeout)),
                         ("floor_unpooled_image", lambda: launch_floor(
                             client, built[b], args.poll_interval, args.timeout)))
                for name, step in steps:
                    wait_pool(svc, 1, args.fill_timeout)
                    runs[name].append(step())
                print(f"run {i + 1}/{args.runs}: " + ", ".join(
                    f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items()), flush=True)
            if args.browser_runs:
                node = shutil.which("node")
                site = Path(tmp) / "site"
                site.mkdir()
                (site / "course.html").write_text(course_page(svc, a))
                httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(QuietFiles, directory=str(site)))
                threading.Thread(target=httpd.serve_forever, daemon=True).start()
                page_url = f"http://127.0.0.1:{httpd.server_address[1]}/course.html"
                try:
                    # the default pool, then with the pre-started kernel handed over
                    for kind, extra in (("course_click_pooled", ""),
                                        ("course_click_pooled_kernel_handed_over",
                                         "c.HubPoolBackend.handover_kernel = True\n")):
                        if extra:
                            svc.stop()
                            svc.config.write_text(base_config + POOL_CONFIG.format(
                                budget=budget, pinned={built[a]: 1}) + extra)
                            svc.start()
                        for i in range(args.browser_runs):
                            wait_pool(svc, 1, args.fill_timeout)
                            run = course_click(node, page_url, Path(tmp) / f"shots{i}",
                                               args.timeout)
                            runs.setdefault(kind, []).append(run)
                            print(f"{kind} {i + 1}/{args.browser_runs}: {run}", flush=True)
                finally:
                    httpd.shutdown()
                    httpd.server_close()
            result["pooled_runs_that_claimed"] = sum(1 for r in runs["pooled"] if r["pooled"])
            result["unpooled_runs_that_claimed"] = sum(1 for r in runs["unpooled"]
                                                       if r["pooled"])
            if args.class_size:
                svc.stop()
                svc.config.write_text(base_config + POOL_CONFIG.format(
                    budget=budget, pinned={built[a]: args.class_size}))
                svc.start()
                fill = wait_pool(svc, args.class_size, args.fill_timeout)
                print(f"pool filled to {args.class_size} in {fill:.0f} s", flush=True)
                result["class"] = run_class(svc, a, args.class_size, args.class_spread,
                                            args.poll_interval, args.timeout)
                result["class"]["fill_seconds"] = fill
    result.update(leftovers_of(client, svc.image_prefix))
    summary = {k: stats([r["seconds"] for r in v if r.get("ok", True)])
               for k, v in runs.items()}
    summary["failed_runs"] = {k: [r.get("error") for r in v if not r.get("ok", True)]
                              for k, v in runs.items()}
    summary["ratios_p50"] = {
        "pooled / floor": summary["pooled"]["p50"] / summary["floor_pooled_image"]["p50"],
        "unpooled / floor": summary["unpooled"]["p50"]
        / summary["floor_unpooled_image"]["p50"],
    }
    result["summary"] = summary
    result["results"] = runs
    for k, v in summary.items():
        print(f"{k}: {v}")
    if "class" in result:
        print(f"class: {result['class']}")
    return write_result(result, args.output or RESULTS_DIR / f"pool-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
