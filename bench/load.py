"""Load benchmark: many clients at once against one binderlab host, on loopback only.

(a) launches: N concurrent clients (--clients, default 50) launch the same cached repository
    (tests/repos/dockerfile, built once before) through the event stream, each up to `ready`
    and then `GET <url>api/status` 200 with its token. Reported: how many got a session, how
    many got a clear quota/limit message (`failed` with status 429/503 saying so), anything
    else; p50/p95 time to `ready` and to a usable session; how often the builder ran (it must
    not: the image is cached); the service's memory. The service allows 50 launches from one
    address (c.LaunchLimits.per_client = 0). Every session is stopped afterwards.
(b) watchers: M concurrent watchers (--watchers, default 1000) of ONE build stream:
    tests/repos/slow-build with a step of --build-seconds that prints a line a second,
    requested with build_only=true (a build, no sessions). Every watcher must get the whole
    log (the same lines as every other, from repo2docker's first to the last step) and then
    `built` and `ready`; the builder must run once. Reported: completeness, connect and
    first-event times, the service's memory and open files.

The service is the real `binderlab up` (JupyterHub, configurable-http-proxy, the Docker engine)
started by the test harness with its own ports and image prefix; the repositories come from
the harness's git server on 127.0.0.1. Memory is the binder service process's VmRSS from
/proc/<pid>/status, sampled every --sample-interval seconds during each scenario (JupyterHub
and the proxy are separate processes, sampled too). Clients are asyncio + aiohttp in this
process, whose open-files limit is raised to its hard limit first (the service keeps the one
it was started with; --service-nofile sets it). Counts and time are bounded: every client
has --timeout seconds, the whole run --max-seconds.

Run from the repository root: python3 -m bench.load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import docker
import requests

from bench.launch import hub_delete, leftovers_of, own_containers, percentile, service_run
from tests.harness.gitserver import GitServer
from tests.harness.service import BASE_IMAGE, Service

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SERVICE_CONFIG = """
# one address (127.0.0.1) stands for every client here: no per-address limit
c.LaunchLimits.per_client = 0
c.LaunchLimits.per_client_with_page = 0
c.LaunchLimits.page_views_per_client = 0
# the benchmark measures many sessions at once, not the host-sized default session quota
c.LaunchLimits.max_sessions = 0
"""
# what a clear quota/limit refusal says (binderlab's LaunchLimits, JupyterHub's spawn limit)
LIMIT_WORDS = ("too many", "is full", "quota", "limit", "sessions running")


# ---- measuring the service -------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and the number of open files of a process."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft} soft / {hard} hard"
    return "unknown"


def children(pid: int) -> dict[str, int]:
    """The service's helper processes by role: JupyterHub and its proxy."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "-m jupyterhub " in cmdline:
            found["jupyterhub"] = int(entry.name)
    hub = found.get("jupyterhub")
    if hub:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == hub and "http-proxy" in cmdline:
                    found["proxy"] = int(entry.name)
    return found


class Sampler(threading.Thread):
    """Samples VmRSS and open files of the service (and its hub and proxy) in the background."""

    def __init__(self, pids: dict[str, int], interval: float):
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            sample: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 3)}
            for role, pid in self.pids.items():
                sample[role] = proc_status(pid)
            self.samples.append(sample)
            self.stop.wait(self.interval)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.join()
        out: dict[str, Any] = {"samples": len(self.samples)}
        for role in self.pids:
            rss = [s[role]["VmRSS"] for s in self.samples if "VmRSS" in s.get(role, {})]
            fds = [s[role]["fds"] for s in self.samples if "fds" in s.get(role, {})]
            out[role] = {"rss_max_mb": round(max(rss) / 1024, 1) if rss else None,
                         "rss_first_mb": round(rss[0] / 1024, 1) if rss else None,
                         "rss_last_mb": round(rss[-1] / 1024, 1) if rss else None,
                         "open_files_max": max(fds) if fds else None}
        return out


# ---- clients ----------------------------------------------------------------------------


async def stream(session: aiohttp.ClientSession, url: str, params: dict,
                 timeout: float) -> dict[str, Any]:
    """Follow one event stream up to ready/failed; times are seconds from the request."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"events": [], "error": None}
    try:
        async with session.get(url, params=params, headers={"Accept": "text/event-stream"},
                               timeout=aiohttp.ClientTimeout(total=timeout,
                                                             sock_connect=60)) as response:
            out["connected"] = time.perf_counter() - t0
            out["http_status"] = response.status
            if response.status != 200:
                out["error"] = f"HTTP {response.status}: {(await response.text())[:300]}"
                return out
            async for raw in response.content:
                line = raw.decode(errors="replace").rstrip("\n")
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                event["t"] = time.perf_counter() - t0
                out["events"].append(event)
                if event["phase"] in ("ready", "failed"):
                    break  # the client closes; the server would linger for it
    except Exception as e:  # counted, never raised: one client must not stop the others
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = time.perf_counter() - t0
    return out


async def usable(session: aiohttp.ClientSession, ready: dict, timeout: float,
                 interval: float = 0.1) -> bool:
    """GET <url>api/status with the launch token until 200."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {ready['token']}"}
    while time.monotonic() < deadline:
        try:
            async with session.get(ready["url"] + "api/status", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=10)) as response:
                if response.status == 200:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(interval)
    return False


async def launch_client(session, url: str, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = await stream(session, url, {}, timeout)
    end = result["events"][-1] if result["events"] else {}
    result["phase"] = end.get("phase", "none")
    if end.get("phase") == "ready":
        result["ready_s"] = end["t"]
        result["username"] = end["url"].rstrip("/").rsplit("/", 1)[-1]
        result["usable"] = await usable(session, end, timeout)
        result["usable_s"] = time.perf_counter() - t0
    elif end.get("phase") == "failed":
        result["status_code"] = end.get("status_code")
        result["message"] = end.get("message", "").strip()
    result["building"] = sum(1 for e in result["events"] if e["phase"] == "building")
    result["events"] = [{k: e.get(k) for k in ("phase", "t", "status_code")}
                        for e in result["events"]]
    return result


def is_limit_message(result: dict) -> bool:
    """A refusal that tells the user the host is at a limit (not some other failure)."""
    message = (result.get("message") or "").lower()
    return result.get("status_code") in (429, 503) and any(w in message for w in LIMIT_WORDS)


def stop_sessions(svc: Service, usernames: list[str]) -> list[str]:
    """Delete each session's hub user (its server stops); return those that failed."""
    return [name for name in usernames if not hub_delete(svc, f"users/{name}", tries=30)]


# ---- scenarios --------------------------------------------------------------------------


def scenario_launches(svc: Service, git: GitServer, client: docker.DockerClient,
                      args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    repo = git.create("dockerfile")
    url = f"{svc.url}build/gh/{repo.gh_spec}/main"
    warm = requests.get(url, params={"build_only": "true"}, stream=True, timeout=600,
                        headers={"Accept": "text/event-stream"})
    last = [line for line in warm.iter_lines(decode_unicode=True) if line.startswith("data:")]
    warm.close()
    assert json.loads(last[-1][5:])["phase"] == "ready", last[-3:]  # built, not launched
    runs_before = svc.metric("binderlab_builder_runs_total")
    print(f"(a) {args.clients} clients launch {repo.gh_spec} (image cached; builder runs so "
          f"far: {runs_before:g})", flush=True)

    async def run():
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await asyncio.gather(*(launch_client(session, url, args.timeout)
                                          for _ in range(args.clients)))

    sampler = Sampler(pids, args.sample_interval)
    sampler.start()
    t0 = time.perf_counter()
    results = asyncio.run(asyncio.wait_for(run(), args.max_seconds))
    wall = time.perf_counter() - t0
    memory = sampler.finish()
    runs_after = svc.metric("binderlab_builder_runs_total")

    ready = [r for r in results if r["phase"] == "ready"]
    sessions_ok = [r for r in ready if r.get("usable")]
    limited = [r for r in results if r["phase"] == "failed" and is_limit_message(r)]
    other = [r for r in results if r not in ready and r not in limited]
    running = [c.name for c in client.containers.list()
               if (c.attrs["Config"]["Image"] or "").startswith(svc.image_prefix)]
    not_stopped = stop_sessions(svc, [r["username"] for r in ready])
    deadline = time.monotonic() + 120
    while own_containers(client, svc.image_prefix) and time.monotonic() < deadline:
        time.sleep(1)
    ready_s = [r["ready_s"] for r in ready]
    usable_s = [r["usable_s"] for r in sessions_ok]
    summary = {
        "clients": args.clients,
        "ready": len(ready), "usable": len(sessions_ok), "limit_messages": len(limited),
        "other_failures": len(other),
        "success_rate": len(sessions_ok) / args.clients,
        "clear_outcome_rate": (len(sessions_ok) + len(limited)) / args.clients,
        "ready_p50_s": percentile(ready_s, 0.5) if ready_s else None,
        "ready_p95_s": percentile(ready_s, 0.95) if ready_s else None,
        "ready_max_s": max(ready_s) if ready_s else None,
        "usable_p50_s": percentile(usable_s, 0.5) if usable_s else None,
        "usable_p95_s": percentile(usable_s, 0.95) if usable_s else None,
        "wall_s": wall,
        "builder_runs_during": runs_after - runs_before,
        "clients_that_saw_build_log": sum(1 for r in results if r["building"]),
        "sessions_running_at_end": len(running),
        "sessions_not_stopped": not_stopped,
        "containers_left_after_stop": own_containers(client, svc.image_prefix),
        "memory": memory,
        "limit_message_examples": sorted({r["message"] for r in limited})[:3],
        "other_failure_examples": sorted({r.get("message") or r.get("error") or r["phase"]
                                          for r in other})[:5],
    }
    return {"summary": summary, "clients": results, "repo": repo.gh_spec}


async def watcher(session, url: str, timeout: float) -> dict[str, Any]:
    result = await stream(session, url, {"build_only": "true"}, timeout)
    events = result.pop("events")
    result["phases"] = []
    for e in events:
        if not result["phases"] or result["phases"][-1] != e["phase"]:
            result["phases"].append(e["phase"])
    result["log"] = [e.get("message", "") for e in events if e["phase"] == "building"]
    result["first_event_s"] = events[0]["t"] if events else None
    result["built_s"] = next((e["t"] for e in events if e["phase"] == "built"), None)
    result["found_cached"] = any(e["phase"] == "built" and
                                 e.get("message", "").startswith("Found built image")
                                 for e in events)
    if events and events[-1]["phase"] == "failed":
        result["message"] = events[-1].get("message", "").strip()
        result["status_code"] = events[-1].get("status_code")
    return result


def scenario_watchers(svc: Service, git: GitServer, args: argparse.Namespace,
                      pids: dict[str, int]) -> dict[str, Any]:
    repo = git.create("slow-build")
    repo.commit({"build-seconds": f"{args.build_seconds}\n"}, "build step length")
    url = f"{svc.url}build/gh/{repo.gh_spec}/main"
    runs_before = svc.metric("binderlab_builder_runs_total")
    print(f"(b) {args.watchers} watchers follow one build of {repo.gh_spec} "
          f"({args.build_seconds} s step)", flush=True)

    async def run():
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await asyncio.gather(*(watcher(session, url, args.timeout)
                                          for _ in range(args.watchers)))

    sampler = Sampler(pids, args.sample_interval)
    sampler.start()
    t0 = time.perf_counter()
    results = asyncio.run(asyncio.wait_for(run(), args.max_seconds))
    wall = time.perf_counter() - t0
    memory = sampler.finish()
    runs = svc.metric("binderlab_builder_runs_total") - runs_before

    # the whole log: the longest one any watcher got, which must run to the last step
    reference = max((r["log"] for r in results), key=len)
    last_step = f"slow-build step {args.build_seconds}/{args.build_seconds}"
    complete_reference = any(last_step in line for line in reference)
    whole = [r for r in results if r["log"] == reference and r["phases"][-2:] == ["built",
                                                                               "ready"]]
    cached = [r for r in results if r["found_cached"]]
    first = [r["first_event_s"] for r in results if r["first_event_s"] is not None]
    connected = [r["connected"] for r in results if r.get("connected") is not None]
    errors = sorted({r["error"] for r in results if r["error"]})
    failed = [r for r in results if r.get("message") is not None]
    summary = {
        "watchers": args.watchers, "build_seconds": args.build_seconds,
        "whole_log_and_ready": len(whole), "joined_after_build_ended": len(cached),
        "failed": len(failed),
        "failure_examples": sorted({f"{r['status_code']} {r['message']}" for r in failed})[:5],
        "errors": len([r for r in results if r["error"]]), "error_examples": errors[:5],
        "log_lines": len(reference), "log_reaches_last_step": complete_reference,
        "builder_runs": runs,
        "connect_p50_s": percentile(connected, 0.5) if connected else None,
        "connect_max_s": max(connected) if connected else None,
        "first_event_p50_s": percentile(first, 0.5) if first else None,
        "first_event_p95_s": percentile(first, 0.95) if first else None,
        "first_event_max_s": max(first) if first else None,
        "wall_s": wall,
        "memory": memory,
    }
    for r in results:
        r["log"] = len(r["log"])
    return {"summary": summary, "watchers": results, "repo": repo.gh_spec}


# ---- running ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("launches", "watchers", "both"), default="both",
                        help="(a) launches, (b) watchers, or both in one run (default "
                        "%(default)s).")
    parser.add_argument("--clients", type=int, default=50,
                        help="(a): concurrent clients launching the cached repository "
                        "(default %(default)s; at most 200).")
    parser.add_argument("--watchers", type=int, default=1000,
                        help="(b): concurrent watchers of one build stream (default "
                        "%(default)s; at most 5000).")
    parser.add_argument("--build-seconds", type=int, default=60,
                        help="(b): length of the build's slow step, one log line a second; "
                        "it must outlast the watchers' arrival (default %(default)s).")
    parser.add_argument("--timeout", type=float, default=600,
                        help="Seconds one client may take, stream and api/status together "
                        "(default %(default)s).")
    parser.add_argument("--max-seconds", type=float, default=900,
                        help="Seconds one scenario may take in all before the bench fails "
                        "(default %(default)s).")
    parser.add_argument("--sample-interval", type=float, default=0.2,
                        help="Seconds between samples of the service's VmRSS and open files "
                        "(default %(default)s).")
    parser.add_argument("--service-nofile", type=int, default=0,
                        help="Soft open-files limit the service is started with; 0 (default): "
                        "the one this shell gives.")
    parser.add_argument("--http-max-clients", type=int, default=0,
                        help="Set Tornado's AsyncHTTPClient max_clients in the service "
                        "process (through its config file, which is Python) to test a fix; "
                        "0 (default): the service as it is (Tornado's default, 10).")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON results file. Default: bench/results/load-<UTC time>.json.")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 200:
        parser.error("--clients must be between 1 and 200")
    if not 1 <= args.watchers <= 5000:
        parser.error("--watchers must be between 1 and 5000")
    if not 5 <= args.build_seconds <= 600:
        parser.error("--build-seconds must be between 5 and 600")
    return args


def print_report(result: dict[str, Any]) -> None:
    a = result.get("launches", {}).get("summary")
    if a:
        mem = a["memory"]["service"]
        print(f"\n(a) {a['clients']} concurrent launches of one cached repository")
        print(f"  sessions usable        {a['usable']}/{a['clients']} "
              f"(ready {a['ready']}), clear limit messages {a['limit_messages']}, "
              f"other failures {a['other_failures']}")
        if a["ready_p50_s"] is not None:
            print(f"  time to ready          p50 {a['ready_p50_s']:.2f} s, p95 "
                  f"{a['ready_p95_s']:.2f} s, max {a['ready_max_s']:.2f} s")
            print(f"  time to api/status 200 p50 {a['usable_p50_s']:.2f} s, p95 "
                  f"{a['usable_p95_s']:.2f} s")
        print(f"  builder runs           {a['builder_runs_during']:g}")
        print(f"  service RSS            max {mem['rss_max_mb']} MB "
              f"(start {mem['rss_first_mb']} MB), open files max {mem['open_files_max']}")
        for example in a["limit_message_examples"] + a["other_failure_examples"]:
            print(f"  e.g. {example[:160]}")
    b = result.get("watchers", {}).get("summary")
    if b:
        mem = b["memory"]["service"]
        print(f"\n(b) {b['watchers']} concurrent watchers of one build stream")
        print(f"  whole log + built + ready  {b['whole_log_and_ready']}/{b['watchers']} "
              f"({b['log_lines']} log lines, last step reached: {b['log_reaches_last_step']}); "
              f"joined after the build: {b['joined_after_build_ended']}; failed "
              f"{b['failed']}; errors {b['errors']}")
        print(f"  builder runs               {b['builder_runs']:g}")
        print(f"  first event                p50 {b['first_event_p50_s']:.2f} s, p95 "
              f"{b['first_event_p95_s']:.2f} s, max {b['first_event_max_s']:.2f} s")
        print(f"  service RSS                max {mem['rss_max_mb']} MB "
              f"(start {mem['rss_first_mb']} MB), open files max {mem['open_files_max']}")
        for example in b["failure_examples"] + b["error_examples"]:
            print(f"  e.g. {example[:160]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client = docker.from_env()
    client.images.get(BASE_IMAGE)  # fails early when tests/harness/setup.sh has not run
    result: dict[str, Any] = {"benchmark": "load", "time": stamp, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "docker_engine": client.version()["Version"]}}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with tempfile.TemporaryDirectory(prefix="binderlab-bench-") as tmp:
        git = GitServer(Path(tmp) / "git")
        config = SERVICE_CONFIG
        if args.http_max_clients:
            config += ("from tornado.httpclient import AsyncHTTPClient\n"
                       f"AsyncHTTPClient.configure(None, max_clients={args.http_max_clients})\n")
        svc = Service(Path(tmp) / "service", git.url, "up", extra_config=config)
        with service_run(client, svc, git, result):
            if args.service_nofile:  # the service inherits this process's limit
                resource.setrlimit(resource.RLIMIT_NOFILE, (args.service_nofile, hard))
            svc.start()
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            pids = {"service": svc.proc.pid, **children(svc.proc.pid)}
            result["open_files_limit"] = {
                "bench": f"{hard} soft / {hard} hard (raised from {soft})",
                "service": open_files_limit(svc.proc.pid)}
            result["service_rss_idle_mb"] = proc_status(svc.proc.pid).get("VmRSS", 0) / 1024
            print(f"service {svc.url} (pid {svc.proc.pid}), hub {svc.hub_url}; open files: "
                  f"{result['open_files_limit']}", flush=True)
            if args.scenario in ("launches", "both"):
                result["launches"] = scenario_launches(svc, git, client, args, pids)
            if args.scenario in ("watchers", "both"):
                result["watchers"] = scenario_watchers(svc, git, args, pids)
        # the binder service's own lines (the log also holds the hub's), for failures
        result["service_log_tail"] = svc.log_path.read_text(errors="replace")[-8000:]
    leftovers = leftovers_of(client, svc.image_prefix)["leftover_containers"]
    print_report(result)
    output = args.output or RESULTS_DIR / f"load-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {output}")
    if leftovers:
        print(f"LEFTOVERS: containers {leftovers}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
