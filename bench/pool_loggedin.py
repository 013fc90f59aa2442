"""Logged-in launches served by the warm pool (issue 14 with issue 13's persistent files),
against the same user's unpooled launch and the `docker run` floor, in one run.

One real `binderlab up` (tests/harness) with c.BinderLab.authentication = "required",
JupyterHub's DummyAuthenticator and c.BinderLab.warm_pool = True, the launch-rate source
off: only the image the bench pins is pooled, one warm session. The repository is
tests/repos/requirements with its requirements.txt naming a package the base image has
(`jupyterlab`): an environment-keyed image, as a course's is, whose build downloads
nothing. One user logs in (the OAuth redirects are not timed); their first launch builds
the image and creates their volume (not counted: a first launch is never pooled). The
service is then restarted with the image pinned. After an uncounted warm-up round, rounds
of, interleaved:

(a) pooled: the user's launch claims the warm session: their volume's folder gets the
    commit merged in (the spawner's merge container) and is mounted into the running
    container through its slot, the session is shared with them. Timed from the
    GET /build/gh/<repo>/main (event stream, the login cookie) to <ready.url>api/status
    200 with the ready event's token, as tests/test_pool_logged_in.py opens it. The
    claimed session is then stopped (its hub user deleted) and its slot unmounted.
(b) unpooled: the same launch by the same user of the same repository and image, while
    the pool is empty: the pool's refill after (a)'s claim is held back
    (c.WarmPool.refill_delay = --refill-delay seconds), so the launch misses the pool and
    starts the user's named server with their volume and the merge, the path a
    logged-in launch takes without a warm session. Same service, hub, proxy, user,
    volume, folder and commit as (a): only the warm session differs. The named server is
    stopped after.
(c) floor: `docker run` of the same image (bench/launch.py's launch_floor) until Jupyter's
    api/status answers 200, still inside the hold: the pool starts nothing meanwhile.
Then the bench waits until the pool is full again (and starts nothing) before the next
round. Each round checks that (a) claimed, (b) did not, and that no pooled session was
starting during (b) and (c); the run fails otherwise.

Prints p50/p95 of each and the ratios p50(a)/p50(c), p50(b)/p50(c), p50(a)/p50(b); JSON to
bench/results/pool-loggedin-<UTC time>.json. At the end the service is stopped and
everything of the run is removed: containers, the user's volume, images of its prefix,
mounts under its temporary folder; the bench exits 1 if any of them remain.

Run from the repository root: python3 -m bench.pool_loggedin --runs 5
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import requests

from bench.launch import (
    RESULTS_DIR,
    launch_floor,
    leftovers_of,
    percentile,
    service_run,
    write_result,
)
from bench.loggedin import PASSWORD, launch, log_in, stop
from bench.pool import metric, stats, wait_pool
from tests.harness import leftovers
from tests.harness.gitserver import GitServer
from tests.harness.service import BASE_IMAGE, Service

USER = "student"
POOL_PREFIX = "binderpool-"  # c.WarmPool.username_prefix (default)
# a package the base image has: pip finds it installed and downloads nothing
REQUIREMENTS = ("# already in binderlab-test/base: the build downloads nothing\n"
                "jupyterlab\n")
POOL_CONFIG = """
c.BinderLab.authentication = "required"
c.UpApp.hub_config_overlay = {overlay!r}
c.BinderLab.warm_pool = True
c.WarmPool.rate_window = 0  # only what the bench pins is pooled
c.WarmPool.refill_interval = 0.2
c.WarmPool.refill_delay = {refill_delay}
c.WarmPool.pinned = {pinned!r}
"""
HUB_OVERLAY = """
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.BinderLabSpawner.volume_name_template = {volumes!r}
"""


def pool_quiet(svc: Service) -> dict[str, float]:
    """What the pool holds and starts now (both must be 0 while (b) and (c) run)."""
    return {"warm": metric(svc, "binderlab_pool_warm_sessions"),
            "starting": metric(svc, "binderlab_pool_starting_sessions")}


def wait_unmounted(root: Path, timeout: float = 30) -> float:
    """Wait until no slot under ``root`` holds a user's folder (the service unmounts the
    slot of an ended claimed session within its refill_interval)."""
    t0 = time.monotonic()
    while leftovers.mounts_under(root):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"slots still mounted: {leftovers.mounts_under(root)}")
        time.sleep(0.1)
    return time.monotonic() - t0


def engine_marks(client: docker.DockerClient, t0_wall: float, seconds: float,
                 labels: list[str]) -> dict[str, float]:
    """Seconds from a launch's request (``t0_wall``) to the first Docker event of each
    action ("merge create", "merge die", "session exec_start", ...) of the containers with
    one of ``labels`` (the merge container's ``binderlab.merge=<user>``, the session's
    ``binderlab.user=<hub user>``), up to the launch's end. From the engine's own event
    times: what the service did inside a claim, which the event stream cannot say."""
    until = int(time.time())
    while until < t0_wall + seconds:  # `until` must be in the past, or the call waits
        time.sleep(0.2)
        until = int(time.time())
    marks: dict[str, float] = {}
    for label in labels:
        kind = "merge" if label.startswith("binderlab.merge=") else "session"
        for event in client.events(since=int(t0_wall), until=until, decode=True,
                                   filters={"type": "container", "label": label}):
            t = event["timeNano"] / 1e9 - t0_wall
            if 0 <= t <= seconds:
                action = event["Action"].split(":", 1)[0]  # "exec_start: stat ..."
                marks.setdefault(f"{kind} {action}", t)
    return marks


def hub_share_ms(svc: Service, pooled: str) -> list[float]:
    """Durations (ms) of the claim's share of ``pooled``'s server with the user, from the
    hub's request log ("... 201 POST /hub/api/shares/<pooled>/ (...) 12.3ms"); the
    claimed Jupyter server logs its successful requests at debug level only."""
    path = svc.workdir / "state" / "jupyterhub.log"
    log = path.read_text(errors="replace") if path.exists() else ""
    return [float(m[1]) for m in re.finditer(
        rf"\b\d{{3}} POST /hub/api/shares/{re.escape(pooled)}/ .*?([\d.]+)ms", log)]


def stage(run: dict, start: str | None, end: str) -> float | None:
    """Seconds from the first event whose message starts with ``start`` (None: the request)
    to the first with ``end`` ("ready": the ready event, "status": api/status 200)."""
    def at(mark):
        if mark is None:
            return 0.0
        if mark == "status":
            return run["seconds"]
        if mark in run.get("engine", {}):
            return run["engine"][mark]
        for t, phase, message in run["events"]:
            if phase == mark or message.startswith(mark):
                return t
        return None
    a, b = at(start), at(end)
    return None if a is None or b is None else b - a


STAGES = {
    "pooled": [("request -> 'built' event (resolve, fetch, cache hit)", None, "built"),
               ("'built' -> merge container created (volume lookup, image inspect)",
                "built", "merge create"),
               ("merge container created -> started", "merge create", "merge start"),
               ("merge started -> exited (the merge)", "merge start", "merge die"),
               ("merge exited -> removed", "merge die", "merge destroy"),
               ("merge removed -> stat in the session (mount of the slot)",
                "merge destroy", "session exec_start"),
               ("stat in the session (the mount's check)", "session exec_start",
                "session exec_die"),
               ("stat done -> 'Claimed a warm session' (kernels listed, hub share)",
                "session exec_die", "Claimed a warm session"),
               ("'Claimed' -> 'ready' event", "Claimed a warm session", "ready"),
               ("'ready' -> api/status 200 (through the proxy)", "ready", "status")],
    "unpooled": [("request -> 'built' event (resolve, fetch, cache hit)", None, "built"),
                 ("'built' -> merge container created (pool miss, hub user, spawn)",
                  "built", "merge create"),
                 ("merge container created -> exited", "merge create", "merge die"),
                 ("merge exited -> session container created", "merge die",
                  "session create"),
                 ("session created -> 'ready' event (start, Jupyter up, hub, proxy)",
                  "session create", "ready"),
                 ("'ready' -> api/status 200 (through the proxy)", "ready", "status")],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.pool_loggedin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="Counted rounds of (a), (b), (c), after one uncounted warm-up "
                        "round (default %(default)s).")
    parser.add_argument("--refill-delay", type=float, default=60,
                        help="Seconds the pool waits after a claim before it starts a "
                        "replacement (c.WarmPool.refill_delay): (a)'s stop, (b) and (c) "
                        "must fit in it; the bench fails if a refill started during them "
                        "(default %(default)s).")
    parser.add_argument("--poll-interval", type=float, default=0.02,
                        help="Seconds between api/status polls, the same for (a), (b) and "
                        "(c) (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=180,
                        help="Seconds one launch may take (default %(default)s).")
    parser.add_argument("--fill-timeout", type=float, default=300,
                        help="Seconds the pool may take to fill again (default %(default)s).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results. Default: bench/results/pool-loggedin-<UTC "
                        "time>.json.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def check(ok: bool, what: str, run: dict) -> None:
    if not ok:
        raise RuntimeError(f"{what}: {run}")


def one_round(svc: Service, client: docker.DockerClient, spec: str, image: str,
              browser: requests.Session, args: argparse.Namespace) -> dict[str, dict]:
    """(a), (b), (c) once (see the module doc); the pool is full when it starts."""
    slots = svc.workdir / "state" / "pool-mounts"
    t0 = time.time()
    a = launch(svc, spec, browser, args.timeout, args.poll_interval)
    pooled = a["url"].rstrip("/").split("/user/", 1)[-1].split("/")[0]
    a["engine"] = engine_marks(client, t0, a["seconds"], [f"binderlab.merge={USER}",
                                                            f"binderlab.user={pooled}"])
    a["hub_share_ms"] = hub_share_ms(svc, pooled)
    check(a["claimed"] and "/user/" + POOL_PREFIX in a["url"],
          "(a) did not claim a warm session", a)
    check(any(m.startswith("Your files are in /persistent (merged the repository:")
              for _, _, m in a["events"]), "(a) did not merge the user's files", a)
    stop(svc, client, a["url"])
    a["unmount_wait_seconds"] = wait_unmounted(slots)
    before = pool_quiet(svc)
    t0 = time.time()
    b = launch(svc, spec, browser, args.timeout, args.poll_interval)
    b["engine"] = engine_marks(client, t0, b["seconds"], [f"binderlab.merge={USER}",
                                                            f"binderlab.user={USER}"])
    check(not b["claimed"] and not b["returned"] and f"/user/{USER}/" in b["url"],
          "(b) was not a spawn of the user's named server", b)
    stop(svc, client, b["url"])
    c = launch_floor(client, image, args.poll_interval, args.timeout)
    after = pool_quiet(svc)
    c["pool_before_b"], c["pool_after_c"] = before, after
    check(before == after == {"warm": 0, "starting": 0},
          "the pool was not empty and idle during (b) and (c) (raise --refill-delay)", c)
    return {"pooled": a, "unpooled": b, "floor": c}


def main(argv=None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # fails early when tests/harness/setup.sh has not run
    runs: dict[str, list[dict]] = {"pooled": [], "unpooled": [], "floor": []}
    result: dict[str, Any] = {
        "benchmark": "pool-loggedin", "time": stamp, "runs": args.runs,
        "refill_delay_s": args.refill_delay, "poll_interval_s": args.poll_interval,
        "machine": {"cpus": os.cpu_count(), "docker_engine": client.version()["Version"]},
        "load_average_start": os.getloadavg()}
    volumes = leftovers.name("poolbench") + "-{username}"
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-pool-loggedin-") as tmp:
        tmp = Path(tmp)
        overlay = tmp / "hub_overlay.py"
        overlay.write_text(HUB_OVERLAY.format(password=PASSWORD, volumes=volumes))
        git = GitServer(tmp / "git")
        svc = Service(tmp / "service", git.url, "up")
        base_config = svc.config.read_text()

        def configure(pinned: dict) -> None:
            svc.config.write_text(base_config + POOL_CONFIG.format(
                overlay=str(overlay), refill_delay=args.refill_delay, pinned=pinned))

        def unmount_leftovers() -> None:
            # the service unmounts its slots and their root at its stop; what it left would
            # be removed through by the temporary folder's clean-up: unmount it first
            result["leftover_mounts"] = leftovers.mounts_under(tmp)
            for point in reversed(result["leftover_mounts"]):
                subprocess.run(["umount", "-l", point.split(" ", 1)[1]], check=False)
            root = str((tmp / "service" / "state" / "pool-mounts").resolve())
            if any(line.split()[4] == root for line in open("/proc/self/mountinfo")):
                result["leftover_mounts"].append(f"mount {root}")
                subprocess.run(["umount", "-l", root], check=False)

        # the clean-up removes containers, the user's volume and images of the prefix
        with service_run(client, svc, git, result, after_stop=unmount_leftovers):
            repo = git.create("requirements", owner="bench")
            repo.commit({"requirements.txt": REQUIREMENTS}, "an environment built offline")
            spec = repo.gh_spec
            configure({})
            svc.start()
            browser = requests.Session()
            log_in(svc, browser, USER)
            # the first launch ever: builds the image, creates the volume (not pooled)
            first = launch(svc, spec, browser, 900, args.poll_interval)
            check(not first["claimed"], "a first launch claimed", first)
            image = first["image"]
            check(bool(image and image.startswith(svc.image_prefix)), "no image built", first)
            stop(svc, client, first["url"])
            result["first_launch"] = first
            svc.stop()
            configure({image: 1})
            svc.start()
            browser = requests.Session()  # the service's restart: log in again
            log_in(svc, browser, USER)
            print(f"service {svc.url}; pooled {image}; refill delay {args.refill_delay} s",
                  flush=True)
            result["image"] = image
            result["first_fill_seconds"] = wait_pool(svc, 1, args.fill_timeout)
            result["warmup"] = one_round(svc, client, spec, image, browser, args)
            result["fill_seconds"] = [wait_pool(svc, 1, args.fill_timeout)]
            loads = []
            for i in range(args.runs):
                loads.append(os.getloadavg()[0])
                for kind, run in one_round(svc, client, spec, image, browser, args).items():
                    runs[kind].append(run)
                print(f"run {i + 1}/{args.runs}: " + ", ".join(
                    f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items())
                    + f" (load {loads[-1]:.1f})", flush=True)
                if i + 1 < args.runs:
                    result["fill_seconds"].append(wait_pool(svc, 1, args.fill_timeout))
            result["load_average_per_round"] = loads
    result.update(leftovers_of(client, svc.image_prefix))
    result["leftover_volumes"] = [
        v["Name"] for v in client.api.volumes().get("Volumes") or []
        if v["Name"].startswith(volumes.split("{")[0])
        or (v.get("Labels") or {}).get("binderlab.image-prefix") == svc.image_prefix]
    summary: dict[str, Any] = {k: stats([r["seconds"] for r in v]) for k, v in runs.items()}
    p50 = {k: s["p50"] for k, s in summary.items()}
    summary["ratios_p50"] = {"pooled / floor": p50["pooled"] / p50["floor"],
                             "unpooled / floor": p50["unpooled"] / p50["floor"],
                             "pooled / unpooled": p50["pooled"] / p50["unpooled"]}
    summary["stage_medians"] = {
        kind: {name: percentile(spans, 0.5) if spans else None
               for name, a, b in stages
               for spans in [[s for s in (stage(r, a, b) for r in runs[kind])
                              if s is not None]]}
        for kind, stages in STAGES.items()}
    shares = [sum(r["hub_share_ms"]) for r in runs["pooled"] if r["hub_share_ms"]]
    summary["hub_share_median_ms"] = percentile(shares, 0.5) if shares else None
    result["summary"], result["results"] = summary, runs
    result["load_average_end"] = os.getloadavg()
    print(f"\n{'':10}{'p50 s':>8}{'p95 s':>8}{'min s':>8}{'max s':>8}{'n':>4}")
    for kind in runs:
        s = summary[kind]
        print(f"{kind:10}{s['p50']:8.2f}{s['p95']:8.2f}{s['min']:8.2f}{s['max']:8.2f}"
              f"{s['n']:4}")
    print("ratios (p50): " + ", ".join(f"{k} {v:.2f}"
                                       for k, v in summary["ratios_p50"].items()))
    for kind, medians in summary["stage_medians"].items():
        print(f"where the time goes, {kind} (median s):")
        for name, value in medians.items():
            print(f"  {name:78}{'-' if value is None else f'{value:6.2f}'}")
    print(f"the claim's share with the user at the hub: median "
          f"{summary['hub_share_median_ms']} ms")
    print(f"load average per round: {result.get('load_average_per_round')}")
    return write_result(result, args.output or RESULTS_DIR / f"pool-loggedin-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
