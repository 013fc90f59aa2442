"""The shipped authenticator examples (deploy/docker/auth/*.py) for logged-in mode.

Each is loaded into a real JupyterHub config with the environment its comments tell an
operator to set. The generic OpenID Connect one logs a person in through a real OIDC
provider on 127.0.0.1 (oauth2-mock-server) in Chromium, from a launch link to a running
cell; GitHub and GitLab cannot be reached here, so their hubs are started and their login
checked up to the redirect to the provider's authorize URL, not followed.
"""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.harness.oidc import OIDCProvider
from tests.harness.service import free_port

AUTH = Path(__file__).resolve().parent.parent / "deploy" / "docker" / "auth"

LOAD = """
import json, sys
from jupyterhub import orm
from jupyterhub.app import JupyterHub
app = JupyterHub()
app.load_config_file(sys.argv[1])
cls = app.authenticator_class
# the hub hands its authenticator a database session (NativeAuthenticator keeps its table)
auth = cls(config=app.config, db=orm.new_session_factory("sqlite://")())
def plain(v):
    return sorted(v) if isinstance(v, (set, frozenset, list)) else v
print(json.dumps({"class": cls.__name__, **{n: plain(getattr(auth, n)) for n in sys.argv[2:]}}))
"""


def load(example: str, env: dict[str, str], *traits: str) -> subprocess.CompletedProcess:
    """Load ``example`` as JupyterHub loads a config file, in a process with ``env``; print
    the authenticator class it configures and those of its traits."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OAUTH", "BINDERLAB_", "GITLAB_", "GITHUB_"))}
    return subprocess.run([sys.executable, "-c", LOAD, str(AUTH / example), *traits],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def loaded(example: str, env: dict[str, str], *traits: str) -> dict:
    proc = load(example, env, *traits)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_github_example_configures_org_members_only():
    got = loaded("github.py", {
        "OAUTH_CLIENT_ID": "id-1", "OAUTH_CLIENT_SECRET": "s",
        "BINDERLAB_GITHUB_ORGANIZATIONS": "course-org, dept:staff",
        "BINDERLAB_HUB_ADMINS": "alice"},
        "allowed_organizations", "scope", "admin_users", "client_id", "allow_all",
        "authorize_url")
    assert got == {
        "class": "GitHubOAuthenticator", "allowed_organizations": ["course-org", "dept:staff"],
        "scope": ["read:org", "read:user"], "admin_users": ["alice"], "client_id": "id-1",
        "allow_all": False, "authorize_url": "https://github.com/login/oauth/authorize"}


def test_gitlab_example_follows_a_self_hosted_gitlab():
    got = loaded("gitlab.py", {
        "OAUTH_CLIENT_ID": "id-2", "GITLAB_URL": "https://gitlab.example.org",
        "BINDERLAB_GITLAB_GROUPS": "physics/teaching"},
        "allowed_gitlab_groups", "scope", "authorize_url", "allow_all")
    assert got == {
        "class": "GitLabOAuthenticator", "allowed_gitlab_groups": ["physics/teaching"],
        "scope": ["read_api", "read_user"], "allow_all": False,
        "authorize_url": "https://gitlab.example.org/oauth/authorize"}


def test_oidc_example_reads_the_providers_discovery_document():
    provider = OIDCProvider("nobody")
    try:
        got = loaded("oidc.py", {
            "BINDERLAB_OIDC_ISSUER": provider.issuer + "/", "OAUTH_CLIENT_ID": "id-3",
            "BINDERLAB_OIDC_GROUPS": "students"},
            "authorize_url", "token_url", "userdata_url", "allowed_groups", "allow_all",
            "username_claim")
    finally:
        provider.stop()
    assert got == {
        "class": "GenericOAuthenticator", "authorize_url": provider.issuer + "/authorize",
        "token_url": provider.issuer + "/token", "userdata_url": provider.issuer + "/userinfo",
        "allowed_groups": ["students"], "allow_all": False,
        "username_claim": "preferred_username"}


def test_native_example_waits_for_an_admin():
    got = loaded("native.py", {"BINDERLAB_HUB_ADMINS": "teacher"},
                 "admin_users", "open_signup", "minimum_password_length", "allow_all")
    assert got == {"class": "NativeAuthenticator", "admin_users": ["teacher"],
                   "open_signup": False, "minimum_password_length": 10, "allow_all": True}


@pytest.mark.parametrize("example, env, says", [
    ("github.py", {}, "set BINDERLAB_GITHUB_ORGANIZATIONS"),
    ("gitlab.py", {}, "set BINDERLAB_GITLAB_GROUPS"),
    ("native.py", {}, "set BINDERLAB_HUB_ADMINS"),
    ("oidc.py", {}, "set BINDERLAB_OIDC_ISSUER"),
    ("oidc.py", {"BINDERLAB_OIDC_ISSUER": "http://127.0.0.1:{port}"},
     "cannot read http://127.0.0.1:{port}/.well-known/openid-configuration"),
])
def test_examples_refuse_to_start_without_what_they_need(example, env, says):
    """A hub that would let nobody (or everybody) in does not start; the error names the
    variable to set."""
    port = free_port()  # nothing listens there
    env = {k: v.format(port=port) for k, v in env.items()}
    proc = load(example, env)
    assert proc.returncode != 0
    assert f"auth/{example}: {says.format(port=port)}" in proc.stderr, proc.stderr[-2000:]


# --- the real hub and service -------------------------------------------------------------

def up_with(make_service, example: str, env: dict[str, str]):
    return make_service("up", env=env, extra_config=f"""
c.BinderLab.authentication = "required"
c.UpApp.hub_config_overlay = {str(AUTH / example)!r}
""")


@pytest.mark.docker
@pytest.mark.browser
def test_oidc_login_in_chromium_from_launch_link_to_running_cell(make_service, git_server):
    from tests.test_browser import BROWSER_DIR, CHROMIUM, SCREENSHOTS

    provider = OIDCProvider("olga")
    try:
        svc = up_with(make_service, "oidc.py", {
            "BINDERLAB_OIDC_ISSUER": provider.issuer, "BINDERLAB_OIDC_ALLOW_ALL": "1",
            "OAUTH_CLIENT_ID": "binderlab-hub", "OAUTH_CLIENT_SECRET": "test-secret",
            "LOGIN_SERVICE": "Test University"})
        repo = git_server.create("dockerfile")
        proc = subprocess.run(
            ["node", str(BROWSER_DIR / "oauth_launch.mjs"),
             f"{svc.url}v2/gh/{repo.gh_spec}/main?labpath=hello.ipynb",
             str(SCREENSHOTS / "oidc_login"), "--user", "olga", "--expect-output", "42"],
            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=420,
            env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, proc.stderr[-3000:]
        result = json.loads(lines[-1])
        assert result["ok"], result
        # the tab went: hub login -> provider -> hub -> the service's login -> the session
        hops = result["navigations"]
        expected = [f"{svc.hub_url}/hub/login", f"{provider.issuer}/authorize",
                    f"{svc.hub_url}/hub/oauth_callback", f"{svc.url}oauth_callback",
                    f"{svc.url}v2/gh/{repo.gh_spec}/main", f"{svc.hub_url}/user/olga/"]
        at = 0
        for hop in hops:
            if at < len(expected) and hop.startswith(expected[at]):
                at += 1
        assert at == len(expected), (expected[at:], hops)
        # the hub got the name from the provider's tokens, server to server
        # (the token endpoint signs two tokens, the access and the id token: one hop)
        seen = provider.requests()
        hops = [r for i, r in enumerate(seen) if i == 0 or seen[i - 1] != r]
        assert hops[:3] == ["authorize", "token", "userinfo"], seen
        assert re.match(rf"{svc.hub_url}/user/olga/gh-test-[a-z0-9-]+/", result["finalUrl"])
        assert result["output"] == "42"
        assert not result["offHostRequests"]
    finally:
        provider.stop()


@pytest.mark.docker
@pytest.mark.parametrize("example, env, authorize", [
    ("github.py", {"BINDERLAB_GITHUB_ORGANIZATIONS": "course-org"},
     "https://github.com/login/oauth/authorize"),
    ("gitlab.py", {"BINDERLAB_GITLAB_GROUPS": "physics/teaching",
                   "GITLAB_URL": "https://gitlab.example.org"},
     "https://gitlab.example.org/oauth/authorize"),
])
def test_provider_examples_start_a_hub_that_sends_logins_to_the_provider(
        make_service, git_server, example, env, authorize):
    callback = "http://127.0.0.1:{port}/hub/oauth_callback"
    svc = up_with(make_service, example, {
        **env, "OAUTH_CLIENT_ID": "course-client", "OAUTH_CLIENT_SECRET": "test-secret",
        "BINDERLAB_HUB_ADMINS": "teacher"})
    repo = git_server.create("dockerfile")
    browser = requests.Session()
    # the launch link -> the hub's login page, with the provider's button
    login = browser.get(f"{svc.url}v2/gh/{repo.gh_spec}/main", timeout=30)
    assert login.url.startswith(f"{svc.hub_url}/hub/login"), login.url
    button = re.search(r"""href=['"]([^'"]*/oauth_login[^'"]*)['"]""", login.text)
    assert button, login.text[-2000:]
    assert ">Sign in with " + ("GitHub" if example == "github.py" else "GitLab") in login.text
    # the button's target redirects to the provider: stop there (no GitHub/GitLab here)
    start = browser.get(svc.hub_url + html.unescape(button.group(1)),
                        allow_redirects=False, timeout=30)
    assert start.status_code == 302, start.text
    location = urlparse(start.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == authorize
    query = parse_qs(location.query)
    assert query["client_id"] == ["course-client"]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == [callback.format(port=svc.hub_port)]
    assert query["state"][0]


def xsrf_of(page: requests.Response) -> dict[str, str]:
    found = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    return {"_xsrf": found.group(1)} if found else {}


@pytest.mark.docker
def test_native_accounts_sign_up_authorize_log_in_launch(make_service, git_server):
    """deploy/docker/auth/native.py: a student signs up, cannot log in until the admin
    authorizes the account, then launches as themselves."""
    from tests.test_logged_in import launch

    svc = up_with(make_service, "native.py", {"BINDERLAB_HUB_ADMINS": "teacher"})
    repo = git_server.create("dockerfile")
    hub = svc.hub_url + "/hub/"
    passwords = {"teacher": "Teach-" + os.urandom(6).hex(), "sam": "Stud-" + os.urandom(6).hex()}

    def sign_up(browser, name):
        form = browser.get(hub + "signup", timeout=30)
        form.raise_for_status()
        done = browser.post(hub + "signup", timeout=30, data={
            "username": name, "signup_password": passwords[name],
            "signup_password_confirmation": passwords[name], **xsrf_of(form)})
        done.raise_for_status()
        alert = re.search(r'class="alert [^"]*"[^>]*>(.*?)</div>', done.text, re.S)
        assert alert, (done.url, done.text[-3000:])
        return " ".join(re.sub(r"<[^>]+>", " ", alert.group(1)).split())

    teacher, sam = requests.Session(), requests.Session()
    assert "signup was successful" in sign_up(teacher, "teacher")
    said = sign_up(sam, "sam")
    assert said == "Your information has been sent to the admin.", said

    # the launch link sends sam to the hub's login; unauthorized, the login fails
    page = f"v2/gh/{repo.gh_spec}/main"
    form = sam.get(svc.url + page, timeout=30)
    assert form.url.startswith(hub + "login"), form.url
    refused = sam.post(form.url, timeout=60, data={
        "username": "sam", "password": passwords["sam"], **xsrf_of(form)})
    assert refused.url.startswith(hub + "login"), refused.url
    assert "User sam has not been authorized by an administrator yet." in refused.text

    # the admin logs in and authorizes sam's account (the hub's /hub/authorize page)
    login = teacher.get(hub + "login", timeout=30)
    # (not followed: the hub's default next page would spawn a default server)
    logged_in = teacher.post(hub + "login", timeout=60, allow_redirects=False, data={
        "username": "teacher", "password": passwords["teacher"], **xsrf_of(login)})
    assert logged_in.status_code == 302, logged_in.text[-1500:]
    area = teacher.get(hub + "authorize", timeout=30)
    assert area.status_code == 200 and "sam" in area.text
    teacher.get(hub + "authorize/sam", timeout=30).raise_for_status()

    # now sam's login goes through, back to the loading page, and the launch is sam's
    form = sam.get(svc.url + page, timeout=30)
    back = sam.post(form.url, timeout=60, data={
        "username": "sam", "password": passwords["sam"], **xsrf_of(form)})
    assert back.url == svc.url + page, back.url
    ready = launch(svc, sam, repo)[-1]
    assert ready["phase"] == "ready", ready
    assert ready["url"].startswith(f"{svc.hub_url}/user/sam/gh-test-")
    assert requests.get(ready["url"] + "api/status", timeout=30, headers={
        "Authorization": f"token {ready['token']}"}).status_code == 200
