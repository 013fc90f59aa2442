"""Logged-in claims of warm sessions for real (issue 14 with issue 13's persistent files).

First the mechanism alone on the real engine: a mount made on the host onto a slot after a
container started appears in that container (propagation rslave), and goes when unmounted.
Then the whole path: a real `binderlab up` in logged-in mode ("required", JupyterHub's
DummyAuthenticator) with the pool on; a user with a volume claims a warm session, finds the
commit merged into their folder, the merge report in the launch log, edits that land in
their Docker volume, returns to the same session on a second launch, and finds their edit
again after the session ended (its slot unmounted).
"""

import re
import time
import uuid
from pathlib import Path

import pytest
import requests

from binderlab.contract import server_name
from binderlab.sessions.poolmounts import PoolMounts
from tests.harness import leftovers
from tests.test_logged_in import launch, log_in, sessions_of
from tests.test_persistent import (  # noqa: F401 (user_volumes: a fixture)
    messages,
    names,
    read,
    start,
    user_volumes,
    write,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_IMAGE = "binderlab-test/base:latest"


async def test_a_mount_on_the_slot_reaches_the_running_container(docker_client, tmp_path):
    mounts = PoolMounts(tmp_path / "pool-mounts")
    await mounts.prepare()
    user = "binderpool-" + uuid.uuid4().hex[:8]
    slot = mounts.slot(user)
    folder = tmp_path / "volume" / "gh-course-lab"
    folder.mkdir(parents=True)
    (folder / "lesson.ipynb").write_text("the user's own notebook")
    container = docker_client.containers.run(
        BASE_IMAGE, ["sleep", "300"], detach=True, name=leftovers.name("slot-" + user[-8:]),
        labels={leftovers.LABEL: leftovers.RUN_ID},
        volumes={str(slot): {"bind": "/persistent", "mode": "rw,rslave"}})
    try:
        def ls():
            return container.exec_run(["ls", "-A", "/persistent"]).output.decode().split()

        assert ls() == []  # started empty: nobody's files
        await mounts.attach(user, folder)
        assert mounts.attached() == {user}
        assert ls() == ["lesson.ipynb"]  # the running container sees the user's folder
        # and writes land in the user's folder (the volume), as the notebook user
        written = container.exec_run(["sh", "-c", "echo edit > /persistent/mine.txt"],
                                     user="0")
        assert written.exit_code == 0, written.output
        assert (folder / "mine.txt").read_text() == "edit\n"
        await mounts.detach(user)
        assert ls() == [] and mounts.attached() == set()
        assert (folder / "lesson.ipynb").is_file()  # unmounting removes nothing of theirs
    finally:
        container.remove(force=True)
        await mounts.close()
    assert not (tmp_path / "pool-mounts").exists()


POOL = """
c.BinderLab.warm_pool = True
c.WarmPool.refill_interval = 0.5
c.WarmPool.refill_delay = 0
"""


def warm_count(svc) -> float:
    try:
        return svc.metric("binderlab_pool_warm_sessions")
    except requests.RequestException:
        return 0


def wait_for(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def slot_mounts(svc) -> list[str]:
    root = str((svc.workdir / "state" / "pool-mounts").resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root)]


def test_a_logged_in_claim_attaches_the_users_files(user_volumes, make_service, git_server,  # noqa: F811
                                                    docker_client, tmp_path):
    svc = start(make_service, tmp_path, "required", user_volumes, extra=POOL)
    first_repo = git_server.create("requirements", owner="poolin")
    course = git_server.create("requirements", owner="poolin")  # the same environment
    ada = requests.Session()
    log_in(svc, ada, f"v2/gh/{first_repo.gh_spec}/main", "ada")

    # her first launch ever: the spawner creates her volume (no claim: nothing to attach)
    first = launch(svc, ada, first_repo)
    assert first[-1]["phase"] == "ready", first
    assert "/user/ada/" in first[-1]["url"]
    assert "Claimed a warm session" not in messages(first)
    wait_for(lambda: warm_count(svc) >= 1, "a warm session of the image")
    # its pre-started kernel was shut down before it counted as warm, not handed over to
    # thebe: a claim could not keep it, and waiting for its shutdown slowed every claim
    warm = [c for c in docker_client.containers.list(filters={"label": "binderlab.user"})
            if c.labels["binderlab.user"].startswith("binderpool-")
            and (c.attrs["Config"]["Image"] or "").startswith(svc.image_prefix)]
    assert len(warm) == 1, warm
    processes = [" ".join(map(str, p)) for p in warm[0].top()["Processes"]]
    assert not [p for p in processes if "ipykernel" in p], processes

    # the course repository, same environment: claimed, her files attached and merged
    events = launch(svc, ada, course)
    ready = events[-1]
    assert ready["phase"] == "ready", events
    log = messages(events)
    assert "Claimed a warm session" in log, log
    assert "Your files are in /persistent (merged the repository:" in log, log
    pooled = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    assert pooled.startswith("binderpool-"), ready["url"]
    assert {"hello.ipynb", "requirements.txt"} <= names(ready)  # the server's root: her folder
    write(ready, "mine.txt", "ada's work")
    volume = docker_client.api.inspect_volume(f"{user_volumes}-ada")
    folder = f"{volume['Mountpoint']}/{server_name('gh/' + course.gh_spec)}"
    # what the volume holds, read apart from the session: on the engine's disk (a `cat` in
    # a container run with remove=True lost its output to docker-py's log race 2 times in 3)
    assert Path(folder, "mine.txt").read_text() == "ada's work"
    # kernels the pool pre-started are gone (their directory was the empty slot)
    auth = {"Authorization": f"token {ready['token']}"}
    assert requests.get(ready["url"] + "api/kernels", headers=auth, timeout=30).json() == []
    # the hub records whose it is: shared with her
    shared = requests.get(f"{svc.hub_url}/hub/api/users/ada/shared", timeout=30, headers={
        "Authorization": f"token {svc.service_token}"}).json()
    assert pooled in [i["server"]["user"]["name"] for i in shared["items"]], shared
    assert len(slot_mounts(svc)) == 1

    # a second launch of the course returns to that session
    again = launch(svc, ada, course)
    assert (again[-1]["url"], again[-1]["token"]) == (ready["url"], ready["token"]), again
    assert "Returning to your running session" in messages(again)

    # her sessions page lists both sessions (the hub's home page lists only her own servers)
    page = ada.get(svc.url + "sessions", timeout=30)
    assert page.status_code == 200, page.text
    listed = {s["id"]: s for s in ada.get(svc.url + "api/sessions", timeout=30).json()[
        "sessions"]}
    assert listed[pooled]["warm"] and listed[pooled]["repo_key"] == "gh/" + course.gh_spec
    assert listed[pooled]["url"] == ready["url"] and listed[pooled]["state"] == "ready"
    named = server_name("gh/" + first_repo.gh_spec)
    assert not listed[named]["warm"] and listed[named]["url"] == first[-1]["url"]
    assert f'data-session="{pooled}"' in page.text and f'data-session="{named}"' in page.text
    assert f'href="{ready["url"]}"' in page.text  # its Open link
    # she stops it there: without the page's xsrf token her cookie does not count
    stop = f"{svc.url}api/sessions/{pooled}"
    assert ada.delete(stop, timeout=60).status_code in (401, 403)
    assert sessions_of(docker_client, pooled)
    xsrf = re.search(r'"xsrfToken": "([^"]+)"', page.text).group(1)
    stopped = ada.delete(stop, headers={"X-XSRFToken": xsrf}, timeout=90)
    assert stopped.status_code == 200, stopped.text
    assert ada.delete(stop, headers={"X-XSRFToken": xsrf}, timeout=90).status_code == 404
    # the session ends: the slot is unmounted, her work stays
    wait_for(lambda: not sessions_of(docker_client, pooled), "the claimed session to stop")
    wait_for(lambda: not slot_mounts(svc), "the slot to be unmounted")
    back = launch(svc, ada, course)
    assert back[-1]["phase"] == "ready", back
    assert read(back[-1], "mine.txt") == "ada's work"
