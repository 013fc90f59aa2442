"""The warm pool for real: `binderlab up` (engine, hub, proxy, idle culler) with the pool on.

A launch claims a warm session: the new commit's notebook is in it (copied into the running
server), its token opens it and nothing else; the pool starts a replacement; the idle culler
culls a claimed session that idles but never a warm one; the service's stop leaves nothing.
"""

import time

import pytest
import requests

from tests.harness.sse import follow

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# seconds of inactivity after which the culler stops a server: 6 times the pool's
# touch_interval (and the culler looks every 2 s), so a warm session is reported active
# well within it even on a loaded machine, and a claim (a few engine calls after the last
# touch) ends long before it
CULL_TIMEOUT = 12

POOL_CONFIG = """
c.BinderLab.warm_pool = True
c.WarmPool.refill_interval = 0.5
c.WarmPool.touch_interval = 2
"""


def wait_for(check, timeout=120, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def hub_users(service) -> dict[str, dict]:
    response = requests.get(service.hub_url + "/hub/api/users",
                            headers={"Authorization": f"token {service.service_token}"},
                            timeout=10)
    response.raise_for_status()
    return {u["name"]: u for u in response.json()}


def warm_users(service, count: int = 1, claimed=()) -> dict[str, dict]:
    """The pool's hub users whose server runs, by name, once the pool counts ``count``
    warm (a server the hub calls ready may still have its kernel pre-started); users in
    ``claimed`` (sessions launches got) left out."""
    if service.metric("binderlab_pool_warm_sessions") < count:
        return {}
    return {name: u for name, u in hub_users(service).items()
            if name.startswith("binderpool-") and name not in claimed
            and (u.get("servers") or {}).get("", {}).get("ready")}


def user_of(ready: dict) -> str:
    return ready["url"].rstrip("/").rsplit("/", 1)[-1]


def contents(url, token, path=""):
    return requests.get(url + "api/contents/" + path,
                        headers={"Authorization": f"token {token}"}, timeout=20)


@pytest.fixture(scope="module")
def pool_services(docker_client):
    """The module's pooled services: one, unless a test stopped it (then the next test
    that asks gets a new one); all stopped and removed at the end."""
    from tests.harness.service import remove_prefix

    started = []
    yield started
    for svc in started:
        svc.stop()
        remove_prefix(docker_client, svc.image_prefix)


@pytest.fixture
def pooled(pool_services, git_server, tmp_path_factory):
    """`binderlab up` with the pool on, shared by this module's tests (one start, and
    the image its first launch built is cached for the next)."""
    from tests.harness.service import Service

    if not pool_services or pool_services[-1].proc.poll() is not None:
        svc = Service(tmp_path_factory.mktemp("binderlab-pool"), git_server.url, "up",
                      extra_config=POOL_CONFIG)
        pool_services.append(svc)
        svc.start()
    return pool_services[-1]


def test_claim_gives_the_new_commit_and_a_token_of_its_own(pooled, git_server,
                                                           docker_client):
    repo = git_server.create("requirements", owner="pool")
    url = f"{pooled.url}build/gh/{repo.gh_spec}/main"
    first = follow(url)[-1]
    assert first["phase"] == "ready", first
    # the launch rate asks for one warm session of this image
    warm = wait_for(lambda: warm_users(pooled), what="a warm session")
    (warm_name,) = warm
    container = docker_client.containers.list(
        filters={"label": f"binderlab.user={warm_name}"})[0]
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["BINDER_REF"] == env["BINDER_REPO_URL"] == ""  # nobody's launch yet
    listed = container.exec_run(["ls", "/home/jovyan"], user="1000").output.decode()
    assert "hello.ipynb" not in listed  # and nobody's files

    repo.commit({"fresh.ipynb": '{"cells": [], "metadata": {}, "nbformat": 4, '
                 '"nbformat_minor": 5}'}, "a notebook after the pool filled")
    events = follow(url)
    ready = events[-1]
    assert ready["phase"] == "ready", ready
    assert "Claimed a warm session\n" in [e.get("message") for e in events]
    assert f"/user/{warm_name}/" in ready["url"]
    assert ready["token"] not in (first["token"],)

    # the new commit's notebook went into the running server, owned by the notebook user
    names = [i["name"] for i in contents(ready["url"], ready["token"]).json()["content"]]
    assert {"fresh.ipynb", "hello.ipynb"} <= set(names), names
    saved = requests.put(ready["url"] + "api/contents/fresh.ipynb",
                         headers={"Authorization": f"token {ready['token']}"},
                         json={"type": "notebook", "format": "json",
                               "content": {"cells": [], "metadata": {}, "nbformat": 4,
                                           "nbformat_minor": 5}}, timeout=20)
    assert saved.status_code == 200, saved.text

    # the pre-started kernel waits as thebe's session: fresh, never ran code, and it is
    # what thebe's session request gets (Jupyter returns the session at that path)
    auth = {"Authorization": f"token {ready['token']}"}
    kernels = requests.get(ready["url"] + "api/kernels", headers=auth, timeout=20).json()
    assert len(kernels) == 1 and kernels[0]["connections"] == 0
    session = requests.post(ready["url"] + "api/sessions", headers=auth, timeout=60, json={
        "path": "", "name": "thebe.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert session.status_code == 201 and session.json()["kernel"]["id"] == kernels[0]["id"]

    # its token opens this session only: not the first launch's, not the replacement
    assert contents(first["url"], ready["token"]).status_code == 403
    replacement = wait_for(lambda: warm_users(pooled, 1, {warm_name}), what="a replacement")
    other = next(iter(replacement))
    other_url = pooled.hub_url + replacement[other]["servers"][""]["url"]
    assert contents(other_url, ready["token"]).status_code == 403
    assert contents(ready["url"], "x" * 32).status_code == 403
    assert pooled.metric("binderlab_pool_claims_total") >= 1


def test_culler_culls_claimed_sessions_never_warm_ones(git_server, make_service):
    pooled = make_service("up", extra_config=POOL_CONFIG + "c.WarmPool.pinned = {}\n",
                          env={"BINDERLAB_CULL_TIMEOUT": str(CULL_TIMEOUT),
                               "BINDERLAB_CULL_EVERY": "2"})
    repo = git_server.create("requirements", owner="poolcull")
    url = f"{pooled.url}build/gh/{repo.gh_spec}/main"
    assert follow(url)[-1]["phase"] == "ready"
    second = follow(url)[-1]  # a second launch: the rate asks for two
    assert second["phase"] == "ready"
    claimed = {user_of(second)}
    before = set(wait_for(lambda: warm_users(pooled, 2, claimed), what="two warm sessions"))
    time.sleep(CULL_TIMEOUT + 5)  # both have waited longer than the culler's timeout
    assert before <= set(warm_users(pooled, 2, claimed))
    claimed_user = user_of(follow(url)[-1])
    assert claimed_user in before
    # the claimed session idles: the culler removes it after CULL_TIMEOUT
    wait_for(lambda: claimed_user not in hub_users(pooled), timeout=CULL_TIMEOUT * 4,
             what="the claimed session's culling")
    # warm sessions that were there all along (more than CULL_TIMEOUT) are still there
    survivors = before - {claimed_user}
    assert survivors  # the rate source asked for two after two launches
    assert survivors <= set(warm_users(pooled, 1, claimed)), survivors


def test_stop_leaves_no_pooled_session(docker_client, git_server, pooled):
    # the module's service (after the other tests, with their sessions too): this test
    # stops it; a test after it gets a new one
    svc = pooled
    repo = git_server.create("requirements", owner="poolstop")
    assert follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]["phase"] == "ready"
    # a warm session, and none half-started (a launch may have claimed one of the earlier
    # tests' warm sessions, and the pool refills after it)
    wait_for(lambda: warm_users(svc) and not svc.metric("binderlab_pool_starting_sessions"),
             what="a warm session")
    prefix = svc.image_prefix
    svc.stop()
    left = [c.name for c in docker_client.containers.list(all=True)
            if (c.attrs["Config"]["Image"] or "").startswith(prefix)]
    assert left == []
