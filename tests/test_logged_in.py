"""Logged-in mode (issue 13, first slice): a real `binderlab up` whose hub logs people in
with JupyterHub's DummyAuthenticator (an overlay in c.UpApp.hub_config_overlay).

A browser-like client (requests with a cookie jar) follows the redirects a browser follows:
the service sends it to the hub's OAuth authorization, the hub to its login form, the login
back through the authorization to the service's OAuth callback, and that to the page first
asked for. Then it launches from the event stream with its login cookie, as the loading page
does, and opens the session with the ready event's url and token.
"""

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest
import requests

from tests.harness import leftovers
from tests.harness.sse import follow
from tests.test_gpus import GPU_CONFIG

pytestmark = pytest.mark.docker

PASSWORD = "course-password"


def overlay(tmp_path) -> str:
    """The hub overlay of a logged-in service. Its users' volumes are named for the
    service (and this run, for the leftover check): Docker volume names are global, and
    with the default template ("binderlab-user-alice") two services' alice, in this run
    or another run on the engine, would mount one volume."""
    path = tmp_path / "hub_overlay.py"
    volumes = leftovers.name("vol" + uuid.uuid4().hex[:8])
    path.write_text(f"""
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.BinderLabSpawner.volume_name_template = {volumes + "-{username}"!r}
""")
    return str(path)


def start(make_service, tmp_path, mode: str, extra: str = ""):
    return make_service("up", extra_config=f"""
c.BinderLab.authentication = {mode!r}
c.UpApp.hub_config_overlay = {overlay(tmp_path)!r}
{extra}
""")


@pytest.fixture(scope="module")
def required(make_module_service, tmp_path_factory):
    """Logged-in mode "required", shared by this module's tests of it: each logs in people
    of its own (alice and bob; erin) and launches its own repository."""
    return start(make_module_service, tmp_path_factory.mktemp("logged-in"), "required")


def log_in(svc, browser: requests.Session, page: str, user: str) -> requests.Response:
    """Open ``page`` of the service, logging in at the hub on the way as a browser does."""
    form = browser.get(svc.url + page, timeout=30)
    form.raise_for_status()
    # the service sent the browser to the hub's login (through its OAuth authorization)
    assert form.url.startswith(svc.hub_url + "/hub/login"), form.url
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    page_back = browser.post(form.url, timeout=60, data={
        "username": user, "password": PASSWORD, **({"_xsrf": xsrf.group(1)} if xsrf else {})})
    page_back.raise_for_status()
    return page_back


def launch(svc, browser: requests.Session, repo, **params) -> list[dict]:
    """Follow the event stream with the browser's cookies (the loading page's EventSource)."""
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params=params, session=browser)
    assert all(e["phase"] != "http-error" for e in events), events
    return events


def sessions_of(docker_client, user: str):
    return docker_client.containers.list(all=True, filters={"label": f"binderlab.user={user}"})


def test_required_login_named_server_per_repository(required, git_server, docker_client):
    svc = required
    repo = git_server.create("dockerfile")
    page = f"v2/gh/{repo.gh_spec}/main"

    # no login: the stream, the loading page and the form all send the browser to the hub
    for path, headers in ((f"build/gh/{repo.gh_spec}/main", {"Accept": "text/event-stream"}),
                          (page, {}), ("", {})):
        refused = requests.get(svc.url + path, headers=headers, allow_redirects=False,
                               timeout=30)
        assert refused.status_code == 302, (path, refused.status_code, refused.text)
        assert refused.headers["Location"].startswith(
            f"{svc.hub_url}/hub/api/oauth2/authorize?"), refused.headers["Location"]
    # an EventSource that follows the redirect lands on the hub's login page: no launch
    assert follow(f"{svc.url}build/gh/{repo.gh_spec}/main") == []
    assert not sessions_of(docker_client, "alice")

    alice = requests.Session()
    loading = log_in(svc, alice, page, "alice")
    # back on the page first asked for, logged in
    assert loading.url == svc.url + page, loading.url
    assert repo.gh_spec in loading.text

    first = launch(svc, alice, repo)
    ready = first[-1]
    assert ready["phase"] == "ready", first
    name = ready["url"].rstrip("/").rsplit("/", 1)[-1]
    # alice's own named server, one for this repository
    assert ready["url"] == f"{svc.hub_url}/user/alice/{name}/"
    assert name.startswith("gh-test-")
    status = requests.get(ready["url"] + "api/status", timeout=30,
                          headers={"Authorization": f"token {ready['token']}"})
    assert status.status_code == 200, status.text
    assert requests.get(ready["url"] + "api/status", timeout=30).status_code == 403
    [container] = sessions_of(docker_client, "alice")

    # a second launch of the same repository returns to that server: nothing new spawned
    again = launch(svc, alice, repo)
    assert again[-1]["phase"] == "ready", again
    assert (again[-1]["url"], again[-1]["token"]) == (ready["url"], ready["token"])
    assert any("Returning to your running session" in e.get("message", "") for e in again)
    assert [c.id for c in sessions_of(docker_client, "alice")] == [container.id]

    # another person gets a server of their own
    bob = requests.Session()
    log_in(svc, bob, page, "bob")
    theirs = launch(svc, bob, repo)[-1]
    assert theirs["phase"] == "ready", theirs
    assert theirs["url"] == f"{svc.hub_url}/user/bob/{name}/"
    assert theirs["token"] != ready["token"]
    assert requests.get(ready["url"] + "api/status", timeout=30, headers={
        "Authorization": f"token {theirs['token']}"}).status_code == 403
    assert len(sessions_of(docker_client, "bob")) == 1

    # the hub owns those servers: stopping alice's (as she would from the hub) ends it
    hub = f"{svc.hub_url}/hub/api/users/alice/servers/{name}"
    token = {"Authorization": f"token {svc.service_token}"}
    assert requests.delete(hub, headers=token, timeout=60).status_code in (202, 204)
    deadline = time.monotonic() + 60
    while sessions_of(docker_client, "alice") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sessions_of(docker_client, "alice")


def test_optional_login_keeps_anonymous_launches(make_service, git_server, docker_client,
                                                 tmp_path):
    # one launch per window per client: the address's one goes to the anonymous launch
    svc = start(make_service, tmp_path, "optional", "c.LaunchLimits.per_client = 1")
    repo = git_server.create("dockerfile")
    # anonymous: as with authentication='none', a temporary user's default server
    anonymous = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]
    assert anonymous["phase"] == "ready", anonymous
    assert re.fullmatch(rf"{svc.hub_url}/user/binder-[0-9a-f]{{16}}/", anonymous["url"])
    refused = follow(f"{svc.url}build/gh/{repo.gh_spec}/main")[-1]
    assert (refused["phase"], refused.get("status_code")) == ("failed", 429), refused
    # a logged-in launch is the user's own
    carol = requests.Session()
    # nothing asks an anonymous visitor to log in: the service's login page does
    page = log_in(svc, carol, f"login?next=/v2/gh/{repo.gh_spec}/main", "carol")
    assert page.url == f"{svc.url}v2/gh/{repo.gh_spec}/main"
    # the login goes on to a page of this service only, never elsewhere
    away = carol.get(svc.url + "login?next=//example.org/", allow_redirects=False, timeout=30)
    assert away.status_code == 302 and away.headers["Location"] == "/"
    ready = launch(svc, carol, repo)[-1]
    assert ready["phase"] == "ready", ready
    assert ready["url"].startswith(f"{svc.hub_url}/user/carol/gh-test-")
    assert requests.get(ready["url"] + "api/status", timeout=30, headers={
        "Authorization": f"token {ready['token']}"}).status_code == 200
    # people behind that same address count as themselves, not as the address
    dave = requests.Session()
    log_in(svc, dave, "login?next=/", "dave")
    assert launch(svc, dave, repo)[-1]["phase"] == "ready"
    assert launch(svc, dave, repo)[-1].get("status_code") == 429  # dave's own one used


def test_gpu_cap_counts_each_person(make_service, git_server, docker_client, tmp_path):
    """Two people behind one address each get their own GPU under max_gpus_per_user = 1
    (anonymously that address would get one, tests/test_gpus.py), and a person's second
    launch returns to their GPU session instead of being refused by their own cap."""
    svc = start(make_service, tmp_path, "required",
                GPU_CONFIG + "c.GPUAllocator.max_gpus_per_user = 1")
    repo = git_server.create("dockerfile")
    alice, bob = requests.Session(), requests.Session()
    log_in(svc, alice, "", "alice")
    log_in(svc, bob, "", "bob")
    hers = launch(svc, alice, repo, gpu="1")[-1]
    assert hers["phase"] == "ready", hers
    his = launch(svc, bob, repo, gpu="1")[-1]
    assert his["phase"] == "ready", his
    assert len(hers["gpus"]) == len(his["gpus"]) == 1
    assert hers["gpus"] != his["gpus"]
    again = launch(svc, alice, repo, gpu="1")
    assert again[-1]["phase"] == "ready", again[-1]
    assert again[-1]["url"] == hers["url"]
    assert any("Returning to your running session" in e.get("message", "") for e in again)
    [container] = sessions_of(docker_client, "alice")
    assert container.labels["binderlab.gpus"] == ",".join(hers["gpus"])


@pytest.mark.browser
def test_browser_logs_in_and_lands_in_its_session(required, git_server, docker_client):
    """Chromium: a launch link, the hub's login form, back through the loading page onto the
    user's own named server with the notebook open; then her sessions page lists it, and
    its Stop button stops it."""
    from tests.test_browser import BROWSER_DIR, CHROMIUM, SCREENSHOTS

    node = shutil.which("node")
    assert node, "node is not on PATH (tests/test_browser.py says what to install)"
    svc = required
    repo = git_server.create("dockerfile")
    proc = subprocess.run(
        [node, str(BROWSER_DIR / "login_launch.mjs"),
         f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath=hello.ipynb",
         str(SCREENSHOTS / "logged_in"), "--user", "erin", "--password", PASSWORD,
         "--sessions-page", f"{svc.url}sessions"],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=400,
        env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["ok"], result
    assert result["loginUrl"].startswith(f"{svc.hub_url}/hub/login")
    assert re.match(rf"{svc.hub_url}/user/erin/gh-test-[a-z0-9-]+/", result["finalUrl"])
    assert result["notebookOpen"] and not result["offHostRequests"]
    server = result["listed"]["server"]
    assert result["finalUrl"].startswith(result["listed"]["open"])  # Open goes back there
    assert f"gh/{repo.gh_spec}" in result["listed"]["text"]
    assert result["stopped"]
    wait = time.monotonic() + 60
    while sessions_of(docker_client, "erin") and time.monotonic() < wait:
        time.sleep(0.5)  # the reaper removes the stopped container
    assert not sessions_of(docker_client, "erin"), server
