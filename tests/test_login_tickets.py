"""thebe on a course page of another origin, logged in (service/binderlab/web/tickets.py).

The course page is served on http://localhost:<port>, the binder service on
http://127.0.0.1:<port>: different origins and different sites, so no cookie of the
service's could ride along even if thebe asked for it (it does not). The page gets a
single-use login ticket from the service's login_ticket page in a window of its own.
"""

import json
import os
import re
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.harness.sse import follow
from tests.test_logged_in import PASSWORD, log_in, overlay

pytestmark = pytest.mark.docker

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Course</title>
<script type="text/x-thebe-config">
{{"requestKernel": true, "kernelOptions": {{"kernelName": "python3"}},
  "binderOptions": {{"binderUrl": "{service}", "repo": "{repo}", "ref": "main",
                    "repoProvider": "github"}}}}
</script>
<link rel="stylesheet" href="{service}/static/vendor/thebe/thebe.css">
<script src="{service}/static/vendor/thebe/index.js"></script>
</head><body>
<button id="login">Log in to run the code</button>
<div class="thebe-status"></div>
<pre data-executable="true" data-language="python">print(6 * 7)</pre>
<script>
  const service = "{service}";
  document.getElementById("login").onclick = () => window.open(
    `${{service}}/login_ticket?origin=${{encodeURIComponent(location.origin)}}`,
    "binderlab-login", "width=600,height=700");
  window.addEventListener("message", (event) => {{
    if (event.origin !== service || event.data?.type !== "binderlab-login") return;
    document.body.dataset.user = event.data.user;
    const config = JSON.parse(
      document.querySelector("script[type='text/x-thebe-config']").textContent);
    config.binderOptions.binderUrl = event.data.binderUrl;
    // thebe 0.9.3 starts no kernel when bootstrap() gets only the changed key (seen here:
    // it polls the server and never asks for a session): hand it the whole config
    window.thebe.bootstrap(config);
  }});
</script>
</body></html>
"""


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def course_site(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def start(make_service, tmp_path, origins):
    return make_service("up", extra_config=f"""
c.BinderLab.authentication = "required"
c.UpApp.hub_config_overlay = {overlay(tmp_path)!r}
c.BinderLab.login_ticket_origins = {origins!r}
""")


def ticket_for(svc, browser, origin) -> str:
    page = browser.get(svc.url + "login_ticket", params={"origin": origin}, timeout=30)
    assert page.status_code == 200, page.text
    assert "script-src 'nonce-" in page.headers["Content-Security-Policy"]
    message = json.loads(re.search(r"const message = (\{.*\});", page.text).group(1))
    assert message["origin"] == origin and message["type"] == "binderlab-login"
    return message["binderUrl"]


@pytest.mark.browser
def test_course_page_on_another_site_runs_a_cell_as_the_logged_in_reader(
        make_service, git_server, course_site, tmp_path):
    from tests.test_browser import BROWSER_DIR, CHROMIUM, SCREENSHOTS

    root, origin = course_site
    svc = start(make_service, tmp_path, [origin])
    repo = git_server.create("dockerfile")
    service = svc.url.rstrip("/")
    (root / "course.html").write_text(PAGE.format(service=service, repo=repo.gh_spec))
    proc = subprocess.run(
        ["node", str(BROWSER_DIR / "thebe_login.mjs"), f"{origin}/course.html",
         str(SCREENSHOTS / "thebe_login"), "--user", "tess", "--password", PASSWORD,
         "--expect-output", "42"],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=420,
        env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["ok"], json.dumps(result)
    assert result["pageUser"] == "tess"
    # the popup went through the hub's login and back to the ticket page
    assert any(u.startswith(f"{svc.hub_url}/hub/login") for u in result["popupUrls"])
    assert result["popupUrls"][-1] == f"{service}/login_ticket"
    # thebe's stream carried the ticket; the kernel ran on tess's own named server
    assert result["buildUrls"] == [
        f"{service}/as/<ticket>/build/gh/{repo.gh_spec}/main"]
    assert result["sessionUsers"] == ["tess"]
    assert result["output"] == "42"


def test_tickets_are_single_use_bound_to_their_origin_and_listed_origins_only(
        make_service, git_server, tmp_path):
    course = "http://localhost:9"
    svc = start(make_service, tmp_path, [course])
    repo = git_server.create("dockerfile")
    browser = requests.Session()
    log_in(svc, browser, "", "uma")
    # an origin the operator did not list gets no ticket, and is told why
    refused = browser.get(svc.url + "login_ticket", params={"origin": "https://evil.example"},
                          timeout=30)
    assert refused.status_code == 403
    assert "c.BinderLab.login_ticket_origins" in refused.json()["message"]
    # without a login: the hub's login first
    anonymous = requests.get(svc.url + "login_ticket", params={"origin": course},
                             allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith(f"{svc.hub_url}/hub/api/oauth2/authorize")

    # a ticket sent from another origin is refused, and spent
    binder_url = ticket_for(svc, browser, course)
    stream = f"{binder_url}/build/gh/{repo.gh_spec}/main"
    wrong = follow(stream, headers={"Origin": "http://127.0.0.1:9"})
    assert (wrong[-1]["phase"], wrong[-1]["status_code"]) == ("failed", 403), wrong
    again = follow(stream, headers={"Origin": course})
    assert again[-1]["status_code"] == 403 and "log in again" in again[-1]["message"]
    # a fresh one launches once, as uma, and not a second time
    stream = f"{ticket_for(svc, browser, course)}/build/gh/{repo.gh_spec}/main"
    ready = follow(stream, headers={"Origin": course})[-1]
    assert ready["phase"] == "ready", ready
    assert ready["url"].startswith(f"{svc.hub_url}/user/uma/gh-test-")
    assert follow(stream, headers={"Origin": course})[-1]["status_code"] == 403
