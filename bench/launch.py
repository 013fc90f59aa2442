"""Launch-time benchmark: a cached launch through binderlab against `docker run` of its image.

(a) cached launch: GET <service>/build/gh/<owner>/<repo>/main as an event stream until
    `ready`, then poll <ready.url>api/status (header `Authorization: token <ready.token>`)
    until 200. The image is already built, so this is resolve + cache hit + JupyterHub spawn.
(b) floor: the docker Python SDK's `containers.run` (create + start) of the same image with
    `jupyter lab --ip=0.0.0.0 --port=8888` and JUPYTER_TOKEN, an inspect for the container's
    bridge IP, then the same polling of http://<ip>:8888/api/status until 200.

Runs are interleaved (a, b, a, b, ...) after one uncounted build launch and one uncounted
warm-up of each. Each session is stopped (and each floor container removed) before the next
run, so every run starts from the same machine state. The service is the real `binderlab up`
started by the test harness (tests/harness), with its own ports and image prefix; everything
it and the bench created is removed at the end.

Run from the repository root: python3 -m bench.launch --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from tests.harness.gitserver import GitServer
from tests.harness.service import BASE_IMAGE, Service, remove_prefix

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FLOOR_NAME = "binderlab-bench-floor-"
FLOOR_COMMAND = ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888"]
# Stages of a launch, from the marks recorded per run: (name, from-mark, to-mark).
STAGES = {
    "binderlab": [
        ("request -> 'built' event (resolve, fetch, cache hit)", "start", "built"),
        ("'built' -> 1st 'launching' (hub user created)", "built", "launching"),
        ("1st 'launching' -> container created", "launching", "created"),
        ("container created -> started", "created", "started"),
        ("started -> Jupyter logs 'is running at'", "started", "listening"),
        ("'is running at' -> 'ready' event (hub wait_up, proxy)", "listening", "ready"),
        ("'ready' -> api/status 200 (through the proxy)", "ready", "end"),
    ],
    "docker run": [
        ("containers.run called -> container created", "start", "created"),
        ("container created -> started", "created", "started"),
        ("started -> Jupyter logs 'is running at'", "started", "listening"),
        ("'is running at' -> api/status 200", "listening", "end"),
    ],
}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def poll_status(base_url: str, token: str, interval: float, deadline: float) -> int:
    """GET <base_url>api/status with the token header until it answers 200; return the tries."""
    headers = {"Authorization": f"token {token}"}
    for tries in range(1, 1_000_000):
        try:
            if requests.get(base_url + "api/status", headers=headers, timeout=5).ok:
                return tries
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{base_url}api/status did not answer 200 in time")


def docker_time(stamp: str) -> float:
    """Epoch seconds of a Docker RFC 3339 timestamp (nanoseconds cut to microseconds)."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def container_marks(container: Any, t0_wall: float) -> dict[str, float]:
    """Seconds from t0 to the container's creation, its start and Jupyter's 'is running at'."""
    container.reload()
    marks = {
        "created": docker_time(container.attrs["Created"]) - t0_wall,
        "started": docker_time(container.attrs["State"]["StartedAt"]) - t0_wall,
    }
    for line in container.logs(timestamps=True).decode(errors="replace").splitlines():
        if "is running at" in line:
            marks["listening"] = docker_time(line.split(" ", 1)[0]) - t0_wall
            break
    return marks


def session_container(client: docker.DockerClient, image: str) -> Any:
    """The running session of ``image``: the bench keeps at most one, and no floor container."""
    found = [c for c in client.containers.list(filters={"ancestor": image})
             if not c.name.startswith(FLOOR_NAME)
             and "binderlab.probe" not in c.labels]  # an environment record's package probe
    if len(found) != 1:
        raise RuntimeError(f"expected one session container of {image}, found {found}")
    return found[0]


def hub_delete(svc: Service, path: str, tries: int = 20, wait: float = 1,
               done: tuple[int, ...] = (204, 404)) -> bool:
    """DELETE ``<hub>/hub/api/<path>`` (a user, a server) with the service's token, again
    while the hub answers otherwise (400 while a stop is still pending); whether it took."""
    headers = {"Authorization": f"token {svc.service_token}"}
    for _ in range(tries):
        r = requests.delete(f"{svc.hub_url}/hub/api/{path}", headers=headers, timeout=60)
        if r.status_code in done:
            return True
        time.sleep(wait)
    return False


def stop_session(svc: Service, container: Any, username: str) -> None:
    """Delete the session's hub user (stopping its server); wait until its container is gone."""
    hub_delete(svc, f"users/{username}")
    for _ in range(60):
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        time.sleep(0.5)
    raise RuntimeError(f"The session container of {username} was not removed")


def stream_events(url: str, timeout: float, t0: float,
                  deadline: float) -> Iterator[tuple[float, dict]]:
    """A launch's event stream: each event with the seconds since ``t0`` (perf_counter),
    up to and including ready or failed; TimeoutError past ``deadline`` (monotonic)."""
    with requests.get(url, headers={"Accept": "text/event-stream"}, stream=True,
                      timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ready event from {url} within {timeout} s")
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                yield time.perf_counter() - t0, event
                if event["phase"] in ("ready", "failed"):
                    return


def launch_binderlab(svc: Service, client: docker.DockerClient, spec: str, interval: float,
                     timeout: float) -> dict[str, Any]:
    """(a): one launch through the service's event stream, up to api/status 200."""
    url = f"{svc.url}build/gh/{spec}/main"
    deadline = time.monotonic() + timeout
    events: list[tuple[float, str, str]] = []
    t0_wall, t0 = time.time(), time.perf_counter()
    for t, event in stream_events(url, timeout, t0, deadline):
        events.append((t, event["phase"], event.get("message", "").strip()))
    if not events or events[-1][1] != "ready":
        raise RuntimeError(f"launch did not reach ready: {events[-1:] or 'no events'}")
    ready = event
    tries = poll_status(ready["url"], ready["token"], interval, deadline)
    total = time.perf_counter() - t0
    username = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    marks: dict[str, float] = {"start": 0.0, "end": total}
    for t, phase, _ in events:
        marks.setdefault(phase, t)
    container = session_container(client, ready["image"])
    marks.update(container_marks(container, t0_wall))
    stop_session(svc, container, username)
    return {"kind": "binderlab", "seconds": total, "status_tries": tries, "marks": marks,
            "events": events, "image": ready["image"], "username": username}


def launch_floor(client: docker.DockerClient, image: str, interval: float,
                 timeout: float) -> dict[str, Any]:
    """(b): `docker run` of the image (SDK containers.run) up to api/status 200."""
    token = secrets.token_hex(24)
    deadline = time.monotonic() + timeout
    t0_wall, t0 = time.time(), time.perf_counter()
    container = client.containers.run(image, FLOOR_COMMAND, environment={"JUPYTER_TOKEN": token},
                                      name=FLOOR_NAME + secrets.token_hex(4), detach=True)
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        tries = poll_status(f"http://{ip}:8888/", token, interval, deadline)
        total = time.perf_counter() - t0
        marks = {"start": 0.0, "end": total, **container_marks(container, t0_wall)}
    finally:
        container.remove(force=True)
    return {"kind": "docker run", "seconds": total, "status_tries": tries, "marks": marks}


def hub_spawn_seconds(svc: Service) -> dict[str, float]:
    """JupyterHub's own 'User <name> took <s> seconds to start' lines, by user name."""
    log = svc.workdir / "state" / "jupyterhub.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return {m[1]: float(m[2]) for m in re.finditer(r"User (\S+) took ([\d.]+) seconds", text)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 per kind, the ratio of the p50s, and the median of every stage."""
    out: dict[str, Any] = {}
    for kind, stages in STAGES.items():
        seconds = [r["seconds"] for r in runs if r["kind"] == kind]
        medians = {}
        for name, a, b in stages:
            spans = [r["marks"][b] - r["marks"][a] for r in runs
                     if r["kind"] == kind and a in r["marks"] and b in r["marks"]]
            medians[name] = percentile(spans, 0.5) if spans else None
        out[kind] = {"p50": percentile(seconds, 0.5), "p95": percentile(seconds, 0.95),
                     "min": min(seconds), "max": max(seconds), "n": len(seconds),
                     "stage_medians": medians}
    out["ratio_p50"] = out["binderlab"]["p50"] / out["docker run"]["p50"]
    return out


def print_report(summary: dict[str, Any]) -> None:
    print(f"\n{'':34}{'p50 s':>8}{'p95 s':>8}{'min s':>8}{'max s':>8}{'n':>4}")
    for kind, label in (("binderlab", "(a) cached launch via binderlab"),
                        ("docker run", "(b) floor: docker run")):
        s = summary[kind]
        print(f"{label:34}{s['p50']:8.2f}{s['p95']:8.2f}{s['min']:8.2f}{s['max']:8.2f}{s['n']:4}")
    print(f"ratio p50(a)/p50(b): {summary['ratio_p50']:.2f}")
    for kind in STAGES:
        print(f"\nwhere the time goes, {kind} (median s):")
        for name, value in summary[kind]["stage_medians"].items():
            print(f"  {name:58}{'-' if value is None else f'{value:6.2f}'}")


def own_containers(client: docker.DockerClient, prefix: str) -> list[str]:
    """Names of this run's containers: sessions of the prefix's images and floor containers."""
    return sorted(c.name for c in client.containers.list(all=True)
                  if (c.attrs["Config"]["Image"] or "").startswith(prefix)
                  or c.name.startswith(FLOOR_NAME))


cleanup = remove_prefix  # the test harness's: containers and images of one prefix


@contextmanager
def service_run(client: docker.DockerClient, svc: Service, git: GitServer, result: dict,
                after_stop: Callable[[], None] | None = None):
    """A bench's run of ``svc``: on failure the service's log tail is printed; on the way
    out, failed or not, the service and the git server stop, ``result["left_by_service"]``
    names the containers the stopped service left running (the hub's cleanup_servers
    should leave none), ``after_stop`` runs (a bench's own checks of what is left), and
    everything of the run's image prefix is removed."""
    try:
        yield
    except BaseException:
        print(svc.log()[-4000:], file=sys.stderr)
        raise
    finally:
        svc.stop()
        git.close()
        result["left_by_service"] = own_containers(client, svc.image_prefix)
        if after_stop is not None:
            after_stop()
        cleanup(client, svc.image_prefix)


def leftovers_of(client: docker.DockerClient, prefix: str) -> dict[str, list[str]]:
    """What of a run is still there after its clean-up (write_result fails on any)."""
    return {"leftover_containers": own_containers(client, prefix),
            "leftover_images": [t for i in client.images.list() for t in i.tags
                                if t.startswith(prefix)]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10,
                        help="Counted launches of each kind (a and b), interleaved; "
                        "one uncounted warm-up of each comes first (default %(default)s).")
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="Seconds between api/status polls, the same for (a) and (b) "
                        "(default %(default)s).")
    parser.add_argument("--timeout", type=float, default=120,
                        help="Seconds one launch (a or b) may take before the bench fails "
                        "(default %(default)s).")
    parser.add_argument("--build-timeout", type=float, default=600,
                        help="Seconds the first launch, which builds the image, may take "
                        "(default %(default)s).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results file. Default: bench/results/launch-<UTC time>.json.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # fails early when tests/harness/setup.sh has not run
    runs: list[dict[str, Any]] = []
    left: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        git = GitServer(Path(tmp) / "git")
        svc = Service(Path(tmp) / "service", git.url, "up")
        with service_run(client, svc, git, left):
            svc.start()
            spec = git.create("dockerfile").gh_spec
            print(f"service {svc.url}, hub {svc.hub_url}, repo {spec}", flush=True)
            build = launch_binderlab(svc, client, spec, args.poll_interval, args.build_timeout)
            image = build["image"]
            print(f"build launch (not counted): {build['seconds']:.2f} s, image {image}")
            warmup = [launch_binderlab(svc, client, spec, args.poll_interval, args.timeout),
                      launch_floor(client, image, args.poll_interval, args.timeout)]
            print("warm-up (not counted): " + ", ".join(
                f"{r['kind']} {r['seconds']:.2f} s" for r in warmup), flush=True)
            for i in range(args.runs):
                a = launch_binderlab(svc, client, spec, args.poll_interval, args.timeout)
                b = launch_floor(client, image, args.poll_interval, args.timeout)
                runs += [a, b]
                print(f"run {i + 1}/{args.runs}: (a) {a['seconds']:.2f} s  "
                      f"(b) {b['seconds']:.2f} s", flush=True)
            spawn = hub_spawn_seconds(svc)
            for r in [build, *warmup, *runs]:
                r["hub_spawn_seconds"] = spawn.get(r.get("username", ""))
    summary = summarize(runs)
    print_report(summary)
    result = {
        "benchmark": "launch", "time": stamp, "runs": args.runs,
        "poll_interval_s": args.poll_interval,
        "floor_method": f"docker Python SDK {docker.__version__}: containers.run(detach=True) "
                        "(create + start), then inspect for the bridge IP",
        "floor_command": FLOOR_COMMAND, "image": image,
        "machine": {"cpus": os.cpu_count(), "docker_engine": client.version()["Version"]},
        "build_launch": build, "warmup": warmup, "summary": summary, "results": runs,
        **left, **leftovers_of(client, svc.image_prefix),
    }
    return write_result(result, args.output or RESULTS_DIR / f"launch-{stamp}.json")


def write_result(result: dict, output: Path) -> int:
    """Write a bench's JSON, say what was left behind; 1 if anything of the run remains."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {output}")
    if result["left_by_service"]:
        print("containers still there after the service stopped (removed): "
              f"{result['left_by_service']}")
    # volumes and mounts: benches whose service makes them (logged-in users' volumes, the
    # warm pool's mount slots) list what is left of them too
    kinds = ("containers", "images", "volumes", "mounts")
    left = {kind: result.get(f"leftover_{kind}") or [] for kind in kinds}
    if any(left.values()):
        print("LEFTOVERS: " + ", ".join(f"{kind} {names}" for kind, names in left.items()
                                        if names), file=sys.stderr)
        return 1
    print("cleanup: no " + ", ".join(kind for kind in kinds if f"leftover_{kind}" in result)
          + " of this run remain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
