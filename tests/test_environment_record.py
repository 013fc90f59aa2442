"""The environment record of a built image, for real: repository and commit, build pack and
files, repo2docker and base image, image id and size, the build log, the packages read
from the image, a reproduce block; linked from the ready event, the loading page and the
form; still there after the image was removed."""

import json
import shutil
import time

import pytest
import requests
from repo2docker import __version__ as repo2docker_version

from tests.harness.service import BASE_IMAGE
from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker


def record_when_packages_read(url: str, deadline_s: float = 180) -> dict:
    """The record's JSON once the packages were read from the image (done after the build,
    in the background)."""
    deadline = time.monotonic() + deadline_s
    while True:
        body = requests.get(url, headers={"Accept": "application/json"}, timeout=60).json()
        record = body.get("record") or {}
        if record.get("packages") or record.get("packages_error") \
                or time.monotonic() > deadline:
            return body
        time.sleep(1)


def test_built_image_has_a_record_that_outlives_it(make_service, git_server, docker_client):
    svc = make_service("up")
    repo = git_server.create("requirements")
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")
    assert events[-1]["phase"] == "ready", events[-1]
    assert "building" in phases(events)
    ready = events[-1]
    commit = ready["binder_persistent_request"].rsplit("/", 1)[1]
    env_url = f"{svc.url}environment/gh/{repo.gh_spec}/{commit}"
    assert ready["environment_url"] == env_url

    body = record_when_packages_read(env_url)
    record = body["record"]
    assert record is not None, body
    assert record["repo_url"] == repo.url and record["commit"] == commit
    assert record["kind"] == "env" and record["files"] == ["requirements.txt"]
    assert record["buildpack"] == body["environment"]["buildpack"] != ""
    assert record["repo2docker_version"] == repo2docker_version
    assert record["base_image"] == BASE_IMAGE
    image = docker_client.images.get(ready["image"])
    assert record["image_id"] == image.id and record["size"] == image.attrs["Size"]
    assert record["build_seconds"] > 0
    assert "tabulate==0.9.0" in record["packages"]["pip"].splitlines(), record["packages"]
    assert "conda-explicit" not in record["packages"]  # no conda in this image
    assert body["image_available"] is True
    rebuild = body["reproduce"]["repo2docker"]
    assert commit in rebuild and repo.url in rebuild
    assert ready["image"] in body["reproduce"]["run"]
    assert "pull" not in body["reproduce"]  # no registry digest: nothing to pull

    log = requests.get(f"{env_url}?format=log", timeout=30)
    assert log.status_code == 200 and "attachment" in log.headers["Content-Disposition"]
    building = "".join(e["message"] for e in events if e["phase"] == "building")
    assert f"Using {record['buildpack']} builder" in log.text
    assert set(building.splitlines()) <= set(log.text.splitlines())

    page = requests.get(env_url, timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in ("tabulate==0.9.0", commit, "Reproduce it", "?format=log", repo2docker_version):
        assert text in page.text, text

    # the loading page and the form link to it
    loading = requests.get(f"{svc.url}v2/gh/{repo.gh_spec}/main", timeout=30).text
    assert f'href="/environment/gh/{repo.gh_spec}/main"' in loading
    assert requests.get(f"{svc.url}environment/gh/{repo.gh_spec}/main",
                        headers={"Accept": "application/json"},
                        timeout=30).json()["record"]["commit"] == commit

    # the image goes (eviction, an operator's rmi): the record and its log stay
    for container in docker_client.containers.list(all=True):
        if container.attrs["Config"]["Image"] == ready["image"]:
            container.remove(force=True)
    docker_client.images.remove(ready["image"], force=True)
    gone = requests.get(env_url, headers={"Accept": "application/json"}, timeout=30)
    assert gone.status_code == 200
    assert gone.json()["image_available"] is False
    assert gone.json()["record"]["packages"]["pip"] == record["packages"]["pip"]
    assert requests.get(f"{env_url}?format=log", timeout=30).text == log.text
    assert "no longer on this host" in requests.get(env_url, timeout=30).text

    # and the repository goes too (deleted upstream, mirrors cleaned up): still there
    shutil.rmtree(repo.bare)
    for mirror in (svc.workdir / "state" / "git").iterdir():
        shutil.rmtree(mirror)
    kept = requests.get(env_url, headers={"Accept": "application/json"}, timeout=60)
    assert kept.status_code == 200, kept.text
    assert "cannot be read now" in kept.json()["message"]
    assert kept.json()["record"]["packages"]["pip"] == record["packages"]["pip"]
    assert requests.get(f"{env_url}?format=log", timeout=30).text == log.text
    assert "tabulate==0.9.0" in requests.get(env_url, timeout=30).text


def test_environment_never_built_is_404_with_a_message(make_service, git_server):
    svc = make_service("serve")
    repo = git_server.create("requirements")
    answer = requests.get(f"{svc.url}environment/gh/{repo.gh_spec}/main",
                          headers={"Accept": "application/json"}, timeout=60)
    assert answer.status_code == 404
    assert "launch it once" in answer.json()["message"]
    assert answer.json()["environment"]["files"] == ["requirements.txt"]
    bad = requests.get(f"{svc.url}environment/gh/{repo.gh_spec}/no-such-branch",
                       headers={"Accept": "application/json"}, timeout=60)
    assert bad.status_code == 404 and "no-such-branch" in bad.json()["message"]


def test_removed_image_is_rebuilt_from_its_recorded_packages(make_service, git_server,
                                                             docker_client):
    svc = make_service("serve", extra_config="c.BinderLab.rebuild_from_records = True\n")
    repo = git_server.create("requirements")
    # unpinned: a fresh solve would take the newest tabulate
    repo.commit({"requirements.txt": "tabulate\nsix\n"}, "unpinned requirements")
    first = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"})
    assert first[-1]["phase"] == "ready", first[-1]
    image = first[-1]["imageName"]
    commit = first[-1].get("binder_persistent_request", "").rsplit("/", 1)[-1] or "main"
    body = record_when_packages_read(f"{svc.url}environment/gh/{repo.gh_spec}/{commit}")
    assert any(line.startswith("tabulate==")
               for line in body["record"]["packages"]["pip"].splitlines())

    # as if the record had been taken when tabulate 0.8.10 was the newest
    [path] = (svc.workdir / "state" / "records").glob("*.json")
    stored = json.loads(path.read_text())
    stored["packages"]["pip"] = "\n".join(
        "tabulate==0.8.10" if line.startswith("tabulate==") else line
        for line in stored["packages"]["pip"].splitlines())
    path.write_text(json.dumps(stored))
    docker_client.images.remove(image, force=True)

    second = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"build_only": "true"})
    assert second[-1]["phase"] == "ready", second[-1]
    assert second[-1]["imageName"] == image
    assert any("Rebuilding from the recorded packages" in e.get("message", "")
               for e in second)
    shown = docker_client.containers.run(image, entrypoint=["/bin/sh", "-c"],
                                         command=["python3 -m pip show tabulate"],
                                         remove=True, network_disabled=True).decode()
    assert "Version: 0.8.10" in shown
