"""Clients of BinderHub's API, unchanged, against a real `binderlab up`: a MyST launch
button's host check (/versions), BinderHub's own JavaScript client
(@jupyterhub/binderhub-client 0.5.0 from npm, under Node), and a course page built on
thebe-core 0.5 (what MyST's live cells use) running a cell in Chromium."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from repo2docker import __version__ as repo2docker_version

from binderlab._version import __version__
from tests.harness.gitserver import git

pytestmark = pytest.mark.docker

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("BINDERLAB_CHROMIUM", "/usr/bin/chromium")
READY_FIELDS = {"phase", "message", "url", "image", "repo_url", "binder_ref_url",
                "binder_launch_host", "binder_request", "binder_persistent_request"}


@pytest.fixture(scope="module")
def node():
    """node and the npm packages are required: fail with what to install, never skip."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js (Debian: apt-get install -y nodejs).")
    if not (BROWSER_DIR / "node_modules/@jupyterhub/binderhub-client/package.json").exists():
        pytest.fail(f"@jupyterhub/binderhub-client is missing: run `cd {BROWSER_DIR} && "
                    "npm install --ignore-scripts` (tests/harness/setup.sh does).")
    return node


def run_node(node, script: str, *args: str, timeout: float = 400) -> dict:
    proc = subprocess.run([node, str(BROWSER_DIR / script), *args], cwd=BROWSER_DIR,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (f"{script} printed no JSON result (exit {proc.returncode})\n"
                   f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["rc"], result["stderr"] = proc.returncode, proc.stderr[-3000:]
    return result


def test_versions_answers_as_binderhub(service):
    """myst-theme takes a host for a BinderHub when <host>/versions has a "binderhub" key
    (else it tries <host>/hub/api/ as a JupyterHub); BinderHub's own keys come with it."""
    response = requests.get(service.url + "versions", timeout=10,
                            headers={"Origin": "https://book.example.org"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "binderhub": __version__,
        "builder_info": {"repo2docker-version": repo2docker_version},
        "builder": f"repo2docker {repo2docker_version}",
        "binderlab": __version__,
    }


def test_binderhub_client_launches_a_repository(node, service, git_server):
    repo = git_server.create("dockerfile")
    result = run_node(node, "binderhub_client.mjs", service.url, f"gh/{repo.gh_spec}/main",
                      "--urlpath", "lab/tree/hello.ipynb")
    assert result["ok"] and result["rc"] == 0, result
    # the client lower-cases phases and stops at ready; it saw the whole launch
    assert result["phases"][0] == "waiting" or result["phases"][0] == "fetching", result
    assert {"fetching", "built", "launching"} <= set(result["phases"]), result["phases"]
    assert result["phases"][-1] == "ready"
    ready = result["ready"]
    assert READY_FIELDS <= set(ready) and ready["hasToken"], ready
    assert ready["binder_request"] == f"v2/gh/{repo.gh_spec}/main"
    commit = git("rev-parse", "HEAD", cwd=repo.work)
    assert ready["binder_persistent_request"] == f"v2/gh/{repo.gh_spec}/{commit}"
    assert ready["binder_launch_host"] == service.url
    assert ready["message"] == f"server running at {ready['url']}\n"
    # the token the client got opens the server; its redirect is what BinderHub's page uses
    assert result["server"]["status"] == 200, result["server"]
    assert result["redirectUrl"] == f"{ready['url']}lab/tree/hello.ipynb?token=<redacted>"


def test_binderhub_client_reports_failures(node, service, git_server):
    unknown = run_node(node, "binderhub_client.mjs", service.url, "nope/a/b/main")
    assert not unknown["ok"] and unknown["phases"] == ["failed"], unknown
    # as from BinderHub: the reason arrives as a failed event the client can show (an HTTP
    # 404 would only give it "Failed to connect to event stream: 404")
    assert unknown["failed"]["status_code"] == 404
    assert "Unknown repository provider 'nope'" in unknown["failed"]["message"]

    repo = git_server.create("failing-build")
    failed = run_node(node, "binderhub_client.mjs", service.url, f"gh/{repo.gh_spec}/main")
    assert not failed["ok"] and failed["phases"][-1] == "failed", failed
    assert "building" in failed["phases"]
    assert "about to fail" in failed["failed"]["message"]  # the build log's tail


def test_binderhub_client_build_only_with_api_token(node, make_service, git_server):
    """BinderHub's build-only API: `buildOnly` puts build_only=true in the query; an
    `apiToken` goes in `Authorization: Bearer` (ignored by an anonymous host)."""
    svc = make_service("serve", extra_config="c.BinderLab.allow_build_only = True")
    repo = git_server.create("dockerfile", unique=False)
    result = run_node(node, "binderhub_client.mjs", svc.url, f"gh/{repo.gh_spec}/main",
                      "--build-only", "true", "--api-token", "not-a-hub-token",
                      "--xsrf-cookie", "abc")
    assert result["ok"], result
    assert result["ready"]["imageName"].startswith(svc.image_prefix), result["ready"]
    assert "url" not in result["ready"] and result["server"] is None


def test_build_preflight_allows_the_clients_headers(service, git_server):
    """A page on another origin using binderhub-client sends Authorization or X-Xsrftoken:
    the browser asks first, and must be allowed to send them."""
    repo = git_server.create("dockerfile", unique=False)
    preflight = requests.options(f"{service.url}build/gh/{repo.gh_spec}/main", timeout=10,
                                 headers={"Origin": "https://book.example.org",
                                          "Access-Control-Request-Method": "GET",
                                          "Access-Control-Request-Headers":
                                          "accept,authorization,x-xsrftoken"})
    assert preflight.status_code == 204
    allowed = {h.strip().lower() for h in
               preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"accept", "authorization", "x-xsrftoken", "cache-control"} <= allowed


@pytest.mark.browser
def test_thebe_core_course_page_runs_a_cell(node, service, git_server):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"No Chromium at {CHROMIUM}: run `apt-get install -y chromium`.")
    if subprocess.run(["bash", str(BROWSER_DIR / "fetch-thebe-core.sh"), "--check"]).returncode:
        subprocess.run(["bash", str(BROWSER_DIR / "fetch-thebe-core.sh")], check=True,
                       timeout=300)
    repo = git_server.create("dockerfile")
    shots = BROWSER_DIR / "screenshots" / "thebe-core"
    shutil.rmtree(shots, ignore_errors=True)
    result = run_node(node, "thebe_core_page.mjs", service.url, repo.gh_spec, "main",
                      str(shots), "--expect-output", "42", "--timeout-s", "240", timeout=420)
    assert result["ok"] and result["rc"] == 0, result
    assert result["thebeCoreVersion"].startswith("0.5"), result["thebeCoreVersion"]
    assert result["detected"] == "binderhub"  # what a MyST launch button concludes
    assert result["output"] == "42"
    assert "ready" in result["statuses"], result["statuses"]
    # the page's origin is not binderlab's: the build stream, the session's REST API and its
    # kernel were all reached cross-origin, and each answered with CORS allowing the page
    paths = [r["path"] for r in result["requests"]]
    assert any(p.startswith("/build/gh/") for p in paths), paths
    assert any(p.endswith("/api/sessions") for p in paths), paths
    assert all(r["allowOrigin"] for r in result["requests"] if r["status"] < 400), \
        result["requests"]
    assert result["offHostRequests"] == [] and result["pageErrors"] == [], result
    assert Path(result["screenshots"]["course-after"]).is_file()


@pytest.mark.browser
def test_myst_launch_button_link_opens_the_page_in_jupyterlab(node, service, git_server):
    """The link myst-theme's launch button builds once /versions says "binderhub":
    <host>/v2/gh/<org>/<repo>/<ref>?urlpath=/lab/tree/<page> (with its leading slash)."""
    from tests.test_browser import assert_opened, open_in_browser

    repo = git_server.create("dockerfile", unique=False)
    url = f"{service.url}v2/gh/{repo.gh_spec}/main?urlpath=%2Flab%2Ftree%2Fhello.ipynb"
    result = open_in_browser(node, url, "myst-launch", "--expect-text",
                             "Hello from the dockerfile test repo", "--expect-output", "42")
    assert_opened(result, "lab/tree/hello.ipynb")


async def test_session_environment_names_its_launch_as_binderhub_does(service, git_server):
    """BinderHub's spawner sets BINDER_REQUEST, BINDER_PERSISTENT_REQUEST, BINDER_LAUNCH_HOST,
    BINDER_REF_URL and BINDER_REPO_URL in the session: code in a notebook (and extensions
    that offer "share this launch") read them."""
    from tests.harness.sse import follow
    from tests.test_kernel import run_code

    repo = git_server.create("dockerfile", unique=False)
    ready = follow(f"{service.url}build/gh/{repo.gh_spec}/main")[-1]
    assert ready["phase"] == "ready", ready
    headers = {"Authorization": f"token {ready['token']}"}
    session = requests.post(ready["url"] + "api/sessions", headers=headers, timeout=60, json={
        "path": "env.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert session.status_code == 201, session.text
    ws = (ready["url"].replace("http", "ws", 1)
          + f"api/kernels/{session.json()['kernel']['id']}/channels?token={ready['token']}")
    keys = ["BINDER_REQUEST", "BINDER_PERSISTENT_REQUEST", "BINDER_LAUNCH_HOST",
            "BINDER_REF_URL", "BINDER_REPO_URL"]
    out = await run_code(ws, "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
                             f"{keys!r}}}))")
    env = json.loads(out)
    assert env == {"BINDER_REQUEST": ready["binder_request"],
                   "BINDER_PERSISTENT_REQUEST": ready["binder_persistent_request"],
                   "BINDER_LAUNCH_HOST": ready["binder_launch_host"],
                   "BINDER_REF_URL": ready["binder_ref_url"],
                   "BINDER_REPO_URL": ready["repo_url"]}
