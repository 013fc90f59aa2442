"""Logged-in launch time against an anonymous one (issue 13), in one run.

One real `binderlab up` (tests/harness) with c.BinderLab.authentication = "optional" and
JupyterHub's DummyAuthenticator; the test git server with tests/repos/dockerfile, built
once (not counted). After one uncounted warm-up of each kind, runs interleave (a, b, c, ...):

(a) anonymous cached launch: GET /build/... as an event stream until `ready`, then
    <url>api/status with the token header until 200; its temporary hub user is deleted after.
(b) logged-in cached launch (OAuth already done: the browser has the service's login
    cookie): the same, with the cookie, starting the user's named server; the server is
    stopped after.
(c) logged-in return: the same launch while that named server runs (no spawn).

Prints p50/p95 of each and the ratios p50(b)/p50(a), p50(c)/p50(a); JSON to
bench/results/loggedin-<UTC time>.json. Everything the run created is removed at the end.

Run from the repository root: python3 -m bench.loggedin --runs 5
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import requests

from bench.launch import (
    hub_delete,
    leftovers_of,
    percentile,
    poll_status,
    service_run,
    write_result,
)
from tests.harness.gitserver import GitServer
from tests.harness.service import Service

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PASSWORD = "bench-password"


def launch(svc: Service, spec: str, browser: requests.Session, timeout: float,
           interval: float = 0.05) -> dict:
    """One launch up to api/status 200: {"seconds", "ready_seconds", "url", "image",
    "returned", "claimed" (a warm session: bench/pool_loggedin.py), "events" [(seconds,
    phase, message)]}."""
    deadline = time.monotonic() + timeout
    t0 = time.perf_counter()
    events, timed = [], []
    with browser.get(f"{svc.url}build/gh/{spec}/main", headers={"Accept": "text/event-stream"},
                     stream=True, timeout=timeout) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                timed.append((time.perf_counter() - t0, events[-1]["phase"],
                              events[-1].get("message", "").strip()))
                if events[-1]["phase"] in ("ready", "failed"):
                    break
    ready = events[-1] if events else {"phase": "none"}
    if ready["phase"] != "ready":
        raise RuntimeError(f"launch failed: {ready}")
    ready_seconds = time.perf_counter() - t0
    poll_status(ready["url"], ready["token"], interval, deadline)
    log = "".join(e.get("message", "") for e in events)
    return {"seconds": time.perf_counter() - t0, "ready_seconds": ready_seconds,
            "url": ready["url"], "image": ready.get("image"),
            "returned": "Returning to your running session" in log,
            "claimed": "Claimed a warm session" in log, "events": timed}


def stop(svc: Service, client: docker.DockerClient, url: str) -> None:
    """Stop the session at ``url`` (a temporary user is deleted, a named server stopped) and
    wait until its container is gone."""
    parts = url.rstrip("/").split("/user/", 1)[1].split("/")
    user = parts[0]
    path = f"users/{user}/servers/{parts[1]}" if len(parts) > 1 else f"users/{user}"
    hub_delete(svc, path, done=(202, 204, 404))
    for _ in range(120):
        if not client.containers.list(all=True, filters={"label": f"binderlab.user={user}"}):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the session of {user} was not removed")


def log_in(svc: Service, browser: requests.Session, user: str) -> None:
    form = browser.get(svc.url + "login?next=/", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    done = browser.post(form.url, timeout=60, data={
        "username": user, "password": PASSWORD, **({"_xsrf": xsrf.group(1)} if xsrf else {})})
    if done.url != svc.url:
        raise RuntimeError(f"login did not come back to the service: {done.url}")


def summary(values: list[float]) -> dict:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "n": len(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per launch")
    parser.add_argument("--output", type=Path, help="JSON result path")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        tmp = Path(tmp)
        overlay = tmp / "hub_overlay.py"
        overlay.write_text('c.JupyterHub.authenticator_class = "dummy"\n'
                           f"c.DummyAuthenticator.password = {PASSWORD!r}\n"
                           "c.Authenticator.allow_all = True\n")
        git = GitServer(tmp / "git")
        svc = Service(tmp / "svc", git.url, "up", extra_config=f"""
c.BinderLab.authentication = "optional"
c.UpApp.hub_config_overlay = {str(overlay)!r}
""")
        runs = {"anonymous": [], "logged_in": [], "returning": []}
        left: dict[str, list[str]] = {}
        with service_run(client, svc, git, left):
            svc.start()
            spec = git.create("dockerfile", owner="bench").gh_spec
            anonymous, person = requests.Session(), requests.Session()
            log_in(svc, person, "student")
            stop(svc, client, launch(svc, spec, anonymous, args.timeout)["url"])  # the build
            for i in range(args.runs + 1):  # the first round warms up, not counted
                a = launch(svc, spec, anonymous, args.timeout)
                stop(svc, client, a["url"])
                b = launch(svc, spec, person, args.timeout)
                c = launch(svc, spec, person, args.timeout)
                if b["returned"] or not c["returned"] or c["url"] != b["url"]:
                    raise RuntimeError(f"expected a spawn then a return: {b}, {c}")
                stop(svc, client, b["url"])
                if i:
                    runs["anonymous"].append(a["seconds"])
                    runs["logged_in"].append(b["seconds"])
                    runs["returning"].append(c["seconds"])
                    print(f"run {i}/{args.runs}: anonymous {a['seconds']:.2f} s, logged-in "
                          f"{b['seconds']:.2f} s, return {c['seconds']:.2f} s", flush=True)
    stats = {kind: summary(values) for kind, values in runs.items()}
    base = stats["anonymous"]["p50"]
    ratios = {"logged_in/anonymous": stats["logged_in"]["p50"] / base,
              "returning/anonymous": stats["returning"]["p50"] / base}
    for kind, s in stats.items():
        print(f"{kind:>10}: p50 {s['p50']:.2f} s, p95 {s['p95']:.2f} s ({s['n']} runs)")
    print("ratios (p50): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    return write_result({"benchmark": "loggedin", "time": stamp, "runs": args.runs,
                         "summary": stats, "ratios": ratios, "results": runs,
                         **left, **leftovers_of(client, svc.image_prefix)},
                        args.output or RESULTS_DIR / f"loggedin-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
