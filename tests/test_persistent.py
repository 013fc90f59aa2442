"""Work persists (issue 13): a real `binderlab up` in logged-in mode (JupyterHub's
DummyAuthenticator), real Docker volumes, the merge container run by the real spawner.

What a user sees is checked through the session's own Jupyter API (the contents of their
folder, as JupyterLab's file browser shows it) and the event stream the loading page shows.
"""

import time

import pytest
import requests

from tests.harness import leftovers
from tests.harness.sse import follow, phases
from tests.test_env_cache import notebook
from tests.test_logged_in import PASSWORD, launch, log_in, sessions_of

pytestmark = pytest.mark.docker


@pytest.fixture
def user_volumes(docker_client, request):
    """Volume names of this test (the run id in them, for the leftover check); removed at
    the end with anything still using them."""
    tag = "vol" + request.node.name.split("[")[0][-12:].replace("_", "")
    yield leftovers.name(tag)
    for volume in docker_client.api.volumes().get("Volumes") or []:
        if volume["Name"].startswith(leftovers.name(tag)):
            for c in docker_client.api.containers(all=True,
                                                  filters={"volume": volume["Name"]}):
                docker_client.api.remove_container(c["Id"], force=True)
            docker_client.api.remove_volume(volume["Name"], force=True)


def start(make_service, tmp_path, mode: str, volume_prefix: str, extra: str = "",
          env: dict | None = None):
    overlay = tmp_path / "hub_overlay.py"
    overlay.write_text(f"""
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.BinderLabSpawner.volume_name_template = {volume_prefix + "-{username}"!r}
c.BinderLabSpawner.volume_labels = {{{leftovers.LABEL!r}: {leftovers.RUN_ID!r}}}
""")
    return make_service("up", env=env, extra_config=f"""
c.BinderLab.authentication = {mode!r}
c.UpApp.hub_config_overlay = {str(overlay)!r}
{extra}
""")


def api(ready, path="", method="GET", **kwargs):
    return requests.request(method, f"{ready['url']}api/contents/{path}", timeout=30,
                            headers={"Authorization": f"token {ready['token']}"}, **kwargs)


def read(ready, path) -> str:
    answer = api(ready, path, params={"format": "text", "type": "file"})
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()["content"]


def write(ready, path, text) -> None:
    answer = api(ready, path, "PUT", json={"type": "file", "format": "text", "content": text})
    assert answer.status_code in (200, 201), answer.text


def names(ready, path="") -> set[str]:
    return {item["name"] for item in api(ready, path).json()["content"]}


def stop(svc, docker_client, user, ready) -> None:
    """Stop the user's server the way the hub's home page does, and wait until it is gone."""
    server = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    answer = requests.delete(f"{svc.hub_url}/hub/api/users/{user}/servers/{server}",
                             headers={"Authorization": f"token {svc.service_token}"},
                             timeout=60)
    assert answer.status_code in (202, 204), answer.text
    wait_for(lambda: not sessions_of(docker_client, user), f"{user}'s session to stop")


def wait_for(condition, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def messages(events) -> str:
    return "".join(e.get("message", "") for e in events)


def test_merge_at_each_launch(user_volumes, make_service, git_server, docker_client,
                              tmp_path):
    """An environment-keyed repository: the user's folder gets the commit's files, keeps
    their edits across a stop, and takes the next commit in nbgitpuller's way: a new file
    appears, an unchanged one follows, a changed one is kept with upstream's beside it,
    reported in the launch log and in BINDERLAB-MERGE.md; and a notebook-only commit still
    needs no build."""
    svc = start(make_service, tmp_path, "required", user_volumes)
    repo = git_server.create("requirements")
    repo.commit({"lesson.md": "lesson, version 1\n", "guide.md": "guide, version 1\n"},
                "course material")
    alice = requests.Session()
    log_in(svc, alice, "", "alice")
    first = launch(svc, alice, repo)
    ready = first[-1]
    assert ready["phase"] == "ready", first
    server = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    # the session opens in alice's folder of this repository, in her volume
    assert f"Your files are in /persistent/{server}" in messages(first)
    assert {"hello.ipynb", "lesson.md", "guide.md", "requirements.txt"} <= names(ready)
    [container] = sessions_of(docker_client, "alice")
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    volume = mounts["/persistent"]["Name"]
    assert volume == f"{user_volumes}-alice"
    labels = docker_client.volumes.get(volume).attrs["Labels"]
    assert labels["binderlab.user"] == "alice" and labels["binderlab.storage"] == "user"
    # nothing of the image's home is hidden: its own copy of the repository is still there
    listing = container.exec_run(["ls", "-a", "/home/jovyan"]).output.decode()
    assert "hello.ipynb" in listing and "requirements.txt" in listing
    # the merge container is gone
    assert not [c for c in docker_client.api.containers(all=True)
                if f"/{container.name}-merge" in c["Names"]]

    # the operator cannot remove a volume in use
    busy = svc.cli("volumes", "remove", "alice", "--yes")
    assert busy.returncode != 0 and "stop 'alice''s sessions first" in busy.stderr, busy
    assert docker_client.volumes.get(volume)

    write(ready, "lesson.md", "lesson, version 1, with my answers\n")
    write(ready, "my-notes.txt", "mine\n")
    stop(svc, docker_client, "alice", ready)

    upstream = repo.commit({"lesson.md": "lesson, version 2\n", "guide.md": "guide, version 2\n",
                            "week2.ipynb": notebook("week two")}, "week two")
    second = launch(svc, alice, repo)
    ready = second[-1]
    assert ready["phase"] == "ready", second
    assert "building" not in phases(second)  # only content changed: no build
    beside = f"lesson.upstream-{upstream[:7]}.md"
    assert (f"Conflict: you changed lesson.md and so did the repository; yours is kept, the "
            f"repository's version is {beside}") in messages(second)
    assert "See BINDERLAB-MERGE.md" in messages(second)
    assert read(ready, "lesson.md") == "lesson, version 1, with my answers\n"  # hers
    assert read(ready, beside) == "lesson, version 2\n"  # upstream's, beside it
    assert read(ready, "guide.md") == "guide, version 2\n"  # she did not change it
    assert "week two" in read(ready, "week2.ipynb")  # new upstream file
    assert read(ready, "my-notes.txt") == "mine\n"  # her own file
    report = read(ready, "BINDERLAB-MERGE.md")
    assert f"`lesson.md`: the repository's version is `{beside}`" in report


def test_files_survive_restarts_and_anonymous_sessions_get_none(
        user_volumes, make_service, git_server, docker_client, tmp_path):
    """A tree-keyed repository (a Dockerfile) under 'optional': an anonymous launch gets no
    volume; a logged-in user's edit survives a restart of the hub and of the service (all of
    `binderlab up`, sessions ended), and the same volume is mounted again."""
    svc = start(make_service, tmp_path, "optional", user_volumes)
    repo = git_server.create("dockerfile")
    anonymous = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]
    assert anonymous["phase"] == "ready", anonymous
    temporary = anonymous["url"].rstrip("/").rsplit("/", 1)[-1]
    [session] = sessions_of(docker_client, temporary)
    assert [m for m in session.attrs["Mounts"] if m["Type"] == "volume"] == []
    assert not docker_client.volumes.list(filters={"label": f"binderlab.user={temporary}"})
    assert "hello.ipynb" in names(anonymous)  # as today: the image's copy, in its home

    carol = requests.Session()
    log_in(svc, carol, f"login?next=/v2/gh/{repo.gh_spec}/main", "carol")
    ready = launch(svc, carol, repo)[-1]
    assert ready["phase"] == "ready", ready
    write(ready, "hello.ipynb", notebook("carol's answers"))
    write(ready, "scratch.py", "print('carol')\n")
    svc.stop()
    assert not sessions_of(docker_client, "carol")
    assert docker_client.volumes.get(f"{user_volumes}-carol")  # the volume stays

    svc.start()
    carol = requests.Session()  # a new browser session after the restart
    log_in(svc, carol, "login?next=/", "carol")
    again = launch(svc, carol, repo)
    ready = again[-1]
    assert ready["phase"] == "ready", again
    assert "carol's answers" in read(ready, "hello.ipynb")
    assert read(ready, "scratch.py") == "print('carol')\n"
    assert "Conflict" not in messages(again)  # the repository did not change meanwhile
    [container] = sessions_of(docker_client, "carol")
    assert {m.get("Name") for m in container.attrs["Mounts"]} >= {f"{user_volumes}-carol"}


def test_culler_keeps_logged_in_users_and_removes_temporary_ones(
        user_volumes, make_service, git_server, docker_client, tmp_path):
    """jupyterhub-idle-culler (a short timeout) culls both sessions; the logged-in user, his
    volume and his file stay, the temporary user of the anonymous launch is removed."""
    # the culler looks every 2 s (its default is half the timeout): it culls soon after
    # the 20 s, not up to 10 s later
    svc = start(make_service, tmp_path, "optional", user_volumes, env={
        "BINDERLAB_CULL_TIMEOUT": "20", "BINDERLAB_CULL_EVERY": "2"}, extra="""
c.TemporaryUserReaper.interval = 1
c.TemporaryUserReaper.grace = 1
""")
    repo = git_server.create("dockerfile")
    dave = requests.Session()
    log_in(svc, dave, "login?next=/", "dave")
    ready = launch(svc, dave, repo)[-1]
    assert ready["phase"] == "ready", ready
    write(ready, "dave.txt", "before the cull\n")  # (the culler waits 20 s of idleness)
    anonymous = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]
    assert anonymous["phase"] == "ready", anonymous
    temporary = anonymous["url"].rstrip("/").rsplit("/", 1)[-1]
    hub = f"{svc.hub_url}/hub/api/users/"
    token = {"Authorization": f"token {svc.service_token}"}

    wait_for(lambda: not sessions_of(docker_client, "dave")
             and not sessions_of(docker_client, temporary), "the culler", timeout=120)
    wait_for(lambda: requests.get(hub + temporary, headers=token, timeout=30).status_code
             == 404, "the temporary user to be removed", timeout=60)
    user = requests.get(hub + "dave", headers=token, timeout=30)
    assert user.status_code == 200, user.text  # a person stays a hub user
    assert not any(s.get("ready") for s in user.json()["servers"].values())
    assert docker_client.volumes.get(f"{user_volumes}-dave")
    again = launch(svc, dave, repo)[-1]
    assert again["phase"] == "ready", again
    assert read(again, "dave.txt") == "before the cull\n"
    stop(svc, docker_client, "dave", again)

    # only the operator deletes a volume: `binderlab volumes`
    listed = svc.cli("volumes", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if f"{user_volumes}-dave" in line]
    assert row.split()[1] == "dave"
    unconfirmed = svc.cli("volumes", "remove", "dave")
    assert unconfirmed.returncode != 0 and "--yes" in unconfirmed.stderr
    assert docker_client.volumes.get(f"{user_volumes}-dave")
    removed = svc.cli("volumes", "remove", "dave", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not docker_client.volumes.list(filters={"name": f"{user_volumes}-dave"})
