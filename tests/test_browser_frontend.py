"""In a real browser: the launch form, the loading page's states, thebe on a course page.

Debian's Chromium driven by playwright-core (tests/browser/*.mjs), against a real
`binderlab up` (the `service` fixture; its gh provider is the local git server):

- the form: paste a URL -> what it understood, the launch URL (through the Copy button and the
  clipboard), badges, the thebe snippet; Prebuild; then the copied link opens JupyterLab with
  the notebook (tests/browser/loading_redirect.mjs); bad URLs get messages;
- the loading page's states from scripted event streams (queue, GPUs, failure and retry, HTTP
  errors, a 20,000-line log);
- frontend/examples/course-page.html with the form's snippet, served from another origin:
  activate thebe, run a cell, read its output (CORS on the build stream and the session).

Screenshots: tests/browser/screenshots/<test>/ (git-ignored).
"""
# ruff: noqa: F401, F811

import json
import re
import shutil
import subprocess
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# node and thebe are fixtures, shared by importing them (hence F401/F811 for this file)
from tests.test_browser import (
    BROWSER_DIR,
    CHROMIUM,
    SCREENSHOTS,
    assert_opened,
    node,
    open_in_browser,
    shown_phases,
)
from tests.test_frontend import thebe

pytestmark = [pytest.mark.browser, pytest.mark.docker]

FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
COURSE_PAGE = FRONTEND / "examples" / "course-page.html"


def run_script(node, script: str, url: str, name: str, *options: str, timeout: float = 400) -> dict:
    """Run tests/browser/<script> <url> <screenshots>/<name> [options]; return its JSON."""
    shots = SCREENSHOTS / name
    shutil.rmtree(shots, ignore_errors=True)
    proc = subprocess.run(
        [node, str(BROWSER_DIR / script), url, str(shots), *options],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "BINDERLAB_CHROMIUM": CHROMIUM},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, (
        f"{script} printed no JSON result (exit {proc.returncode})\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    result = json.loads(lines[-1])
    result["rc"], result["stderr"] = proc.returncode, proc.stderr[-3000:]
    return result


def run_form(node, form_url: str, steps: list[dict], name: str, tmp_path: Path) -> dict:
    scenario = tmp_path / f"{name}.json"
    scenario.write_text(json.dumps({"steps": steps}))
    result = run_script(node, "form.mjs", form_url, name, "--scenario", str(scenario))
    assert result["ok"] and result["rc"] == 0, (
        f"form check failed: {result['error']}\nstderr:\n{result['stderr']}"
    )
    assert result["pageErrors"] == [] and result["offHostRequests"] == [], result
    return result


# ---- the form ------------------------------------------------------------------------------


def test_form_paste_prebuild_copy_and_open_the_notebook(node, service, git_server, tmp_path):
    repo = git_server.create("dockerfile")
    pasted = f"{repo.url}/blob/main/hello.ipynb"  # a GitHub-style file URL of the gh host
    result = run_form(
        node,
        service.url,
        [
            {"name": "paste", "input": pasted, "copy": True, "prebuild": True, "shot": "form"},
        ],
        "form",
        tmp_path,
    )
    assert result["focused"] == "repo-input"
    [step] = result["steps"]

    # what the form understood from the URL, and what it hands out
    assert step["error"] is None and not step["invalid"]
    assert step["understood"] == f"GitHub: {repo.gh_spec} · ref main · opens hello.ipynb"
    launch = f"{service.url}v2/gh/{repo.gh_spec}/main?labpath=hello.ipynb"
    assert step["launchUrl"] == launch and step["openHref"] == launch
    assert step["copyButton"] == "Copied" and step["clipboard"] == launch
    badge = f"{service.url}badge_logo.svg"
    assert step["markdown"] == f"[![Launch in binderlab]({badge})]({launch})"
    assert step["rst"] == f".. image:: {badge}\n   :target: {launch}\n   :alt: Launch in binderlab"
    assert step["html"] == f'<a href="{launch}"><img src="{badge}" alt="Launch in binderlab"></a>'
    assert step["badge"] == {"src": badge, "width": 130, "height": 20}  # the preview loaded
    config = json.loads(step["thebeHead"].split("\n", 1)[1].rsplit("</script>", 3)[0])
    assert config["binderOptions"] == {
        "binderUrl": service.url.rstrip("/"),
        "repo": repo.gh_spec,
        "ref": "main",
        "repoProvider": "github",
    }
    assert f'<script src="{service.url}static/vendor/thebe/index.js"></script>' in step["thebeHead"]
    assert 'data-executable="true"' in step["thebeCells"]

    # Prebuild built the image without a session
    assert step["prebuild"]["state"] == "ready", step["prebuild"]
    assert f"Built: {service.image_prefix}" in step["prebuild"]["text"]
    assert "(build only)" in step["prebuild"]["log"]

    # the copied link: the loading page shows the phases and opens the notebook in JupyterLab
    opened = open_in_browser(
        node,
        step["clipboard"],
        "form-launch",
        "--expect-text",
        "Hello from the dockerfile test repo",
        "--expect-output",
        "42",
    )
    assert_opened(opened, "doc/tree/hello.ipynb")
    assert "built" in shown_phases(opened) and "building" not in shown_phases(opened)
    assert Path(result["screenshots"]["form"]).stat().st_size > 20_000


# [pasted text, options, phrase of the message]; the gh host is the local git server (GH)
BAD_INPUT = [
    ("hello", {}, "is not a repository"),
    ("not a url at all", {}, "no spaces"),
    ("{GH}/test", {}, "user or organisation"),
    ("{GH}/o/r/pull/3", {}, "pull request"),
    ("{GH}/o/r/tree/-x/hello.ipynb", {}, 'starts with "-"'),
    ("ftp://example.org/repo", {}, "cannot be launched"),
    ("git@example.org:team/repo.git", {}, "SSH URLs"),
    ("https://user:pw@example.org/repo.git", {}, "password"),
    ("https://gist.github.com/8a2f0e1c9b7d", {}, "owner"),
    ("{GH}/o/r", {"ref": "--upload-pack=touch /tmp/x"}, 'starts with "-"'),
    ("{GH}/o/r", {"path": "../../etc/passwd"}, '".." is not allowed'),
]


def test_form_bad_urls_get_a_message(node, service, git_server, tmp_path):
    steps = [
        {"name": text, "input": text.replace("{GH}", git_server.url), "options": options}
        for text, options, _ in BAD_INPUT
    ]
    steps[0]["shot"] = "form-error"
    steps.append({"name": "fixed", "input": f"{git_server.url}/o/r"})  # the message goes away
    result = run_form(node, service.url, steps, "form-bad-input", tmp_path)
    for (text, _, phrase), seen in zip(BAD_INPUT, result["steps"], strict=False):
        assert seen["error"] and phrase in seen["error"], (text, seen["error"])
        assert seen["errorRole"] == "alert" and seen["invalid"], seen
        assert seen["understood"] is None and not seen["outputsShown"], seen
        assert seen["launchDisabled"], seen
    fixed = result["steps"][-1]
    assert fixed["error"] is None and fixed["understood"] == "GitHub: o/r · default branch"
    assert fixed["launchUrl"] == f"{service.url}v2/gh/o/r/HEAD"
    assert result["consoleErrors"] == []


def test_prebuild_refused_by_the_host_says_so(node, make_service, git_server, tmp_path):
    svc = make_service("serve", extra_config="c.BinderLab.allow_build_only = False")
    repo = git_server.create("dockerfile", unique=False)
    result = run_form(
        node,
        svc.url,
        [
            {
                "name": "prebuild",
                "input": f"{repo.url}/tree/main",
                "prebuild": True,
                "shot": "prebuild-refused",
            },
        ],
        "form-prebuild-refused",
        tmp_path,
    )
    prebuild = result["steps"][0]["prebuild"]
    assert prebuild["state"] == "failed"
    assert "does not prebuild on request" in prebuild["text"]
    assert "Build-only requests are not enabled on this host." in prebuild["text"]
    assert not prebuild["buttonDisabled"]


# ---- the loading page's states -------------------------------------------------------------


class StreamServer:
    """Scripted event streams on 127.0.0.1 (/stream/<scenario>) and a fake session page."""

    def __init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/user/fake/"):
                    body = b"<!doctype html><title>fake session</title><p>session</p>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self.path.split("?")[0].removeprefix("/stream/")
                script = getattr(server, "scenario_" + name.replace("-", "_"), None)
                if script is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                try:
                    script(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def send(handler, *events: dict) -> None:
        handler.wfile.write("".join(f"data: {json.dumps(e)}\n\n" for e in events).encode())
        handler.wfile.flush()

    @staticmethod
    def hold(handler, seconds: float = 30) -> None:
        """Keep the stream open (as the service does after its last event)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            handler.wfile.write(b":keepalive\n\n")
            handler.wfile.flush()
            time.sleep(0.5)

    def scenario_flood_queue(self, h):
        self.send(h, {"phase": "fetching", "message": "Resolving the requested ref\n"})
        for start in range(1, 20001, 500):  # 20,000 log lines in 40 bursts
            self.send(
                h,
                *(
                    {"phase": "building", "message": f"build line {n}\n"}
                    for n in range(start, start + 500)
                ),
            )
            time.sleep(0.01)
        self.send(h, {"phase": "built", "imageName": "x", "message": "Built image x\n"})
        for position in (2, 1):
            self.send(
                h,
                {
                    "phase": "waiting",
                    "queue_position": position,
                    "message": f"All GPUs are busy: you are number {position} in the queue\n",
                },
            )
            time.sleep(1.5)
        self.send(h, {"phase": "launching", "message": "GPU 1 reserved\n"})
        self.hold(h)

    def scenario_ready_gpu(self, h):
        self.send(
            h,
            {"phase": "fetching", "message": "Resolving the requested ref\n"},
            {"phase": "built", "message": "Found built image x\n"},
            {"phase": "launching", "message": "Starting a session\n"},
        )
        time.sleep(0.5)
        self.send(
            h,
            {
                "phase": "ready",
                "url": f"{self.url}/user/fake/",
                "token": "tok123",
                "gpus": ["1", "3"],
                # a logged-in user's GPU session under a budget (gpus/budgets.py)
                "gpu_budget": {"seconds_left": 4500, "period": "day",
                               "renews_at": "2026-12-03T00:00:00Z",
                               "stops_at": "2026-12-02T11:15:00Z"},
                "message": f"server running at {self.url}/user/fake/\n",
            },
        )
        self.hold(h, 10)

    def scenario_failed(self, h):
        self.send(
            h,
            {"phase": "fetching", "message": "Resolving the requested ref\n"},
            *({"phase": "building", "message": f"step {n}\n"} for n in range(1, 40)),
        )
        time.sleep(0.3)
        self.send(
            h,
            {
                "phase": "failed",
                "status_code": 500,
                "message": "Build failed: RUN make returned 2\nmake: *** [all] Error 2\n",
            },
        )
        self.hold(h, 10)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stream_server():
    server = StreamServer()
    yield server
    server.close()


def test_loading_page_states(node, service, stream_server):
    """The real loading page, fed scripted streams: queue, GPUs, failure + retry, HTTP error."""
    result = run_script(
        node,
        "loading_states.mjs",
        f"{service.url}v2/gh/test/anything/main",
        "loading-states",
        "--stream-base",
        stream_server.url,
    )
    assert result["ok"] and result["rc"] == 0, f"{result['error']}\n{result['stderr']}"
    s = result["scenarios"]

    # 20,000 log lines reach the terminal view quickly, in few DOM updates (one per frame)
    flood = s["flood"]
    queued = flood["queued"]
    assert queued["logLines"] >= 20_001 and "build line 20000" in queued["logTail"]
    assert flood["logSeconds"] < 15, flood["logSeconds"]
    assert queued["logMutations"] < 2_000, queued["logMutations"]
    # the GPU queue: position shown, favicon and bar in the waiting state; then launching
    assert queued["phase"] == "waiting" and queued["favicon"] == "waiting"
    assert "you are number 2 in the queue" in queued["queue"]
    assert "number 1 in the queue" in flood["nextInQueue"]
    launching = flood["launching"]
    assert launching["queue"] is None and launching["favicon"] == "working"
    assert launching["steps"] == [
        "fetching:done",
        "building:done",
        "launching:current",
        "ready:todo",
    ]
    assert 80 <= launching["progress"] < 100
    assert re.fullmatch(r"\d+ s", launching["elapsed"]), launching["elapsed"]
    assert "launch_ticket=" in flood["builds"][0]  # this page view's ticket (limits.py)

    # ready: the GPUs are named, then the redirect honours labpath and carries the token
    ready = s["ready"]
    assert ready["before"]["gpus"].startswith(
        "GPUs 1, 3 reserved for this session. GPU time left this day: 1 h 15 min. This "
        "session stops at "), ready["before"]["gpus"]
    assert "2026" in ready["before"]["gpus"] and "renews at" in ready["before"]["gpus"]
    assert ready["before"]["phase"] == "ready" and ready["before"]["favicon"] == "ready"
    assert ready["before"]["progress"] == 100
    assert ready["tokenInRedirect"] == "tok123"
    assert ready["redirectPath"] == "/user/fake/doc/tree/nb/intro.ipynb"

    # failure: the message, the log, a red favicon, a focused retry that starts a new launch
    failed = s["failed"]["failed"]
    assert failed["phaseText"] == "failed: Build failed: RUN make returned 2"
    assert failed["failure"] == "Build failed: RUN make returned 2\nmake: *** [all] Error 2"
    assert "step 39" in failed["logTail"]
    assert failed["favicon"] == "failed" and failed["faviconIsSvg"]
    assert failed["retryShown"] and failed["retryFocused"]
    assert s["failed"]["builds"] == 2  # retry opened the stream again ...
    tickets = s["failed"]["tickets"]
    assert all(tickets) and tickets[0] != tickets[1]  # ... as a new page view
    assert s["failed"]["afterRetry"]["failure"] is not None

    # an HTTP error from the service shows its message
    http_error = s["httpError"]
    assert http_error["failure"] == (
        "Too many launches from your address (20 in 600 s). Try again in 42 s. (HTTP 429)"
    )
    assert http_error["retryShown"]
    for name in ("loading-queue", "loading-failed", "loading-ready-gpu"):
        assert Path(result["screenshots"][name]).stat().st_size > 10_000


# ---- thebe on a course page ----------------------------------------------------------------


def course_page_with(head: str, badge: str) -> str:
    """The example course page with its thebe and badge blocks replaced (as a user would)."""
    page = COURSE_PAGE.read_text()
    for name, text in (("thebe-head", head), ("badge", badge)):
        page, n = re.subn(
            rf"(<!-- binderlab:{name} -->\n).*?(\n\s*<!-- /binderlab:{name} -->)",
            lambda m, text=text: m.group(1) + text + m.group(2),
            page,
            flags=re.S,
        )
        assert n == 1, name
    return page


@pytest.fixture
def other_origin(tmp_path):
    """A second web server on 127.0.0.1 (another port: another origin) for the course page."""
    root = tmp_path / "site"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_course_page_runs_a_cell_with_thebe_from_another_origin(
    node, service, git_server, thebe, other_origin, tmp_path
):
    repo = git_server.create("dockerfile")
    # 1. the snippet and badge, as the form generates them for this repository
    form = run_form(
        node,
        service.url,
        [{"name": "snippet", "input": f"{repo.url}/tree/main", "preview": True}],
        "course-page-form",
        tmp_path,
    )
    snippet = form["steps"][0]
    # the form's own preview of the snippet loaded thebe from this host
    name = repo.gh_spec.split("/")[1]
    assert snippet["preview"] == {
        "activateButton": "Activate",
        "cells": [f'print("Hello from {name}")'],
    }
    # 2. the example course page with them, on another origin
    root, origin = other_origin
    (root / "course.html").write_text(course_page_with(snippet["thebeHead"], snippet["html"]))
    assert origin != service.url.rstrip("/")
    # 3. activate, run the first cell, read its output
    result = run_script(
        node,
        "course_page.mjs",
        f"{origin}/course.html",
        "course-page",
        "--expect-output",
        "37 °C =  98.6 °F",
        "--timeout-s",
        "240",
    )
    assert result["ok"] and result["rc"] == 0, (
        f"{result['error']}\n{result['stderr']}\nrequests: {result.get('requests')}"
    )
    assert result["cellCount"] == 4
    assert [line.strip() for line in result["output"].splitlines()] == [
        "0 °C =  32.0 °F",
        "37 °C =  98.6 °F",
        "100 °C = 212.0 °F",
    ]
    assert result["status"][-1] == "Kernel Connected", result["status"]
    assert result["pageErrors"] == [] and result["offHostRequests"] == []

    # thebe came from the binderlab host; the build stream answered the page's origin (CORS)
    requests = result["requests"]
    service_origin = service.url.rstrip("/")
    assert any(
        r["origin"] == service_origin
        and r["path"] == "/static/vendor/thebe/index.js"
        and r["status"] == 200
        for r in requests
    ), requests
    [stream] = [r for r in requests if r["path"].startswith("/build/")]
    assert stream["origin"] == service_origin and stream["type"] == "eventsource"
    assert stream["path"] == f"/build/gh/{repo.gh_spec}/main"
    assert stream["sentOrigin"] == origin and stream["allowOrigin"] in ("*", origin)
    # ... and the session's Jupyter server did too: REST calls and the kernel websocket
    session = [r for r in requests if "/api/" in r["path"]]
    assert any(r["method"] == "POST" and r["path"].endswith("/api/sessions") for r in session)
    assert all(
        r["allowOrigin"] in ("*", origin) and r["sentOrigin"] == origin and r["status"] < 300
        for r in session
    ), session
    assert any(p.endswith("/channels") for p in result["websockets"]), result["websockets"]


def test_form_gpu_field_on_a_gpu_host(node, make_service, git_server, tmp_path):
    """A host with GPUs offers the GPU count; the launch link asks for them (?gpu=N)."""
    svc = make_service(
        "serve",
        extra_config='c.BinderLab.gpu_inventory_class = "static"\n'
        'c.StaticGPUInventory.devices = ["0", "1"]\n'
        "c.GPUAllocator.max_gpus_per_session = 2\n",
    )
    result = run_form(
        node,
        svc.url,
        [{"name": "gpu", "input": "o/r", "options": {"gpu": 2}, "shot": "form-gpu"}],
        "form-gpu",
        tmp_path,
    )
    [step] = result["steps"]
    assert step["gpuShown"]
    assert step["launchUrl"] == f"{svc.url}v2/gh/o/r/HEAD?gpu=2"
