"""Images cached by what defines the environment: notebook-only commits, reformatted
environment files and forks launch without a build, with the new content in the session."""

import json

import pytest
import requests

from tests.harness.sse import follow, phases

pytestmark = pytest.mark.docker


def launch(service, repo, ref="main", **params):
    events = follow(f"{service.url}build/gh/{repo.gh_spec}/{ref}", params=params)
    assert events[-1]["phase"] == "ready", events[-1]
    return events


def contents(ready, path=""):
    return requests.get(f"{ready['url']}api/contents/{path}", timeout=20,
                        headers={"Authorization": f"token {ready['token']}"})


def notebook(text: str) -> str:
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_notebook_only_commit_launches_without_build_and_serves_new_content(service,
                                                                          git_server):
    repo = git_server.create("requirements")
    first = launch(service, repo)
    assert "building" in phases(first)
    assert first[-1]["image"].startswith(service.image_prefix + "env-")
    runs = service.metric("binderlab_builder_runs_total")

    repo.commit({"hello.ipynb": notebook("version two"), "new.ipynb": notebook("brand new")},
                "notebooks only")
    second = launch(service, repo)
    assert "building" not in phases(second)
    assert service.metric("binderlab_builder_runs_total") == runs
    assert second[-1]["image"] == first[-1]["image"]

    ready = second[-1]
    hello = contents(ready, "hello.ipynb").json()
    assert "version two" in json.dumps(hello["content"])
    names = {item["name"] for item in contents(ready).json()["content"]}
    assert {"hello.ipynb", "new.ipynb", "requirements.txt"} <= names
    # owned by the notebook user: the session can save over it
    saved = requests.put(f"{ready['url']}api/contents/new.ipynb", timeout=20,
                         headers={"Authorization": f"token {ready['token']}"},
                         json={"type": "notebook", "content": json.loads(notebook("edited"))})
    assert saved.status_code == 200, saved.text
    # and the first session still has the first version
    assert "version two" not in json.dumps(contents(first[-1], "hello.ipynb").json())


def test_deleted_file_is_gone_from_the_session(service, git_server):
    repo = git_server.create("requirements")
    repo.commit({"notes.md": "old notes"}, "add notes")
    launch(service, repo)
    repo.commit({"notes.md": None}, "remove notes")
    ready = launch(service, repo)[-1]
    names = {item["name"] for item in contents(ready).json()["content"]}
    assert "notes.md" not in names and "hello.ipynb" in names


def test_reformatted_requirements_do_not_rebuild_but_a_pin_does(service, git_server):
    repo = git_server.create("requirements")
    first = launch(service, repo, build_only="true")
    runs = service.metric("binderlab_builder_runs_total")
    repo.commit({"requirements.txt": "\r\n# reformatted\r\ntabulate==0.9.0   # pinned\r\n\r\n"},
                "reformat")
    second = launch(service, repo, build_only="true")
    assert second[-1]["imageName"] == first[-1]["imageName"]
    assert service.metric("binderlab_builder_runs_total") == runs
    repo.commit({"requirements.txt": "tabulate==0.8.10\n"}, "change the pin")
    third = launch(service, repo, build_only="true")
    assert third[-1]["imageName"] != first[-1]["imageName"]
    assert service.metric("binderlab_builder_runs_total") == runs + 1


def test_forks_with_the_same_environment_share_one_image(service, git_server):
    upstream = git_server.create("requirements", owner="teacher")
    # an environment no other test uses, so the upstream launch really builds it
    upstream.commit({"requirements.txt": "tabulate==0.9.0\nsix>=1.0\n"}, "course env")
    runs = service.metric("binderlab_builder_runs_total")
    events = launch(service, upstream, build_only="true")
    assert "building" in phases(events)
    image = events[-1]["imageName"]
    for student in ("alice", "bob"):
        fork = git_server.create("requirements", owner=student)
        fork.commit({"requirements.txt": "tabulate==0.9.0\nsix>=1.0\n",
                     "homework.ipynb": notebook(f"{student}'s answer")}, "my homework")
        ready = launch(service, fork)[-1]
        assert ready["image"] == image
        assert "homework.ipynb" in {i["name"] for i in contents(ready).json()["content"]}
    assert service.metric("binderlab_builder_runs_total") == runs + 1
