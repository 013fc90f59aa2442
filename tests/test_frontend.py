"""The web front without a browser: the JavaScript unit tests (node --test), the badges, what
the pages hand their scripts, thebe's bundle, and CORS when the operator restricts origins."""

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
SVG = "{http://www.w3.org/2000/svg}"


def test_javascript_unit_tests():
    """frontend/tests/*.test.mjs: the URL parser's table of real-world URLs, snippets, the
    event-stream parser, favicons, and that the example course page carries the snippet."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not on PATH: install Node.js (Debian: apt-get install -y nodejs); "
            "the front-end's unit tests run with `node --test`."
        )
    files = sorted(str(p) for p in (FRONTEND / "tests").glob("*.test.mjs"))
    assert files, "no frontend/tests/*.test.mjs"
    proc = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=180,
    )
    failures = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("not ok")]
    assert proc.returncode == 0, (
        "node --test failed:\n"
        + "\n".join(failures)
        + "\n"
        + proc.stdout[-6000:]
        + proc.stderr[-2000:]
    )
    passed = re.search(r"^# pass (\d+)$", proc.stdout, re.M)
    assert passed and int(passed.group(1)) >= 90, proc.stdout[-2000:]


@pytest.fixture(scope="session")
def thebe():
    """thebe's bundle in frontend/static/vendor/thebe/ (what deploy/docker/setup.sh fetches)."""
    script = FRONTEND / "fetch-thebe.sh"
    if subprocess.run(["bash", str(script), "--check"]).returncode != 0:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"frontend/fetch-thebe.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return FRONTEND / "static" / "vendor" / "thebe"


def settings_of(html: str, element_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S
    )
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


@pytest.mark.docker
@pytest.mark.parametrize(("path", "width"), [("badge.svg", 112), ("badge_logo.svg", 130)])
def test_badges(service, path, width):
    response = requests.get(service.url + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    svg = ET.fromstring(response.content)
    assert svg.tag == f"{SVG}svg"
    assert (svg.get("width"), svg.get("height")) == (str(width), "20")
    assert [t.text for t in svg.iter(f"{SVG}text")] == ["launch", "binderlab"]
    assert svg.find(f"{SVG}title").text == "launch: binderlab"
    assert response.content == (FRONTEND / "badges" / path).read_bytes()
    head = requests.head(service.url + path, timeout=10)  # link checkers, image proxies
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == "image/svg+xml"


@pytest.mark.docker
def test_front_page_settings(service, git_server):
    response = requests.get(service.url, timeout=10)
    assert response.status_code == 200
    html = response.text
    settings = settings_of(html, "binderlab-settings")
    assert settings["publicUrl"] == service.url and settings["baseUrl"] == "/"
    providers = {p["id"]: p for p in settings["providers"]}
    # the form recognises pasted URLs of the configured hosts (here the local git server)
    assert providers["gh"] == {"id": "gh", "display_name": "GitHub", "host": git_server.url}
    assert providers["gl"]["host"] == "https://gitlab.com"
    assert providers["git"] == {"id": "git", "display_name": "Git repository"}
    assert settings["gpuMax"] == 0  # no GPUs on this host: no GPU field
    assert isinstance(settings["thebeInstalled"], bool)
    assert 'import { startForm } from "/static/form.js"' in html
    api = requests.get(service.url + "api/repoproviders", timeout=10).json()
    assert api == settings["providers"]
    # the modules are served as they are (no build step), as JavaScript
    for module in ("form.js", "repourl.js", "snippets.js", "launch.js", "sse.js", "favicon.js"):
        js = requests.get(f"{service.url}static/{module}", timeout=10)
        assert js.status_code == 200, module
        assert "javascript" in js.headers["Content-Type"], (module, js.headers["Content-Type"])


@pytest.mark.docker
def test_thebe_is_served_from_this_host(service, thebe):
    index = requests.get(service.url + "static/vendor/thebe/index.js", timeout=10)
    assert index.status_code == 200 and "javascript" in index.headers["Content-Type"]
    assert len(index.content) > 500_000  # the self-contained bundle, not a stub
    css = requests.get(service.url + "static/vendor/thebe/thebe.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert (
        settings_of(requests.get(service.url, timeout=10).text, "binderlab-settings")[
            "thebeInstalled"
        ]
        is True
    )


@pytest.mark.docker
def test_loading_page_settings(service):
    spec = "gh/o/r/main"
    views = [
        requests.get(f"{service.url}v2/{spec}?labpath=a.ipynb&gpu=1", timeout=10) for _ in range(2)
    ]
    for view in views:
        assert view.status_code == 200
        assert view.headers["Cache-Control"] == "no-store"  # a fresh ticket per view
    first, second = (settings_of(v.text, "launch-settings") for v in views)
    assert first["buildUrl"] == f"/build/{spec}"
    assert first["buildParams"]["gpu"] == "1"  # ?gpu= goes on to /build
    assert first["buildParams"]["launch_ticket"] != second["buildParams"]["launch_ticket"]
    # a git spec stays escaped; what the user typed cannot end the page's <script>
    git = quote("https://example.org/r.git", safe="")
    view = requests.get(f"{service.url}v2/git/{git}/x%3C%2Fscript%3E", timeout=10)
    assert view.status_code == 200
    assert (
        settings_of(view.text, "launch-settings")["buildUrl"]
        == f"/build/git/{git}/x%3C%2Fscript%3E"
    )
    assert "x</script>" not in view.text and "x&lt;/script&gt;" in view.text


@pytest.mark.docker
def test_cors_restricted_to_one_origin(make_service, git_server):
    """c.BinderLab.cors_allow_origin names the course site: only it may read the API."""
    origin = "https://course.example.org"
    svc = make_service("serve", extra_config=f"c.BinderLab.cors_allow_origin = {origin!r}")
    repo = git_server.create("dockerfile", unique=False)
    preflight = requests.options(
        f"{svc.url}build/gh/{repo.gh_spec}/main",
        timeout=10,
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    with requests.get(
        f"{svc.url}build/gh/{repo.gh_spec}/main",
        params={"build_only": "true"},
        headers={"Accept": "text/event-stream", "Origin": origin},
        stream=True,
        timeout=60,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Access-Control-Allow-Origin"] == origin
    for path in ("api/repoproviders", "badge_logo.svg", "versions"):
        response = requests.get(svc.url + path, headers={"Origin": origin}, timeout=10)
        assert response.headers["Access-Control-Allow-Origin"] == origin, path
