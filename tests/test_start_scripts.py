"""A repository with a `start` script: one image for every commit with the same
environment, and each session runs its own commit's `start` (repo2docker's start-script
case, end to end: the effect is visible in the session)."""

import asyncio
import io
import tarfile

import pytest
import requests

from binderlab.fingerprint.startscript import PLACEHOLDER
from tests.harness.sse import follow, phases
from tests.test_kernel import run_code

START = """#!/bin/sh
export LESSON_STAGE="{stage}"
echo "$LESSON_STAGE" > "$HOME/started-by.txt"
exec "$@"
"""


def launch(service, repo):
    events = follow(f"{service.url}build/gh/{repo.gh_spec}/main")
    assert events[-1]["phase"] == "ready", events[-1]
    return events


def started_by(ready) -> str:
    """What the session's start script wrote, read through the session's contents API."""
    answer = requests.get(f"{ready['url']}api/contents/started-by.txt", timeout=20,
                          headers={"Authorization": f"token {ready['token']}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["content"].strip()


def kernel_sees(ready) -> str:
    """LESSON_STAGE as a kernel of the session sees it (what repo2docker's verify checks)."""
    headers = {"Authorization": f"token {ready['token']}"}
    session = requests.post(ready["url"] + "api/sessions", headers=headers, timeout=60, json={
        "path": "check.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    ws = ready["url"].replace("http://", "ws://", 1)
    url = f"{ws}api/kernels/{session.json()['kernel']['id']}/channels?token={ready['token']}"
    code = "import os; print(os.environ.get('LESSON_STAGE', 'unset'))"
    return asyncio.run(run_code(url, code)).strip()


@pytest.mark.docker
def test_commits_that_differ_in_start_share_one_image_and_run_their_own_start(
        service, git_server, docker_client):
    repo = git_server.create("start-script")  # start committed without the executable bit
    first = launch(service, repo)
    assert "building" in phases(first)
    image = first[-1]["image"]
    assert image.startswith(service.image_prefix + "env-"), image
    assert started_by(first[-1]) == "week one"
    assert kernel_sees(first[-1]) == "week one"
    runs = service.metric("binderlab_builder_runs_total")

    repo.commit({"start": START.format(stage="week two")}, "only start changes")
    second = launch(service, repo)
    assert "building" not in phases(second)
    assert service.metric("binderlab_builder_runs_total") == runs
    assert second[-1]["image"] == image
    assert started_by(second[-1]) == "week two"
    assert any("start runs from this commit" in e.get("message", "") for e in second)
    assert kernel_sees(second[-1]) == "week two"
    # the first session is still the first commit's
    assert started_by(first[-1]) == "week one"

    # the shared image holds binderlab's placeholder, not the commit that built it first
    labels = docker_client.images.get(image).labels
    assert labels.get("binderlab.kind") == "env"
    env = dict(e.split("=", 1) for e in docker_client.images.get(image).attrs["Config"]["Env"])
    assert env["R2D_ENTRYPOINT"] == env["REPO_DIR"] + "/start"
    held = docker_client.containers.run(image, [env["R2D_ENTRYPOINT"]], entrypoint=["cat"],
                                        remove=True, network_disabled=True,
                                        labels={"binderlab.test": "start-placeholder"})
    assert held == PLACEHOLDER


@pytest.mark.docker
def test_removing_start_is_a_new_image_without_it(service, git_server):
    repo = git_server.create("start-script")
    first = launch(service, repo)
    repo.commit({"start": None}, "no start any more")
    second = launch(service, repo)
    assert second[-1]["image"] != first[-1]["image"]
    assert second[-1]["image"].startswith(service.image_prefix + "env-")
    answer = requests.get(f"{second[-1]['url']}api/contents/started-by.txt", timeout=20,
                          headers={"Authorization": f"token {second[-1]['token']}"})
    assert answer.status_code == 404
    assert kernel_sees(second[-1]) == "unset"


def test_overlay_tar_makes_only_the_start_script_executable(tmp_path):
    """git archive keeps a start committed without +x as 0644; repo2docker's build would
    have run chmod +x on it, so the overlay does (that file only, and never a link)."""
    from binderlab.spawners.docker import owned_tar

    archive = tmp_path / "commit.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("binder/start", "start", "notes.md"):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 2, 0o644
            tar.addfile(info, io.BytesIO(b"x\n"))
        link = tarfile.TarInfo("binder/link")
        link.type, link.linkname = tarfile.SYMTYPE, "start"
        tar.addfile(link)
    with owned_tar(archive, 1000, "binder/start") as out, tarfile.open(fileobj=out) as tar:
        modes = {m.name: m.mode for m in tar}
        owners = {m.uid for m in tar}
    assert modes["binder/start"] & 0o111 == 0o111
    assert modes["start"] == modes["notes.md"] == 0o644  # not the start script of this image
    assert owners == {1000}
    with owned_tar(archive, 1000, "binder/link") as out, tarfile.open(fileobj=out) as tar:
        assert {m.name: m.mode for m in tar}["binder/start"] == 0o644
