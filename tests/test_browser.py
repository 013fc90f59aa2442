"""In a real browser: a launch link's loading page follows the build and opens JupyterLab.

Debian's Chromium, driven by playwright-core (tests/browser/loading_redirect.mjs), opens
`/v2/gh/<owner>/<repo>/<ref>?...` on a real `binderlab up`, watches the loading page show its
phases, follows its redirect (`<url>doc/tree/<path>?token=<token>`) onto the session's own
Jupyter server and waits until JupyterLab has the notebook open. Screenshots go to
tests/browser/screenshots/<test name>/ (git-ignored).

Needs: node on PATH, `cd tests/browser && npm install --ignore-scripts` (playwright-core),
`apt-get install -y chromium` (never a downloaded browser).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.docker]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
SCRIPT = BROWSER_DIR / "loading_redirect.mjs"
SCREENSHOTS = BROWSER_DIR / "screenshots"
CHROMIUM = os.environ.get("BINDERLAB_CHROMIUM", "/usr/bin/chromium")
LAUNCH_TIMEOUT = 180  # seconds, page opened -> on the session (the script's own bound)


@pytest.fixture(scope="module")
def node():
    """node, playwright-core and Chromium are required: fail with what to install, never skip."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js (Debian: apt-get install -y nodejs).")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        pytest.fail(f"playwright-core is missing from {BROWSER_DIR / 'node_modules'}: "
                    f"run `cd {BROWSER_DIR} && npm install --ignore-scripts`.")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"No Chromium at {CHROMIUM}: run `apt-get install -y chromium` "
                    "(Debian's package; never let a tool download a browser).")
    return node


def open_in_browser(node, url: str, name: str, *options: str) -> dict:
    """Run loading_redirect.mjs on `url`; return its JSON result (with rc and stderr)."""
    shots = SCREENSHOTS / name
    shutil.rmtree(shots, ignore_errors=True)
    proc = subprocess.run(
        [node, str(SCRIPT), url, str(shots), "--timeout-s", str(LAUNCH_TIMEOUT), *options],
        cwd=BROWSER_DIR, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT + 240,
        env={**os.environ, "BINDERLAB_CHROMIUM": CHROMIUM},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (f"loading_redirect.mjs printed no JSON result (exit {proc.returncode})\n"
                   f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["rc"], result["stderr"] = proc.returncode, proc.stderr[-3000:]
    return result


def shown_phases(result: dict) -> list[str]:
    return [p["phase"] for p in result["phases"]]


def assert_opened(result: dict, path: str) -> None:
    assert result["ok"] and result["rc"] == 0, (
        f"browser check failed: {result['error']}\nphases: {shown_phases(result)}\n"
        f"stderr:\n{result['stderr']}")
    # The loading page showed the launch's phases, ending in ready, before redirecting.
    phases = shown_phases(result)
    assert phases[0] == "starting", phases
    assert "launching" in phases and phases[-1] == "ready", phases
    assert phases.index("fetching") < phases.index("launching"), phases
    # Its redirect went to the session's server, at the chosen path, with the launch token ...
    assert "/user/" in result["redirectUrl"], result["redirectUrl"]
    assert result["redirectUrl"].split("?")[0].endswith("/" + path), result["redirectUrl"]
    assert result["redirectHasToken"], result["redirectUrl"]
    # ... which let a fresh browser in: JupyterLab has the notebook open, its kernel runs.
    lab = result["lab"]
    assert lab["found"] and lab["visible"], lab
    assert [c["type"] for c in lab["cells"]] == ["markdown", "code"], lab["cells"]
    assert "Hello from the dockerfile test repo" in lab["cells"][0]["text"]
    assert "print(6 * 7)" in lab["cells"][1]["text"]
    assert lab["kernelName"].startswith("Python 3"), lab
    assert result["output"] == "42"
    # Screenshots of both pages exist; the browser talked to this machine only.
    assert result["screenshots"]["loadingPhase"] in ("fetching", "building", "built",
                                                      "launching"), result["screenshots"]
    for key in ("loading", "jupyterlab"):
        shot = Path(result["screenshots"][key])
        assert shot.is_file() and shot.stat().st_size > 5000, shot
    assert result["offHostRequests"] == []


def test_loading_page_redirects_to_the_notebook_in_jupyterlab(node, service, git_server):
    repo = git_server.create("dockerfile")  # a new tree: the page shows a real build
    url = f"{service.url}v2/gh/{repo.gh_spec}/main?labpath=hello.ipynb"
    result = open_in_browser(node, url, "labpath", "--expect-text",
                             "Hello from the dockerfile test repo", "--expect-output", "42")
    assert_opened(result, "doc/tree/hello.ipynb")
    assert "building" in shown_phases(result)
    # /doc/tree/<path> is JupyterLab's single-document mode, titled after the notebook.
    assert result["lab"]["singleDocumentMode"], result["lab"]
    assert result["lab"]["documentTitle"].startswith("hello.ipynb"), result["lab"]
    assert "/doc/tree/hello.ipynb" in result["finalUrl"], result["finalUrl"]


def test_urlpath_opens_the_notebook_in_the_full_lab(node, service, git_server):
    repo = git_server.create("dockerfile")
    url = f"{service.url}v2/gh/{repo.gh_spec}/main?urlpath=lab/tree/hello.ipynb"
    result = open_in_browser(node, url, "urlpath", "--expect-text",
                             "Hello from the dockerfile test repo", "--expect-output", "42")
    assert_opened(result, "lab/tree/hello.ipynb")
    assert not result["lab"]["singleDocumentMode"], result["lab"]  # its tab is on show
    assert "/lab/tree/hello.ipynb" in result["finalUrl"], result["finalUrl"]


def test_loading_page_shows_a_failed_build(node, service, git_server):
    repo = git_server.create("failing-build")
    url = f"{service.url}v2/gh/{repo.gh_spec}/main?labpath=hello.ipynb"
    result = open_in_browser(node, url, "failed-build")
    assert not result["ok"] and result["rc"] == 1, result
    assert result["redirectUrl"] is None, result["redirectUrl"]
    assert shown_phases(result)[-1] == "failed", shown_phases(result)
    assert "failed: " in result["phases"][-1]["text"], result["phases"][-1]
    assert "about to fail" in result["error"], result["error"]  # the build log's tail
    assert Path(result["screenshots"]["failure"]).is_file()
