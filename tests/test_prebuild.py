"""Prebuilding before class (CLI, push webhook) and keeping images within a disk budget."""

import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker
REPOS = Path(__file__).parent / "repos"


def signed_push(service, payload: dict, secret: str | None = None, event="push",
                delivery: str | None = None):
    body = json.dumps(payload).encode()
    digest = hmac.new((secret or service.webhook_secret).encode(), body, hashlib.sha256)
    return requests.post(f"{service.url}hooks/github", data=body, timeout=20, headers={
        "X-GitHub-Event": event, "X-Hub-Signature-256": "sha256=" + digest.hexdigest(),
        "X-GitHub-Delivery": str(uuid.uuid4()) if delivery is None else delivery,
        "Content-Type": "application/json"})


def wait_for_image(docker_client, prefix, commit, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for image in docker_client.images.list(filters={"label": f"binderlab.commit={commit}"}):
            if any(t.startswith(prefix) for t in image.tags):
                return image
        time.sleep(0.5)
    raise AssertionError(f"no image for {commit} within {timeout} s")


def test_webhook_with_wrong_signature_is_refused(service, git_server, docker_client):
    repo = git_server.create("dockerfile")
    sha = repo.commit({}, "push")
    payload = {"ref": "refs/heads/main", "after": sha,
               "repository": {"full_name": repo.gh_spec}}
    assert signed_push(service, payload, secret="not-the-secret").status_code == 401
    unsigned = requests.post(f"{service.url}hooks/github", data=json.dumps(payload),
                             headers={"X-GitHub-Event": "push"}, timeout=20)
    assert unsigned.status_code == 401
    time.sleep(2)
    assert not docker_client.images.list(filters={"label": f"binderlab.commit={sha}"})


def test_webhook_push_prebuilds_so_the_launch_is_a_cache_hit(service, git_server,
                                                            docker_client):
    repo = git_server.create("dockerfile")
    sha = repo.commit({"lesson.ipynb": "{}"}, "lesson 2")
    assert signed_push(service, {}, event="ping").status_code == 200
    response = signed_push(service, {"ref": "refs/heads/main", "after": sha,
                                      "repository": {"full_name": repo.gh_spec}})
    assert response.status_code == 202, response.text
    assert response.json()["spec"] == f"gh/{repo.gh_spec}/{sha}"
    wait_for_image(docker_client, service.image_prefix, sha)
    events = follow(f"{service.url}build/gh/{repo.gh_spec}/main")
    assert phases(events) == ["fetching", "built", "launching", "ready"]


def test_cli_build_then_launch_is_a_cache_hit(service, git_server):
    repo = git_server.create("requirements")
    repo.commit({"requirements.txt": "tabulate==0.9.0\nsix>=1.1\n"}, "an env of its own")
    built = service.cli("build", f"gh/{repo.gh_spec}", "--ref", "main")
    assert built.returncode == 0, built.stderr[-3000:]
    image = built.stdout.strip().splitlines()[-1]
    assert image.startswith(service.image_prefix + "env-")
    assert "src/requirements.txt" in built.stderr  # the build log went to stderr
    events = follow(f"{service.url}build/gh/{repo.gh_spec}/main")
    assert phases(events) == ["fetching", "built", "launching", "ready"]
    assert events[-1]["image"] == image


def test_env_hash_names_the_files(service):
    out = service.cli("env-hash", str(REPOS / "requirements"))
    assert out.returncode == 0, out.stderr
    assert "fingerprint: env-" in out.stdout
    assert "defined by:  requirements.txt" in out.stdout
    tree = service.cli("env-hash", str(REPOS / "dockerfile"))
    assert "fingerprint: tree-" in tree.stdout and "Dockerfile" in tree.stdout


def test_eviction_spares_pinned_in_use_and_just_built(make_service, git_server, docker_client):
    svc = make_service("up", extra_config="c.BinderLab.image_disk_budget_gb = 1e-9")
    # a pinned image, prebuilt from a folder as an operator prebuilds environments/
    pinned = svc.cli("build", str(REPOS / "dockerfile"), "--pin")
    assert pinned.returncode == 0, pinned.stderr[-3000:]
    pinned_image = pinned.stdout.strip().splitlines()[-1]
    # an image in use by a running session
    in_use = follow(f"{svc.url}build/gh/{git_server.create('dockerfile').gh_spec}/main")[-1]
    assert in_use["phase"] == "ready"
    # an image nobody uses, then another build, which triggers eviction
    idle = follow(f"{svc.url}build/gh/{git_server.create('dockerfile').gh_spec}/main",
                  params={"build_only": "true"})[-1]["imageName"]
    latest = follow(f"{svc.url}build/gh/{git_server.create('dockerfile').gh_spec}/main",
                    params={"build_only": "true"})[-1]["imageName"]
    deadline = time.monotonic() + 30
    names = set()
    while time.monotonic() < deadline:
        names = {t.rsplit(":", 1)[0] for i in docker_client.images.list() for t in i.tags}
        if idle not in names:
            break
        time.sleep(0.5)
    assert idle not in names, "the idle image was not evicted"
    assert {pinned_image, in_use["image"], latest} <= names
    index = sqlite3.connect(svc.workdir / "state" / "cache.sqlite")
    indexed = {row[0] for row in index.execute("SELECT name FROM images")}
    assert idle not in indexed and latest in indexed
    # the session on the in-use image still answers
    assert requests.get(in_use["url"] + "api/status", timeout=20,
                        headers={"Authorization": f"token {in_use['token']}"}).ok
