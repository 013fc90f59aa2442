"""A paper's code by DOI, for real: a Zenodo record (from a stand-in of Zenodo's API on
127.0.0.1) builds once with repo2docker; a new version of the record that only changes a
notebook launches without a build and the session shows the new notebook."""

import json
import time
import uuid

import pytest
import requests

from tests.harness.records import RecordServer
from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def records():
    server = RecordServer()
    yield server
    server.close()


def notebook(text: str) -> bytes:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def test_new_record_version_with_only_notebook_changes_launches_without_build(
        make_service, records):
    svc = make_service("up", extra_config=records.config())
    # a unique environment, so the first version really builds
    env = b"tabulate==0.9.0\nsix>=1.0\n" + f"# run {uuid.uuid4().hex}\n".encode()
    v1, v2 = str(uuid.uuid4().int)[:7], str(uuid.uuid4().int)[:7]
    records.zenodo(f"10.5281/zenodo.{v1}", v1, {"requirements.txt": env,
                                                "paper.ipynb": notebook("first version")})
    records.zenodo(f"10.5281/zenodo.{v2}", v2, {"requirements.txt": env,
                                                "paper.ipynb": notebook("second version"),
                                                "erratum.md": b"fixed a typo"})

    first = follow(f"{svc.url}build/zenodo/10.5281/zenodo.{v1}")
    assert first[-1]["phase"] == "ready", first[-1]
    assert "building" in phases(first)
    assert first[-1]["image"].startswith(svc.image_prefix + "env-")
    assert first[-1]["binder_persistent_request"] == f"v2/zenodo/10.5281/zenodo.{v1}"
    assert first[-1]["repo_url"] == f"https://doi.org/10.5281/zenodo.{v1}"
    runs = svc.metric("binderlab_builder_runs_total")

    second = follow(f"{svc.url}build/zenodo/10.5281/zenodo.{v2}")
    assert second[-1]["phase"] == "ready", second[-1]
    assert "building" not in phases(second)
    assert second[-1]["image"] == first[-1]["image"]
    assert svc.metric("binderlab_builder_runs_total") == runs

    ready = second[-1]
    auth = {"Authorization": f"token {ready['token']}"}
    paper = requests.get(f"{ready['url']}api/contents/paper.ipynb", headers=auth, timeout=20)
    assert paper.status_code == 200, paper.text
    assert "second version" in json.dumps(paper.json()["content"])
    names = {i["name"] for i in requests.get(f"{ready['url']}api/contents/", headers=auth,
                                             timeout=20).json()["content"]}
    assert {"paper.ipynb", "erratum.md", "requirements.txt"} <= names
    # the environment record of the second version names the build of the first
    env_url = f"{svc.url}environment/zenodo/10.5281/zenodo.{v2}"
    assert ready["environment_url"] == env_url
    body = {}
    for _ in range(120):  # the record is written after the build, in the background
        body = requests.get(env_url, headers={"Accept": "application/json"}, timeout=60).json()
        if (body.get("record") or {}).get("packages"):
            break
        time.sleep(1)
    assert body["requested"]["repo_url"] == f"https://doi.org/10.5281/zenodo.{v2}"
    assert body["record"]["persistent_spec"] == f"10.5281/zenodo.{v1}"
    assert body["record"]["files"] == ["requirements.txt"]
    assert body["reproduce"]["repo2docker"].endswith(f" 10.5281/zenodo.{v1}")
    assert "six==" in body["record"]["packages"]["pip"]
    # the first session still has the first version
    check = requests.get(f"{first[-1]['url']}api/contents/paper.ipynb",
                         headers={"Authorization": f"token {first[-1]['token']}"}, timeout=20)
    assert "first version" in json.dumps(check.json()["content"])


def test_record_the_guard_refuses_fails_with_its_status(make_service, records):
    svc = make_service("serve", extra_config=records.config()
                       + "\nc.BinderLab.blocked_networks = ['127.0.0.3/32']\n")
    rid = str(uuid.uuid4().int)[:7]
    records.zenodo(f"10.5281/zenodo.{rid}", rid, {"requirements.txt": b"six\n"})
    port = records.netloc.split(":")[1]
    records.json[f"/zenodo/api/records/{rid}/files"]["entries"][0]["links"]["content"] = \
        f"http://127.0.0.3:{port}/metadata"
    events = follow(f"{svc.url}build/zenodo/10.5281/zenodo.{rid}")
    assert events[-1]["phase"] == "failed"
    assert events[-1]["status_code"] == 403 and "127.0.0.3" in events[-1]["message"]


def test_every_record_provider_builds_through_the_service(make_service, records):
    """Each provider's record goes through the whole pipeline (fetch, mirror, fingerprint,
    build); the same files give the same environment, so one image serves all six."""
    from urllib.parse import quote

    svc = make_service("serve", extra_config=records.config())
    files = {"requirements.txt": b"six>=1.0\n" + f"# {uuid.uuid4().hex}\n".encode(),
             "notes.md": b"same environment everywhere"}
    n = str(uuid.uuid4().int)[:7]
    records.zenodo(f"10.5281/zenodo.{n}", n, files)
    records.figshare(f"10.6084/m9.figshare.{n}.v1", n, "1", files)
    hs = uuid.uuid4().hex
    records.hydroshare(hs, files)
    records.dataverse(f"10.7910/DVN/R{n}", files)
    ckan = records.ckan(f"paper-{n}", files)
    rev, directory = uuid.uuid4().hex + "0" * 8, uuid.uuid4().hex + "1" * 8
    records.swh(rev, directory, files)
    specs = [f"zenodo/10.5281/zenodo.{n}", f"figshare/10.6084/m9.figshare.{n}.v1",
             f"hydroshare/{hs}", f"dataverse/10.7910/DVN/R{n}",
             f"ckan/{quote(ckan, safe='')}", f"swhid/swh:1:rev:{rev}"]
    images = set()
    for spec in specs:
        events = follow(f"{svc.url}build/{spec}", params={"build_only": "true"})
        assert events[-1]["phase"] == "ready", (spec, events[-1])
        images.add(events[-1]["imageName"])
    assert len(images) == 1
    assert svc.metric("binderlab_builder_runs_total") == 1
