"""End to end: a repository URL becomes a running Jupyter server (real engine, hub, proxy)."""

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker

READY_KEYS = {"url", "token", "image", "repo_url", "binder_ref_url", "binder_launch_host",
              "binder_request", "binder_persistent_request", "message"}


def build_url(service, provider, spec):
    return f"{service.url}build/{provider}/{spec}"


def status(ready, token=None, origin=None):
    headers = {"Origin": origin} if origin else {}
    return requests.get(ready["url"] + "api/status", params={"token": token or ready["token"]},
                        headers=headers, timeout=20)


def test_git_url_builds_and_launches(service, git_server):
    repo = git_server.create("dockerfile")
    runs = service.metric("binderlab_builder_runs_total")
    events = follow(build_url(service, "git", f"{quote(repo.url, safe='')}/main"))
    assert phases(events) == ["fetching", "building", "built", "launching", "ready"], events[-1]
    assert service.metric("binderlab_builder_runs_total") == runs + 1
    assert any("DockerBuildPack" in e.get("message", "") for e in events)

    ready = events[-1]
    assert READY_KEYS <= ready.keys()
    assert ready["url"].startswith(service.hub_url + "/user/") and ready["url"].endswith("/")
    assert ready["image"].startswith(service.image_prefix)
    assert ready["repo_url"] == repo.url
    assert ready["binder_launch_host"] == service.url
    head = events[1]["message"].split(" at ")[-1].strip()
    assert ready["binder_persistent_request"].startswith("v2/git/")
    assert ready["binder_persistent_request"].split("/")[-1].startswith(head)

    # The session answers with its token, as a BinderHub client would call it ...
    response = status(ready)
    assert response.status_code == 200, response.text
    assert "started" in response.json()
    # ... and refuses a wrong one.
    assert status(ready, token="not-the-token-" + "x" * 20).status_code == 403
    # The repository's notebook is in the session.
    contents = requests.get(ready["url"] + "api/contents",
                            headers={"Authorization": f"token {ready['token']}"}, timeout=20)
    assert "hello.ipynb" in [item["name"] for item in contents.json()["content"]]


def test_session_allows_cross_origin_api_calls(service, git_server):
    repo = git_server.create("dockerfile")
    ready = follow(build_url(service, "gh", f"{repo.gh_spec}/main"))[-1]
    assert ready["phase"] == "ready", ready
    response = status(ready, origin="https://course.example.org")
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin") in ("*", "https://course.example.org")


def test_second_launch_of_a_commit_does_not_build(service, git_server):
    repo = git_server.create("dockerfile")
    first = follow(build_url(service, "gh", f"{repo.gh_spec}/main"))
    assert first[-1]["phase"] == "ready"
    runs = service.metric("binderlab_builder_runs_total")
    second = follow(build_url(service, "gh", f"{repo.gh_spec}/main"))
    assert phases(second) == ["fetching", "built", "launching", "ready"]
    assert service.metric("binderlab_builder_runs_total") == runs
    assert second[-1]["image"] == first[-1]["image"]
    assert second[-1]["url"] != first[-1]["url"]  # a session of its own
    assert status(second[-1]).status_code == 200


def test_concurrent_requests_share_one_build(service, git_server):
    repo = git_server.create("dockerfile")
    runs = service.metric("binderlab_builder_runs_total")
    url = build_url(service, "gh", f"{repo.gh_spec}/main")
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: follow(url), range(5)))
    assert service.metric("binderlab_builder_runs_total") == runs + 1
    readies = [events[-1] for events in results]
    assert [r["phase"] for r in readies] == ["ready"] * 5, [r.get("message") for r in readies]
    # every watcher saw the build's whole log, from its first line
    logs = ["".join(e.get("message", "") for e in events if e["phase"] == "building")
            for events in results]
    assert all("Picked Local content provider" in log for log in logs)
    assert len({log for log in logs}) == 1
    # five sessions, each token good for its own server only
    assert len({r["url"] for r in readies}) == 5
    assert all(status(r).status_code == 200 for r in readies)
    assert status(readies[0], token=readies[1]["token"]).status_code == 403


def test_branch_tag_and_commit_refs(service, git_server):
    repo = git_server.create("dockerfile")
    sha = repo.commit({"extra.txt": "on a branch"}, branch="feature/x")
    repo.tag("v1.0")
    for ref in ("feature/x", "v1.0", sha):
        events = follow(build_url(service, "gh", f"{repo.gh_spec}/{ref}"),
                        params={"build_only": "true"})
        assert events[-1]["phase"] == "ready", (ref, events[-1])
        assert f" at {sha[:12]}" in events[1]["message"], ref


def test_failing_build_reports_log_tail_and_leaves_no_image(service, git_server, docker_client):
    repo = git_server.create("failing-build")
    events = follow(build_url(service, "gh", f"{repo.gh_spec}/main"))
    failed = events[-1]
    assert failed["phase"] == "failed"
    assert "repo2docker failed" in failed["message"]
    assert "about to fail" in failed["message"]
    assert failed["status_code"] == 422  # the repository's RUN step failed, not binderlab
    tags = [t for image in docker_client.images.list() for t in image.tags]
    assert not [t for t in tags if t.startswith(service.image_prefix + "tree-")
                and any(t.startswith(e.get("imageName", "-")) for e in events)]
    assert "launching" not in phases(events)


def test_build_only(service, git_server, docker_client):
    repo = git_server.create("dockerfile")
    events = follow(build_url(service, "gh", f"{repo.gh_spec}/main"),
                    params={"build_only": "true"})
    assert phases(events) == ["fetching", "building", "built", "ready"]
    image = docker_client.images.get(events[-1]["imageName"])
    assert image.labels["binderlab.repo"] == repo.url
    assert image.labels["binderlab.kind"] == "tree"
    assert events[-1]["imageName"].endswith(image.labels["binderlab.key"])


def test_metrics_show_builds_launches_cache_and_sessions(service, git_server):
    import time

    repo = git_server.create("dockerfile")
    ready = follow(build_url(service, "gh", f"{repo.gh_spec}/main"))[-1]
    assert ready["phase"] == "ready"
    text = requests.get(service.url + "metrics", timeout=10).text
    for name in ("binderlab_builds_total", "binderlab_build_duration_seconds_count",
                 "binderlab_image_cache_total", "binderlab_launch_duration_seconds_count",
                 "binderlab_builds_waiting", "binderlab_builds_running",
                 "binderlab_gpu_queue_length"):
        assert name in text, name
    assert 'binderlab_launches_total{outcome="ready"}' in text
    deadline = time.monotonic() + 30  # the gauge is refreshed every 10 s
    while service.metric("binderlab_sessions_running") < 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert service.metric("binderlab_sessions_running") >= 1
