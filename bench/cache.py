"""Environment-cache benchmark: a cached launch, a notebook-only commit and a full build.

(a) cached launch: the commit `main` points at, launched again (its image is built and it
    was launched before): GET <service>/build/gh/<owner>/<repo>/main as an event stream
    until `ready`, then poll <ready.url>api/status (header `Authorization: token
    <ready.token>`) until 200, exactly as bench/launch.py.
(b) notebook-only commit: commit a changed notebook (hello.ipynb) to the repository, then
    the same launch of `main`. The environment is unchanged, so no build may happen
    (binderlab_builder_runs_total unchanged, same image) and the session must serve the new
    notebook (GET <ready.url>api/contents/hello.ipynb with the token); checked every run.
(c) full build: commit a requirements.txt with a new environment (another pinned tabulate
    version, or a second small package), then the same launch of `main`: repo2docker runs
    once (binderlab_builder_runs_total + 1, a new image) and pip installs from PyPI.

Runs are interleaved (a, b, c, a, b, c, ...) after one uncounted build launch of the
`requirements` test repository and one uncounted warm-up of (a) and (b). Each session's hub
user is deleted (its container goes away) before the next run, so every run starts from the
same machine state. The service is the real `binderlab up` started by the test harness
(tests/harness), with its own ports and image prefix; everything it and the bench created is
removed at the end.

Run from the repository root: python3 -m bench.cache --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import requests

from bench.launch import (
    RESULTS_DIR,
    container_marks,
    hub_spawn_seconds,
    leftovers_of,
    percentile,
    poll_status,
    service_run,
    session_container,
    stop_session,
    stream_events,
    write_result,
)
from tests.harness.gitserver import REPOS_DIR, GitServer, TestRepo
from tests.harness.service import BASE_IMAGE, Service

NOTEBOOK = "hello.ipynb"
BUILDER_RUNS = "binderlab_builder_runs_total"
KINDS = {
    "cached": "(a) cached launch, same commit",
    "notebook": "(b) notebook-only commit",
    "build": "(c) full build, new environment",
}
# Stages of a launch, from the marks recorded per run: (name, from-mark, to-mark).
STAGES = [
    ("request -> commit resolved ('Fetching <repo> at')", "start", "resolved"),
    ("resolved -> env key known (fetch, tree, fingerprint)", "resolved", "planned"),
    ("key known -> 'built' (image look-up, or the build)", "planned", "built"),
    ("'built' -> 1st 'launching' (content archive, hub user)", "built", "launching"),
    ("1st 'launching' -> container created", "launching", "created"),
    ("created -> spawner logs the overlay copy", "created", "overlay"),
    ("overlay copy logged -> container started", "overlay", "started"),
    ("started -> Jupyter logs 'is running at'", "started", "listening"),
    ("'is running at' -> 'ready' event (hub wait_up, proxy)", "listening", "ready"),
    ("'ready' -> api/status 200 (through the proxy)", "ready", "end"),
]
# JupyterHub's log prefix: "[I 2026-11-22 05:01:02.345 JupyterHub spawner:80] ..."
HUB_LOG_TIME = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")


class BenchCheckFailed(RuntimeError):
    """A launch did not do what its kind promises (a build happened, old content, ...)."""


def notebook(text: str) -> str:
    return json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }, indent=1) + "\n"


def environments(versions: list[str], extras: list[str], initial: str) -> list[list[str]]:
    """Distinct requirement sets, tabulate pins first, then each with a second package;
    ``initial`` (the test repository's own pin) is left out, its image exists already."""
    out = []
    for extra in ["", *extras]:
        for version in versions:
            reqs = [f"tabulate=={version}", *([extra] if extra else [])]
            if reqs != [initial]:
                out.append(reqs)
    return out


def requirements_txt(reqs: list[str], build_id: str) -> str:
    # The comment is not part of the environment key (binderlab ignores comments), but it
    # is part of the build context: the engine's layer cache cannot hold this pip step from
    # an earlier bench or test run, so every (c) build really installs from PyPI.
    return f"# binderlab bench.cache {build_id}\n" + "".join(f"{r}\n" for r in reqs)


def hub_overlay_time(svc: Service, container_id: str) -> float | None:
    """Epoch seconds of the spawner's 'Copying <commit>.tar ... into <container>' log line."""
    log = svc.workdir / "state" / "jupyterhub.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if "Copying " in line and f" into {container_id[:12]}:" in line:
            m = HUB_LOG_TIME.match(line)
            if m:  # the hub logs local time
                return datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def contents(ready: dict, path: str) -> requests.Response:
    return requests.get(f"{ready['url']}api/contents/{path}", timeout=20,
                        headers={"Authorization": f"token {ready['token']}"})


def launch(svc: Service, client: docker.DockerClient, spec: str, interval: float,
           timeout: float, kind: str, check=None) -> dict[str, Any]:
    """One launch of `main` through the service's event stream, up to api/status 200 (timed,
    as bench/launch.py's launch_binderlab); then ``check(ready, run)`` (not timed) while the
    session runs; then the session's hub user is deleted."""
    url = f"{svc.url}build/gh/{spec}/main"
    deadline = time.monotonic() + timeout
    events: list[tuple[float, str, str]] = []
    build_log: list[str] = []
    build_times: list[float] = []  # when each build log line arrived (s from the request)
    t0_wall, t0 = time.time(), time.perf_counter()
    for t, event in stream_events(url, timeout, t0, deadline):
        phase, message = event["phase"], event.get("message", "").strip()
        if phase == "building":
            if not build_log:
                events.append((t, phase, message))
            build_log.append(message)
            build_times.append(t)
        else:
            events.append((t, phase, message))
    if not events or events[-1][1] != "ready":
        raise RuntimeError(f"launch did not reach ready: {events[-1:] or 'no events'}")
    ready = event
    tries = poll_status(ready["url"], ready["token"], interval, deadline)
    total = time.perf_counter() - t0
    username = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    marks: dict[str, float] = {"start": 0.0, "end": total}
    for t, phase, message in events:
        if phase == "fetching" and message.startswith("Fetching "):
            marks.setdefault("resolved", t)
        if phase == "fetching" and message.startswith(("Environment defined by",
                                                       "Image keyed by")):
            marks.setdefault("planned", t)
        marks.setdefault(phase, t)
    container = session_container(client, ready["image"])
    marks.update(container_marks(container, t0_wall))
    overlay = hub_overlay_time(svc, container.id)
    if overlay is not None:
        marks["overlay"] = overlay - t0_wall
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"] or [] if "=" in e)
    run = {"kind": kind, "seconds": total, "status_tries": tries, "marks": marks,
           "events": events, "build_log_lines": len(build_log), "build_times": build_times,
           "image": ready["image"],
           "username": username, "commit": env.get("BINDER_REF", "")}
    try:
        if check is not None:
            check(ready, run, build_log)
    finally:
        stop_session(svc, container, username)
    return run


class CacheBench:
    """The repository, the service and the expectations that each launch is checked against."""

    def __init__(self, svc: Service, client: docker.DockerClient, repo: TestRepo,
                 args: argparse.Namespace):
        self.svc, self.client, self.repo, self.args = svc, client, repo, args
        self.bench_id = uuid.uuid4().hex[:8]
        self.commit = ""  # what `main` points at
        self.image = ""  # the image of the current environment
        self.text = ""  # the text hello.ipynb holds at `main` ("" until (b) first changes it)
        self.launched: set[str] = set()  # commits launched so far

    def _launch(self, kind: str, timeout: float, check) -> dict[str, Any]:
        before = self.svc.metric(BUILDER_RUNS)

        def checks(ready, run, build_log):
            run["builder_runs_before"] = before
            run["builder_runs_after"] = self.svc.metric(BUILDER_RUNS)
            if run["commit"] != self.commit:
                raise BenchCheckFailed(f"{kind}: the session runs commit {run['commit']!r}, "
                                       f"main is {self.commit}")
            if self.text:
                got = contents(ready, NOTEBOOK)
                if got.status_code != 200 or self.text not in json.dumps(got.json()["content"]):
                    raise BenchCheckFailed(
                        f"{kind}: the session does not serve the notebook of commit "
                        f"{self.commit[:12]} ({self.text!r}): {got.status_code} "
                        f"{got.text[:300]}")
                run["content_checked"] = self.text
            check(ready, run, build_log)

        run = launch(self.svc, self.client, self.repo.gh_spec, self.args.poll_interval,
                     timeout, kind, checks)
        self.launched.add(run["commit"])
        return run

    def cached(self) -> dict[str, Any]:
        """(a): launch `main` again; it was launched before, its image exists."""
        if self.commit not in self.launched:
            raise RuntimeError("(a) needs a commit that was launched before")

        def check(ready, run, build_log):
            if run["builder_runs_after"] != run["builder_runs_before"] or build_log:
                raise BenchCheckFailed(f"(a) ran a build: {build_log[:5]}")
            if ready["image"] != self.image:
                raise BenchCheckFailed(f"(a) launched {ready['image']}, expected {self.image}")

        return self._launch("cached", self.args.timeout, check)

    def notebook_only(self, label: str) -> dict[str, Any]:
        """(b): commit a changed notebook, launch `main`: the same image, the new file."""
        self.text = f"binderlab bench {self.bench_id}: notebook version {label}"
        self.commit = self.repo.commit({NOTEBOOK: notebook(self.text)},
                                       f"notebook only: {label}")

        def check(ready, run, build_log):
            if run["builder_runs_after"] != run["builder_runs_before"] or build_log:
                raise BenchCheckFailed(
                    f"(b) a notebook-only commit ran a build: builder runs "
                    f"{run['builder_runs_before']:g} -> {run['builder_runs_after']:g}, "
                    f"log {build_log[:5]}")
            if ready["image"] != self.image:
                raise BenchCheckFailed(
                    f"(b) a notebook-only commit launched {ready['image']}, not {self.image}")

        return self._launch("notebook", self.args.timeout, check)

    def full_build(self, reqs: list[str], label: str, timeout: float,
                   kind: str = "build") -> dict[str, Any]:
        """(c): commit a new environment, launch `main`: exactly one build, pip from PyPI."""
        text = requirements_txt(reqs, f"{self.bench_id}-{label}")
        self.commit = self.repo.commit({"requirements.txt": text}, f"environment: {reqs}")
        previous = self.image

        def check(ready, run, build_log):
            run["requirements"] = reqs
            runs = run["builder_runs_after"] - run["builder_runs_before"]
            if runs != 1:
                raise BenchCheckFailed(f"(c) a new environment ran the builder {runs:g} times "
                                       "(expected exactly once)")
            if ready["image"] == previous:
                raise BenchCheckFailed(f"(c) a new environment reused the image {previous}")
            installed = [m for m in build_log if "Successfully installed" in m]
            wanted = [r.replace("==", "-") for r in reqs]
            if not any(all(w in m for w in wanted) for m in installed):
                raise BenchCheckFailed(
                    f"(c) the build log shows no pip install of {reqs}: {installed[-3:]} "
                    f"(last lines: {build_log[-5:]})")
            run["pip"] = [m for m in build_log
                          if re.search(r"\b(Collecting|Downloading|Successfully installed)\b",
                                       m)]

        run = self._launch(kind, timeout, check)
        self.image = run["image"]
        return run


def kind_stats(runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """p50/p95/n of one kind's launches and the median of every stage (STAGES)."""
    mine = [r for r in runs if r["kind"] == kind]
    seconds = [r["seconds"] for r in mine]
    medians = {}
    for name, a, b in STAGES:
        spans = [r["marks"][b] - r["marks"][a] for r in mine
                 if a in r["marks"] and b in r["marks"]]
        medians[name] = percentile(spans, 0.5) if spans else None
    return {"p50": percentile(seconds, 0.5), "p95": percentile(seconds, 0.95),
            "n": len(seconds), "stage_medians": medians}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 per kind, the ratios of the p50s to (a)'s, and the median of every stage."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        seconds = [r["seconds"] for r in runs if r["kind"] == kind]
        out[kind] = {**kind_stats(runs, kind), "min": min(seconds), "max": max(seconds)}
    out["ratio_p50_notebook_to_cached"] = out["notebook"]["p50"] / out["cached"]["p50"]
    out["ratio_p50_build_to_cached"] = out["build"]["p50"] / out["cached"]["p50"]
    return out


def print_report(summary: dict[str, Any], target: float) -> None:
    print(f"\n{'':36}{'p50 s':>8}{'p95 s':>8}{'min s':>8}{'max s':>8}{'n':>4}")
    for kind, label in KINDS.items():
        s = summary[kind]
        print(f"{label:36}{s['p50']:8.2f}{s['p95']:8.2f}{s['min']:8.2f}{s['max']:8.2f}{s['n']:4}")
    ratio = summary["ratio_p50_notebook_to_cached"]
    print(f"ratio p50(b)/p50(a): {ratio:.2f} (target <= {target:g}: "
          f"{'met' if ratio <= target else 'NOT met'})")
    print(f"ratio p50(c)/p50(a): {summary['ratio_p50_build_to_cached']:.2f}")
    print(f"\nwhere the time goes (median s){'':30}{'(a)':>8}{'(b)':>8}{'(c)':>8}")
    for name, _, _ in STAGES:
        values = [summary[kind]["stage_medians"][name] for kind in KINDS]
        print(f"  {name:58}" + "".join("       -" if v is None else f"{v:8.2f}"
                                       for v in values))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="Counted launches of each kind (a, b and c), interleaved; this "
                        "is also the number of counted full builds (plus one uncounted "
                        "first build). Default %(default)s.")
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="Seconds between api/status polls (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=120,
                        help="Seconds a launch without a build, (a) or (b), may take before "
                        "the bench fails (default %(default)s).")
    parser.add_argument("--build-timeout", type=float, default=600,
                        help="Seconds a launch with a build, (c) or the first one, may take "
                        "(default %(default)s).")
    parser.add_argument("--tabulate-versions", default="0.8.9,0.8.10,0.9.0",
                        help="Comma-separated real PyPI versions of tabulate that the (c) "
                        "environments pin, in order (default %(default)s).")
    parser.add_argument("--extra-packages", default="termcolor==2.3.0,termcolor==2.4.0,"
                        "termcolor==2.5.0",
                        help="Comma-separated pinned small PyPI packages; once the tabulate "
                        "pins alone are used up, the (c) environments add one of these "
                        "(default %(default)s).")
    parser.add_argument("--target", type=float, default=1.2,
                        help="Target for p50(b)/p50(a), reported as met or not "
                        "(default %(default)s).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results file. Default: bench/results/cache-<UTC time>.json.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.versions = [v.strip() for v in args.tabulate_versions.split(",") if v.strip()]
    args.extras = [p.strip() for p in args.extra_packages.split(",") if p.strip()]
    available = len(environments(args.versions, args.extras, initial_requirement()))
    if args.runs > available:
        parser.error(f"--runs {args.runs} needs {args.runs} new environments; "
                     f"--tabulate-versions and --extra-packages give {available}")
    return args


def initial_requirement() -> str:
    """The test repository's own pin (tests/repos/requirements/requirements.txt)."""
    lines = (REPOS_DIR / "requirements" / "requirements.txt").read_text().splitlines()
    return next(line.split("#")[0].strip() for line in lines if line.split("#")[0].strip())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # fails early when tests/harness/setup.sh has not run
    envs = environments(args.versions, args.extras, initial_requirement())[: args.runs]
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    left: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        git = GitServer(Path(tmp) / "git")
        svc = Service(Path(tmp) / "service", git.url, "up")
        with service_run(client, svc, git, left):
            svc.start()
            repo = git.create("requirements")
            print(f"service {svc.url}, hub {svc.hub_url}, repo {repo.gh_spec}", flush=True)
            bench = CacheBench(svc, client, repo, args)
            build = bench.full_build([initial_requirement()], "first", args.build_timeout,
                                     kind="first build")
            print(f"build launch (not counted): {build['seconds']:.2f} s, "
                  f"image {build['image']}", flush=True)
            warmup = [bench.cached(), bench.notebook_only("warm-up")]
            print("warm-up (not counted): " + ", ".join(
                f"{r['kind']} {r['seconds']:.2f} s" for r in warmup), flush=True)
            for i, reqs in enumerate(envs):
                a = bench.cached()
                b = bench.notebook_only(f"run {i + 1}")
                c = bench.full_build(reqs, f"run {i + 1}", args.build_timeout)
                runs += [a, b, c]
                print(f"run {i + 1}/{args.runs}: (a) {a['seconds']:.2f} s  "
                      f"(b) {b['seconds']:.2f} s  (c) {c['seconds']:.2f} s "
                      f"[{' '.join(reqs)}]", flush=True)
            spawn = hub_spawn_seconds(svc)
            for r in [build, *warmup, *runs]:
                r["hub_spawn_seconds"] = spawn.get(r["username"])
            total_builds = svc.metric(BUILDER_RUNS)
    summary = summarize(runs)
    print_report(summary, args.target)
    print(f"builder runs in all: {total_builds:g} (1 uncounted first build + {args.runs})")
    result = {
        "benchmark": "cache", "time": stamp, "runs": args.runs,
        "poll_interval_s": args.poll_interval, "target_ratio_notebook_to_cached": args.target,
        "order": "first build, warm-up (a) (b), then (a) (b) (c) per run",
        "environments": envs, "builder_runs_total": total_builds,
        "machine": {"cpus": os.cpu_count(), "docker_engine": client.version()["Version"],
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "build_launch": build, "warmup": warmup, "summary": summary, "results": runs,
        **left, **leftovers_of(client, svc.image_prefix),
    }
    return write_result(result, args.output or RESULTS_DIR / f"cache-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
