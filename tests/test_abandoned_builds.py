"""A build nobody follows is stopped and frees its slot, on the real engine: repo2docker
builds a Dockerfile repository whose RUN step would take an hour; its only client leaves."""

import json
import subprocess
import time
import uuid

import pytest
import requests

from tests.harness.gitserver import REPOS_DIR
from tests.harness.sse import follow

pytestmark = pytest.mark.docker


def step_processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_abandoned_build_is_stopped_and_the_next_build_gets_its_slot(make_service,
                                                                     git_server):
    svc = make_service("serve", extra_config="""
c.Repo2DockerBuilder.abandon_after = 3
c.Repo2DockerBuilder.max_concurrent_builds = 1
""")
    marker = f"abandon-marker-{uuid.uuid4().hex[:8]}"
    slow = git_server.create("slow-build")
    dockerfile = (REPOS_DIR / "slow-build" / "Dockerfile").read_text()
    slow.commit({"build-seconds": "3500\n",
                 "Dockerfile": dockerfile.replace("RUN n=", f"RUN : {marker}; n=", 1)})
    with requests.get(f"{svc.url}build/gh/{slow.gh_spec}/main", params={"build_only": "true"},
                      headers={"Accept": "text/event-stream"}, stream=True,
                      timeout=300) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data:") and "slow-build step 2/3500" in line:
                break
    # the client has gone; the hour-long step runs on the engine until the grace period ends
    assert step_processes(marker), "the RUN step is not visible: this test would see nothing"
    started = time.monotonic()
    while step_processes(marker) and time.monotonic() - started < 120:
        time.sleep(1)
    assert not step_processes(marker), "the abandoned build's RUN step still runs"

    quick = git_server.create("dockerfile")
    events = follow(f"{svc.url}build/gh/{quick.gh_spec}/main", params={"build_only": "true"},
                    timeout=300)
    assert events[-1]["phase"] == "ready", events[-3:]
    metrics = requests.get(f"{svc.url}metrics", timeout=30).text
    assert 'binderlab_builds_total{outcome="abandoned"} 1.0' in metrics
    # a client that launches it again starts it anew (and sees it run)
    with requests.get(f"{svc.url}build/gh/{slow.gh_spec}/main", params={"build_only": "true"},
                      headers={"Accept": "text/event-stream"}, stream=True,
                      timeout=300) as response:
        seen = []
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if "slow-build step 1/3500" in seen[-1].get("message", ""):
                    break
    assert seen[-1]["phase"] == "building"
    # and, left again, it is stopped again: nothing of this test runs on after it
    started = time.monotonic()
    while step_processes(marker) and time.monotonic() - started < 120:
        time.sleep(1)
    assert not step_processes(marker)
