"""postBuild benchmark: the notebook-only commit of a repository with `postBuild`, against
a cached launch of the same repository, on one box where the environment's layers are cached.

A `postBuild` script may read any file of the repository, so every commit is a new image
(keyed by its tree); what this measures is what that rebuild costs when only the
repository's files changed.

(a) cached launch: the commit `main` points at, launched again (its image exists):
    GET <service>/build/gh/<owner>/<repo>/main as an event stream until `ready`, then poll
    <ready.url>api/status (header `Authorization: token <ready.token>`) until 200, exactly
    as bench/launch.py and bench/cache.py.
(b) notebook-only commit: commit a changed notebook (hello.ipynb), then the same launch of
    `main`. Checked every run: repo2docker ran exactly once (binderlab_builder_runs_total
    + 1), the image is new, the session serves the new notebook and the file postBuild
    wrote (postbuild-ran.txt, the tabulate version the environment installed).

Runs are interleaved (a, b, a, b, ...) after one uncounted first build of
tests/repos/postbuild and one uncounted warm-up of each. The report gives p50/p95 of each,
the ratio p50(b)/p50(a) against --target (3), the launch stages (bench/cache.py's), and for
(b) where the build's time goes: the BuildKit steps from the build log ("#N [i/n] STEP",
"#N CACHED", "#N DONE 1.2s"), the steps before the repository's COPY (which must all be
CACHED: the environment's layers) and after it, and repo2docker's own time around them.

Run from the repository root: python3 -m bench.postbuild --runs 5
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

from bench.cache import (
    BUILDER_RUNS,
    NOTEBOOK,
    STAGES,
    BenchCheckFailed,
    contents,
    kind_stats,
    launch,
    notebook,
)
from bench.launch import RESULTS_DIR, leftovers_of, percentile, service_run, write_result
from tests.harness.gitserver import GitServer
from tests.harness.service import BASE_IMAGE, Service

KINDS = {"cached": "(a) cached launch, same commit",
         "notebook": "(b) notebook-only commit (rebuild)"}
STEP = re.compile(r"^#(\d+) \[(?:[\w-]+ )?\s*(\d+)/(\d+)\] (.*)$")
STEP_NAMED = re.compile(r"^#(\d+) ([a-z].*)$")  # "#20 exporting to image", "#1 [internal] ..."
DONE = re.compile(r"^#(\d+) DONE (\d+(?:\.\d+)?)s$")
CACHED = re.compile(r"^#(\d+) CACHED$")


def build_steps(build_log: list[str]) -> list[dict[str, Any]]:
    """BuildKit's plain progress lines, as steps: number, text, cached, seconds."""
    steps: dict[str, dict[str, Any]] = {}
    for message in build_log:
        for line in message.splitlines():
            line = line.strip()
            if m := STEP.match(line):
                steps.setdefault(m[1], {"id": int(m[1]), "index": int(m[2]), "text": m[4],
                                        "cached": False, "seconds": 0.0})
            elif (m := STEP_NAMED.match(line)) and m[1] not in steps \
                    and not line.startswith(f"#{m[1]} sha256:"):
                steps[m[1]] = {"id": int(m[1]), "index": None, "text": m[2], "cached": False,
                               "seconds": 0.0}
            elif (m := DONE.match(line)) and m[1] in steps:
                steps[m[1]]["seconds"] = float(m[2])
            elif (m := CACHED.match(line)) and m[1] in steps:
                steps[m[1]]["cached"] = True
    return sorted(steps.values(), key=lambda s: s["id"])


def split_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The Dockerfile steps before the repository's `COPY ... src/ ${REPO_DIR}/`, that COPY
    and those after it, and BuildKit's other steps (context transfer, export)."""
    numbered = [s for s in steps if s["index"] is not None]
    copy = next((i for i, s in enumerate(numbered)
                 if re.search(r"^COPY \S+ src/ ", s["text"])), None)
    # FROM is resolved, never CACHED: the steps that could be rebuilt come after it
    before = [s for s in numbered[:copy] if not s["text"].startswith("FROM ")] \
        if copy is not None else []
    after = numbered[copy:] if copy is not None else numbered
    return {
        "before_copy": len(before), "before_copy_cached": sum(s["cached"] for s in before),
        "before_copy_s": sum(s["seconds"] for s in before),
        "copy_and_after_s": sum(s["seconds"] for s in after),
        "after": [(s["text"][:70], s["seconds"], s["cached"]) for s in after],
        "other": [(s["text"][:70], s["seconds"]) for s in steps if s["index"] is None],
        "other_s": sum(s["seconds"] for s in steps if s["index"] is None),
    }


def rebuild_timeline(run: dict[str, Any]) -> dict[str, float | None]:
    """Spans of one rebuild, from when its log lines arrived: binderlab's part before
    repo2docker speaks (the build context from git, repo2docker's start-up), repo2docker's
    part before BuildKit (build pack, Dockerfile, context tar), BuildKit, and the end (from
    BuildKit's last line through repo2docker's exit to binderlab's 'built')."""
    log, times, marks = run.get("build_log", []), run.get("build_times", []), run["marks"]
    if not times:
        return {}
    kit = [i for i, m in enumerate(log) if m.startswith("#")]
    first_kit = times[kit[0]] if kit else None
    last_kit = times[kit[-1]] if kit else None
    return {
        "context_and_repo2docker_start": times[0] - marks["planned"],
        "repo2docker_before_buildkit": (first_kit - times[0]) if kit else None,
        "buildkit": (last_kit - first_kit) if kit else None,
        "after_buildkit_to_built": (marks["built"] - last_kit) if kit else None,
    }


def own_containers(client: docker.DockerClient, prefix: str) -> list[str]:
    """This run's containers: those of its image prefix (it starts no floor containers, and
    other runs' floor containers on the shared engine are theirs)."""
    return sorted(c.name for c in client.containers.list(all=True)
                  if (c.attrs["Config"]["Image"] or "").startswith(prefix))


class PostBuildBench:
    def __init__(self, svc: Service, client: docker.DockerClient, repo, args):
        self.svc, self.client, self.repo, self.args = svc, client, repo, args
        self.bench_id = uuid.uuid4().hex[:8]
        self.commit = ""
        self.image = ""
        self.text = ""

    def _launch(self, kind: str, timeout: float, builds: int) -> dict[str, Any]:
        before = self.svc.metric(BUILDER_RUNS)

        def check(ready, run, build_log):
            runs = self.svc.metric(BUILDER_RUNS) - before
            if runs != builds:
                raise BenchCheckFailed(f"{kind}: the builder ran {runs:g} times, expected "
                                       f"{builds}")
            if run["commit"] != self.commit:
                raise BenchCheckFailed(f"{kind}: the session runs {run['commit']!r}, main is "
                                       f"{self.commit}")
            if self.text:
                got = contents(ready, NOTEBOOK)
                if got.status_code != 200 or self.text not in json.dumps(got.json()["content"]):
                    raise BenchCheckFailed(f"{kind}: old notebook content: {got.text[:300]}")
            ran = contents(ready, "postbuild-ran.txt")
            if ran.status_code != 200 or not ran.json()["content"].strip():
                raise BenchCheckFailed(f"{kind}: postBuild's file is missing: {ran.text[:300]}")
            run["postbuild_wrote"] = ran.json()["content"].strip()
            run["build_steps"] = build_steps(build_log)
            run["build_log"] = build_log
            if builds:
                first = next((t for t, phase, _ in run["events"] if phase == "building"), None)
                run["marks"]["first_build_line"] = first

        run = launch(self.svc, self.client, self.repo.gh_spec, self.args.poll_interval,
                     timeout, kind, check)
        if builds and run["image"] == self.image:
            raise BenchCheckFailed(f"{kind}: a new commit reused the image {self.image}")
        self.image = run["image"]
        return run

    def first(self) -> dict[str, Any]:
        self.commit = self.repo.commit({}, "bench: first")
        return self._launch("first build", self.args.build_timeout, 1)

    def cached(self) -> dict[str, Any]:
        return self._launch("cached", self.args.timeout, 0)

    def notebook_only(self, label: str) -> dict[str, Any]:
        self.text = f"binderlab bench {self.bench_id}: notebook version {label}"
        self.commit = self.repo.commit({NOTEBOOK: notebook(self.text)}, f"notebook: {label}")
        return self._launch("notebook", self.args.build_timeout, 1)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        out[kind] = kind_stats(runs, kind)
    rebuilds = [r for r in runs if r["kind"] == "notebook"]
    splits = [split_steps(r["build_steps"]) for r in rebuilds]

    def median(values):
        values = [v for v in values if v is not None]
        return percentile(values, 0.5) if values else None

    out["rebuild"] = {
        "key_known_to_first_build_line_s": median(
            [r["marks"].get("first_build_line", 0) - r["marks"]["planned"] for r in rebuilds]),
        "build_s": median([r["marks"]["built"] - r["marks"]["planned"] for r in rebuilds]),
        "steps_before_copy": splits[0]["before_copy"] if splits else 0,
        "steps_before_copy_cached_min": min((s["before_copy_cached"] for s in splits),
                                            default=0),
        "before_copy_s": median([s["before_copy_s"] for s in splits]),
        "copy_and_after_s": median([s["copy_and_after_s"] for s in splits]),
        "other_buildkit_s": median([s["other_s"] for s in splits]),
        "timeline": {name: median([rebuild_timeline(r).get(name) for r in rebuilds])
                     for name in ("context_and_repo2docker_start",
                                  "repo2docker_before_buildkit", "buildkit",
                                  "after_buildkit_to_built")},
        "last_run_after_copy": splits[-1]["after"] if splits else [],
        "last_run_other": splits[-1]["other"] if splits else [],
    }
    out["ratio_p50_notebook_to_cached"] = out["notebook"]["p50"] / out["cached"]["p50"]
    # each (b) over the (a) run just before it: the two saw the same machine load, which on
    # a shared host drifts more between runs than (b) differs from (a)
    pairs = [b["seconds"] / a["seconds"] for a, b in zip(runs[::2], runs[1::2], strict=True)]
    out["ratio_pairs"] = pairs
    out["ratio_median_of_pairs"] = percentile(pairs, 0.5)
    out["build_to_cached_p50"] = (out["rebuild"]["build_s"] or 0) / out["cached"]["p50"]
    return out


def print_report(summary: dict[str, Any], target: float) -> None:
    print(f"\n{'':40}{'p50 s':>8}{'p95 s':>8}{'n':>4}")
    for kind, label in KINDS.items():
        s = summary[kind]
        print(f"{label:40}{s['p50']:8.2f}{s['p95']:8.2f}{s['n']:4}")
    ratio = summary["ratio_p50_notebook_to_cached"]
    print(f"ratio p50(b)/p50(a): {ratio:.2f} (target <= {target:g}: "
          f"{'met' if ratio <= target else 'NOT met'})")
    print(f"median of per-run ratios (b)/(a), each against the (a) just before it: "
          f"{summary['ratio_median_of_pairs']:.2f} "
          f"({', '.join(f'{p:.2f}' for p in summary['ratio_pairs'])})")
    print(f"the rebuild alone (key known -> 'built', median) / p50(a): "
          f"{summary['build_to_cached_p50']:.2f}")
    print(f"\nwhere the time goes (median s){'':30}{'(a)':>8}{'(b)':>8}")
    for name, _, _ in STAGES:
        values = [summary[kind]["stage_medians"][name] for kind in KINDS]
        print(f"  {name:58}" + "".join("       -" if v is None else f"{v:8.2f}"
                                       for v in values))
    r = summary["rebuild"]

    def s(v):
        return "-" if v is None else f"{v:.2f} s"

    print("\nthe rebuild of (b), median:")
    print(f"  key known -> repo2docker's first log line: {s(r['key_known_to_first_build_line_s'])}")
    print(f"  key known -> 'built' (the whole build):     {s(r['build_s'])}")
    t = r["timeline"]
    print(f"    key known -> repo2docker's first line (build context, repo2docker start): "
          f"{s(t['context_and_repo2docker_start'])}")
    print(f"    repo2docker's first line -> BuildKit's first (build pack, Dockerfile, context "
          f"tar): {s(t['repo2docker_before_buildkit'])}")
    print(f"    BuildKit, first line to last: {s(t['buildkit'])}")
    print(f"    BuildKit's last line -> 'built' (repo2docker exits, image check): "
          f"{s(t['after_buildkit_to_built'])}")
    print(f"  Dockerfile steps before the repository COPY: {r['steps_before_copy']}, cached in "
          f"every run: {r['steps_before_copy_cached_min']} ({s(r['before_copy_s'])})")
    print(f"  the COPY and the steps after it: {s(r['copy_and_after_s'])}; BuildKit's other "
          f"steps (context, export): {s(r['other_buildkit_s'])}")
    print("  last run, steps from the COPY on (text, s, cached):")
    for text, seconds, cached in r["last_run_after_copy"]:
        print(f"    {seconds:6.2f}  {'CACHED ' if cached else ''}{text}")
    for text, seconds in r["last_run_other"]:
        print(f"    {seconds:6.2f}  {text}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.postbuild",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="Counted launches of each kind, interleaved (default %(default)s).")
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="Seconds between api/status polls (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=120,
                        help="Seconds a cached launch may take (default %(default)s).")
    parser.add_argument("--build-timeout", type=float, default=600,
                        help="Seconds a launch with a build may take (default %(default)s).")
    parser.add_argument("--target", type=float, default=3.0,
                        help="Target for p50(b)/p50(a) (default %(default)s).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results. Default: bench/results/postbuild-<UTC time>.json.")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # fails early when tests/harness/setup.sh has not run
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    left: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        git = GitServer(Path(tmp) / "git")
        svc = Service(Path(tmp) / "service", git.url, "up")
        with service_run(client, svc, git, left):
            svc.start()
            repo = git.create("postbuild")
            print(f"service {svc.url}, repo {repo.gh_spec}", flush=True)
            bench = PostBuildBench(svc, client, repo, args)
            t = time.perf_counter()
            first = bench.first()
            print(f"first build (not counted): {first['seconds']:.2f} s "
                  f"({time.perf_counter() - t:.1f} s with checks)", flush=True)
            warmup = [bench.cached(), bench.notebook_only("warm-up")]
            print("warm-up (not counted): " + ", ".join(
                f"{r['kind']} {r['seconds']:.2f} s" for r in warmup), flush=True)
            for i in range(args.runs):
                a = bench.cached()
                b = bench.notebook_only(f"run {i + 1}")
                runs += [a, b]
                print(f"run {i + 1}/{args.runs}: (a) {a['seconds']:.2f} s  "
                      f"(b) {b['seconds']:.2f} s", flush=True)
    summary = summarize(runs)
    print_report(summary, args.target)
    result = {
        "benchmark": "postbuild", "time": stamp, "runs": args.runs,
        "poll_interval_s": args.poll_interval, "target": args.target,
        "machine": {"cpus": os.cpu_count(), "docker_engine": client.version()["Version"],
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "first": first, "warmup": warmup, "summary": summary, "results": runs,
        **left, **leftovers_of(client, svc.image_prefix),
    }
    return write_result(result, args.output or RESULTS_DIR / f"postbuild-{stamp}.json")


if __name__ == "__main__":
    sys.exit(main())
